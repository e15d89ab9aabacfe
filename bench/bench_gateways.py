#!/usr/bin/env python3
"""Gateway benchmark: BleepStore (gunicorn, the production way) in front of each cloud
emulator, next to the emulator's own speed through the same SDK adapter, in the same run.

For each backend (``local`` is the reference: BleepStore on its own disk):
- raw reference (no BleepStore): the adapter BleepStore uses (``new_store().upload_file``
  / ``.read``) uploading and downloading the same file straight to the emulator; for
  ``local``, a Python copy of the file with fsync and a read back (the disk);
- a real BleepStore server on a fresh bucket/container of that emulator: single-stream PUT
  and GET of the file (presigned URLs, ``http.client``, as ``bench/run.py``), then a
  multipart upload of it with boto3 (16 MiB parts, 8 threads);
- the workers' peak RSS (``VmHWM`` of ``Server.worker_pids()``), after a warm-up and after
  each transfer;
- GCS only: a 10,000-part compose through ``ComposeGateway.assemble()`` (tiny parts).

    python bench/bench_gateways.py [--size-mib 1024] [--backends local,aws,gcs,azure]

Emulators: moto_server (aws), gcp-storage-emulator (gcs, in memory), Azurite (azure), all
started by the ``tests/support`` classes on 127.0.0.1. Everything is stopped at the end,
also on an error or SIGTERM; all data lives in one ``/tmp/bleepbench-gw-*`` directory,
removed at the end. MB = 10^6 bytes (throughput), MiB = 2^20 bytes (RSS).
Not part of the test suite.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import secrets
import shutil
import signal
import sys
import tempfile
import threading
import time
import traceback
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

BENCH = Path(__file__).resolve().parent
REPO = BENCH.parent
sys.path.insert(0, str(REPO / "tests"))
sys.path.insert(0, str(BENCH))

from benchlib import MB, MiB, first_200, stream_get, stream_put  # noqa: E402
from presign import Presigner  # noqa: E402
from refs import python_write_fsync  # noqa: E402
from support.clients import boto3_client  # noqa: E402
from support.server import ACCESS_KEY, SECRET_KEY, Server  # noqa: E402

BACKENDS = ("local", "aws", "gcs", "azure")
BUCKET = "bench"
PART_MIB = 16
MP_THREADS = 8
COMPOSE_PARTS = 10_000
COMPOSE_UPLOAD_THREADS = 8
MAX_COMPOSE = 32  # GCS's limit on sources per compose call (bleepstore.storage.gcs)


def log(msg: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


def load1() -> float:
    return os.getloadavg()[0]


# ---------------------------------------------------------------- emulators

def make_emulator(backend: str, root: Path) -> Any:
    """The tests/support emulator of ``backend`` (not started); None for ``local``."""
    if backend == "aws":
        from support.moto_upstream import MotoUpstream
        return MotoUpstream(root)
    if backend == "gcs":
        from support.gcs_emulator import GcsEmulator
        return GcsEmulator(root)
    if backend == "azure":
        from support.azurite import Azurite
        return Azurite(root)
    return None


# ---------------------------------------------------------------- RSS

def proc_status_kib(pid: int, field: str) -> int | None:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith(field + ":"):
                return int(line.split()[1])
    except OSError:
        return None
    return None


def workers_mib(pids: list[int], field: str) -> dict[int, float]:
    out = {}
    for pid in pids:
        kib = proc_status_kib(pid, field)
        if kib is not None:
            out[pid] = kib / 1024
    return out


# ---------------------------------------------------------------- raw references

def raw_disk(src: Path, work: Path) -> tuple[float, float]:
    """``local``: the file copied in 1 MiB blocks + fsync, then read back (1 MiB reads)."""
    dst = work / "raw-copy.bin"
    size = src.stat().st_size
    buf = bytearray(MiB)
    t0 = time.perf_counter()
    with src.open("rb", buffering=0) as fin:
        fd = os.open(dst, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        try:
            while n := fin.readinto(buf):
                os.write(fd, memoryview(buf)[:n])
            os.fsync(fd)
        finally:
            os.close(fd)
    up = size / (time.perf_counter() - t0) / MB
    t0 = time.perf_counter()
    got = 0
    with dst.open("rb", buffering=0) as f:
        while n := f.readinto(buf):
            got += n
    down = size / (time.perf_counter() - t0) / MB
    dst.unlink()
    if got != size:
        raise RuntimeError(f"disk read back {got} of {size} bytes")
    return up, down


def raw_cloud(emu: Any, src: Path) -> tuple[float, float]:
    """The adapter BleepStore uses, on a fresh bucket, without BleepStore."""
    store = emu.new_store("raw/")
    size = src.stat().st_size
    name = "raw/blobs/00/00/" + secrets.token_hex(16)
    t0 = time.perf_counter()
    store.upload_file(name, str(src), size)
    up = size / (time.perf_counter() - t0) / MB
    t0 = time.perf_counter()
    got = 0
    for chunk in store.read(name, 0, size):
        got += len(chunk)
    down = size / (time.perf_counter() - t0) / MB
    if got != size:
        raise RuntimeError(f"raw read returned {got} of {size} bytes")
    store.delete(name)
    return up, down


# ---------------------------------------------------------------- BleepStore

def wait_workers(srv: Server, timeout: float = 20.0) -> list[int]:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        pids = srv.worker_pids()
        if len(pids) >= srv.workers:
            return pids
        time.sleep(0.05)
    raise TimeoutError(f"{srv.workers} workers not up after {timeout}s")


def warm_up(srv: Server, p: Presigner) -> None:
    """Small PUT/GETs on fresh connections (so both workers most likely serve some): each
    worker imports its SDK and builds its client on first use; the baseline RSS is taken
    after this, so the transfer figures are not the SDK's import cost."""
    import http.client

    def one(i: int) -> None:
        for method, body in (("PUT", b"w" * 4096), ("GET", None)):
            conn = http.client.HTTPConnection("127.0.0.1", srv.port, timeout=60)
            try:
                conn.request(method, p.target(method, BUCKET, f"warm/{i}"), body=body)
                resp = conn.getresponse()
                resp.read()
                if resp.status != 200:
                    raise RuntimeError(f"warm-up {method} -> {resp.status}")
            finally:
                conn.close()

    with ThreadPoolExecutor(8) as ex:
        list(ex.map(one, range(32)))


def bleepstore_runs(srv: Server, src: Path, md5_hex: str, res: dict[str, Any]) -> None:
    from boto3.s3.transfer import TransferConfig

    size = src.stat().st_size
    first_200(srv.port, "/healthz", time.monotonic(), srv.proc, 30)
    pids = wait_workers(srv)
    s3 = boto3_client(srv.endpoint, read_timeout=900, max_pool_connections=MP_THREADS * 2)
    s3.create_bucket(Bucket=BUCKET)
    p = Presigner(srv.endpoint, ACCESS_KEY, SECRET_KEY)
    warm_up(srv, p)
    time.sleep(0.5)
    res["rss_idle_mib"] = max(workers_mib(pids, "VmRSS").values())
    res["hwm_mib"] = {"warm-up": max(workers_mib(pids, "VmHWM").values())}

    res["put_MBps"] = stream_put(srv.port, p.target("PUT", BUCKET, "single"), src)
    res["hwm_mib"]["PUT"] = max(workers_mib(pids, "VmHWM").values())
    etag = s3.head_object(Bucket=BUCKET, Key="single")["ETag"].strip('"')
    if etag != md5_hex:
        raise RuntimeError(f"single PUT ETag {etag} != file MD5 {md5_hex}")

    res["get_MBps"] = stream_get(srv.port, p.target("GET", BUCKET, "single"), size)
    res["hwm_mib"]["GET"] = max(workers_mib(pids, "VmHWM").values())

    tc = TransferConfig(multipart_threshold=1, multipart_chunksize=PART_MIB * MiB,
                        max_concurrency=MP_THREADS, use_threads=True)
    t0 = time.perf_counter()
    s3.upload_file(str(src), BUCKET, "multi", Config=tc)
    res["mp_MBps"] = size / (time.perf_counter() - t0) / MB
    res["hwm_mib"]["multipart"] = max(workers_mib(pids, "VmHWM").values())
    head = s3.head_object(Bucket=BUCKET, Key="multi")
    parts = -(-size // (PART_MIB * MiB))
    if head["ContentLength"] != size or not head["ETag"].strip('"').endswith(f"-{parts}"):
        raise RuntimeError(f"multipart object: {head['ContentLength']} bytes, "
                           f"ETag {head['ETag']} (expected {size} bytes, {parts} parts)")
    res["rss_after_mib"] = max(workers_mib(pids, "VmRSS").values())
    now = srv.worker_pids()
    if sorted(now) != sorted(pids):
        res["notes"].append(f"worker pids changed during the run: {pids} -> {now} "
                            "(a worker died or was replaced: its peak is lost)")
    res["rss_peak_mib"] = max(res["hwm_mib"].values())
    for key in ("single", "multi"):
        s3.delete_object(Bucket=BUCKET, Key=key)


# ---------------------------------------------------------------- GCS compose

def compose_plan(n: int) -> list[int]:
    """Compose calls per round for ``n`` sources (32 per call, chained)."""
    rounds = []
    while n > MAX_COMPOSE:
        n = -(-n // MAX_COMPOSE)
        rounds.append(n)
    return rounds + [1]


def gcs_compose(emu: Any, spool: Path, count: int) -> dict[str, Any]:
    """``count`` tiny parts uploaded (not timed), then ``ComposeGateway.assemble()`` timed;
    the composed object is read back and compared."""
    from bleepstore.model import Part
    from bleepstore.storage.gateway import ComposeGateway

    prefix = "cmp/"
    gw = ComposeGateway(emu.new_store(prefix), prefix, str(spool))
    uid = secrets.token_hex(16)

    def body(n: int) -> bytes:
        return b"<%d>" % n

    def put(n: int) -> Part:
        data = body(n)
        writer = gw.open_writer("part", uid, n)
        try:
            writer.write(data)
            staged = writer.finish()
        except BaseException:
            writer.abort()
            raise
        return Part(uid, n, staged.size, "", "", staged.data_ref)

    t0 = time.perf_counter()
    with ThreadPoolExecutor(COMPOSE_UPLOAD_THREADS) as ex:
        parts = list(ex.map(put, range(1, count + 1)))
    upload_s = time.perf_counter() - t0
    t0 = time.perf_counter()
    staged = gw.assemble(parts)
    compose_s = time.perf_counter() - t0
    whole = b"".join(body(n) for n in range(1, count + 1))
    reader = gw.open_read(staged.data_ref)
    try:
        back = b"".join(reader)
    finally:
        reader.close()
    if staged.size != len(whole) or back != whole:
        raise RuntimeError(f"composed object differs ({len(back)} bytes, {len(whole)} "
                           "expected)")
    left = sum(1 for _ in gw.store.list(f"{prefix}multipart/{uid}/"))
    return {"parts": count, "compose_s": compose_s, "upload_parts_s": upload_s,
            "calls": compose_plan(count), "bytes": len(whole),
            "left_in_folder": left}


# ---------------------------------------------------------------- one backend

class Bench:
    def __init__(self, args: argparse.Namespace) -> None:
        self.args = args
        self.size = args.size_mib * MiB
        self.tmp = Path(tempfile.mkdtemp(prefix="bleepbench-gw-", dir="/tmp"))
        self.running: list[Any] = []  # started servers/emulators, stopped in finally
        self.lock = threading.Lock()

    def stop_all(self) -> None:
        for thing in reversed(self.running):
            try:
                thing.stop()
            except Exception as exc:  # noqa: BLE001  keep stopping the others
                log(f"stop {type(thing).__name__}: {exc!r}")
        self.running.clear()

    def backend(self, name: str, src: Path, md5_hex: str) -> dict[str, Any]:
        res: dict[str, Any] = {"backend": name, "notes": [], "load1_before": load1()}
        root = self.tmp / name
        root.mkdir()
        t_start = time.monotonic()
        srv: Server | None = None
        try:
            emu = make_emulator(name, root / "emulator")
            if emu is not None:
                log(f"{name}: starting {type(emu).__name__}")
                emu.start()
                self.running.append(emu)
            log(f"{name}: raw reference ({'disk copy' if emu is None else 'adapter'})")
            if emu is None:
                res["raw_up_MBps"], res["raw_down_MBps"] = raw_disk(src, root)
            else:
                res["raw_up_MBps"], res["raw_down_MBps"] = raw_cloud(emu, src)
            extra = {"storage": emu.server_storage_config()} if emu is not None else {}
            srv = Server(root / "server", workers=self.args.workers, extra_config=extra,
                         env=dict(emu.env) if emu is not None else {})
            log(f"{name}: BleepStore ({srv.workers} workers x {srv.threads} threads): "
                f"PUT, GET, multipart")
            srv.start()
            self.running.append(srv)
            bleepstore_runs(srv, src, md5_hex, res)
            srv.stop()
            self.running.remove(srv)
            if name == "gcs" and self.args.compose_parts:
                log(f"gcs: {self.args.compose_parts}-part compose via "
                    "ComposeGateway.assemble()")
                res["compose"] = gcs_compose(emu, root / "spool", self.args.compose_parts)
        except Exception as exc:  # keep going with the other backends
            res["error"] = f"{type(exc).__name__}: {exc}"
            log(f"{name} failed: {exc!r}\n{traceback.format_exc(limit=6)}")
            if srv is not None and srv.log_path.exists():
                tail = srv.log_text().splitlines()[-15:]
                log(f"{name}: server log tail:\n" + "\n".join(tail))
        finally:
            self.stop_all()
            shutil.rmtree(root, ignore_errors=True)
        res["load1_after"] = load1()
        res["elapsed_s"] = time.monotonic() - t_start
        log(f"{name}: done in {res['elapsed_s']:.0f} s")
        return res

    def run(self) -> list[dict[str, Any]]:
        results = []
        try:
            src = self.tmp / "src.bin"
            log(f"source file: {self.args.size_mib} MiB (Python write + fsync)")
            python_write_fsync(src, self.size)
            h = hashlib.md5()
            with src.open("rb") as f:
                while chunk := f.read(8 * MiB):
                    h.update(chunk)
            for name in self.args.backends:
                results.append(self.backend(name, src, h.hexdigest()))
        finally:
            self.stop_all()
            shutil.rmtree(self.tmp, ignore_errors=True)
        return results


# ---------------------------------------------------------------- report

def fmt(v: float | None, nd: int = 1) -> str:
    return "-" if v is None else f"{v:,.{nd}f}"


def report(args: argparse.Namespace, results: list[dict[str, Any]], elapsed: float) -> str:
    L = [f"BleepStore gateways: {args.size_mib} MiB object, multipart in {PART_MIB} MiB parts "
         f"x {MP_THREADS} threads, {args.workers} gunicorn workers x 8 threads; "
         f"{os.cpu_count()} CPUs; MB/s = 10^6 B/s",
         "raw = the same file straight through the adapter/SDK to the emulator, no "
         "BleepStore (local: Python copy + fsync, read back)", ""]
    head = (f"{'backend':8s} {'PUT MB/s':>9s} {'GET MB/s':>9s} {'multipart MB/s':>15s} "
            f"{'raw up MB/s':>12s} {'raw down MB/s':>14s} {'worker RSS peak MiB':>20s}")
    L.append(head)
    L.append("-" * len(head))
    for r in results:
        if "error" in r and "mp_MBps" not in r:
            L.append(f"{r['backend']:8s} {fmt(r.get('put_MBps')):>9s} "
                     f"{fmt(r.get('get_MBps')):>9s} {fmt(r.get('mp_MBps')):>15s} "
                     f"{fmt(r.get('raw_up_MBps')):>12s} {fmt(r.get('raw_down_MBps')):>14s} "
                     f"{'-':>20s}  ERROR")
            continue
        L.append(f"{r['backend']:8s} {fmt(r['put_MBps']):>9s} {fmt(r['get_MBps']):>9s} "
                 f"{fmt(r['mp_MBps']):>15s} {fmt(r['raw_up_MBps']):>12s} "
                 f"{fmt(r['raw_down_MBps']):>14s} {fmt(r['rss_peak_mib']):>20s}")
    L.append("")
    L.append("worker RSS, max over workers, MiB: VmRSS after warm-up | VmHWM after warm-up, "
             "PUT, GET, multipart | VmRSS at the end")
    for r in results:
        if "hwm_mib" in r:
            hwm = r["hwm_mib"]
            L.append(f"  {r['backend']:8s} {fmt(r['rss_idle_mib'])} | "
                     + ", ".join(f"{k} {fmt(hwm[k])}" for k in hwm)
                     + f" | {fmt(r.get('rss_after_mib'))}")
    L.append("")
    L.append("1-minute load average before -> after each backend (2 CPUs: > 2 = contended)")
    L.append("  " + ", ".join(f"{r['backend']} {r['load1_before']:.2f} -> "
                              f"{r['load1_after']:.2f} ({r['elapsed_s']:.0f} s)"
                              for r in results))
    for r in results:
        c = r.get("compose")
        if c:
            L.append("")
            L.append(f"GCS compose of {c['parts']:,} parts ({c['bytes']:,} bytes) through "
                     f"ComposeGateway.assemble(): {c['compose_s']:.2f} s")
            L.append(f"  compose calls per round: {' + '.join(map(str, c['calls']))}; "
                     f"objects left in the upload folder: {c['left_in_folder']:,} "
                     f"(the parts); uploading the parts (not timed above): "
                     f"{c['upload_parts_s']:.1f} s with {COMPOSE_UPLOAD_THREADS} threads")
    for r in results:
        for note in r["notes"]:
            L.append(f"note: {r['backend']}: {note}")
        if "error" in r:
            L.append(f"error: {r['backend']}: {r['error']}")
    L.append("")
    L.append(f"(elapsed {elapsed:.0f} s)")
    return "\n".join(L)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--size-mib", type=int, default=1024,
                    help="object size for PUT/GET/multipart/raw (default 1024)")
    ap.add_argument("--backends", default=",".join(BACKENDS),
                    help="comma-separated subset of " + ",".join(BACKENDS))
    ap.add_argument("--compose-parts", type=int, default=COMPOSE_PARTS,
                    help="parts of the GCS compose (0 skips it; default 10000)")
    ap.add_argument("--workers", type=int, default=2, help="gunicorn workers (default 2)")
    args = ap.parse_args()
    args.backends = [b.strip() for b in args.backends.split(",") if b.strip()]
    unknown = set(args.backends) - set(BACKENDS)
    if unknown or not args.backends:
        ap.error(f"unknown backend(s) {sorted(unknown)}; choose from {','.join(BACKENDS)}")
    if args.size_mib < 1:
        ap.error("--size-mib must be >= 1")
    if not 0 <= args.compose_parts <= 10_000:
        ap.error("--compose-parts must be 0..10000 (S3's part number limit)")
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    t0 = time.monotonic()
    results = Bench(args).run()
    print(report(args, results, time.monotonic() - t0))
    print(json.dumps({"size_mib": args.size_mib, "results": results}, default=str))


if __name__ == "__main__":
    main()
