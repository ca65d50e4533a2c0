"""The chart, installed into the real control plane, with `admission-cli serve` run on loopback behind it.

What the test changes, and why (as envtest does): the API server cannot resolve Service DNS here, and the chart's
self-signed CA key is not kept, so the ValidatingWebhookConfiguration's `clientConfig.service` (and the
MutatingWebhookConfiguration's, with `mutation.enabled`) becomes a loopback `url` and its `caBundle` a test CA that
signs a 127.0.0.1 serving certificate. Everything else is applied as
rendered: rules, selectors, failurePolicy, timeoutSeconds, matchPolicy, sideEffects, admissionReviewVersions, RBAC.
The server runs the rendered container's args and env, as the chart's ServiceAccount (a `kubectl create token`
kubeconfig), so RBAC is exercised exactly as the chart grants it.
"""

from __future__ import annotations

import copy
import json
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import trustme
import yaml

from tests.chart.conftest import NAMESPACE, RELEASE, Rendered, render
from tests.chart.pod import Pod, start_pod
from tests.cluster.controlplane import ControlPlane

# The kinds the chart installs into the cluster (its Deployment, Service, PDB and hook Job describe the pod we run
# on loopback instead; they are still sent to the API server, as a server-side dry run, to prove it accepts them).
APPLIED = ("ServiceAccount", "ClusterRole", "ClusterRoleBinding", "Role", "RoleBinding", "ConfigMap", "Secret")
CONFIGURATIONS = ("ValidatingWebhookConfiguration", "MutatingWebhookConfiguration")  # registered once serve is ready


@dataclass
class Release:
    plane: ControlPlane
    rendered: Rendered
    pod: Pod
    ca: trustme.CA
    configuration: dict[str, Any]
    mutating: dict[str, Any] | None = None  # the MutatingWebhookConfiguration as applied (mutation.enabled)

    @property
    def audit_log(self) -> Path:
        return self.pod.root / "stdout.log"

    def audit(self) -> list[dict[str, Any]]:
        """Every decision the server made so far, one JSON line each (the server's stdout)."""
        lines = self.audit_log.read_text().splitlines() if self.audit_log.exists() else []
        return [json.loads(line) for line in lines if line.startswith("{") and '"audit":"admission"' in line]

    def audit_since(self, mark: int) -> list[dict[str, Any]]:
        return self.audit()[mark:]

    def mark(self) -> int:
        return len(self.audit())

    def wait_for_audit(self, predicate: Any, *, since: int = 0, timeout: float = 30) -> list[dict[str, Any]]:  # noqa: ANN401
        deadline = time.monotonic() + timeout
        while True:
            found = [line for line in self.audit_since(since) if predicate(line)]
            if found or time.monotonic() > deadline:
                return found
            time.sleep(0.2)

    def set_webhook(self, **changes: Any) -> None:  # noqa: ANN401
        """Re-apply the webhook configuration with some fields of its one webhook changed (failurePolicy, ...)."""
        configuration = copy.deepcopy(self.configuration)
        configuration["webhooks"][0].update(changes)
        self.plane.apply([configuration])
        self.configuration = configuration

    def set_mutating_webhook(self, **changes: Any) -> None:  # noqa: ANN401
        """Re-apply the mutating webhook configuration with some fields of its one webhook changed."""
        assert self.mutating is not None, "the release has no mutating webhook (mutation.enabled)"
        configuration = copy.deepcopy(self.mutating)
        configuration["webhooks"][0].update(changes)
        self.plane.apply([configuration])
        self.mutating = configuration

    def stop_server(self) -> None:
        if self.pod.process.poll() is None:
            self.pod.process.terminate()
            self.pod.process.wait(timeout=30)

    def uninstall(self) -> None:
        """Everything the install applied goes, RBAC included, so the next release's grants are its own."""
        self.plane.kubectl("delete", "validatingwebhookconfiguration", self.configuration["metadata"]["name"],
                           "--ignore-not-found", "--wait=true")
        if self.mutating is not None:
            self.plane.kubectl("delete", "mutatingwebhookconfiguration", self.mutating["metadata"]["name"],
                               "--ignore-not-found", "--wait=true")
        applied = [o for o in self.rendered.objects if o["kind"] in APPLIED]
        self.plane.kubectl("delete", "-f", "-", "--ignore-not-found", "--wait=true",
                           stdin=yaml.safe_dump_all(applied))
        if self.pod.process.poll() is None:
            self.pod.process.kill()
            self.pod.process.wait(timeout=10)


def _loopback(configuration: dict[str, Any], *, port: int, ca_pem: bytes) -> dict[str, Any]:
    import base64

    configuration = copy.deepcopy(configuration)
    for hook in configuration["webhooks"]:
        service = hook["clientConfig"].pop("service")
        hook["clientConfig"]["url"] = f"https://127.0.0.1:{port}{service.get('path', '/')}"
        hook["clientConfig"]["caBundle"] = base64.b64encode(ca_pem).decode()
    return configuration


def _wait_ready(pod: Pod, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    with pod.client() as client:
        while True:
            if pod.process.poll() is not None:
                raise RuntimeError(f"serve exited {pod.process.returncode}:\n{pod.log()[-3000:]}")
            try:
                if client.get("/readyz").status_code == 200:
                    return
            except httpx.TransportError:
                pass
            if time.monotonic() > deadline:
                raise RuntimeError(f"serve not ready after {timeout} s:\n{pod.log()[-3000:]}")
            time.sleep(0.1)


def install(plane: ControlPlane, root: Path, values: dict[str, Any]) -> Release:
    """Render the chart with `values`, apply it, run the server as the chart's ServiceAccount, then register the
    webhook (last, so that a failurePolicy Fail webhook is never registered before its server answers).

    The certificate files are this test CA's whatever the values say, so the chart's TLS is pinned to `selfSigned`
    (served from files) unless `values` name a mode; managed TLS, where the server writes its own certificate
    through the API, has its own install in tests/cluster/test_certificates.py."""
    values = {**values, "tls": {"mode": "selfSigned", **values.get("tls", {})}}
    rendered = render(values)
    plane.kubectl("create", "namespace", NAMESPACE, check=False)
    objects = [o for o in rendered.objects if o["kind"] not in CONFIGURATIONS]
    plane.apply(objects, "--dry-run=server")  # every rendered object is valid to this API server
    plane.apply([o for o in objects if o["kind"] in APPLIED])
    account = rendered.one("ServiceAccount")["metadata"]["name"]
    kubeconfig = plane.token_kubeconfig(root / "serviceaccount.kubeconfig", namespace=NAMESPACE,
                                        service_account=account)
    ca = trustme.CA()
    leaf = ca.issue_cert("127.0.0.1")
    tls = {"tls.crt": b"".join(p.bytes() for p in leaf.cert_chain_pems), "tls.key": leaf.private_key_pem.bytes(),
           "ca.crt": ca.cert_pem.bytes()}
    pod = start_pod(rendered, root, kubeconfig=kubeconfig, tls=tls)
    try:
        _wait_ready(pod)
        configuration = _loopback(rendered.one("ValidatingWebhookConfiguration"), port=pod.port,
                                  ca_pem=ca.cert_pem.bytes())
        mutating = _loopback(rendered.one("MutatingWebhookConfiguration"), port=pod.port, ca_pem=ca.cert_pem.bytes()) \
            if rendered.has("MutatingWebhookConfiguration") else None
        plane.apply([configuration, *([mutating] if mutating else [])])
        release = Release(plane, rendered, pod, ca, configuration, mutating)
        _wait_registered(release)
    except BaseException:
        pod.process.kill()
        raise
    return release


def _wait_registered(release: Release, timeout: float = 30) -> None:
    """The API server picks up a webhook configuration from an informer, a moment after it is stored: until a
    dry-run Pod shows up in our audit log (from each webhook registered), requests may still pass unasked."""
    release.plane.ensure_default_service_accounts("default")
    probe = {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "admission-registration-probe",
                                                             "namespace": "default"},
             "spec": {"containers": [{"name": "probe", "image": "nginx"}]}}
    deadline = time.monotonic() + timeout
    wanted = {"validate", "mutate"} if release.mutating is not None else {"validate"}
    while wanted - {a.get("webhook", "validate") for a in release.audit() if a["name"] == probe["metadata"]["name"]}:
        if time.monotonic() > deadline:
            raise RuntimeError(f"the API server did not call the webhook within {timeout} s")
        release.plane.apply([probe], "--dry-run=server", check=False)
        time.sleep(0.2)


def installed(plane: ControlPlane, root: Path, values: dict[str, Any]) -> Iterator[Release]:
    """A fixture body: install, yield, uninstall (the webhook configuration goes, so later tests are not gated)."""
    release = install(plane, root, values)
    try:
        yield release
    finally:
        release.uninstall()


__all__ = ["NAMESPACE", "RELEASE", "Release", "install", "installed"]
