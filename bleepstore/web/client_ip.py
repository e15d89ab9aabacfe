"""The client's address behind trusted reverse proxies (``X-Forwarded-For``), for the
access log and ``aws:SourceIp`` (``server.trusted_proxies``; deploy/README.md, nginx).

Invariants:
- the header is believed only as far as trusted proxies vouch for it: the chain is the
  header's addresses followed by the TCP peer, and the client is the right-most address
  in it that is not a trusted proxy (each proxy appends the address it saw, so anything
  left of the first untrusted address was written by a client and proves nothing);
- an untrusted peer (or an empty trusted list) is the client, whatever the header says;
- the walk stops at an entry that is not an IP address (``unknown``, a name, garbage):
  the trusted proxy right of it is the best-known client, and text a client wrote never
  reaches a log line or a policy as an address;
- with trusted proxies, results are normalised (``::ffff:10.0.0.1`` is ``10.0.0.1``,
  ``[::1]:443`` is ``::1``); without, the peer is returned exactly as the server gave it.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

Address = ipaddress.IPv4Address | ipaddress.IPv6Address
Network = ipaddress.IPv4Network | ipaddress.IPv6Network
MAX_HOPS = 32  # a longer chain is not walked past this many entries from the right


def parse_trusted(entries: Iterable[str]) -> tuple[Network, ...]:
    """``server.trusted_proxies`` (IPs or CIDRs) as networks; a bad entry is a ValueError
    naming it, so a typo fails the start instead of trusting nothing (or too much)."""
    networks: list[Network] = []
    for entry in entries:
        try:
            networks.append(ipaddress.ip_network(str(entry).strip(), strict=False))
        except ValueError:
            raise ValueError(f"server.trusted_proxies: {entry!r} is not an IP address or "
                             "CIDR") from None
    return tuple(networks)


def parse_address(text: str) -> Address | None:
    """One chain entry: an IPv4/IPv6 address, optionally bracketed or with a port; None
    for anything else."""
    value = text.strip()
    if value.startswith("["):  # [v6] or [v6]:port
        end = value.find("]")
        if end < 0:
            return None
        value = value[1:end]
    elif value.count(":") == 1:  # v4:port
        value = value.partition(":")[0]
    try:
        address = ipaddress.ip_address(value)
    except ValueError:
        return None
    if isinstance(address, ipaddress.IPv6Address):
        if address.ipv4_mapped is not None:
            return address.ipv4_mapped
        if address.scope_id:
            return ipaddress.IPv6Address(value.partition("%")[0])
    return address


def forwarded_chain(values: Iterable[str]) -> list[str]:
    """Every ``X-Forwarded-For`` header's comma-separated entries, in order (a request may
    carry the header more than once; together they are one list, as RFC 9110 §5.3 says)."""
    return [entry.strip() for value in values for entry in value.split(",")]


def _trusted(address: Address, trusted: Sequence[Network]) -> bool:
    return any(address.version == net.version and address in net for net in trusted)


def client_ip(remote_addr: str, forwarded_for: Iterable[str],
              trusted: Sequence[Network]) -> str:
    """The client's address: ``remote_addr`` (the TCP peer) unless it is a trusted proxy,
    then the right-most address of ``X-Forwarded-For`` that is not (see the invariants)."""
    if not trusted:
        return remote_addr  # the default: nothing to parse, the peer as the server saw it
    peer = parse_address(remote_addr) if remote_addr else None
    if peer is None or not _trusted(peer, trusted):
        return str(peer) if peer is not None else remote_addr
    best = peer
    for entry in reversed(forwarded_chain(forwarded_for)[-MAX_HOPS:]):
        if not entry:
            continue  # "a,,b" or a trailing comma: not a hop
        address = parse_address(entry)
        if address is None:
            break
        best = address
        if not _trusted(address, trusted):
            break
    return str(best)


def environ_client_ip(environ: Mapping[str, Any], trusted: Sequence[Network]) -> str:
    """``client_ip`` for a WSGI environ (gunicorn joins repeated headers with ``,``)."""
    remote = environ.get("REMOTE_ADDR")
    forwarded = environ.get("HTTP_X_FORWARDED_FOR")
    return client_ip(remote if isinstance(remote, str) else "",
                     [forwarded] if isinstance(forwarded, str) else [], trusted)
