"""Registry documents, pure: media types, digests, the platform pick from an index, and the image config.

No I/O here: remote.py fetches, this module reads what was fetched (and archive readers may reuse it).
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from typing import Any

from admission.errors import RegistryError
from admission.reference import validate_digest
from admission.model import HistoryEntry, ImageConfig

__all__ = [
    "ACCEPT_MANIFESTS",
    "CONFIG_CAP",
    "MANIFEST_CAP",
    "index_entries",
    "json_object",
    "media_type_of",
    "parse_config",
    "pick_platform",
    "size_words",
    "valid_digest",
    "verify",
]

MANIFEST_CAP = 4 << 20
CONFIG_CAP = 8 << 20
MAX_INDEX_DEPTH = 2  # an index may point at an index (rare); more is a loop or an attack
_ARM_OLDER = {"v8": ("v7", "v6", "v5"), "v7": ("v6", "v5"), "v6": ("v5",)}  # what an arm CPU also runs, best first

OCI_INDEX = "application/vnd.oci.image.index.v1+json"
DOCKER_LIST = "application/vnd.docker.distribution.manifest.list.v2+json"
OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
DOCKER_MANIFEST = "application/vnd.docker.distribution.manifest.v2+json"
INDEX_TYPES = frozenset({OCI_INDEX, DOCKER_LIST})
MANIFEST_TYPES = frozenset({OCI_MANIFEST, DOCKER_MANIFEST})
SCHEMA1_TYPES = frozenset({"application/vnd.docker.distribution.manifest.v1+json",
                           "application/vnd.docker.distribution.manifest.v1+prettyjws"})
IMAGE_CONFIG_TYPES = frozenset({"application/vnd.oci.image.config.v1+json",
                                "application/vnd.docker.container.image.v1+json"})
ACCEPT_MANIFESTS = f"{OCI_INDEX}, {DOCKER_LIST}, {OCI_MANIFEST}, {DOCKER_MANIFEST}"
HASHES = {"sha256": hashlib.sha256, "sha384": hashlib.sha384, "sha512": hashlib.sha512}


def size_words(cap: int) -> str:
    return f"{cap >> 20} MiB" if cap >= 1 << 20 and cap % (1 << 20) == 0 else f"{cap} bytes"


def valid_digest(digest: str) -> bool:
    try:
        validate_digest(digest)
    except ValueError:
        return False
    return digest.split(":", 1)[0] in HASHES


def verify(body: bytes, digest: str, what: str) -> None:
    algorithm, _, expected = digest.partition(":")
    hasher = HASHES.get(algorithm)
    if hasher is None:
        raise RegistryError(f"{what}: digest algorithm {algorithm} is not supported", reason="error")
    actual = hasher(body).hexdigest()
    if actual != expected:
        raise RegistryError(f"{what}, but its content hashes to {algorithm}:{actual}", reason="digest-mismatch")


def json_object(body: bytes, what: str) -> dict[str, Any]:
    try:
        document = json.loads(body)
    except (ValueError, UnicodeDecodeError):
        raise RegistryError(f"{what} is not valid JSON", reason="error") from None
    except RecursionError:
        raise RegistryError(f"{what} nests too deeply to be a manifest or config", reason="error") from None
    if not isinstance(document, dict):
        raise RegistryError(f"{what} is not a JSON object", reason="error")
    return document


def media_type_of(document: Mapping[str, Any], content_type: str) -> str:
    declared = document.get("mediaType")
    if isinstance(declared, str) and declared:
        return declared
    header = content_type.split(";", 1)[0].strip().lower()
    if header in INDEX_TYPES | MANIFEST_TYPES | SCHEMA1_TYPES:
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


def index_entries(index: Mapping[str, Any]) -> tuple[tuple[str, str], ...]:
    """(digest, "os/arch[/variant]") of each well-formed entry of an index, in its order (the platform as containerd
    normalises it; "" for an entry without one, such as an attestation manifest)."""
    manifests = index.get("manifests")
    entries: list[tuple[str, str]] = []
    for entry in manifests if isinstance(manifests, list) else ():
        if not isinstance(entry, dict) or not isinstance(entry.get("digest"), str) or not valid_digest(entry["digest"]):
            continue
        spec: dict[str, Any] = entry["platform"] if isinstance(entry.get("platform"), dict) else {}
        os_name = str(spec.get("os", "")).lower()
        arch, variant = _normal_arch(str(spec.get("architecture", "")).lower(), str(spec.get("variant", "")).lower())
        entries.append((entry["digest"], "/".join(p for p in (os_name, arch, variant) if p)))
    return tuple(entries)


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
    if not valid_digest(chosen["digest"]):
        raise RegistryError(f"{subject}: the {platform} entry has an invalid digest", reason="error")
    return chosen


def parse_config(blob: bytes, *, reference: str, digest: str | None, config_digest: str | None,
                 what: str = "image config") -> ImageConfig:
    """An OCI / Docker image config as the model's ImageConfig. Wrongly typed fields read as absent."""
    document = json_object(blob, what)
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

