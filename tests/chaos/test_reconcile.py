"""The orphan scan at startup (storage.md §5.5, §5.7 "after rename, before commit"):
a worker killed between the blob rename and the metadata commit leaves a blob no row
references; a start with ``storage.reconcile_on_startup`` deletes it, and only it.
"""

from __future__ import annotations

import json
from pathlib import Path

import botocore.exceptions
import pytest

from support.clients import boto3_client
from support.server import Server


def _blobs(srv: Server) -> set[str]:
    root = srv.data / "objects"
    return {str(p.relative_to(root)) for p in (root / "blobs").rglob("*") if p.is_file()}


def _last_recovery(srv: Server) -> dict[str, int]:
    lines = [line for line in srv.log_text().splitlines() if '"recovery complete"' in line]
    return dict(json.loads(lines[-1]))


def _restart(srv: Server, env: dict[str, str], reconcile: bool) -> None:
    srv.kill9()
    srv.env = env
    srv.extra_config = {"storage": {"reconcile_on_startup": reconcile}}
    srv.start()


def test_startup_reconcile_removes_blob_renamed_but_never_committed(tmp_path: Path) -> None:
    srv = Server(tmp_path, workers=1, threads=2)
    srv.start()
    try:
        s3 = boto3_client(srv.endpoint)
        s3.create_bucket(Bucket="orphans")
        s3.put_object(Bucket="orphans", Key="kept", Body=b"committed")
        committed = _blobs(srv)
        _restart(srv, {"BLEEPSTORE_FAULT": "blob.after_rename"}, reconcile=False)
        with pytest.raises(botocore.exceptions.BotoCoreError):
            boto3_client(srv.endpoint, max_attempts=0).put_object(
                Bucket="orphans", Key="lost", Body=b"never acknowledged")
        orphans = _blobs(srv) - committed
        assert len(orphans) == 1  # renamed into place, then the worker died

        _restart(srv, {}, reconcile=False)  # default config: the scan does not run
        assert _blobs(srv) - committed == orphans
        _restart(srv, {}, reconcile=True)  # scan on, default 1 h minimum age: too young
        assert _blobs(srv) - committed == orphans
        assert _last_recovery(srv)["orphans_removed"] == 0

        _restart(srv, {"BLEEPSTORE_RECONCILE_MIN_AGE_S": "0"}, reconcile=True)
        assert _blobs(srv) == committed
        counts = _last_recovery(srv)
        assert counts["orphans_removed"] == 1 and counts["orphans_scanned"] == 2
        s3 = boto3_client(srv.endpoint)
        assert s3.get_object(Bucket="orphans", Key="kept")["Body"].read() == b"committed"
        with pytest.raises(botocore.exceptions.ClientError) as exc:
            s3.head_object(Bucket="orphans", Key="lost")
        assert exc.value.response["Error"]["Code"] == "404"
    finally:
        srv.kill9()
