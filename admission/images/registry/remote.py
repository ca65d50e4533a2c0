"""The registry client's public face and the manifest walk: tag -> digest, index -> platform manifest -> config blob,
and the layers (read top down) for a file from them.

Hand-written on httpx because the webhook needs an *async* client with SSRF guards, and oras-py is sync. Laid out as
go-containerregistry lays out its own: authn.py (challenges, Basic and Bearer), transport.py (the guarded transport:
address checks, redirects, retries, capped bodies) and this module (remote: what to fetch, and checking it), with
manifest.py (pure document reading) and layerfs.py (a file out of the layers) beside them.

Shape of one cold fetch of a tagged single-platform image: GET /v2/ (once per registry; the challenge is
cached), a token request when the registry asks for Bearer (cached until `expires_in`), HEAD of the tag
(Docker Hub counts manifest GETs, not HEADs, against its pull limit), GET of the manifest by digest, GET of
the config blob. An index adds one GET.
"""

from __future__ import annotations

import asyncio
import collections
import posixpath
import ssl
import threading
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, replace
from typing import Any, TypeVar
from urllib.parse import quote

import httpx

from admission.errors import RegistryError
from admission.images.credentials import Credentials, server_key
from admission.images.gates import Gates
from admission.images.layers import manifest_layer_sizes
from admission.reference import Reference, registry_host
from admission.images.registry.authn import Authenticator
from admission.images.registry.layerfs import scan_layer
from admission.images.registry.manifest import (
    ACCEPT_MANIFESTS,
    CONFIG_CAP,
    HASHES,
    IMAGE_CONFIG_TYPES,
    INDEX_TYPES,
    MANIFEST_CAP,
    MANIFEST_TYPES,
    MAX_INDEX_DEPTH,
    SCHEMA1_TYPES,
    index_entries,
    json_object,
    media_type_of,
    parse_config,
    pick_platform,
    valid_digest,
    verify,
)
from admission.images.registry.transport import (
    Answer,
    Endpoint,
    Kind,
    Resolver,
    Timeouts,
    Transport,
    bounded,
    describe,
    refuse_unlisted_mirror,
)
from admission.model import ImageConfig
from admission.images.settings import ImagesSettings

__all__ = ["Fetched", "RegistryClient", "registry_key"]

INDEX_TYPES_ACCEPT = "application/vnd.oci.image.index.v1+json"
_LAYER_EXPANSION = 8  # decompressed bytes a layer may expand to, as a multiple of max_bytes (gzip bombs)
_HUB_API_HOST = "registry-1.docker.io"
_TIMEOUTS = Timeouts()

T = TypeVar("T")


def registry_key(ref: Reference) -> str:
    """architecture §5 identity: lower-case host[:port], docker.io aliases folded."""
    return registry_host(ref)


@dataclass(frozen=True, slots=True)
class Fetched:
    config: ImageConfig  # .digest = platform manifest digest, .config_digest = config blob digest
    manifest_digest: str
    index_digest: str | None
    layers: tuple[str, ...]  # layer digests, top layer last
    top: bytes | None = None  # the manifest the reference's digest names (the index of a multi-platform image), as read


class RegistryClient:
    """One per process (webhook) or run (CLI). Caches challenges, tokens and checked DNS answers, not images.

    The gates are read per call: each public method takes the `images` settings of the policy in force
    (`settings`, else the ones given here), so one client outlives policy reloads. What it keeps across
    calls cannot carry a verdict from old gates to new ones: tokens are keyed by the gates' fingerprint,
    every request is checked against the caller's gates, and DNS answers are kept as addresses, not as the
    outcome of a check. Challenges are kept per scheme://host: what a server asks for, not what we may do.
    """

    def __init__(self, settings: ImagesSettings, *, credentials: Credentials | None = None,
                 timeouts: Timeouts = _TIMEOUTS, resolver: Resolver | None = None,
                 verify: bool | str | ssl.SSLContext = True, transport: httpx.AsyncBaseTransport | None = None,
                 on_exchange: Callable[[str, str], None] | None = None) -> None:
        self.settings = settings
        self._transport = Transport(timeouts=timeouts, resolver=resolver, verify=verify, transport=transport,
                                    on_exchange=on_exchange)
        self._auth = Authenticator(self._transport, credentials or Credentials())

    @property
    def counters(self) -> collections.Counter[str]:
        """Requests sent, by kind (ping, token, head, manifest, config, blob)."""
        return self._transport.counters

    # --- public API -----------------------------------------------------------------------------------------

    async def admit(self, ref: Reference, *, deadline: float, settings: ImagesSettings | None = None) -> None:
        """Raise what a lookup of `ref` would be refused with before it reached a registry, without sending
        anything: restrict_to_allowed, or no endpoint (mirrors, then the origin) passing the address check.

        Costs no registry request, at most a DNS lookup (through the address cache) per unlisted endpoint.
        The resolver calls it before it answers from a cache, because the address check depends on DNS and
        so cannot be part of a cache key. Mirrors fall through as in a lookup, each given half the time left.
        """
        async def check(endpoint: Endpoint, until: float) -> None:
            refuse_unlisted_mirror(endpoint)
            await self._transport.checked_addresses(endpoint.url("/v2/"), what=endpoint.what, listed=endpoint.listed,
                                          deadline=until)

        await self._each_endpoint(ref, deadline, check, gates=self._gates(settings))

    async def resolve_digest(self, ref: Reference, *, deadline: float, settings: ImagesSettings | None = None) -> str:
        """Tag -> manifest digest, with HEAD (GET only when a registry sends no Docker-Content-Digest on HEAD)."""
        if ref.digest is not None:
            return ref.digest

        async def attempt(endpoint: Endpoint, until: float) -> str:
            digest, _body, _type = await self._resolve_on(endpoint, ref, until)
            return digest

        return await self._each_endpoint(ref, deadline, attempt, gates=self._gates(settings))

    async def fetch(self, ref: Reference, *, deadline: float, digest: str | None = None,
                    settings: ImagesSettings | None = None) -> Fetched:
        """The config of `ref` for the platform in `settings`, verified: by digest (ref's, `digest`, or resolved
        first)."""
        platform = (self.settings if settings is None else settings).platform

        async def attempt(endpoint: Endpoint, until: float) -> Fetched:
            return await self._fetch_on(endpoint, ref, digest or ref.digest, until, platform=platform)

        return await self._each_endpoint(ref, deadline, attempt, gates=self._gates(settings))

    async def index_manifests(self, ref: Reference, digest: str, *, deadline: float,
                              settings: ImagesSettings | None = None) -> tuple[tuple[str, str], ...]:
        """(digest, "os/arch[/variant]") of each manifest the index `digest` of `ref`'s repository lists; () when that
        digest is a single image's manifest. One GET of the manifest by digest (pin: is a pinned platform manifest
        still part of what its tag points at?)."""
        if not valid_digest(digest):
            raise RegistryError(f"{ref} has an unusable digest {digest!r}", reason="error")

        async def attempt(endpoint: Endpoint, until: float) -> tuple[tuple[str, str], ...]:
            body, content_type = await self._manifest(endpoint, ref.path, digest, until)
            document = json_object(body, f"{endpoint.what}: manifest {ref.path}@{digest}")
            if media_type_of(document, content_type) not in INDEX_TYPES:
                return ()
            return index_entries(document)

        return await self._each_endpoint(ref, deadline, attempt, gates=self._gates(settings))

    async def referrers(self, ref: Reference, digest: str, *, artifact_type: str | None, deadline: float,
                        settings: ImagesSettings | None = None) -> tuple[dict[str, Any], bool] | None:
        """The OCI referrers API's index of what names `digest` as its subject, and whether the registry applied the
        `artifactType` filter (OCI-Filters-Applied); None when the registry does not serve the API (404).

        A registry that serves the API lists every manifest pushed with that subject, including those the fallback
        tag `sha256-<hex>` lists, so a caller needs the fallback tag only when this is None.
        """
        if not valid_digest(digest):
            raise RegistryError(f"{ref} has an unusable digest {digest!r}", reason="error")
        query = f"?artifactType={quote(artifact_type, safe='')}" if artifact_type else ""

        async def attempt(endpoint: Endpoint, until: float) -> tuple[dict[str, Any], bool]:
            answer = await self._auth.request(endpoint, ref.path, "GET", f"/v2/{ref.path}/referrers/{digest}{query}",
                                              kind="referrers", accept=INDEX_TYPES_ACCEPT, cap=MANIFEST_CAP,
                                              deadline=until, subject=f"referrers of {ref.path}@{digest}")
            document = json_object(answer.body, f"{endpoint.what}: referrers of {ref.path}@{digest}")
            applied = {f.strip() for f in answer.headers.get("oci-filters-applied", "").split(",")}
            return document, "artifactType" in applied

        return await self._or_none(ref, deadline, attempt, settings)

    async def tagged_manifest(self, ref: Reference, tag: str, *, deadline: float,
                              settings: ImagesSettings | None = None) -> tuple[str, bytes, str] | None:
        """(digest, body, content type) of the manifest a tag names, checked against the Docker-Content-Digest the
        registry sends; None when there is no such tag (cosign's `sha256-<hex>` and `sha256-<hex>.sig` tags)."""
        async def attempt(endpoint: Endpoint, until: float) -> tuple[str, bytes, str]:
            answer = await self._auth.request(endpoint, ref.path, "GET", f"/v2/{ref.path}/manifests/{tag}",
                                              kind="signature", accept=ACCEPT_MANIFESTS, cap=MANIFEST_CAP,
                                              deadline=until, subject=f"manifest {ref.path}:{tag}")
            return _checked(endpoint, f"{ref.path}:{tag}", answer), answer.body, answer.headers.get("content-type", "")

        return await self._or_none(ref, deadline, attempt, settings)

    async def _or_none(self, ref: Reference, deadline: float, attempt: Callable[[Endpoint, float], Awaitable[T]],
                       settings: ImagesSettings | None) -> T | None:
        """`attempt` on each endpoint, None when the last one (the origin) has nothing there (404)."""
        try:
            return await self._each_endpoint(ref, deadline, attempt, gates=self._gates(settings))
        except RegistryError as exc:
            if exc.reason == "not-found":
                return None
            raise

    async def manifest(self, ref: Reference, digest: str, *, deadline: float,
                       settings: ImagesSettings | None = None) -> tuple[bytes, str]:
        """(body, content type) of the manifest `digest` of `ref`'s repository, checked against the digest."""
        if not valid_digest(digest):
            raise RegistryError(f"{ref} names an invalid manifest digest {digest!r}", reason="error")

        async def attempt(endpoint: Endpoint, until: float) -> tuple[bytes, str]:
            return await self._manifest(endpoint, ref.path, digest, until, kind="signature")

        return await self._each_endpoint(ref, deadline, attempt, gates=self._gates(settings))

    async def blob(self, ref: Reference, digest: str, *, cap: int, deadline: float,
                   settings: ImagesSettings | None = None) -> bytes:
        """The blob `digest` of `ref`'s repository, at most `cap` bytes, checked against the digest."""
        async def attempt(endpoint: Endpoint, until: float) -> bytes:
            return await self._blob(endpoint, ref.path, digest, kind="signature", cap=cap, deadline=until)

        return await self._each_endpoint(ref, deadline, attempt, gates=self._gates(settings))

    async def read_file_from_layers(self, ref: Reference, fetched: Fetched, path: str, *, deadline: float,
                                    max_bytes: int, settings: ImagesSettings | None = None) -> bytes | None:
        """The content of `path` as the image's filesystem has it, or None when absent (deleted by a whiteout).

        Layers are read top down and the first layer that has the path (or deletes it) decides. At most
        `max_bytes` of layer blobs are downloaded in all; more is a RegistryError(reason="too-large").
        """
        target = posixpath.normpath("/" + path).lstrip("/")

        async def attempt(endpoint: Endpoint, until: float) -> bytes | None:
            budget = max_bytes
            for layer in reversed(fetched.layers):
                blob = await self._blob(endpoint, ref.path, layer, kind="blob", cap=budget, deadline=until,
                                        cap_words=f"the {max_bytes}-byte budget for reading {path}")
                budget -= len(blob)
                # A thread cannot be cancelled: it checks `stop` and the deadline itself, so a caller that gives up
                # (or a deadline that passes) does not leave it inflating a layer nobody waits for.
                stop = threading.Event()
                try:
                    found, content = await asyncio.to_thread(scan_layer, blob, target, layer,
                                                             max(max_bytes, 1 << 20) * _LAYER_EXPANSION,
                                                             stop=stop, deadline=until)
                finally:
                    stop.set()
                if found:
                    return content
            return None

        return await self._each_endpoint(ref, deadline, attempt, gates=self._gates(settings))

    async def aclose(self) -> None:
        await self._transport.aclose()

    # --- endpoints, mirrors and the deadline ---------------------------------------------------------------

    def _gates(self, settings: ImagesSettings | None) -> Gates:
        return Gates.of(self.settings if settings is None else settings)

    def _endpoints(self, ref: Reference, gates: Gates) -> list[Endpoint]:
        key = registry_key(ref)
        endpoints = []
        for host in gates.mirrors_of(key):
            mkey = server_key(host)
            endpoints.append(Endpoint(mkey, host, "http" if mkey in gates.insecure else "https", "mirror",
                                       mkey in gates.allowed, gates))
        host = _HUB_API_HOST if key == "docker.io" else key
        endpoints.append(Endpoint(key, host, "http" if key in gates.insecure else "https", "registry",
                                   key in gates.allowed, gates))
        return endpoints

    async def _each_endpoint(self, ref: Reference, deadline: float,
                             attempt: Callable[[Endpoint, float], Awaitable[T]], *, gates: Gates) -> T:
        """Mirrors in order, then the origin. A failing mirror falls through; it gets at most half the time left
        so that the origin can still answer inside the deadline. Whatever an endpoint's answers make go wrong
        is a RegistryError, so that the next endpoint is tried and the failure can be cached like any other."""
        _refuse_unlisted_registry(ref, gates)
        endpoints = self._endpoints(ref, gates)
        for endpoint in endpoints:
            last = endpoint is endpoints[-1]
            until = deadline if last else time.monotonic() + (deadline - time.monotonic()) / 2
            try:
                async with bounded(until, endpoint.what):
                    return await attempt(endpoint, until)
            except RegistryError:
                if last:
                    raise
            except Exception as exc:  # noqa: BLE001 - a parser or protocol failure on one endpoint, never a crash
                if last:
                    raise RegistryError(f"{endpoint.what}: unexpected failure ({describe(exc)})",
                                        reason="error") from None
        raise AssertionError("unreachable: the origin is always the last endpoint")

    # --- manifests and blobs -------------------------------------------------------------------------------

    async def _resolve_on(self, endpoint: Endpoint, ref: Reference, deadline: float) -> tuple[str, bytes | None, str]:
        tag = ref.tag or "latest"
        subject = f"{ref.path}:{tag}"
        path = f"/v2/{ref.path}/manifests/{tag}"
        head = await self._auth.request(endpoint, ref.path, "HEAD", path, kind="head", accept=ACCEPT_MANIFESTS, cap=0,
                                        deadline=deadline, subject=f"manifest {subject}")
        said = head.headers.get("docker-content-digest")
        if said and valid_digest(said):
            return said, None, head.headers.get("content-type", "")
        got = await self._auth.request(endpoint, ref.path, "GET", path, kind="manifest", accept=ACCEPT_MANIFESTS,
                                       cap=MANIFEST_CAP, deadline=deadline, subject=f"manifest {subject}")
        return _checked(endpoint, subject, got), got.body, got.headers.get("content-type", "")

    async def _manifest(self, endpoint: Endpoint, repo: str, digest: str, deadline: float, *,
                        kind: Kind = "manifest") -> tuple[bytes, str]:
        answer = await self._auth.request(endpoint, repo, "GET", f"/v2/{repo}/manifests/{digest}", kind=kind,
                                          accept=ACCEPT_MANIFESTS, cap=MANIFEST_CAP, deadline=deadline,
                                          subject=f"manifest {repo}@{digest}")
        verify(answer.body, digest, f"{endpoint.what} sent a manifest for {repo}@{digest}")
        return answer.body, answer.headers.get("content-type", "")

    async def _blob(self, endpoint: Endpoint, repo: str, digest: str, *, kind: Kind, cap: int, deadline: float,
                    cap_words: str | None = None) -> bytes:
        if not valid_digest(digest):
            raise RegistryError(f"{endpoint.what}: {repo} names an invalid blob digest {digest!r}", reason="error")
        answer = await self._auth.request(endpoint, repo, "GET", f"/v2/{repo}/blobs/{digest}", kind=kind, accept=None,
                                          cap=cap, deadline=deadline, subject=f"blob {repo}@{digest}",
                                          cap_words=cap_words)
        verify(answer.body, digest, f"{endpoint.what} sent blob {repo}@{digest}")
        return answer.body

    async def _fetch_on(self, endpoint: Endpoint, ref: Reference, digest: str | None, deadline: float, *,
                        platform: str) -> Fetched:
        body: bytes | None = None
        content_type = ""
        if digest is None:
            digest, body, content_type = await self._resolve_on(endpoint, ref, deadline)
        elif not valid_digest(digest):
            raise RegistryError(f"{ref} has an unusable digest {digest!r}", reason="error")
        if body is None:
            body, content_type = await self._manifest(endpoint, ref.path, digest, deadline)
        top = body
        index_digest: str | None = None
        document = json_object(body, f"{endpoint.what}: manifest {ref.path}@{digest}")
        for _depth in range(MAX_INDEX_DEPTH + 1):
            media_type = media_type_of(document, content_type)
            if media_type not in INDEX_TYPES:
                break
            if index_digest is None:
                index_digest = digest
            chosen = pick_platform(document, platform, subject=f"{ref} ({digest})")
            digest = chosen["digest"]
            body, content_type = await self._manifest(endpoint, ref.path, digest, deadline)
            document = json_object(body, f"{endpoint.what}: manifest {ref.path}@{digest}")
        else:
            raise RegistryError(f"{ref}: indexes nest deeper than {MAX_INDEX_DEPTH}", reason="error")
        media_type = media_type_of(document, content_type)
        if media_type in SCHEMA1_TYPES or document.get("schemaVersion") == 1:
            raise RegistryError(f"{ref} has only a Docker schema 1 manifest, which carries no image config; "
                                "push it again with a current client", reason="error")
        config = document.get("config")
        if media_type not in MANIFEST_TYPES and not isinstance(config, dict):
            raise RegistryError(f"{ref}: manifest {digest} is not an image manifest (media type {media_type or '?'})",
                                reason="error")
        if not isinstance(config, dict) or not isinstance(config.get("digest"), str):
            raise RegistryError(f"{ref}: manifest {digest} names no config blob", reason="error")
        config_type = config.get("mediaType", "")
        if config_type and config_type not in IMAGE_CONFIG_TYPES:
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
        return Fetched(config=parsed, manifest_digest=digest, index_digest=index_digest, layers=layers, top=top)



def _checked(endpoint: Endpoint, subject: str, answer: Answer) -> str:
    """The digest of a manifest as fetched, refusing one the registry labels with another digest."""
    said = answer.headers.get("docker-content-digest")
    algorithm = said.split(":", 1)[0] if said and valid_digest(said) else "sha256"
    digest = f"{algorithm}:{HASHES[algorithm](answer.body).hexdigest()}"
    if said and valid_digest(said) and said != digest:
        raise RegistryError(f"{endpoint.what} sent manifest {subject} labelled {said} whose content hashes to "
                            f"{digest}", reason="digest-mismatch")
    return digest


def _refuse_unlisted_registry(ref: Reference, gates: Gates) -> None:
    """restrict_to_allowed, for the image's own registry rather than per endpoint: a listed mirror must not make
    an unlisted registry's images admissible."""
    key = registry_key(ref)
    if gates.restrict_to_allowed and key not in gates.allowed:
        raise RegistryError(f"registry {key} refused: images.restrict_to_allowed is on and {key} is not in "
                            "images.allowed_registries", reason="blocked")


