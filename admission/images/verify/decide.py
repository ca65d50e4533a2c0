"""What must be signed, and whether it is: the signatures found for an image, made into one SignatureCheck. Pure.

- The reference resolves to a digest: the index's for a multi-platform image. A valid signature on that digest covers
  every platform.
- Otherwise signatures on platform manifests count only when every runnable platform of the index has one: a node
  pulls its own platform's manifest, so one unsigned platform is an unsigned image there. Runnable is every entry
  whose platform is not exactly unknown/unknown (an entry with no platform counts); no annotation excludes an entry,
  because containerd picks by platform, not by annotation.
- A reference pinned to one platform's manifest needs that manifest signed.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from admission.images.verify.cosign import FORMAT_NAMES, Checked, Envelope, first_valid
from admission.keys import PublicKey
from admission.model import SignatureCheck


def short(digest: str) -> str:
    algorithm, _, hexdigest = digest.partition(":")
    return f"{algorithm}:{hexdigest[:12]}" if hexdigest else digest


def runnable(entries: Sequence[tuple[str, str]]) -> list[tuple[str, str]]:
    """Index entries (digest, "os/arch[/variant]" or "") a node could run: all but exactly unknown/unknown."""
    return [(digest, platform) for digest, platform in entries if platform != "unknown/unknown"]


def _signed_by(check: Checked) -> str:
    """"cosign.pub (key hint TsHvD+RmRJIM…, cosign bundle v0.3, OCI referrers API)": which key, as cosign's bundles
    name it, in which format, found where."""
    assert check.key is not None
    return (f"{check.key.label} (key hint {check.key.hint[:12]}…, {FORMAT_NAMES[check.envelope.format]}, "
            f"{check.envelope.where})")


def _reason(checks: Sequence[Checked]) -> str:
    """The most telling reason among invalid signatures: one by a listed key that fails beats a stranger's."""
    relevant = [c for c in checks if c.relevant]
    ranked = sorted(relevant, key=lambda c: (c.key is None, "does not list" in c.reason))
    return ranked[0].reason if ranked else ""


def decide(image: str, *, digest: str, tag: str | None, found: Mapping[str, Sequence[Envelope]],
           platforms: Sequence[tuple[str, str]] | None, keys: Sequence[PublicKey], looked: str) -> SignatureCheck:
    """`found`: the signature objects of `digest` and (for an index) of its platform manifests. `platforms`: the
    index's entries (digest, platform), None when `digest` is a single image's manifest. `looked`: where signatures
    were looked for, for the message."""
    valid, checks = first_valid(found.get(digest, ()), digest=digest, keys=keys)
    shown = short(digest)
    if valid is not None:
        what = "the index " + shown if platforms is not None else shown
        return SignatureCheck(image=image, status="verified", digest=digest, tag=tag,
                              detail=f"{what} is signed by {_signed_by(valid)}", key=valid.key.label if valid.key else "",
                              key_hint=valid.key.hint if valid.key else "", format=FORMAT_NAMES[valid.envelope.format],
                              where=valid.envelope.where)
    run = runnable(platforms) if platforms is not None else []
    per_platform: list[tuple[str, str, Checked | None, list[Checked]]] = []
    for platform_digest, platform in run:
        ok, platform_checks = first_valid(found.get(platform_digest, ()), digest=platform_digest, keys=keys)
        per_platform.append((platform_digest, platform or "no platform", ok, platform_checks))
    if run and all(ok is not None for _, _, ok, _ in per_platform):
        first = per_platform[0][2]
        assert first is not None and first.key is not None
        return SignatureCheck(image=image, status="verified", digest=digest, tag=tag,
                              detail=f"every runnable platform of the index {shown} ({len(run)}) is signed, "
                                     f"first by {_signed_by(first)}",
                              key=first.key.label, key_hint=first.key.hint, format=FORMAT_NAMES[first.envelope.format],
                              where=first.envelope.where)
    every = checks + [c for _, _, _, platform_checks in per_platform for c in platform_checks]
    signed = [platform for _, platform, ok, _ in per_platform if ok is not None]
    if signed:
        unsigned = [platform for _, platform, ok, _ in per_platform if ok is None]
        return SignatureCheck(image=image, status="invalid", digest=digest, tag=tag,
                              detail=f"the index {shown} is not signed and signatures cover {len(signed)} of "
                                     f"{len(run)} runnable platforms ({', '.join(unsigned)} not): a node of those "
                                     "platforms would run an unsigned image; sign the index")
    if not any(c.relevant for c in every):
        return SignatureCheck(image=image, status="unsigned", digest=digest, tag=tag,
                              detail=f"no cosign signature on {shown} (looked in {looked})")
    return SignatureCheck(image=image, status="invalid", digest=digest, tag=tag,
                          detail=f"no valid signature on {shown}: {_reason(every)}")
