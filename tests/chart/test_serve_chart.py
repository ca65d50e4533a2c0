"""The rendered Deployment's container, run for real: the image's ENTRYPOINT with the container's args and env, its
mounts backed by local folders holding what the cluster would put there (the rendered policy ConfigMap, the
rendered self-signed TLS Secret, an empty /tmp), on loopback. It must become ready on its probes and answer corpus
reviews over the chart's own certificate: chart and server agree on flags, settings and files."""

from __future__ import annotations

import base64
import json
import os
import ssl
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.chart.conftest import NAMESPACE, ROOT, Rendered, render
from tests.chart.test_image import _final
from tests.images.registry import free_port
from tests.webhook.conftest import ADMISSION_CORPUS, rules_in
from tests.webhook.test_corpus import EXPECTED

BIN = Path(sys.executable).parent
# The chart's default values, with a policy that resolves no image: this machine reaches no public registry.
POLICY = "# offline test: no registry lookups\nimages:\n  resolve: false\n"


@dataclass
class Pod:
    rendered: Rendered
    root: Path
    port: int
    process: subprocess.Popen[bytes]
    ca: Path

    @property
    def host(self) -> str:
        return f"admission.{NAMESPACE}.svc"

    def client(self) -> httpx.Client:
        context = ssl.create_default_context(cafile=str(self.ca))
        return httpx.Client(base_url=f"https://127.0.0.1:{self.port}", verify=context, timeout=10)

    def get(self, client: httpx.Client, path: str) -> httpx.Response:
        # The certificate names the Service (admission.<ns>.svc), as the API server dials it: verify that name.
        return client.get(path, extensions={"sni_hostname": self.host})

    def post(self, client: httpx.Client, body: bytes) -> httpx.Response:
        return client.post("/validate?timeout=5s", content=body, headers={"Content-Type": "application/json"},
                           extensions={"sni_hostname": self.host})

    def log(self) -> str:
        return (self.root / "stderr.log").read_text()


def _local(value: str, mounts: dict[str, Path]) -> str:
    """A path inside the pod -> the local folder backing its mount."""
    for mount_path, local in sorted(mounts.items(), key=lambda item: -len(item[0])):
        if value == mount_path or value.startswith(mount_path + "/"):
            return str(local) + value[len(mount_path):]
        if "=" in value:
            flag, _, rest = value.partition("=")
            if rest == mount_path or rest.startswith(mount_path + "/"):
                return f"{flag}={local}{rest[len(mount_path):]}"
    return value


def start_pod(rendered: Rendered, root: Path) -> Pod:
    pod_spec = rendered.deployment["spec"]["template"]["spec"]
    container = rendered.server
    volumes = {v["name"]: v for v in pod_spec["volumes"]}
    mounts: dict[str, Path] = {}
    ca = root / "ca.crt"
    for mount in container["volumeMounts"]:
        volume = volumes[mount["name"]]
        folder = root / "volumes" / mount["name"]
        folder.mkdir(parents=True)
        if "configMap" in volume:
            for key, text in rendered.one("ConfigMap", volume["configMap"]["name"])["data"].items():
                (folder / key).write_text(text)
        elif "secret" in volume:
            secret = rendered.one("Secret", volume["secret"]["secretName"])
            for key, b64 in secret["data"].items():
                (folder / key).write_bytes(base64.b64decode(b64))
            ca.write_bytes(base64.b64decode(secret["data"]["ca.crt"]))
        else:
            assert "emptyDir" in volume, volume
        mounts[mount["mountPath"]] = folder
    (entrypoint,) = _final("ENTRYPOINT")
    assert "command" not in container, "the chart relies on the image's ENTRYPOINT"
    port = free_port()
    argv = [str(BIN / entrypoint.value[0]), *(_local(a, mounts) for a in container["args"]),
            "--host=127.0.0.1", f"--port={port}"]  # loopback, and a free port instead of 8443 (last flag wins)
    env = {k: v for k, v in os.environ.items() if not k.startswith("ADMISSION_")}
    env.update({e["name"]: _local(e["value"], mounts) for e in container["env"]})
    env["KUBECONFIG"] = str(root / "no-kubeconfig")  # outside a cluster: the server turns its reads off
    env["TMPDIR"] = str(mounts["/tmp"])
    process = subprocess.Popen(argv, stdout=open(root / "stdout.log", "wb"), stderr=open(root / "stderr.log", "wb"),  # noqa: SIM115
                               env=env, cwd=root)
    return Pod(rendered, root, port, process, ca)


@pytest.fixture(scope="module")
def pod(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Pod]:
    rendered = render({"policy": POLICY})
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


@pytest.mark.parametrize("name", ["07-pod-image-latest-create.json", "10-deployment-runasuser-0-create.json",
                                  "22-deployment-ghcr-pinned-create-fullreview.json",
                                  "17-deployment-update-with-oldobject.json"])
def test_rendered_container_answers_corpus_reviews_as_the_server_tests_expect(pod: Pod, name: str) -> None:
    _probe(pod, pod.rendered.server["readinessProbe"])
    body = (ADMISSION_CORPUS / name).read_bytes()
    with pod.client() as client:
        response = pod.post(client, body)
    assert response.status_code == 200, response.text
    answer = response.json()
    assert answer["apiVersion"] == json.loads(body)["apiVersion"]
    assert answer["response"]["uid"] == json.loads(body)["request"].get("uid", "")
    expected = EXPECTED[name]
    assert answer["response"]["allowed"] is (expected is None)
    if expected is not None:
        assert answer["response"]["status"]["code"] == 403
        assert rules_in(answer["response"]["status"]["message"]) == expected


def test_the_containers_environment_is_valid_server_settings_with_the_charts_values(pod: Pod) -> None:
    """The container's ADMISSION_* variables, read by the server's own Settings model, give the chart's values."""
    from admission.webhook.settings import Settings

    env = {e["name"]: e["value"] for e in pod.rendered.server["env"]}
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


def kubectl_run_review(image: str = "nginx", name: str = "nginx") -> dict[str, Any]:
    """The AdmissionReview the API server sends for `kubectl run NAME --image=IMAGE`: the Pod as kubectl builds it,
    after the API server's defaulting, in namespace default."""
    container = {"name": name, "image": image, "resources": {}, "imagePullPolicy": "Always",
                 "terminationMessagePath": "/dev/termination-log", "terminationMessagePolicy": "File"}
    pod = {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": name, "namespace": "default", "labels": {"run": name}},
           "spec": {"containers": [container], "restartPolicy": "Always", "terminationGracePeriodSeconds": 30,
                    "dnsPolicy": "ClusterFirst", "serviceAccountName": "default", "serviceAccount": "default",
                    "securityContext": {}, "schedulerName": "default-scheduler", "enableServiceLinks": True,
                    "preemptionPolicy": "PreemptLowerPriority", "priority": 0,
                    "tolerations": [{"key": f"node.kubernetes.io/{t}", "operator": "Exists", "effect": "NoExecute",
                                     "tolerationSeconds": 300} for t in ("not-ready", "unreachable")]}}
    gvk = {"group": "", "version": "v1", "kind": "Pod"}
    gvr = {"group": "", "version": "v1", "resource": "pods"}
    return {"apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview", "request": {
        "uid": "7f1b4a1e-5a55-4f3c-9d6c-1f4a1f3c0b2e", "kind": gvk, "resource": gvr, "requestKind": gvk,
        "requestResource": gvr, "name": name, "namespace": "default", "operation": "CREATE",
        "userInfo": {"username": "kubernetes-admin", "groups": ["kubeadm:cluster-admins", "system:authenticated"]},
        "object": pod, "oldObject": None, "dryRun": False,
        "options": {"kind": "CreateOptions", "apiVersion": "meta.k8s.io/v1", "fieldManager": "kubectl-run"}}}


def test_readme_shows_the_real_answer_to_kubectl_run_nginx(pod: Pod) -> None:
    readme = (ROOT / "README.md").read_text()
    block = readme[readme.index("<!-- denial:begin -->"):readme.index("<!-- denial:end -->")]
    _probe(pod, pod.rendered.server["readinessProbe"])
    with pod.client() as client:
        answer = pod.post(client, json.dumps(kubectl_run_review()).encode()).json()["response"]
    assert answer["allowed"] is False and answer["status"]["code"] == 403
    webhook = pod.rendered.webhook["name"]
    # kubectl prints each warning as `Warning: ...`, then the refusal with the webhook's name and the message.
    refusal = (f'Error from server (Forbidden): admission webhook "{webhook}" denied the request: '
               f'{answer["status"]["message"]}')
    lines = block.split("```text\n", 1)[1].split("```", 1)[0].splitlines()
    assert lines[0] == "$ kubectl run nginx --image=nginx"
    assert lines[-1] == refusal, refusal
    assert lines[1:-1] == [f"Warning: {w}" for w in answer.get("warnings", [])], answer.get("warnings")


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
