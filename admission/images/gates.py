"""The registry gates of one `images` policy (architecture §5), normalised once, with a fingerprint for cache keys.

The gates are `allowed_registries`, `restrict_to_allowed`, `insecure_registries`, `mirrors`, and the address
check. The first four are settings: their `fingerprint` is part of every cache and in-flight key (the
resolver's tags, configs, failures and in-flight lookups, and the client's tokens), so an answer obtained
under one set of gates is never even looked up under another, and a policy reload needs no flush. The
address check also depends on DNS, which no key can hold: the resolver has the client re-run it
(`RegistryClient.admit`) before any cached answer is used.

The fingerprint covers all the gates, not only those of one reference's registry: a token realm or a
redirect target is named by the registry at fetch time, and whether it may be contacted depends on
`allowed_registries` / `insecure_registries` entries for hosts nobody knows in advance. The price is that
after a reload that changes the gates every image is fetched once more; a reload that changes rules,
exemptions or the other `images` settings keeps every entry. Hand-written: a frozen dataclass and a hash.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass

from admission.reference import registry_identity
from admission.images.settings import ImagesSettings

__all__ = ["Gates", "mirror_host"]


def mirror_host(mirror: str) -> str:
    """The host[:port] a mirror setting names ("https://Mirror.example/" -> "mirror.example")."""
    return mirror.split("://", 1)[-1].rstrip("/").lower()


@dataclass(frozen=True, slots=True)
class Gates:
    """The gate settings as the client applies them: registry identities, folded like references."""

    allowed: frozenset[str]
    insecure: frozenset[str]
    restrict_to_allowed: bool
    mirrors: tuple[tuple[str, tuple[str, ...]], ...]  # (registry identity, mirror hosts in the order tried)
    fingerprint: str  # a short hash of all of the above

    @classmethod
    def of(cls, settings: ImagesSettings) -> Gates:
        allowed = frozenset(registry_identity(h) for h in settings.allowed_registries)
        insecure = frozenset(registry_identity(h) for h in settings.insecure_registries)
        mirrors = tuple(sorted({registry_identity(k): tuple(mirror_host(m) for m in v)
                                for k, v in settings.mirrors.items()}.items()))
        material = json.dumps([sorted(allowed), settings.restrict_to_allowed, sorted(insecure),
                               [[k, list(v)] for k, v in mirrors]], separators=(",", ":"))
        # 64 bits: the keys it goes into number thousands, so a collision is not a practical concern.
        fingerprint = hashlib.sha256(material.encode()).hexdigest()[:16]
        return cls(allowed, insecure, settings.restrict_to_allowed, mirrors, fingerprint)

    def mirrors_of(self, registry: str) -> tuple[str, ...]:
        """The mirror hosts of `registry` (an identity), in the order they are tried; () when it has none."""
        for key, hosts in self.mirrors:
            if key == registry:
                return hosts
        return ()
