"""`admission-cli audit` at 500 and 5,000 pod-bearing objects in a real API server (issue 14), against a bare
paginated list of the same objects with the kubernetes client, measured in the same run.

The control plane is tests/cluster/controlplane.py's (etcd + kube-apiserver on loopback, built by `make k8s-bin`).
Objects: 40% Deployments, 10% StatefulSets, 10% DaemonSets, 10% CronJobs, 30% bare Pods, spread over namespaces of
100; each has findings (a `latest` tag on every tenth, no probes or limits on others), so the audit keeps and prints
real reports. They are POSTed straight to the API server; no controller runs, so nothing else appears.

Measured per case, each in a child process (its own peak RSS, VmHWM, so one run's peak never hides another's):
- wall time, time per object, peak RSS;
- the LIST calls the API server served (`apiserver_request_total{verb="LIST"}`, before and after), against
  max(1, ceil(objects / limit)) per kind;
- the baseline: `list_*_for_all_namespaces(limit=500)` page by page, each page decoded and dropped, no evaluation.
The pass criterion of the issue: peak RSS at 5,000 objects within 30 MiB of the peak at 500 (pages are evaluated
and dropped, not held).

    python bench/audit.py [--out bench/results/audit.json]
"""

from __future__ import annotations

import argparse
import concurrent.futures
import json
import math
import os
import re
import ssl
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

MIX = (("Deployment", 0.4), ("StatefulSet", 0.1), ("DaemonSet", 0.1), ("CronJob", 0.1), ("Pod", 0.3))
PER_NAMESPACE = 100
LIMIT = 500
RESOURCES = {  # kind -> (API path prefix, plural), as the audit lists them
    "Pod": ("/api/v1", "pods"), "ReplicaSet": ("/apis/apps/v1", "replicasets"), "Job": ("/apis/batch/v1", "jobs"),
    "Deployment": ("/apis/apps/v1", "deployments"), "StatefulSet": ("/apis/apps/v1", "statefulsets"),
    "DaemonSet": ("/apis/apps/v1", "daemonsets"), "CronJob": ("/apis/batch/v1", "cronjobs"),
    "ReplicationController": ("/api/v1", "replicationcontrollers"), "LimitRange": ("/api/v1", "limitranges"),
}
_LIST = re.compile(r'^apiserver_request_total\{(?P<labels>[^}]*)\} (?P<value>\S+)$', re.M)


def _container(index: int) -> dict[str, Any]:
    image = "registry.example.com/app:latest" if index % 10 == 0 else f"registry.example.com/app:1.{index % 7}.0"
    spec: dict[str, Any] = {"name": "app", "image": image,
                            "securityContext": {"runAsNonRoot": True, "runAsUser": 10001,
                                                "allowPrivilegeEscalation": False, "capabilities": {"drop": ["ALL"]}},
                            "env": [{"name": "SETTING_" + str(n), "value": "x" * 40} for n in range(6)],
                            "ports": [{"containerPort": 8080, "name": "http"}]}
    if index % 3:
        spec["resources"] = {"limits": {"cpu": "500m", "memory": "256Mi"}, "requests": {"cpu": "100m"}}
    if index % 4:
        spec["readinessProbe"] = {"httpGet": {"path": "/ready", "port": 8080}}
    return spec


def manifest(kind: str, index: int, namespace: str) -> tuple[str, dict[str, Any]]:
    name = f"{kind.lower()}-{index:05d}"
    labels = {"app": name, "team": f"team-{index % 13}", "tier": "backend"}
    pod_spec = {"securityContext": {"seccompProfile": {"type": "RuntimeDefault"}}, "containers": [_container(index)]}
    meta = {"name": name, "namespace": namespace, "labels": labels,
            "annotations": {"example.com/owner": f"owner-{index % 17}@example.com",
                            "example.com/description": "a workload of the audit benchmark " * 3}}
    prefix, plural = RESOURCES[kind]
    path = f"{prefix}/namespaces/{namespace}/{plural}"
    if kind == "Pod":
        return path, {"apiVersion": "v1", "kind": "Pod", "metadata": meta, "spec": pod_spec}
    template = {"metadata": {"labels": labels}, "spec": pod_spec}
    if kind == "CronJob":
        job_spec = {"template": {**template, "spec": {**pod_spec, "restartPolicy": "Never"}}}
        return path, {"apiVersion": "batch/v1", "kind": "CronJob", "metadata": meta,
                      "spec": {"schedule": "0 3 * * *", "jobTemplate": {"spec": job_spec}}}
    spec: dict[str, Any] = {"selector": {"matchLabels": {"app": name}}, "template": template}
    if kind in ("Deployment", "StatefulSet"):
        spec["replicas"] = 0
    if kind == "StatefulSet":
        spec["serviceName"] = name
    return path, {"apiVersion": "apps/v1", "kind": kind, "metadata": meta, "spec": spec}


def plan(start: int, count: int) -> list[tuple[str, int]]:
    """(kind, index) for objects start..start+count, in the mix's proportions."""
    out = []
    for i in range(start, start + count):
        position = (i % 10) / 10
        edge = 0.0
        for kind, share in MIX:
            edge += share
            if position < edge - 1e-9:
                out.append((kind, i))
                break
    return out


class Api:
    """POSTs and metrics straight to the API server with the admin certificate (httpx, as the tests' proxy does)."""

    def __init__(self, plane: Any) -> None:  # noqa: ANN401
        import httpx

        pki = plane.root / "pki"
        context = ssl.create_default_context(cafile=str(plane.ca_file))
        context.load_cert_chain(str(pki / "admin.crt"), str(pki / "admin.key"))
        self.client = httpx.Client(base_url=plane.url, verify=context, timeout=60,
                                   limits=httpx.Limits(max_connections=16))

    def create(self, objects: list[tuple[str, dict[str, Any]]]) -> None:
        def post(item: tuple[str, dict[str, Any]]) -> None:
            path, body = item
            answer = self.client.post(path, json=body)
            if answer.status_code not in (201, 409):
                raise RuntimeError(f"POST {path}: {answer.status_code} {answer.text[:300]}")

        with concurrent.futures.ThreadPoolExecutor(8) as pool:
            list(pool.map(post, objects))

    def lists(self) -> dict[str, float]:
        """LIST requests served so far, by resource."""
        text = self.client.get("/metrics").text
        out: dict[str, float] = {}
        for match in _LIST.finditer(text):
            labels = dict(re.findall(r'(\w+)="([^"]*)"', match["labels"]))
            if labels.get("verb") == "LIST":
                out[labels.get("resource", "")] = out.get(labels.get("resource", ""), 0) + float(match["value"])
        return out


# The child's own peak RSS, read from /proc/self/status as it exits. Not wait4's ru_maxrss: Linux keeps the maximum of
# the process before execve, so every child would count this benchmark's own memory (the 5,000 manifests) as its own.
PEAK = """
import atexit, sys
def _peak(path=sys.argv[1]):
    with open("/proc/self/status") as status:
        kib = next(line.split()[1] for line in status if line.startswith("VmHWM:"))
    with open(path, "w") as out:
        out.write(kib)
atexit.register(_peak)
sys.argv = sys.argv[2:]
"""
AUDIT = PEAK + "from admission.cli.main import main\nraise SystemExit(main(sys.argv))\n"


def run_measured(code: str, args: list[str], *, stdout: Path) -> dict[str, Any]:
    """Run `python -c code args` in a child: wall time, its own peak RSS, CPU time (wait4), exit code."""
    peak = stdout.with_suffix(".peak")
    with open(stdout, "wb") as out:
        started = time.monotonic()
        child = subprocess.Popen([sys.executable, "-c", code, str(peak), *args], stdout=out, stderr=subprocess.PIPE)
        stderr = child.stderr.read().decode() if child.stderr else ""
        _, status, usage = os.wait4(child.pid, 0)
        wall = time.monotonic() - started
    return {"wall_s": round(wall, 3), "peak_rss_mib": round(int(peak.read_text()) / 1024, 1),
            "exit": os.waitstatus_to_exitcode(status), "cpu_s": round(usage.ru_utime + usage.ru_stime, 3),
            "stderr": stderr.strip().splitlines()[-3:]}


BASELINE = """
import json
from kubernetes import client, config
configuration = client.Configuration()
config.load_kube_config(config_file=sys.argv[0], client_configuration=configuration)
configuration.retries = False
api = client.ApiClient(configuration)
core, apps, batch = client.CoreV1Api(api), client.AppsV1Api(api), client.BatchV1Api(api)
calls = [core.list_limit_range_for_all_namespaces, core.list_pod_for_all_namespaces,
         apps.list_replica_set_for_all_namespaces, batch.list_job_for_all_namespaces,
         apps.list_deployment_for_all_namespaces, apps.list_stateful_set_for_all_namespaces,
         apps.list_daemon_set_for_all_namespaces, batch.list_cron_job_for_all_namespaces,
         core.list_replication_controller_for_all_namespaces]
objects = 0
for call in calls:
    token = None
    while True:
        page = json.loads(call(limit=int(sys.argv[1]), _continue=token, _preload_content=False).data)
        objects += len(page["items"])
        token = page["metadata"].get("continue")
        del page
        if not token:
            break
print(objects)
"""


def audit_case(plane: Any, api: Api, work: Path, label: str, objects: int, *extra: str) -> dict[str, Any]:  # noqa: ANN401
    before = api.lists()
    result = run_measured(AUDIT, ["audit", "--kubeconfig", str(plane.admin_kubeconfig), "-A", "--offline",
                                  "--format", "json", "--chunk-size", str(LIMIT), "--qps", "50", "--burst", "100",
                                  *extra], stdout=work / f"{label}.json")
    after = api.lists()
    listed = {r: int(after.get(r, 0) - before.get(r, 0)) for r in after if after.get(r, 0) - before.get(r, 0)}
    report = json.loads((work / f"{label}.json").read_text())
    result.update(objects=report["summary"]["objects"], findings=len(report["findings"]),
                  list_calls=listed, list_calls_total=sum(listed.values()),
                  ms_per_object=round(result["wall_s"] * 1000 / max(1, objects), 3))
    return result


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", default=str(ROOT / "bench" / "results" / "audit.json"))
    parser.add_argument("--objects", type=int, default=5000)
    parser.add_argument("--small", type=int, default=500)
    args = parser.parse_args()

    from tests.cluster.controlplane import ControlPlane, binaries_dir

    folder, why = binaries_dir()
    if folder is None:
        print(f"bench/audit.py skipped: {why}")
        return 0
    work = Path(tempfile.mkdtemp(prefix="admission-audit-bench-"))
    plane = ControlPlane(bin=folder, root=work / "plane")
    (work / "plane").mkdir()
    plane.start()
    results: dict[str, Any] = {"cpus": os.cpu_count(), "limit": LIMIT, "mix": dict(MIX),
                               "per_namespace": PER_NAMESPACE}
    try:
        api = Api(plane)
        created = 0
        for label, total in (("small", args.small), ("large", args.objects)):
            todo = plan(created, total - created)
            namespaces = sorted({f"bench-{i // PER_NAMESPACE:03d}" for _, i in todo})
            for ns in namespaces:
                api.client.post("/api/v1/namespaces", json={"apiVersion": "v1", "kind": "Namespace",
                                                            "metadata": {"name": ns}})
                api.client.post(f"/api/v1/namespaces/{ns}/serviceaccounts",
                                json={"apiVersion": "v1", "kind": "ServiceAccount", "metadata": {"name": "default"}})
            began = time.monotonic()
            api.create([manifest(kind, i, f"bench-{i // PER_NAMESPACE:03d}") for kind, i in todo])
            print(f"created {len(todo)} objects in {time.monotonic() - began:.1f} s ({total} in all)", flush=True)
            created = total
            before = api.lists()
            baseline = run_measured(PEAK + BASELINE, [str(plane.admin_kubeconfig), str(LIMIT)],
                                    stdout=work / f"baseline-{label}.txt")
            after = api.lists()
            baseline["list_calls_total"] = int(sum(after.values()) - sum(before.values()))
            baseline["objects"] = int((work / f"baseline-{label}.txt").read_text().strip() or 0)
            ours = audit_case(plane, api, work, f"audit-{label}", total)
            per_kind = {kind: max(1, math.ceil(n / LIMIT)) for kind, n in _counts(plan(0, total)).items()}
            bound = sum(per_kind.values()) + (len(RESOURCES) - len(per_kind))  # kinds with no object: one call
            ours["list_calls_bound"] = bound
            results[label] = {"objects": total, "baseline": baseline, "audit": ours,
                              "ratio_wall": round(ours["wall_s"] / baseline["wall_s"], 2),
                              "added_rss_mib": round(ours["peak_rss_mib"] - baseline["peak_rss_mib"], 1)}
            print(json.dumps({label: results[label]}, indent=1), flush=True)
        results["rss_growth_mib_small_to_large"] = round(results["large"]["audit"]["peak_rss_mib"]
                                                         - results["small"]["audit"]["peak_rss_mib"], 1)
        results["rss_within_30_mib"] = results["rss_growth_mib_small_to_large"] <= 30
        # The same 5,000 with the reports written (the CRDs as the chart installs them).
        crds = sorted((ROOT / "charts" / "admission" / "files" / "report-crds" / "wgpolicyk8s.io").glob("*.yaml"))
        for crd in crds:
            plane.kubectl("apply", "--server-side", "-f", str(crd))
        plane.kubectl("wait", "--for=condition=Established", "crd", "--all", "--timeout=60s")
        results["large_write_reports"] = audit_case(plane, api, work, "audit-large-reports", args.objects,
                                                    "--write-reports")
    finally:
        plane.stop()
    Path(args.out).write_text(json.dumps(results, indent=2) + "\n")
    print(f"wrote {args.out}")
    return 0 if results.get("rss_within_30_mib") else 1


def _counts(planned: list[tuple[str, int]]) -> dict[str, int]:
    out: dict[str, int] = {}
    for kind, _ in planned:
        resource = RESOURCES[kind][1]
        out[resource] = out.get(resource, 0) + 1
    return out


if __name__ == "__main__":
    raise SystemExit(main())
