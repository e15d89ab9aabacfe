"""In-process BleepStore for tests/wsgi: the real ``create_app()`` behind webtest, on a private
SQLite file and storage directory, with requests signed by botocore's S3 SigV4 signer."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import webtest

from bleepstore.app import create_app
from bleepstore.config import (
    AuthConfig,
    Config,
    LocalStorageConfig,
    MetadataConfig,
    ObservabilityConfig,
    SqliteConfig,
    StorageConfig,
)
from bleepstore.recovery import run_recovery
from support.signing import sigv4_headers

ACCESS_KEY, SECRET_KEY = "wsgi-key", "wsgi-secret"
HOST = "localhost"


def make_config(root: Path) -> Config:
    return Config(
        auth=AuthConfig(access_key=ACCESS_KEY, secret_key=SECRET_KEY),
        metadata=MetadataConfig(sqlite=SqliteConfig(path=str(root / "metadata.db"))),
        storage=StorageConfig(spool_dir=str(root / "spool"),
                              local=LocalStorageConfig(root_dir=str(root / "objects"))),
        observability=ObservabilityConfig(metrics_dir=str(root / "prometheus")))


@dataclass
class S3App:
    """webtest around the app; ``call`` sends a raw target exactly as a client would."""

    test: webtest.TestApp
    root: Path

    def call(self, method: str, target: str, *, body: bytes = b"", sign: bool = True,
             headers: dict[str, str] | None = None, environ: dict[str, str] | None = None,
             host: str = HOST, raw_uri: bool = True) -> webtest.TestResponse:
        hdrs = {"Host": host, **(headers or {})}
        if sign:
            hdrs = sigv4_headers(method, host, target, body, hdrs, ACCESS_KEY, SECRET_KEY)
        env = {"RAW_URI": target} if raw_uri else {}
        env.update(environ or {})
        params: dict[str, Any] = {"method": method, "headers": hdrs, "environ": env}
        if body or method in ("PUT", "POST"):
            params["body"] = body
        return self.test.request(target, expect_errors=True, **params)


def make_app(root: Path) -> S3App:
    """Migrate and bootstrap (as gunicorn's master does), then build the app in process."""
    cfg = make_config(root)
    run_recovery(cfg)
    return S3App(webtest.TestApp(create_app(cfg, background=False)), root)
