"""The AWS SDK for JavaScript v3 (pinned, tests/js/package.json) against BleepStore: put,
streamed put (aws-chunked with a trailing CRC32), lib-storage multipart Upload, get, head,
list, presigned GET and delete."""

from __future__ import annotations

import json
import shutil
import subprocess
from typing import Any

import pytest
from support.server import REPO

JS = REPO / "tests" / "js"


def test_js_sdk_v3_round_trips(server: Any, s3: Any) -> None:
    node = shutil.which("node")
    if node is None or not (JS / "node_modules" / "@aws-sdk" / "client-s3").is_dir():
        pytest.fail("node or the pinned JS SDK is missing: run tests/bootstrap.sh")
    proc = subprocess.run([node, "s3_client_test.mjs", server.endpoint, "js-sdk-bucket"],
                          cwd=JS, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    out = json.loads(proc.stdout.strip().splitlines()[-1])
    assert out["put_etag_ok"] and out["stream_roundtrip_ok"] and out["multipart_roundtrip_ok"]
    assert out["head_length_ok"] and out["presigned_ok"]
    assert out["multipart_etag"].endswith('-3"')
    assert out["listed"] == ["js/multipart.bin", "js/small.txt", "js/streamed.bin"]
    assert out["deleted"] == ["js/multipart.bin", "js/streamed.bin"]
    assert out["remaining"] == 0
