"""The policy file's `images` section as the image client reads it. The policy loader (policy/config.py) fills it;
the image client, cache and gates depend on this module alone, never on the policy file's."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Literal

from admission.findings import Severity


@dataclass(frozen=True, slots=True)
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
