"""The chart's audit: off by default; on, a CronJob that never overlaps itself and runs the audit with the webhook's
policy as an account of its own that may list and write reports and nothing more; the report CRDs only on request,
as their Go modules ship them (tools/report-crds/fetch.sh), kept on uninstall."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from tests.chart.conftest import CHART, NAMESPACE, VALUE_SETS, Rendered, render

CRD_FILES = CHART / "files" / "report-crds"


@pytest.fixture(scope="module")
def audit_on() -> Rendered:
    return render({"audit": {"enabled": True}})


def test_the_audit_and_its_crds_are_off_by_default() -> None:
    default_render = render({})
    assert not default_render.has("CronJob") and not default_render.has("CustomResourceDefinition")
    names = {(o["kind"], o["metadata"]["name"]) for o in default_render.objects}
    assert not {("ClusterRole", "admission-audit"), ("ServiceAccount", "admission-audit")} & names


def test_the_cronjob_never_overlaps_and_runs_the_audit_with_the_webhooks_policy(audit_on: Rendered) -> None:
    cron = audit_on.one("CronJob")
    assert cron["metadata"]["namespace"] == NAMESPACE and cron["spec"]["concurrencyPolicy"] == "Forbid"
    job = cron["spec"]["jobTemplate"]["spec"]
    assert job["backoffLimit"] == 0 and job["activeDeadlineSeconds"] == 1800
    pod = job["template"]["spec"]
    (container,) = pod["containers"]
    args = container["args"]
    assert args[:3] == ["audit", "--all-namespaces", "--write-reports"]
    assert "--report-api=wgpolicyk8s.io/v1alpha2" in args and "--fail-on=none" in args
    assert "--qps=20" in args and "--burst=40" in args and "--chunk-size=500" in args
    policy_mount = next(m for m in container["volumeMounts"] if m["name"] == "policy")
    assert f"--policy={policy_mount['mountPath']}/policy.yaml" in args
    policy_volume = next(v for v in pod["volumes"] if v["name"] == "policy")
    webhook_volume = next(v for v in audit_on.deployment["spec"]["template"]["spec"]["volumes"] if v["name"] == "policy")
    assert policy_volume == webhook_volume, "the same ConfigMap the webhook reads"
    assert pod["serviceAccountName"] == "admission-audit" != audit_on.deployment["spec"]["template"]["spec"]["serviceAccountName"]
    assert container["securityContext"]["readOnlyRootFilesystem"] is True
    assert any(m["mountPath"] == "/tmp" for m in container["volumeMounts"]) and "--cache-dir=/tmp/image-cache" in args


@pytest.mark.parametrize(("api", "group", "resources"), [
    ("wgpolicyk8s.io/v1alpha2", "wgpolicyk8s.io", ["policyreports", "clusterpolicyreports"]),
    ("openreports.io/v1alpha1", "openreports.io", ["reports", "clusterreports"]),
])
def test_the_audit_account_may_list_the_pod_bearing_kinds_and_write_reports_only(
        api: str, group: str, resources: list[str]) -> None:
    rendered = render({"audit": {"enabled": True, "reportApi": api}})
    role = rendered.one("ClusterRole", "admission-audit")
    assert role["rules"] == [
        {"apiGroups": [""], "resources": ["pods", "replicationcontrollers", "limitranges", "services",
                                          "serviceaccounts"], "verbs": ["list"]},
        {"apiGroups": ["apps"], "resources": ["deployments", "replicasets", "statefulsets", "daemonsets"],
         "verbs": ["list"]},
        {"apiGroups": ["batch"], "resources": ["jobs", "cronjobs"], "verbs": ["list"]},
        {"apiGroups": [group], "resources": resources, "verbs": ["create", "patch", "list", "deletecollection"]},
    ]
    (subject,) = rendered.one("ClusterRoleBinding", "admission-audit")["subjects"]
    assert subject == {"kind": "ServiceAccount", "name": "admission-audit", "namespace": NAMESPACE}


@pytest.mark.parametrize("api", ["wgpolicyk8s.io/v1alpha2", "openreports.io/v1alpha1"])
def test_the_report_crds_are_their_modules_files_kept_on_uninstall(api: str) -> None:
    group = api.split("/")[0]
    rendered = render({"audit": {"installReportCRDs": True, "reportApi": api}})
    crds = {c["metadata"]["name"]: c for c in rendered.all("CustomResourceDefinition")}
    shipped = {}
    for path in sorted((CRD_FILES / group).glob("*.yaml")):
        assert path.read_text().startswith("# From "), "the copy names the module and version it came from"
        crd = yaml.safe_load(path.read_text())
        shipped[crd["metadata"]["name"]] = crd
    assert set(crds) == set(shipped) and len(crds) == 2
    for name, crd in crds.items():
        assert crd["spec"] == shipped[name]["spec"], "the schema as the module ships it"
        assert crd["metadata"]["annotations"]["helm.sh/resource-policy"] == "keep"
        assert crd["metadata"]["labels"]["app.kubernetes.io/managed-by"] == "Helm"
        served = {v["name"] for v in crd["spec"]["versions"] if v["served"]}
        assert api.split("/")[1] in served


def test_the_copied_crds_come_from_the_modules_go_mod_pins() -> None:
    go_mod = (Path(__file__).resolve().parents[2] / "tools" / "report-crds" / "go.mod").read_text()
    for path in CRD_FILES.rglob("*.yaml"):
        module_version = path.read_text().splitlines()[0].split()[2].rstrip(",")
        module, version = module_version.split("@")
        assert f"\t{module} {version}\n" in go_mod, (path.name, module_version)


@pytest.mark.parametrize("values", [
    {"audit": {"reportApi": "wgpolicyk8s.io/v1beta1"}},
    {"audit": {"schedule": "hourly"}},
    {"audit": {"qps": 0}},
    {"audit": {"enable": True}},
])
def test_the_schema_refuses_what_the_audit_cannot_run_with(values: dict) -> None:
    import helm_python

    with pytest.raises(helm_python.HelmValuesError):
        render(values)


@pytest.mark.parametrize("kube_version", ["1.28.0", "1.33.0"])
@pytest.mark.parametrize("label", ["audit", "audit-openreports"])
def test_helm_lint_strict_is_clean_with_the_audit_on(label: str, kube_version: str) -> None:
    import helm_python

    result = helm_python.lint(str(CHART), VALUE_SETS[label], strict=True, kube_version=kube_version,
                              namespace=NAMESPACE)
    assert result["errors"] == []
    assert [m for m in result["messages"] if m["severity"] >= 2] == []
