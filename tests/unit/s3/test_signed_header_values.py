"""Signed header values as the client sent their bytes, and non-ASCII user metadata as S3
returns it (RFC 2047, S3's "double encoding")."""

from __future__ import annotations

import base64
import hashlib
import hmac
from datetime import UTC, datetime

import pytest

from bleepstore import errors
from bleepstore.model import Credential
from bleepstore.s3.names import mail_safe, user_metadata_from_headers
from bleepstore.s3.sigv4 import SigningRequest, authenticate

AKID, SECRET = "AKIDEXAMPLE", "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY"
NOW = datetime(2013, 5, 24, tzinfo=UTC)
TS = "20130524T000000Z"
EMPTY = hashlib.sha256(b"").hexdigest()
CRED = Credential(AKID, SECRET, owner_id="o" * 64, display_name="example")
SIGNED = "content-type;host;x-amz-content-sha256;x-amz-date;x-amz-meta-m"


def sign_bytes(canonical_request: bytes) -> str:
    """An independent SigV4 signer over the canonical request's bytes."""
    scope = f"{TS[:8]}/us-east-1/s3/aws4_request"
    sts = f"AWS4-HMAC-SHA256\n{TS}\n{scope}\n{hashlib.sha256(canonical_request).hexdigest()}"
    key = ("AWS4" + SECRET).encode()
    for part in (TS[:8], "us-east-1", "s3", "aws4_request"):
        key = hmac.new(key, part.encode(), hashlib.sha256).digest()
    return hmac.new(key, sts.encode(), hashlib.sha256).hexdigest()


def request(meta_text: str, meta_wire: bytes, *, content_type: str = "",
            tamper: bool = False) -> SigningRequest:
    """A PUT whose x-amz-meta-m is ``meta_wire`` on the wire; ``meta_text`` is what the
    front hands over (web/environ.py ``wire_text``), and the signature is over the bytes."""
    creq = (b"PUT\n/b/k\n\n"
            + f"content-type:{content_type}\nhost:h\nx-amz-content-sha256:{EMPTY}\n"
              f"x-amz-date:{TS}\n".encode()
            + b"x-amz-meta-m:" + meta_wire + b"\n"
            + f"\n{SIGNED}\n{EMPTY}".encode())
    signature = sign_bytes(creq + (b"!" if tamper else b""))
    headers = {"host": "h", "x-amz-date": TS, "x-amz-content-sha256": EMPTY,
               "content-type": content_type, "x-amz-meta-m": meta_text,
               "authorization": f"AWS4-HMAC-SHA256 Credential={AKID}/{TS[:8]}/us-east-1/s3/"
                                f"aws4_request, SignedHeaders={SIGNED}, Signature={signature}"}
    return SigningRequest("PUT", "/b/k", "", headers.get, {}, tuple(headers))


def test_signed_empty_content_type_is_an_empty_header() -> None:
    result = authenticate(request("v", b"v"), lambda _: CRED, now=NOW)
    assert "content-type:\n" in result.canonical_request


def test_utf8_metadata_is_canonicalised_from_its_bytes() -> None:
    wire = "héllo 中".encode()
    assert authenticate(request("héllo 中", wire), lambda _: CRED, now=NOW).credential == CRED


def test_bytes_that_are_not_utf8_are_signed_as_they_came() -> None:
    # web/environ.py hands undecodable bytes over as surrogates (surrogateescape).
    wire = b"caf\xe9 \xff"
    text = wire.decode("utf-8", "surrogateescape")
    assert authenticate(request(text, wire), lambda _: CRED, now=NOW).credential == CRED


def test_a_mismatch_reports_a_printable_canonical_request() -> None:
    wire = b"caf\xe9"
    with pytest.raises(errors.SignatureDoesNotMatch) as info:
        authenticate(request(wire.decode("utf-8", "surrogateescape"), wire, tamper=True),
                     lambda _: CRED, now=NOW)
    shown = info.value.extra["CanonicalRequest"]
    assert "x-amz-meta-m:caf\ufffd\n" in shown
    shown.encode("utf-8")  # no lone surrogates in an error document


# --- user metadata as S3 returns it ---------------------------------------------------------


def latin1_view(text: str) -> str:
    """A header value as WSGI hands it over: the UTF-8 bytes the client sent, as latin-1."""
    return text.encode().decode("latin-1")


def test_ascii_metadata_is_kept_as_sent() -> None:
    assert mail_safe("plain ascii, =?x?= ~") == "plain ascii, =?x?= ~"
    assert user_metadata_from_headers([("x-amz-meta-a", "  v  ")]) == (("x-amz-meta-a", "  v  "),)


def test_non_ascii_metadata_is_rfc2047_double_encoded_as_s3_does() -> None:
    # S3 answers UTF-8 "ö" with =?UTF-8?B?w4PCtg==?= (each byte read as ISO-8859-1, then
    # UTF-8), as measured on AWS in minio/minio#21282 and decoded by AWS's own S3EC.
    assert user_metadata_from_headers([("x-amz-meta-m", latin1_view("ö"))]) == (
        ("x-amz-meta-m", "=?UTF-8?B?w4PCtg==?="),)
    value = latin1_view("héllo 中")
    stored = dict(user_metadata_from_headers([("X-Amz-Meta-M", value), ("x-amz-meta-m", "x")]))
    encoded = stored["x-amz-meta-m"]
    assert encoded.startswith("=?UTF-8?B?") and encoded.endswith("?=") and encoded.isascii()
    assert base64.b64decode(encoded[10:-2]).decode("utf-8") == value + ",x"


def test_metadata_size_is_counted_on_the_bytes_sent() -> None:
    # 1 (name) + 2047 wire bytes fit even though the stored (encoded) value is longer.
    value = latin1_view("é" * 1000 + "v" * 47)
    ((_, stored),) = user_metadata_from_headers([("x-amz-meta-k", value)])
    assert len(stored) > 2048
    with pytest.raises(errors.MetadataTooLarge):
        user_metadata_from_headers([("x-amz-meta-k", value + "v")])
