"""Same core, same verdict: the objects stored in a namespace are sent to the chart's webhook (a server-side dry-run
create of each, exactly as stored) and audited with the same policy; for every object the two agree on allowed or
denied, on the rules that deny and warn, and on what the policy's exemptions suppress (an expired one included).
The namespace has a LimitRange, which both count for templates."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.cluster.auditkit import audit, container, drop_namespaces, namespace, pod, stored, workload
from tests.cluster.controlplane import ControlPlane
from tests.cluster.release import Release, installed

pytestmark = pytest.mark.controlplane

VERDICT = "audit-verdict"
POLICY = f"""\
images:
  resolve: false
exemptions:
  - rule: no-host-port
    namespace: {VERDICT}
    name: "edge-*"
    reason: edge proxy terminates TLS on the host
  - rule: no-host-port
    namespace: {VERDICT}
    name: "legacy-*"
    reason: allowed until the migration
    expires: 2020-01-01
"""


def _objects() -> list[dict[str, Any]]:
    no_limits = container()
    del no_limits["resources"]
    no_probes = container()
    del no_probes["readinessProbe"], no_probes["livenessProbe"]
    root = container()
    root["securityContext"]["runAsUser"] = 0
    del root["securityContext"]["runAsNonRoot"]
    host_port = container(ports=[{"containerPort": 8443, "hostPort": 8443}])
    return [
        {"apiVersion": "v1", "kind": "LimitRange", "metadata": {"name": "defaults", "namespace": VERDICT},
         "spec": {"limits": [{"type": "Container", "default": {"cpu": "500m", "memory": "256Mi"}}]}},
        workload("Deployment", "web-ok", VERDICT, replicas=0),
        workload("Deployment", "web-latest", VERDICT, container(image="registry.example.com/web:latest"), replicas=0),
        workload("Deployment", "web-nightly", VERDICT, container(image="registry.example.com/web:nightly"), replicas=0),
        workload("Deployment", "web-defaulted", VERDICT, no_limits, replicas=0),
        workload("StatefulSet", "web-unprobed", VERDICT, no_probes, replicas=0),
        workload("CronJob", "batch-root", VERDICT, root),
        pod("edge-proxy", VERDICT, host_port),
        pod("legacy-proxy", VERDICT, host_port),
        pod("root-pod", VERDICT, root),
        pod("bare-unlimited", VERDICT, no_limits),
    ]


@pytest.fixture(scope="module")
def release(control_plane: ControlPlane, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Release]:
    namespace(control_plane, VERDICT)
    control_plane.apply(_objects())  # stored before the webhook exists, so the denied ones exist to be audited
    yield from installed(control_plane, tmp_path_factory.mktemp("verdict-release"), {"policy": POLICY})
    drop_namespaces(control_plane, VERDICT)


def _as_sent(obj: dict[str, Any]) -> dict[str, Any]:
    """The stored object as a client would create it again: its spec (defaults included) and identity."""
    meta = obj["metadata"]
    keep = {k: meta[k] for k in ("name", "namespace", "labels", "annotations") if k in meta}
    return {"apiVersion": obj["apiVersion"], "kind": obj["kind"], "metadata": keep, "spec": obj["spec"]}


def _webhook_verdict(plane: ControlPlane, release: Release, kind: str, name: str) -> dict[str, Any]:
    mark = release.mark()
    sent = _as_sent(stored(plane, kind, name, VERDICT))
    # Validating admission runs before the store finds the name taken: the webhook judges the CREATE either way.
    run = plane.kubectl("create", "--dry-run=server", "-f", "-", stdin=json.dumps(sent), check=False)
    assert "denied the request" in run.stderr or "AlreadyExists" in run.stderr, run.stderr
    (line,) = release.wait_for_audit(lambda a: a["name"] == name and a["kind"] == kind and a["operation"] == "CREATE",
                                     since=mark)
    return line


def _audit_verdict(report: dict[str, Any], kind: str, name: str) -> dict[str, Any]:
    findings = [f for f in report["findings"] if f["object"]["kind"] == kind and f["object"]["name"] == name]
    return {"allowed": not any(f["severity"] == "deny" and not f["suppressed"] for f in findings),
            "rules": {(f["rule"], f["severity"]) for f in findings if not f["suppressed"]},
            "suppressed": {(f["rule"], f["reason"]) for f in findings if f["suppressed"]}}


def test_the_audit_and_the_webhook_give_each_stored_object_the_same_verdict(
        control_plane: ControlPlane, release: Release, tmp_path: Path) -> None:
    policy = tmp_path / "policy.yaml"
    policy.write_text(POLICY)
    run = audit(control_plane.admin_kubeconfig, "-n", VERDICT, "--policy", str(policy), "--format", "json")
    assert run.returncode == 1, run.stderr
    report = run.json()
    assert report["errors"] == []
    judged = [(o["kind"], o["metadata"]["name"]) for o in _objects() if o["kind"] != "LimitRange"]
    assert report["summary"]["objects"] == len(judged)
    verdicts = {}
    for kind, name in judged:
        line = _webhook_verdict(control_plane, release, kind, name)
        webhook = {"allowed": line["allowed"],
                   "rules": {(r["rule"], r["severity"]) for r in line["rules"]},
                   "suppressed": {(s["rule"], s["reason"]) for s in line["suppressed"]}}
        verdicts[(kind, name)] = webhook
        assert _audit_verdict(report, kind, name) == webhook, (kind, name)
    # The cases are the ones they are meant to be (the comparison above holds for each):
    assert verdicts[("Deployment", "web-ok")] == {"allowed": True, "rules": set(), "suppressed": set()}
    assert verdicts[("Deployment", "web-defaulted")]["allowed"], "the namespace's LimitRange defaults count"
    assert not verdicts[("Deployment", "web-latest")]["allowed"]
    assert ("image-tag-pinned", "deny") in verdicts[("Deployment", "web-nightly")]["rules"], "a tag that names no version"
    assert ("healthcheck", "warn") in verdicts[("StatefulSet", "web-unprobed")]["rules"]
    assert not verdicts[("CronJob", "batch-root")]["allowed"] and not verdicts[("Pod", "root-pod")]["allowed"]
    assert verdicts[("Pod", "edge-proxy")] == {
        "allowed": True, "rules": set(), "suppressed": {("no-host-port", "edge proxy terminates TLS on the host")}}
    assert ("no-host-port", "deny") in verdicts[("Pod", "legacy-proxy")]["rules"], "an expired exemption"
    assert verdicts[("Pod", "bare-unlimited")]["allowed"], "the API server gave the Pod the LimitRange's limits"
