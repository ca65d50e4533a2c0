"""What kubectl shows of a denied Pod whose image lookups failed, on the real API server (issue 22, item 1): none of
the addresses the registry names resolve to, nor why the lookup failed. The audit line keeps the precise reasons.

The images are on loopback (`localhost:5000`), private (`10.1.2.3`) and link-local (`169.254.169.254`) addresses,
which the webhook's address guard refuses before connecting, and on a name that does not resolve."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.cluster.controlplane import ControlPlane
from tests.cluster.release import Release, installed

pytestmark = pytest.mark.controlplane

NS = "answers"
POLICY = "images:\n  resolve: auto\n  on_error: warn\n"
IMAGES = {
    "pod-a": "localhost:5000/team/app:1.0",
    "pod-b": "10.1.2.3/team/app:1.0",
    "pod-c": "169.254.169.254/team/app:1.0",
    "pod-d": "registry.does-not-resolve.invalid/team/app:1.0",
}
NEVER_SAID = ("127.0.0.1", "10.1.2.3", "169.254.169.254", "localhost", "does-not-resolve", "resolves", "loopback",
              "private", "link-local", "blocked")


@pytest.fixture(scope="module")
def release(control_plane: ControlPlane, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Release]:
    control_plane.kubectl("create", "namespace", NS, check=False)
    control_plane.ensure_default_service_accounts(NS)
    yield from installed(control_plane, tmp_path_factory.mktemp("answers"), {"policy": POLICY})


@pytest.mark.parametrize("pod", sorted(IMAGES))
def test_kubectl_run_shows_no_address_and_no_reason_of_a_failed_lookup(
        control_plane: ControlPlane, release: Release, pod: str) -> None:
    mark = release.mark()
    run = control_plane.kubectl("run", pod, f"--image={IMAGES[pod]}", "-n", NS, check=False)
    said = run.stdout + run.stderr
    assert run.returncode == 1 and "denied the request" in said, said
    assert "[run-as-non-root]" in said and "its image config is unavailable" in said
    assert [word for word in NEVER_SAID if word in said] == []
    assert f"Warning: [image-config-unavailable] container '{pod}' uses an image whose config is unavailable" in said
    (line,) = release.wait_for_audit(lambda a: a["name"] == pod, since=mark)
    (failure,) = line["images"]
    expected = {"pod-a": ("address-guard", "resolves to 127.0.0.1"), "pod-b": ("address-guard", "10.1.2.3"),
                "pod-c": ("address-guard", "169.254.169.254"), "pod-d": ("dns", "does-not-resolve")}
    reason, detail = expected[pod]
    assert failure["reason"] == reason and detail in failure["detail"], failure
