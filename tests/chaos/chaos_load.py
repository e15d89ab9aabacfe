"""The chaos test's client side: one process = one client running a mixed S3 load and
recording every operation's outcome as a JSON line, plus the model that turns those
records into the set of states each key may legally be in afterwards.

Outcomes: ``acked`` (2xx received) or ``unknown`` (connection error, timeout, or an error
status: the commit may or may not have happened). Times are ``time.monotonic()``, which
is one system-wide clock on Linux, so records from different processes compare.

Model (linearizability of single-key writes): an op's effect happens somewhere inside
[start, end] (end = infinity when unknown). The final state of a key is the effect of
some op W that may be linearized last: W was acked or unknown, and no *acked* op X on
the key started after W ended (X would have to come after W). The initial "absent" state
is possible only when no op on the key was acked.
"""

from __future__ import annotations

import hashlib
import http.client
import json
import math
import os
import random
import time
from collections import defaultdict
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from multiprocessing.synchronize import Event
from typing import Any, TextIO

import botocore.exceptions
import urllib3.exceptions
from support.clients import boto3_client

MiB = 1024 * 1024
PRIVATE_KEYS = 12
SHARED_KEYS = 4
State = tuple[str, str] | None  # (sha256 hex, ETag) or None = absent
_TRANSPORT = (botocore.exceptions.BotoCoreError, urllib3.exceptions.HTTPError,
              http.client.HTTPException, OSError)


def digests(data: bytes) -> tuple[str, str]:
    return hashlib.sha256(data).hexdigest(), f'"{hashlib.md5(data).hexdigest()}"'


def composite_etag(part_md5s: Iterable[bytes]) -> str:
    md5s = list(part_md5s)
    return f'"{hashlib.md5(b"".join(md5s)).hexdigest()}-{len(md5s)}"'


class Client:
    """One chaos client: picks random operations until ``stop`` is set."""

    def __init__(self, endpoint: str, bucket: str, cid: int, out: TextIO, seed: int) -> None:
        self.s3 = boto3_client(endpoint, max_attempts=0, connect_timeout=2, read_timeout=30)
        self.bucket, self.cid, self.out = bucket, cid, out
        self.rng = random.Random(seed)
        self.seq = 0

    # --- recording ------------------------------------------------------------------

    def record(self, **fields: Any) -> None:
        self.seq += 1
        fields.update(client=self.cid, seq=self.seq)
        self.out.write(json.dumps(fields) + "\n")
        self.out.flush()

    def call(self, fn: Callable[..., Any], **kwargs: Any) -> tuple[str, Any]:
        """(``acked``, response) | (``error``, (status, code)) | (``unknown``, reason)."""
        try:
            return "acked", fn(**kwargs)
        except botocore.exceptions.ClientError as exc:
            status = int(exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode", 0))
            return "error", (status, str(exc.response.get("Error", {}).get("Code", "")))
        except _TRANSPORT as exc:
            time.sleep(0.05)  # the server is probably restarting
            return "unknown", type(exc).__name__

    def write(self, kind: str, key: str, state: State, fn: Callable[..., Any],
              **kwargs: Any) -> tuple[str, Any]:
        start = time.monotonic()
        outcome, resp = self.call(fn, **kwargs)
        end = time.monotonic()
        fields: dict[str, Any] = {"op": kind, "key": key, "state": state, "start": start}
        if outcome == "acked":
            fields.update(outcome="acked", end=end)
        else:  # an error status is not proof that nothing was committed
            fields.update(outcome="unknown", end=None, why=resp)
            if outcome == "error" and resp[0] >= 500:
                self.record(op="server_error", key=key, status=resp[0], code=resp[1])
        self.record(**fields)
        return outcome, resp

    # --- operations -----------------------------------------------------------------

    def key(self) -> str:
        if self.rng.random() < 0.3:
            return f"shared/s{self.rng.randrange(SHARED_KEYS)}"
        return f"c{self.cid}/k{self.rng.randrange(PRIVATE_KEYS):02d}"

    def small_size(self) -> int:
        r = self.rng.random()
        if r < 0.7:
            return self.rng.randrange(0, 64 * 1024)
        if r < 0.95:
            return self.rng.randrange(64 * 1024, MiB)
        return self.rng.randrange(MiB, 4 * MiB)

    def put(self, key: str, size: int) -> tuple[str, State]:
        data = os.urandom(size)
        state = digests(data)
        outcome, resp = self.write("put", key, state, self.s3.put_object, Bucket=self.bucket,
                                   Key=key, Body=data)
        if outcome == "acked" and resp["ETag"] != state[1]:
            self.record(op="violation", key=key, why=f"PUT ETag {resp['ETag']} != {state[1]}")
        return outcome, state

    def op_put_small(self) -> None:
        self.put(self.key(), self.small_size())

    def op_put_big(self) -> None:
        self.put(self.key(), self.rng.randrange(6 * MiB, 20 * MiB + 1))

    def op_delete(self) -> None:
        key = self.key()
        self.write("delete", key, None, self.s3.delete_object, Bucket=self.bucket, Key=key)

    def op_get(self) -> None:
        key = self.key()
        try:
            resp = self.s3.get_object(Bucket=self.bucket, Key=key)
            sha, md5 = hashlib.sha256(), hashlib.md5()
            for chunk in resp["Body"].iter_chunks(MiB):
                sha.update(chunk)
                md5.update(chunk)
        except botocore.exceptions.ClientError as exc:
            status = int(exc.response["ResponseMetadata"].get("HTTPStatusCode", 0))
            if status >= 500:
                self.record(op="server_error", key=key, status=status,
                            code=exc.response["Error"]["Code"])
            return
        except _TRANSPORT:
            time.sleep(0.05)
            return
        etag = resp["ETag"]
        if "-" not in etag and etag != f'"{md5.hexdigest()}"':
            self.record(op="violation", key=key, why=f"GET body md5 does not match {etag}")
        self.record(op="get", key=key, state=[sha.hexdigest(), etag])

    def op_copy(self) -> None:
        src = f"c{self.cid}/src/{self.seq:06d}"  # fresh and never touched again
        outcome, state = self.put(src, self.small_size())
        if outcome != "acked" or state is None:
            return
        dst = self.key()
        outcome, resp = self.write("copy", dst, state, self.s3.copy_object, Bucket=self.bucket,
                                   Key=dst, CopySource={"Bucket": self.bucket, "Key": src})
        if outcome == "acked" and resp["CopyObjectResult"]["ETag"] != state[1]:
            self.record(op="violation", key=dst, why="copy of a single-part source: new ETag")

    def op_multipart(self) -> None:
        key = self.key()
        outcome, resp = self.call(self.s3.create_multipart_upload, Bucket=self.bucket, Key=key)
        if outcome != "acked":
            return
        uid = resp["UploadId"]
        sha, md5s, parts = hashlib.sha256(), [], []
        sizes = [5 * MiB] * self.rng.randint(1, 2) + [self.rng.randrange(1, MiB)]
        for number, size in enumerate(sizes, start=1):
            data = os.urandom(size)
            outcome, resp = self.call(self.s3.upload_part, Bucket=self.bucket, Key=key,
                                      UploadId=uid, PartNumber=number, Body=data)
            if outcome != "acked":
                self.call(self.s3.abort_multipart_upload, Bucket=self.bucket, Key=key,
                          UploadId=uid)  # best effort; a leftover upload is legal too
                return
            sha.update(data)
            md5s.append(hashlib.md5(data).digest())
            parts.append({"PartNumber": number, "ETag": resp["ETag"]})
        state = (sha.hexdigest(), composite_etag(md5s))
        outcome, resp = self.write("complete", key, state, self.s3.complete_multipart_upload,
                                   Bucket=self.bucket, Key=key, UploadId=uid,
                                   MultipartUpload={"Parts": parts})
        if outcome == "acked" and resp["ETag"] != state[1]:
            self.record(op="violation", key=key, why=f"complete ETag {resp['ETag']}")

    def run(self, stop: Event) -> None:
        ops = [self.op_put_small, self.op_get, self.op_delete, self.op_copy,
               self.op_put_big, self.op_multipart]
        weights = [50, 25, 10, 7, 4, 4]
        while not stop.is_set():
            self.rng.choices(ops, weights)[0]()


def client_main(endpoint: str, bucket: str, cid: int, out_path: str, stop: Event,
                seed: int) -> None:
    """multiprocessing target (spawn): one client process."""
    with open(out_path, "w", encoding="utf-8") as out:
        Client(endpoint, bucket, cid, out, seed).run(stop)


# --- the model --------------------------------------------------------------------


@dataclass(frozen=True)
class Op:
    kind: str
    key: str
    state: State
    start: float
    end: float  # math.inf when the outcome is unknown
    acked: bool


def load_records(paths: Iterable[str]) -> list[dict[str, Any]]:
    records: list[dict[str, Any]] = []
    for path in paths:
        with open(path, encoding="utf-8") as f:
            records += [json.loads(line) for line in f if line.endswith("\n")]
    return records


def _state(raw: Any) -> State:
    return None if raw is None else (str(raw[0]), str(raw[1]))


def write_ops(records: Iterable[dict[str, Any]]) -> dict[str, list[Op]]:
    ops: dict[str, list[Op]] = defaultdict(list)
    for r in records:
        if r["op"] in ("put", "delete", "copy", "complete"):
            acked = r["outcome"] == "acked"
            ops[r["key"]].append(Op(r["op"], r["key"], _state(r["state"]), r["start"],
                                    r["end"] if acked else math.inf, acked))
    return ops


def candidates(ops: list[Op]) -> tuple[set[State], Op | None]:
    """The legal final states of one key, and its last acknowledged op (if any)."""
    acked = [o for o in ops if o.acked]
    legal = {o.state for o in ops if not any(x.start > o.end for x in acked)}
    if not acked:
        legal.add(None)
    last = max(acked, key=lambda o: o.end, default=None)
    return legal, last
