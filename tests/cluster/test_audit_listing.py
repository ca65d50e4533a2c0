"""How `admission-cli audit` lists a real API server: what it reports (top owners once, the objects no controller owns,
nothing the controller-manager made twice), in pages of `--chunk-size` with no more calls than the pages need, a list
restarted on 410 Expired, 429 retried after the server's Retry-After, a client-side rate limit, and lists it may not
make. Faults come from a loopback proxy in front of the real API server (tests/cluster/apiproxy.py); every call is
read from its log."""

from __future__ import annotations

import json
import math
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from admission.audit.inventory import LISTED
from admission.audit.run import LIMITRANGES
from tests.cluster.apiproxy import ApiProxy, lists
from tests.cluster.auditkit import audit, container, drop_namespaces, namespace, pod, stored, workload
from tests.cluster.controlplane import ControlPlane

pytestmark = pytest.mark.controlplane

OWNERS, PAGES, LIMITS = "audit-owners", "audit-pages", "audit-limits"
LISTED_KINDS = tuple(r.plural for r in (LIMITRANGES, *LISTED))


@pytest.fixture(scope="module")
def proxy(control_plane: ControlPlane) -> Iterator[ApiProxy]:
    started = ApiProxy(control_plane).start()
    yield started
    started.stop()
    drop_namespaces(control_plane, OWNERS, PAGES, LIMITS)


@pytest.fixture(scope="module")
def paged(control_plane: ControlPlane) -> dict[str, int]:
    """7 bare Pods and 5 Deployments (no controller runs for this namespace's tests to need)."""
    namespace(control_plane, PAGES)
    objects = [pod(f"bare-{i}", PAGES) for i in range(7)]
    objects += [workload("Deployment", f"web-{i}", PAGES, replicas=0) for i in range(5)]
    control_plane.apply(objects)
    return {"pods": 7, "deployments": 5}


def _wait_for(plane: ControlPlane, what: str, predicate: object, timeout: float = 90) -> dict:
    deadline = time.monotonic() + timeout
    while True:
        listed = json.loads(plane.kubectl("get", what, "-n", OWNERS, "-o", "json").stdout)
        if predicate(listed["items"]):  # type: ignore[operator]
            return listed
        assert time.monotonic() < deadline, f"{what} in {OWNERS}: {[i['metadata']['name'] for i in listed['items']]}"
        time.sleep(0.5)


def test_top_owners_are_reported_once_and_what_their_controllers_made_is_not_repeated(
        controllers: ControlPlane) -> None:
    namespace(controllers, OWNERS)
    config_map = {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "operator-state", "namespace": OWNERS}}
    controllers.apply([
        workload("Deployment", "web", OWNERS, replicas=2),
        workload("StatefulSet", "db", OWNERS),
        workload("DaemonSet", "agent", OWNERS),  # no node here, so no Pod: still reported
        workload("CronJob", "nightly", OWNERS),
        workload("Job", "migrate", OWNERS),  # the job controller makes its Pod
        workload("ReplicaSet", "orphan-rs", OWNERS, replicas=1),  # no Deployment: reported itself, its Pod is not
        pod("bare", OWNERS),
        config_map,
    ])
    # A Job the CronJob owns, made as the cronjob controller would (kubectl create job --from sets the owner).
    controllers.kubectl("create", "job", "nightly-manual", "--from=cronjob/nightly", "-n", OWNERS)
    owner = stored(controllers, "configmap", "operator-state", OWNERS)["metadata"]
    # A Pod whose controller is a kind the audit does not list (an operator's object): the top of what it can judge.
    controllers.apply([pod("operated", OWNERS, owner={"apiVersion": "v1", "kind": "ConfigMap", "name": owner["name"],
                                                      "uid": owner["uid"], "controller": True})])
    pods = _wait_for(controllers, "pods", lambda items: len(items) >= 2 + 1 + 1 + 1 + 1 + 1 + 1)
    made = {p["metadata"]["ownerReferences"][0]["kind"] for p in pods["items"] if p["metadata"].get("ownerReferences")}
    assert {"ReplicaSet", "StatefulSet", "Job"} <= made, "the controller-manager made the Pods"
    replicasets = _wait_for(controllers, "replicasets", lambda items: len(items) == 2)
    assert any(rs["metadata"].get("ownerReferences") for rs in replicasets["items"])

    run = audit(controllers.admin_kubeconfig, "-n", OWNERS, "--format", "junit")
    assert run.returncode == 0, run.stdout + run.stderr
    assert sorted(run.objects()) == sorted([
        ("Deployment", OWNERS, "web"), ("StatefulSet", OWNERS, "db"), ("DaemonSet", OWNERS, "agent"),
        ("CronJob", OWNERS, "nightly"), ("Job", OWNERS, "migrate"), ("ReplicaSet", OWNERS, "orphan-rs"),
        ("Pod", OWNERS, "bare"), ("Pod", OWNERS, "operated"),
    ]), "each object once, under its top owner; no ReplicaSet, Job or Pod a listed controller made"


def test_each_kind_is_listed_in_pages_of_the_chunk_size_with_no_call_beyond_the_pages(
        control_plane: ControlPlane, proxy: ApiProxy, paged: dict[str, int], tmp_path: Path) -> None:
    proxy.clear()
    run = audit(proxy.kubeconfig(tmp_path / "proxy.kubeconfig", namespace=PAGES), "--chunk-size", "3",
                "--format", "json")
    assert run.returncode == 0, run.stderr
    assert run.json()["summary"]["objects"] == 12
    calls = {r.plural: proxy.seen("GET", r.path(PAGES)) for r in (LIMITRANGES, *LISTED)}
    counted = {kind: len(seen) for kind, seen in calls.items()}
    # What each kind holds (kube-controller-manager, when an earlier test started it, adds the Deployments'
    # ReplicaSets): one call per page, max(1, ceil(objects / limit)), and nothing more.
    held = {kind: len(json.loads(control_plane.kubectl("get", kind, "-n", PAGES, "-o", "json").stdout)["items"])
            for kind in LISTED_KINDS}
    assert held["pods"] == 7 and held["deployments"] == 5
    assert counted == {kind: max(1, math.ceil(n / 3)) for kind, n in held.items()}
    assert all(s.query["limit"] == "3" for seen in calls.values() for s in seen)
    assert len(proxy.seen()) == sum(counted.values()), "nothing else was called"
    assert f"12 objects, {sum(counted.values())} API calls (0 retries)" in run.stderr


def test_an_expired_continue_token_restarts_the_list_and_no_object_is_reported_twice(
        control_plane: ControlPlane, proxy: ApiProxy, paged: dict[str, int], tmp_path: Path) -> None:
    proxy.clear()
    path = f"/api/v1/namespaces/{PAGES}/pods"
    proxy.inject(lists(path, continued=True), 410)  # the second page: its token outlived the compaction window
    run = audit(proxy.kubeconfig(tmp_path / "proxy.kubeconfig", namespace=PAGES), "--chunk-size", "3",
                "--format", "junit")
    assert run.returncode == 0, run.stderr
    objects = run.objects()
    assert len(objects) == 12 and len(set(objects)) == 12
    pages = proxy.seen("GET", path)
    assert [(s.status, "continue" in s.query) for s in pages] == [
        (200, False), (410, True),  # the abandoned pass
        (200, False), (200, True), (200, True)]  # the list again, from the start, to its end
    # calls = max(1, ceil(objects / limit)) + retries, where the abandoned pass is the retries
    assert len(pages) == math.ceil(7 / 3) + 2
    assert "(2 retries)" in run.stderr


def test_too_many_requests_is_retried_after_the_servers_retry_after(
        control_plane: ControlPlane, proxy: ApiProxy, paged: dict[str, int], tmp_path: Path) -> None:
    proxy.clear()
    path = f"/apis/apps/v1/namespaces/{PAGES}/deployments"
    proxy.inject(lists(path), 429, times=2, retry_after="2")
    run = audit(proxy.kubeconfig(tmp_path / "proxy.kubeconfig", namespace=PAGES), "--format", "json")
    assert run.returncode == 0, run.stderr
    seen = proxy.seen("GET", path)
    assert [s.status for s in seen] == [429, 429, 200]
    gaps = [b.at - a.at for a, b in zip(seen, seen[1:])]
    assert all(gap >= 1.9 for gap in gaps), gaps
    assert "(2 retries)" in run.stderr


def test_a_list_refused_past_the_retry_budget_is_an_error_naming_the_kind(
        control_plane: ControlPlane, proxy: ApiProxy, paged: dict[str, int], tmp_path: Path) -> None:
    proxy.clear()
    path = f"/apis/apps/v1/namespaces/{PAGES}/deployments"
    proxy.inject(lists(path), 429, times=100, retry_after="0")
    run = audit(proxy.kubeconfig(tmp_path / "proxy.kubeconfig", namespace=PAGES), "--format", "json")
    assert run.returncode == 2
    (error,) = run.json()["errors"]
    assert error["message"].startswith("cannot list deployments.apps: GET " + path + ": 429 TooManyRequests")
    assert error["file"] == f"namespace/{PAGES}"
    assert len(proxy.seen("GET", path)) == 1 + 8, "the first call and eight retries"
    assert run.json()["summary"]["objects"] == 7, "the other kinds were still audited"


def test_the_client_side_rate_limit_spaces_the_calls(
        control_plane: ControlPlane, proxy: ApiProxy, paged: dict[str, int], tmp_path: Path) -> None:
    proxy.clear()
    run = audit(proxy.kubeconfig(tmp_path / "proxy.kubeconfig", namespace=PAGES), "--qps", "5", "--burst", "1",
                "--format", "json")
    assert run.returncode == 0, run.stderr
    seen = proxy.seen()
    assert len(seen) == len(LISTED_KINDS)
    gaps = [b.at - a.at for a, b in zip(seen, seen[1:])]
    assert min(gaps) >= 0.18, gaps  # 1/qps apart once the burst of one is spent


def test_a_list_rbac_forbids_is_an_error_and_the_rest_is_still_audited(
        control_plane: ControlPlane, proxy: ApiProxy, paged: dict[str, int], tmp_path: Path) -> None:
    control_plane.kubectl("create", "serviceaccount", "pods-only", "-n", PAGES, check=False)
    control_plane.kubectl("create", "role", "pods-only", "-n", PAGES, "--verb=list", "--resource=pods", check=False)
    control_plane.kubectl("create", "rolebinding", "pods-only", "-n", PAGES, "--role=pods-only",
                          f"--serviceaccount={PAGES}:pods-only", check=False)
    kubeconfig = control_plane.token_kubeconfig(tmp_path / "pods-only.kubeconfig", namespace=PAGES,
                                                service_account="pods-only")
    run = audit(kubeconfig, "--format", "json")
    assert run.returncode == 2
    report = run.json()
    assert report["summary"]["objects"] == 7, "the Pods it may list"
    messages = [e["message"] for e in report["errors"]]
    # Every pod-bearing kind but Pods; LimitRanges, as in the webhook, are not an error: templates are told instead.
    assert len(messages) == len(LISTED_KINDS) - 2 and all("403 Forbidden" in m for m in messages), messages
    assert any(m.startswith("cannot list deployments.apps") for m in messages)
    assert not any("limitranges" in m for m in messages)


def test_templates_get_their_namespaces_limitrange_defaults_as_the_webhook_counts_them(
        control_plane: ControlPlane, tmp_path: Path) -> None:
    namespace(control_plane, LIMITS)
    bare = container()
    del bare["resources"]
    control_plane.apply([
        {"apiVersion": "v1", "kind": "LimitRange", "metadata": {"name": "defaults", "namespace": LIMITS},
         "spec": {"limits": [{"type": "Container", "default": {"cpu": "500m", "memory": "256Mi"}}]}},
        workload("Deployment", "defaulted", LIMITS, bare, replicas=0),
    ])
    run = audit(control_plane.admin_kubeconfig, "-n", LIMITS, "--format", "json")
    assert run.returncode == 0, run.stdout
    control_plane.kubectl("delete", "limitrange", "defaults", "-n", LIMITS)
    run = audit(control_plane.admin_kubeconfig, "-n", LIMITS, "--format", "json")
    assert run.returncode == 1
    findings = [f for f in run.json()["findings"] if f["rule"] == "resource-limits"]
    assert len(findings) == 2, "cpu and memory"
    for finding in findings:
        assert "no LimitRange of the namespace gives a default for it" in finding["message"]
        assert finding["object"] == {"kind": "Deployment", "name": "defaulted", "namespace": LIMITS}
        assert finding["path"].startswith("spec.template.spec.containers[0]")


def test_writing_reports_where_no_report_crd_is_served_is_one_error_that_says_what_to_install(
        control_plane: ControlPlane, paged: dict[str, int]) -> None:
    if control_plane.kubectl("get", "crd", "policyreports.wgpolicyk8s.io", check=False).returncode == 0:
        pytest.skip("the report CRDs are installed in this session (tests/cluster/test_audit_reports.py ran first)")
    run = audit(control_plane.admin_kubeconfig, "-n", PAGES, "--write-reports", "--format", "json")
    assert run.returncode == 2
    (error,) = run.json()["errors"]
    assert error["message"].startswith("wgpolicyk8s.io/v1alpha2 reports are not served by this cluster")
    assert "audit.installReportCRDs" in error["message"] and "404" in error["message"]
