"""The rendered Deployment's container, run for real: the image's ENTRYPOINT with the container's args and env, its
mounts backed by local folders holding what the cluster would put there (the rendered policy ConfigMap, the
rendered self-signed TLS Secret, an empty /tmp), on loopback. It must become ready on its probes and answer the
project's reviews (tests/fixtures/admission) over the chart's own certificate: chart and server agree on flags,
settings and files."""

from __future__ import annotations

import json
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.chart.conftest import ROOT, render
from tests.chart.pod import BIN, Pod, _local, start_pod
from tests.webhook.conftest import OWNED_REVIEWS, rules_in
from tests.webhook.test_reviews import EXPECTED

# The chart's default values, with a policy that resolves no image: this machine reaches no public registry. The
# self-signed mode: with no API server here, the rendered Secret is the certificate (managed mode, which writes its
# own through the API, is run behind the real API server in tests/cluster/test_certificates.py).
POLICY = "# offline test: no registry lookups\nimages:\n  resolve: false\n"
OFFLINE = {"policy": POLICY, "tls": {"mode": "selfSigned"}}


@pytest.fixture(scope="module")
def pod(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Pod]:
    rendered = render(OFFLINE)
    running = start_pod(rendered, tmp_path_factory.mktemp("pod"))
    try:
        yield running
    finally:
        if running.process.poll() is None:
            running.process.kill()
            running.process.wait(timeout=10)


def _probe(pod: Pod, probe: dict[str, Any], timeout: float = 30.0) -> httpx.Response:
    get = probe["httpGet"]
    assert get["scheme"] == "HTTPS"
    deadline = time.monotonic() + timeout
    with pod.client() as client:
        while True:
            assert pod.process.poll() is None, f"serve exited {pod.process.returncode}: {pod.log()[-3000:]}"
            try:
                response = pod.get(client, get["path"])
                if response.status_code == 200 or time.monotonic() > deadline:
                    return response
            except httpx.TransportError:
                if time.monotonic() > deadline:
                    raise
            time.sleep(0.05)


def test_rendered_container_becomes_ready_on_its_own_probes_over_the_charts_certificate(pod: Pod) -> None:
    container = pod.rendered.server
    assert _probe(pod, container["readinessProbe"]).json() == {"ready": True}
    assert _probe(pod, container["livenessProbe"]).json() == {"status": "ok"}
    assert _probe(pod, container["startupProbe"]).status_code == 200
    log = pod.log()
    assert "policy error" not in log and "invalid setting" not in log
    assert "plain HTTP" not in log, "the chart gives the server its certificate"


@pytest.mark.parametrize("name", ["pod-host-port-root-latest-create.json", "deployment-root-create-v1beta1.json",
                                  "pod-compliant-create.json", "deployment-update-replicas-and-labels.json"])
def test_rendered_container_answers_reviews_as_the_server_tests_expect(pod: Pod, name: str) -> None:
    _probe(pod, pod.rendered.server["readinessProbe"])
    body = (OWNED_REVIEWS / name).read_bytes()
    with pod.client() as client:
        response = pod.post(client, body)
    assert response.status_code == 200, response.text
    answer = response.json()
    assert answer["apiVersion"] == json.loads(body)["apiVersion"]
    assert answer["response"]["uid"] == json.loads(body)["request"].get("uid", "")
    expected = EXPECTED[name]
    assert answer["response"]["allowed"] is expected.allowed
    if not expected.allowed:
        assert answer["response"]["status"]["code"] == 403
        assert rules_in(answer["response"]["status"]["message"]) == expected.deny


def test_the_containers_environment_is_valid_server_settings_with_the_charts_values(pod: Pod) -> None:
    """The container's ADMISSION_* variables, read by the server's own Settings model, give the chart's values."""
    from admission.webhook.settings import Settings

    env = pod.rendered.env()
    settings = Settings(**{k.removeprefix("ADMISSION_").lower(): v for k, v in env.items()})
    assert settings.deadline == 2.0 and settings.drain_delay == 5.0 and settings.grace == 20.0
    assert settings.limitrange_reads is True and settings.pull_secrets is False and settings.workers == 1
    assert settings.max_body == 8 << 20
    assert "no cluster configuration" in pod.log(), \
        "LimitRange reads are on, and the running server says why it cannot do them outside a cluster"


def test_hook_job_passes_the_rendered_policy_and_fails_a_bad_one(tmp_path: Path) -> None:
    good, bad = render({}), render({"policy": "enforcement: deny\nrules:\n  run-as-non-root: {severity: maybe}\n"})
    for label, rendered, code in (("good", good, 0), ("bad", bad, 2)):
        job = rendered.one("Job")["spec"]["template"]["spec"]
        (container,) = job["containers"]
        (mount,) = container["volumeMounts"]
        folder = tmp_path / label
        folder.mkdir()
        for key, text in rendered.one("ConfigMap", job["volumes"][0]["configMap"]["name"])["data"].items():
            (folder / key).write_text(text)
        args = [_local(a, {mount["mountPath"]: folder}) for a in container["args"]]
        run = subprocess.run([str(BIN / "admission-cli"), *args], capture_output=True, text=True, timeout=60,
                             cwd=ROOT)
        assert run.returncode == code, run.stderr
    assert "policy.yaml:3" in run.stderr and "maybe" in run.stderr


# Last: it stops the module's server.
def test_rendered_container_drains_and_exits_zero_within_the_grace_period(pod: Pod) -> None:
    import signal

    _probe(pod, pod.rendered.server["readinessProbe"])
    grace = pod.rendered.deployment["spec"]["template"]["spec"]["terminationGracePeriodSeconds"]
    pause = int(pod.rendered.server["lifecycle"]["preStop"]["exec"]["command"][1])
    started = time.monotonic()
    pod.process.send_signal(signal.SIGTERM)  # the kubelet sends it after the preStop pause
    assert pod.process.wait(timeout=grace) == 0
    assert time.monotonic() - started + pause < grace
