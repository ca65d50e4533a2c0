"""What the API server does when the webhook cannot answer (failurePolicy), and that a hanging image lookup is still
answered inside the webhook's timeoutSeconds: the API server's own rejection counter for calling errors does not rise."""

from __future__ import annotations

import re
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.cluster.controlplane import ControlPlane
from tests.cluster.release import Release, installed
from tests.cluster.test_webhook_in_cluster import compliant_deployment
from tests.images.faults import Faults, hang

pytestmark = pytest.mark.controlplane

NS = "failure-modes"


def calling_errors(plane: ControlPlane, webhook: str) -> float:
    """apiserver_admission_webhook_rejection_count{error_type="calling_webhook_error"} for our webhook (0 if unset)."""
    total = 0.0
    for line in plane.metrics().splitlines():
        if (line.startswith("apiserver_admission_webhook_rejection_count{") and f'name="{webhook}"' in line
                and 'error_type="calling_webhook_error"' in line):
            total += float(line.rsplit(" ", 1)[1])
    return total


@pytest.fixture()
def hanging_registry() -> Iterator[Faults]:
    faults = Faults().start()
    faults.route("/v2/", hang())
    yield faults
    faults.stop()


@pytest.fixture()
def release(control_plane: ControlPlane, tmp_path: Path, hanging_registry: Faults) -> Iterator[Release]:
    control_plane.kubectl("create", "namespace", NS, check=False)
    control_plane.ensure_default_service_accounts(NS)
    host = hanging_registry.host
    policy = (f"images:\n  resolve: auto\n  on_error: deny\n  allowed_registries: [{host}]\n"
              f"  insecure_registries: [{host}]\n  restrict_to_allowed: true\n")
    yield from installed(control_plane, tmp_path, {"policy": policy})


def test_a_hanging_image_lookup_is_answered_inside_timeout_seconds(
        control_plane: ControlPlane, release: Release, hanging_registry: Faults) -> None:
    webhook = release.rendered.webhook
    before = calling_errors(control_plane, webhook["name"])
    deployment = compliant_deployment("slow", namespace=NS, image=f"{hanging_registry.host}/slow/app:1")
    started = time.monotonic()
    run = control_plane.apply([deployment], check=False)
    elapsed = time.monotonic() - started
    assert run.returncode == 1 and "[image-config-unavailable]" in run.stderr, run.stderr
    assert "denied the request" in run.stderr and "failed calling webhook" not in run.stderr
    assert elapsed < webhook["timeoutSeconds"], f"kubectl apply took {elapsed:.1f} s"
    assert hanging_registry.requests("/v2/"), "the lookup reached the registry and hung there"
    assert calling_errors(control_plane, webhook["name"]) == before


def test_with_the_server_down_fail_refuses_with_the_api_servers_error_and_ignore_admits(
        control_plane: ControlPlane, release: Release) -> None:
    assert release.configuration["webhooks"][0]["failurePolicy"] == "Fail"  # the chart's default
    release.stop_server()
    pod = {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "while-down", "namespace": NS},
           "spec": {"containers": [{"name": "c", "image": "nginx"}]}}
    refused = control_plane.apply([pod], check=False)
    assert refused.returncode == 1
    assert re.search(r'Internal error occurred: failed calling webhook "validate\.admission\.policy"', refused.stderr), \
        refused.stderr
    release.set_webhook(failurePolicy="Ignore")
    deadline = time.monotonic() + 30  # the API server's informer takes the new configuration a moment later
    while (admitted := control_plane.apply([pod], check=False)).returncode != 0 and time.monotonic() < deadline:
        time.sleep(0.2)
    assert admitted.returncode == 0, admitted.stderr
    assert control_plane.kubectl("get", "pod", "while-down", "-n", NS).returncode == 0
