"""/openapi.json, /docs (Swagger UI from the swagger-ui-bundle package, no CDN) and
/metrics on the S3 port (observability.md §1, §3, §4).

Invariant: with ``observability.metrics_token`` set, /metrics answers only a request
bearing it (``Authorization: Bearer <token>``, compared in constant time); else 401.
"""

from __future__ import annotations

import hmac
import mimetypes
from pathlib import Path

import falcon

from bleepstore.web.metrics import Metrics
from bleepstore.web.observe import METRICS_BEARER_KEY
from bleepstore.web.openapi import OpenApiCache

DOCS_HTML = """<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><title>BleepStore API - Swagger UI</title>
<link rel="stylesheet" href="/docs/static/swagger-ui.css"></head>
<body><div id="swagger-ui"></div>
<script src="/docs/static/swagger-ui-bundle.js"></script>
<script>window.ui = SwaggerUIBundle({url: "/openapi.json", dom_id: "#swagger-ui"});</script>
</body></html>
"""


def _assets_dir() -> Path | None:
    try:
        import swagger_ui_bundle
    except ImportError:
        return None
    return Path(swagger_ui_bundle.swagger_ui_path)


class OpenApiResource:
    def __init__(self) -> None:
        self.cache = OpenApiCache()

    def on_get(self, req: falcon.Request, resp: falcon.Response) -> None:
        host = req.get_header("Host") or req.host
        resp.content_type = "application/json"
        resp.data = self.cache.render(f"{req.scheme}://{host}")

    on_head = on_get


class DocsResource:
    def __init__(self) -> None:
        self.assets = _assets_dir()

    def on_get(self, req: falcon.Request, resp: falcon.Response) -> None:
        resp.content_type = "text/html; charset=utf-8"
        resp.data = DOCS_HTML.encode()

    on_head = on_get

    def on_get_static(self, req: falcon.Request, resp: falcon.Response, name: str) -> None:
        if self.assets is None or "/" in name or name.startswith("."):
            raise falcon.HTTPNotFound()
        path = self.assets / name
        if not path.is_file():
            raise falcon.HTTPNotFound()
        resp.content_type = mimetypes.guess_type(name)[0] or "application/octet-stream"
        resp.content_length = path.stat().st_size
        resp.stream = open(path, "rb")  # noqa: SIM115 - the server closes it

    on_head_static = on_get_static


class MetricsResource:
    def __init__(self, metrics: Metrics, token: str = "") -> None:
        self.metrics = metrics
        self.token = token.encode("utf-8")

    def _authorized(self, req: falcon.Request) -> bool:
        if not self.token:
            return True
        # The front would take an Authorization header for an S3 signature: the Observed
        # middleware set the bearer token aside (web/observe.py).
        given = req.env.get(METRICS_BEARER_KEY)
        if given is None:  # not behind Observed (an in-process app)
            scheme, _, token = (req.get_header("Authorization") or "").strip().partition(" ")
            given = token.strip() if scheme.lower() == "bearer" else ""
        return hmac.compare_digest(str(given).encode("utf-8"), self.token)

    def on_get(self, req: falcon.Request, resp: falcon.Response) -> None:
        if not self._authorized(req):
            resp.status = falcon.HTTP_401
            resp.set_header("WWW-Authenticate", 'Bearer realm="metrics"')
            resp.content_type = "text/plain; charset=utf-8"
            resp.data = b"401 Unauthorized: /metrics needs Authorization: Bearer <token>\n"
            return
        body, content_type = self.metrics.exposition(req.get_header("Accept"))
        resp.content_type = content_type
        resp.data = body

    on_head = on_get
