"""The orphan scan (storage.md §5.5, §5.7 "after rename, before commit"): a worker killed
between the blob rename and the metadata commit leaves a blob no row references. At run
time (``POST /admin/storage/reconcile``) the scan keeps its age guard, because a young
blob may belong to a write in flight; every start (default configuration) deletes it
whatever its age, because the start holds the data-dir lock and no writer exists.
"""

from __future__ import annotations

import json
import urllib.request
from pathlib import Path
from typing import Any

import botocore.exceptions
import pytest
from support.clients import boto3_client
from support.server import Server, free_port

TOKEN = "reconcile-admin-token"
KEPT = b"committed" * 10_000  # above storage.inline_max_bytes: a blob file, not a row


def _blobs(srv: Server) -> set[str]:
    root = srv.data / "objects"
    return {str(p.relative_to(root)) for p in (root / "blobs").rglob("*") if p.is_file()}


def _last_recovery(srv: Server) -> dict[str, int]:
    lines = [line for line in srv.log_text().splitlines() if '"recovery complete"' in line]
    return dict(json.loads(lines[-1]))


def _restart(srv: Server, env: dict[str, str], storage: dict[str, Any]) -> None:
    srv.kill9()
    srv.env = env
    srv.extra_config["storage"] = storage
    srv.start()


def _admin_reconcile(srv: Server) -> dict[str, int]:
    port = srv.extra_config["server"]["admin_port"]
    req = urllib.request.Request(f"http://127.0.0.1:{port}/admin/storage/reconcile",
                                 method="POST", headers={"Authorization": f"Bearer {TOKEN}"})
    with urllib.request.urlopen(req, timeout=30) as resp:
        return dict(json.loads(resp.read()))


def test_orphan_of_a_worker_killed_after_rename(tmp_path: Path) -> None:
    srv = Server(tmp_path, workers=1, threads=2, extra_config={
        "server": {"admin_port": free_port(), "admin_token": TOKEN}})
    srv.start()
    try:
        s3 = boto3_client(srv.endpoint)
        s3.create_bucket(Bucket="orphans")
        s3.put_object(Bucket="orphans", Key="kept", Body=KEPT)
        committed = _blobs(srv)
        _restart(srv, {"BLEEPSTORE_FAULT": "blob.after_rename"}, {})
        with pytest.raises(botocore.exceptions.BotoCoreError):
            boto3_client(srv.endpoint, max_attempts=0).put_object(
                Bucket="orphans", Key="lost", Body=b"never acknowledged" * 5_000)
        orphans = _blobs(srv) - committed
        assert len(orphans) == 1  # renamed into place, then the worker died

        # run time: the orphan is younger than the minimum age, so it may be in flight
        assert _admin_reconcile(srv)["deleted"] == 0
        assert _blobs(srv) - committed == orphans
        _restart(srv, {}, {"reconcile_on_startup": False})  # the opt-out still works
        assert _blobs(srv) - committed == orphans

        _restart(srv, {}, {})  # the default: collected at start, young as it is
        assert _blobs(srv) == committed
        counts = _last_recovery(srv)
        assert counts["orphans_removed"] == 1 and counts["orphans_scanned"] == 2
        s3 = boto3_client(srv.endpoint)
        assert s3.get_object(Bucket="orphans", Key="kept")["Body"].read() == KEPT
        with pytest.raises(botocore.exceptions.ClientError) as exc:
            s3.head_object(Bucket="orphans", Key="lost")
        assert exc.value.response["Error"]["Code"] == "404"
    finally:
        srv.kill9()
