"""image-signature: an image an `images.verify` entry covers carries a valid cosign signature by one of its keys.

The verification itself happens where images are resolved (images/verify/): a rule never fetches. This rule reads
what it found (Container.signatures) and weighs it by the entry: `signature: required` denies, `warn` warns,
`on_unavailable` when the registry could not be asked in time. Its severity cannot be set under `rules:`, so turning
a rule off can never silently drop a required signature.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from typing import Any

from admission import reference
from admission.findings import Proof, Violation
from admission.model import Workload
from admission.policy.rule import rule
from admission.policy.rules.verification import Aspect, judge

OFFLINE = "signature not checked offline: pass --resolve-images"
_SIGN_FIX = ("sign the image by digest with a key the entry lists, e.g. `cosign sign --key cosign.key "
             "{image}@{digest}`; for a multi-platform image sign the index (what the tag points at), which covers "
             "every platform")


@rule("image-signature", severity="deny",
      summary="An image that an images.verify entry covers has a valid cosign signature by one of its keys.",
      applies={"kubernetes": "container images an images.verify entry matches",
               "compose": "service images (not those it builds) and build FROMs an entry matches",
               "dockerfile": "FROM images an entry matches",
               "image": "archives and OCI layouts, by the signatures they carry"},
      severity_from="images.verify")
def image_signature(workload: Workload, params: Mapping[str, Any]) -> Iterator[Violation | Proof]:
    """Check the cosign signatures of every image an `images.verify` entry covers, by digest.

    Why:
        The guide wants every image auditable: built by a traceable process, never by hand. Labels and history can
        be written by anyone who can push; a signature by your release key cannot. The tag resolves to a digest
        (the index for a multi-platform image): a valid signature on it covers every platform, and signatures on
        platform manifests count only when every runnable platform is signed, since a node pulls its own
        platform's manifest. cosign's v3 bundles (OCI referrers or the `sha256-<hex>` tag) and its legacy
        `.sig` signatures are both read. A tag is verified at admission, not at pull: pin the digest (or use
        `admission-cli pin`) so that what runs is what was verified. The severity is the entry's `signature`
        (`required`: deny, `warn`: warning), and `on_unavailable` when the registry cannot be asked in time;
        without resolution the CLI says once per image that it did not check.

    Fix:
        Sign the image by digest with a key the entry lists: `cosign sign --key cosign.key IMAGE@DIGEST` (sign the
        index of a multi-platform image). Check it with `cosign verify --key cosign.pub IMAGE@DIGEST`. Use an image
        your release process signs, or add its publisher's key to the entry.

    Example:
        ```yaml
        images:
          verify:
          - images: ["registry.example.com/team/*"]
            keys: [keys/release.pub]
            signature: required
            on_unavailable: deny
        ```
        ```text
        deploy.yaml:21  deny  image-signature  Deployment shop/api/api  container 'api': image
          'registry.example.com/team/api:1.4.0' has no cosign signature on sha256:9f2c1e0… (looked in OCI
          referrers API, tag sha256-9f2c1e0….sig)
        ```
    """
    yield from judge(workload, params.get("verify") or (), SIGNATURE)


def _repository(image: str) -> str:
    """The reference without tag or digest, as `cosign sign NAME@DIGEST` takes it."""
    try:
        return reference.parse_normalized_named(image).name
    except reference.ReferenceError:
        return image.split("@")[0]


SIGNATURE = Aspect(
    level="signature", noun="signatures", offline=OFFLINE,
    offline_fix="run `admission-cli check --resolve-images` (the webhook and the audit always resolve), or check an "
                "archive made with `cosign save`",
    unavailable_fix="check that the registry answers within the deadline and that the credentials can read its "
                    "signatures; images.verify on_unavailable decides what an unanswered check means",
    checks=lambda container: container.signatures,
    verified=lambda check: f"signature verified: {check.detail}",
    fix=lambda ref, check: _SIGN_FIX.format(image=_repository(ref.value), digest=check.digest or "<digest>"))
