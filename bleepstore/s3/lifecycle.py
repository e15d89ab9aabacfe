"""Bucket lifecycle configuration: the document PutBucketLifecycleConfiguration takes, the one
GetBucketLifecycleConfiguration gives back, and the rules they hold (pure; when a rule's
action falls due: ``s3/lifecycle_due.py``).

Invariants:
- ``parse_configuration`` returns a fully checked ``Configuration`` or raises the error AWS
  answers (docs/decisions.md, Lifecycle). Order: rule count, IDs, each rule in document order,
  overlapping rule-level prefixes, transitions last (BleepStore keeps one storage class, so a
  configuration that only fails there is refused as AWS refuses a class it does not offer).
- A configuration round-trips through ``to_json`` / ``from_json`` unchanged, and ``render``
  writes every rule as it was sent: a rule-level ``Prefix`` stays one, an empty ``Filter``
  stays ``<Filter/>``; rules sent without an ID carry the one made for them at PUT.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, replace
from datetime import UTC, datetime
from typing import Any

from lxml import etree

from bleepstore.errors import InvalidArgument, InvalidRequest, InvalidStorageClass, MalformedXML
from bleepstore.s3.xml import (
    S3NS,
    Element,
    child_text,
    local_name,
    parse_document,
    raw_text,
    xml_safe,
)
from bleepstore.s3.xml import text as trimmed

MAX_RULES = 1000
MAX_ID = 255
MAX_SIZE = 1_099_511_627_776_000  # 1000 x 2^40, AWS's bound on a size filter
INT32_MAX = 2**31 - 1
TRANSITION_CLASSES = ("GLACIER", "STANDARD_IA", "ONEZONE_IA", "INTELLIGENT_TIERING",
                      "DEEP_ARCHIVE", "GLACIER_IR")
MIN_SIZE_HEADER = "x-amz-transition-default-minimum-object-size"
MIN_SIZES = ("all_storage_classes_128K", "varies_by_storage_class")

Tag = tuple[str, str]
_RULE_FIELDS = ("ID", "Prefix", "Filter", "Status", "Expiration", "Transition",
                "NoncurrentVersionTransition", "NoncurrentVersionExpiration",
                "AbortIncompleteMultipartUpload")
_ACTIONS = _RULE_FIELDS[4:]
_SIZES = ("ObjectSizeGreaterThan", "ObjectSizeLessThan")
MSG_NO_ACTION = "At least one action needs to be specified in a rule"
MSG_V2_PREFIX = ("Base level prefix cannot be used in Lifecycle V2, prefixes are only "
                 "supported in the Filter.")


@dataclass(frozen=True)
class Filter:
    """The objects a rule applies to, in the form it was written: ``shape`` is ``legacy``
    (rule-level Prefix), ``all`` (empty Filter), ``prefix``, ``tag``, ``gt``, ``lt`` or
    ``and``. ``prefix`` None: not given. Size bounds are strict, as AWS's."""

    shape: str
    prefix: str | None = None
    tags: tuple[Tag, ...] = ()
    greater_than: int | None = None
    less_than: int | None = None

    def matches(self, key: str, size: int, tags: Sequence[Tag]) -> bool:
        return (key.startswith(self.prefix or "") and all(t in tags for t in self.tags)
                and (self.greater_than is None or size > self.greater_than)
                and (self.less_than is None or size < self.less_than))

    @property
    def uses_sizes(self) -> bool:
        return self.greater_than is not None or self.less_than is not None


@dataclass(frozen=True)
class Rule:
    id: str
    enabled: bool
    filter: Filter
    days: int | None = None  # Expiration/Days
    date: str | None = None  # Expiration/Date, stored as YYYY-MM-DDT00:00:00.000Z
    expired_marker: bool | None = None  # Expiration/ExpiredObjectDeleteMarker
    noncurrent_days: int | None = None  # NoncurrentVersionExpiration/NoncurrentDays
    newer_noncurrent: int | None = None  # NoncurrentVersionExpiration/NewerNoncurrentVersions
    abort_days: int | None = None  # AbortIncompleteMultipartUpload/DaysAfterInitiation


@dataclass(frozen=True)
class Configuration:
    rules: tuple[Rule, ...]
    min_object_size: str = MIN_SIZES[0]  # the PUT's header, echoed (no transitions here)


# --- parsing and validation --------------------------------------------------------------


def _fields(el: Element, allowed: Sequence[str], repeated: Sequence[str] = ()
            ) -> dict[str, list[Element]]:
    """Child elements by name; an unknown or repeated one does not fit AWS's schema."""
    out: dict[str, list[Element]] = {}
    for c in el:
        name = local_name(c)
        if name not in allowed or (name in out and name not in repeated):
            raise MalformedXML()
        out.setdefault(name, []).append(c)
    return out


def _int(el: Element, limit: int = INT32_MAX) -> int:
    value = trimmed(el)
    digits = value[1:] if value[:1] in "+-" else value
    if not digits.isascii() or not digits.isdigit() or len(digits) > 20:
        raise MalformedXML()
    number = int(value)
    if abs(number) > limit:
        raise MalformedXML()
    return number


def _positive(el: Element, name: str, action: str) -> int:
    number = _int(el)
    if number <= 0:
        raise InvalidArgument(f"'{name}' for {action} action must be a positive integer")
    return number


def _bool(el: Element) -> bool:
    value = trimmed(el).lower()
    if value not in ("true", "false", "1", "0"):
        raise MalformedXML()
    return value in ("true", "1")


def _midnight(el: Element) -> str:
    """An ISO 8601 date-time (xs:dateTime; no zone means UTC) that must be a midnight UTC."""
    value = trimmed(el)
    try:
        if "T" not in value:
            raise ValueError(value)
        dt = datetime.fromisoformat(value.replace("Z", "+00:00").replace("z", "+00:00"))
    except ValueError:
        raise MalformedXML() from None
    dt = dt.replace(tzinfo=UTC) if dt.tzinfo is None else dt.astimezone(UTC)
    if (dt.hour, dt.minute, dt.second, dt.microsecond) != (0, 0, 0, 0):
        raise InvalidArgument("'Date' must be at midnight GMT")
    return dt.strftime("%Y-%m-%dT00:00:00.000Z")


def _size(el: Element, name: str) -> int:
    number = _int(el, 2**63 - 1)
    low = 0 if name == "ObjectSizeGreaterThan" else 1
    if not low <= number <= MAX_SIZE:
        raise InvalidRequest(f"'{name}' should be between {low} and {MAX_SIZE}.")
    return number


def _tag(el: Element) -> Tag:
    f = _fields(el, ("Key", "Value"))
    if "Key" not in f or not raw_text(f["Key"][0]):
        raise MalformedXML()
    return raw_text(f["Key"][0]), raw_text(f["Value"][0]) if "Value" in f else ""


def _and(el: Element) -> Filter:
    f = _fields(el, ("Prefix", "Tag", *_SIZES), repeated=("Tag",))
    if sum(len(v) for v in f.values()) < 2:  # "two or more predicates"
        raise MalformedXML()
    tags = tuple(_tag(t) for t in f.get("Tag", []))
    if len({k for k, _ in tags}) != len(tags):
        raise InvalidRequest("Duplicate Tag Keys are not allowed.")
    gt, lt = (_size(f[n][0], n) if n in f else None for n in _SIZES)
    if gt is not None and lt is not None and gt >= lt:
        raise InvalidRequest(
            "'ObjectSizeLessThan' has to be a value greater than 'ObjectSizeGreaterThan'.")
    prefix = raw_text(f["Prefix"][0]) if "Prefix" in f else None
    return Filter("and", prefix, tags, gt, lt)


def _filter(el: Element) -> Filter:
    f = _fields(el, ("Prefix", "Tag", *_SIZES, "And"))
    if not f:
        return Filter("all")
    if len(f) > 1:  # "exactly one of Prefix, Tag, ObjectSizeGreaterThan, ... or And"
        raise MalformedXML()
    name, (only,) = next(iter(f.items()))
    if name == "Prefix":
        return Filter("prefix", raw_text(only))
    if name == "Tag":
        return Filter("tag", tags=(_tag(only),))
    if name == "ObjectSizeGreaterThan":
        return Filter("gt", greater_than=_size(only, name))
    if name == "ObjectSizeLessThan":
        return Filter("lt", less_than=_size(only, name))
    return _and(only)


def _expiration(el: Element) -> dict[str, Any]:
    f = _fields(el, ("Days", "Date", "ExpiredObjectDeleteMarker"))
    if len(f) != 1:  # AWS: ExpiredObjectDeleteMarker beside Days is MalformedXML
        raise MalformedXML()
    if "Days" in f:
        return {"days": _positive(f["Days"][0], "Days", "Expiration")}
    if "Date" in f:
        return {"date": _midnight(f["Date"][0])}
    return {"expired_marker": _bool(f["ExpiredObjectDeleteMarker"][0])}


def _noncurrent(el: Element, v2: bool) -> dict[str, Any]:
    f = _fields(el, ("NoncurrentDays", "NewerNoncurrentVersions"))
    if "NoncurrentDays" not in f:
        raise MalformedXML()
    days = _positive(f["NoncurrentDays"][0], "NoncurrentDays", "NoncurrentVersionExpiration")
    newer = None
    if "NewerNoncurrentVersions" in f:
        if not v2:
            raise InvalidRequest(
                "NewerNoncurrentVersions element can only be used in Lifecycle V2.")
        newer = _positive(f["NewerNoncurrentVersions"][0], "NewerNoncurrentVersions",
                          "NoncurrentVersionExpiration")
    return {"noncurrent_days": days, "newer_noncurrent": newer}


def _abort(el: Element) -> dict[str, Any]:
    f = _fields(el, ("DaysAfterInitiation",))
    if "DaysAfterInitiation" not in f:
        raise MalformedXML()
    return {"abort_days": _positive(f["DaysAfterInitiation"][0], "DaysAfterInitiation",
                                    "AbortIncompleteMultipartUpload")}


def _transition_class(el: Element, noncurrent: bool) -> str:
    """A transition's shape as AWS's schema has it; -> its storage class."""
    when = ("NoncurrentDays", "NewerNoncurrentVersions") if noncurrent else ("Days", "Date")
    f = _fields(el, (*when, "StorageClass"))
    storage_class = child_text(el, "StorageClass")
    if storage_class not in TRANSITION_CLASSES:
        raise MalformedXML()
    if noncurrent and "NoncurrentDays" not in f or not noncurrent and len(f) != 2:
        raise MalformedXML()
    for name, (value,) in f.items():
        if name == "Date":
            _midnight(value)
        elif name != "StorageClass" and _int(value) < 0:
            raise MalformedXML()
    return storage_class


def _scope(f: dict[str, list[Element]], v2: bool) -> Filter:
    if ("Prefix" in f) == ("Filter" in f):
        raise MalformedXML()
    if "Prefix" in f and v2:
        raise InvalidRequest(MSG_V2_PREFIX)
    if "Filter" in f and not v2:
        raise InvalidRequest("Filter element can only be used in Lifecycle V2.")
    return Filter("legacy", raw_text(f["Prefix"][0])) if "Prefix" in f else _filter(
        f["Filter"][0])


def _rule(el: Element, v2: bool) -> tuple[Rule, list[str]]:
    """One rule, checked; -> (the rule without its generated ID, its transition classes)."""
    f = _fields(el, _RULE_FIELDS, repeated=("Transition", "NoncurrentVersionTransition"))
    status = child_text(el, "Status")
    if status not in ("Enabled", "Disabled"):
        raise MalformedXML()
    scope = _scope(f, v2)
    if not any(a in f for a in _ACTIONS):
        raise InvalidRequest(MSG_NO_ACTION)
    fields: dict[str, Any] = {}
    if "Expiration" in f:
        fields.update(_expiration(f["Expiration"][0]))
    if "NoncurrentVersionExpiration" in f:
        fields.update(_noncurrent(f["NoncurrentVersionExpiration"][0], v2))
    if "AbortIncompleteMultipartUpload" in f:
        fields.update(_abort(f["AbortIncompleteMultipartUpload"][0]))
    for action, key in (("ExpiredObjectDeleteMarker", "expired_marker"),
                        ("AbortIncompleteMultipartUpload", "abort_days")):
        if key in fields and scope.tags:
            raise InvalidRequest(f"{action} cannot be specified with Tags.")
        if key in fields and scope.uses_sizes:
            raise InvalidRequest(f"{action} cannot be specified with Object Size.")
    classes = [_transition_class(t, False) for t in f.get("Transition", [])]
    classes += [_transition_class(t, True) for t in f.get("NoncurrentVersionTransition", [])]
    rule_id = raw_text(f["ID"][0]) if "ID" in f else ""
    return Rule(rule_id, status == "Enabled", scope, **fields), classes


def _check_ids(rules: Sequence[Element]) -> None:
    seen: set[str] = set()
    for el in rules:
        ids = [raw_text(c) for c in el if local_name(c) == "ID"]
        rule_id = ids[0] if ids else ""
        if len(rule_id) > MAX_ID:
            raise InvalidArgument(f"ID length should not exceed allowed limit of {MAX_ID}")
        if rule_id and rule_id in seen:
            raise InvalidArgument("Rule ID must be unique. Found same ID for more than one rule")
        seen.add(rule_id)


def _check_overlaps(rules: Sequence[Rule], elements: Sequence[Element]) -> None:
    """Lifecycle V1 (rule-level prefixes): no two rules taking one kind of action may have
    prefixes where one begins the other."""
    for kind in _ACTIONS:
        prefixes = sorted(r.filter.prefix or "" for r, el in zip(rules, elements, strict=True)
                          if any(local_name(c) == kind for c in el))
        for a, b in zip(prefixes, prefixes[1:], strict=False):
            if b.startswith(a):
                raise InvalidRequest(
                    f"Found overlapping prefixes '{a}' and '{b}' for same action type '{kind}'")


def parse_configuration(body: bytes, new_id: Callable[[], str],
                        min_object_size: str | None = None) -> Configuration:
    """A PutBucketLifecycleConfiguration body (and its minimum-size header) -> the checked
    configuration; rules sent without an ID get ``new_id()``."""
    if min_object_size is not None and min_object_size not in MIN_SIZES:
        raise InvalidRequest(f"Invalid TransitionDefaultMinimumObjectSize found: "
                             f"{min_object_size}")
    root = parse_document(body)
    if local_name(root) != "LifecycleConfiguration":
        raise MalformedXML()
    elements = list(_fields(root, ("Rule",), repeated=("Rule",)).get("Rule", []))
    if not elements:
        raise InvalidRequest("At least one lifecycle rule must be specified.")
    if len(elements) > MAX_RULES:
        raise InvalidRequest("The number of lifecycle rules must not exceed the allowed limit "
                             f"of {MAX_RULES} rules.")
    _check_ids(elements)
    v2 = any(local_name(c) == "Filter" for c in elements[0])
    parsed = [_rule(el, v2) for el in elements]
    rules = [r for r, _ in parsed]
    if not v2:
        _check_overlaps(rules, elements)
    refused = next((c for _, classes in parsed for c in classes), None)
    if refused is not None:  # BleepStore keeps one storage class: nothing to move objects to
        raise InvalidStorageClass(StorageClassRequested=refused)
    return Configuration(tuple(r if r.id else replace(r, id=new_id()) for r in rules),
                         min_object_size or MIN_SIZES[0])


# --- storage (normalised JSON) and rendering ---------------------------------------------


def to_json(config: Configuration) -> str:
    return json.dumps({"min_object_size": config.min_object_size,
                       "rules": [asdict(r) for r in config.rules]}, separators=(",", ":"))


def from_json(document: str) -> Configuration:
    data = json.loads(document)
    rules = []
    for r in data["rules"]:
        f = r.pop("filter")
        tags = tuple((str(k), str(v)) for k, v in f.pop("tags"))
        rules.append(Rule(filter=Filter(tags=tags, **f), **r))
    return Configuration(tuple(rules), data["min_object_size"])


def _add(parent: Any, name: str, value: str | int | bool | None = None) -> Any:
    el = etree.SubElement(parent, "{" + S3NS + "}" + name)
    if isinstance(value, bool):
        el.text = "true" if value else "false"
    elif value is not None:
        el.text = xml_safe(str(value), name)
    return el


def _render_filter(parent: Any, flt: Filter) -> None:
    if flt.shape == "legacy":
        _add(parent, "Prefix", flt.prefix or "")
        return
    el = _add(parent, "Filter")
    if flt.shape == "and":
        el = _add(el, "And")
    if flt.prefix is not None:
        _add(el, "Prefix", flt.prefix)
    for key, value in flt.tags:
        tag = _add(el, "Tag")
        _add(tag, "Key", key)
        _add(tag, "Value", value)
    for name, size in zip(_SIZES, (flt.greater_than, flt.less_than), strict=True):
        if size is not None:
            _add(el, name, size)


def render(config: Configuration) -> bytes:
    """GetBucketLifecycleConfiguration: ID, Filter (or Prefix), Status, then the actions."""
    root = etree.Element("{" + S3NS + "}LifecycleConfiguration", nsmap={None: S3NS})
    for r in config.rules:
        el = _add(root, "Rule")
        _add(el, "ID", r.id)
        _render_filter(el, r.filter)
        _add(el, "Status", "Enabled" if r.enabled else "Disabled")
        if r.days is not None or r.date is not None or r.expired_marker is not None:
            exp = _add(el, "Expiration")
            for name, value in (("Days", r.days), ("Date", r.date),
                                ("ExpiredObjectDeleteMarker", r.expired_marker)):
                if value is not None:
                    _add(exp, name, value)
        if r.noncurrent_days is not None:
            nve = _add(el, "NoncurrentVersionExpiration")
            _add(nve, "NoncurrentDays", r.noncurrent_days)
            if r.newer_noncurrent is not None:
                _add(nve, "NewerNoncurrentVersions", r.newer_noncurrent)
        if r.abort_days is not None:
            _add(_add(el, "AbortIncompleteMultipartUpload"), "DaysAfterInitiation",
                 r.abort_days)
    body: bytes = etree.tostring(root, encoding="UTF-8", xml_declaration=False)
    return b'<?xml version="1.0" encoding="UTF-8"?>\n' + body
