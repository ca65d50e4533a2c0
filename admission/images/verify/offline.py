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
from admission.images.verify.provenance import Found
from admission.images.verify.provenance import decide as decide_provenance
from admission.model import AttestationCheck, Carried, SignatureCheck, Workload, signed_references

__all__ = ["verify_carried"]

_DROPPED = "; `docker save` and `skopeo copy` drop signatures, `cosign save --dir` keeps them"


def verify_carried(workloads: Sequence[Workload], entries: tuple[VerifyEntry, ...]) -> list[Workload]:
    """Archive images with the SignatureCheck and AttestationCheck of what they carry, where an `images.verify`
    entry asks for them."""
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
                signature = _check(refs[0].value, carried, entries)
                attestation = _attestation(refs[0].value, carried, entries)
                container = replace(container, signatures=(signature,) if signature else (),
                                    attestations=(attestation,) if attestation else ())
            containers.append(container)
        out.append(replace(workload, containers=tuple(containers)))
    return out


def _candidates(image: str, carried: Carried, entries: tuple[VerifyEntry, ...], what: str) -> list[VerifyEntry]:
    """The entries that weigh on `what` (signature, provenance): the image's own, or for an unnamed image every
    entry that asks for it, strictest first."""
    if carried.image is not None:
        entry = entry_for(entries, image)
        return [entry] if entry is not None and getattr(entry, what) != "off" else []
    chosen = [e for e in entries if getattr(e, what) != "off"]
    first = strictest(tuple(chosen), what)
    return [first, *(e for e in chosen if e is not first)] if first is not None else chosen


def _envelopes(carried: Carried) -> dict[str, list[cosign.Envelope]]:
    found: dict[str, list[cosign.Envelope]] = {}
    for item in carried.signatures:
        if item.format == "bundle":
            envelope = cosign.bundle(item.data, where=carried.kind)
        elif item.format == "dsse":
            envelope = cosign.dsse(item.data, where=carried.kind)
        else:
            envelope = cosign.legacy(item.data, item.signature, where=carried.kind)
        found.setdefault(item.subject, []).append(envelope)
    return found


def _check(image: str, carried: Carried, entries: tuple[VerifyEntry, ...]) -> SignatureCheck | None:
    chosen = _candidates(image, carried, entries, "signature")
    if not chosen:
        return None
    if carried.digest is None:
        return SignatureCheck(image=image, status="unsigned", digest="",
                              detail=f"the {carried.kind} does not record the image's manifest digest, so no "
                                     f"signature can name it{_DROPPED}")
    found = _envelopes(carried)
    decided = [decide(image, digest=carried.digest, tag=None, found=found, platforms=carried.platforms, keys=e.keys,
                      looked=f"the {carried.kind}") for e in chosen]
    check = next((d for d in decided if d.status == "verified"), decided[0])
    if check.status == "unsigned" and not carried.signatures:
        check = replace(check, detail=check.detail + _DROPPED)
    return check


def _attestation(image: str, carried: Carried, entries: tuple[VerifyEntry, ...]) -> AttestationCheck | None:
    chosen = _candidates(image, carried, entries, "provenance")
    if not chosen:
        return None
    if carried.digest is None:
        return AttestationCheck(image=image, status="missing", digest="",
                                detail=f"the {carried.kind} does not record the image's manifest digest, so no "
                                       "provenance can name it; BuildKit's `--output type=oci` keeps it")
    found = _envelopes(carried)
    buildkit: dict[str, list[bytes]] = {}
    for attestation in carried.attestations:
        buildkit.setdefault(attestation.about, []).append(attestation.statement)
    decided = []
    for entry in chosen:
        index_signed = cosign.first_valid(found.get(carried.digest, ()), digest=carried.digest,
                                          keys=entry.keys)[0] is not None
        checked = {subject: [cosign.check(e, digest=subject, keys=entry.keys, predicate=None) for e in envelopes]
                   for subject, envelopes in found.items()}
        decided.append(decide_provenance(image, digest=carried.digest, tag=None, platforms=carried.platforms,
                                         index_signed=index_signed, found=Found(buildkit, checked), entry=entry))
    return next((d for d in decided if d.status == "verified"), decided[0])
