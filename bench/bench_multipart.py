#!/usr/bin/env python3
"""Multipart upload benchmark: boto3 ``upload_file`` (parallel parts) into BleepStore,
next to the disk's own write + fsync of the same bytes measured in the same run.

For each repeat: MB/s of the whole managed upload (create, parts, complete), the server's
CPU seconds (master + workers, from /proc) and the client's; then the time of
CompleteMultipartUpload alone (low-level calls, only the complete timed) and a GET of the
multipart object against a GET of the same bytes PUT in one request (both presigned, read
by http.client). Everything lives in one temporary directory, removed at the end.

    python bench/bench_multipart.py [--size-mib 1024] [--part-mib 64] [--concurrency 8]
                                    [--repeats 3] [--workers 2]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

BENCH = Path(__file__).resolve().parent
sys.path.insert(0, str(BENCH.parent / "tests"))
sys.path.insert(0, str(BENCH))

from bench_small import cpu_s, log, tree  # noqa: E402
from bench_transfer import complete_time, make_file  # noqa: E402
from benchlib import MB, MiB, stream_get, stream_put  # noqa: E402
from presign import Presigner  # noqa: E402
from support.clients import boto3_client  # noqa: E402
from support.server import ACCESS_KEY, SECRET_KEY, Server  # noqa: E402


def write_fsync_mb_s(src: Path, dst: Path) -> float:
    """The reference: copy the file through Python in 8 MiB writes, then fsync."""
    t0 = time.perf_counter()
    with src.open("rb") as fin, dst.open("wb") as fout:
        while chunk := fin.read(8 * MiB):
            fout.write(chunk)
        fout.flush()
        os.fsync(fout.fileno())
    seconds = time.perf_counter() - t0
    size = dst.stat().st_size
    dst.unlink()
    return size / seconds / MB


def server_cpu(master: int) -> float:
    return sum(cpu_s(pid) for pid in tree(master))


def run(args: argparse.Namespace) -> dict[str, Any]:
    from boto3.s3.transfer import TransferConfig

    size = args.size_mib * MiB
    with tempfile.TemporaryDirectory(prefix="bleepbench-") as tmp:
        root = Path(tmp)
        src = root / "src.bin"
        make_file(src, size)
        server = Server(root / "server", workers=args.workers)
        server.start()
        try:
            master = server.proc.pid  # type: ignore[union-attr]
            s3 = boto3_client(server.endpoint, read_timeout=600,
                              max_pool_connections=args.concurrency * 2)
            s3.create_bucket(Bucket="bench")
            tc = TransferConfig(multipart_threshold=8 * MiB,
                                multipart_chunksize=args.part_mib * MiB,
                                max_concurrency=args.concurrency, use_threads=True)
            uploads, references = [], []
            for i in range(args.repeats):
                references.append(write_fsync_mb_s(src, root / "reference.bin"))
                cpu0, client0, t0 = server_cpu(master), time.process_time(), time.perf_counter()
                s3.upload_file(str(src), "bench", f"multi-{i}", Config=tc)
                wall = time.perf_counter() - t0
                uploads.append({"MBps": size / wall / MB,
                                "server_cpu_s": server_cpu(master) - cpu0,
                                "client_cpu_s": time.process_time() - client0})
                log(f"upload {i}: {uploads[-1]['MBps']:.0f} MB/s, reference "
                    f"{references[-1]:.0f} MB/s")
            complete_s, parts = complete_time(s3, "bench", src, args.part_mib * MiB)
            p = Presigner(server.endpoint, ACCESS_KEY, SECRET_KEY)
            stream_put(server.port, p.target("PUT", "bench", "single"), src)
            gets = {key: max(stream_get(server.port, p.target("GET", "bench", key), size)
                             for _ in range(args.repeats))
                    for key in ("multi-0", "single")}
        finally:
            server.stop()
    return {"size_mib": args.size_mib, "part_mib": args.part_mib,
            "concurrency": args.concurrency, "workers": args.workers,
            "upload_MBps": [round(u["MBps"]) for u in uploads],
            "upload_MBps_median": round(statistics.median(u["MBps"] for u in uploads)),
            "write_fsync_MBps": [round(r) for r in references],
            "server_cpu_s": [round(u["server_cpu_s"], 2) for u in uploads],
            "client_cpu_s": [round(u["client_cpu_s"], 2) for u in uploads],
            "complete_s": round(complete_s, 3), "complete_parts": parts,
            "get_multipart_MBps": round(gets["multi-0"]),
            "get_single_MBps": round(gets["single"])}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size-mib", type=int, default=1024)
    parser.add_argument("--part-mib", type=int, default=64)
    parser.add_argument("--concurrency", type=int, default=8)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--workers", type=int, default=2)
    r = run(parser.parse_args())
    print(f"multipart upload, {r['size_mib']} MiB in {r['part_mib']} MiB parts x "
          f"{r['concurrency']} threads, {r['workers']} workers")
    print(f"  upload MB/s            {r['upload_MBps']} (median {r['upload_MBps_median']})")
    print(f"  write+fsync MB/s (ref) {r['write_fsync_MBps']}")
    print(f"  server / client CPU s  {r['server_cpu_s']} / {r['client_cpu_s']}")
    print(f"  CompleteMultipartUpload of {r['complete_parts']} parts: {r['complete_s']} s")
    print(f"  GET MB/s, multipart object / single-PUT object: {r['get_multipart_MBps']} / "
          f"{r['get_single_MBps']}")
    print(json.dumps(r))


if __name__ == "__main__":
    main()
