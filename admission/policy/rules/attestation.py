"""image-attestation: an image an `images.verify` entry asks provenance of proves how it was built, with SLSA
provenance that something signed: BuildKit's own, through a valid signature on the index that lists it, or a cosign
attestation by one of the entry's keys. The checks run where images are resolved (images/verify/provenance.py); this
rule reads what they found and weighs it by the entry. `image-provenance` keeps its label and history heuristics."""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from typing import Any

from admission.findings import Proof, Violation
from admission.model import Workload
from admission.policy.rule import rule
from admission.policy.rules.verification import Aspect, judge

OFFLINE = "provenance not checked offline: pass --resolve-images"
_FIX = ("build with BuildKit and provenance (`docker buildx build --attest type=provenance,mode=max`, or buildctl "
        "`--opt attest:provenance=mode=max`) and sign the index the build pushes (`cosign sign --key cosign.key "
        "IMAGE@INDEX_DIGEST`), or attest it: `cosign attest --type slsaprovenance1 --predicate provenance.json "
        "--key cosign.key IMAGE@DIGEST`")


@rule("image-attestation", severity="deny",
      summary="An image that an images.verify entry asks provenance of has signed SLSA provenance for every platform.",
      applies={"kubernetes": "container images whose images.verify entry sets provenance",
               "compose": "service images (not those it builds) and build FROMs whose entry sets provenance",
               "dockerfile": "FROM images whose entry sets provenance",
               "image": "OCI archives and layouts, by the attestations they carry"},
      severity_from="images.verify")
def image_attestation(workload: Workload, params: Mapping[str, Any]) -> Iterator[Violation | Proof]:
    """Check that every runnable platform of an image has SLSA provenance that something signed.

    Why:
        The guide's images are built by a traceable process, never by `docker commit`, whose images "cannot pass a
        security audit". Labels and history are hints anyone who can push can write (`image-provenance` reads them);
        provenance says which builder built the image from which source. BuildKit writes it unsigned in an
        attestation manifest of the index; it is trusted only through a valid signature on that index, because the
        index names it by digest, while anyone could wrap a signed platform manifest and a forged attestation in a new
        index. A cosign attestation is signed itself and counts for the digest it names (the index covers every
        platform). Every runnable platform needs provenance, as a node runs its own platform's manifest.
        `build_types`, `builders` and `sources` narrow what is accepted; the source is the client's claim. The
        severity is the entry's `provenance` (`required`: deny, `warn`: warning), and `on_unavailable` when the
        registry cannot be asked in time; without resolution the CLI says once per image that it did not check.

    Fix:
        Build with BuildKit and `attest:provenance=mode=max` (buildx: `--attest type=provenance,mode=max`, or
        `--provenance=mode=max`) and sign the index the build pushes with a key the entry lists, or attest the image
        with `cosign attest --type slsaprovenance1`. Check it with `cosign verify-attestation --type slsaprovenance1`.

    Example:
        ```yaml
        images:
          verify:
          - images: ["registry.example.com/team/*"]
            keys: [keys/release.pub]
            signature: required
            provenance: required
            sources: ["https://github.com/acme/*"]
        ```
        ```text
        deploy.yaml:21  deny  image-attestation  Deployment shop/api/api  container 'api': image
          'registry.example.com/team/api:1.4.0': linux/amd64 of sha256:9f2c1e0a4b7d: provenance present, unsigned:
          BuildKit's provenance counts only through a valid signature on the index that lists it
        ```
    """
    yield from judge(workload, params.get("verify") or (), PROVENANCE)


PROVENANCE = Aspect(
    level="provenance", noun="provenance", offline=OFFLINE,
    offline_fix="run `admission-cli check --resolve-images` (the webhook and the audit always resolve), or check an "
                "OCI archive that carries its attestations",
    unavailable_fix="check that the registry answers within the deadline and that the credentials can read its "
                    "attestations; images.verify on_unavailable decides what an unanswered check means",
    checks=lambda container: container.attestations,
    verified=lambda check: f"provenance verified: {check.detail}",
    fix=lambda ref, check: _FIX)
