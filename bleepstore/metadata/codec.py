"""Commands and their outcomes as JSON (cluster mode: Raft log entries and their replies).

Invariants: ``decode_command(encode_command(cmd)) == cmd`` for every command, nested
dataclasses and tuples included; only classes of the ``Command`` union are ever built
(the class name comes from the network), and nested types come from the dataclasses'
own type hints, never from the input. Anything malformed raises ``CodecError`` and
nothing else. An outcome carries a result, or an exception rebuilt as the same class with
the same message/details (S3 errors keep ``extra`` and ``headers``); any other exception
crosses as ``ApplyFailed``, so its text is logged, never shown to a client.
Result lists come back as tuples (recursively): callers unpack them.
"""

from __future__ import annotations

import base64
import dataclasses
import types
from functools import cache
from typing import Any, Union, cast, get_args, get_origin, get_type_hints

from bleepstore import errors
from bleepstore.metadata.commands import Command, InvalidReassignTarget, UserOwnsBuckets

VERSION = 1
_COMMANDS: dict[str, type] = {cls.__name__: cls for cls in get_args(Command)}


def _s3_classes() -> dict[str, type[errors.S3Error]]:
    # NOTE: walk the subclasses rather than ``errors.__all__`` (built before WriteTaskTimeout),
    # and key by class name, not code: ChecksumMismatch/InsufficientStorage share theirs.
    found: dict[str, type[errors.S3Error]] = {}
    pending: list[type[errors.S3Error]] = [errors.S3Error]
    while pending:
        cls = pending.pop()
        if cls.__module__ == errors.__name__:
            found[cls.__name__] = cls
        pending.extend(cls.__subclasses__())
    return found


_S3_ERRORS = _s3_classes()


class CodecError(ValueError):
    """Malformed or unknown JSON for a command or an outcome."""


class ApplyFailed(RuntimeError):
    """An unexpected (non-S3) exception while applying a command on another node."""


def _to_json(value: Any) -> Any:
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {f.name: _to_json(getattr(value, f.name)) for f in dataclasses.fields(value)}
    if isinstance(value, tuple | list):
        return [_to_json(v) for v in value]
    if isinstance(value, dict):
        return {k: _to_json(v) for k, v in value.items()}
    if value is None or isinstance(value, str | int):  # bool is an int
        return value
    if isinstance(value, bytes):  # an inline object's bytes
        return base64.b64encode(value).decode()
    raise CodecError(f"cannot encode {type(value).__name__}")


@cache
def _hints(cls: type) -> dict[str, Any]:
    return get_type_hints(cls)


def _build(cls: type, data: Any) -> Any:
    # NOTE: a field with a default may be absent: entries journalled by an older build
    # (before the field existed) still decode after an upgrade.
    fields = dataclasses.fields(cls)
    names = [f.name for f in fields]
    required = {f.name for f in fields if f.default is dataclasses.MISSING
                and f.default_factory is dataclasses.MISSING}
    if not isinstance(data, dict) or not required <= set(data) <= set(names):
        raise CodecError(f"{cls.__name__}: expected the fields {names}")
    hints = _hints(cls)
    return cls(**{name: _from_json(hints[name], data[name]) for name in names if name in data})


def _from_json(hint: Any, value: Any) -> Any:
    origin, args = get_origin(hint), get_args(hint)
    if dataclasses.is_dataclass(hint):
        return _build(cast(type, hint), value)
    if origin in (types.UnionType, Union) and len(args) == 2 and type(None) in args:  # X | None
        return None if value is None else _from_json(args[args[0] is type(None)], value)
    if origin is tuple and isinstance(value, list):
        if len(args) == 2 and args[1] is Ellipsis:
            return tuple(_from_json(args[0], v) for v in value)
        if len(args) == len(value):
            return tuple(_from_json(a, v) for a, v in zip(args, value, strict=True))
    if origin is dict and isinstance(value, dict):
        return {_from_json(args[0], k): _from_json(args[1], v) for k, v in value.items()}
    if hint in (str, int, bool) and type(value) is hint:
        return value
    if hint is bytes and type(value) is str:
        try:
            return base64.b64decode(value, validate=True)
        except ValueError:  # binascii.Error, or a str that is not ASCII
            raise CodecError("expected base64") from None
    raise CodecError(f"expected {hint}, got {type(value).__name__}")


def encode_command(cmd: Command) -> dict[str, Any]:
    return {"type": type(cmd).__name__, "v": VERSION, "fields": _to_json(cmd)}


def decode_command(data: dict[str, Any]) -> Command:
    if not isinstance(data, dict) or set(data) != {"type", "v", "fields"}:
        raise CodecError("expected an object with type, v, fields")
    cls = _COMMANDS.get(data["type"]) if isinstance(data["type"], str) else None
    if cls is None or type(data["v"]) is not int or data["v"] != VERSION:
        raise CodecError("unknown command type or version")
    return cast(Command, _build(cls, data["fields"]))


def _encode_error(exc: BaseException) -> dict[str, Any]:
    if isinstance(exc, errors.S3Error):
        # A subclass defined elsewhere travels as its nearest errors.py ancestor.
        cls = next(k for k in type(exc).__mro__ if _S3_ERRORS.get(k.__name__) is k)
        return {"kind": "s3", "class": cls.__name__, "message": exc.msg,
                "extra": dict(exc.extra), "headers": dict(exc.headers)}
    if type(exc) is UserOwnsBuckets:
        return {"kind": "user_owns_buckets", "access_key_id": exc.access_key_id,
                "buckets": list(exc.buckets)}
    kind = "invalid_reassign_target" if type(exc) is InvalidReassignTarget else "internal"
    return {"kind": kind, "message": str(exc)}


def encode_outcome(result: Any = None, error: BaseException | None = None) -> dict[str, Any]:
    """A handler's return value (None, bool, int, str, nested tuples/lists), or its error."""
    if error is not None:
        return {"ok": False, "error": _encode_error(error)}
    return {"ok": True, "result": _to_json(result)}


def _error(e: dict[str, Any]) -> BaseException:
    kind, keys = e.get("kind"), set(e) - {"kind"}
    if kind == "s3" and keys == {"class", "message", "extra", "headers"}:
        cls = _S3_ERRORS.get(e["class"]) if isinstance(e["class"], str) else None
        if cls is not None:
            err = cls(_from_json(str, e["message"]), **_from_json(dict[str, str], e["extra"]))
            err.headers.update(_from_json(dict[str, str], e["headers"]))
            return err
    elif kind == "user_owns_buckets" and keys == {"access_key_id", "buckets"}:
        return UserOwnsBuckets(_from_json(str, e["access_key_id"]),
                               _from_json(tuple[str, ...], e["buckets"]))
    elif kind == "invalid_reassign_target" and keys == {"message"}:
        return InvalidReassignTarget(_from_json(str, e["message"]))
    elif kind == "internal" and keys == {"message"}:
        return ApplyFailed(_from_json(str, e["message"]))
    raise CodecError("malformed error")  # NOTE: no repr of the input: it may nest deep


def _result(value: Any, depth: int = 0) -> Any:
    if isinstance(value, list) and depth < 8:  # results nest 2 deep; bound the recursion
        return tuple(_result(v, depth + 1) for v in value)
    if value is None or isinstance(value, str | int):
        return value
    raise CodecError(f"unexpected result {type(value).__name__} at depth {depth}")


def decode_outcome(data: dict[str, Any]) -> Any:
    """The result (JSON lists as tuples), or raise the rebuilt exception."""
    if isinstance(data, dict) and data.get("ok") is True and set(data) == {"ok", "result"}:
        return _result(data["result"])
    if isinstance(data, dict) and data.get("ok") is False and set(data) == {"ok", "error"}:
        if isinstance(data["error"], dict):
            raise _error(data["error"])
    raise CodecError("expected {ok: true, result} or {ok: false, error}")
