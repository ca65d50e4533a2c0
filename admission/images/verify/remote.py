"""Signatures of an image from its registry: where cosign puts them, fetched through the resolver's client, gates and
caches, then judged by decide.py.

Where: the union of the OCI referrers API, cosign's fallback tag `sha256-<hex>` (an index of bundle manifests) and its
legacy tag `sha256-<hex>.sig`. A registry that serves the referrers API lists every manifest pushed with that subject,
the fallback tag's included, so the fallback tag is read only where the API is not served (a 404, remembered per
registry for `images.tag_ttl`); the legacy tag is always asked, because a registry with referrers can still hold
cosign v2 signatures. Each referrers answer is filtered by artifactType again when the registry says it did not
filter (OCI-Filters-Applied).

Caches: manifests and blobs by digest (checked against the digest when fetched, hashed again when read from disk),
what a registry lists for a digest for `images.tag_ttl` (a signature can be added after a push: "no signature" is not
kept longer). A verdict is never cached: each check verifies the signatures again. Cold, a signed image costs its
resolution plus: the referrers API (or, where it is not served, the fallback tag; the probe is paid once per registry),
the bundle manifest and the bundle blob; the legacy tag (and its payload blobs) only when no bundle is a valid
signature, since one valid signature decides. Warm, nothing.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from admission import reference
from admission.errors import RegistryError
from admission.images.cache import ListEntry
from admission.images.settings import ImagesSettings, VerifyEntry
from admission.images.verify import cosign
from admission.images.verify.decide import decide
from admission.keys import PublicKey
from admission.model import SignatureCheck
from admission.reference import Reference

if TYPE_CHECKING:
    from admission.images.cache import ImageResolver

__all__ = ["SignatureFinder", "unavailable"]

_MAX_BUNDLES = 16  # signature manifests read per digest: cosign appends one per signing; more is not a real image
_MAX_PLATFORMS = 64
_INDEX_TYPES = frozenset(("application/vnd.oci.image.index.v1+json",
                          "application/vnd.docker.distribution.manifest.list.v2+json"))
REFERRERS = "OCI referrers API"


def unavailable(image: str, error: str, *, digest: str = "", tag: str | None = None) -> SignatureCheck:
    return SignatureCheck(image=image, status="unavailable", digest=digest, tag=tag,
                          detail="the registry could not be asked for its signatures in time", error=error)


class SignatureFinder:
    """One per resolver: its client, gates, credentials and caches are the ones image configs are looked up with."""

    def __init__(self, resolver: ImageResolver) -> None:
        self.resolver = resolver

    async def check(self, image: str, entry: VerifyEntry, *, deadline: float, cred_key: str = "",
                    settings: ImagesSettings | None = None) -> SignatureCheck:
        """The SignatureCheck of `image` under `entry`'s keys. Never raises: a registry that cannot be asked in time
        gives `unavailable` with the precise error."""
        chosen = self.resolver.settings if settings is None else settings
        digest, tag = "", None
        try:
            async with asyncio.timeout(max(0.0, deadline - time.monotonic())):
                digest, tag = await self.resolver.top_digest(image, deadline=deadline, cred_key=cred_key,
                                                             settings=chosen)
                named = reference.parse_normalized_named(image)
                ref = Reference(domain=named.domain, path=named.path)
                job = _Job(self, ref, self.resolver.key_prefix(cred_key=cred_key, settings=chosen), chosen, deadline)
                found = {digest: await job.signatures(digest, entry.keys)}
                platforms = None
                valid, _ = cosign.first_valid(found[digest], digest=digest, keys=entry.keys)
                if valid is None:
                    platforms = await job.platforms(digest)
                    if platforms:
                        got = await asyncio.gather(*(job.signatures(d, entry.keys) for d, _ in platforms))
                        found.update(zip((d for d, _ in platforms), got))
                return decide(image, digest=digest, tag=tag if named.digest is None else None, found=found,
                              platforms=platforms, keys=entry.keys, looked=job.looked())
        except TimeoutError:
            return unavailable(image, "timeout: signatures not fetched within the deadline", digest=digest, tag=tag)
        except RegistryError as exc:
            return unavailable(image, f"{exc.reason}: {exc}", digest=digest, tag=tag)
        except reference.ReferenceError as exc:
            return unavailable(image, f"error: invalid image reference '{image}': {exc}")


class _Job:
    """One image's lookups: its repository, cache key prefix, settings and deadline."""

    def __init__(self, finder: SignatureFinder, ref: Reference, prefix: str, settings: ImagesSettings,
                 deadline: float) -> None:
        self.finder = finder
        self.resolver = finder.resolver
        self.ref = ref
        self.prefix = prefix
        self.settings = settings
        self.deadline = deadline
        self.places: list[str] = []

    def looked(self) -> str:
        return ", ".join(dict.fromkeys(self.places)) or "nowhere"

    # -- the three places --

    async def signatures(self, digest: str, keys: Sequence[PublicKey]) -> tuple[cosign.Envelope, ...]:
        """The signature objects of `digest`: bundles first, and the legacy tag only when no bundle is a valid
        signature (a valid one decides, wherever else one might be)."""
        bundles = await self._bundles(digest)
        if cosign.first_valid(bundles, digest=digest, keys=keys)[0] is not None:
            return bundles
        return bundles + await self._legacy(digest)

    async def _bundles(self, digest: str) -> tuple[cosign.Envelope, ...]:
        listed = await self._referrers(digest)
        where = REFERRERS
        if listed is None:
            where = f"tag {_shown(_tag(digest))}"
            body = await self._listed(f"{digest}\ntag", lambda: self._tagged(_tag(digest)))
            listed = _manifests(body)
        self.places.append(where)
        descriptors = [d for d in listed if cosign.is_bundle_manifest(d)][:_MAX_BUNDLES]
        return tuple(await asyncio.gather(*(self._bundle(d["digest"], where) for d in descriptors)))

    async def _referrers(self, digest: str) -> list[dict[str, Any]] | None:
        """The referrers API's entries for `digest`, or None where the registry does not serve the API."""
        registry = f"{self.prefix}\n{reference.registry_host(self.ref)}"
        since = self.resolver.memory.no_referrers.get(registry)  # when it answered 404 (resolver clock)
        if since is not None and self.resolver.clock() - since < self.settings.tag_ttl:
            return None
        client = self.resolver.client

        async def fetch() -> bytes | None:
            answer = await client.referrers(self.ref, digest, artifact_type=cosign.BUNDLE_ARTIFACT,
                                            deadline=self.deadline, settings=self.settings)
            if answer is None:
                return None
            document, filtered = answer
            if not filtered:  # the registry ignored artifactType: keep what we asked for ourselves
                document = {**document, "manifests": [m for m in document.get("manifests") or ()
                                                      if isinstance(m, dict) and cosign.is_bundle_manifest(m)]}
            return json.dumps(document).encode()

        body = await self._listed(f"{digest}\nreferrers", fetch)
        if body is None:
            self.resolver.memory.no_referrers.put(registry, self.resolver.clock())
            return None
        return _manifests(body)

    async def _legacy(self, digest: str) -> tuple[cosign.Envelope, ...]:
        tag = _tag(digest) + ".sig"
        where = f"tag {_shown(tag)}"
        self.places.append(where)
        body = await self._listed(f"{digest}\nsig", lambda: self._tagged(tag))
        if body is None:
            return ()
        try:
            manifest = json.loads(body)
        except ValueError:
            return (cosign.unreadable("legacy", where, "a signature manifest that is not JSON"),)
        layers = cosign.legacy_layers(manifest if isinstance(manifest, dict) else {})[:_MAX_BUNDLES]
        payloads = await asyncio.gather(*(self._object(d, cap=cosign.PAYLOAD_CAP, blob=True) for d, _ in layers),
                                        return_exceptions=True)
        out = []
        for (_, signature), payload in zip(layers, payloads, strict=True):
            if isinstance(payload, BaseException):
                out.append(self._missing(payload, "legacy", where, "payload"))
            else:
                out.append(cosign.legacy(payload, signature, where=where))
        return tuple(out)

    async def _bundle(self, manifest_digest: str, where: str) -> cosign.Envelope:
        try:
            manifest = json.loads(await self._object(manifest_digest, cap=0, blob=False))
            layer = cosign.bundle_layer(manifest) if isinstance(manifest, dict) else None
            if layer is None:
                return cosign.unreadable("bundle", where, "a referrer that holds no Sigstore bundle")
            return cosign.bundle(await self._object(layer, cap=cosign.BUNDLE_CAP, blob=True), where=where)
        except ValueError:
            return cosign.unreadable("bundle", where, "a signature manifest that is not JSON")
        except RegistryError as exc:
            return self._missing(exc, "bundle", where, "bundle")

    @staticmethod
    def _missing(exc: BaseException, format_: cosign.Format, where: str, what: str) -> cosign.Envelope:
        """A listed object the registry does not have is a broken signature; any other failure is unavailability."""
        if isinstance(exc, RegistryError) and exc.reason in ("not-found", "digest-mismatch", "too-large"):
            return cosign.unreadable(format_, where, f"its {what} could not be read ({exc.reason})")
        raise exc

    # -- index platforms --

    async def platforms(self, digest: str) -> list[tuple[str, str]] | None:
        """(digest, platform) of each entry when `digest` is an index, else None."""
        try:
            document = json.loads(await self._object(digest, cap=0, blob=False))
        except ValueError:
            return None
        if not isinstance(document, dict) or (document.get("mediaType") not in _INDEX_TYPES
                                              and not isinstance(document.get("manifests"), list)):
            return None
        out = []
        for entry in (document.get("manifests") or [])[:_MAX_PLATFORMS]:
            if not isinstance(entry, dict) or not isinstance(entry.get("digest"), str):
                continue
            platform = entry.get("platform")
            text = ""
            if isinstance(platform, dict):
                text = "/".join(str(platform[k]) for k in ("os", "architecture", "variant") if platform.get(k))
            out.append((entry["digest"], text))
        return out

    # -- caches --

    async def _listed(self, what: str, fetch: Any) -> bytes | None:  # noqa: ANN401 - an async callable
        """What the registry lists under `what` (a digest and a place), trusted for images.tag_ttl."""
        resolver = self.resolver
        key = f"{self.prefix}\n{self.ref.name}@{what}"
        entry = resolver.memory.lists.get(key)
        if entry is None and resolver.disk is not None:
            stored = resolver.disk.get_list(key)
            if stored is not None:
                age = resolver.wall() - stored.at
                entry = ListEntry(stored.body, resolver.clock() - age if age >= 0 else -float("inf"))
                resolver.memory.lists.put(key, entry)
        if entry is not None and 0 <= resolver.clock() - entry.at < self.settings.tag_ttl:
            resolver.stats["signature_list_hit"] += 1
            return entry.body
        body = await resolver.call(self.ref, fetch, deadline=self.deadline)
        resolver.memory.lists.put(key, ListEntry(body, resolver.clock()))
        if resolver.disk is not None:
            resolver.disk.put_list(key, ListEntry(body, resolver.wall()))
        return body  # type: ignore[no-any-return]

    async def _object(self, digest: str, *, cap: int, blob: bool) -> bytes:
        """A manifest (blob=False) or blob by digest, from the caches or the registry, checked against the digest."""
        resolver = self.resolver
        key = f"{self.prefix}\n{self.ref.name}@{digest}"
        data = resolver.memory.objects.get(key)
        if data is None and resolver.disk is not None:
            data = resolver.disk.get_object(key, digest)
            if data is not None:
                resolver.memory.objects.put(key, data)
        if data is not None:
            resolver.stats["signature_object_hit"] += 1
            return data
        client = self.resolver.client
        if blob:
            data = await resolver.call(self.ref, lambda: client.blob(self.ref, digest, cap=cap, deadline=self.deadline,
                                                                     settings=self.settings), deadline=self.deadline)
        else:
            data, _ = await resolver.call(self.ref, lambda: client.manifest(self.ref, digest, deadline=self.deadline,
                                                                            settings=self.settings),
                                          deadline=self.deadline)
        resolver.memory.objects.put(key, data)
        if resolver.disk is not None:
            resolver.disk.put_object(key, data)
        return data

    async def _tagged(self, tag: str) -> bytes | None:
        found = await self.resolver.client.tagged_manifest(self.ref, tag, deadline=self.deadline,
                                                           settings=self.settings)
        return None if found is None else found[1]


def _tag(digest: str) -> str:
    """cosign's tag for things about `digest`: `sha256-<hex>` (the OCI referrers fallback tag schema)."""
    return digest.replace(":", "-", 1)


def _shown(tag: str) -> str:
    """A cosign tag as messages show it: `sha256-9f2c1e0a4b7d….sig`."""
    head, dot, suffix = tag.partition(".")
    return f"{head[:19]}…{dot}{suffix}" if len(head) > 19 else tag


def _manifests(body: bytes | None) -> list[dict[str, Any]]:
    if body is None:
        return []
    try:
        document = json.loads(body)
    except ValueError:
        return []
    manifests = document.get("manifests") if isinstance(document, dict) else None
    return [m for m in manifests or () if isinstance(m, dict) and isinstance(m.get("digest"), str)]


