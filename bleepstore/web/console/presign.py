"""SigV4 presigned GET URLs for the console, built with the verifier's own canonical
forms and signing key (s3/sigv4.py), so whatever this signs the S3 front accepts.

Invariants: only ``host`` is signed, the payload is ``UNSIGNED-PAYLOAD`` (auth.md §4);
the URL is path-style on the host the console was reached through.
"""

from __future__ import annotations

import hashlib
import hmac
import re
from datetime import datetime
from urllib.parse import quote

from bleepstore.model import Credential
from bleepstore.s3.sigv4 import ISO_BASIC, UNSIGNED_PAYLOAD
from bleepstore.s3.sigv4_signing import (
    ALGORITHM,
    canonical_query,
    canonical_uri,
    signing_key,
    string_to_sign,
    uri_encode,
)

_UNSAFE_FILENAME = re.compile(r'[^\x20-\x7e]|["\\]')


def attachment_disposition(key: str) -> str:
    """``attachment; filename="<basename>"``; a name that is not plain ASCII also gets
    its exact UTF-8 form as ``filename*`` (RFC 6266)."""
    name = key.rsplit("/", 1)[-1] or "download"
    safe = _UNSAFE_FILENAME.sub("_", name)
    value = f'attachment; filename="{safe}"'
    if safe != name:
        value += "; filename*=UTF-8''" + quote(name.encode("utf-8"), safe="")
    return value


def _query(params: dict[str, str]) -> str:
    return "&".join(f"{uri_encode(k.encode(), encode_slash=True)}="
                    f"{uri_encode(v.encode(), encode_slash=True)}"
                    for k, v in sorted(params.items()))


def presign_get(cred: Credential, *, scheme: str, host: str, bucket: str, key: str,
                expires_s: int, region: str, now: datetime,
                extra: dict[str, str] | None = None) -> str:
    """A URL that GETs ``bucket/key`` as ``cred`` for ``expires_s`` seconds from ``now``."""
    path = f"/{bucket}/" + uri_encode(key.encode("utf-8"), encode_slash=False)
    timestamp = now.strftime(ISO_BASIC)
    date = timestamp[:8]
    scope = f"{date}/{region}/s3/aws4_request"
    raw_query = _query({"X-Amz-Algorithm": ALGORITHM,
                        "X-Amz-Credential": f"{cred.access_key_id}/{scope}",
                        "X-Amz-Date": timestamp, "X-Amz-Expires": str(expires_s),
                        "X-Amz-SignedHeaders": "host", **(extra or {})})
    canonical = (f"GET\n{canonical_uri(path)}\n"
                 f"{canonical_query(raw_query, drop_signature=True)}\n"
                 f"host:{' '.join(host.split())}\n\nhost\n{UNSIGNED_PAYLOAD}")
    sts = string_to_sign(timestamp, scope, canonical)
    signature = hmac.new(signing_key(cred.secret_key, date, region), sts.encode(),
                         hashlib.sha256).hexdigest()
    return f"{scheme}://{host}{path}?{raw_query}&X-Amz-Signature={signature}"
