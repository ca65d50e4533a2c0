"""The guarded transport: every request the registry client sends goes through here.

Before a request leaves, its host is resolved and checked by netguard (images.allowed_registries, the address
check), and the request goes to the checked address (Host header and TLS SNI name the host), so a second DNS answer
cannot swap it. Redirects are followed by hand so that each hop is checked the same way and the Authorization header
never leaves the host it was meant for; a 5xx or a connection error is retried once when the deadline allows; bodies
are read under a cap. Hand-written on httpx because no client library offers these guards (see remote.py).
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import http.cookiejar
import random
import ssl
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from dataclasses import dataclass
from typing import Any, Literal

import httpx

from admission.errors import RegistryError
from admission.images.credentials import server_key
from admission.images.gates import Gates
from admission.images.netguard import check_host, parse_ip, system_resolver
from admission.images.registry.manifest import size_words

__all__ = ["Answer", "Endpoint", "Kind", "Resolver", "Timeouts", "Transport"]

ERROR_BODY_CAP = 16 << 10
_MAX_REDIRECTS = 5
_ADDRESS_TTL = 30.0  # seconds a checked DNS answer is reused; shorter than any sane registry TTL matters here
_MAX_CLIENTS = 64  # one connection pool per host name (see Transport._pool); bounded because hosts come from users
_RETRY_JITTER = (0.05, 0.25)
_RETRY_MIN_BUDGET = 0.2  # a retry is only worth sending with at least this much time left after the pause
_REDIRECTS = frozenset({301, 302, 303, 307, 308})
_USER_AGENT = "admission (image config check)"

Kind = Literal["ping", "token", "head", "manifest", "config", "blob", "referrers", "signature"]
Resolver = Callable[[str, int], Awaitable[list[str]]]


@dataclass(frozen=True, slots=True)
class Timeouts:
    connect: float = 2.0
    read: float = 5.0


@dataclass(frozen=True, slots=True)
class Endpoint:
    """One place to fetch a repository from: the origin registry or one of its mirrors."""

    key: str  # identity: images.allowed_registries / insecure_registries / credentials spell it this way
    host: str  # host[:port] contacted (registry-1.docker.io for docker.io)
    scheme: str
    role: Literal["registry", "mirror"]
    listed: bool  # in images.allowed_registries: may be contacted on any address
    gates: Gates  # of the call it was made for: the realms and redirects it leads to are judged by the same gates

    @property
    def what(self) -> str:
        return f"registry {self.key}" if self.role == "registry" else f"mirror {self.key}"

    def url(self, path: str) -> httpx.URL:
        return httpx.URL(f"{self.scheme}://{self.host}{path}")




@dataclass(frozen=True, slots=True)
class Answer:
    status: int
    headers: httpx.Headers
    body: bytes
    url: httpx.URL


@dataclass(slots=True)
class _Pool:
    client: httpx.AsyncClient
    in_use: int = 0


class Transport:
    """Connection pools, checked DNS answers and the request counters of one registry client.

    Keeps addresses, not the outcome of a check: every request is checked against the gates it is sent under.
    """

    def __init__(self, *, timeouts: Timeouts, resolver: Resolver | None, verify: bool | str | ssl.SSLContext,
                 transport: httpx.AsyncBaseTransport | None,
                 on_exchange: Callable[[str, str], None] | None) -> None:
        # Told of every HTTP exchange as (registry host[:port], status code or "error"): the webhook's metrics.
        self._on_exchange = on_exchange
        self.counters: collections.Counter[str] = collections.Counter()
        self.timeouts = timeouts
        self._resolver: Resolver = resolver or system_resolver
        self._verify = verify
        self._ssl: ssl.SSLContext | bool | None = None
        self._transport = transport
        self._pools: collections.OrderedDict[tuple[str, str, int], _Pool] = collections.OrderedDict()
        self._closing: set[asyncio.Task[None]] = set()
        self._addresses: dict[tuple[str, int], tuple[float, list[str]]] = {}

    async def aclose(self) -> None:
        pools, self._pools = list(self._pools.values()), collections.OrderedDict()
        for pool in pools:
            await pool.client.aclose()
        if self._closing:
            await asyncio.gather(*self._closing, return_exceptions=True)

    # --- one request, with the guard, the retry and redirects ---------------------------------------------

    async def follow(self, method: str, url: httpx.URL, *, kind: Kind, headers: Mapping[str, str],
                      authorization: str | None, cap: int, deadline: float, what: str, listed: bool, gates: Gates,
                      origin: Endpoint | None, content: bytes | None = None, truncate: bool = False,
                      cap_words: str | None = None) -> Answer:
        """Send and follow redirects. The Authorization header never leaves the host it was meant for:
        registries redirect blob GETs to storage (S3, a CDN) that must not see registry credentials."""
        first = url
        for _hop in range(_MAX_REDIRECTS + 1):
            same_host = (url.scheme, url.host, url.port) == (first.scheme, first.host, first.port)
            sent = dict(headers)
            if authorization is not None and same_host:
                sent["Authorization"] = authorization
            answer = await self._exchange(method, url, kind=kind, headers=sent, cap=cap, deadline=deadline,
                                          what=what, listed=listed, origin=origin, content=content,
                                          truncate=truncate, cap_words=cap_words)
            location = answer.headers.get("location")
            if answer.status not in _REDIRECTS or not location:
                return answer
            try:
                target = url.join(location)
            except (httpx.InvalidURL, ValueError):
                raise RegistryError(f"{what} redirected to an unusable location {location[:200]!r}", reason="error") \
                    from None
            if target.scheme not in ("http", "https") or not target.host:
                raise RegistryError(f"{what} redirected to {location[:200]!r}, which is not an http(s) URL",
                                    reason="blocked")
            target_key = url_key(target)
            if url.scheme == "https" and target.scheme == "http" and target_key not in gates.insecure:
                raise RegistryError(f"{what} redirected from HTTPS to plain HTTP ({target_key}); refused",
                                    reason="blocked")
            what = f"redirect from {what} to {display(target)}"
            listed = target_key in gates.allowed
            origin = None
            if answer.status == 303:
                method, content = "GET", None
            if content is not None and not same_origin(target, first):
                # The only body we send is the refresh-token grant: it goes to the realm it was meant for or nowhere.
                raise RegistryError(f"{what}: a request carrying credentials in its body is not followed to "
                                    "another host; refused", reason="blocked")
            url = target
        raise RegistryError(f"{what}: more than {_MAX_REDIRECTS} redirects", reason="error")

    async def _exchange(self, method: str, url: httpx.URL, *, kind: Kind, headers: Mapping[str, str], cap: int,
                        deadline: float, what: str, listed: bool, origin: Endpoint | None, content: bytes | None,
                        truncate: bool, cap_words: str | None) -> Answer:
        """One request (and at most one retry on a 5xx or a connection error, only if it fits the deadline)."""
        if origin is not None:
            refuse_unlisted_mirror(origin)
        addresses = await self.checked_addresses(url, what=what, listed=listed, deadline=deadline)
        for attempt in range(2):
            address = addresses[attempt % len(addresses)]
            try:
                answer = await self._send(method, url, address, kind=kind, headers=headers, cap=cap,
                                          deadline=deadline, what=what, content=content, truncate=truncate,
                                          cap_words=cap_words)
            except (httpx.ConnectError, httpx.ConnectTimeout, httpx.RemoteProtocolError, httpx.ReadError,
                    httpx.WriteError) as exc:
                if attempt == 0 and await self._pause_for_retry(deadline):
                    continue
                raise RegistryError(f"{what}: connection failed ({describe(exc)})", reason="error") from None
            except httpx.TimeoutException as exc:
                raise RegistryError(f"{what} did not answer in time ({describe(exc)})", reason="timeout") from None
            if answer.status >= 500 and attempt == 0 and await self._pause_for_retry(deadline):
                continue
            return answer
        raise AssertionError("unreachable")

    async def _pause_for_retry(self, deadline: float) -> bool:
        pause = random.uniform(*_RETRY_JITTER)  # jitter, not a secret
        if deadline - time.monotonic() - pause < _RETRY_MIN_BUDGET:
            return False
        await asyncio.sleep(pause)
        return True

    async def _send(self, method: str, url: httpx.URL, address: str, *, kind: Kind, headers: Mapping[str, str],
                    cap: int, deadline: float, what: str, content: bytes | None, truncate: bool,
                    cap_words: str | None) -> Answer:
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            raise RegistryError(f"{what}: the deadline passed before the request", reason="timeout")
        timeout = httpx.Timeout(connect=min(self.timeouts.connect, remaining), read=min(self.timeouts.read, remaining),
                                write=min(self.timeouts.read, remaining), pool=min(self.timeouts.connect, remaining))
        extensions: dict[str, Any] = {}
        if url.scheme == "https" and parse_ip(url.host) is None:
            extensions["sni_hostname"] = url.host  # TLS names and verifies the host, not the address we dial
        sent_headers = {"Host": url.netloc.decode("ascii"), "Accept-Encoding": "identity", "User-Agent": _USER_AGENT,
                        **headers}
        pool_key = (url.scheme, url.host, url.port or 0)
        pool = self._pool(pool_key)
        pool.in_use += 1
        try:
            request = pool.client.build_request(method, url.copy_with(host=address), headers=sent_headers,
                                                content=content, timeout=timeout, extensions=extensions)
            self.counters[kind] += 1
            try:
                response = await pool.client.send(request, stream=True)
            except BaseException:
                if self._on_exchange is not None:
                    self._on_exchange(url.netloc.decode("ascii", "replace"), "error")
                raise
            if self._on_exchange is not None:
                self._on_exchange(url.netloc.decode("ascii", "replace"), str(response.status_code))
            try:
                ok = 200 <= response.status_code < 300
                limit = cap if ok and not truncate else ERROR_BODY_CAP
                if method == "HEAD":
                    # No body, but the connection goes back to the pool only once the parser has seen the response
                    # end: closing it unread would cost a new connection (and TLS handshake) per tag lookup.
                    async for _chunk in response.aiter_raw():
                        pass
                    body = b""
                else:
                    body = await _read_capped(response, limit, truncate=truncate or not ok, what=what,
                                              cap_words=cap_words)
            finally:
                await response.aclose()
        finally:
            pool.in_use -= 1
        return Answer(response.status_code, response.headers, body, url)

    # --- plumbing -----------------------------------------------------------------------------------------------

    async def checked_addresses(self, url: httpx.URL, *, what: str, listed: bool, deadline: float) -> list[str]:
        """The addresses to dial for `url`, after the address check (netguard): RegistryError when refused."""
        port = url.port or (443 if url.scheme == "https" else 80)
        return await check_host(url.host, port, what=what, key=url_key(url), listed=listed,
                                resolver=self._cached_resolver, timeout=self._wait(deadline, self.timeouts.connect))

    def _wait(self, deadline: float, limit: float) -> float:
        return max(0.0, min(limit, deadline - time.monotonic()))

    async def _cached_resolver(self, host: str, port: int) -> list[str]:
        key = (host.lower(), port)
        cached = self._addresses.get(key)
        if cached is not None and cached[0] > time.monotonic():
            return cached[1]
        addresses = await self._resolver(host, port)
        prune(self._addresses)
        self._addresses[key] = (time.monotonic() + _ADDRESS_TTL, list(addresses))
        return addresses

    def _ssl_context(self) -> ssl.SSLContext | bool:
        if self._ssl is None:
            if isinstance(self._verify, ssl.SSLContext):
                self._ssl = self._verify
            elif isinstance(self._verify, str):
                self._ssl = ssl.create_default_context(cafile=self._verify)
            elif self._verify:
                import certifi  # httpx's own default trust store; imported only when HTTPS is used

                self._ssl = ssl.create_default_context(cafile=certifi.where())
            else:
                self._ssl = False
        return self._ssl

    def _pool(self, key: tuple[str, str, int]) -> _Pool:
        """A client per (scheme, host name, port). Requests go to an IP address, and httpx pools connections by
        the URL's host, so one shared pool could hand a TLS connection verified for one host name to a request
        for another name on the same address."""
        if self._transport is not None:
            key = ("shared", "", 0)
        pool = self._pools.get(key)
        if pool is not None:
            self._pools.move_to_end(key)
            return pool
        if len(self._pools) >= _MAX_CLIENTS:
            for old_key, old in list(self._pools.items()):
                if old.in_use == 0:
                    del self._pools[old_key]
                    task = asyncio.get_running_loop().create_task(old.client.aclose())
                    self._closing.add(task)
                    task.add_done_callback(self._closing.discard)
                    break
        # trust_env=False: no HTTP(S)_PROXY (it would dial a host we did not check) and no .netrc credentials.
        # No cookies: the jar would file them under the address we dial, not the host that set them.
        options: dict[str, Any] = {"trust_env": False, "follow_redirects": False, "cookies": _no_cookies()}
        if self._transport is not None:
            client = httpx.AsyncClient(transport=self._transport, **options)
        else:
            client = httpx.AsyncClient(verify=self._ssl_context(), **options)
        pool = self._pools[key] = _Pool(client)
        return pool




def refuse_unlisted_mirror(endpoint: Endpoint) -> None:
    """restrict_to_allowed for one endpoint (a mirror; the origin passed _refuse_unlisted_registry already)."""
    if endpoint.gates.restrict_to_allowed and not endpoint.listed:
        raise RegistryError(f"{endpoint.what} refused: images.restrict_to_allowed is on and {endpoint.key} is not "
                            "in images.allowed_registries", reason="blocked")


def prune(cache: dict[Any, tuple[float, Any]], limit: int = 1024) -> None:
    """Drop expired entries once a cache is large (a webhook runs for weeks on references users write)."""
    if len(cache) >= limit:
        now = time.monotonic()
        for key in [k for k, (expires, _v) in cache.items() if expires <= now]:
            del cache[key]
        if len(cache) >= limit:
            cache.clear()


def _no_cookies() -> http.cookiejar.CookieJar:
    return http.cookiejar.CookieJar(policy=http.cookiejar.DefaultCookiePolicy(allowed_domains=[]))


# --- pure helpers -------------------------------------------------------------------------------------------


@contextlib.asynccontextmanager
async def bounded(deadline: float, what: str) -> AsyncIterator[None]:
    """Every wait inside ends by `deadline` (time.monotonic()); running out is a RegistryError, reason timeout."""
    loop = asyncio.get_running_loop()
    remaining = deadline - time.monotonic()
    if remaining <= 0:
        raise RegistryError(f"{what}: no time left before the deadline", reason="timeout")
    try:
        async with asyncio.timeout_at(loop.time() + remaining):
            yield
    except TimeoutError:
        raise RegistryError(f"{what} did not answer before the deadline", reason="timeout") from None


async def _read_capped(response: httpx.Response, cap: int, *, truncate: bool, what: str,
                       cap_words: str | None) -> bytes:
    """Read at most `cap` bytes; a longer body is an error (or cut, for error bodies) without reading the rest."""
    encoding = response.headers.get("content-encoding", "identity").strip().lower()
    if not truncate and encoding not in ("", "identity"):
        # We asked for identity: the digest is over the bytes as stored, and an encoded body could be a bomb.
        raise RegistryError(f"{what} sent a {encoding}-encoded body although we asked for none", reason="error")
    declared = response.headers.get("content-length")
    too_big = RegistryError(f"{what} sent a body larger than {cap_words or size_words(cap)}", reason="too-large")
    if not truncate and declared and declared.isdigit() and int(declared) > cap:
        raise too_big
    buffer = bytearray()
    async for chunk in response.aiter_raw():
        buffer += chunk
        if len(buffer) > cap:
            if truncate:
                return bytes(buffer[:cap])
            raise too_big
    return bytes(buffer)


def same_origin(a: httpx.URL, b: httpx.URL) -> bool:
    """Same scheme, host and port: whom a credential or a challenge belongs to."""
    def origin(url: httpx.URL) -> tuple[str, str, int]:
        return url.scheme, url.host, url.port or (443 if url.scheme == "https" else 80)
    return origin(a) == origin(b)




def url_key(url: httpx.URL) -> str:
    """How images.allowed_registries / insecure_registries would name this URL's host."""
    return server_key(url.netloc.decode("ascii"))


def display(url: httpx.URL) -> str:
    return f"{url.scheme}://{url.netloc.decode('ascii')}{url.path}"[:200]


def describe(exc: BaseException) -> str:
    return f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__


