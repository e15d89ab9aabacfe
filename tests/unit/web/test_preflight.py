"""S3's answers to an ``OPTIONS`` (CORS preflight) when no CORS rule allows it (pure).

BleepStore has no CORS configuration, so every preflight is refused the way S3 refuses one
on a bucket without CORS: 400 BadRequest without an ``Origin`` (or with an unknown
``Access-Control-Request-Method``), else 403 AccessForbidden (docs/decisions.md).
"""

from __future__ import annotations

from collections.abc import Callable

import pytest

from bleepstore import errors
from bleepstore.web.front import preflight_error


def getter(**headers: str) -> Callable[[str], str | None]:
    names = {k.replace("_", "-").lower(): v for k, v in headers.items()}
    return names.get


@pytest.mark.parametrize("service_root", [False, True])
def test_no_origin_is_400_bad_request(service_root: bool) -> None:
    for get in (getter(), getter(Origin=""), getter(Access_Control_Request_Method="GET")):
        err = preflight_error(get, service_root)
        assert (type(err), err.status, err.code) == (errors.BadRequest, 400, "BadRequest")
        assert err.msg == "Insufficient information. Origin request header needed."
        assert err.extra == {}


@pytest.mark.parametrize("asked", ["get", "Put", "FOO", "TRACE", "CONNECT", "PROPFIND"])
def test_unknown_request_method_is_400(asked: str) -> None:
    err = preflight_error(getter(Origin="https://a.example",
                                 Access_Control_Request_Method=asked), False)
    assert (err.status, err.code) == (400, "BadRequest")
    assert err.msg == f"Invalid Access-Control-Request-Method: {asked}"


@pytest.mark.parametrize("asked", ["GET", "HEAD", "POST", "PUT", "DELETE", "PATCH", "OPTIONS"])
def test_no_cors_configuration_is_403_access_forbidden(asked: str) -> None:
    err = preflight_error(getter(Origin="https://a.example",
                                 Access_Control_Request_Method=asked), False)
    assert (type(err), err.status, err.code) == (errors.AccessForbidden, 403, "AccessForbidden")
    assert err.msg == "CORSResponse: CORS is not enabled for this bucket."
    assert err.extra == {"Method": asked, "ResourceType": "BUCKET"}  # in this order
    assert list(err.extra) == ["Method", "ResourceType"]


def test_method_defaults_to_options_and_service_root_has_no_bucket() -> None:
    err = preflight_error(getter(Origin="https://a.example"), True)
    assert (err.status, err.code) == (403, "AccessForbidden")
    assert err.msg == "CORSResponse: Bucket not found"
    assert err.extra == {"Method": "OPTIONS", "ResourceType": "BUCKET"}
