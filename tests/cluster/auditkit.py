"""What the audit's control-plane tests share: running the real `admission-cli audit`, reading its JUnit report back
(one test case per evaluated object and rule, so it names every object the audit reported), objects to create, and the
report CRDs as the chart installs them."""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tests.chart.conftest import render
from tests.cluster.controlplane import ControlPlane

CLI = Path(sys.executable).parent / "admission-cli"
REPORT_APIS = ("wgpolicyk8s.io/v1alpha2", "openreports.io/v1alpha1")
# resource.version.group: kubectl would otherwise read the CRD's preferred version (wgpolicyk8s.io's is v1beta1).
KUBECTL_KINDS = {"wgpolicyk8s.io/v1alpha2": ("policyreports.v1alpha2.wgpolicyk8s.io",
                                             "clusterpolicyreports.v1alpha2.wgpolicyk8s.io"),
                 "openreports.io/v1alpha1": ("reports.v1alpha1.openreports.io", "clusterreports.v1alpha1.openreports.io")}


@dataclass
class AuditRun:
    returncode: int
    stdout: str
    stderr: str

    def json(self) -> dict[str, Any]:
        return json.loads(self.stdout)

    def objects(self) -> list[tuple[str, str, str]]:
        """(kind, namespace, name) of every object the audit evaluated, from its JUnit report, in report order,
        with repeats (a test case per rule: one entry per object)."""
        from junitparser import JUnitXml

        seen: dict[tuple[str, str, str], None] = {}
        for suite in JUnitXml.fromstring(self.stdout):
            for case in suite:
                kind, where, _rule = case.name.split(" ")
                namespace, _, name = where.partition("/")
                seen[(kind, namespace, name)] = None
        return list(seen)


def audit(kubeconfig: Path, *args: str, offline: bool = True, timeout: float = 300) -> AuditRun:
    argv = [str(CLI), "audit", "--kubeconfig", str(kubeconfig), *(["--offline"] if offline else []), *args]
    run = subprocess.run(argv, capture_output=True, text=True, timeout=timeout)
    assert run.returncode in (0, 1, 2), run.stderr
    return AuditRun(run.returncode, run.stdout, run.stderr)


def namespace(plane: ControlPlane, *names: str) -> None:
    for name in names:
        plane.kubectl("create", "namespace", name, check=False)
    plane.ensure_default_service_accounts(*names)


def drop_namespaces(plane: ControlPlane, *names: str) -> None:
    """What a test created goes with its namespaces (kube-controller-manager finishes the deletion when it runs)."""
    for name in names:
        plane.kubectl("delete", "namespace", name, "--ignore-not-found", "--wait=false", check=False)


def container(name: str = "app", image: str = "registry.example.com/app:1.4.2", **extra: Any) -> dict[str, Any]:
    """A container that passes every deny rule of the default policy (and has a read-only root and two different
    probes, so no warning either)."""
    return {"name": name, "image": image,
            "securityContext": {"runAsNonRoot": True, "runAsUser": 10001, "allowPrivilegeEscalation": False,
                                "capabilities": {"drop": ["ALL"]}, "readOnlyRootFilesystem": True},
            "resources": {"limits": {"cpu": "500m", "memory": "128Mi"}},
            "readinessProbe": {"httpGet": {"path": "/readyz", "port": 8080}},
            "livenessProbe": {"tcpSocket": {"port": 8080}},
            **extra}


def pod_spec(*containers: dict[str, Any], **extra: Any) -> dict[str, Any]:
    return {"securityContext": {"seccompProfile": {"type": "RuntimeDefault"}},
            "containers": list(containers) or [container()], **extra}


def pod(name: str, namespace: str, *containers: dict[str, Any], labels: dict[str, str] | None = None,
        owner: dict[str, Any] | None = None, **extra: Any) -> dict[str, Any]:
    meta: dict[str, Any] = {"name": name, "namespace": namespace, "labels": labels or {"app": name}}
    if owner:
        meta["ownerReferences"] = [owner]
    return {"apiVersion": "v1", "kind": "Pod", "metadata": meta, "spec": pod_spec(*containers, **extra)}


def workload(kind: str, name: str, namespace: str, *containers: dict[str, Any], replicas: int = 1,
             **extra: Any) -> dict[str, Any]:
    """A Deployment, StatefulSet, DaemonSet, ReplicaSet, Job or CronJob around `containers`."""
    labels = {"app": name}
    template: dict[str, Any] = {"metadata": {"labels": labels}, "spec": pod_spec(*containers, **extra)}
    meta = {"name": name, "namespace": namespace}
    if kind in ("Job", "CronJob"):
        template["spec"]["restartPolicy"] = "Never"
        job = {"template": template, "backoffLimit": 0}
        if kind == "Job":
            return {"apiVersion": "batch/v1", "kind": "Job", "metadata": meta, "spec": job}
        return {"apiVersion": "batch/v1", "kind": "CronJob", "metadata": meta,
                "spec": {"schedule": "0 0 1 1 *", "jobTemplate": {"spec": job}}}
    spec: dict[str, Any] = {"selector": {"matchLabels": labels}, "template": template}
    if kind != "DaemonSet":
        spec["replicas"] = replicas
    if kind == "StatefulSet":
        spec["serviceName"] = name
    return {"apiVersion": "apps/v1", "kind": kind, "metadata": meta, "spec": spec}


def stored(plane: ControlPlane, kind: str, name: str, namespace: str) -> dict[str, Any]:
    return json.loads(plane.kubectl("get", kind, name, "-n", namespace, "-o", "json").stdout)


def report_crds(api: str) -> list[dict[str, Any]]:
    """The report CRDs of `api` as the chart renders them (audit.installReportCRDs)."""
    rendered = render({"audit": {"installReportCRDs": True, "reportApi": api}})
    return rendered.all("CustomResourceDefinition")


def install_report_crds(plane: ControlPlane, apis: Iterable[str] = REPORT_APIS) -> list[str]:
    names = []
    for api in apis:
        crds = report_crds(api)
        plane.apply(crds, "--server-side")  # a CRD's schema is larger than client-side apply's annotation allows
        names += [c["metadata"]["name"] for c in crds]
    for name in names:
        plane.kubectl("wait", "--for=condition=Established", f"crd/{name}", "--timeout=60s")
    return names


def reports(plane: ControlPlane, api: str, namespace: str | None) -> list[dict[str, Any]]:
    """The reports of `api` in `namespace` (None: the cluster reports), read back with kubectl, sorted by name."""
    namespaced, cluster = KUBECTL_KINDS[api]
    where: Sequence[str] = ["-n", namespace] if namespace else []
    items = json.loads(plane.kubectl("get", namespaced if namespace else cluster, *where, "-o", "json").stdout)["items"]
    return sorted(items, key=lambda r: r["metadata"]["name"])


def results_for(items: Iterable[dict[str, Any]], kind: str, name: str) -> list[dict[str, Any]]:
    return [r for report in items for r in report.get("results", [])
            if any(res["kind"] == kind and res["name"] == name for res in r.get("resources", []))]
