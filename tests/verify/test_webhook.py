"""image-signature in the webhook (the app in process, a real registry and cosign): a signed image is admitted, an
unsigned one denied with the message a person reads, a registry that hangs on its signatures gives `on_unavailable`
inside the deadline, and the answer names no address while the audit line keeps the precise error."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import pytest

from admission.webhook.settings import Settings
from tests.images.faults import Faults, hang, serve_image
from tests.verify.signing import Cosign, Key, Registry, push_image
from tests.webhook.conftest import good_container, pod, review, rules_in, running

pytestmark = pytest.mark.anyio


@pytest.fixture()
def anyio_backend() -> str:
    return "asyncio"


def verify_policy(path: Path, host: str, key: Key, *, on_unavailable: str = "deny") -> Path:
    path.write_text(f"images:\n  resolve: auto\n  allowed_registries: ['{host}']\n  insecure_registries: ['{host}']\n"
                    f"  verify:\n  - images: ['{host}/team/*']\n    keys: [{key.public}]\n"
                    f"    on_unavailable: {on_unavailable}\n")
    return path


async def test_a_signed_image_is_admitted_and_an_unsigned_one_denied(
        tmp_path: Path, cosign: Cosign, keys: dict[str, Key], plain: Any, layout: Path) -> None:
    api = Registry(plain.host)
    signed = push_image(layout, plain.host, "team/hook-signed")
    unsigned = push_image(layout, plain.host, "team/hook-unsigned")
    digest = api.digest("team/hook-signed", "1.0")
    cosign.sign(f"{signed}@{digest}", keys["release"])
    policy = verify_policy(tmp_path / "policy.yaml", plain.host, keys["release"])
    async with running(Settings(policy=str(policy))) as hook:
        allowed = await hook.answer(review(pod(containers=[good_container(image=f"{signed}:1.0")])))
        allowed_audit = hook.audit()[-1]
        denied = await hook.answer(review(pod(containers=[good_container(image=f"{unsigned}:1.0")])))
    assert allowed["allowed"] is True
    (entry,) = allowed_audit["signatures"]
    assert entry["status"] == "verified" and entry["digest"] == digest and entry["key"] == str(keys["release"].public)
    assert denied["allowed"] is False
    message = denied["status"]["message"]
    assert rules_in(message) == {"image-signature"}
    assert f"image '{unsigned}:1.0': no cosign signature on sha256:" in message


async def test_a_registry_that_hangs_on_signatures_gives_on_unavailable_inside_the_deadline(
        tmp_path: Path, keys: dict[str, Key], faults: Faults) -> None:
    image = serve_image(faults, "team/slow", "1.0")
    for path in (f"/v2/team/slow/referrers/{image.manifest_digest}",
                 f"/v2/team/slow/manifests/{image.manifest_digest.replace(':', '-')}",
                 f"/v2/team/slow/manifests/{image.manifest_digest.replace(':', '-')}.sig"):
        faults.route(path, hang())
    reference = f"{faults.host}/team/slow:1.0"
    for level in ("deny", "warn"):
        policy = verify_policy(tmp_path / f"{level}.yaml", faults.host, keys["release"], on_unavailable=level)
        async with running(Settings(policy=str(policy), deadline=0.8)) as hook:
            started = time.monotonic()
            got = await hook.answer(review(pod(containers=[good_container(image=reference)])))
            elapsed = time.monotonic() - started
            audit = hook.audit()[-1]
        # inside the deadline: the lookups stop 20 ms before it; 50 ms more for scheduling on a loaded 2-core machine
        assert elapsed < 0.85, f"answered after {elapsed:.3f} s"
        said = got["status"]["message"] if level == "deny" else " ".join(got.get("warnings", []))
        assert got["allowed"] is (level == "warn"), got
        assert "[image-signature]" in said and "signatures could not be checked" in said
        # the answer names no address and no registry words; the audit line keeps the precise error
        assert "127.0.0.1" not in said.replace(reference, "") and "timeout" not in said
        (entry,) = audit["signatures"]
        assert entry["status"] == "unavailable" and "timeout" in entry["error"]
