"""Issue 27 on the real control plane: the chart's webhook receives Services (no-host-port refuses NodePorts and
externalIPs; an UPDATE that leaves the type, node ports and externalIPs alone is not judged), and
service-account-token reads what the ServiceAccount admission plugin did (its `kube-api-access-*` volume) for Pods
and the ServiceAccount itself for pod templates (the chart grants `serviceaccounts get`). The audit lists Services.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.cluster.auditkit import audit, namespace
from tests.cluster.controlplane import ControlPlane
from tests.cluster.release import Release, installed
from tests.cluster.test_webhook_in_cluster import compliant_deployment

pytestmark = pytest.mark.controlplane

NS = "issue-27"
POLICY = "images:\n  resolve: false\nrules:\n  service-account-token: deny\n"


def service(name: str, **spec: Any) -> dict[str, Any]:
    return {"apiVersion": "v1", "kind": "Service", "metadata": {"name": name, "namespace": NS},
            "spec": {"selector": {"app": name}, "ports": [{"port": 80, "targetPort": 8080}], **spec}}


def quiet(obj: dict[str, Any]) -> dict[str, Any]:
    """A compliant Deployment's pod template that says no token (the policy turns service-account-token on)."""
    obj["spec"]["template"]["spec"]["automountServiceAccountToken"] = False
    return obj


@pytest.fixture(scope="module")
def release(control_plane: ControlPlane, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Release]:
    namespace(control_plane, NS)
    # Before the webhook: a NodePort Service from the days before the policy, which later label changes must not break.
    control_plane.apply([service("legacy", type="NodePort",
                                 ports=[{"port": 80, "targetPort": 8080, "nodePort": 30080}])])
    control_plane.apply([{"apiVersion": "v1", "kind": "ServiceAccount", "metadata": {"name": "no-api", "namespace": NS},
                          "automountServiceAccountToken": False}])
    # And a Deployment from then that leaves its token to the default ServiceAccount: the audit finds it.
    control_plane.apply([compliant_deployment("old-chatty", namespace=NS, replicas=0)])
    yield from installed(control_plane, tmp_path_factory.mktemp("issue-27"), {"policy": POLICY})


# --- Services --------------------------------------------------------------------------------------------------

def test_a_node_port_service_is_refused_naming_its_node_port(control_plane: ControlPlane, release: Release) -> None:
    mark = release.mark()
    run = control_plane.apply([service("exposed", type="NodePort",
                                       ports=[{"port": 80, "targetPort": 8080, "nodePort": 30090}])], check=False)
    assert run.returncode == 1
    assert "[no-host-port] Service 'exposed' is of type NodePort: nodePort 30090 (port 80/TCP) is open on every " \
           "node" in run.stderr, run.stderr
    (line,) = [a for a in release.audit_since(mark) if a["name"] == "exposed"]
    assert line["kind"] == "Service" and line["allowed"] is False and line["code"] == 403
    assert control_plane.kubectl("get", "service", "exposed", "-n", NS, check=False).returncode == 1


def test_cluster_ip_and_load_balancer_services_are_admitted(control_plane: ControlPlane, release: Release) -> None:
    mark = release.mark()
    control_plane.apply([service("internal"), service("balanced", type="LoadBalancer")])
    lines = {a["name"]: a for a in release.audit_since(mark) if a["kind"] == "Service"}
    assert lines["internal"]["result"] == "allowed" and lines["balanced"]["result"] == "allowed", lines
    # The API server allocated the balancer's node ports; the policy's way in is the balancer all the same.
    stored = json.loads(control_plane.kubectl("get", "service", "balanced", "-n", NS, "-o", "json").stdout)
    assert stored["spec"]["ports"][0]["nodePort"] >= 30000


def test_relabelling_a_node_port_service_from_before_the_webhook_is_allowed_unjudged(
        control_plane: ControlPlane, release: Release) -> None:
    mark = release.mark()
    control_plane.kubectl("label", "service", "legacy", "-n", NS, "team=web")
    (line,) = [a for a in release.audit_since(mark) if a["name"] == "legacy"]
    assert line["operation"] == "UPDATE" and line["allowed"] and line["result"] == "skipped", line
    assert "type, node ports and externalIPs are unchanged" in line["skipped"]


def test_adding_external_ips_to_a_service_is_refused(control_plane: ControlPlane, release: Release) -> None:
    control_plane.apply([service("captures")])
    run = control_plane.kubectl("patch", "service", "captures", "-n", NS, "--type=merge",
                                "-p", json.dumps({"spec": {"externalIPs": ["203.0.113.10"]}}), check=False)
    assert run.returncode == 1
    assert "[no-host-port] Service 'captures' sets externalIPs 203.0.113.10" in run.stderr
    assert "CVE-2020-8554" in run.stderr


def test_the_audit_lists_services_and_reports_the_node_port_one(control_plane: ControlPlane, release: Release) -> None:
    run = audit(control_plane.admin_kubeconfig, "--namespace", NS, "--format", "json")
    report = run.json()
    services = {(f["object"]["kind"], f["object"]["name"]) for f in report["findings"]
                if f["rule"] == "no-host-port"}
    assert services == {("Service", "legacy")}, report["findings"]
    junit = audit(control_plane.admin_kubeconfig, "--namespace", NS, "--format", "junit")
    listed = junit.objects()
    assert {("Service", NS, "legacy"), ("Service", NS, "internal"), ("Service", NS, "balanced")} <= set(listed)


# --- service-account-token ------------------------------------------------------------------------------------

def _pod(name: str, account: str | None = None, **spec: Any) -> dict[str, Any]:
    template = compliant_deployment(name, namespace=NS)["spec"]["template"]
    # a liveness check of its own, so that the Pod passes every rule and its answer is "allowed", not "warned"
    template["spec"]["containers"][0]["livenessProbe"] = {"httpGet": {"path": "/livez", "port": 8080}}
    body = {**template["spec"], **spec}
    if account:
        body["serviceAccountName"] = account
    return {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": name, "namespace": NS,
                                                            "labels": template["metadata"]["labels"]}, "spec": body}


def test_a_pod_whose_service_account_says_no_token_gets_no_volume_and_is_admitted(
        control_plane: ControlPlane, release: Release) -> None:
    mark = release.mark()
    control_plane.apply([_pod("quiet-pod", "no-api")])
    stored = json.loads(control_plane.kubectl("get", "pod", "quiet-pod", "-n", NS, "-o", "json").stdout)
    assert "automountServiceAccountToken" not in stored["spec"]
    assert not any(v["name"].startswith("kube-api-access-") for v in stored["spec"].get("volumes", []))
    (line,) = [a for a in release.audit_since(mark) if a["name"] == "quiet-pod"]
    assert line["allowed"] and line["result"] == "allowed"


def test_a_default_pod_is_refused_with_the_plugins_volume_as_evidence(
        control_plane: ControlPlane, release: Release) -> None:
    run = control_plane.apply([_pod("chatty-pod")], check=False)
    assert run.returncode == 1
    assert "[service-account-token] Pod 'chatty-pod' mounts the API token of ServiceAccount 'default': the " \
           "ServiceAccount admission plugin added volume kube-api-access-" in run.stderr, run.stderr


def test_a_template_is_judged_by_the_service_account_it_names(control_plane: ControlPlane, release: Release) -> None:
    account = compliant_deployment("uses-no-api", namespace=NS)
    account["spec"]["template"]["spec"]["serviceAccountName"] = "no-api"
    assert control_plane.apply([account], check=False).returncode == 0
    assert control_plane.apply([quiet(compliant_deployment("says-no", namespace=NS))], check=False).returncode == 0
    run = control_plane.apply([compliant_deployment("leaves-it", namespace=NS)], check=False)
    assert run.returncode == 1
    assert "[service-account-token] Deployment 'leaves-it' mounts the API token of ServiceAccount 'default': neither " \
           "it nor its ServiceAccount sets automountServiceAccountToken: false" in run.stderr, run.stderr


def test_the_audit_judges_stored_pods_by_their_volume_and_templates_by_their_service_account(
        control_plane: ControlPlane, release: Release, tmp_path: Path) -> None:
    control_plane.apply([_pod("quiet-pod-2", "no-api")])
    account = compliant_deployment("uses-no-api-2", namespace=NS, replicas=0)
    account["spec"]["template"]["spec"]["serviceAccountName"] = "no-api"
    control_plane.apply([account])
    policy = tmp_path / "policy.yaml"
    policy.write_text(POLICY)
    run = audit(control_plane.admin_kubeconfig, "--namespace", NS, "--format", "json", "--policy", str(policy))
    tokens = {f["object"]["name"]: f["message"] for f in run.json()["findings"] if f["rule"] == "service-account-token"}
    assert set(tokens) == {"old-chatty"}, tokens
    assert "neither it nor its ServiceAccount sets automountServiceAccountToken: false" in tokens["old-chatty"]
