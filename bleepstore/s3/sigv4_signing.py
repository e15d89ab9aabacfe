"""SigV4's signing primitives (auth.md §3, §6.3-§6.4): canonical URI and query, the
signing key, the string to sign, and the chained signatures of aws-chunked bodies. Pure;
``sigv4.authenticate`` verifies requests with them, the console presigns URLs with them.

Invariants:
- signatures are compared with ``hmac.compare_digest`` only (``same``);
- the canonical query of a presigned URL minus its signature is cached (``lru_cache``,
  queries up to ``MAX_CACHED_QUERY`` characters); signing keys are cached per (secret,
  date, region), so a rotated secret is a new entry.
"""

from __future__ import annotations

import hashlib
import hmac
from functools import lru_cache
from urllib.parse import quote_from_bytes, unquote_to_bytes

from bleepstore.errors import SignatureDoesNotMatch

ALGORITHM = "AWS4-HMAC-SHA256"
EMPTY_SHA256 = hashlib.sha256(b"").hexdigest()


# --- canonicalisation (§3.1) -------------------------------------------------------------

def uri_encode(data: bytes, *, encode_slash: bool) -> str:
    """Percent-encode every byte except ``A-Za-z0-9-_.~`` (and ``/`` unless encode_slash)."""
    return quote_from_bytes(data, safe="-_.~" if encode_slash else "-_.~/")


def canonical_uri(raw_path: str) -> str:
    """Decode %XX (a lone ``%`` stays literal), re-encode, keep ``/``; empty -> ``/``."""
    return uri_encode(unquote_to_bytes(raw_path), encode_slash=False) if raw_path else "/"


def raw_canonical_uri(raw_path: str) -> str:
    """The §3.1 step 5 fallback: the path exactly as received (empty -> ``/``)."""
    return raw_path or "/"


def canonical_query(raw_query: str, *, drop_signature: bool) -> str:
    """Canonical query string; ``+`` stays a literal plus (encoded as ``%2B``)."""
    if drop_signature:
        raw_query = "&".join(s for s in raw_query.split("&") if not _is_signature(s))
    if len(raw_query) <= MAX_CACHED_QUERY:
        return _canonical_query(raw_query)
    return _canonical_query.__wrapped__(raw_query)


def _is_signature(segment: str) -> bool:
    name = segment.partition("=")[0]
    return name == "X-Amz-Signature" or ("%" in name and
                                         unquote_to_bytes(name) == b"X-Amz-Signature")


# NOTE: a presigned URL's query minus its signature is the same for every URL one client
# signs in a second (credential, date, expiry): canonicalised once, not per request.
MAX_CACHED_QUERY = 1024


@lru_cache(maxsize=256)
def _canonical_query(raw_query: str) -> str:
    pairs = []
    for segment in raw_query.split("&"):
        if not segment:
            continue
        name, _, value = segment.partition("=")
        pairs.append((uri_encode(unquote_to_bytes(name), encode_slash=True),
                      uri_encode(unquote_to_bytes(value), encode_slash=True)))
    pairs.sort()
    return "&".join(f"{n}={v}" for n, v in pairs)


# --- signing math (§3.2, §3.3) -----------------------------------------------------------

def _hmac(key: bytes, msg: str) -> bytes:
    return hmac.new(key, msg.encode(), hashlib.sha256).digest()


@lru_cache(maxsize=1024)
def signing_key(secret: str, date: str, region: str) -> bytes:
    """kSigning for (secret, yyyymmdd, region); cached, so a rotated secret is a new entry."""
    k_date = _hmac(b"AWS4" + secret.encode(), date)
    return _hmac(_hmac(_hmac(k_date, region), "s3"), "aws4_request")


def canonical_bytes(canonical_request: str) -> bytes:
    """The bytes a canonical request stands for. Header values are the client's text
    (``SigningRequest.get_header``); wire bytes that were not UTF-8 are surrogates there
    and come back as the bytes themselves."""
    return canonical_request.encode("utf-8", "surrogateescape")


def string_to_sign(timestamp: str, scope: str, canonical_request: str) -> str:
    digest = hashlib.sha256(canonical_bytes(canonical_request)).hexdigest()
    return f"{ALGORITHM}\n{timestamp}\n{scope}\n{digest}"


def sign(key: bytes, sts: str) -> str:
    return hmac.new(key, sts.encode(), hashlib.sha256).hexdigest()


def same(expected: str, provided: str) -> bool:
    """Constant-time comparison; a non-ASCII value (never a valid signature) just differs."""
    return provided.isascii() and hmac.compare_digest(expected, provided)


# --- aws-chunked signatures (§6.3, §6.4) -------------------------------------------------

class ChunkSignatureChain:
    """Verifies the chained chunk signatures and the trailer signature of one request."""

    def __init__(self, signing_key: bytes, timestamp: str, scope: str, seed_signature: str) -> None:
        self._key = signing_key
        self._prefix = f"\n{timestamp}\n{scope}\n"
        self.previous = seed_signature

    def verify_chunk(self, chunk_sha256_hex: str, signature: str) -> None:
        """Check one chunk's signature (the final empty chunk too); advances the chain."""
        sts = (f"AWS4-HMAC-SHA256-PAYLOAD{self._prefix}{self.previous}\n"
               f"{EMPTY_SHA256}\n{chunk_sha256_hex}")
        self._check(sts, signature)

    def verify_trailer(self, canonical_trailer: bytes, signature: str) -> None:
        """Check ``x-amz-trailer-signature`` over the canonical trailer block."""
        digest = hashlib.sha256(canonical_trailer).hexdigest()
        self._check(f"AWS4-HMAC-SHA256-TRAILER{self._prefix}{self.previous}\n{digest}", signature)

    def _check(self, sts: str, signature: str) -> None:
        expected = sign(self._key, sts)
        if not same(expected, signature):
            raise SignatureDoesNotMatch(StringToSign=sts, SignatureProvided=signature)
        self.previous = expected
