"""The client's address behind trusted proxies (web/client_ip.py): the right-most address
of ``X-Forwarded-For`` + peer that is not a trusted proxy; nothing else believed."""

from __future__ import annotations

import ipaddress
import json
import logging
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from bleepstore.web.client_ip import (
    client_ip,
    environ_client_ip,
    forwarded_chain,
    parse_address,
    parse_trusted,
)
from bleepstore.web.observe import METRICS_BEARER_KEY, Observed, set_aside_metrics_bearer

LOOPBACK = parse_trusted(["127.0.0.1"])
PROXIES = parse_trusted(["127.0.0.1", "10.0.0.0/8", "::1", "fd00::/8"])


@pytest.mark.parametrize("remote, xff, trusted, expected", [
    # no trusted proxies: the peer, whatever the header says
    ("198.51.100.9", ["203.0.113.7"], (), "198.51.100.9"),
    # untrusted peer: header ignored
    ("198.51.100.9", ["203.0.113.7"], LOOPBACK, "198.51.100.9"),
    ("198.51.100.9", ["127.0.0.1"], LOOPBACK, "198.51.100.9"),
    # nginx on loopback appended the remote client: that is the answer
    ("127.0.0.1", ["198.51.100.9"], LOOPBACK, "198.51.100.9"),
    # a remote client sent its own header through nginx: only nginx's entry counts
    ("127.0.0.1", ["203.0.113.7, 198.51.100.9"], LOOPBACK, "198.51.100.9"),
    ("127.0.0.1", ["1.1.1.1, 2.2.2.2, 198.51.100.9"], LOOPBACK, "198.51.100.9"),
    # ... even when it claims to be a trusted proxy itself (it is right of the claim)
    ("127.0.0.1", ["127.0.0.1, 198.51.100.9"], LOOPBACK, "198.51.100.9"),
    # the client itself is loopback (trusted): its own claim is believed (deploy/README.md)
    ("127.0.0.1", ["203.0.113.7, 127.0.0.1"], LOOPBACK, "203.0.113.7"),
    # several trusted hops
    ("10.0.0.2", ["198.51.100.9, 10.0.0.1"], PROXIES, "198.51.100.9"),
    ("10.0.0.2", ["8.8.8.8, 198.51.100.9, 10.0.0.1"], PROXIES, "198.51.100.9"),
    # repeated headers are one list, in order
    ("10.0.0.2", ["8.8.8.8", "198.51.100.9, 10.0.0.1"], PROXIES, "198.51.100.9"),
    # every hop trusted: the left-most (as nginx's real_ip_recursive)
    ("127.0.0.1", ["10.1.1.1, 10.0.0.1"], PROXIES, "10.1.1.1"),
    # no header from a trusted peer: the peer
    ("127.0.0.1", [], LOOPBACK, "127.0.0.1"),
    ("127.0.0.1", [""], LOOPBACK, "127.0.0.1"),
    # malformed entries stop the walk: the trusted hop right of it is the answer
    ("127.0.0.1", ["unknown"], LOOPBACK, "127.0.0.1"),
    ("127.0.0.1", ["<script>, 127.0.0.1"], LOOPBACK, "127.0.0.1"),
    ("127.0.0.1", ["203.0.113.7, evil.example, 127.0.0.1"], LOOPBACK, "127.0.0.1"),
    ("127.0.0.1", ["999.1.1.1"], LOOPBACK, "127.0.0.1"),
    # ... but garbage left of an untrusted address is never reached
    ("127.0.0.1", ["garbage, 198.51.100.9"], LOOPBACK, "198.51.100.9"),
    # empty entries are not hops
    ("127.0.0.1", ["198.51.100.9, ,"], LOOPBACK, "198.51.100.9"),
    # ports, brackets, IPv6 and IPv4-mapped forms are normalised
    ("127.0.0.1", ["198.51.100.9:5555"], LOOPBACK, "198.51.100.9"),
    ("127.0.0.1", ["[2001:db8::1]:443"], LOOPBACK, "2001:db8::1"),
    ("127.0.0.1", ["2001:DB8:0::1"], LOOPBACK, "2001:db8::1"),
    ("::1", ["2001:db8::7"], PROXIES, "2001:db8::7"),
    ("::ffff:127.0.0.1", ["198.51.100.9"], LOOPBACK, "198.51.100.9"),
    ("127.0.0.1", ["::ffff:198.51.100.9"], LOOPBACK, "198.51.100.9"),
    ("fd00::5", ["fe80::1%eth0, fd00::4"], PROXIES, "fe80::1"),
    # a peer that is no address (a Unix socket): kept as it is, never replaced
    ("", ["198.51.100.9"], LOOPBACK, ""),
])
def test_client_ip(remote: str, xff: list[str], trusted: Any, expected: str) -> None:
    assert client_ip(remote, xff, trusted) == expected


def test_trusted_list_is_validated_naming_the_entry() -> None:
    assert parse_trusted([" 10.0.0.0/8 ", "::1", "192.168.1.7/24"])[2] == \
        ipaddress.ip_network("192.168.1.0/24")
    with pytest.raises(ValueError, match=r"server.trusted_proxies: 'localhost'"):
        parse_trusted(["127.0.0.1", "localhost"])


@pytest.mark.parametrize("text, expected", [
    ("1.2.3.4", "1.2.3.4"), (" 1.2.3.4 ", "1.2.3.4"), ("1.2.3.4:80", "1.2.3.4"),
    ("[::1]", "::1"), ("[::1]:8080", "::1"), ("::1", "::1"), ("[::1", None),
    ("1.2.3", None), ("unknown", None), ("_hidden", None), ("", None), ("1.2.3.4:80:90", None),
])
def test_parse_address(text: str, expected: str | None) -> None:
    address = parse_address(text)
    assert (str(address) if address is not None else None) == expected


def test_forwarded_chain_keeps_order_across_headers() -> None:
    assert forwarded_chain(["a, b", "c"]) == ["a", "b", "c"]


addresses = st.one_of(st.ip_addresses(v=4), st.ip_addresses(v=6)).map(str)


@given(client=addresses, spoofed=st.lists(addresses | st.text(max_size=12), max_size=5))
def test_a_client_behind_the_proxy_cannot_choose_its_address(client: str,
                                                               spoofed: list[str]) -> None:
    """Whatever a client writes in X-Forwarded-For, the trusted proxy's own entry (the
    address it saw) decides, unless that address is itself trusted."""
    assert parse_address(client) is not None
    chain = [s.replace(",", "") for s in spoofed] + [client]
    seen = client_ip("127.0.0.1", [", ".join(chain)], LOOPBACK)
    normalised = str(parse_address(client))
    if normalised == "127.0.0.1":
        assert seen  # a loopback client is trusted: its own claim may be believed
    else:
        assert seen == normalised


@given(peer=addresses, header=st.text(max_size=60))
def test_an_untrusted_peer_is_its_own_address(peer: str, header: str) -> None:
    expected = str(parse_address(peer))
    if expected == "127.0.0.1":
        return
    assert client_ip(peer, [header], LOOPBACK) == expected


def test_environ_client_ip() -> None:
    env = {"REMOTE_ADDR": "127.0.0.1", "HTTP_X_FORWARDED_FOR": "203.0.113.7, 198.51.100.9"}
    assert environ_client_ip(env, LOOPBACK) == "198.51.100.9"
    assert environ_client_ip(env, ()) == "127.0.0.1"
    assert environ_client_ip({}, LOOPBACK) == ""


# --------------------------------------------------------------------- the access log


def _app(environ: dict[str, Any], start_response: Any) -> list[bytes]:
    start_response("200 OK", [("Content-Length", "2")])
    return [b"ok"]


def _log_line(trusted: list[str], environ: dict[str, Any],
              caplog: pytest.LogCaptureFixture) -> dict[str, Any]:
    app = Observed(_app, None, True, trusted_proxies=trusted)
    base = {"REQUEST_METHOD": "GET", "PATH_INFO": "/b", "wsgi.input": None}
    caplog.clear()
    with caplog.at_level(logging.INFO, logger="bleepstore.access"):
        result = app({**base, **environ}, lambda status, headers, exc=None: None)
        list(result)
        result.close()
    (record,) = [r for r in caplog.records if r.name == "bleepstore.access"]
    return {k: getattr(record, k) for k in ("remote_addr", "peer_addr")}


def test_access_log_remote_addr_is_the_client(caplog: pytest.LogCaptureFixture) -> None:
    env = {"REMOTE_ADDR": "127.0.0.1", "HTTP_X_FORWARDED_FOR": "203.0.113.7, 198.51.100.9"}
    assert _log_line(["127.0.0.1"], env, caplog) == {"remote_addr": "198.51.100.9",
                                                     "peer_addr": "127.0.0.1"}
    assert _log_line([], env, caplog) == {"remote_addr": "127.0.0.1",
                                          "peer_addr": "127.0.0.1"}
    spoof = {"REMOTE_ADDR": "198.51.100.9", "HTTP_X_FORWARDED_FOR": "10.0.0.1"}
    assert _log_line(["127.0.0.1"], spoof, caplog)["remote_addr"] == "198.51.100.9"
    json.dumps(_log_line(["127.0.0.1"], env, caplog))


def test_access_log_refuses_a_bad_trusted_list() -> None:
    with pytest.raises(ValueError, match="trusted_proxies"):
        Observed(_app, None, True, trusted_proxies=["10.0.0.0/33"])


@pytest.mark.parametrize("raw_uri, auth, moved", [
    ("/metrics", "Bearer tok", True),
    ("/metrics?x=1", "bearer  tok", True),
    ("/metrics", "Bearer", True),
    ("/metrics", "AWS4-HMAC-SHA256 Credential=x", False),  # an S3 request (bucket "metrics")
    ("/metrics/k", "Bearer tok", False),
    ("/b", "Bearer tok", False),
])
def test_metrics_bearer_is_set_aside_only_on_metrics(raw_uri: str, auth: str,
                                                     moved: bool) -> None:
    env = {"RAW_URI": raw_uri, "PATH_INFO": raw_uri.partition("?")[0],
           "HTTP_AUTHORIZATION": auth}
    set_aside_metrics_bearer(env)
    assert ("HTTP_AUTHORIZATION" not in env) == moved
    expected = ("tok" if auth.endswith("tok") else "") if moved else None
    assert env.get(METRICS_BEARER_KEY) == expected
