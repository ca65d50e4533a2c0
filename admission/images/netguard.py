"""The SSRF guard: which addresses the webhook may contact when it fetches whatever image references users write.

Hand-written because no library answers "may this process connect here?" with the embedded-IPv4 cases
(IPv4-mapped, 6to4, NAT64, IPv4-compatible) and a reason a person can read.

An address is public only if `ip.is_global and not ip.is_multicast`, checked on the address itself AND on any
IPv4 address embedded in it. Python's flags alone pass `64:ff9b::a9fe:a9fe` (NAT64 of 169.254.169.254) and
`2002:a9fe:a9fe::` (6to4 of it). 100.64.0.0/10 (CGNAT; Alibaba's metadata service is 100.100.100.200) is
tested explicitly because `is_global` only excludes it from Python 3.11 on, and older interpreters differ.
"""

from __future__ import annotations

import asyncio
import ipaddress
import socket
from collections.abc import Awaitable, Callable

from admission.errors import RegistryError

__all__ = ["Resolver", "check_host", "is_public", "not_public_because", "parse_ip", "system_resolver"]

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
#: host, port -> IP address strings. The DNS seam: tests pass a fake so nothing resolves to a real metadata address.
Resolver = Callable[[str, int], Awaitable[list[str]]]

_CGNAT = ipaddress.IPv4Network("100.64.0.0/10")
_NAT64 = ipaddress.IPv6Network("64:ff9b::/96")  # RFC 6052 well-known prefix: the last 32 bits are the IPv4 address
_NAT64_LOCAL = ipaddress.IPv6Network("64:ff9b:1::/48")  # RFC 8215 local-use; the IPv4 position is operator-chosen
_IPV4_COMPATIBLE = ipaddress.IPv6Network("::/96")  # deprecated ::a.b.c.d

_IPV4_KINDS: tuple[tuple[str, str], ...] = (
    ("is_loopback", "loopback"),
    ("is_link_local", "link-local"),
    ("is_unspecified", "unspecified"),
    ("is_multicast", "multicast"),
    ("is_private", "private"),
    ("is_reserved", "reserved"),
)


def parse_ip(text: str) -> IPAddress | None:
    """The address if `text` is an IP literal (brackets and an IPv6 zone allowed), else None."""
    candidate = text.strip("[]")
    try:
        return ipaddress.ip_address(candidate)
    except ValueError:
        return None


def _why(ip: IPAddress) -> str | None:
    """Why this one address (not looking inside it) is not public, or None."""
    if isinstance(ip, ipaddress.IPv4Address) and ip in _CGNAT:
        return "in 100.64.0.0/10 (shared CGNAT space, where some clouds put their metadata service)"
    if ip.is_global and not ip.is_multicast:
        return None
    for attribute, word in _IPV4_KINDS:
        if getattr(ip, attribute):
            return word
    return "not a globally reachable address"


def _embedded(ip: IPAddress) -> tuple[str, ipaddress.IPv4Address] | None:
    """The IPv4 address an IPv6 address carries, with the mechanism's name."""
    if not isinstance(ip, ipaddress.IPv6Address):
        return None
    if ip.ipv4_mapped is not None:
        return "IPv4-mapped", ip.ipv4_mapped
    if ip.sixtofour is not None:
        return "6to4", ip.sixtofour
    if ip in _NAT64:
        return "NAT64", ipaddress.IPv4Address(int(ip) & 0xFFFFFFFF)
    if ip in _IPV4_COMPATIBLE and int(ip) > 1:
        return "IPv4-compatible", ipaddress.IPv4Address(int(ip) & 0xFFFFFFFF)
    if ip.teredo is not None:
        return "Teredo", ip.teredo[1]
    return None


def not_public_because(address: str | IPAddress) -> str | None:
    """None when the address is public; otherwise the reason in words ("link-local", "NAT64 of 169.254.169.254, ...")."""
    ip = parse_ip(address) if isinstance(address, str) else address
    if ip is None:
        return "not an IP address"
    if isinstance(ip, ipaddress.IPv6Address) and ip in _NAT64_LOCAL:
        return "in 64:ff9b:1::/48 (local-use NAT64)"
    inner = _embedded(ip)
    if inner is not None:
        mechanism, v4 = inner
        why = _why(v4)
        if why is not None:
            return f"the {mechanism} form of {v4}, which is {why}"
    return _why(ip)


def is_public(address: str | IPAddress) -> bool:
    return not_public_because(address) is None


async def system_resolver(host: str, port: int) -> list[str]:
    """getaddrinfo through the event loop (a thread); the caller bounds it with its deadline."""
    infos = await asyncio.get_running_loop().getaddrinfo(host, port, type=socket.SOCK_STREAM)
    seen: dict[str, None] = {}
    for _family, _type, _proto, _name, sockaddr in infos:
        seen.setdefault(str(sockaddr[0]), None)
    return list(seen)


async def check_host(host: str, port: int, *, what: str, key: str, listed: bool, resolver: Resolver,
                     timeout: float) -> list[str]:
    """Resolve `host` and return its addresses (connect to these, never resolve again), or raise blocked.

    `what` names the thing for the message ("registry 127.0.0.1:5000", "token realm http://..."), `key` is how
    images.allowed_registries would list it. When any address is not public the host may be contacted only if
    `listed`: one private answer among public ones is how DNS rebinding and split-horizon tricks get in.
    """
    literal = parse_ip(host)
    if literal is not None:
        addresses = [str(literal)]
    else:
        try:
            addresses = await asyncio.wait_for(resolver(host, port), timeout=max(timeout, 0.0))
        except TimeoutError:
            raise RegistryError(f"{what}: resolving {host} took longer than {timeout:.1f} s", reason="timeout") from None
        except (OSError, UnicodeError, ValueError) as exc:
            raise RegistryError(f"{what}: cannot resolve {host}: {exc}", reason="error") from None
        if not addresses:
            raise RegistryError(f"{what}: {host} resolves to no address", reason="error")
    if listed:
        return addresses
    for address in addresses:
        why = not_public_because(address)
        if why is not None:
            subject = address if literal is not None else f"{host} resolves to {address}, which"
            raise RegistryError(f"{what} refused: {subject} is {why} and {key} is not in images.allowed_registries",
                                reason="blocked")
    return addresses
