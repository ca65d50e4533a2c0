"""Signatures an archive or OCI layout carries, verified without a registry: `check` of a `cosign save` layout, an
oci-archive with copied cosign tags, or a `docker save` tarball (which carries none). Pure: the archive adapter has
read the objects (sources/archive.py), this decides with the policy's keys, exactly as for a registry.

An image the archive does not name (`cosign save` writes no names, and bundles carry none) is held to every
`images.verify` entry that is not off: it is verified when one entry's keys verify it, and otherwise reported at the
strictest entry's level. Which entry would apply cannot be known, and an unnamed image must not escape the check.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace

from admission.images.settings import VerifyEntry, entry_for, strictest
from admission.images.verify import cosign
from admission.images.verify.decide import decide
from admission.model import Carried, SignatureCheck, Workload, signed_references

__all__ = ["verify_carried"]

_DROPPED = "; `docker save` and `skopeo copy` drop signatures, `cosign save --dir` keeps them"


def verify_carried(workloads: Sequence[Workload], entries: tuple[VerifyEntry, ...]) -> list[Workload]:
    """Archive images with the SignatureCheck of what they carry, for those an `images.verify` entry covers."""
    if not entries:
        return list(workloads)
    out = []
    for workload in workloads:
        if workload.source != "image":
            out.append(workload)
            continue
        containers = []
        for container in workload.containers:
            carried = container.carried
            refs = signed_references(workload, container)
            if carried is not None and refs:
                check = _check(refs[0].value, carried, entries)
                if check is not None:
                    container = replace(container, signatures=(check,))
            containers.append(container)
        out.append(replace(workload, containers=tuple(containers)))
    return out


def _check(image: str, carried: Carried, entries: tuple[VerifyEntry, ...]) -> SignatureCheck | None:
    chosen = [entry_for(entries, image)] if carried.image is not None else [
        e for e in entries if e.signature != "off"]
    chosen = [e for e in chosen if e is not None]
    if not chosen:
        return None
    if carried.digest is None:
        return SignatureCheck(image=image, status="unsigned", digest="",
                              detail=f"the {carried.kind} does not record the image's manifest digest, so no "
                                     f"signature can name it{_DROPPED}")
    found: dict[str, list[cosign.Envelope]] = {}
    for item in carried.signatures:
        envelope = (cosign.bundle(item.data, where=carried.kind) if item.format == "bundle"
                    else cosign.legacy(item.data, item.signature, where=carried.kind))
        found.setdefault(item.subject, []).append(envelope)
    decided = [decide(image, digest=carried.digest, tag=None, found=found, platforms=carried.platforms, keys=e.keys,
                      looked=f"the {carried.kind}") for e in _ordered(chosen)]
    check = next((d for d in decided if d.status == "verified"), decided[0])
    if check.status == "unsigned" and not carried.signatures:
        check = replace(check, detail=check.detail + _DROPPED)
    return check


def _ordered(entries: list[VerifyEntry]) -> list[VerifyEntry]:
    """The strictest entry first, so that an image no entry verifies is reported as that entry says."""
    first = strictest(tuple(entries))
    return [first, *(e for e in entries if e is not first)] if first is not None else entries
