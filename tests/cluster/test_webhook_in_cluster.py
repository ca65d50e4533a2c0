"""The chart's webhook in a real control plane, driven through the real kubectl: what the API server sends us, whether
it accepts our answers, and what a user sees. Every claim about what reached the webhook is read from its audit log.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.chart.conftest import NAMESPACE, ROOT
from tests.cluster.controlplane import ControlPlane
from tests.cluster.release import Release, installed

pytestmark = pytest.mark.controlplane

EXCLUDED = "excluded-team"  # the values' excludedNamespaces
TEAM = "team-a"
# The transcript of docs/install.md is `kubectl run` with image lookups off: this machine reaches no public registry.
VALUES = {"policy": "images:\n  resolve: false\n", "excludedNamespaces": [EXCLUDED]}


def compliant_deployment(name: str, *, namespace: str = TEAM, image: str = "registry.example.com/web:1.4.2",
                         replicas: int = 1) -> dict[str, Any]:
    """A Deployment that passes every deny rule of the default policy."""
    container = {
        "name": "web", "image": image,
        "securityContext": {"runAsNonRoot": True, "runAsUser": 10001, "allowPrivilegeEscalation": False,
                            "capabilities": {"drop": ["ALL"]}, "readOnlyRootFilesystem": True},
        "resources": {"requests": {"cpu": "100m", "memory": "64Mi"}, "limits": {"cpu": "500m", "memory": "128Mi"}},
        "readinessProbe": {"httpGet": {"path": "/healthz", "port": 8080}},
        "livenessProbe": {"httpGet": {"path": "/healthz", "port": 8080}},
        "ports": [{"containerPort": 8080}],
    }
    return {"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": name, "namespace": namespace},
            "spec": {"replicas": replicas, "selector": {"matchLabels": {"app": name}},
                     "template": {"metadata": {"labels": {"app": name}},
                                  "spec": {"securityContext": {"seccompProfile": {"type": "RuntimeDefault"}},
                                           "containers": [container]}}}}


@pytest.fixture(scope="module")
def release(control_plane: ControlPlane, tmp_path_factory: pytest.TempPathFactory,
            request: pytest.FixtureRequest) -> Iterator[Release]:
    for namespace in (TEAM, EXCLUDED):
        control_plane.kubectl("create", "namespace", namespace, check=False)
    control_plane.ensure_default_service_accounts("default", TEAM, EXCLUDED)
    yield from installed(control_plane, tmp_path_factory.mktemp("release"), VALUES)


def test_the_api_server_accepts_every_rendered_object_and_keeps_the_webhook_as_rendered(
        control_plane: ControlPlane, release: Release) -> None:
    stored = json.loads(control_plane.kubectl("get", "validatingwebhookconfiguration",
                                              release.configuration["metadata"]["name"], "-o", "json").stdout)
    (hook,) = stored["webhooks"]
    rendered = release.rendered.webhook
    for key in ("name", "rules", "namespaceSelector", "failurePolicy", "timeoutSeconds", "matchPolicy",
                "sideEffects", "admissionReviewVersions"):
        assert hook[key] == rendered[key], key
    assert hook["clientConfig"]["url"] == f"https://127.0.0.1:{release.pod.port}/validate"
    for kind in ("ServiceAccount", "Role", "RoleBinding", "ClusterRole", "ClusterRoleBinding", "ConfigMap"):
        for obj in release.rendered.all(kind):
            namespace = ["-n", obj["metadata"]["namespace"]] if "namespace" in obj["metadata"] else []
            control_plane.kubectl("get", kind.lower(), obj["metadata"]["name"], *namespace)


def test_kubectl_run_nginx_is_refused_and_kubectl_prints_our_message_as_the_readme_shows(
        control_plane: ControlPlane, release: Release) -> None:
    mark = release.mark()
    run = control_plane.kubectl("run", "nginx", "--image=nginx", "-n", "default", check=False)
    assert run.returncode == 1
    webhook = release.rendered.webhook["name"]
    assert f'Error from server (Forbidden): admission webhook "{webhook}" denied the request: ' in run.stderr
    assert "[image-tag-pinned]" in run.stderr and "[run-as-non-root]" in run.stderr
    (line,) = [a for a in release.audit_since(mark) if a["name"] == "nginx"]
    assert line["kind"] == "Pod" and line["allowed"] is False and line["code"] == 403
    # The ServiceAccount admission plugin ran before us, as in a real cluster: the Pod names its account.
    assert line["user"] == "admin"

    page = (ROOT / "docs" / "install.md").read_text()
    block = page[page.index("<!-- denial:begin -->"):page.index("<!-- denial:end -->")]
    transcript = block.split("```text\n", 1)[1].split("```", 1)[0]
    assert transcript == "$ kubectl run nginx --image=nginx\n" + run.stderr, (
        "docs/install.md's 'In a cluster' transcript differs from the real run; it should read:\n"
        "$ kubectl run nginx --image=nginx\n" + run.stderr)


def test_the_service_account_plugin_runs_before_the_webhook_so_pods_carry_their_token_volume(
        control_plane: ControlPlane, release: Release, tmp_path: Path) -> None:
    """The object we are sent is the one the API server will store: serviceAccountName and the projected token
    volume are in it, so rules judge what runs (envtest turns that plugin off; we do not)."""
    mark = release.mark()
    pod = compliant_deployment("probe")["spec"]["template"]
    manifest = {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "sa-probe", "namespace": TEAM,
                                                                "labels": pod["metadata"]["labels"]},
                "spec": pod["spec"]}
    control_plane.apply([manifest], "--dry-run=server")
    stored = json.loads(control_plane.apply([manifest], "--dry-run=server", "-o", "json").stdout)
    assert stored["spec"]["serviceAccountName"] == "default"
    assert any(v["name"].startswith("kube-api-access-") for v in stored["spec"]["volumes"])
    lines = [a for a in release.audit_since(mark) if a["name"] == "sa-probe"]
    assert lines and all(a["allowed"] and a["dryRun"] for a in lines)


def test_a_compliant_deployment_is_admitted_and_its_replicaset_and_pods_pass_through_the_webhook(
        controllers: ControlPlane, release: Release) -> None:
    mark = release.mark()
    controllers.apply([compliant_deployment("web", replicas=2)])
    pods = release.wait_for_audit(lambda a: a["kind"] == "Pod" and a["namespace"] == TEAM
                                  and a["name"].startswith("web-"), since=mark, timeout=60)
    lines = release.audit_since(mark)
    kinds = {a["kind"] for a in lines if a["namespace"] == TEAM and a["name"].startswith("web")}
    assert {"Deployment", "ReplicaSet", "Pod"} <= kinds, lines
    assert all(a["allowed"] for a in lines if a["name"].startswith("web")), lines
    # The controllers act as themselves: the webhook sees the identities a real cluster sends.
    users = {a["kind"]: a["user"] for a in lines if a["name"].startswith("web") and a["operation"] == "CREATE"}
    assert users["ReplicaSet"] == "system:serviceaccount:kube-system:deployment-controller"
    assert users["Pod"] == "system:serviceaccount:kube-system:replicaset-controller"
    assert pods
    created = json.loads(controllers.kubectl("get", "pods", "-n", TEAM, "-l", "app=web", "-o", "json").stdout)
    assert len(created["items"]) == 2  # stored, never run: no kubelet or scheduler here


def test_kubectl_debug_adding_a_root_ephemeral_container_is_refused_and_only_that_container_is_named(
        control_plane: ControlPlane, release: Release) -> None:
    pod = compliant_deployment("debug-me")["spec"]["template"]
    control_plane.apply([{"apiVersion": "v1", "kind": "Pod",
                          "metadata": {"name": "debug-me", "namespace": TEAM}, "spec": pod["spec"]}])
    mark = release.mark()
    run = control_plane.kubectl("debug", "debug-me", "-n", TEAM, "--image=busybox:1.36", "--attach=false",
                                "--container=debugger", check=False)
    assert run.returncode != 0
    assert "denied the request" in run.stderr and "'debugger'" in run.stderr and "'web'" not in run.stderr
    (line,) = [a for a in release.audit_since(mark) if a["name"] == "debug-me"]
    assert line["subResource"] == "ephemeralcontainers" and line["operation"] == "UPDATE" and not line["allowed"]


def test_a_server_side_dry_run_is_evaluated_and_stores_nothing(control_plane: ControlPlane, release: Release) -> None:
    mark = release.mark()
    bad = compliant_deployment("dry", image="registry.example.com/web:latest")
    run = control_plane.apply([bad], "--dry-run=server", check=False)
    assert run.returncode == 1 and "[image-tag-pinned]" in run.stderr
    (line,) = [a for a in release.audit_since(mark) if a["name"] == "dry"]
    assert line["dryRun"] is True and line["allowed"] is False
    assert control_plane.kubectl("get", "deployment", "dry", "-n", TEAM, check=False).returncode == 1


def test_kubectl_scale_never_reaches_the_webhook_and_the_replicaset_update_is_allowed_unevaluated(
        controllers: ControlPlane, release: Release) -> None:
    controllers.apply([compliant_deployment("scaled")])
    release.wait_for_audit(lambda a: a["kind"] == "Pod" and a["name"].startswith("scaled-"), timeout=60)
    mark = release.mark()
    controllers.kubectl("scale", "deployment", "scaled", "-n", TEAM, "--replicas=3")
    updates = release.wait_for_audit(lambda a: a["kind"] == "ReplicaSet" and a["operation"] == "UPDATE"
                                     and a["name"].startswith("scaled-"), since=mark, timeout=60)
    assert updates and all(a["allowed"] and a["result"] == "skipped" for a in updates), updates
    assert all("unchanged" in a["skipped"] for a in updates)
    assert not [a for a in release.audit_since(mark) if a["subResource"] == "scale"]


def test_warn_level_findings_show_as_kubectl_warning_lines(control_plane: ControlPlane, release: Release) -> None:
    deployment = compliant_deployment("no-probes")
    container = deployment["spec"]["template"]["spec"]["containers"][0]
    del container["readinessProbe"], container["livenessProbe"]
    run = control_plane.apply([deployment])
    assert re.search(r"^Warning: \[healthcheck\] container 'web' has neither", run.stderr, re.M), run.stderr


@pytest.mark.parametrize("namespace", [NAMESPACE, "kube-system", EXCLUDED])
def test_namespaces_the_chart_excludes_are_never_sent_to_the_webhook(
        control_plane: ControlPlane, release: Release, namespace: str) -> None:
    control_plane.ensure_default_service_accounts(namespace)
    mark = release.mark()
    bad = {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": f"unchecked-{namespace}", "namespace": namespace},
           "spec": {"containers": [{"name": "c", "image": "nginx"}]}}
    control_plane.apply([bad])  # admitted: never asked
    # A sentinel in a watched namespace proves the webhook was reachable and logging in the same interval.
    sentinel = dict(bad, metadata={"name": f"sentinel-{namespace}", "namespace": TEAM})
    assert control_plane.apply([sentinel], check=False).returncode == 1
    seen = release.audit_since(mark)
    assert [a for a in seen if a["name"] == f"sentinel-{namespace}"]
    assert not [a for a in seen if a["namespace"] == namespace], seen
