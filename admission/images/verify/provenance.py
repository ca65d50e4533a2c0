"""How an image was built: SLSA provenance (v1 and v0.2) as BuildKit and `cosign attest` write it, read and judged
against an `images.verify` entry. Pure: remote.py and offline.py gather the statements, this decides.

Which provenance counts (architecture §5, image-attestation):
- BuildKit's provenance is an unsigned in-toto statement in an attestation manifest of the image's index, about the
  platform manifest its entry names (`vnd.docker.reference.digest`); its subject must be that manifest. It is trusted
  only through a valid signature on the index that lists it: the index names the attestation manifest by digest. A
  signature on a platform manifest does not cover it, since anyone who can push can wrap a signed manifest and a
  forged attestation in a new index.
- A cosign attestation is signed (DSSE) and counts for the digest its subject names: the index covers every platform.
- Every runnable platform of the index needs its provenance, as with signatures.
- `build_types`, `builders` and `sources` constrain it. The source is the config source URI, else the client's
  `vcs:source`; both are the client's claims, and messages say "the build says".
"""

from __future__ import annotations

import fnmatch
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from admission.images.settings import VerifyEntry
from admission.images.verify.cosign import SLSA_PREDICATES, Checked, statement_subjects
from admission.images.verify.decide import runnable, short
from admission.model import AttestationCheck

BUILDKIT_TYPES = frozenset(("https://github.com/moby/buildkit/blob/master/docs/attestations/slsa-definitions.md",
                            "https://mobyproject.org/buildkit@v1"))
_BUILDKIT_METADATA = "https://mobyproject.org/buildkit@v1#metadata"


@dataclass(frozen=True, slots=True)
class Provenance:
    """What a SLSA provenance predicate says about a build, in both versions' places."""

    version: str  # "SLSA v1", "SLSA v0.2"
    build_type: str
    builder_id: str
    frontend: str | None
    config_uri: str | None
    config_path: str | None
    config_revision: str | None
    vcs_source: str | None
    vcs_revision: str | None
    bases: tuple[tuple[str, bool], ...]  # (image, named by digest) of each image the build pulled

    @property
    def source(self) -> str | None:
        """The source the build names: its config source URI, else the client's vcs:source."""
        return self.config_uri or self.vcs_source


def _text(value: object) -> str | None:
    return value if isinstance(value, str) and value else None


def _get(obj: Any, *keys: str) -> Any:  # noqa: ANN401 - a walk into decoded JSON
    for key in keys:
        obj = obj.get(key) if isinstance(obj, dict) else None
    return obj


def _revision(digest: Any) -> str | None:  # noqa: ANN401
    if isinstance(digest, dict):
        for key in ("sha1", "gitCommit", "sha256"):
            if _text(digest.get(key)):
                return digest[key]
    return None


def _bases(dependencies: Any) -> tuple[tuple[str, bool], ...]:  # noqa: ANN401
    """Images among SLSA resolvedDependencies / materials: `pkg:docker/...` (BuildKit) or `docker-image://...`."""
    out = []
    for dependency in dependencies if isinstance(dependencies, list) else ():
        uri = _text(_get(dependency, "uri"))
        if uri and uri.startswith(("pkg:docker/", "docker-image://")):
            out.append((uri, isinstance(_get(dependency, "digest"), dict) and bool(_get(dependency, "digest"))))
    return tuple(out)


def parse(statement: Mapping[str, Any]) -> Provenance | None:
    """The provenance of an in-toto statement, or None when its predicate is not SLSA provenance."""
    kind = statement.get("predicateType")
    predicate = statement.get("predicate")
    if kind not in SLSA_PREDICATES or not isinstance(predicate, dict):
        return None
    if kind == "https://slsa.dev/provenance/v1":
        definition = predicate.get("buildDefinition") or {}
        external = _get(definition, "externalParameters") or {}
        source = external.get("configSource") if isinstance(external, dict) else None
        vcs = _get(predicate, "runDetails", "metadata", "buildkit_metadata", "vcs")
        return Provenance("SLSA v1", _text(_get(definition, "buildType")) or "",
                          _text(_get(predicate, "runDetails", "builder", "id")) or "",
                          _text(_get(external, "request", "frontend")), _text(_get(source, "uri")),
                          _text(_get(source, "path")), _revision(_get(source, "digest")),
                          _text(_get(vcs, "source")), _text(_get(vcs, "revision")),
                          _bases(_get(definition, "resolvedDependencies")))
    invocation = predicate.get("invocation") or {}
    source = _get(invocation, "configSource")
    vcs = _get(predicate, "metadata", _BUILDKIT_METADATA, "vcs")
    return Provenance("SLSA v0.2", _text(predicate.get("buildType")) or "", _text(_get(predicate, "builder", "id")) or "",
                      _text(_get(invocation, "parameters", "frontend")), _text(_get(source, "uri")),
                      _text(_get(source, "entryPoint")), _revision(_get(source, "digest")),
                      _text(_get(vcs, "source")), _text(_get(vcs, "revision")), _bases(predicate.get("materials")))


def statement_of(data: bytes) -> Mapping[str, Any] | None:
    try:
        statement = json.loads(data)
    except (ValueError, RecursionError):
        return None
    return statement if isinstance(statement, dict) else None


def refusal(provenance: Provenance, entry: VerifyEntry) -> str | None:
    """Why the entry's constraints refuse this provenance, or None."""
    if entry.build_types and provenance.build_type not in entry.build_types:
        return f"its build type {provenance.build_type or '(none)'!r} is not one of build_types"
    if entry.builders and provenance.builder_id not in entry.builders:
        return f"its builder {provenance.builder_id or '(none: BuildKit names one only with builder-id)'!r} is not " \
               "one of builders"
    if entry.sources:
        source = provenance.source
        if source is None:
            return "the build names no source (a local context without vcs:source), and the entry requires one"
        if not any(fnmatch.fnmatchcase(source, glob) for glob in entry.sources):
            return f"the build says its source is {source}, which no glob of sources matches"
    return None


def describe(provenance: Provenance) -> str:
    """"built by BuildKit (SLSA v1) from Dockerfile at https://github.com/acme/api@4f2c1e0, base images by digest"."""
    builder = "BuildKit" if provenance.build_type in BUILDKIT_TYPES else (provenance.build_type or "an unnamed builder")
    parts = [f"built by {builder} ({provenance.version})"]
    what = provenance.config_path or ("a Dockerfile" if provenance.frontend == "dockerfile.v0" else None)
    where = provenance.config_uri or provenance.vcs_source
    revision = provenance.config_revision if provenance.config_uri else provenance.vcs_revision
    if where:
        parts.append(f"from {what or 'its config'} at {where}{'@' + revision[:12] if revision else ''}")
        if not provenance.config_uri:
            parts[-1] += " (the build says its source is that)"
    elif what:
        parts.append(f"from {what} in a local context")
    text = " ".join(parts)
    if provenance.bases:
        text += ", base images by digest" if all(pinned for _, pinned in provenance.bases) else \
            ", not every base image by digest"
    return text


@dataclass(frozen=True, slots=True)
class Found:
    """What was gathered for one image: BuildKit's statements by the platform manifest their index entry names, and
    cosign attestations checked against the entry's keys (valid or not), by the digest they were found for."""

    buildkit: Mapping[str, Sequence[bytes]]
    cosign: Mapping[str, Sequence[Checked]]


def _platform_verdict(platform_digest: str, *, index: str | None, index_signed: bool, found: Found,
                      entry: VerifyEntry) -> tuple[str, str]:
    """(status, detail) for one runnable platform: verified / unsigned / missing / invalid."""
    trusted: list[tuple[Provenance, str]] = []
    for where in ([index] if index else []) + [platform_digest]:
        for checked in found.cosign.get(where, ()):
            if checked.valid and checked.predicate_type in SLSA_PREDICATES and checked.statement is not None:
                provenance = parse(checked.statement)
                if provenance is not None:
                    how = "a cosign attestation on the index" if where == index and where != platform_digest \
                        else "a cosign attestation"
                    trusted.append((provenance, f"provenance signed by {checked.key.label if checked.key else '?'} "
                                                f"({how})"))
    untrusted = 0
    mismatch = ""
    for data in found.buildkit.get(platform_digest, ()):
        statement = statement_of(data)
        provenance = parse(statement) if statement is not None else None
        if provenance is None:
            continue  # another kind of attestation (an SBOM): not provenance
        if platform_digest not in statement_subjects(statement):  # type: ignore[arg-type]
            named = ", ".join(short(s) for s in statement_subjects(statement)[:2]) or "nothing"  # type: ignore[arg-type]
            mismatch = f"BuildKit's provenance for {short(platform_digest)} names {named}, not that manifest"
            continue
        if index_signed:
            trusted.append((provenance, "provenance signed through the index"))
        else:
            untrusted += 1
    refusals = []
    for provenance, how in trusted:
        why = refusal(provenance, entry)
        if why is None:
            return "verified", f"{describe(provenance)}; {how}"
        refusals.append(why)
    if refusals:
        return "invalid", refusals[0]
    if mismatch:
        return "invalid", mismatch
    if untrusted:
        return "unsigned", ("provenance present, unsigned: BuildKit's provenance counts only through a valid "
                            "signature on the index that lists it")
    return "missing", "no SLSA provenance"


def decide(image: str, *, digest: str, tag: str | None, platforms: Sequence[tuple[str, str]] | None,
           index_signed: bool, found: Found, entry: VerifyEntry) -> AttestationCheck:
    """The AttestationCheck of `image`: `digest` is what its reference names (an index when `platforms` is not None),
    `index_signed` whether a valid signature by the entry's keys covers `digest` itself."""
    if platforms is None:
        targets = [(digest, "")]
        index = None
    else:
        targets = runnable(platforms)
        index = digest
        if not targets:
            return AttestationCheck(image=image, status="missing", digest=digest, tag=tag,
                                    detail=f"the index {short(digest)} lists no runnable platform")
    verdicts = [(platform or short(target), *_platform_verdict(target, index=index, index_signed=index_signed,
                                                               found=found, entry=entry))
                for target, platform in targets]
    failing = [(name, status, detail) for name, status, detail in verdicts if status != "verified"]
    if not failing:
        first = verdicts[0][2]
        shown = short(digest)
        scope = f"every runnable platform of {shown} ({len(targets)})" if index else shown
        return AttestationCheck(image=image, status="verified", digest=digest, tag=tag, detail=f"{scope}: {first}")
    rank = {"invalid": 0, "missing": 1, "unsigned": 2}
    name, status, detail = min(failing, key=lambda item: rank[item[1]])
    where = f"{name} of {short(digest)}" if index else short(digest)
    return AttestationCheck(image=image, status=status, digest=digest, tag=tag,  # type: ignore[arg-type]
                            detail=f"{where}: {detail}")
