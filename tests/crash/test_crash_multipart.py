"""Crash-only multipart (storage.md §5.2, §5.3, §5.7): SIGKILL the worker inside
CompleteMultipartUpload (BLEEPSTORE_FAULT) or the whole gunicorn group from outside,
restart, and check the key is absent-and-completable or complete-and-correct, and that
expired uploads and their part blobs are reaped by every start and by maintenance.
"""

from __future__ import annotations

import hashlib
import random
import secrets
import sqlite3
import threading
import time
from pathlib import Path
from typing import Any

import botocore.exceptions
import pytest
from support.clients import boto3_client
from support.layout import blob_refs
from support.server import Server

MiB = 1024 * 1024
PART = 8 * MiB
OBJECT_SIZE = 200 * MiB
KEY = "crash/big.bin"


def client(server: Server) -> Any:
    """No retries at all: a retried Complete would hide the crash behind a replay."""
    return boto3_client(server.endpoint, read_timeout=120, connect_timeout=5,
                        max_attempts=0)


def restart(server: Server, env: dict[str, str] | None = None) -> Server:
    server.kill9()
    server.env = env or {}
    return server.start()


def part_files(root: Path) -> list[Path]:
    return [p for p in (root / "objects" / "multipart").rglob("*") if p.is_file()]


def staging_files(root: Path) -> list[Path]:
    return [p for p in (root / "objects" / ".tmp").iterdir() if p.is_file()]


@pytest.fixture(scope="module")
def source(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, str, str]:
    """A 200 MiB file on disk, its sha256 and its 25-part composite ETag."""
    path = tmp_path_factory.mktemp("crash-src") / "src.bin"
    rng, sha, md5s = random.Random(200), hashlib.sha256(), []
    with path.open("wb") as f:
        for _ in range(OBJECT_SIZE // PART):
            block = rng.randbytes(PART)
            f.write(block)
            sha.update(block)
            md5s.append(hashlib.md5(block).digest())
    etag = f'"{hashlib.md5(b"".join(md5s)).hexdigest()}-{len(md5s)}"'
    return path, sha.hexdigest(), etag


def upload_all_parts(s3: Any, src: Path) -> tuple[str, list[dict[str, Any]]]:
    uid = s3.create_multipart_upload(Bucket="crash", Key=KEY)["UploadId"]
    parts = []
    with src.open("rb") as f:
        for number in range(1, OBJECT_SIZE // PART + 1):
            etag = s3.upload_part(Bucket="crash", Key=KEY, UploadId=uid, PartNumber=number,
                                  Body=f.read(PART))["ETag"]
            parts.append({"PartNumber": number, "ETag": etag})
    return uid, parts


def complete(s3: Any, uid: str, parts: list[dict[str, Any]]) -> Any:
    return s3.complete_multipart_upload(Bucket="crash", Key=KEY, UploadId=uid,
                                        MultipartUpload={"Parts": parts})


def streamed_sha256(s3: Any) -> str:
    h = hashlib.sha256()
    for chunk in s3.get_object(Bucket="crash", Key=KEY)["Body"].iter_chunks(4 * MiB):
        h.update(chunk)
    return h.hexdigest()


def kill_when_assembling(server: Server, s3: Any, uid: str,
                         parts: list[dict[str, Any]]) -> None:
    """Kill the whole group from outside once the assembly staging file passes 40 MiB."""
    outcome: list[BaseException | Any] = []
    caller = threading.Thread(target=lambda: outcome.append(_try(complete, s3, uid, parts)))
    caller.start()
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and caller.is_alive():
        if any(p.stat().st_size > 40 * MiB for p in staging_files(server.data)):
            break
        time.sleep(0.005)
    server.kill9()
    caller.join(30)


def _try(fn: Any, *args: Any) -> Any:
    try:
        return fn(*args)
    except Exception as exc:  # the connection dies with the server: that is the point
        return exc


def check_recovered(server: Server, src: tuple[Path, str, str], uid: str,
                    parts: list[dict[str, Any]]) -> str:
    """After a full restart: absent + completable, or present + correct + replayable."""
    _, sha, etag = src
    s3 = client(server)
    try:
        head = s3.head_object(Bucket="crash", Key=KEY)
    except botocore.exceptions.ClientError as exc:
        assert exc.response["Error"]["Code"] == "404"
        listed = s3.list_parts(Bucket="crash", Key=KEY, UploadId=uid)["Parts"]
        assert [p["ETag"] for p in listed] == [p["ETag"] for p in parts]
        state = "absent"
    else:
        assert (head["ContentLength"], head["ETag"]) == (OBJECT_SIZE, etag)
        assert streamed_sha256(s3) == sha
        state = "present"
    assert complete(s3, uid, parts)["ETag"] == etag  # completes now, or replays
    assert complete(s3, uid, parts)["ETag"] == etag  # and a retry replays
    assert s3.head_object(Bucket="crash", Key=KEY)["ETag"] == etag
    assert streamed_sha256(s3) == sha
    assert not (server.data / "objects" / "multipart" / uid).exists()  # released
    return state


CASES = [("assemble.middle", "absent"), ("blob.before_rename", "absent"),
         ("blob.after_rename", "absent"), ("complete.after_commit", "present"),
         ("outside-kill", "either")]  # killed mid-assembly unless the disk outran us


@pytest.mark.slow
@pytest.mark.parametrize("fault,expected", CASES, ids=[c[0] for c in CASES])
def test_kill_during_complete(tmp_path: Path, source: tuple[Path, str, str], fault: str,
                              expected: str) -> None:
    server = Server(tmp_path, workers=2, threads=4)
    server.start()
    try:
        s3 = client(server)
        s3.create_bucket(Bucket="crash")
        uid, parts = upload_all_parts(s3, source[0])
        stray = s3.create_multipart_upload(Bucket="crash", Key="stray")["UploadId"]
        s3.upload_part(Bucket="crash", Key="stray", UploadId=stray, PartNumber=1, Body=b"s")
        if fault == "outside-kill":
            kill_when_assembling(server, client(server), uid, parts)
        else:
            restart(server, {"BLEEPSTORE_FAULT": fault})
            with pytest.raises((botocore.exceptions.ConnectionError,
                                botocore.exceptions.HTTPClientError)):
                complete(client(server), uid, parts)  # the worker died mid-request
            time.sleep(0.5)  # gunicorn replaces the worker; the master keeps serving
            state = "present" if _exists(client(server)) else "absent"
            assert state == expected
        restart(server)  # full crash: master and workers, then a recovering start
        assert staging_files(server.data) == []
        assert expected in (check_recovered(server, source, uid, parts), "either")
        server.extra_config = {"storage": {"multipart_ttl_s": 0}}
        restart(server)
        assert part_files(server.data) == []  # the stray upload's lease ran out
        s3 = client(server)
        assert "Uploads" not in s3.list_multipart_uploads(Bucket="crash")
        assert s3.head_object(Bucket="crash", Key=KEY)["ETag"] == source[2]
        # an object blob staged before the crash (a composite of the part files) is gone
        assert blob_refs(server.data / "objects") == object_refs(server)
    finally:
        server.kill9()


def object_refs(server: Server) -> set[str]:
    with sqlite3.connect(f"file:{server.db_path}?mode=ro", uri=True) as conn:
        return {r[0] for r in conn.execute("SELECT data_ref FROM objects")}


def _exists(s3: Any) -> bool:
    try:
        s3.head_object(Bucket="crash", Key=KEY)
    except botocore.exceptions.ClientError:
        return False
    return True


def _plant_orphans(root: Path) -> tuple[Path, Path]:
    orphan = root / "objects" / "multipart" / secrets.token_hex(16)
    orphan.mkdir(parents=True)
    (orphan / f"00001-{secrets.token_hex(16)}").write_bytes(b"left over")
    stray = root / "objects" / ".tmp" / secrets.token_hex(16)
    stray.write_bytes(b"half written")
    return orphan, stray


def test_start_reaps_expired_uploads_and_orphans(tmp_path: Path) -> None:
    ttl = 8
    server = Server(tmp_path, workers=1, threads=4,
                    extra_config={"storage": {"multipart_ttl_s": ttl}})
    server.start()
    try:
        s3 = client(server)
        s3.create_bucket(Bucket="crash")
        born = time.monotonic()
        uid = s3.create_multipart_upload(Bucket="crash", Key="lease")["UploadId"]
        for n in (1, 2):
            s3.upload_part(Bucket="crash", Key="lease", UploadId=uid, PartNumber=n, Body=b"p")
        orphan, stray = _plant_orphans(server.data)
        restart(server)
        assert not orphan.exists() and not stray.exists()
        if time.monotonic() - born < ttl - 1:  # still within its lease: it survives
            listed = client(server).list_parts(Bucket="crash", Key="lease", UploadId=uid)
            assert [p["PartNumber"] for p in listed["Parts"]] == [1, 2]
            assert len(part_files(server.data)) == 2
        time.sleep(max(0.0, born + ttl + 1 - time.monotonic()))
        restart(server)
        s3 = client(server)
        with pytest.raises(botocore.exceptions.ClientError) as exc:
            s3.list_parts(Bucket="crash", Key="lease", UploadId=uid)
        assert exc.value.response["Error"]["Code"] == "NoSuchUpload"
        assert "Uploads" not in s3.list_multipart_uploads(Bucket="crash")
        assert part_files(server.data) == []
        assert list((server.data / "objects" / "multipart").iterdir()) == []
    finally:
        server.kill9()


def test_maintenance_loop_reaps_while_running(tmp_path: Path) -> None:
    server = Server(tmp_path, workers=1, threads=4, extra_config={
        "storage": {"multipart_ttl_s": 1, "maintenance_interval_s": 1}})
    server.start()
    try:
        s3 = client(server)
        s3.create_bucket(Bucket="crash")
        uid = s3.create_multipart_upload(Bucket="crash", Key="lease")["UploadId"]
        s3.upload_part(Bucket="crash", Key="lease", UploadId=uid, PartNumber=1, Body=b"p")
        deadline = time.monotonic() + 15
        while time.monotonic() < deadline and part_files(server.data):
            time.sleep(0.2)
        assert part_files(server.data) == []
        with pytest.raises(botocore.exceptions.ClientError) as exc:
            s3.list_parts(Bucket="crash", Key="lease", UploadId=uid)
        assert exc.value.response["Error"]["Code"] == "NoSuchUpload"
    finally:
        server.kill9()
