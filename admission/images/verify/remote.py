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
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Any

from admission import reference
from admission.errors import RegistryError
from admission.images.cache import ListEntry
from admission.images.settings import ImagesSettings, VerifyEntry
from admission.images.verify import cosign
from admission.images.verify.decide import decide, runnable
from admission.images.verify.provenance import Found
from admission.images.verify.provenance import decide as decide_provenance
from admission.keys import PublicKey
from admission.model import AttestationCheck, SignatureCheck
from admission.reference import Reference

if TYPE_CHECKING:
    from admission.images.cache import ImageResolver

__all__ = ["Checks", "Verifier", "attestation_unavailable", "unavailable"]

_MAX_BUNDLES = 16  # signature manifests read per digest: cosign appends one per signing; more is not a real image
_MAX_PLATFORMS = 64
_INDEX_TYPES = frozenset(("application/vnd.oci.image.index.v1+json",
                          "application/vnd.docker.distribution.manifest.list.v2+json"))
REFERRERS = "OCI referrers API"
_REFERENCE_TYPE = "vnd.docker.reference.type"
_REFERENCE_DIGEST = "vnd.docker.reference.digest"
_PREDICATE_TYPE = "in-toto.io/predicate-type"


def unavailable(image: str, error: str, *, digest: str = "", tag: str | None = None) -> SignatureCheck:
    return SignatureCheck(image=image, status="unavailable", digest=digest, tag=tag,
                          detail="the registry could not be asked for its signatures in time", error=error)


@dataclass(frozen=True, slots=True)
class Checks:
    """An image's checks under its entry: None for what the entry does not ask for."""

    signature: SignatureCheck | None
    attestation: AttestationCheck | None


class Verifier:
    """One per resolver: its client, gates, credentials and caches are the ones image configs are looked up with."""

    def __init__(self, resolver: ImageResolver) -> None:
        self.resolver = resolver

    async def check(self, image: str, entry: VerifyEntry, *, deadline: float, cred_key: str = "",
                    settings: ImagesSettings | None = None) -> SignatureCheck:
        """The SignatureCheck of `image` under `entry`'s keys (see `verify`)."""
        checks = await self.verify(image, replace(entry, signature="required", provenance="off"), deadline=deadline,
                                   cred_key=cred_key, settings=settings)
        assert checks.signature is not None
        return checks.signature

    async def verify(self, image: str, entry: VerifyEntry, *, deadline: float, cred_key: str = "",
                     settings: ImagesSettings | None = None) -> Checks:
        """What the entry asks of `image`: its signature, its provenance, or both. Never raises: a registry that
        cannot be asked in time gives `unavailable` with the precise error."""
        chosen = self.resolver.settings if settings is None else settings
        digest, tag = "", None
        wants_signature, wants_provenance = entry.signature != "off", entry.provenance != "off"
        try:
            async with asyncio.timeout(max(0.0, deadline - time.monotonic())):
                digest, tag = await self.resolver.top_digest(image, deadline=deadline, cred_key=cred_key,
                                                             settings=chosen)
                named = reference.parse_normalized_named(image)
                tag = tag if named.digest is None else None
                ref = Reference(domain=named.domain, path=named.path)
                job = _Job(self, ref, self.resolver.key_prefix(cred_key=cred_key, settings=chosen), chosen, deadline)
                job.top = digest
                found = {digest: await job.signatures(digest, entry.keys)}
                index_signed = cosign.first_valid(found[digest], digest=digest, keys=entry.keys)[0] is not None
                document = None
                if wants_provenance or not index_signed:
                    document = await job.index(digest)
                platforms = _entries(document) if document is not None else None
                signature = None
                if wants_signature:
                    run = runnable(platforms or [])
                    if not index_signed and run:
                        got = await asyncio.gather(*(job.signatures(d, entry.keys) for d, _ in run))
                        found.update(zip((d for d, _ in run), got))
                    signature = decide(image, digest=digest, tag=tag, found=found, platforms=platforms,
                                       keys=entry.keys, looked=job.looked())
                attestation = None
                if wants_provenance:
                    attestation = await job.provenance(image, digest=digest, tag=tag, document=document,
                                                       platforms=platforms, index_signed=index_signed,
                                                       found=found[digest], entry=entry)
                return Checks(signature, attestation)
        except TimeoutError:
            error = "timeout: signatures not fetched within the deadline"
        except RegistryError as exc:
            error = f"{exc.reason}: {exc}"
        except reference.ReferenceError as exc:
            error = f"error: invalid image reference '{image}': {exc}"
        return Checks(unavailable(image, error, digest=digest, tag=tag) if wants_signature else None,
                      attestation_unavailable(image, error, digest=digest, tag=tag) if wants_provenance else None)


def attestation_unavailable(image: str, error: str, *, digest: str = "", tag: str | None = None) -> AttestationCheck:
    return AttestationCheck(image=image, status="unavailable", digest=digest, tag=tag,
                            detail="the registry could not be asked for its attestations in time", error=error)


def _entries(document: dict[str, Any]) -> list[tuple[str, str]] | None:
    """(digest, platform) of each entry when `document` is an index, else None."""
    if document.get("mediaType") not in _INDEX_TYPES and not isinstance(document.get("manifests"), list):
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


def buildkit_attestations(document: dict[str, Any]) -> list[tuple[str, str]]:
    """(attestation manifest digest, the platform manifest it is about) of an index's BuildKit attestations."""
    out = []
    for entry in document.get("manifests") or ():
        annotations = entry.get("annotations") if isinstance(entry, dict) else None
        if (isinstance(annotations, dict) and annotations.get(_REFERENCE_TYPE) == "attestation-manifest"
                and isinstance(annotations.get(_REFERENCE_DIGEST), str) and isinstance(entry.get("digest"), str)):
            out.append((entry["digest"], annotations[_REFERENCE_DIGEST]))
    return out


def statement_layers(manifest: dict[str, Any]) -> list[str]:
    """The in-toto layers of an attestation manifest that may hold provenance (SBOMs and the like are skipped)."""
    out = []
    for layer in manifest.get("layers") or ():
        if not isinstance(layer, dict) or layer.get("mediaType") != cosign.IN_TOTO or not isinstance(layer.get("digest"), str):
            continue
        annotations = layer.get("annotations") if isinstance(layer.get("annotations"), dict) else {}
        kind = annotations.get(_PREDICATE_TYPE)
        if kind is None or kind in cosign.SLSA_PREDICATES:
            out.append(layer["digest"])
    return out


class _Job:
    """One image's lookups: its repository, cache key prefix, settings and deadline."""

    def __init__(self, finder: Verifier, ref: Reference, prefix: str, settings: ImagesSettings,
                 deadline: float) -> None:
        self.finder = finder
        self.resolver = finder.resolver
        self.ref = ref
        self.prefix = prefix
        self.settings = settings
        self.deadline = deadline
        self.places: list[str] = []  # where the top digest's signatures were looked for, for messages
        self.top = ""

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
        if digest == self.top:
            self.places.append(where)
        descriptors = [d for d in listed if cosign.is_bundle_manifest(d)][:_MAX_BUNDLES]
        return tuple(await asyncio.gather(*(self._bundle(d["digest"], where) for d in descriptors)))

    async def _referrers(self, digest: str) -> list[dict[str, Any]] | None:
        """The referrers API's entries for `digest`, or None where the registry does not serve the API. What a
        registry answered is remembered for images.tag_ttl, and checks that start while its first answer is awaited
        wait for it, so a burst of checks probes a registry once."""
        registry = f"{self.prefix}\n{reference.registry_host(self.ref)}"
        resolver = self.resolver
        pending = resolver.referrer_probes.get(registry)
        if pending is not None and not self._knows(registry):
            await asyncio.shield(pending)
        if self._lacks(registry):
            # what the registry answered another check holds for this digest too: kept as its answer, so a later run
            # reading the disk cache asks nothing
            self._remember(f"{digest}\nreferrers", None)
            return None
        probe: asyncio.Future[None] | None = None
        if not self._knows(registry) and registry not in resolver.referrer_probes:
            probe = resolver.referrer_probes[registry] = asyncio.get_running_loop().create_future()
        try:
            return await self._referrers_of(digest, registry)
        finally:
            if probe is not None:
                probe.set_result(None)
                del resolver.referrer_probes[registry]

    def _fresh(self, since: float | None) -> bool:
        return since is not None and 0 <= self.resolver.clock() - since < self.settings.tag_ttl

    def _lacks(self, registry: str) -> bool:
        return self._fresh(self.resolver.memory.no_referrers.get(registry))

    def _knows(self, registry: str) -> bool:
        return self._lacks(registry) or self._fresh(self.resolver.memory.referrers.get(registry))

    async def _referrers_of(self, digest: str, registry: str) -> list[dict[str, Any]] | None:
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
        self.resolver.memory.referrers.put(registry, self.resolver.clock())
        return _manifests(body)

    async def _legacy(self, digest: str) -> tuple[cosign.Envelope, ...]:
        tag = _tag(digest) + ".sig"
        where = f"tag {_shown(tag)}"
        if digest == self.top:
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

    # -- the index, and provenance --

    async def index(self, digest: str) -> dict[str, Any] | None:
        """The manifest `digest` names as a JSON object (an index or an image manifest), through the object cache
        (the resolver leaves the index it read there)."""
        try:
            document = json.loads(await self._object(digest, cap=0, blob=False))
        except ValueError:
            return None
        return document if isinstance(document, dict) else None

    async def provenance(self, image: str, *, digest: str, tag: str | None, document: dict[str, Any] | None,
                         platforms: list[tuple[str, str]] | None, index_signed: bool,
                         found: Sequence[cosign.Envelope], entry: VerifyEntry) -> AttestationCheck:
        """BuildKit's attestations of the index, and cosign's: first what is in hand (the index's attestation
        manifests and the attestation bundles listed beside the signatures); the legacy `.att` tags and the platform
        manifests' own attestations only when that does not prove every platform."""
        buildkit: dict[str, list[bytes]] = {}
        if document is not None and platforms is not None:
            manifests = buildkit_attestations(document)[:_MAX_PLATFORMS]
            statements = await asyncio.gather(*(self._statements(d) for d, _ in manifests))
            for (_, about), got in zip(manifests, statements, strict=True):
                buildkit.setdefault(about, []).extend(got)
        checked: dict[str, list[cosign.Checked]] = {
            digest: [cosign.check(e, digest=digest, keys=entry.keys, predicate=None) for e in found]}
        check = decide_provenance(image, digest=digest, tag=tag, platforms=platforms, index_signed=index_signed,
                                  found=Found(buildkit, checked), entry=entry)
        if check.status == "verified":
            return check
        more = [digest] + [d for d, _ in runnable(platforms or [])]
        for target in more:
            envelopes = list(await self._attestations(target))
            if target != digest:
                envelopes += await self._bundles(target)
            checked.setdefault(target, []).extend(
                cosign.check(e, digest=target, keys=entry.keys, predicate=None) for e in envelopes)
        return decide_provenance(image, digest=digest, tag=tag, platforms=platforms, index_signed=index_signed,
                                 found=Found(buildkit, checked), entry=entry)

    async def _statements(self, manifest_digest: str) -> list[bytes]:
        try:
            manifest = json.loads(await self._object(manifest_digest, cap=0, blob=False))
        except ValueError:
            return []
        if not isinstance(manifest, dict):
            return []
        out = []
        for layer in statement_layers(manifest)[:_MAX_BUNDLES]:
            try:
                out.append(await self._object(layer, cap=cosign.BUNDLE_CAP, blob=True))
            except RegistryError as exc:
                if exc.reason not in ("not-found", "digest-mismatch", "too-large"):
                    raise
        return out

    async def _attestations(self, digest: str) -> tuple[cosign.Envelope, ...]:
        """cosign's legacy `.att` tag of `digest`: DSSE envelopes, one per layer."""
        tag = _tag(digest) + ".att"
        where = f"tag {_shown(tag)}"
        body = await self._listed(f"{digest}\natt", lambda: self._tagged(tag))
        if body is None:
            return ()
        try:
            manifest = json.loads(body)
        except ValueError:
            return (cosign.unreadable("dsse", where, "an attestation manifest that is not JSON"),)
        layers = cosign.attestation_layers(manifest if isinstance(manifest, dict) else {})[:_MAX_BUNDLES]
        blobs = await asyncio.gather(*(self._object(d, cap=cosign.BUNDLE_CAP, blob=True) for d in layers),
                                     return_exceptions=True)
        return tuple(self._missing(blob, "dsse", where, "envelope") if isinstance(blob, BaseException)
                     else cosign.dsse(blob, where=where) for blob in blobs)

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
        self._remember(what, body)
        return body  # type: ignore[no-any-return]

    def _remember(self, what: str, body: bytes | None) -> None:
        resolver = self.resolver
        key = f"{self.prefix}\n{self.ref.name}@{what}"
        resolver.memory.lists.put(key, ListEntry(body, resolver.clock()))
        if resolver.disk is not None:
            resolver.disk.put_list(key, ListEntry(body, resolver.wall()))

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


