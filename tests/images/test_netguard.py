"""The SSRF guard's address test and host check. Nothing here opens a connection: names resolve through a fake."""

from __future__ import annotations

import asyncio

import pytest

from admission.errors import RegistryError
from admission.images.netguard import check_host, is_public, not_public_because

pytestmark = pytest.mark.anyio


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@pytest.mark.parametrize(
    ("address", "because"),
    [
        ("169.254.169.254", "link-local"),
        ("127.0.0.1", "loopback"),
        ("10.0.0.8", "private"),
        ("192.168.1.1", "private"),
        ("0.0.0.0", "unspecified"),
        ("224.0.0.251", "multicast"),
        ("100.100.100.200", "100.64.0.0/10"),
        ("100.64.0.1", "100.64.0.0/10"),
        ("::1", "loopback"),
        ("fe80::1", "link-local"),
        ("fc00::5", "private"),
        ("ff0e::1", "multicast"),
        ("64:ff9b::a9fe:a9fe", "NAT64 form of 169.254.169.254, which is link-local"),
        ("64:ff9b::6464:64c8", "NAT64 form of 100.100.100.200"),
        ("::ffff:169.254.169.254", "IPv4-mapped form of 169.254.169.254"),
        ("::ffff:127.0.0.1", "IPv4-mapped form of 127.0.0.1, which is loopback"),
        ("2002:a9fe:a9fe::1", "6to4 form of 169.254.169.254"),
        ("2002:0a00:0001::", "6to4 form of 10.0.0.1, which is private"),
        ("::a9fe:a9fe", "IPv4-compatible form of 169.254.169.254"),
        ("64:ff9b:1::a9fe:a9fe", "local-use NAT64"),
    ],
)
def test_non_public_addresses_are_named_with_the_reason(address: str, because: str) -> None:
    assert not is_public(address)
    assert because in (not_public_because(address) or "")


@pytest.mark.parametrize("address", ["8.8.8.8", "2606:4700:4700::1111", "64:ff9b::808:808", "2002:808:808::1"])
def test_global_addresses_and_their_wrapped_forms_are_public(address: str) -> None:
    assert is_public(address)


def _resolver(table: dict[str, list[str]], calls: list[str]):  # type: ignore[no-untyped-def]
    async def resolve(host: str, port: int) -> list[str]:
        calls.append(host)
        if host not in table:
            raise OSError(f"no such host {host}")
        return table[host]
    return resolve


async def test_host_with_one_private_answer_among_public_ones_is_refused() -> None:
    calls: list[str] = []
    resolver = _resolver({"mixed.test": ["8.8.8.8", "10.0.0.8"]}, calls)
    with pytest.raises(RegistryError) as caught:
        await check_host("mixed.test", 443, what="registry mixed.test", key="mixed.test", listed=False,
                         resolver=resolver, timeout=1.0)
    assert caught.value.reason == "blocked"
    assert str(caught.value) == ("registry mixed.test refused: mixed.test resolves to 10.0.0.8, which is private "
                                 "and mixed.test is not in images.allowed_registries")


async def test_listed_host_may_resolve_to_private_addresses() -> None:
    resolver = _resolver({"registry.internal": ["10.0.0.8"]}, [])
    addresses = await check_host("registry.internal", 443, what="registry registry.internal", key="registry.internal",
                                 listed=True, resolver=resolver, timeout=1.0)
    assert addresses == ["10.0.0.8"]


async def test_public_host_returns_the_checked_addresses_to_connect_to() -> None:
    resolver = _resolver({"registry.example": ["8.8.8.8", "2606:4700:4700::1111"]}, [])
    assert await check_host("registry.example", 443, what="registry", key="registry.example", listed=False,
                            resolver=resolver, timeout=1.0) == ["8.8.8.8", "2606:4700:4700::1111"]


async def test_ip_literal_is_checked_without_asking_the_resolver() -> None:
    calls: list[str] = []
    with pytest.raises(RegistryError) as caught:
        await check_host("[64:ff9b::a9fe:a9fe]", 80, what="token realm http://[64:ff9b::a9fe:a9fe]/token",
                         key="[64:ff9b::a9fe:a9fe]", listed=False, resolver=_resolver({}, calls), timeout=1.0)
    assert caught.value.reason == "blocked"
    assert "64:ff9b::a9fe:a9fe is the NAT64 form of 169.254.169.254, which is link-local" in str(caught.value)
    assert calls == []


async def test_unresolvable_host_is_an_error_not_a_block() -> None:
    with pytest.raises(RegistryError) as caught:
        await check_host("nowhere.test", 443, what="registry nowhere.test", key="nowhere.test", listed=False,
                         resolver=_resolver({}, []), timeout=1.0)
    assert caught.value.reason == "error"
    assert "cannot resolve nowhere.test" in str(caught.value)


async def test_slow_resolver_is_cut_at_the_timeout() -> None:
    async def slow(host: str, port: int) -> list[str]:
        await asyncio.sleep(30)
        return ["8.8.8.8"]

    with pytest.raises(RegistryError) as caught:
        await check_host("slow.test", 443, what="registry slow.test", key="slow.test", listed=False, resolver=slow,
                         timeout=0.05)
    assert caught.value.reason == "timeout"
