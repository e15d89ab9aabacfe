#!/usr/bin/env python3
"""Where the time goes on the small-object PUT path.

Two views, both grouped by area (auth/sigv4, routing/front, sqlite, fsync, storage, ...):

- ``python bench/profile_put.py --n 2000 --out bench/out``: an in-process harness (no
  HTTP server) that builds the real WSGI app (``bleepstore.app.create_app`` on a private
  temp data dir, recovery run first, as in production) and sends it ``--n`` presigned 4 KiB
  PUTs under cProfile. Writes ``profile-put.pstats`` and ``profile-put-cprofile.txt``
  (top 25 cumulative functions, each tagged with its area, plus exclusive time by area).
- ``summarize_pyspy(raw_file)``: the same grouping for py-spy ``--format raw`` samples taken
  from a live gunicorn worker during a wrk PUT run (called by ``bench/run.py``).

Exclusive time of a stdlib/builtin function is charged to the area of its callers
(proportionally), except fsync, sqlite3 calls and hashing, which are areas of their own.
"""

from __future__ import annotations

import argparse
import cProfile
import io
import json
import linecache
import os
import pstats
import sys
import tempfile
import time
from collections import defaultdict
from pathlib import Path
from typing import Any

BENCH = Path(__file__).resolve().parent
REPO = BENCH.parent
sys.path.insert(0, str(BENCH))

AREAS = [
    ("auth/sigv4", ("bleepstore/s3/sigv4.py", "bleepstore/s3/sigv4_signing.py",
                    "bleepstore/credentials.py", "/hmac.py")),
    ("routing/front", ("bleepstore/s3/router.py", "bleepstore/s3/address.py",
                       "bleepstore/s3/names.py",
                       "bleepstore/web/front.py", "bleepstore/web/environ.py",
                       "bleepstore/web/context.py")),
    ("sqlite/metadata", ("bleepstore/metadata/", "/sqlite3/")),
    ("storage (non-fsync)", ("bleepstore/storage/",)),
    ("checksums (md5/crc)", ("bleepstore/s3/checksums.py", "bleepstore/s3/chunked.py")),
    ("core S3 logic", ("bleepstore/core/", "bleepstore/s3/", "bleepstore/model.py",
                       "bleepstore/errors.py")),
    ("web glue/payload", ("bleepstore/web/resources.py", "bleepstore/web/payload.py",
                          "bleepstore/web/errors.py")),
    ("logging/metrics", ("bleepstore/logs.py", "bleepstore/web/observe.py",
                         "bleepstore/web/metrics.py", "/logging/", "prometheus_client/")),
    ("falcon", ("falcon/",)),
    ("gunicorn/http", ("gunicorn/",)),
]
FSYNC = "fsync"
HASH = "checksums (md5/crc)"
AUTH = "auth/sigv4"
SQLITE = "sqlite/metadata"
OTHER = "other (stdlib/interp)"
LOCK_WAIT = "sqlite write-lock wait"
COMMIT = "sqlite COMMIT (WAL fsync)"
IDLE_LEAVES = ("/threading.py", "/concurrent/futures/thread.py", "/selectors.py", "/queue.py")


def file_area(filename: str) -> str | None:
    f = filename.replace("\\", "/")
    for area, needles in AREAS:
        if any(n in f for n in needles):
            return area
    return None


def builtin_area(name: str) -> str | None:
    if "fsync" in name or "fdatasync" in name:
        return FSYNC
    if "sqlite3" in name:
        return SQLITE
    return None


def is_hash(name: str) -> bool:
    return any(s in name for s in ("_hashlib", "hashlib", "md5", "crc32", "_blake2", "sha256"))


# ---------------------------------------------------------------- cProfile

def area_weights(stats: dict[Any, Any], func: Any, depth: int = 0,
                 memo: dict[Any, dict[str, float]] | None = None) -> dict[str, float]:
    memo = {} if memo is None else memo
    if func in memo:
        return memo[func]
    filename, _line, name = func
    own = builtin_area(name) or (file_area(filename) if filename != "~" else None)
    if own is not None:
        return {own: 1.0}
    callers = stats[func][4] if func in stats else {}
    if depth > 12 or not callers:
        return {OTHER: 1.0}
    memo[func] = {OTHER: 1.0}  # recursion guard
    total = sum(v[3] for v in callers.values()) or float(len(callers))
    out: dict[str, float] = defaultdict(float)
    for caller, v in callers.items():
        w = (v[3] or (total / len(callers) if total else 1.0)) / total
        for area, frac in area_weights(stats, caller, depth + 1, memo).items():
            out[area] += w * frac
    if is_hash(name):
        out = defaultdict(float, {(a if a == AUTH else HASH): f for a, f in out.items()})
        merged: dict[str, float] = defaultdict(float)
        for a, f in out.items():
            merged[a] += f
        out = merged
    memo[func] = dict(out)
    return memo[func]


def cprofile_report(pstats_path: Path, n_requests: int, top: int = 25) -> tuple[str, dict]:
    st = pstats.Stats(str(pstats_path))
    raw = st.stats  # type: ignore[attr-defined]
    total = sum(v[2] for v in raw.values())
    by_area: dict[str, float] = defaultdict(float)
    memo: dict[Any, dict[str, float]] = {}
    for func, v in raw.items():
        for area, frac in area_weights(raw, func, 0, memo).items():
            by_area[area] += v[2] * frac
    lines = [f"cProfile of {n_requests} in-process presigned 4 KiB PUTs "
             f"(total {total:.3f} s profiled, {total / n_requests * 1e6:.0f} us/request "
             "incl. profiler overhead)", "",
             "Exclusive time by area:"]
    for area, t in sorted(by_area.items(), key=lambda kv: -kv[1]):
        lines.append(f"  {area:24s} {t * 1e3:9.1f} ms  {t / n_requests * 1e6:7.1f} us/req  "
                     f"{100 * t / total:5.1f} %")
    lines += ["", f"Top {top} functions by cumulative time:",
              f"  {'cum ms':>9s} {'us/req':>7s} {'own ms':>8s} {'calls':>8s}  "
              f"{'area':22s} function"]
    rows = sorted(raw.items(), key=lambda kv: -kv[1][3])[:top]
    top_rows = []
    for (filename, line, name), v in rows:
        short = filename.replace(str(REPO) + "/", "")
        short = short.split("site-packages/")[-1].split("lib/python3")[-1]
        area = builtin_area(name) or (file_area(filename) if filename != "~" else None) or "-"
        lines.append(f"  {v[3] * 1e3:9.1f} {v[3] / n_requests * 1e6:7.1f} {v[2] * 1e3:8.1f} "
                     f"{v[1]:8d}  {area:22s} {name} ({short}:{line})")
        top_rows.append({"function": f"{name} ({short}:{line})", "area": area,
                         "cum_ms": v[3] * 1e3, "own_ms": v[2] * 1e3, "calls": v[1]})
    data = {"requests": n_requests, "total_s": total,
            "by_area_us_per_req": {a: t / n_requests * 1e6 for a, t in by_area.items()},
            "by_area_pct": {a: 100 * t / total for a, t in by_area.items()},
            "top_cumulative": top_rows}
    return "\n".join(lines), data


# ---------------------------------------------------------------- py-spy raw

def _frame(frame: str) -> tuple[str, str, int]:
    # "func (path/to/file.py:123)"
    if frame.endswith(")") and " (" in frame:
        name, loc = frame[:-1].rsplit(" (", 1)
        path, _, line = loc.rpartition(":")
        return name, path, int(line) if line.isdigit() else 0
    return frame, "", 0


def frame_area(frames: list[str]) -> str:
    """Area of a sample: the first frame from the leaf that belongs to a known area;
    the source line of that frame decides fsync / sqlite / hashing calls it makes."""
    for frame in reversed(frames):
        name, path, line = _frame(frame)
        area = file_area(path)
        if area is None:
            if "hashlib" in path:
                return HASH
            continue
        src = linecache.getline(path, line) if path and line else ""
        if "fsync" in src or "fsync" in name:
            return FSYNC
        if "BEGIN IMMEDIATE" in src or "flock(" in src or (area == SQLITE and
                                                          "time.sleep(" in src):
            return LOCK_WAIT
        if area == SQLITE and '"COMMIT"' in src:
            return COMMIT
        if area != SQLITE and any(s in src for s in (".execute(", ".executemany(",
                                                      ".commit(", "sqlite3.connect(")):
            return SQLITE
        if area not in (AUTH, HASH) and any(s in src for s in ("md5", ".update(", "crc")):
            return HASH
        return area
    return OTHER


def summarize_pyspy(raw_file: Path) -> tuple[str, dict]:
    by_area: dict[str, int] = defaultdict(int)
    by_leaf: dict[str, int] = defaultdict(int)
    total = idle = 0
    for ln in raw_file.read_text(errors="replace").splitlines():
        stack, _, count = ln.rpartition(" ")
        if not count.isdigit():
            continue
        n = int(count)
        frames = stack.split(";")
        # a thread parked in a wait primitive (idle pool thread, the gthread poll loop, the
        # maintenance thread's Event.wait) is not request work
        if any(s in _frame(frames[-1])[1] for s in IDLE_LEAVES):
            idle += n
            continue
        by_area[frame_area(frames)] += n
        by_leaf[frames[-1].replace(str(REPO) + "/", "")] += n
        total += n
    lines = [f"py-spy samples of one gunicorn worker's threads during a 4 KiB PUT run: "
             f"{total} busy samples ({idle} more parked in wait primitives, excluded)"]
    for area, n in sorted(by_area.items(), key=lambda kv: -kv[1]):
        lines.append(f"  {area:24s} {n:7d} samples  {100 * n / max(total, 1):5.1f} %")
    lines.append("  hottest leaf frames:")
    for leaf, n in sorted(by_leaf.items(), key=lambda kv: -kv[1])[:12]:
        short = leaf.split("site-packages/")[-1].split("lib/python3.11/")[-1]
        lines.append(f"    {100 * n / max(total, 1):5.1f} %  {short}")
    return "\n".join(lines), {"samples": total, "idle_samples": idle,
                              "by_area_pct": {a: 100 * n / max(total, 1)
                                              for a, n in by_area.items()}}


# ---------------------------------------------------------------- harness

def harness(n: int, out: Path) -> dict:
    import yaml

    root = Path(tempfile.mkdtemp(prefix="bleepbench-prof-", dir="/tmp"))
    try:
        data = root / "data"
        cfg_file = root / "bleepstore.yaml"
        cfg_file.write_text(yaml.safe_dump({
            "server": {"host": "127.0.0.1", "port": 9010},
            "metadata": {"sqlite": {"path": str(data / "metadata.db")}},
            "storage": {"spool_dir": str(data / "spool"),
                        "local": {"root_dir": str(data / "objects")}},
            "observability": {"metrics_dir": str(data / "prometheus")},
            "logging": {"level": "info", "format": "json"}}))
        os.environ["BLEEPSTORE_CONFIG"] = str(cfg_file)
        os.environ["PROMETHEUS_MULTIPROC_DIR"] = str(data / "prometheus")
        from presign import Presigner

        from bleepstore.app import create_app
        from bleepstore.config import load
        from bleepstore.recovery import run_recovery

        cfg = load()
        run_recovery(cfg)
        app = create_app(cfg, background=False)
        host = "127.0.0.1:9010"
        signer = Presigner(f"http://{host}", cfg.auth.access_key, cfg.auth.secret_key)
        body = b"b" * 4096

        def call(method: str, target: str, payload: bytes = b"") -> str:
            path, _, query = target.partition("?")
            env = {"REQUEST_METHOD": method, "SCRIPT_NAME": "", "PATH_INFO": path,
                   "QUERY_STRING": query, "RAW_URI": target, "SERVER_NAME": "127.0.0.1",
                   "SERVER_PORT": "9010", "SERVER_PROTOCOL": "HTTP/1.1",
                   "HTTP_HOST": host, "REMOTE_ADDR": "127.0.0.1", "wsgi.version": (1, 0),
                   "wsgi.url_scheme": "http", "wsgi.input": io.BytesIO(payload),
                   "wsgi.errors": sys.stderr, "wsgi.multithread": True,
                   "wsgi.multiprocess": True, "wsgi.run_once": False}
            if payload or method == "PUT":
                env["CONTENT_LENGTH"] = str(len(payload))
            status: list[str] = []
            result = app(env, lambda s, h, exc=None: status.append(s))
            for _ in result:
                pass
            if hasattr(result, "close"):
                result.close()
            return status[0]

        assert call("PUT", signer.target("PUT", "prof")).startswith("200"), "CreateBucket"
        targets = [signer.target("PUT", "prof", f"obj/{i:06d}") for i in range(n)]
        for t in targets[:50]:  # warm caches (credential cache, imports, statements)
            call("PUT", t, body)
        prof = cProfile.Profile()
        t0 = time.perf_counter()
        prof.enable()
        for t in targets:
            st = call("PUT", t, body)
            if not st.startswith("200"):
                raise RuntimeError(f"PUT -> {st}")
        prof.disable()
        wall = time.perf_counter() - t0
        out.mkdir(parents=True, exist_ok=True)
        pstats_path = out / "profile-put.pstats"
        prof.dump_stats(str(pstats_path))
        text, data_ = cprofile_report(pstats_path, n)
        text = (f"wall time {wall:.2f} s for {n} sequential PUTs under cProfile "
                f"({n / wall:.0f} PUT/s, one thread, no HTTP)\n" + text)
        (out / "profile-put-cprofile.txt").write_text(text + "\n")
        data_["wall_s"] = wall
        return {"text": text, **data_}
    finally:
        import shutil
        shutil.rmtree(root, ignore_errors=True)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--n", type=int, default=2000)
    ap.add_argument("--out", type=Path, default=BENCH / "out")
    args = ap.parse_args()
    # the app's access log goes to stderr; keep it out of the report
    devnull = os.open(os.devnull, os.O_WRONLY)
    saved = os.dup(2)
    os.dup2(devnull, 2)
    try:
        result = harness(args.n, args.out)
    finally:
        os.dup2(saved, 2)
    print("PROFJSON " + json.dumps({k: v for k, v in result.items() if k != "text"}))
    print(result["text"])


if __name__ == "__main__":
    main()
