"""Async OCI distribution client: auth, tag -> digest, index -> platform manifest -> config blob, with an SSRF guard.

Hand-written on httpx because the webhook needs an *async* client with SSRF guards, and oras-py is sync.

Shape of one cold fetch of a tagged single-platform image: GET /v2/ (once per registry; the challenge is
cached), a token request when the registry asks for Bearer (cached until `expires_in`), HEAD of the tag
(Docker Hub counts manifest GETs, not HEADs, against its pull limit), GET of the manifest by digest, GET of
the config blob. An index adds one GET. Every host we contact is first resolved and checked by netguard,
and the request then goes to the checked address (Host header and TLS SNI name the host), so a second DNS
answer cannot swap it.
"""

from __future__ import annotations

import asyncio
import base64
import collections
import contextlib
import gzip
import hashlib
import http.cookiejar
import io
import json
import posixpath
import random
import re
import ssl
import tarfile
import threading
import time
import urllib.parse
import zlib
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from dataclasses import dataclass, replace
from typing import Any, Literal, TypeVar

import httpx

from admission.errors import RegistryError
from admission.images.cache import LayerUnreadable
from admission.images.credentials import Credential, Credentials, server_key
from admission.images.gates import Gates
from admission.images.layers import manifest_layer_sizes
from admission.images.netguard import check_host, parse_ip, system_resolver
from admission.images.reference import Reference, registry_host, validate_digest
from admission.model import HistoryEntry, ImageConfig
from admission.policy.config import ImagesSettings

__all__ = [
    "ACCEPT_MANIFESTS",
    "CONFIG_CAP",
    "MANIFEST_CAP",
    "Fetched",
    "RegistryClient",
    "Timeouts",
    "parse_challenge",
    "pick_platform",
    "registry_key",
]

MANIFEST_CAP = 4 << 20
CONFIG_CAP = 8 << 20
_TOKEN_CAP = 1 << 20
_ERROR_BODY_CAP = 16 << 10
_MAX_REDIRECTS = 5
_MAX_INDEX_DEPTH = 2  # an index may point at an index (rare); more is a loop or an attack
_DEFAULT_TOKEN_SECONDS = 60  # the distribution token spec's default for a missing expires_in
_ADDRESS_TTL = 30.0  # seconds a checked DNS answer is reused; shorter than any sane registry TTL matters here
_MAX_CLIENTS = 64  # one connection pool per host name (see _clients); bounded because hosts come from users
_RETRY_JITTER = (0.05, 0.25)
_RETRY_MIN_BUDGET = 0.2  # a retry is only worth sending with at least this much time left after the pause
_LAYER_EXPANSION = 8  # decompressed bytes a layer may expand to, as a multiple of max_bytes (gzip bombs)
_FILE_CAP = 1 << 20  # a file read from a layer (/etc/passwd) larger than this is refused unread: a bomb, not a passwd
_TOKEN = re.compile(r"[\x21-\x7e]+")  # visible ASCII: what can follow "Bearer " in a header (RFC 6750 is stricter)
_ARM_OLDER = {"v8": ("v7", "v6", "v5"), "v7": ("v6", "v5"), "v6": ("v5",)}  # what an arm CPU also runs, best first

OCI_INDEX = "application/vnd.oci.image.index.v1+json"
DOCKER_LIST = "application/vnd.docker.distribution.manifest.list.v2+json"
OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
DOCKER_MANIFEST = "application/vnd.docker.distribution.manifest.v2+json"
_INDEX_TYPES = frozenset({OCI_INDEX, DOCKER_LIST})
_MANIFEST_TYPES = frozenset({OCI_MANIFEST, DOCKER_MANIFEST})
_SCHEMA1_TYPES = frozenset({"application/vnd.docker.distribution.manifest.v1+json",
                            "application/vnd.docker.distribution.manifest.v1+prettyjws"})
_IMAGE_CONFIG_TYPES = frozenset({"application/vnd.oci.image.config.v1+json",
                                 "application/vnd.docker.container.image.v1+json"})
ACCEPT_MANIFESTS = f"{OCI_INDEX}, {DOCKER_LIST}, {OCI_MANIFEST}, {DOCKER_MANIFEST}"
_HASHES = {"sha256": hashlib.sha256, "sha384": hashlib.sha384, "sha512": hashlib.sha512}
_REDIRECTS = frozenset({301, 302, 303, 307, 308})
_HUB_API_HOST = "registry-1.docker.io"
_USER_AGENT = "admission (image config check)"

Kind = Literal["ping", "token", "head", "manifest", "config", "blob"]
Resolver = Callable[[str, int], Awaitable[list[str]]]
T = TypeVar("T")


def registry_key(ref: Reference) -> str:
    """DESIGN §5 identity: lower-case host[:port], docker.io aliases folded."""
    return registry_host(ref)


@dataclass(frozen=True, slots=True)
class Timeouts:
    connect: float = 2.0
    read: float = 5.0


@dataclass(frozen=True, slots=True)
class Fetched:
    config: ImageConfig  # .digest = platform manifest digest, .config_digest = config blob digest
    manifest_digest: str
    index_digest: str | None
    layers: tuple[str, ...]  # layer digests, top layer last


@dataclass(frozen=True, slots=True)
class _Endpoint:
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
class _Challenge:
    scheme: Literal["none", "basic", "bearer"]
    realm: str = ""
    service: str = ""


@dataclass(frozen=True, slots=True)
class _Answer:
    status: int
    headers: httpx.Headers
    body: bytes
    url: httpx.URL


@dataclass(slots=True)
class _Pool:
    client: httpx.AsyncClient
    in_use: int = 0


class RegistryClient:
    """One per process (webhook) or run (CLI). Caches challenges, tokens and checked DNS answers, not images.

    The gates are read per call: each public method takes the `images` settings of the policy in force
    (`settings`, else the ones given here), so one client outlives policy reloads. What it keeps across
    calls cannot carry a verdict from old gates to new ones: tokens are keyed by the gates' fingerprint,
    every request is checked against the caller's gates, and DNS answers are kept as addresses, not as the
    outcome of a check. Challenges are kept per scheme://host: what a server asks for, not what we may do.
    """

    def __init__(self, settings: ImagesSettings, *, credentials: Credentials | None = None, timeouts: Timeouts = Timeouts(),
                 resolver: Resolver | None = None, verify: bool | str | ssl.SSLContext = True,
                 transport: httpx.AsyncBaseTransport | None = None,
                 on_exchange: Callable[[str, str], None] | None = None) -> None:
        self.settings = settings
        # Told of every HTTP exchange as (registry host[:port], status code or "error"): the webhook's metrics.
        self._on_exchange = on_exchange
        self.counters: collections.Counter[str] = collections.Counter()
        self._credentials = credentials or Credentials()
        self._timeouts = timeouts
        self._resolver: Resolver = resolver or system_resolver
        self._verify = verify
        self._ssl: ssl.SSLContext | bool | None = None
        self._transport = transport
        self._pools: collections.OrderedDict[tuple[str, str, int], _Pool] = collections.OrderedDict()
        self._closing: set[asyncio.Task[None]] = set()
        self._challenges: dict[str, _Challenge] = {}
        self._tokens: dict[tuple[str, str, str, str, str], tuple[float, str]] = {}  # realm first
        self._addresses: dict[tuple[str, int], tuple[float, list[str]]] = {}
        self._locks: dict[object, list[Any]] = {}  # key -> [lock, holders and waiters]

    # --- public API -----------------------------------------------------------------------------------------

    async def admit(self, ref: Reference, *, deadline: float, settings: ImagesSettings | None = None) -> None:
        """Raise what a lookup of `ref` would be refused with before it reached a registry, without sending
        anything: restrict_to_allowed, or no endpoint (mirrors, then the origin) passing the address check.

        Costs no registry request, at most a DNS lookup (through the address cache) per unlisted endpoint.
        The resolver calls it before it answers from a cache, because the address check depends on DNS and
        so cannot be part of a cache key. Mirrors fall through as in a lookup, each given half the time left.
        """
        async def check(endpoint: _Endpoint, until: float) -> None:
            _refuse_unlisted_mirror(endpoint)
            await self._checked_addresses(endpoint.url("/v2/"), what=endpoint.what, listed=endpoint.listed,
                                          deadline=until)

        await self._each_endpoint(ref, deadline, check, gates=self._gates(settings))

    async def resolve_digest(self, ref: Reference, *, deadline: float, settings: ImagesSettings | None = None) -> str:
        """Tag -> manifest digest, with HEAD (GET only when a registry sends no Docker-Content-Digest on HEAD)."""
        if ref.digest is not None:
            return ref.digest

        async def attempt(endpoint: _Endpoint, until: float) -> str:
            digest, _body, _type = await self._resolve_on(endpoint, ref, until)
            return digest

        return await self._each_endpoint(ref, deadline, attempt, gates=self._gates(settings))

    async def fetch(self, ref: Reference, *, deadline: float, digest: str | None = None,
                    settings: ImagesSettings | None = None) -> Fetched:
        """The config of `ref` for the platform in `settings`, verified: by digest (ref's, `digest`, or resolved
        first)."""
        platform = (self.settings if settings is None else settings).platform

        async def attempt(endpoint: _Endpoint, until: float) -> Fetched:
            return await self._fetch_on(endpoint, ref, digest or ref.digest, until, platform=platform)

        return await self._each_endpoint(ref, deadline, attempt, gates=self._gates(settings))

    async def read_file_from_layers(self, ref: Reference, fetched: Fetched, path: str, *, deadline: float,
                                    max_bytes: int, settings: ImagesSettings | None = None) -> bytes | None:
        """The content of `path` as the image's filesystem has it, or None when absent (deleted by a whiteout).

        Layers are read top down and the first layer that has the path (or deletes it) decides. At most
        `max_bytes` of layer blobs are downloaded in all; more is a RegistryError(reason="too-large").
        """
        target = posixpath.normpath("/" + path).lstrip("/")

        async def attempt(endpoint: _Endpoint, until: float) -> bytes | None:
            budget = max_bytes
            for layer in reversed(fetched.layers):
                blob = await self._blob(endpoint, ref.path, layer, kind="blob", cap=budget, deadline=until,
                                        cap_words=f"the {max_bytes}-byte budget for reading {path}")
                budget -= len(blob)
                # A thread cannot be cancelled: it checks `stop` and the deadline itself, so a caller that gives up
                # (or a deadline that passes) does not leave it inflating a layer nobody waits for.
                stop = threading.Event()
                try:
                    found, content = await asyncio.to_thread(_scan_layer, blob, target, layer,
                                                             max(max_bytes, 1 << 20) * _LAYER_EXPANSION,
                                                             stop=stop, deadline=until)
                finally:
                    stop.set()
                if found:
                    return content
            return None

        return await self._each_endpoint(ref, deadline, attempt, gates=self._gates(settings))

    async def aclose(self) -> None:
        pools, self._pools = list(self._pools.values()), collections.OrderedDict()
        for pool in pools:
            await pool.client.aclose()
        if self._closing:
            await asyncio.gather(*self._closing, return_exceptions=True)

    # --- endpoints, mirrors and the deadline ---------------------------------------------------------------

    def _gates(self, settings: ImagesSettings | None) -> Gates:
        return Gates.of(self.settings if settings is None else settings)

    def _endpoints(self, ref: Reference, gates: Gates) -> list[_Endpoint]:
        key = registry_key(ref)
        endpoints = []
        for host in gates.mirrors_of(key):
            mkey = server_key(host)
            endpoints.append(_Endpoint(mkey, host, "http" if mkey in gates.insecure else "https", "mirror",
                                       mkey in gates.allowed, gates))
        host = _HUB_API_HOST if key == "docker.io" else key
        endpoints.append(_Endpoint(key, host, "http" if key in gates.insecure else "https", "registry",
                                   key in gates.allowed, gates))
        return endpoints

    async def _each_endpoint(self, ref: Reference, deadline: float,
                             attempt: Callable[[_Endpoint, float], Awaitable[T]], *, gates: Gates) -> T:
        """Mirrors in order, then the origin. A failing mirror falls through; it gets at most half the time left
        so that the origin can still answer inside the deadline. Whatever an endpoint's answers make go wrong
        is a RegistryError, so that the next endpoint is tried and the failure can be cached like any other."""
        _refuse_unlisted_registry(ref, gates)
        endpoints = self._endpoints(ref, gates)
        for endpoint in endpoints:
            last = endpoint is endpoints[-1]
            until = deadline if last else time.monotonic() + (deadline - time.monotonic()) / 2
            try:
                async with _bounded(until, endpoint.what):
                    return await attempt(endpoint, until)
            except RegistryError:
                if last:
                    raise
            except Exception as exc:  # noqa: BLE001 - a parser or protocol failure on one endpoint, never a crash
                if last:
                    raise RegistryError(f"{endpoint.what}: unexpected failure ({_describe(exc)})",
                                        reason="error") from None
        raise AssertionError("unreachable: the origin is always the last endpoint")

    # --- manifests and blobs -------------------------------------------------------------------------------

    async def _resolve_on(self, endpoint: _Endpoint, ref: Reference, deadline: float) -> tuple[str, bytes | None, str]:
        tag = ref.tag or "latest"
        subject = f"{ref.path}:{tag}"
        path = f"/v2/{ref.path}/manifests/{tag}"
        head = await self._registry(endpoint, ref.path, "HEAD", path, kind="head", accept=ACCEPT_MANIFESTS,
                                    cap=0, deadline=deadline, subject=f"manifest {subject}")
        said = head.headers.get("docker-content-digest")
        if said and _valid_digest(said):
            return said, None, head.headers.get("content-type", "")
        got = await self._registry(endpoint, ref.path, "GET", path, kind="manifest", accept=ACCEPT_MANIFESTS,
                                   cap=MANIFEST_CAP, deadline=deadline, subject=f"manifest {subject}")
        said = got.headers.get("docker-content-digest")
        algorithm = said.split(":", 1)[0] if said and _valid_digest(said) else "sha256"
        digest = f"{algorithm}:{_HASHES[algorithm](got.body).hexdigest()}"
        if said and _valid_digest(said) and said != digest:
            raise RegistryError(f"{endpoint.what} sent manifest {subject} labelled {said} whose content hashes to "
                                f"{digest}", reason="digest-mismatch")
        return digest, got.body, got.headers.get("content-type", "")

    async def _manifest(self, endpoint: _Endpoint, repo: str, digest: str, deadline: float) -> tuple[bytes, str]:
        answer = await self._registry(endpoint, repo, "GET", f"/v2/{repo}/manifests/{digest}", kind="manifest",
                                      accept=ACCEPT_MANIFESTS, cap=MANIFEST_CAP, deadline=deadline,
                                      subject=f"manifest {repo}@{digest}")
        _verify(answer.body, digest, f"{endpoint.what} sent a manifest for {repo}@{digest}")
        return answer.body, answer.headers.get("content-type", "")

    async def _blob(self, endpoint: _Endpoint, repo: str, digest: str, *, kind: Kind, cap: int, deadline: float,
                    cap_words: str | None = None) -> bytes:
        if not _valid_digest(digest):
            raise RegistryError(f"{endpoint.what}: {repo} names an invalid blob digest {digest!r}", reason="error")
        answer = await self._registry(endpoint, repo, "GET", f"/v2/{repo}/blobs/{digest}", kind=kind, accept=None,
                                      cap=cap, deadline=deadline, subject=f"blob {repo}@{digest}", cap_words=cap_words)
        _verify(answer.body, digest, f"{endpoint.what} sent blob {repo}@{digest}")
        return answer.body

    async def _fetch_on(self, endpoint: _Endpoint, ref: Reference, digest: str | None, deadline: float, *,
                        platform: str) -> Fetched:
        body: bytes | None = None
        content_type = ""
        if digest is None:
            digest, body, content_type = await self._resolve_on(endpoint, ref, deadline)
        elif not _valid_digest(digest):
            raise RegistryError(f"{ref} has an unusable digest {digest!r}", reason="error")
        if body is None:
            body, content_type = await self._manifest(endpoint, ref.path, digest, deadline)
        index_digest: str | None = None
        document = _json_object(body, f"{endpoint.what}: manifest {ref.path}@{digest}")
        for _depth in range(_MAX_INDEX_DEPTH + 1):
            media_type = _media_type(document, content_type)
            if media_type not in _INDEX_TYPES:
                break
            if index_digest is None:
                index_digest = digest
            chosen = pick_platform(document, platform, subject=f"{ref} ({digest})")
            digest = chosen["digest"]
            body, content_type = await self._manifest(endpoint, ref.path, digest, deadline)
            document = _json_object(body, f"{endpoint.what}: manifest {ref.path}@{digest}")
        else:
            raise RegistryError(f"{ref}: indexes nest deeper than {_MAX_INDEX_DEPTH}", reason="error")
        media_type = _media_type(document, content_type)
        if media_type in _SCHEMA1_TYPES or document.get("schemaVersion") == 1:
            raise RegistryError(f"{ref} has only a Docker schema 1 manifest, which carries no image config; "
                                "push it again with a current client", reason="error")
        config = document.get("config")
        if media_type not in _MANIFEST_TYPES and not isinstance(config, dict):
            raise RegistryError(f"{ref}: manifest {digest} is not an image manifest (media type {media_type or '?'})",
                                reason="error")
        if not isinstance(config, dict) or not isinstance(config.get("digest"), str):
            raise RegistryError(f"{ref}: manifest {digest} names no config blob", reason="error")
        config_type = config.get("mediaType", "")
        if config_type and config_type not in _IMAGE_CONFIG_TYPES:
            raise RegistryError(f"{ref} is not a container image: its config is {config_type}", reason="error")
        size = config.get("size")
        if isinstance(size, int) and size > CONFIG_CAP:
            raise RegistryError(f"{ref}: the image config is {size} bytes, more than the {CONFIG_CAP >> 20} MiB cap",
                                reason="too-large")
        config_digest = config["digest"]
        blob = await self._blob(endpoint, ref.path, config_digest, kind="config", cap=CONFIG_CAP, deadline=deadline)
        layers = tuple(layer["digest"] for layer in document.get("layers") or ()
                       if isinstance(layer, dict) and isinstance(layer.get("digest"), str))
        parsed = parse_config(blob, reference=str(ref), digest=digest, config_digest=config_digest,
                              what=f"{endpoint.what}: config {config_digest}")
        sizes, compressed = manifest_layer_sizes(document.get("layers"))  # image-size: from the manifest in hand
        if sizes is not None:
            parsed = replace(parsed, layer_sizes=sizes, layers_compressed=compressed)
        return Fetched(config=parsed, manifest_digest=digest, index_digest=index_digest, layers=layers)

    # --- auth ------------------------------------------------------------------------------------------------

    async def _registry(self, endpoint: _Endpoint, repo: str, method: str, path: str, *, kind: Kind,
                        accept: str | None, cap: int, deadline: float, subject: str,
                        cap_words: str | None = None) -> _Answer:
        """A request to the registry API with whatever auth it asks for; one re-auth on a 401."""
        headers = {"Accept": accept} if accept else {}
        for attempt in range(2):
            authorization = await self._authorization(endpoint, repo, deadline)
            answer = await self._follow(method, endpoint.url(path), kind=kind, headers=headers,
                                        authorization=authorization, cap=cap, deadline=deadline,
                                        what=endpoint.what, listed=endpoint.listed, gates=endpoint.gates,
                                        origin=endpoint, cap_words=cap_words)
            if answer.status == 401 and not _same_origin(answer.url, endpoint.url("/")):
                raise _foreign_challenge(answer, endpoint, subject)
            if answer.status != 401 or attempt == 1:
                break
            # A cached token may have been revoked, or /v2/ was open while this repository is not: start over
            # from the challenge this 401 carries.
            challenge = _challenge_from(answer, endpoint)
            if challenge is None:
                break
            self._challenges[_endpoint_id(endpoint)] = challenge
            self._tokens = {k: v for k, v in self._tokens.items() if k[0] != challenge.realm}
        if 200 <= answer.status < 300:
            return answer
        raise _status_error(answer, endpoint.what, subject)

    async def _authorization(self, endpoint: _Endpoint, repo: str, deadline: float) -> str | None:
        challenge = await self._ping(endpoint, deadline)
        if challenge.scheme == "none":
            return None
        credential = await self._credentials.get(endpoint.key)
        if challenge.scheme == "basic":
            if credential is None or not (credential.username or credential.password):
                raise RegistryError(f"{endpoint.what} asks for a user name and password (Basic auth) and no "
                                    f"credentials are configured for {endpoint.key}", reason="auth")
            raw = f"{credential.username}:{credential.password}".encode()
            return "Basic " + base64.b64encode(raw).decode()
        return "Bearer " + await self._token(endpoint, challenge, f"repository:{repo}:pull", credential, deadline)

    async def _ping(self, endpoint: _Endpoint, deadline: float) -> _Challenge:
        ident = _endpoint_id(endpoint)
        cached = self._challenges.get(ident)
        if cached is not None:
            return cached
        async with self._exclusive(("ping", ident)):  # concurrent first fetches share one ping
            cached = self._challenges.get(ident)
            if cached is not None:
                return cached
            answer = await self._follow("GET", endpoint.url("/v2/"), kind="ping", headers={}, authorization=None,
                                        cap=_ERROR_BODY_CAP, deadline=deadline, what=endpoint.what,
                                        listed=endpoint.listed, gates=endpoint.gates, origin=endpoint, truncate=True)
            challenge: _Challenge | None
            if 200 <= answer.status < 300:
                challenge = _Challenge("none")
            elif answer.status == 401 and not _same_origin(answer.url, endpoint.url("/")):
                raise _foreign_challenge(answer, endpoint, "the registry API check (GET /v2/)")
            elif answer.status == 401:
                challenge = _challenge_from(answer, endpoint)
            else:
                raise _status_error(answer, endpoint.what, "the registry API check (GET /v2/)")
            if challenge is None:
                raise RegistryError(f"{endpoint.what} answered 401 without a WWW-Authenticate challenge",
                                    reason="auth")
            self._challenges[ident] = challenge
            return challenge

    async def _token(self, endpoint: _Endpoint, challenge: _Challenge, scope: str, credential: Credential | None,
                     deadline: float) -> str:
        gates = endpoint.gates
        # The gates are in the key: whether the realm may be asked is theirs to say, and a token in hand skips asking.
        key = (challenge.realm, challenge.service, scope, credential.fingerprint() if credential else "",
               gates.fingerprint)
        cached = self._tokens.get(key)
        if cached is not None and cached[0] > time.monotonic():
            return cached[1]
        async with self._exclusive(("token", key)):
            cached = self._tokens.get(key)
            if cached is not None and cached[0] > time.monotonic():
                return cached[1]
            realm = httpx.URL(challenge.realm)
            realm_key = _url_key(realm)
            what = f"token realm {challenge.realm} (named by {endpoint.what})"
            if realm.scheme == "http" and endpoint.scheme != "http" and realm_key not in gates.insecure:
                # An HTTPS registry's realm is plain HTTP only when images.insecure_registries lists it, with or
                # without credentials: an anonymous token from a realm anyone on the path can answer decides
                # what we are served. (A plain-HTTP registry was already accepted as plain HTTP.)
                carries = f"would receive the credentials for {endpoint.key}" if credential is not None \
                    else f"would hand out the tokens for {endpoint.key}"
                raise RegistryError(f"{what} refused: it is plain HTTP and {carries}; list {realm_key} in "
                                    "images.insecure_registries to allow it", reason="blocked")
            params = {"scope": scope, **({"service": challenge.service} if challenge.service else {})}
            content: bytes | None = None
            authorization = None
            method = "GET"
            headers: dict[str, str] = {}
            if credential is not None and credential.identity_token:
                # Docker's OAuth2 refresh-token grant: what `identitytoken` in a config means.
                method = "POST"
                form = {**params, "grant_type": "refresh_token", "refresh_token": credential.identity_token,
                        "client_id": "admission"}
                content = urllib.parse.urlencode(form).encode()
                headers["Content-Type"] = "application/x-www-form-urlencoded"
                url = realm
            else:
                url = realm.copy_merge_params(params)
                if credential is not None:
                    raw = f"{credential.username}:{credential.password}".encode()
                    authorization = "Basic " + base64.b64encode(raw).decode()
            answer = await self._follow(method, url, kind="token", headers=headers, authorization=authorization,
                                        cap=_TOKEN_CAP, deadline=deadline, what=what,
                                        listed=realm_key in gates.allowed, gates=gates, origin=None, content=content)
            if answer.status in (401, 403):
                who = "the configured credentials" if credential else "anonymous access"
                raise RegistryError(f"{what} refused {who} for {scope} ({answer.status})", reason="auth")
            if not 200 <= answer.status < 300:
                raise _status_error(answer, what, f"a token for {scope}")
            document = _json_object(answer.body, what)
            token = document.get("token") or document.get("access_token")
            if not isinstance(token, str) or not token:
                raise RegistryError(f"{what} answered without a token", reason="auth")
            if not _TOKEN.fullmatch(token):
                # It goes into a header: CR/LF would inject headers, and httpx refuses non-ASCII with a crash.
                raise RegistryError(f"{what} answered an unusable token (not visible ASCII)", reason="auth")
            expires_in = document.get("expires_in")
            seconds = expires_in if isinstance(expires_in, int) and expires_in > 0 else _DEFAULT_TOKEN_SECONDS
            # Renew a little early so that a token does not expire between our check and the registry's.
            _prune(self._tokens)
            self._tokens[key] = (time.monotonic() + seconds * 0.9, token)
            return token

    # --- one request, with the guard, the retry and redirects ---------------------------------------------

    async def _follow(self, method: str, url: httpx.URL, *, kind: Kind, headers: Mapping[str, str],
                      authorization: str | None, cap: int, deadline: float, what: str, listed: bool, gates: Gates,
                      origin: _Endpoint | None, content: bytes | None = None, truncate: bool = False,
                      cap_words: str | None = None) -> _Answer:
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
            target_key = _url_key(target)
            if url.scheme == "https" and target.scheme == "http" and target_key not in gates.insecure:
                raise RegistryError(f"{what} redirected from HTTPS to plain HTTP ({target_key}); refused",
                                    reason="blocked")
            what = f"redirect from {what} to {_display(target)}"
            listed = target_key in gates.allowed
            origin = None
            if answer.status == 303:
                method, content = "GET", None
            if content is not None and not _same_origin(target, first):
                # The only body we send is the refresh-token grant: it goes to the realm it was meant for or nowhere.
                raise RegistryError(f"{what}: a request carrying credentials in its body is not followed to "
                                    "another host; refused", reason="blocked")
            url = target
        raise RegistryError(f"{what}: more than {_MAX_REDIRECTS} redirects", reason="error")

    async def _exchange(self, method: str, url: httpx.URL, *, kind: Kind, headers: Mapping[str, str], cap: int,
                        deadline: float, what: str, listed: bool, origin: _Endpoint | None, content: bytes | None,
                        truncate: bool, cap_words: str | None) -> _Answer:
        """One request (and at most one retry on a 5xx or a connection error, only if it fits the deadline)."""
        if origin is not None:
            _refuse_unlisted_mirror(origin)
        addresses = await self._checked_addresses(url, what=what, listed=listed, deadline=deadline)
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
                raise RegistryError(f"{what}: connection failed ({_describe(exc)})", reason="error") from None
            except httpx.TimeoutException as exc:
                raise RegistryError(f"{what} did not answer in time ({_describe(exc)})", reason="timeout") from None
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
                    cap_words: str | None) -> _Answer:
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            raise RegistryError(f"{what}: the deadline passed before the request", reason="timeout")
        timeout = httpx.Timeout(connect=min(self._timeouts.connect, remaining), read=min(self._timeouts.read, remaining),
                                write=min(self._timeouts.read, remaining), pool=min(self._timeouts.connect, remaining))
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
                limit = cap if ok and not truncate else _ERROR_BODY_CAP
                body = b"" if method == "HEAD" else await _read_capped(
                    response, limit, truncate=truncate or not ok, what=what, cap_words=cap_words)
            finally:
                await response.aclose()
        finally:
            pool.in_use -= 1
        return _Answer(response.status_code, response.headers, body, url)

    # --- plumbing -----------------------------------------------------------------------------------------------

    async def _checked_addresses(self, url: httpx.URL, *, what: str, listed: bool, deadline: float) -> list[str]:
        """The addresses to dial for `url`, after the address check (netguard): RegistryError when refused."""
        port = url.port or (443 if url.scheme == "https" else 80)
        return await check_host(url.host, port, what=what, key=_url_key(url), listed=listed,
                                resolver=self._cached_resolver, timeout=self._wait(deadline, self._timeouts.connect))

    def _wait(self, deadline: float, limit: float) -> float:
        return max(0.0, min(limit, deadline - time.monotonic()))

    @contextlib.asynccontextmanager
    async def _exclusive(self, key: object) -> AsyncIterator[None]:
        """One holder per key; the entry goes when nobody waits, so keys from user input do not pile up."""
        entry = self._locks.get(key)
        if entry is None:
            entry = self._locks[key] = [asyncio.Lock(), 0]
        entry[1] += 1
        try:
            async with entry[0]:
                yield
        finally:
            entry[1] -= 1
            if entry[1] == 0:
                self._locks.pop(key, None)

    async def _cached_resolver(self, host: str, port: int) -> list[str]:
        key = (host.lower(), port)
        cached = self._addresses.get(key)
        if cached is not None and cached[0] > time.monotonic():
            return cached[1]
        addresses = await self._resolver(host, port)
        _prune(self._addresses)
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


def _refuse_unlisted_registry(ref: Reference, gates: Gates) -> None:
    """restrict_to_allowed, for the image's own registry rather than per endpoint: a listed mirror must not make
    an unlisted registry's images admissible."""
    key = registry_key(ref)
    if gates.restrict_to_allowed and key not in gates.allowed:
        raise RegistryError(f"registry {key} refused: images.restrict_to_allowed is on and {key} is not in "
                            "images.allowed_registries", reason="blocked")


def _refuse_unlisted_mirror(endpoint: _Endpoint) -> None:
    """restrict_to_allowed for one endpoint (a mirror; the origin passed _refuse_unlisted_registry already)."""
    if endpoint.gates.restrict_to_allowed and not endpoint.listed:
        raise RegistryError(f"{endpoint.what} refused: images.restrict_to_allowed is on and {endpoint.key} is not "
                            "in images.allowed_registries", reason="blocked")


def _prune(cache: dict[Any, tuple[float, Any]], limit: int = 1024) -> None:
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
async def _bounded(deadline: float, what: str) -> AsyncIterator[None]:
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


async def _read_capped(response: httpx.Response, cap: int, *, truncate: bool, what: str, cap_words: str | None) -> bytes:
    """Read at most `cap` bytes; a longer body is an error (or cut, for error bodies) without reading the rest."""
    encoding = response.headers.get("content-encoding", "identity").strip().lower()
    if not truncate and encoding not in ("", "identity"):
        # We asked for identity: the digest is over the bytes as stored, and an encoded body could be a bomb.
        raise RegistryError(f"{what} sent a {encoding}-encoded body although we asked for none", reason="error")
    declared = response.headers.get("content-length")
    too_big = RegistryError(f"{what} sent a body larger than {cap_words or _size_words(cap)}", reason="too-large")
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


def _size_words(cap: int) -> str:
    return f"{cap >> 20} MiB" if cap >= 1 << 20 and cap % (1 << 20) == 0 else f"{cap} bytes"


def _valid_digest(digest: str) -> bool:
    try:
        validate_digest(digest)
    except ValueError:
        return False
    return digest.split(":", 1)[0] in _HASHES


def _verify(body: bytes, digest: str, what: str) -> None:
    algorithm, _, expected = digest.partition(":")
    hasher = _HASHES.get(algorithm)
    if hasher is None:
        raise RegistryError(f"{what}: digest algorithm {algorithm} is not supported", reason="error")
    actual = hasher(body).hexdigest()
    if actual != expected:
        raise RegistryError(f"{what}, but its content hashes to {algorithm}:{actual}", reason="digest-mismatch")


def _json_object(body: bytes, what: str) -> dict[str, Any]:
    try:
        document = json.loads(body)
    except (ValueError, UnicodeDecodeError):
        raise RegistryError(f"{what} is not valid JSON", reason="error") from None
    except RecursionError:
        raise RegistryError(f"{what} nests too deeply to be a manifest or config", reason="error") from None
    if not isinstance(document, dict):
        raise RegistryError(f"{what} is not a JSON object", reason="error")
    return document


def _media_type(document: Mapping[str, Any], content_type: str) -> str:
    declared = document.get("mediaType")
    if isinstance(declared, str) and declared:
        return declared
    header = content_type.split(";", 1)[0].strip().lower()
    if header in _INDEX_TYPES | _MANIFEST_TYPES | _SCHEMA1_TYPES:
        return header
    # OCI allows omitting mediaType; the shape tells an index from a manifest.
    if isinstance(document.get("manifests"), list):
        return OCI_INDEX
    return OCI_MANIFEST if isinstance(document.get("config"), dict) else header


def _normal_arch(arch: str, variant: str) -> tuple[str, str]:
    """containerd's normalisation (platforms.Normalize): x86_64 is amd64, aarch64 is arm64 (variant v8), armhf is
    arm/v7, armel is arm/v6, and arm without a variant is arm/v7."""
    arch = {"x86_64": "amd64", "x86-64": "amd64", "aarch64": "arm64", "i386": "386"}.get(arch, arch)
    if arch == "armhf":
        return "arm", "v7"
    if arch == "armel":
        return "arm", "v6"
    if arch == "arm64" and variant in ("", "8", "v8.0"):
        variant = "v8"
    if arch == "arm" and variant in ("", "7"):
        variant = "v7"
    elif arch == "arm" and variant in ("8", "6", "5"):
        variant = "v" + variant
    return arch, variant


def pick_platform(index: Mapping[str, Any], platform: str, *, subject: str = "the image") -> dict[str, Any]:
    """The manifest descriptor of `index` for `platform` ("os/arch[/variant]").

    Variants are read as containerd reads them (linux/arm is arm/v7, an arm entry without a variant is v7);
    an arm platform also takes an older variant when its own is missing (arm/v7 runs arm/v6), the exact one
    first. Without a variant on other architectures, an entry without a variant is preferred.
    """
    parts = platform.lower().split("/")
    want_os = parts[0]
    want_arch, want_variant = _normal_arch(parts[1] if len(parts) > 1 else "", parts[2] if len(parts) > 2 else "")
    manifests = index.get("manifests")
    if not isinstance(manifests, list):
        raise RegistryError(f"{subject}: the index lists no manifests", reason="error")
    offered: list[str] = []
    matches: list[tuple[int, dict[str, Any]]] = []
    for position, entry in enumerate(manifests):
        if not isinstance(entry, dict) or not isinstance(entry.get("digest"), str):
            continue
        spec: dict[str, Any] = entry["platform"] if isinstance(entry.get("platform"), dict) else {}
        os_name = str(spec.get("os", "")).lower()
        arch, variant = _normal_arch(str(spec.get("architecture", "")).lower(), str(spec.get("variant", "")).lower())
        if os_name and os_name != "unknown":
            offered.append("/".join(p for p in (os_name, arch, variant) if p))
        if os_name != want_os or arch != want_arch:
            continue
        older = _ARM_OLDER.get(want_variant, ()) if arch == "arm" else ()
        if variant == want_variant:
            rank = 0
        elif variant in older:
            rank = 1 + older.index(variant)
        elif not want_variant:
            rank = 1
        else:
            continue
        matches.append((rank * 1_000_000 + position, entry))
    if not matches:
        has = ", ".join(dict.fromkeys(offered)) or "no platforms"
        raise RegistryError(f"{subject} has no image for {platform} (it has {has})", reason="not-found")
    chosen = min(matches, key=lambda m: m[0])[1]
    size = chosen.get("size")
    if isinstance(size, int) and size > MANIFEST_CAP:
        raise RegistryError(f"{subject}: the {platform} manifest is {size} bytes, more than the "
                            f"{MANIFEST_CAP >> 20} MiB cap", reason="too-large")
    if not _valid_digest(chosen["digest"]):
        raise RegistryError(f"{subject}: the {platform} entry has an invalid digest", reason="error")
    return chosen


def parse_config(blob: bytes, *, reference: str, digest: str | None, config_digest: str | None,
                 what: str = "image config") -> ImageConfig:
    """An OCI / Docker image config as the model's ImageConfig. Wrongly typed fields read as absent."""
    document = _json_object(blob, what)
    config: dict[str, Any] = document["config"] if isinstance(document.get("config"), dict) else {}
    user = config.get("User")
    ports = config.get("ExposedPorts")
    env = config.get("Env")
    labels = config.get("Labels")
    history = document.get("history")
    health = config.get("Healthcheck")
    test = health.get("Test") if isinstance(health, dict) else None
    return ImageConfig(
        reference=reference,
        digest=digest,
        user=user if isinstance(user, str) else "",
        config_digest=config_digest,
        os=str(document.get("os") or "linux"),
        architecture=str(document.get("architecture") or ""),
        exposed_ports=tuple(sorted(str(p) for p in ports)) if isinstance(ports, dict) else (),
        env=tuple(e for e in env if isinstance(e, str)) if isinstance(env, list) else (),
        labels={str(k): str(v) for k, v in labels.items()} if isinstance(labels, dict) else {},
        history=tuple(
            HistoryEntry(
                created_by=str(h.get("created_by") or ""),
                comment=str(h.get("comment") or ""),
                author=str(h.get("author") or ""),
                created=str(h.get("created") or ""),
                empty_layer=h.get("empty_layer") is True,
            )
            for h in history if isinstance(h, dict)
        ) if isinstance(history, list) else (),
        healthcheck=tuple(str(t) for t in test) if isinstance(test, list) and test else None,
    )


_PARAM = re.compile(r'\s*([A-Za-z0-9_.-]+)\s*=\s*("(?:[^"\\]|\\.)*"|[^,\s]*)\s*(?:,|$)')


def parse_challenge(header: str) -> tuple[str, dict[str, str]] | None:
    """`Bearer realm="...",service="..."` -> ("bearer", {...}); None when it cannot be read."""
    scheme, _, rest = header.strip().partition(" ")
    if not re.fullmatch(r"[A-Za-z][A-Za-z0-9!#$%&'*+.^_`|~-]*", scheme):
        return None
    params: dict[str, str] = {}
    position = 0
    rest = rest.strip()
    while position < len(rest):
        match = _PARAM.match(rest, position)
        if match is None or match.end() == position:
            return None
        value = match.group(2)
        if value.startswith('"'):
            value = re.sub(r"\\(.)", r"\1", value[1:-1])
        params[match.group(1).lower()] = value
        position = match.end()
    return scheme.lower(), params


def _challenge_from(answer: _Answer, endpoint: _Endpoint) -> _Challenge | None:
    headers = answer.headers.get_list("www-authenticate")
    if not headers:
        return None
    for header in headers:
        parsed = parse_challenge(header)
        if parsed is None:
            continue
        scheme, params = parsed
        if scheme == "bearer":
            realm = params.get("realm", "")
            try:
                url = httpx.URL(realm)
            except (httpx.InvalidURL, ValueError):
                url = None
            if url is None or url.scheme not in ("http", "https") or not url.host:
                continue
            return _Challenge("bearer", realm=realm, service=params.get("service", ""))
        if scheme == "basic":
            return _Challenge("basic")
    shown = "; ".join(headers)[:200]
    raise RegistryError(f"{endpoint.what} sent an unusable WWW-Authenticate challenge: {shown!r}", reason="auth")


def _status_error(answer: _Answer, what: str, subject: str) -> RegistryError:
    detail = _error_detail(answer.body)
    status = answer.status
    said = f" ({detail})" if detail else ""
    if status in (401, 403):
        return RegistryError(f"{what} refused access to {subject}: {status}{said}; it does not exist or needs "
                             "credentials", reason="auth")
    if status == 404:
        return RegistryError(f"{what} has no {subject}{said}", reason="not-found")
    if status == 429:
        return RegistryError(f"{what} is rate limiting us (429) for {subject}{said}", reason="error")
    return RegistryError(f"{what} answered {status} for {subject}{said}", reason="error")


def _error_detail(body: bytes) -> str:
    try:
        document = json.loads(body)
    except (ValueError, UnicodeDecodeError, RecursionError):  # RecursionError: "[[[[..." nests past the C stack
        return ""
    errors = document.get("errors") if isinstance(document, dict) else None
    if isinstance(errors, list) and errors and isinstance(errors[0], dict):
        code, message = errors[0].get("code"), errors[0].get("message")
        return ": ".join(str(p) for p in (code, message) if p)[:200]
    return ""


def _same_origin(a: httpx.URL, b: httpx.URL) -> bool:
    """Same scheme, host and port: whom a credential or a challenge belongs to."""
    def origin(url: httpx.URL) -> tuple[str, str, int]:
        return url.scheme, url.host, url.port or (443 if url.scheme == "https" else 80)
    return origin(a) == origin(b)


def _foreign_challenge(answer: _Answer, endpoint: _Endpoint, subject: str) -> RegistryError:
    """A 401 from a host the registry redirected us to: its challenge is not the registry's, and following it
    would send the registry's credentials to that host's realm."""
    return RegistryError(f"{endpoint.what} redirected {subject} to {_display(answer.url)}, which answered 401; "
                         "the registry's credentials are not sent to another host", reason="auth")


def _endpoint_id(endpoint: _Endpoint) -> str:
    return f"{endpoint.scheme}://{endpoint.host}"


def _url_key(url: httpx.URL) -> str:
    """How images.allowed_registries / insecure_registries would name this URL's host."""
    return server_key(url.netloc.decode("ascii"))


def _display(url: httpx.URL) -> str:
    return f"{url.scheme}://{url.netloc.decode('ascii')}{url.path}"[:200]


def _describe(exc: BaseException) -> str:
    return f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__


# --- layers ---------------------------------------------------------------------------------------------


class _LayerTooLarge(Exception):
    pass


class _Stopped(Exception):
    pass


class _Inflater(io.RawIOBase):
    """A gzip (or plain) layer as a readable stream that stops after `limit` bytes: a bomb costs no more.
    It also stops when `stop` is set or `deadline` (time.monotonic()) passes: it runs in a thread nobody can cancel."""

    def __init__(self, data: bytes, limit: int, *, stop: threading.Event | None = None,
                 deadline: float | None = None) -> None:
        self._data = data
        self._limit = limit
        self._stop = stop
        self._deadline = deadline
        self._produced = 0
        self._gzip = data[:2] == b"\x1f\x8b"
        self._position = 0
        self._pending = b""
        self._z = zlib.decompressobj(31) if self._gzip else None

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int:
        if (self._stop is not None and self._stop.is_set()) or \
                (self._deadline is not None and time.monotonic() > self._deadline):
            raise _Stopped
        wanted = len(buffer)
        while not self._pending:
            chunk = self._next(max(wanted, 1 << 16))
            if chunk is None:
                return 0
            self._pending = chunk
        out, self._pending = self._pending[:wanted], self._pending[wanted:]
        self._produced += len(out)
        if self._produced > self._limit:
            raise _LayerTooLarge
        buffer[: len(out)] = out
        return len(out)

    def _next(self, size: int) -> bytes | None:
        if self._z is None:
            if self._position >= len(self._data):
                return None
            chunk = self._data[self._position:self._position + size]
            self._position += len(chunk)
            return chunk
        while True:
            if self._z.unconsumed_tail:
                return self._z.decompress(self._z.unconsumed_tail, size)
            if self._z.eof:
                rest = self._z.unused_data + self._data[self._position:]
                if not rest.startswith(b"\x1f\x8b"):
                    return None
                self._data, self._position = rest, 0  # another gzip member (pigz and others write several)
                self._z = zlib.decompressobj(31)
            if self._position >= len(self._data):
                return None
            chunk = self._data[self._position:self._position + (1 << 16)]
            self._position += len(chunk)
            out = self._z.decompress(chunk, size)
            if out:
                return out


def _member_path(name: str) -> str:
    return posixpath.normpath("/" + name).lstrip("/")


def _scan_layer(blob: bytes, target: str, layer: str, limit: int, *, stop: threading.Event | None = None,
                deadline: float | None = None) -> tuple[bool, bytes | None]:
    """(decided, content): whether this layer decides `target` (has it, deletes it, or hides it), and the bytes.

    A layer that can never be read (zstd, not a tar) is LayerUnreadable: the answer will not change.
    """
    if blob[:4] == b"\x28\xb5\x2f\xfd":
        raise LayerUnreadable(f"layer {layer} is zstd-compressed, which this client does not read", reason="error")
    parents = []
    parent = posixpath.dirname(target)
    while parent:
        parents.append(parent)
        parent = posixpath.dirname(parent)
    whiteouts = {posixpath.join(posixpath.dirname(p), ".wh." + posixpath.basename(p)) for p in [target, *parents]}
    opaque = {posixpath.join(p, ".wh..wh..opq") for p in parents} | {".wh..wh..opq"}
    hidden = False
    seen = 0
    try:
        inflater = _Inflater(blob, limit, stop=stop, deadline=deadline)
        with tarfile.open(fileobj=io.BufferedReader(inflater), mode="r|") as archive:
            while True:
                try:
                    member = archive.next()
                except tarfile.ReadError:
                    # umoci (and others) end a layer without the final padding and zero blocks; Go's reader and
                    # the runtimes accept that, so a cut after a complete member is the end of the archive.
                    if seen:
                        break
                    raise
                if member is None:
                    break
                seen += 1
                name = _member_path(member.name)
                if name == target:
                    if not member.isfile():
                        return True, None  # a symlink or directory: not a file we can read as text
                    if member.size > _FILE_CAP:
                        raise RegistryError(f"/{target} in layer {layer} is {member.size} bytes, more than the "
                                            f"{_size_words(_FILE_CAP)} a file read from a layer may have",
                                            reason="too-large")
                    handle = archive.extractfile(member)
                    return True, handle.read(_FILE_CAP) if handle is not None else None
                if name in whiteouts or name in opaque:
                    hidden = True  # keep reading: the same layer may add the file back after the marker
    except _LayerTooLarge:
        raise RegistryError(f"layer {layer} expands to more than {_size_words(limit)}", reason="too-large") from None
    except _Stopped:
        raise RegistryError(f"reading layer {layer} stopped at the deadline", reason="timeout") from None
    except (tarfile.TarError, zlib.error, EOFError, OSError, gzip.BadGzipFile) as exc:
        raise LayerUnreadable(f"layer {layer} is not a readable tar archive ({exc})", reason="error") from None
    return hidden, None
