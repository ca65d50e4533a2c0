"""`admission-cli audit --write-reports` against the real API server with the report CRDs the chart installs (from
their Go modules): PolicyReports (wgpolicyk8s.io/v1alpha2) and Reports (openreports.io/v1alpha1) read back with
kubectl, a fixed object's stale result gone on the next run, stale reports deleted only by our label selector,
reports split under the size budget, and the chart's audit account able to do all of it and nothing more."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from admission.audit.reports import MAX_BYTES
from tests.chart.conftest import NAMESPACE, render
from tests.cluster.auditkit import (
    KUBECTL_KINDS,
    REPORT_APIS,
    audit,
    container,
    drop_namespaces,
    install_report_crds,
    namespace,
    reports,
    results_for,
    stored,
    workload,
)
from tests.cluster.controlplane import ControlPlane

pytestmark = pytest.mark.controlplane

TEAM, OTHER, BIG, FOREIGN = "audit-team", "audit-other", "audit-big", "audit-foreign"
RUN_LABEL = "admission.policy/run-id"


@pytest.fixture(scope="module")
def crds(control_plane: ControlPlane) -> Iterator[list[str]]:
    names = install_report_crds(control_plane)
    yield names
    drop_namespaces(control_plane, TEAM, OTHER, BIG, FOREIGN)
    control_plane.kubectl("delete", "crd", *names, "--ignore-not-found", "--wait=false", check=False)


def _kind(api: str, cluster: bool = False) -> str:
    return KUBECTL_KINDS[api][1 if cluster else 0]


@pytest.mark.parametrize("api", REPORT_APIS)
def test_reports_name_each_objects_results_by_uid_and_a_fix_replaces_the_failing_result(
        control_plane: ControlPlane, crds: list[str], api: str) -> None:
    namespace(control_plane, TEAM)
    control_plane.apply([workload("Deployment", "web", TEAM, container(image="registry.example.com/web:latest"),
                                  replicas=0)])
    uid = stored(control_plane, "deployment", "web", TEAM)["metadata"]["uid"]
    first = audit(control_plane.admin_kubeconfig, "-n", TEAM, "--write-reports", "--report-api", api)
    assert first.returncode == 1, first.stdout + first.stderr  # a deny finding; the reports are written all the same
    (report,) = reports(control_plane, api, TEAM)
    assert report["apiVersion"] == api and report["metadata"]["name"] == "admission-audit"
    labels = report["metadata"]["labels"]
    assert labels["app.kubernetes.io/managed-by"] == "admission" and labels[RUN_LABEL] in first.stderr
    results = results_for([report], "Deployment", "web")
    failing = [r for r in results if r["result"] == "fail"]
    (pinned,) = failing
    assert pinned["policy"] == pinned["rule"] == "image-tag-pinned" and pinned["severity"] == "high"
    assert pinned["resources"] == [{"apiVersion": "apps/v1", "kind": "Deployment", "name": "web", "namespace": TEAM,
                                    "uid": uid}]
    assert "latest" in pinned["message"]
    assert pinned["properties"]["path"] == "spec.template.spec.containers[0].image"
    assert pinned["properties"]["value"] == "registry.example.com/web:latest"
    assert pinned["properties"]["container"] == "app" and pinned["properties"]["fix"]
    assert {r["result"] for r in results} == {"pass", "fail"}
    summary = report["summary"]
    assert summary["fail"] == 1 and summary["pass"] == len(results) - 1 and summary["warn"] == summary["error"] == 0
    if api.startswith("openreports"):
        assert report["source"] == "admission"

    control_plane.apply([workload("Deployment", "web", TEAM, container(image="registry.example.com/web:1.4.2"),
                                  replicas=0)])
    second = audit(control_plane.admin_kubeconfig, "-n", TEAM, "--write-reports", "--report-api", api)
    assert second.returncode == 0, second.stdout + second.stderr
    (report,) = reports(control_plane, api, TEAM)
    assert report["metadata"]["labels"][RUN_LABEL] != labels[RUN_LABEL]
    assert {r["result"] for r in results_for([report], "Deployment", "web")} == {"pass"}, "the stale fail is gone"
    assert report["summary"]["fail"] == 0
    control_plane.kubectl("delete", "deployment", "web", "-n", TEAM)


def test_stale_reports_are_deleted_by_our_selector_only_and_only_in_the_audited_scope(
        control_plane: ControlPlane, crds: list[str]) -> None:
    api = REPORT_APIS[0]
    namespace(control_plane, TEAM, OTHER, FOREIGN)
    control_plane.apply([workload("Deployment", "api", TEAM, replicas=0),
                         workload("Deployment", "api", OTHER, replicas=0)])
    first = audit(control_plane.admin_kubeconfig, "-A", "--write-reports")
    assert first.returncode in (0, 1), first.stdout + first.stderr  # other tests' namespaces may hold findings
    assert [r["metadata"]["name"] for r in reports(control_plane, api, OTHER)] == ["admission-audit"]
    (cluster_report,) = reports(control_plane, api, None)
    assert cluster_report["metadata"]["labels"]["app.kubernetes.io/managed-by"] == "admission"
    # Another tool's report, and one labelled as ours by an earlier run in a namespace a -n run does not cover.
    foreign = {"apiVersion": api, "kind": "PolicyReport",
               "metadata": {"name": "kyverno-says", "namespace": FOREIGN,
                            "labels": {"app.kubernetes.io/managed-by": "kyverno"}},
               "summary": {"pass": 1}, "results": [{"policy": "p", "result": "pass"}]}
    control_plane.apply([foreign])

    control_plane.kubectl("delete", "deployment", "api", "-n", OTHER)
    scoped = audit(control_plane.admin_kubeconfig, "-n", TEAM, "--write-reports")
    assert scoped.returncode == 0, scoped.stderr
    assert reports(control_plane, api, OTHER), "a -n run deletes stale reports in its namespace only"
    assert reports(control_plane, api, None), "and never the cluster report"

    everything = audit(control_plane.admin_kubeconfig, "-A", "--write-reports")
    assert everything.returncode in (0, 1), everything.stdout + everything.stderr
    assert reports(control_plane, api, OTHER) == [], "nothing runs there now: its report is stale and gone"
    (kept,) = reports(control_plane, api, FOREIGN)
    assert kept["metadata"]["name"] == "kyverno-says", "not ours: never deleted"
    (cluster_report,) = reports(control_plane, api, None)
    run_id = cluster_report["metadata"]["labels"][RUN_LABEL]
    assert run_id in everything.stderr
    assert reports(control_plane, api, TEAM)[0]["metadata"]["labels"][RUN_LABEL] == run_id
    control_plane.kubectl("delete", "deployment", "api", "-n", TEAM)


def _size(report: dict[str, Any]) -> int:
    return len(json.dumps(report, separators=(",", ":")))


def test_a_namespace_past_the_size_budget_gets_several_reports_each_under_it_and_they_shrink_back(
        control_plane: ControlPlane, crds: list[str]) -> None:
    api = REPORT_APIS[0]
    namespace(control_plane, BIG)
    many = [workload("Deployment", f"svc-{i:03d}", BIG, container(image="registry.example.com/svc:latest"),
                     replicas=0) for i in range(220)]
    for i, deployment in enumerate(many):
        deployment["metadata"]["labels"] = {"batch": "keep" if i < 10 else "drop"}
    control_plane.apply(many)
    run = audit(control_plane.admin_kubeconfig, "-n", BIG, "--write-reports")
    assert run.returncode == 1, run.stderr
    parts = reports(control_plane, api, BIG)
    assert len(parts) >= 2, [(p["metadata"]["name"], _size(p)) for p in parts]
    assert all(_size(p) < MAX_BYTES for p in parts), [_size(p) for p in parts]
    assert [p["metadata"]["name"] for p in parts] == ["admission-audit"] + [f"admission-audit-{n}"
                                                                             for n in range(2, len(parts) + 1)]
    named = [res["name"] for p in parts for r in p["results"] for res in r["resources"]]
    assert set(named) == {f"svc-{i:03d}" for i in range(220)}
    for i in (0, 219):  # an object's results are never split between reports
        assert sum(1 for p in parts if results_for([p], "Deployment", f"svc-{i:03d}")) == 1
    assert sum(p["summary"]["fail"] for p in parts) == 220

    control_plane.kubectl("delete", "deployments", "-n", BIG, "-l", "batch=drop", timeout=180)
    run = audit(control_plane.admin_kubeconfig, "-n", BIG, "--write-reports")
    assert [p["metadata"]["name"] for p in reports(control_plane, api, BIG)] == ["admission-audit"], \
        "the parts a smaller run did not write are stale, and deleted"


@pytest.mark.parametrize("api", REPORT_APIS)
def test_the_charts_audit_account_may_list_and_write_reports_and_nothing_else(
        control_plane: ControlPlane, crds: list[str], api: str, tmp_path: Path) -> None:
    rendered = render({"audit": {"enabled": True, "reportApi": api}})
    control_plane.kubectl("create", "namespace", NAMESPACE, check=False)
    account = rendered.one("ServiceAccount", "admission-audit")
    rbac = [account, rendered.one("ClusterRole", "admission-audit"), rendered.one("ClusterRoleBinding", "admission-audit")]
    control_plane.apply(rbac)
    # The CronJob as rendered is valid to this API server (no kubelet runs it here: its command runs below).
    control_plane.apply([rendered.one("CronJob")], "--dry-run=server")
    args = rendered.one("CronJob")["spec"]["jobTemplate"]["spec"]["template"]["spec"]["containers"][0]["args"]
    try:
        namespace(control_plane, TEAM)
        control_plane.apply([workload("Deployment", "rbac-probe", TEAM, replicas=0)])
        kubeconfig = control_plane.token_kubeconfig(tmp_path / "audit.kubeconfig", namespace=NAMESPACE,
                                                    service_account="admission-audit")
        chart_args = [a for a in args[1:] if not a.startswith(("--policy=", "--cache-dir="))]
        run = audit(kubeconfig, *chart_args, "--no-cache")
        assert run.returncode == 0, run.stdout + run.stderr  # --fail-on=none: only an error would fail the Job
        assert reports(control_plane, api, TEAM) and reports(control_plane, api, None)
        user = f"system:serviceaccount:{NAMESPACE}:admission-audit"
        for verb, resource in (("get", "secrets"), ("list", "secrets"), ("get", "pods"), ("watch", "pods"),
                               ("delete", _kind(api)), ("update", _kind(api)), ("create", "deployments"),
                               ("list", "configmaps")):
            can = control_plane.kubectl("auth", "can-i", verb, resource, "-A", f"--as={user}", check=False)
            assert can.stdout.strip() == "no", (verb, resource)
    finally:
        control_plane.kubectl("delete", "-f", "-", "--ignore-not-found", stdin=json.dumps({"apiVersion": "v1",
                              "kind": "List", "items": rbac}))
        control_plane.kubectl("delete", "deployment", "rbac-probe", "-n", TEAM, "--ignore-not-found")


def test_a_run_that_could_not_list_a_kind_says_so_in_the_cluster_report_and_deletes_no_stale_report(
        control_plane: ControlPlane, crds: list[str], tmp_path: Path) -> None:
    api = REPORT_APIS[0]
    namespace(control_plane, OTHER)
    control_plane.apply([workload("Deployment", "kept", OTHER, replicas=0)])
    complete = audit(control_plane.admin_kubeconfig, "-A", "--write-reports")
    assert complete.returncode in (0, 1), complete.stdout + complete.stderr
    (earlier,) = reports(control_plane, api, OTHER)
    # The chart's audit role without deployments: the run is partial.
    role = render({"audit": {"enabled": True}}).one("ClusterRole", "admission-audit")
    role["metadata"]["name"] = "audit-partial"
    role["rules"][1]["resources"].remove("deployments")
    control_plane.kubectl("create", "serviceaccount", "audit-partial", "-n", OTHER, check=False)
    control_plane.apply([role])
    control_plane.kubectl("create", "clusterrolebinding", "audit-partial", "--clusterrole=audit-partial",
                          f"--serviceaccount={OTHER}:audit-partial", check=False)
    try:
        kubeconfig = control_plane.token_kubeconfig(tmp_path / "partial.kubeconfig", namespace=OTHER,
                                                    service_account="audit-partial")
        partial = audit(kubeconfig, "-A", "--write-reports")
        assert partial.returncode == 2
        (cluster_report,) = reports(control_plane, api, None)
        (error,) = [r for r in cluster_report["results"] if r["result"] == "error"]
        assert error["rule"] == "list" and "cannot list deployments.apps" in error["message"]
        assert cluster_report["summary"]["error"] == 1
        (still,) = reports(control_plane, api, OTHER)
        assert still["metadata"]["labels"][RUN_LABEL] == earlier["metadata"]["labels"][RUN_LABEL], \
            "the Deployment's report from the complete run stays: a partial run deletes nothing"
    finally:
        control_plane.kubectl("delete", "clusterrolebinding,clusterrole", "audit-partial", "--ignore-not-found")
        control_plane.kubectl("delete", "deployment", "kept", "-n", OTHER, "--ignore-not-found")


def test_a_namespace_being_deleted_gets_no_report_and_is_no_error(control_plane: ControlPlane, crds: list[str]) -> None:
    going = "audit-going"
    namespace(control_plane, going)
    held = workload("Deployment", "held", going, replicas=0)
    held["metadata"]["finalizers"] = ["example.com/hold"]  # keeps the namespace terminating while the test looks
    control_plane.apply([held])
    control_plane.kubectl("delete", "namespace", going, "--wait=false")
    try:
        run = audit(control_plane.admin_kubeconfig, "-n", going, "--write-reports")
        assert run.returncode == 0, run.stdout + run.stderr
        assert f"namespace {going} is being deleted: no report written" in run.stderr
        assert json.loads(control_plane.kubectl("get", "namespace", going, "-o", "json").stdout)["status"]["phase"] \
            == "Terminating"
    finally:
        control_plane.kubectl("patch", "deployment", "held", "-n", going, "--type=merge",
                              "-p", '{"metadata": {"finalizers": null}}', check=False)


def test_a_namespace_deleted_since_it_was_listed_gets_no_report_and_is_no_error(
        control_plane: ControlPlane, crds: list[str], capsys: pytest.CaptureFixture[str]) -> None:
    """An audit lists every namespace's objects, then writes the reports; a namespace deleted in between answers the
    write with 404 `namespaces "x" not found` (kube-apiserver's NamespaceLifecycle), which is not a cluster without the
    report CRDs (that 404 has no details): the other namespaces' reports are written and the run has no error."""
    import argparse
    import time

    from admission.audit.reports import ObjectResults
    from admission.audit.run import Outcome
    from admission.cli.audit import _api_client, _write_reports
    from admission.findings import Report
    from admission.kube.api import Kube

    api, gone = REPORT_APIS[0], "audit-gone"  # never created here: gone by the time its report is written
    namespace(control_plane, TEAM)
    client, _ = _api_client(argparse.Namespace(kubeconfig=str(control_plane.admin_kubeconfig), context=None))
    kube = Kube(client)
    listed = {ns: [ObjectResults("apps/v1", "Deployment", "api", ns, f"uid-{ns}", ("image-tag-pinned",))]
              for ns in (gone, TEAM)}
    result = Report()
    try:
        _write_reports(kube, Outcome(report=result, objects=listed, stats={}), api, "gone-1", time.time(), None, result)
    finally:
        kube.close()
    assert result.errors == []
    assert f"namespace {gone} was deleted during the audit: no report written" in capsys.readouterr().err
    (written,) = reports(control_plane, api, TEAM)
    assert written["metadata"]["labels"][RUN_LABEL] == "gone-1"
    assert [r["resources"][0]["name"] for r in written["results"]] == ["api"]
