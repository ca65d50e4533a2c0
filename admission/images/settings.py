"""The policy file's `images` section as the image client reads it. The policy loader (policy/config.py) fills it;
the image client, cache and gates depend on this module alone, never on the policy file's."""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import field
from functools import lru_cache
from typing import Literal

from admission import reference
from admission.findings import Severity
from admission.keys import PublicKey
from admission.model import frozen

Level = Literal["required", "warn", "off"]


@frozen
class VerifyEntry:
    """One `images.verify` entry: which images, whose keys, and how much a missing or bad signature weighs."""

    images: tuple[str, ...]  # globs on registry/repository (`*` also crosses `/`, as Kyverno's image globs do)
    keys: tuple[PublicKey, ...]
    signature: Level = "required"
    on_unavailable: Severity = "deny"
    where: str = ""  # file:line of the entry, for messages
    provenance: Level = "off"  # image-attestation: SLSA provenance per runnable platform, signed (issue 24)
    build_types: tuple[str, ...] = ()  # allowed buildType URIs; () any
    builders: tuple[str, ...] = ()  # allowed builder.id values; () any
    sources: tuple[str, ...] = ()  # globs on the source the build names; () any

    def matches(self, name: str) -> bool:
        """`name`: a normalised repository (`registry.example.com/team/api`, `docker.io/library/nginx`)."""
        return any(_glob(pattern).fullmatch(name) for pattern in self.images)

    @property
    def signature_severity(self) -> Severity | None:
        return _SEVERITY.get(self.signature)

    @property
    def provenance_severity(self) -> Severity | None:
        return _SEVERITY.get(self.provenance)

    @property
    def checks_anything(self) -> bool:
        return self.signature != "off" or self.provenance != "off"


_SEVERITY: dict[str, Severity] = {"required": "deny", "warn": "warn"}


@lru_cache(maxsize=256)
def _glob(pattern: str) -> re.Pattern[str]:
    """A glob as users write image patterns: `*` is any run of characters (slashes too), `?` one character."""
    return re.compile("".join(".*" if c == "*" else "." if c == "?" else re.escape(c) for c in pattern))


@frozen
class ImagesSettings:
    resolve: Literal["auto"] | bool = "auto"
    on_error: Severity = "warn"
    platform: str = "linux/amd64"
    allowed_registries: tuple[str, ...] = ()
    restrict_to_allowed: bool = False
    insecure_registries: tuple[str, ...] = ()
    mirrors: Mapping[str, tuple[str, ...]] = field(default_factory=dict)
    tag_ttl: int = 300
    resolve_user_names: bool = False
    verify: tuple[VerifyEntry, ...] = ()



def entry_for(entries: tuple[VerifyEntry, ...], image: str) -> VerifyEntry | None:
    """The `images.verify` entry that applies to `image` (a reference as written): the first whose glob matches its
    registry/repository, unless that entry checks nothing (signature and provenance off). None for an invalid
    reference (image-tag-pinned reports it; there is nothing to verify)."""
    if not entries:
        return None
    try:
        named = reference.parse_normalized_named(image)
    except reference.ReferenceError:
        return None
    name = f"{reference.registry_host(named)}/{named.path}"
    for entry in entries:
        if entry.matches(name):
            return entry if entry.checks_anything else None
    return None


def strictest(entries: tuple[VerifyEntry, ...], what: str = "signature") -> VerifyEntry | None:
    """The entry an image no name can match is held to for `what` (signature or provenance): the first `required`
    one, else the first `warn` one."""
    for level in ("required", "warn"):
        for entry in entries:
            if getattr(entry, what) == level:
                return entry
    return None
