"""What image-signature and image-attestation share: which references an `images.verify` entry weighs, and how a
check's outcome becomes a finding (verified: a Proof; not checked offline: one warning; unavailable:
`on_unavailable`; failed: the entry's level). Each rule says only what it checks and how to fix it."""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass

from admission.findings import Proof, Severity, Violation
from admission.images.settings import VerifyEntry, entry_for, strictest
from admission.model import AttestationCheck, Container, Located, SignatureCheck, Workload, signed_references
from admission.policy.rules.common import container_field, repository, subject

Check = SignatureCheck | AttestationCheck


@dataclass(frozen=True, slots=True)
class Aspect:
    """One thing an entry can ask: `level` names the entry's field (signature, provenance)."""

    level: str
    noun: str  # "signatures", "provenance": what could not be checked
    offline: str  # the one warning a run without resolution gives
    offline_fix: str
    unavailable_fix: str
    checks: Callable[[Container], Sequence[Check]]
    verified: Callable[[Check], str]  # what a pass says
    fix: Callable[[Located[str], Check], str]  # how to fix a failure


def judge(workload: Workload, entries: tuple[VerifyEntry, ...], aspect: Aspect) -> Iterator[Violation | Proof]:
    if not entries:
        return
    for container in workload.containers:
        checks = {check.image: check for check in aspect.checks(container)}
        name = container_field(workload, container)
        # An archive image with no name is held to the strictest entry (images/verify/offline.py).
        unnamed = workload.source == "image" and container.carried is not None and container.carried.image is None
        for ref in signed_references(workload, container):
            entry = strictest(entries, aspect.level) if unnamed else entry_for(entries, ref.value)
            if entry is None or getattr(entry, aspect.level) == "off":
                continue
            key = f"{aspect.level} {repository(ref.value)}"
            who = (f"{subject(workload, container)}: image '{ref.value}'" if workload.source != "image"
                   else f"image '{ref.value}'")
            check = checks.get(ref.value)
            if check is None:
                yield Violation(message=f"{who}: {aspect.offline}", origin=ref.origin, value=ref.value,
                                container=name, key=key, severity="warn", remediation=aspect.offline_fix)
            elif check.status == "verified":
                tail = f"; verified for tag {check.tag} at admission, not at pull (pin the digest)" if check.tag else ""
                yield Proof(message=f"{who}: {aspect.verified(check)}{tail}", origin=ref.origin, value=ref.value,
                            container=name)
            elif check.status == "unavailable":
                detail = f"{check.detail} ({check.error})" if check.error else check.detail
                yield Violation(message=f"{who}: {aspect.noun} could not be checked: {detail}", origin=ref.origin,
                                value=ref.value, container=name, key=key, severity=entry.on_unavailable,
                                remediation=aspect.unavailable_fix)
            else:
                severity: Severity | None = entry.signature_severity if aspect.level == "signature" else \
                    entry.provenance_severity
                yield Violation(message=f"{who}: {check.detail}", origin=ref.origin, value=ref.value, container=name,
                                key=key, severity=severity, remediation=aspect.fix(ref, check))
