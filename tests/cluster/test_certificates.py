"""Managed TLS (tls.mode=managed) behind the real API server: two `serve` replicas, each its own pod name, make,
share and rotate their certificate through the API, and keep the caBundle of both webhook configurations in step
(the release has `mutation.enabled`).

As in release.py, the rendered clientConfig.service becomes a loopback url: here the url of a round-robin TCP
balancer in front of both replicas (what the Service does in a cluster), and the caBundle is NOT set by the test:
the configuration is applied as rendered, without one, and the server writes it. The replicas run with short
lifetimes (CA 30 s, serving certificate 10 s, propagation 3 s), so a CA rotation happens inside the test while
server-side dry-run creates go through the API server, which dials the webhook with whatever bundle it holds.
"""

from __future__ import annotations

import base64
import copy
import socket
import ssl
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest
from cryptography import x509

from tests.chart.conftest import NAMESPACE, Rendered, render
from tests.chart.pod import Pod, start_pod
from tests.cluster.controlplane import ControlPlane
from tests.cluster.test_failure_modes import calling_errors
from tests.cluster.test_webhook_in_cluster import compliant_deployment

pytestmark = pytest.mark.controlplane

SHORT = {"ADMISSION_TLS_CA_VALIDITY": "30", "ADMISSION_TLS_CERT_VALIDITY": "10",
         "ADMISSION_TLS_PROPAGATION_DELAY": "3", "ADMISSION_TLS_REPORT_INTERVAL": "2"}
POLICY = "images:\n  resolve: false\n"  # this machine reaches no registry


class Balancer:
    """A TCP round-robin forwarder on loopback (the Service's part): each connection goes to the next replica
    that accepts it, so the API server's calls reach both."""

    def __init__(self, ports: list[int]) -> None:
        self.ports = ports
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port = self.listener.getsockname()[1]
        self._next = 0
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while True:
            try:
                client, _ = self.listener.accept()
            except OSError:
                return
            threading.Thread(target=self._connect, args=(client,), daemon=True).start()

    def _connect(self, client: socket.socket) -> None:
        for _ in range(len(self.ports)):
            port = self.ports[self._next % len(self.ports)]
            self._next += 1
            try:
                upstream = socket.create_connection(("127.0.0.1", port), timeout=5)
                break
            except OSError:
                continue
        else:
            client.close()
            return
        upstream.settimeout(None)
        for a, b in ((client, upstream), (upstream, client)):
            threading.Thread(target=self._pipe, args=(a, b), daemon=True).start()

    @staticmethod
    def _pipe(source: socket.socket, sink: socket.socket) -> None:
        try:
            while chunk := source.recv(65536):
                sink.sendall(chunk)
        except OSError:
            pass
        finally:
            for s in (source, sink):
                try:
                    s.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass

    def close(self) -> None:
        self.listener.close()


@dataclass
class Managed:
    plane: ControlPlane
    rendered: Rendered
    root: Path
    pods: dict[str, Pod] = field(default_factory=dict)
    balancer: Balancer | None = None
    configuration: dict[str, Any] = field(default_factory=dict)

    @property
    def webhook_name(self) -> str:
        return self.rendered.one("ValidatingWebhookConfiguration")["metadata"]["name"]

    def env(self, key: str) -> str:
        return self.rendered.env()[key]

    def start(self, name: str, kubeconfig: Path) -> Pod:
        hosts = self.env("ADMISSION_TLS_HOSTS") + ",127.0.0.1"  # the API server dials the loopback url
        folder = self.root / name
        folder.mkdir()
        pod = start_pod(self.rendered, folder, kubeconfig=kubeconfig, name=name,
                        env_extra={**SHORT, "ADMISSION_TLS_HOSTS": hosts})
        self.pods[name] = pod
        return pod

    def readyz(self, pod: Pod) -> httpx.Response | None:
        try:
            return httpx.get(f"https://127.0.0.1:{pod.port}/readyz", verify=False, timeout=5)
        except httpx.TransportError:
            return None

    def wait_ready(self, pod: Pod, timeout: float = 60) -> None:
        deadline = time.monotonic() + timeout
        while (answer := self.readyz(pod)) is None or answer.status_code != 200:
            assert pod.process.poll() is None, f"serve exited {pod.process.returncode}:\n{pod.log()[-3000:]}"
            assert time.monotonic() < deadline, f"not ready: {answer and answer.text}\n{pod.log()[-3000:]}"
            time.sleep(0.2)

    def hook(self, kind: str = "validatingwebhookconfigurations") -> dict[str, Any]:
        return self.plane.get(f"/apis/admissionregistration.k8s.io/v1/{kind}/{self.webhook_name}")

    def bundle(self, kind: str = "validatingwebhookconfigurations") -> list[str]:
        """Fingerprints of the CAs in the live caBundle, in order ([] when there is none)."""
        from admission.webhook.certs import fingerprint, split

        b64 = self.hook(kind)["webhooks"][0]["clientConfig"].get("caBundle")
        return [fingerprint(c)[:12] for c in split(base64.b64decode(b64))] if b64 else []

    def secret(self) -> dict[str, Any]:
        return self.plane.get(f"/api/v1/namespaces/{NAMESPACE}/secrets/{self.env('ADMISSION_TLS_SECRET_NAME')}")

    def lease_holder(self) -> str:
        lease = self.plane.get(f"/apis/coordination.k8s.io/v1/namespaces/{NAMESPACE}/leases/"
                               f"{self.env('ADMISSION_TLS_LEASE')}")
        return lease["spec"].get("holderIdentity") or ""

    def audited(self) -> set[str]:
        import json

        names: set[str] = set()
        for pod in self.pods.values():
            log = pod.root / "stdout.log"
            for line in log.read_text().splitlines() if log.exists() else []:
                if line.startswith("{") and '"audit":"admission"' in line:
                    names.add(json.loads(line)["name"])
        return names

    def stop(self) -> None:
        for pod in self.pods.values():
            if pod.process.poll() is None:
                pod.process.terminate()
        for pod in self.pods.values():
            try:
                pod.process.wait(timeout=30)
            except Exception:  # noqa: BLE001
                pod.process.kill()
        if self.balancer is not None:
            self.balancer.close()


def _admin(plane: ControlPlane) -> httpx.Client:
    pki = plane.root / "pki"
    context = ssl.create_default_context(cafile=str(plane.ca_file))
    context.load_cert_chain(str(pki / "admin.crt"), str(pki / "admin.key"))
    return httpx.Client(base_url=plane.url, verify=context, timeout=15)


def _dry_run(client: httpx.Client, name: str) -> httpx.Response:
    return client.post("/apis/apps/v1/namespaces/default/deployments", params={"dryRun": "All"},
                       json=compliant_deployment(name, namespace="default"))


@pytest.fixture(scope="module")
def managed(control_plane: ControlPlane, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Managed]:
    plane = control_plane
    root = tmp_path_factory.mktemp("managed")
    rendered = render({"policy": POLICY, "replicas": 2, "mutation": {"enabled": True}})
    assert rendered.env()["ADMISSION_TLS_MANAGED"] == "true", "managed is the chart's default"
    release = Managed(plane, rendered, root)
    plane.kubectl("create", "namespace", NAMESPACE, check=False)
    plane.ensure_default_service_accounts("default")
    configurations = ("ValidatingWebhookConfiguration", "MutatingWebhookConfiguration")
    objects = [o for o in rendered.objects if o["kind"] not in configurations]
    plane.apply(objects, "--dry-run=server")
    account = rendered.one("ServiceAccount")
    plane.apply([account, *[o for o in objects if o["kind"] == "ConfigMap"]])
    kubeconfig = plane.token_kubeconfig(root / "sa.kubeconfig", namespace=NAMESPACE,
                                        service_account=account["metadata"]["name"])
    try:
        first = release.start("admission-0", kubeconfig)
        # Without its RBAC the server cannot get a certificate: it listens (a placeholder) but is not ready.
        deadline = time.monotonic() + 30
        while (answer := release.readyz(first)) is None:
            assert time.monotonic() < deadline, first.log()[-3000:]
            time.sleep(0.2)
        time.sleep(2)
        answer = release.readyz(first)
        assert answer is not None and answer.status_code == 503
        assert answer.json()["reason"] == "no certificate yet (managed TLS)"
        plane.apply([o for o in objects if o["kind"] in ("ClusterRole", "ClusterRoleBinding", "Role", "RoleBinding")])
        second = release.start("admission-1", kubeconfig)
        for pod in (first, second):
            release.wait_ready(pod)
        release.balancer = Balancer([first.port, second.port])
        applied = []
        for kind in configurations:
            configuration = copy.deepcopy(rendered.one(kind))
            for hook in configuration["webhooks"]:
                service = hook["clientConfig"].pop("service")
                hook["clientConfig"]["url"] = f"https://127.0.0.1:{release.balancer.port}{service['path']}"
                assert "caBundle" not in hook["clientConfig"]
            applied.append(configuration)
        release.configuration = applied[0]
        plane.apply(applied)
        yield release
    finally:
        release.stop()
        plane.kubectl("delete", "validatingwebhookconfiguration,mutatingwebhookconfiguration", release.webhook_name,
                      "--ignore-not-found")
        plane.kubectl("delete", "-f", "-", "--ignore-not-found", "--wait=true",
                      stdin=__import__("yaml").safe_dump_all([o for o in objects if o["kind"] in (
                          "ServiceAccount", "ClusterRole", "ClusterRoleBinding", "Role", "RoleBinding", "ConfigMap")]))
        plane.kubectl("delete", "secret,lease", "-n", NAMESPACE, rendered.env()["ADMISSION_TLS_SECRET_NAME"],
                      rendered.env()["ADMISSION_TLS_LEASE"], "--ignore-not-found")


def _wait(predicate: Any, *, timeout: float, what: str) -> float:
    started = time.monotonic()
    while not predicate():
        assert time.monotonic() - started < timeout, f"{what}: not within {timeout} s"
        time.sleep(0.1)
    return time.monotonic() - started


def test_the_server_writes_the_ca_bundle_the_chart_leaves_out_and_one_replica_holds_the_lease(
        managed: Managed) -> None:
    took = _wait(lambda: len(managed.bundle()) >= 1, timeout=15, what="the caBundle written")
    assert took < 10
    assert managed.lease_holder() in managed.pods
    secret = managed.secret()
    assert secret["type"] == "kubernetes.io/tls"
    ca = x509.load_pem_x509_certificate(base64.b64decode(secret["data"]["ca.crt"]))
    assert ca.extensions.get_extension_for_class(x509.BasicConstraints).value.ca
    # Both replicas report on the Secret which CA they serve: the writer reads them before dropping an old CA.
    _wait(lambda: {k.rsplit(".", 1)[-1] for k in (managed.secret()["metadata"].get("annotations") or {})
                   if k.startswith("admission.policy/serves-ca.")} >= {"admission-0", "admission-1"},
          timeout=15, what="both replicas' reports")


def test_no_request_fails_through_a_ca_rotation_and_serving_certificate_renewals(
        managed: Managed, control_plane: ControlPlane) -> None:
    _wait(lambda: len(managed.bundle()) >= 1, timeout=15, what="the caBundle written")
    client = _admin(control_plane)
    # Registered: the API server calls us (an informer picks the configuration up a moment after it is stored).
    _wait(lambda: _dry_run(client, "probe-registered").status_code == 201 and "probe-registered" in managed.audited(),
          timeout=30, what="the webhook registered")
    errors_before = calling_errors(control_plane, managed.rendered.webhook["name"])
    first = managed.bundle()
    seen: list[list[str]] = [first]
    served_leaves: set[bytes] = set()
    sent, failed = 0, []
    deadline = time.monotonic() + 75
    # Until the CA has rotated: a second CA joined, and then the first one left.
    while not (len(seen[-1]) == 1 and seen[-1] != first):
        assert time.monotonic() < deadline, f"no complete CA rotation in 75 s; bundles seen: {seen}"
        name = f"rotation-{sent}"
        answer = _dry_run(client, name)
        sent += 1
        if answer.status_code != 201:
            failed.append(f"{name}: {answer.status_code} {answer.text[:300]}")
        bundle = managed.bundle()
        if bundle != seen[-1]:
            seen.append(bundle)
        served_leaves.add(base64.b64decode(managed.secret()["data"]["tls.crt"]))
        time.sleep(0.05)
    print(f"rotation: {sent} requests, {len(failed)} failed; bundles {seen}; {len(served_leaves)} serving "
          f"certificates")
    assert failed == []
    assert seen[0] == first and len(seen) >= 3
    assert any(len(b) == 2 and b[0] == first[0] for b in seen), "the new CA joins before the old one leaves"
    assert seen[-1][0] not in first
    assert len(served_leaves) >= 3, "the serving certificate was renewed (and reissued by the new CA)"
    missing = {f"rotation-{i}" for i in range(sent)} - managed.audited()
    assert not missing, f"answered without the webhook: {sorted(missing)[:5]}"
    assert calling_errors(control_plane, managed.rendered.webhook["name"]) == errors_before


def test_a_removed_ca_bundle_is_restored_within_seconds(managed: Managed, control_plane: ControlPlane) -> None:
    _wait(lambda: len(managed.bundle()) >= 1, timeout=15, what="the caBundle written")
    # What `kubectl apply` or a sync of the rendered manifest does: the configuration without a caBundle.
    control_plane.kubectl("patch", "validatingwebhookconfiguration", managed.webhook_name, "--type=json",
                          "-p", '[{"op": "remove", "path": "/webhooks/0/clientConfig/caBundle"}]')
    took = _wait(lambda: len(managed.bundle()) >= 1, timeout=10, what="the caBundle restored")
    print(f"caBundle restored {took:.2f} s after its removal")
    assert took < 5


def test_the_mutating_configurations_ca_bundle_is_written_and_restored_too_and_its_webhook_answers(
        managed: Managed, control_plane: ControlPlane) -> None:
    mutating = "mutatingwebhookconfigurations"
    _wait(lambda: len(managed.bundle(mutating)) >= 1, timeout=15, what="the mutating caBundle written")
    assert managed.bundle(mutating) == managed.bundle()
    control_plane.kubectl("patch", "mutatingwebhookconfiguration", managed.webhook_name, "--type=json",
                          "-p", '[{"op": "remove", "path": "/webhooks/0/clientConfig/caBundle"}]')
    took = _wait(lambda: len(managed.bundle(mutating)) >= 1, timeout=10, what="the mutating caBundle restored")
    assert took < 5
    client = _admin(control_plane)
    body = {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "mutate-probe", "namespace": "default"},
            "spec": {"containers": [{"name": "c", "image": "registry.example.com/app:1.0"}]}}

    def mutated() -> bool:
        answer = client.post("/api/v1/namespaces/default/pods", params={"dryRun": "All"}, json=body)
        return answer.status_code in (201, 403) and any(
            '"webhook":"mutate"' in line and '"name":"mutate-probe"' in line
            for pod in managed.pods.values() if (pod.root / "stdout.log").exists()
            for line in (pod.root / "stdout.log").read_text().splitlines())

    _wait(mutated, timeout=30, what="/mutate called over the managed certificate")


def test_the_lease_passes_to_the_other_replica_which_then_keeps_the_bundle(
        managed: Managed, control_plane: ControlPlane) -> None:
    holder = managed.lease_holder()
    other = next(name for name in managed.pods if name != holder)
    managed.pods[holder].process.terminate()  # SIGTERM: it gives the Lease up on its way out
    managed.pods[holder].process.wait(timeout=60)
    took = _wait(lambda: managed.lease_holder() == other, timeout=20, what="the Lease taken over")
    print(f"Lease taken over by {other} {took:.2f} s after {holder} stopped")
    control_plane.kubectl("patch", "validatingwebhookconfiguration", managed.webhook_name, "--type=json",
                          "-p", '[{"op": "remove", "path": "/webhooks/0/clientConfig/caBundle"}]')
    _wait(lambda: len(managed.bundle()) >= 1, timeout=10, what="the caBundle restored by the new writer")


# --- helm upgrade from selfSigned to managed ---------------------------------------------------------------------



def _verifies(bundle_b64: str | None, port: int, host: str) -> bool:
    """The TLS handshake the API server makes: trusting exactly the live caBundle, checking the Service's name."""
    if not bundle_b64:
        return False
    context = ssl.create_default_context(cadata=base64.b64decode(bundle_b64).decode())
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=5) as raw, \
                context.wrap_socket(raw, server_hostname=host):
            return True
    except (ssl.SSLError, OSError):
        return False


class HelmCli:
    """The helm v3 CLI built by tests/cluster/build.sh: its upgrade is the client-side 3-way merge."""

    def __init__(self, binary: Path, plane: ControlPlane, namespace: str, root: Path) -> None:
        self.binary, self.plane, self.namespace, self.root = binary, plane, namespace, root

    def _run(self, *args: str, values: dict[str, Any] | None = None) -> None:
        import subprocess

        import yaml

        argv = [str(self.binary), *args, f"--kubeconfig={self.plane.admin_kubeconfig}", "-n", self.namespace]
        if values is not None:
            path = self.root / "values.yaml"
            path.write_text(yaml.safe_dump(values))
            argv += ["-f", str(path)]
        env = {"HOME": str(self.root), "PATH": "/usr/bin:/bin", "HELM_CACHE_HOME": str(self.root / "cache"),
               "HELM_CONFIG_HOME": str(self.root / "config"), "HELM_DATA_HOME": str(self.root / "data")}
        run = subprocess.run(argv, capture_output=True, text=True, timeout=120, env=env, check=False)
        assert run.returncode == 0, f"helm {' '.join(args)}: {run.stderr}{run.stdout}"

    def install(self, chart: Path, name: str, values: dict[str, Any]) -> None:
        self._run("install", name, str(chart), values=values)

    def upgrade(self, chart: Path, name: str, values: dict[str, Any]) -> None:
        self._run("upgrade", name, str(chart), values=values)

    def uninstall(self, name: str) -> None:
        self._run("uninstall", name, "--ignore-not-found")


class HelmSdk:
    """The Helm 4 SDK through helm-python-sdk: the same action code as the helm v4 CLI (server-side apply)."""

    def __init__(self, plane: ControlPlane, namespace: str) -> None:
        import helm_python

        self.config = helm_python.Config(kubeconfig_path=str(plane.admin_kubeconfig), namespace=namespace)
        self.namespace = namespace

    def install(self, chart: Path, name: str, values: dict[str, Any]) -> None:
        import helm_python

        self.config.install(helm_python.Chart.load(str(chart)), name, values, namespace=self.namespace)

    def upgrade(self, chart: Path, name: str, values: dict[str, Any]) -> None:
        import helm_python

        self.config.upgrade(helm_python.Chart.load(str(chart)), name, values, namespace=self.namespace)

    def uninstall(self, name: str) -> None:
        self.config.uninstall(name, ignore_not_found=True)


def _helm_cli() -> Path | None:
    import subprocess

    from tests.cluster.controlplane import BUILD

    try:
        folder = subprocess.run(["bash", str(BUILD), "--print-helm-dir"], capture_output=True, text=True, timeout=60,
                                check=True).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return None
    binary = Path(folder) / "helm"
    return binary if binary.exists() else None


@pytest.mark.parametrize("driver", ["helm-cli-v3", "helm-sdk-v4"])
def test_helm_upgrade_from_self_signed_keeps_the_ca_bundle_and_every_server_trusted(
        control_plane: ControlPlane, tmp_path: Path, driver: str) -> None:
    """A real `helm install` (selfSigned) and `helm upgrade` (managed) against this API server: the helm v3 CLI
    (client-side 3-way merge, built by tests/cluster/build.sh) and the Helm 4 SDK (server-side apply). The API server cannot reach a Service's ClusterIP
    here, so the release's webhook is scoped to nothing (an objectSelector no object carries) and the test makes,
    every 50 ms, the handshake the API server would make with the live caBundle, to the old pod (the selfSigned
    pair Helm made) and to the new one (managed), once each is ready."""
    import os

    from tests.chart.conftest import CHART

    plane = control_plane
    # A release and namespace per driver: without kube-controller-manager a deleted namespace never goes away.
    UPGRADE_RELEASE = "v3" if driver == "helm-cli-v3" else "v4"
    UPGRADE_NS = f"admission-upgrade-{UPGRADE_RELEASE}"
    plane.kubectl("create", "namespace", UPGRADE_NS, check=False)
    helm: HelmCli | HelmSdk
    if driver == "helm-cli-v3":
        binary = _helm_cli()
        if binary is None:
            if os.environ.get("CI") == "true":
                pytest.fail("CI=true and the helm CLI is not built: run `make k8s-bin`", pytrace=False)
            pytest.skip("the helm CLI is not built (tests/cluster/build.sh builds it): run `make k8s-bin`")
        (tmp_path / "helm-home").mkdir()
        helm = HelmCli(binary, plane, UPGRADE_NS, tmp_path / "helm-home")
    else:
        helm = HelmSdk(plane, UPGRADE_NS)
    chart = CHART
    base = {"policy": POLICY, "policyCheck": {"enabled": False}, "failurePolicy": "Ignore",
            "objectSelector": {"matchLabels": {"admission.test/helm-upgrade": "nothing-carries-this"}}}
    full = f"{UPGRADE_RELEASE}-admission"
    host = f"{full}.{UPGRADE_NS}.svc"
    hook_path = f"/apis/admissionregistration.k8s.io/v1/validatingwebhookconfigurations/{full}"

    def live_bundle() -> str | None:
        return plane.get(hook_path)["webhooks"][0]["clientConfig"].get("caBundle")

    pods: list[Pod] = []
    failures: list[str] = []
    checks = 0
    stop = threading.Event()

    def watch_trust() -> None:
        nonlocal checks
        while not stop.is_set():
            # Only ready pods: the Service sends nothing to the others (a managed pod is not ready before it
            # serves the Secret's certificate; until then it presents a placeholder).
            ready = [p for p in pods if p.process.poll() is None and _ready(p)]
            bundle = live_bundle()
            for pod in ready:
                checks += 1
                if not _verifies(bundle, pod.port, host):
                    failures.append(f"{pod.root.name} not trusted by the live caBundle at {time.monotonic():.2f}")
            time.sleep(0.05)

    thread = threading.Thread(target=watch_trust, daemon=True)
    try:
        helm.install(chart, UPGRADE_RELEASE, {**base, "tls": {"mode": "selfSigned"}})
        secret = plane.get(f"/api/v1/namespaces/{UPGRADE_NS}/secrets/{full}-tls")
        self_signed = live_bundle()
        assert self_signed == secret["data"]["ca.crt"]
        old_render = render({**base, "tls": {"mode": "selfSigned"}}, name=UPGRADE_RELEASE, namespace=UPGRADE_NS)
        (tmp_path / "old").mkdir()
        pods.append(start_pod(old_render, tmp_path / "old",
                              tls={k: base64.b64decode(v) for k, v in secret["data"].items()}))
        _wait(lambda: _verifies(self_signed, pods[0].port, host), timeout=30, what="the selfSigned pod serving")
        thread.start()

        helm.upgrade(chart, UPGRADE_RELEASE, {**base, "tls": {"mode": "managed"}})
        assert live_bundle() == self_signed, "Helm's merge kept the caBundle (the chart renders the live one back)"
        assert plane.kubectl("get", "secret", f"{full}-tls", "-n", UPGRADE_NS, check=False).returncode != 0, \
            "Helm removed the selfSigned Secret; the old pod serves what it loaded"

        new_render = render({**base, "tls": {"mode": "managed"}}, name=UPGRADE_RELEASE, namespace=UPGRADE_NS)
        kubeconfig = plane.token_kubeconfig(tmp_path / "sa.kubeconfig", namespace=UPGRADE_NS, service_account=full)
        (tmp_path / "new").mkdir()
        new = start_pod(new_render, tmp_path / "new", kubeconfig=kubeconfig, name=f"{full}-new",
                        env_extra={"ADMISSION_POD_NAMESPACE": UPGRADE_NS, "ADMISSION_TLS_HANDOVER": "8",
                                   "ADMISSION_TLS_PROPAGATION_DELAY": "2"})
        pods.append(new)
        _wait(lambda: _ready(new), timeout=60, what="the managed pod ready")
        _wait(lambda: len(_split(live_bundle())) == 2, timeout=15, what="the managed CA added to the caBundle")
        assert _split(live_bundle())[0] == _split(self_signed)[0], "the selfSigned CA stays while its pod serves"
        # The rollout ends: the old pod goes; after the handover the selfSigned CA leaves the bundle.
        pods[0].process.terminate()
        pods[0].process.wait(timeout=60)
        _wait(lambda: len(_split(live_bundle())) == 1, timeout=30, what="the selfSigned CA dropped after the handover")
        time.sleep(1)
        stop.set()
        thread.join(timeout=10)
        print(f"{driver} upgrade selfSigned -> managed: {checks} handshakes with the live caBundle, {len(failures)} failed")
        assert failures == []
        assert checks > 50
        assert _split(live_bundle()) != _split(self_signed)
        # A later `helm upgrade` renders the server's bundle back: it stays as the server wrote it.
        written = live_bundle()
        helm.upgrade(chart, UPGRADE_RELEASE, {**base, "tls": {"mode": "managed"}, "replicas": 3})
        assert live_bundle() == written
    finally:
        stop.set()
        for pod in pods:
            if pod.process.poll() is None:
                pod.process.kill()
                pod.process.wait(timeout=10)
        try:
            helm.uninstall(UPGRADE_RELEASE)
        finally:
            plane.kubectl("delete", "namespace", UPGRADE_NS, "--ignore-not-found", "--wait=false")


def _ready(pod: Pod) -> bool:
    try:
        return httpx.get(f"https://127.0.0.1:{pod.port}/readyz", verify=False, timeout=5).status_code == 200
    except httpx.TransportError:
        return False


def _split(bundle_b64: str | None) -> list[bytes]:
    from admission.webhook.certs import split

    return split(base64.b64decode(bundle_b64)) if bundle_b64 else []
