"""Multipart requests that race each other (storage.md §6): concurrent Completes of one
upload (a client retrying after a timeout), Complete racing Abort, UploadPart racing
Complete. The loser gets the winner's result or NoSuchUpload, never a 500."""

from __future__ import annotations

import hashlib
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import botocore.exceptions

MiB = 1024 * 1024
PIECES = [b"1" * (5 * MiB), b"2" * (5 * MiB), b"3" * (5 * MiB), b"4"]


def _upload(s3: Any, bucket: str, key: str) -> tuple[str, list[dict[str, Any]]]:
    uid = s3.create_multipart_upload(Bucket=bucket, Key=key)["UploadId"]
    parts = [{"PartNumber": n, "ETag": s3.upload_part(Bucket=bucket, Key=key, UploadId=uid,
                                                      PartNumber=n, Body=body)["ETag"]}
             for n, body in enumerate(PIECES, start=1)]
    return uid, parts


def _outcome(call: Any, **kw: Any) -> str:
    try:
        result = call(**kw)
    except botocore.exceptions.ClientError as exc:
        return str(exc.response["Error"]["Code"])
    return str(result.get("ETag", result["ResponseMetadata"]["HTTPStatusCode"]))


def test_concurrent_completes_of_one_upload_all_succeed(server: Any, s3: Any,
                                                        bucket: str) -> None:
    joined = b"".join(hashlib.md5(p).digest() for p in PIECES)
    etag = f'"{hashlib.md5(joined).hexdigest()}-{len(PIECES)}"'
    for round_ in range(3):
        key = f"race-{round_}"
        uid, parts = _upload(s3, bucket, key)
        kw = {"Bucket": bucket, "Key": key, "UploadId": uid, "MultipartUpload": {"Parts": parts}}
        with ThreadPoolExecutor(4) as pool:
            calls = [pool.submit(_outcome, s3.complete_multipart_upload, **kw) for _ in range(4)]
            results = [c.result() for c in calls]
        assert results == [etag] * 4
        assert s3.get_object(Bucket=bucket, Key=key)["Body"].read() == b"".join(PIECES)
        assert not (Path(server.data) / "objects" / "multipart" / uid).exists()


def test_complete_racing_abort_has_one_winner(server: Any, s3: Any, bucket: str) -> None:
    uid, parts = _upload(s3, bucket, "ca")
    common = {"Bucket": bucket, "Key": "ca", "UploadId": uid}
    with ThreadPoolExecutor(2) as pool:
        done = pool.submit(_outcome, s3.complete_multipart_upload,
                           MultipartUpload={"Parts": parts}, **common)
        aborted = pool.submit(_outcome, s3.abort_multipart_upload, **common)
        outcome = (done.result(), aborted.result())
    if outcome[1] == "204":  # the abort won: no object, and the complete saw NoSuchUpload
        assert outcome[0] == "NoSuchUpload"
        assert "Contents" not in s3.list_objects_v2(Bucket=bucket)
    else:
        assert outcome[1] == "NoSuchUpload" and outcome[0].endswith('-4"')
        assert s3.head_object(Bucket=bucket, Key="ca")["ContentLength"] == 15 * MiB + 1
    assert not (Path(server.data) / "objects" / "multipart" / uid).exists()
