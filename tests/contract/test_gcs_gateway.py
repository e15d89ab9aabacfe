"""ComposeGateway over GcsCloud against a real gcp-storage-emulator (and, for the answers the
emulator never gives, a canned HTTP server speaking the GCS JSON API's error format).

What the emulator does NOT enforce, so these tests check it on our side instead:
- the 32-source limit of compose (a spy on ``Blob.compose`` asserts every call's size);
- ``maxResults`` / ``pageSize``: every listing is one page, so paging is tested against the
  canned server, which hands out three pages linked by ``nextPageToken``;
- generation preconditions (``ifGenerationMatch``): the gateway uses none (fresh names);
- throttling (429), 5xx and 401/403: only the canned server produces them.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import secrets
import subprocess
import sys
import threading
import tracemalloc
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

pytest.importorskip("google.cloud.storage")
pytest.importorskip("gcp_storage_emulator")

from support.blobs import put
from support.blobs import read as get
from support.gcs_emulator import GcsEmulator  # noqa: E402
from support.server import REPO, free_port  # noqa: E402

from bleepstore import errors  # noqa: E402
from bleepstore.config import GcpStorageConfig  # noqa: E402
from bleepstore.model import Part  # noqa: E402
from bleepstore.storage.backend import BlobMissing  # noqa: E402
from bleepstore.storage.cloud import GatewayError  # noqa: E402
from bleepstore.storage.gateway import ComposeGateway  # noqa: E402
from bleepstore.storage.gcs import MAX_COMPOSE, GcsCloud  # noqa: E402

PREFIX = "gw/"
MiB = 1 << 20


@pytest.fixture(scope="session")
def emulator(gcs_emulator: GcsEmulator) -> GcsEmulator:
    return gcs_emulator  # the session's emulator (tests/conftest.py); fresh buckets


@pytest.fixture
def store(emulator: GcsEmulator) -> GcsCloud:
    return emulator.new_store(PREFIX)


@pytest.fixture
def gw(store: GcsCloud, tmp_path: Path) -> ComposeGateway:
    return ComposeGateway(store, PREFIX, str(tmp_path / "spool"))


def cloud(bucket: str, credentials_file: str = "", **options: Any) -> GcsCloud:
    return GcsCloud(GcpStorageConfig(bucket=bucket, credentials_file=credentials_file),
                    **options)


def upload_parts(gw: ComposeGateway, upload_id: str, count: int) -> tuple[list[Part], bytes]:
    parts, whole = [], bytearray()
    for n in range(1, count + 1):
        body = b"<%d>" % n * (1 + n % 3)
        ref = put(gw, body, "part", upload_id, n)
        parts.append(Part(upload_id, n, len(body), "", "", ref))
        whole += body
    return parts, bytes(whole)


def names_under(store: GcsCloud, prefix: str) -> list[str]:
    return sorted(name for name, _ in store.list(prefix))


# --- round trip ------------------------------------------------------------------------------

def test_write_then_ranged_reads_across_windows(emulator: GcsEmulator, tmp_path: Path) -> None:
    store = emulator.new_store(PREFIX, read_window=256 << 10)  # several windows per read
    gw = ComposeGateway(store, PREFIX, str(tmp_path))
    data = os.urandom(MiB + 300_001)
    ref = put(gw, data)
    assert ref.startswith("blobs/") and gw.size(ref) == len(data)
    assert get(gw, ref) == data
    for offset, length in [(0, 1), (1, 5), ((256 << 10) - 1, 3), (300_000, MiB),
                           (len(data) - 1, 1), (5, len(data) - 5)]:
        assert get(gw, ref, offset, length) == data[offset:offset + length]
    assert get(gw, ref, MiB) == data[MiB:]  # length None: to the end
    reader = gw.open_read(ref, 10, 100_000)
    assert reader.read(7) == data[10:17] and reader.tell() == 7
    assert reader.read() == data[17:100_010]
    reader.close()


def test_zero_byte_object(gw: ComposeGateway) -> None:
    ref = put(gw, b"")
    assert gw.size(ref) == 0
    assert get(gw, ref) == b""
    copied = gw.copy(ref, need_md5=False)
    assert gw.size(copied.data_ref) == 0


def test_server_side_copy_and_range_copy(gw: ComposeGateway) -> None:
    data = os.urandom(3 * MiB + 17)
    src = put(gw, data)
    whole = gw.copy(src, need_md5=False)  # rewrite: no MD5 computed, no bytes through us
    assert whole.data_ref != src and whole.md5_hex == "" and whole.size == len(data)
    assert get(gw, whole.data_ref) == data
    ranged = gw.copy(src, (MiB, 2 * MiB + 4), need_md5=True)  # streamed, new ETag
    assert ranged.md5_hex == hashlib.md5(data[MiB:2 * MiB + 5]).hexdigest()
    assert get(gw, ranged.data_ref) == data[MiB:2 * MiB + 5]
    uid = secrets.token_hex(16)
    part = gw.copy_to_part(src, uid, 7, (0, 9))
    assert part.data_ref.startswith(f"multipart/{uid}/00007-")
    assert get(gw, part.data_ref) == data[:10]


def test_delete_is_idempotent(gw: ComposeGateway) -> None:
    ref = put(gw, b"bye")
    gw.delete(ref)
    gw.delete(ref)
    with pytest.raises(BlobMissing):
        gw.size(ref)


def test_eight_threads_share_one_adapter(gw: ComposeGateway) -> None:
    bodies = [os.urandom(100_000 + i) for i in range(8)]
    results: dict[int, bool] = {}

    def work(i: int) -> None:
        ref = put(gw, bodies[i])
        results[i] = get(gw, ref) == bodies[i] and get(gw, ref, 5, 10) == bodies[i][5:15]

    threads = [threading.Thread(target=work, args=(i,)) for i in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert results == {i: True for i in range(8)}


# --- compose ---------------------------------------------------------------------------------

@pytest.mark.parametrize("count, calls", [(3, 1), (33, 3), (200, 8), (1100, 38)])
def test_compose(gw: ComposeGateway, store: GcsCloud, monkeypatch: pytest.MonkeyPatch,
                 count: int, calls: int) -> None:
    from google.cloud.storage import Blob

    sizes: list[int] = []
    stock = Blob.compose

    def spy(self: Any, sources: list[Any], *args: Any, **kwargs: Any) -> Any:
        sizes.append(len(sources))  # real GCS rejects more than 32; the emulator does not
        assert len(sources) <= MAX_COMPOSE
        return stock(self, sources, *args, **kwargs)

    uid = secrets.token_hex(16)
    parts, whole = upload_parts(gw, uid, count)
    monkeypatch.setattr(Blob, "compose", spy)
    staged = gw.assemble(parts)
    assert len(sizes) == calls  # 1100 -> 35 intermediates -> 2 -> the destination
    assert staged.size == len(whole) and staged.md5_hex == ""
    assert get(gw, staged.data_ref) == whole
    # Only the parts are left in the upload's folder: every intermediate is gone.
    assert names_under(store, f"{PREFIX}multipart/{uid}/") == sorted(
        PREFIX + p.data_ref for p in parts)


def test_failed_compose_leaves_no_intermediates(gw: ComposeGateway, store: GcsCloud) -> None:
    uid = secrets.token_hex(16)
    parts, _ = upload_parts(gw, uid, 70)
    gw.delete(parts[40].data_ref)  # the second group of round 1 fails
    with pytest.raises(BlobMissing):
        gw.assemble(parts)
    left = names_under(store, f"{PREFIX}multipart/{uid}/")
    assert left == sorted(PREFIX + p.data_ref for i, p in enumerate(parts) if i != 40)


def test_compose_over_32_needs_one_upload_folder(store: GcsCloud) -> None:
    with pytest.raises(ValueError):
        store.compose(f"{PREFIX}blobs/x", [f"{PREFIX}multipart/{i:032x}/00001-a" for i in
                                            range(33)])


# --- listing, orphan scan, recovery ----------------------------------------------------------

def test_list_and_blob_refs_honour_the_prefix(emulator: GcsEmulator, tmp_path: Path) -> None:
    # The emulator ignores maxResults/pageSize: this listing is one page (paging is tested
    # against the canned server below).
    store = emulator.new_store("a/")
    mine = ComposeGateway(store, "a/", str(tmp_path))
    theirs = ComposeGateway(store, "ab/", str(tmp_path))  # shares "a" as a string prefix
    obj = put(mine, b"one")
    uid = secrets.token_hex(16)
    part = put(mine, b"two", "part", uid, 1)
    other = put(theirs, b"three")
    store.compose(f"a/multipart/{uid}/c1-00000-feedface", [f"a/{part}"])  # a compose temp
    spool = tmp_path / "f"
    spool.write_bytes(b"x")
    store.upload_file("a/notes.txt", str(spool), 1)  # not a ref: never reported
    assert set(mine.iter_blob_refs(0)) == {obj, part}
    assert set(theirs.iter_blob_refs(0)) == {other}
    assert list(mine.iter_blob_refs(3600)) == []  # all younger than an hour
    listed = dict(store.list("a/"))
    assert len(listed) == 4 and f"ab/{other}" not in listed
    assert all(abs(t - listed[f"a/{obj}"]) < 60 for t in listed.values())


def test_recover_drops_dead_uploads_and_compose_temporaries(gw: ComposeGateway,
                                                             store: GcsCloud) -> None:
    dead, live = secrets.token_hex(16), secrets.token_hex(16)
    dead_parts, _ = upload_parts(gw, dead, 3)
    live_parts, _ = upload_parts(gw, live, 2)
    # What a crash in the middle of a long compose leaves: an intermediate in the folder.
    folder = f"{PREFIX}multipart/{dead}/"
    store.compose(folder + "c1-00000-0badc0de", [PREFIX + p.data_ref for p in dead_parts])
    obj = put(gw, b"committed")
    report = gw.recover(lambda upload_id: upload_id == live)
    assert (report.uploads_removed, report.uploads_kept) == (1, 1)
    assert names_under(store, folder) == []
    assert len(names_under(store, f"{PREFIX}multipart/{live}/")) == 2
    assert get(gw, obj) == b"committed"
    gw.delete(f"upload:{live}")  # AbortMultipartUpload / TTL expiry
    assert names_under(store, f"{PREFIX}multipart/") == []
    gw.delete(f"upload:{live}")  # idempotent


# --- errors ----------------------------------------------------------------------------------

def test_missing_object_is_blob_missing(gw: ComposeGateway, store: GcsCloud) -> None:
    ref = "blobs/00/11/" + "0011" + "ab" * 14
    with pytest.raises(BlobMissing):
        gw.size(ref)
    with pytest.raises(BlobMissing):
        gw.open_read(ref)
    with pytest.raises(BlobMissing):
        gw.open_read(ref, 0, 10)  # raised at open: an error response, not a cut body
    with pytest.raises(BlobMissing):
        gw.copy(ref, need_md5=False)
    with pytest.raises(BlobMissing):
        gw.copy(ref, need_md5=True)
    with pytest.raises(BlobMissing):
        store.copy(PREFIX + ref, PREFIX + "blobs/00/11/" + "00" * 16)
    gw.delete(ref)  # nothing to delete: fine


def test_missing_bucket_is_a_gateway_error(emulator: GcsEmulator, tmp_path: Path,
                                           caplog: pytest.LogCaptureFixture) -> None:
    store = cloud("bs-never-created", endpoint=emulator.endpoint)
    with caplog.at_level(logging.ERROR, logger="bleepstore.storage"):
        with pytest.raises(GatewayError, match="storage.gcp.bucket"):
            store.check()
    assert [r.levelno for r in caplog.records] == [logging.ERROR]
    assert "storage.gcp.bucket" in caplog.records[0].getMessage()
    writer = ComposeGateway(store, "", str(tmp_path)).open_writer("object")
    writer.write(b"x")
    with pytest.raises(GatewayError, match="storage.gcp.bucket"):
        writer.finish()
    with pytest.raises(GatewayError):
        list(store.list(""))


def test_unreachable_endpoint_is_service_unavailable(tmp_path: Path) -> None:
    store = cloud("b", endpoint=f"http://127.0.0.1:{free_port()}", retry_timeout_s=0.3)
    gw = ComposeGateway(store, "", str(tmp_path))
    ref = "blobs/00/11/" + "00" * 16
    for call in (store.check, lambda: gw.size(ref), lambda: gw.open_read(ref, 0, 5),
                 lambda: gw.delete(ref)):
        with pytest.raises(errors.ServiceUnavailable):
            call()
    writer = gw.open_writer("object")
    writer.write(b"data")
    with pytest.raises(errors.ServiceUnavailable):
        writer.finish()
    assert os.listdir(tmp_path) == []  # the spool file went with the failure


@pytest.mark.parametrize("content", ["{}", '{"type": "external_account"}', "not json", None])
def test_unusable_credentials_file_is_a_gateway_error(emulator: GcsEmulator, tmp_path: Path,
                                                      content: str | None) -> None:
    creds = tmp_path / "key.json"
    if content is not None:
        creds.write_text(content)
    store = cloud("b", credentials_file=str(creds), endpoint=emulator.endpoint)
    with pytest.raises(GatewayError, match="storage.gcp.credentials_file"):
        store.check()
    with pytest.raises(GatewayError, match="storage.gcp.credentials_file"):
        store.size("blobs/x")


class Canned:
    """A loopback HTTP server answering every request with ``answer(method, path)``."""

    def __init__(self) -> None:
        self.answer: Callable[[str, str], tuple[int, dict[str, Any]]] = (
            lambda method, path: (500, {}))
        canned = self

        class Handler(BaseHTTPRequestHandler):
            def _reply(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                if length:
                    self.rfile.read(length)
                status, body = canned.answer(self.command, self.path)
                raw = json.dumps(body).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(raw)))
                self.end_headers()
                self.wfile.write(raw)

            do_GET = do_POST = do_PUT = do_DELETE = _reply

            def log_message(self, *args: Any) -> None:
                pass

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.endpoint = f"http://127.0.0.1:{self.httpd.server_address[1]}"
        self.thread = threading.Thread(target=self.httpd.serve_forever, args=(0.05,),
                                       daemon=True)
        self.thread.start()

    def error(self, status: int, message: str) -> None:
        self.answer = lambda method, path: (status, {"error": {
            "code": status, "message": message,
            "errors": [{"message": message, "domain": "global", "reason": "x"}]}})

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


@pytest.fixture
def canned() -> Iterator[Canned]:
    server = Canned()
    yield server
    server.close()


@pytest.mark.parametrize("status, expected, key", [
    (429, errors.SlowDown, None),
    (503, errors.ServiceUnavailable, None),
    (500, errors.ServiceUnavailable, None),
    (401, GatewayError, "storage.gcp.credentials_file"),
    (403, GatewayError, "storage.gcp.credentials_file"),
    (400, errors.InternalError, None),
])
def test_cloud_answers_are_translated(canned: Canned, tmp_path: Path, status: int,
                                      expected: type[Exception], key: str | None,
                                      caplog: pytest.LogCaptureFixture) -> None:
    canned.error(status, "canned answer")
    store = cloud("b", endpoint=canned.endpoint, retry_timeout_s=0.3)
    gw = ComposeGateway(store, "", str(tmp_path))
    ref = "blobs/00/11/" + "00" * 16
    writer = gw.open_writer("object")
    writer.write(b"data")
    calls: list[Callable[[], object]] = [
        store.check, lambda: gw.size(ref), lambda: gw.open_read(ref, 0, 5),
        lambda: gw.delete(ref),
        lambda: gw.copy(ref, need_md5=False), writer.finish,
        lambda: store.compose("d", ["a", "b"]), lambda: list(store.list(""))]
    for call in calls:
        caplog.clear()
        with caplog.at_level(logging.ERROR, logger="bleepstore.storage"):
            with pytest.raises(expected) as info:
                call()
        assert type(info.value) is expected
        if key is not None:
            assert key in str(info.value)
            assert len(caplog.records) == 1 and key in caplog.records[0].getMessage()
        assert "google" not in type(info.value).__module__


def test_bucket_missing_404_on_an_object_is_a_gateway_error(canned: Canned) -> None:
    canned.error(404, "The specified bucket does not exist.")
    store = cloud("b", endpoint=canned.endpoint)
    with pytest.raises(GatewayError, match="storage.gcp.bucket"):
        store.size("blobs/x")
    with pytest.raises(GatewayError, match="storage.gcp.bucket"):
        store.read("blobs/x", 0, 3)
    with pytest.raises(GatewayError, match="storage.gcp.bucket"):
        store.delete("blobs/x")


def test_a_range_past_the_end_is_a_short_stream(canned: Canned) -> None:
    canned.error(416, "The requested range cannot be satisfied.")
    assert list(cloud("b", endpoint=canned.endpoint).read("blobs/x", 10, 5)) == []


def test_list_follows_every_page(canned: Canned) -> None:
    pages = {"": ("2", ["p/a", "p/b"]), "2": ("3", ["p/c"]), "3": (None, ["p/d"])}
    seen: list[str] = []

    def answer(method: str, path: str) -> tuple[int, dict[str, Any]]:
        token = path.split("pageToken=")[1].split("&")[0] if "pageToken=" in path else ""
        seen.append(token)
        nxt, names = pages[token]
        body: dict[str, Any] = {"kind": "storage#objects", "items": [
            {"name": n, "bucket": "b", "updated": "2024-05-01T10:00:00.000Z"} for n in names]}
        if nxt is not None:
            body["nextPageToken"] = nxt
        return 200, body

    canned.answer = answer
    got = list(cloud("b", endpoint=canned.endpoint).list("p/"))
    assert [n for n, _ in got] == ["p/a", "p/b", "p/c", "p/d"] and seen == ["", "2", "3"]
    assert got[0][1] == 1714557600.0


# --- memory, configuration, pre-fork ---------------------------------------------------------

def test_memory_stays_flat_for_a_64_mib_object(gw: ComposeGateway) -> None:
    size = 64 * MiB
    block = os.urandom(MiB)
    expect = hashlib.md5()
    tracemalloc.start()
    try:
        writer = gw.open_writer("object")
        for i in range(size // MiB):
            chunk = i.to_bytes(8, "big") + block[8:]
            expect.update(chunk)
            writer.write(chunk)
        ref = writer.finish().data_ref
        _, up_peak = tracemalloc.get_traced_memory()
        tracemalloc.reset_peak()
        got = hashlib.md5()
        for chunk in gw.open_read(ref):
            got.update(chunk)
        _, down_peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    gw.delete(ref)
    print(f"tracemalloc peaks: upload {up_peak / MiB:.1f} MiB, download {down_peak / MiB:.1f} MiB")
    assert got.hexdigest() == expect.hexdigest()
    # One 8 MiB upload request / download window (and the SDK's copies of it) at a time.
    assert up_peak < 24 * MiB, up_peak
    assert down_peak < 24 * MiB, down_peak


def test_built_from_config_with_the_emulator_environment(
        emulator: GcsEmulator, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import yaml

    from bleepstore.config import load
    from bleepstore.runtime import build_storage

    storage = {**emulator.server_storage_config(), "spool_dir": str(tmp_path / "spool")}
    assert storage["backend"] == "gcp"
    path = tmp_path / "bleepstore.yaml"
    path.write_text(yaml.safe_dump({"storage": storage}))
    cfg = load(path, environ={})
    for name, value in emulator.env.items():  # what a server started by a test inherits
        monkeypatch.setenv(name, value)
    gw = build_storage(cfg)  # as a gunicorn worker builds it
    assert isinstance(gw, ComposeGateway) and isinstance(gw.store, GcsCloud)
    assert gw.prefix == storage["gcp"]["prefix"] == gw.store.prefix
    gw.check()
    ref = put(gw, b"via STORAGE_EMULATOR_HOST")
    assert get(gw, ref) == b"via STORAGE_EMULATOR_HOST"
    assert list(gw.iter_blob_refs(0)) == [ref]


def test_construction_is_lazy_and_the_sdk_is_imported_lazily() -> None:
    store = cloud("b")  # no credentials anywhere: building a client now would fail
    assert store._state is None
    code = ("import sys, bleepstore.storage.gcs, bleepstore.storage.gateway; "
            "sys.exit(any(m.startswith('google') for m in sys.modules))")
    assert subprocess.run([sys.executable, "-c", code], cwd=REPO, timeout=60).returncode == 0


def test_a_forked_child_builds_its_own_client(store: GcsCloud) -> None:
    store.check()  # the "master" builds a client
    assert store._state is not None
    pid, client = store._state[0], store._state[1]
    store._state = (pid - 1, *store._state[1:])  # as seen from a forked child
    store.check()
    assert store._state[0] == os.getpid() and store._state[1] is not client
