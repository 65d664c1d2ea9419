"""Loopback host names and addresses, however they are spelled (stdlib only, cheap to import)."""

from __future__ import annotations

import ipaddress

LOOPBACK_NAMES = ("127.0.0.1", "localhost", "::1", "[::1]")


def host_name(raw: str) -> str:
    """The host of a Host header, without the port: `[::1]:8765` → `[::1]`, `a:80` → `a`."""
    raw = raw.strip().lower()
    if raw.startswith("["):
        return raw[: raw.find("]") + 1] if "]" in raw else raw
    return raw.rsplit(":", 1)[0] if raw.count(":") == 1 else raw


def is_loopback(host: str) -> bool:
    """`localhost` or a loopback address literal: 127.0.0.0/8, ::1 in any spelling, or
    an IPv4-mapped IPv6 form of one (`::ffff:127.0.0.2`). A DNS name is never loopback here:
    it could resolve anywhere (that is what DNS rebinding exploits)."""
    bare = host.strip().strip("[]").lower()
    if bare == "localhost":
        return True
    try:
        addr = ipaddress.ip_address(bare)
    except ValueError:
        return False
    mapped = getattr(addr, "ipv4_mapped", None)
    return addr.is_loopback or (mapped is not None and mapped.is_loopback)
