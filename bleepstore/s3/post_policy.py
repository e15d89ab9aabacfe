"""POST Object's form authentication and POST policy (AWS's "POST Policy" and "Browser-based
uploads"; docs/decisions.md "CORS and POST Object"). Pure.

The form carries its own credentials: SigV4 (``x-amz-algorithm``, ``x-amz-credential``,
``x-amz-date``, ``x-amz-signature`` = hex HMAC-SHA256 of the base64 policy text under the
SigV4 signing key) or SigV2 (``AWSAccessKeyId``, ``signature`` = base64 HMAC-SHA1 of the
same text); a form with neither is anonymous. The policy is a base64 JSON document with an
``expiration`` and ``conditions`` that every field must satisfy.

Invariants:
- the signature is checked over the policy text exactly as received, before the policy is
  decoded, so a forged form learns nothing about the policy language or the bucket;
- signatures are compared with ``hmac.compare_digest`` only;
- field names are matched case-insensitively, values case-sensitively; every field but
  the exempt ones must be named by a condition;
- errors are AWS's: 400 ``InvalidArgument`` for a missing field, 403
  ``InvalidAccessKeyId`` / ``SignatureDoesNotMatch``, 400 ``InvalidPolicyDocument`` for a
  policy that does not parse, 403 ``AccessDenied`` "Invalid according to Policy: ..." for
  one the form does not satisfy.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import json
import re
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from bleepstore import errors
from bleepstore.model import Credential
from bleepstore.s3.sigv4_signing import ALGORITHM, signing_key

_EXPIRATION = re.compile(r"(\d{4})-(\d{2})-(\d{2})T(\d{2}):(\d{2}):(\d{2})(?:\.\d{1,9})?Z")
_ISO_BASIC = re.compile(r"\d{8}T\d{6}Z")
_DATE = re.compile(r"\d{8}")
_INTEGER = re.compile(r"-?[0-9]{1,19}")
SIGV4_FIELDS = (("x-amz-algorithm", "X-Amz-Algorithm"), ("x-amz-credential", "X-Amz-Credential"),
                ("x-amz-date", "X-Amz-Date"), ("x-amz-signature", "X-Amz-Signature"),
                ("policy", "Policy"))
SIGV2_FIELDS = (("awsaccesskeyid", "AWSAccessKeyId"), ("signature", "Signature"),
                ("policy", "Policy"))
EXEMPT = {4: frozenset({"policy", "x-amz-signature", "file"}),
          2: frozenset({"policy", "signature", "awsaccesskeyid", "file"})}
MSG_FAILED = "Invalid according to Policy: Policy Condition failed: "
MSG_EXTRA = "Invalid according to Policy: Extra input fields: "
MSG_EXPIRED = "Invalid according to Policy: Policy expired."


class FormFields:
    """The fields before the file, in form order; lookups ignore the name's case and join
    repeated fields with commas (AWS: "the values must be separated by commas")."""

    def __init__(self, items: Iterable[tuple[str, str]]) -> None:
        self.items: tuple[tuple[str, str], ...] = tuple(items)
        self._values: dict[str, list[str]] = {}
        self._names: dict[str, str] = {}
        for name, value in self.items:
            self._values.setdefault(name.lower(), []).append(value)
            self._names.setdefault(name.lower(), name)

    def get(self, name: str) -> str | None:
        values = self._values.get(name.lower())
        return ",".join(values) if values is not None else None

    def names(self) -> list[str]:
        """Each field name once, lowercase, in the order first sent."""
        return list(self._names)

    def sent_name(self, lowered: str) -> str:
        return self._names.get(lowered, lowered)


# --- form authentication -----------------------------------------------------------------

@dataclass(frozen=True)
class FormAuth:
    credential: Credential | None  # None: anonymous (no signature fields at all)
    version: int | None = None  # 4 or 2 when signed


def _require(fields: FormFields, names: Sequence[tuple[str, str]]) -> list[str]:
    values = []
    for lowered, canonical in names:
        value = fields.get(lowered)
        if value is None:
            raise errors.InvalidArgument(
                f"Bucket POST must contain a field named '{canonical}'.  If it is specified, "
                "please check the order of the fields.", ArgumentName=canonical, ArgumentValue="")
        values.append(value)
    return values


def _same(expected: str, provided: str) -> bool:
    return provided.isascii() and hmac.compare_digest(expected, provided)


def _lookup(lookup: Callable[[str], Credential | None], access_key: str) -> Credential:
    cred = lookup(access_key)
    if cred is None or not cred.active:
        raise errors.InvalidAccessKeyId(AWSAccessKeyId=access_key)
    return cred


def _mismatch(access_key: str, policy: str, provided: str) -> errors.S3Error:
    return errors.SignatureDoesNotMatch(
        AWSAccessKeyId=access_key, StringToSign=policy, SignatureProvided=provided,
        StringToSignBytes=" ".join(f"{b:02x}" for b in policy.encode("utf-8")))


def _credential_scope(value: str, region: str | None) -> tuple[str, str, str]:
    """``AKID/yyyymmdd/region/s3/aws4_request`` -> (access key, date, region)."""
    def refuse(message: str, **extra: str) -> errors.S3Error:
        return errors.InvalidArgument(message, ArgumentName="X-Amz-Credential",
                                      ArgumentValue=value, **extra)
    parts = value.split("/")
    if len(parts) == 5 and not parts[0]:
        raise refuse("a non-empty Access Key (AKID) must be provided in the credential.")
    if (len(parts) != 5 or not _DATE.fullmatch(parts[1]) or not parts[2] or parts[3] != "s3"
            or parts[4] != "aws4_request"):
        raise refuse('the Credential is mal-formed; expecting '
                     '"<YOUR-AKID>/YYYYMMDD/REGION/SERVICE/aws4_request".')
    if region is not None and parts[2] != region:
        raise refuse(f"the region '{parts[2]}' is wrong; expecting '{region}'", Region=region)
    return parts[0], parts[1], parts[2]


def authenticate(fields: FormFields, lookup: Callable[[str], Credential | None], *,
                 server_region: str = "us-east-1", enforce_region: bool = False) -> FormAuth:
    """Who signed the form: SigV4 when any of its fields is present, else SigV2 when any of
    its fields is, else anonymous (a lone ``policy`` binds nothing)."""
    if any(fields.get(name) is not None for name, _ in SIGV4_FIELDS[:4]):
        algorithm, credential, date, signature, policy = _require(fields, SIGV4_FIELDS)
        if algorithm != ALGORITHM:
            raise errors.InvalidArgument('X-Amz-Algorithm only supports "AWS4-HMAC-SHA256"',
                                         ArgumentName="X-Amz-Algorithm", ArgumentValue=algorithm)
        access_key, day, region = _credential_scope(
            credential, server_region if enforce_region else None)
        if not _ISO_BASIC.fullmatch(date):
            raise errors.InvalidArgument("X-Amz-Date must be formated via ISO8601 Long format",
                                         ArgumentName="X-Amz-Date", ArgumentValue=date)
        cred = _lookup(lookup, access_key)
        key = signing_key(cred.secret_key, day, region)
        expected = hmac.new(key, policy.encode("utf-8"), hashlib.sha256).hexdigest()
        if not _same(expected, signature):
            raise _mismatch(access_key, policy, signature)
        return FormAuth(cred, 4)
    if fields.get("awsaccesskeyid") is not None or fields.get("signature") is not None:
        access_key, signature, policy = _require(fields, SIGV2_FIELDS)
        cred = _lookup(lookup, access_key)
        digest = hmac.new(cred.secret_key.encode("utf-8"), policy.encode("utf-8"),
                          hashlib.sha1).digest()
        if not _same(base64.b64encode(digest).decode("ascii"), signature):
            raise _mismatch(access_key, policy, signature)
        return FormAuth(cred, 2)
    return FormAuth(None)


# --- the policy document -----------------------------------------------------------------

@dataclass(frozen=True)
class Condition:
    op: str  # "eq", "starts-with" or "content-length-range"
    field: str | None  # lowercase name without "$"; None when the "$" is missing
    value: str
    shown: str  # the condition as AWS prints it in a failure
    low: int | None = None  # content-length-range bounds (None: not a number: fails)
    high: int | None = None


@dataclass(frozen=True)
class PostPolicy:
    expiration: datetime
    conditions: tuple[Condition, ...]

    def length_range(self) -> tuple[int, int] | None:
        """The tightest ``content-length-range`` (bounds inclusive), or None."""
        ranges = [(c.low, c.high) for c in self.conditions
                  if c.op == "content-length-range" and c.low is not None and c.high is not None]
        if not ranges:
            return None
        return max(lo for lo, _ in ranges), min(hi for _, hi in ranges)


def _invalid(detail: str) -> errors.S3Error:
    return errors.InvalidPolicyDocument(f"Invalid Policy: {detail}")


def _no_float(text: str) -> Any:
    raise ValueError(text)


def _shown(items: Sequence[Any]) -> str:
    return json.dumps(list(items), ensure_ascii=False)


def parse_policy(policy: str) -> PostPolicy:
    """Decode and parse the ``policy`` field, or raise 400 InvalidPolicyDocument."""
    try:
        raw = base64.b64decode("".join(policy.split()), validate=True)
    except (binascii.Error, ValueError):
        raise _invalid("invalid Base64 encoding.") from None
    try:
        doc = json.loads(raw, parse_float=_no_float, parse_constant=_no_float)
    except ValueError:
        raise _invalid("Invalid JSON.") from None
    if not isinstance(doc, dict):
        raise _invalid("Invalid JSON.")
    for name in doc:
        if name not in ("expiration", "conditions"):
            raise _invalid(f"Unexpected: '{name.lower()}'")
    if "expiration" not in doc:
        raise _invalid("Policy missing expiration.")
    expiration = _expiration(doc["expiration"])
    if "conditions" not in doc:
        raise _invalid("Policy missing conditions.")
    if not isinstance(doc["conditions"], list):
        raise _invalid("Invalid 'conditions' value: must be a List.")
    return PostPolicy(expiration, tuple(_condition(c) for c in doc["conditions"]))


def _expiration(value: Any) -> datetime:
    m = _EXPIRATION.fullmatch(value) if isinstance(value, str) else None
    try:
        if m is None:
            raise ValueError(value)
        y, mo, d, h, mi, sec = (int(g) for g in m.groups())
        return datetime(y, mo, d, h, mi, sec, tzinfo=UTC)
    except ValueError:
        raise _invalid(f"Invalid 'expiration' value: '{value}'") from None


def _field(operand: str) -> str | None:
    return operand[1:].lower() if operand.startswith("$") else None


def _condition(item: Any) -> Condition:
    if isinstance(item, dict):
        if len(item) != 1:
            raise _invalid("Invalid Simple-Condition: Simple-Conditions must have exactly one "
                           "property specified.")
        (name, value), = item.items()
        if value is None:
            raise _invalid("Invalid JSON.")
        if not isinstance(value, str):
            raise _invalid("Invalid Simple-Condition: value must be a string.")
        return Condition("eq", name.lower(), value, _shown(["eq", "$" + name, value]))
    if not isinstance(item, list):
        raise _invalid("Invalid condition test: must be a List or Object.")
    if not item or not isinstance(item[0], str):
        raise _invalid("Invalid Condition: missing operation identifier.")
    op = item[0].lower()
    if op not in ("eq", "starts-with", "content-length-range"):
        raise _invalid(f"Invalid Condition: unknown operation '{item[0]}'.")
    if len(item) != 3:
        raise _invalid(f"Invalid {item[0]}: wrong number of arguments.")
    if op == "content-length-range":
        low, high = (_bound(v) for v in item[1:])
        return Condition(op, None, "", _shown(item), low, high)
    if not isinstance(item[1], str) or not isinstance(item[2], str):
        raise _invalid("Invalid JSON.")
    return Condition(op, _field(item[1]), item[2], _shown(item))


def _bound(value: Any) -> int | None:
    """A size bound: an integer, or a string of one (AWS takes ``"5"``); anything else
    fails the condition when it is checked. Negative sizes are refused [BS]."""
    if isinstance(value, bool):
        raise _invalid("Invalid JSON.")
    if isinstance(value, str):
        if not _INTEGER.fullmatch(value.strip()):
            return None
        value = int(value.strip())
    if not isinstance(value, int):
        raise _invalid("Invalid JSON.")
    if value < 0:
        raise _invalid("Invalid content-length-range: the bounds must not be negative.")
    return value


# --- evaluation --------------------------------------------------------------------------

def check_expiration(policy: PostPolicy, now: datetime) -> None:
    if now > policy.expiration:
        raise errors.AccessDenied(MSG_EXPIRED)


def _holds(cond: Condition, fields: FormFields, bucket: str) -> bool:
    if cond.op == "content-length-range":
        return cond.low is not None and cond.high is not None
    if cond.field is None:
        return False
    actual = bucket if cond.field == "bucket" else fields.get(cond.field)
    if actual is None:
        return False
    if cond.op == "eq":
        return actual == cond.value
    if cond.field == "content-type" and "," in actual:  # AWS: a list, each must match
        return all(part.lstrip().startswith(cond.value) for part in actual.split(","))
    return actual.startswith(cond.value)


def check_conditions(policy: PostPolicy, fields: FormFields, bucket: str,
                     version: int) -> None:
    """Every condition holds (in policy order), then every field is covered by one;
    ``bucket`` is the bucket the form was posted to, never a form field."""
    for cond in policy.conditions:
        if not _holds(cond, fields, bucket):
            raise errors.AccessDenied(MSG_FAILED + cond.shown)
    covered = {c.field for c in policy.conditions if c.field is not None}
    for name in fields.names():
        if name in EXEMPT[version] or name.startswith("x-ignore-") or name in covered:
            continue
        raise errors.AccessDenied(MSG_EXTRA + fields.sent_name(name))


def expand_filename(fields: FormFields, filename: str | None) -> FormFields:
    """``${filename}`` in every field but the signed ones becomes the file's name without
    its path (text after the last ``/`` or ``\\``). A file part without a ``filename``
    parameter leaves the variable as it is (S3's observed answer)."""
    if filename is None:
        return fields
    base = re.split(r"[/\\]", filename)[-1]
    untouched = {"policy", "x-amz-signature", "signature", "awsaccesskeyid"}
    return FormFields((name, value if name.lower() in untouched
                       else value.replace("${filename}", base))
                      for name, value in fields.items)
