"""Webhook throughput and latency under wrk (Debian), against a minimal echo in the same run (issues 7, 15).

Load: wrk with a Lua script that POSTs a realistic 3-container Deployment AdmissionReview (kubectl's
last-applied annotation and managedFields included, ~7 KB) whose uid, name and image tags change on every
request, 32 connections, over TLS, one uvicorn worker, the audit log on as shipped (to a file, as a container
runtime collects stdout) and every signal of issue 15 on (a separate metrics port, the standard collectors, labels by
kind, operation and dry_run). The baseline is the minimal echo on the same uvicorn, TLS and worker count: a route
that `json.loads` the body and returns `json.dumps` of an allow in a raw Response (no request.json(), no dict
encoding by FastAPI). Also: 2 workers each, a deny-heavy request, and requests that each
carry one cold image on a loopback docker-registry. And what POST /mutate adds to a Pod's admission against
validation alone, warm and cold, per Pod (p50, p99; `mutation_latency`).

Reported per case: requests/s, p50/p99 latency, non-2xx answers, and the server's own CPU microseconds per
request (from /proc: user+system time of the server processes / requests answered), which is what a request
costs us regardless of what wrk's closed loop does to latency.

    python bench/webhook.py [--duration 10] [--connections 32] [--out bench/results/webhook.json]
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent
sys.path.insert(0, str(ROOT))

# --- the baseline server (this file runs it with --baseline-app) ------------------------------------------------


def baseline_app() -> Any:
    from fastapi import FastAPI, Request, Response

    globals()["Request"] = Request  # FastAPI resolves the (postponed) annotations through the module's globals
    globals()["Response"] = Response
    app = FastAPI()

    @app.post("/validate")
    async def validate(request: Request) -> Response:
        review = json.loads(await request.body())
        answer = {"apiVersion": review["apiVersion"], "kind": "AdmissionReview",
                  "response": {"uid": review["request"]["uid"], "allowed": True}}
        return Response(json.dumps(answer), media_type="application/json")

    return app


# --- requests -------------------------------------------------------------------------------------------------

MARK = "\x00"


def _container(index: int, *, deny: bool, registry: str) -> dict[str, Any]:
    name = ("api", "worker", "metrics-exporter")[index]
    image = f"{registry}/team/{name}:{MARK}TAG{index}{MARK}"
    if deny:
        return {"name": name, "image": f"{registry}/team/{name}:latest", "imagePullPolicy": "Always",
                "ports": [{"containerPort": 8080 + index, "hostPort": 8080 + index, "protocol": "TCP"}],
                "securityContext": {"runAsUser": 0, "privileged": index == 0},
                "env": [{"name": "LOG_LEVEL", "value": "info"}]}
    return {
        "name": name, "image": image, "imagePullPolicy": "IfNotPresent",
        "args": ["--port", str(8080 + index), "--log-format", "json"],
        "ports": [{"containerPort": 8080 + index, "name": "http", "protocol": "TCP"}],
        "env": [{"name": "LOG_LEVEL", "value": "info"}, {"name": "POD_NAME", "valueFrom": {"fieldRef": {
            "apiVersion": "v1", "fieldPath": "metadata.name"}}}],
        "resources": {"limits": {"cpu": "500m", "memory": "256Mi"}, "requests": {"cpu": "100m", "memory": "128Mi"}},
        "securityContext": {"runAsNonRoot": True, "runAsUser": 10001, "allowPrivilegeEscalation": False,
                            "readOnlyRootFilesystem": True, "capabilities": {"drop": ["ALL"]}},
        "livenessProbe": {"httpGet": {"path": "/healthz", "port": 8080 + index}, "periodSeconds": 10},
        "readinessProbe": {"httpGet": {"path": "/readyz", "port": 8080 + index}, "periodSeconds": 5},
        "terminationMessagePath": "/dev/termination-log", "terminationMessagePolicy": "File",
        "volumeMounts": [{"name": "tmp", "mountPath": "/tmp"}],
    }


def review_template(*, deny: bool = False, registry: str = "registry.example.com") -> str:
    """A Deployment CREATE review as the API server sends it, with MARKed placeholders for UID, NAME, TAG0..2."""
    name = f"{MARK}NAME{MARK}"
    spec = {"replicas": 3, "revisionHistoryLimit": 10, "progressDeadlineSeconds": 600,
            "selector": {"matchLabels": {"app.kubernetes.io/name": "shop"}},
            "strategy": {"type": "RollingUpdate", "rollingUpdate": {"maxSurge": "25%", "maxUnavailable": "25%"}},
            "template": {"metadata": {"labels": {"app.kubernetes.io/name": "shop", "app.kubernetes.io/part-of": "store"},
                                      "annotations": {"prometheus.io/scrape": "true"}},
                         "spec": {"serviceAccountName": "shop", "terminationGracePeriodSeconds": 30,
                                  "dnsPolicy": "ClusterFirst", "restartPolicy": "Always",
                                  "schedulerName": "default-scheduler",
                                  "securityContext": {"seccompProfile": {"type": "RuntimeDefault"}},
                                  "volumes": [{"name": "tmp", "emptyDir": {}}],
                                  "containers": [_container(i, deny=deny, registry=registry) for i in range(3)]}}}
    last_applied = json.dumps({"apiVersion": "apps/v1", "kind": "Deployment",
                               "metadata": {"name": name, "namespace": "shop"}, "spec": spec})
    obj = {"apiVersion": "apps/v1", "kind": "Deployment",
           "metadata": {"name": name, "namespace": "shop", "generation": 1,
                        "labels": {"app.kubernetes.io/name": "shop", "app.kubernetes.io/managed-by": "kubectl"},
                        "annotations": {"kubectl.kubernetes.io/last-applied-configuration": last_applied},
                        "managedFields": [{"manager": "kubectl-client-side-apply", "operation": "Update",
                                           "apiVersion": "apps/v1", "time": "2026-01-01T00:00:00Z",
                                           "fieldsType": "FieldsV1",
                                           "fieldsV1": {"f:metadata": {"f:annotations": {".": {}}},
                                                        "f:spec": {"f:replicas": {}, "f:template": {}}}}]},
           "spec": spec, "status": {}}
    review = {"apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview", "request": {
        "uid": f"{MARK}UID{MARK}", "kind": {"group": "apps", "version": "v1", "kind": "Deployment"},
        "resource": {"group": "apps", "version": "v1", "resource": "deployments"},
        "requestKind": {"group": "apps", "version": "v1", "kind": "Deployment"},
        "requestResource": {"group": "apps", "version": "v1", "resource": "deployments"},
        "name": name, "namespace": "shop", "operation": "CREATE",
        "userInfo": {"username": "system:serviceaccount:ci:deployer", "uid": "5f1c", "groups": [
            "system:serviceaccounts", "system:serviceaccounts:ci", "system:authenticated"], "extra": {}},
        "object": obj, "oldObject": None, "dryRun": False,
        "options": {"kind": "CreateOptions", "apiVersion": "meta.k8s.io/v1", "fieldManager": "kubectl-client-side-apply"}}}
    # json.dumps escapes the marks (twice inside the last-applied annotation, itself JSON text)
    return json.dumps(review).replace("\\\\u0000", MARK).replace("\\u0000", MARK)


def lua_script(template: str) -> str:
    """A wrk script: request() splices a fresh uid, name and tags into the template on every call."""
    pieces = template.split(MARK)
    parts = []
    for i, piece in enumerate(pieces):
        if i % 2 == 0:
            assert "]==]" not in piece
            parts.append(f"[==[{piece}]==]")
        else:
            parts.append({"UID": "uid", "NAME": "name", "TAG0": "tag0", "TAG1": "tag1", "TAG2": "tag2"}[piece])
    body = ", ".join(parts)
    return f"""
local counter = 0
local thread_id = 0
local n = 0
setup = function(thread)
  thread:set("thread_id", n)
  n = n + 1
end
wrk.method = "POST"
wrk.headers["Content-Type"] = "application/json"
request = function()
  counter = counter + 1
  local id = thread_id * 100000000 + counter
  local uid = string.format("%08x-0000-4000-8000-%012x", thread_id, counter)
  local name = "shop-" .. id
  local tag0 = "1." .. (id % 997) .. "." .. counter
  local tag1 = "2." .. (id % 991) .. "." .. counter
  local tag2 = "3." .. (id % 983) .. "." .. counter
  local body = table.concat({{{body}}})
  return wrk.format(nil, "/validate", nil, body)
end
"""


# --- servers ----------------------------------------------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def make_tls(folder: Path) -> tuple[Path, Path]:
    import trustme

    ca = trustme.CA()
    cert = ca.issue_cert("127.0.0.1")
    cert.private_key_pem.write_to_path(str(folder / "tls.key"))
    cert.cert_chain_pems[0].write_to_path(str(folder / "tls.crt"))
    ca.cert_pem.write_to_path(str(folder / "ca.crt"))
    return folder / "tls.crt", folder / "tls.key"


class Server:
    def __init__(self, args: list[str], port: int, log: Path, env: dict[str, str] | None = None) -> None:
        self.port = port
        self.log = log
        full_env = {k: v for k, v in os.environ.items() if not k.startswith("ADMISSION_")}
        full_env.update(env or {})
        self.out = open(log, "wb")  # noqa: SIM115
        self.proc = subprocess.Popen(args, stdout=self.out, stderr=subprocess.STDOUT, env=full_env, cwd=ROOT,
                                     start_new_session=True)
        self._wait()

    def _wait(self) -> None:
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"server exited: {self.log.read_text()[-2000:]}")
            with socket.socket() as s:
                if s.connect_ex(("127.0.0.1", self.port)) == 0:
                    time.sleep(0.5)  # workers (with --workers 2) finish starting
                    return
            time.sleep(0.05)
        raise RuntimeError("server did not listen")

    def pids(self) -> list[int]:
        out = [self.proc.pid]
        try:
            children = Path(f"/proc/{self.proc.pid}/task/{self.proc.pid}/children").read_text().split()
            out += [int(c) for c in children]
        except OSError:
            pass
        return out

    def cpu_seconds(self) -> float:
        tick = os.sysconf("SC_CLK_TCK")
        total = 0.0
        for pid in self.pids():
            try:
                fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
                total += (int(fields[11]) + int(fields[12])) / tick  # utime, stime
            except (OSError, IndexError, ValueError):
                pass
        return total

    def stop(self) -> None:
        if self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
        self.out.close()


def ours(tls: tuple[Path, Path], policy: Path, work: Path, *, workers: int = 1, tag: str = "ours",
         env: dict[str, str] | None = None) -> Server:
    port = free_port()
    args = [str(BIN / "admission-cli"), "serve", "--host", "127.0.0.1", "--port", str(port), "--tls-cert", str(tls[0]),
            "--tls-key", str(tls[1]), "--policy", str(policy), "--workers", str(workers), "--log-level", "warning"]
    env = {"ADMISSION_DRAIN_DELAY": "0", "ADMISSION_GRACE": "5", "ADMISSION_METRICS_PORT": str(free_port()),
           **(env or {})}
    if workers > 1:
        env["ADMISSION_METRICS_DIR"] = str(work / f"metrics-{tag}")
    return Server(args, port, work / f"{tag}.log", env)


def baseline(tls: tuple[Path, Path], work: Path, *, workers: int = 1) -> Server:
    port = free_port()
    args = [sys.executable, "-m", "uvicorn", "--factory", "--app-dir", str(ROOT / "bench"), "webhook:baseline_app",
            "--host", "127.0.0.1", "--port", str(port), "--ssl-certfile", str(tls[0]), "--ssl-keyfile", str(tls[1]),
            "--workers", str(workers), "--no-access-log", "--log-level", "warning", "--no-server-header"]
    return Server(args, port, work / f"baseline-{workers}.log")


# --- wrk --------------------------------------------------------------------------------------------------------

_UNITS = {"us": 1e-6, "ms": 1e-3, "s": 1.0, "m": 60.0}


def _seconds(text: str) -> float:
    match = re.fullmatch(r"([\d.]+)(us|ms|s|m)", text.strip())
    if not match:
        raise ValueError(text)
    return float(match.group(1)) * _UNITS[match.group(2)]


def run_wrk(server: Server, script: Path, *, duration: int, connections: int, threads: int = 2) -> dict[str, Any]:
    before = server.cpu_seconds()
    proc = subprocess.run(["wrk", "-t", str(threads), "-c", str(connections), "-d", f"{duration}s", "--latency",
                           "--timeout", "10s", "-s", str(script), f"https://127.0.0.1:{server.port}/validate"],
                          capture_output=True, text=True, timeout=duration + 60)
    cpu = server.cpu_seconds() - before
    out = proc.stdout
    if proc.returncode != 0:
        raise RuntimeError(f"wrk failed: {proc.stderr}\n{out}")
    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))  # type: ignore[union-attr]
    total = int(re.search(r"(\d+) requests in", out).group(1))  # type: ignore[union-attr]
    p50 = _seconds(re.search(r"^\s+50%\s+(\S+)", out, re.M).group(1))  # type: ignore[union-attr]
    p99 = _seconds(re.search(r"^\s+99%\s+(\S+)", out, re.M).group(1))  # type: ignore[union-attr]
    non2xx = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    errors = re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", out)
    return {"rps": rps, "requests": total, "p50_ms": round(p50 * 1000, 2), "p99_ms": round(p99 * 1000, 2),
            "non_2xx": int(non2xx.group(1)) if non2xx else 0,
            "socket_errors": sum(int(x) for x in errors.groups()) if errors else 0,
            "server_cpu_us_per_request": round(cpu / total * 1e6, 1) if total else None}


def check_answer(server: Server, template: str, *, expect_allowed: bool) -> None:
    """One request by hand: the answer is the webhook's real decision, not an error page."""
    import ssl
    import urllib.request

    body = (template.replace(f"{MARK}UID{MARK}", str(uuid.uuid4())).replace(f"{MARK}NAME{MARK}", "shop-check")
            .replace(f"{MARK}TAG0{MARK}", "1.0.0").replace(f"{MARK}TAG1{MARK}", "1.0.0")
            .replace(f"{MARK}TAG2{MARK}", "1.0.0"))
    context = ssl._create_unverified_context()  # noqa: S323 - loopback, our own throwaway certificate
    request = urllib.request.Request(f"https://127.0.0.1:{server.port}/validate", data=body.encode(),
                                     headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(request, context=context, timeout=10) as response:
        answer = json.loads(response.read())
    assert answer["response"]["allowed"] is expect_allowed, answer


# --- cold images on a loopback registry -------------------------------------------------------------------------


def cold_images(work: Path, tls: tuple[Path, Path], count: int = 30) -> dict[str, Any]:
    """`count` requests, each naming one image tag nobody looked up before, on a real docker-registry."""
    from tests.images import oci
    from tests.images.registry import Registry

    import httpx

    (work / "registry").mkdir(parents=True, exist_ok=True)
    registry = Registry(work / "registry", free_port()).start()
    try:
        layout = work / "layout"
        oci.push(oci.build(layout, "bench", user="10001"), registry.host, "team/api:seed")
        base = f"http://{registry.host}/v2/team/api/manifests/"
        accept = "application/vnd.oci.image.manifest.v1+json"
        manifest = httpx.get(base + "seed", headers={"Accept": accept}).json()
        for i in range(count):  # a distinct manifest (its own digest) per tag: tag, manifest and config all cold
            manifest["annotations"] = {"bench.admission/n": str(i)}
            httpx.put(base + f"cold-{i}", content=json.dumps(manifest).encode(),
                      headers={"Content-Type": accept}).raise_for_status()
        policy = work / "cold-policy.yaml"
        policy.write_text(f"images:\n  resolve: auto\n  on_error: deny\n  allowed_registries: [{registry.host}]\n"
                          f"  insecure_registries: [{registry.host}]\n")
        server = ours(tls, policy, work, tag="cold")
        try:
            template = review_template(registry=registry.host)
            timings = []
            import ssl

            context = ssl.create_default_context(cafile=str(tls[0].parent / "ca.crt"))
            with httpx.Client(verify=context, timeout=10) as client:
                for i in range(count):
                    body = (template.replace(f"{MARK}UID{MARK}", str(uuid.uuid4()))
                            .replace(f"{MARK}NAME{MARK}", f"cold-{i}").replace("team/worker", "team/api")
                            .replace("team/metrics-exporter", "team/api")
                            .replace(f"{MARK}TAG0{MARK}", f"cold-{i}").replace(f"{MARK}TAG1{MARK}", f"cold-{i}")
                            .replace(f"{MARK}TAG2{MARK}", f"cold-{i}"))
                    started = time.perf_counter()
                    answer = client.post(f"https://127.0.0.1:{server.port}/validate", content=body,
                                         headers={"Content-Type": "application/json"}).json()
                    timings.append(time.perf_counter() - started)
                    assert answer["response"]["allowed"] is True, answer
                warm = []
                for i in range(count):
                    body = (template.replace(f"{MARK}UID{MARK}", str(uuid.uuid4()))
                            .replace(f"{MARK}NAME{MARK}", f"warm-{i}").replace("team/worker", "team/api")
                            .replace("team/metrics-exporter", "team/api")
                            .replace(f"{MARK}TAG0{MARK}", f"cold-{i}").replace(f"{MARK}TAG1{MARK}", f"cold-{i}")
                            .replace(f"{MARK}TAG2{MARK}", f"cold-{i}"))
                    started = time.perf_counter()
                    client.post(f"https://127.0.0.1:{server.port}/validate", content=body,
                                headers={"Content-Type": "application/json"}).raise_for_status()
                    warm.append(time.perf_counter() - started)
        finally:
            server.stop()
        timings.sort()
        warm.sort()
        return {"requests": count, "cold_p50_ms": round(timings[len(timings) // 2] * 1000, 1),
                "cold_max_ms": round(timings[-1] * 1000, 1), "warm_p50_ms": round(warm[len(warm) // 2] * 1000, 2),
                "registry_requests_per_cold_request": round(
                    len([r for r in registry.requests() if r[1].startswith("/v2/team/api/")
                         and r[0] in ("HEAD", "GET")]) / count, 1)}
    finally:
        registry.stop()


# --- mutation: what /mutate adds to a Pod's admission ------------------------------------------------------------


def pod_review(images: list[str], name: str) -> dict[str, Any]:
    """A Pod CREATE review as a ReplicaSet's Pod reaches the webhooks (a controller's Pod, named here so that the
    audit lines of its two calls can be told apart)."""
    containers = []
    for index, image in enumerate(images):
        container = _container(index, deny=False, registry="")
        container["image"] = image
        containers.append(container)
    obj = {"apiVersion": "v1", "kind": "Pod",
           "metadata": {"name": name, "generateName": "shop-", "namespace": "shop",
                        "labels": {"app.kubernetes.io/name": "shop"}},
           "spec": {"serviceAccountName": "shop", "securityContext": {"seccompProfile": {"type": "RuntimeDefault"}},
                    "volumes": [{"name": "tmp", "emptyDir": {}}], "containers": containers}}
    return {"apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview", "request": {
        "uid": str(uuid.uuid4()), "kind": {"group": "", "version": "v1", "kind": "Pod"},
        "resource": {"group": "", "version": "v1", "resource": "pods"}, "namespace": "shop", "operation": "CREATE",
        "userInfo": {"username": "system:serviceaccount:kube-system:replicaset-controller"},
        "object": obj, "oldObject": None, "dryRun": False}}


def _patched(review: dict[str, Any], answer: dict[str, Any]) -> dict[str, Any]:
    """The review the validating webhook gets after the API server applied /mutate's patch (a new uid, as it sends)."""
    import base64

    import jsonpatch

    out = json.loads(json.dumps(review))
    if "patch" in answer["response"]:
        ops = json.loads(base64.b64decode(answer["response"]["patch"]))
        out["request"]["object"] = jsonpatch.apply_patch(out["request"]["object"], ops)
    out["request"]["uid"] = str(uuid.uuid4())
    return out


def _quantiles(values: list[float]) -> dict[str, float]:
    ordered = sorted(values)
    return {"p50_ms": round(ordered[len(ordered) // 2] * 1000, 2),
            "p99_ms": round(ordered[min(len(ordered) - 1, int(len(ordered) * 0.99))] * 1000, 2)}


def mutation_latency(work: Path, tls: tuple[Path, Path], *, pairs: int = 600, tags: int = 20) -> dict[str, Any]:
    """The latency a Pod's admission gains from /mutate, against validation alone, on a loopback docker-registry.

    Per Pod (3 containers, each `team/<name>:<tag>`): "validate alone" is POST /validate of the Pod as written;
    "mutate + validate" is POST /mutate, its patch applied, then POST /validate of the pinned Pod, one after the
    other as the API server calls them. Warm: `tags` tags per image, every one looked up once before; the two paths
    alternate Pod by Pod, in random order, on one keep-alive TLS connection. Cold: every Pod names tags nobody
    looked up (distinct manifests), `pairs // 10` Pods per path. Also the registry requests per cold Pod, and the
    server's own time per call (the audit line's duration_ms: no client or TLS), which says what /mutate itself costs."""
    import random
    import ssl

    import httpx

    from tests.images import oci
    from tests.images.registry import Registry

    (work / "mutation-registry").mkdir(parents=True, exist_ok=True)
    registry = Registry(work / "mutation-registry", free_port()).start()
    names = ("api", "worker", "metrics-exporter")
    cold = max(10, pairs // 10)
    try:
        layout = work / "mutation-layout"
        oci.push(oci.build(layout, "bench", user="10001"), registry.host, "team/seed:1")
        accept = "application/vnd.oci.image.manifest.v1+json"
        manifest = httpx.get(f"http://{registry.host}/v2/team/seed/manifests/1", headers={"Accept": accept}).json()
        blobs = [manifest["config"]["digest"], *(layer["digest"] for layer in manifest["layers"])]
        for name in names:
            for digest in blobs:  # cross-repository mount: every repository holds the seed's blobs
                httpx.post(f"http://{registry.host}/v2/team/{name}/blobs/uploads/",
                           params={"mount": digest, "from": "team/seed"}).raise_for_status()
            for tag in [f"1.{i}.0" for i in range(tags)] + [f"cold-{path}-{i}" for path in "ab" for i in range(cold)]:
                manifest["annotations"] = {"bench.admission/tag": f"{name}:{tag}"}  # its own digest per tag
                httpx.put(f"http://{registry.host}/v2/team/{name}/manifests/{tag}",
                          content=json.dumps(manifest).encode(), headers={"Content-Type": accept}).raise_for_status()
        policy = work / "mutation-policy.yaml"
        policy.write_text(f"images:\n  resolve: auto\n  on_error: deny\n  allowed_registries: [{registry.host}]\n"
                          f"  insecure_registries: [{registry.host}]\n")
        server = ours(tls, policy, work, tag="mutation")
        context = ssl.create_default_context(cafile=str(tls[0].parent / "ca.crt"))
        base = f"https://127.0.0.1:{server.port}"
        try:
            with httpx.Client(verify=context, timeout=10) as client:
                def post(path: str, review: dict[str, Any]) -> tuple[dict[str, Any], float]:
                    started = time.perf_counter()
                    answer = client.post(base + path, content=json.dumps(review).encode(),
                                         headers={"Content-Type": "application/json"}).json()
                    return answer, time.perf_counter() - started

                def alone(images: list[str], name: str) -> float:
                    answer, took = post("/validate", pod_review(images, name))
                    assert answer["response"]["allowed"] is True, answer
                    return took

                def mutated(images: list[str], name: str) -> tuple[float, float]:
                    review = pod_review(images, name)
                    answer, first = post("/mutate", review)
                    assert "patch" in answer["response"], answer
                    verdict, second = post("/validate", _patched(review, answer))
                    assert verdict["response"]["allowed"] is True, verdict
                    return first, first + second

                def images_for(tag: str) -> list[str]:
                    return [f"{registry.host}/team/{name}:{tag}" for name in names]

                measured: dict[str, list[float]] = {"alone": [], "mutate": [], "both": []}
                mark = len(registry.requests())
                cold_alone = [alone(images_for(f"cold-a-{i}"), f"cold-a-{i}") for i in range(cold)]
                cold_requests_alone = len(registry.requests()) - mark
                cold_mutate, cold_both = [], []
                mark = len(registry.requests())
                for i in range(cold):
                    first, both = mutated(images_for(f"cold-b-{i}"), f"cold-b-{i}")
                    cold_mutate.append(first)
                    cold_both.append(both)
                cold_requests = len(registry.requests()) - mark
                for i in range(tags):  # warm every tag, both ways
                    alone(images_for(f"1.{i}.0"), "warm")
                    mutated(images_for(f"1.{i}.0"), "warm")
                rng = random.Random(26)
                audit_mark = len(server.log.read_text().splitlines())
                for i in range(pairs):
                    tag = f"1.{rng.randrange(tags)}.0"
                    order = [0, 1] if rng.random() < 0.5 else [1, 0]
                    for which in order:
                        if which == 0:
                            measured["alone"].append(alone(images_for(tag), f"alone-{i}"))
                        else:
                            first, both = mutated(images_for(tag), f"pinned-{i}")
                            measured["mutate"].append(first)
                            measured["both"].append(both)
            time.sleep(0.5)  # the server writes its audit lines at the end of an event-loop turn
            lines = [json.loads(line) for line in server.log.read_text().splitlines()[audit_mark:]
                     if line.startswith("{") and '"audit":"admission"' in line]
        finally:
            server.stop()
        seconds = {key: [line["duration_ms"] / 1000 for line in lines if match(line)] for key, match in (
            ("validate_alone", lambda a: a["name"].startswith("alone-")),
            ("mutate", lambda a: a.get("webhook") == "mutate"),
            ("validate_pinned", lambda a: a.get("webhook") is None and a["name"].startswith("pinned-")))}
        pinned_pairs = [m + v for m, v in zip(seconds["mutate"], seconds["validate_pinned"])]
        warm_alone, warm_both = _quantiles(measured["alone"]), _quantiles(measured["both"])
        cold_a, cold_b = _quantiles(cold_alone), _quantiles(cold_both)
        return {
            "pods": pairs, "containers_per_pod": len(names), "cold_pods_per_path": cold,
            "warm_validate_alone": warm_alone, "warm_mutate": _quantiles(measured["mutate"]),
            "warm_mutate_then_validate": warm_both,
            "warm_added_ms": {"p50": round(warm_both["p50_ms"] - warm_alone["p50_ms"], 2),
                              "p99": round(warm_both["p99_ms"] - warm_alone["p99_ms"], 2)},
            "cold_validate_alone": cold_a, "cold_mutate": _quantiles(cold_mutate), "cold_mutate_then_validate": cold_b,
            "cold_added_ms": {"p50": round(cold_b["p50_ms"] - cold_a["p50_ms"], 2),
                              "p99": round(cold_b["p99_ms"] - cold_a["p99_ms"], 2)},
            "registry_requests_per_cold_pod_alone": round(cold_requests_alone / cold, 1),
            "registry_requests_per_cold_pod_mutated": round(cold_requests / cold, 1),
            "server_validate_alone": _quantiles(seconds["validate_alone"]),
            "server_mutate": _quantiles(seconds["mutate"]),
            "server_validate_pinned": _quantiles(seconds["validate_pinned"]),
            "server_mutate_plus_validate": _quantiles(pinned_pairs),
            "warm_ratio_p50": round(warm_both["p50_ms"] / warm_alone["p50_ms"], 2),
        }
    finally:
        registry.stop()


# --- main -------------------------------------------------------------------------------------------------------


def _median(values: list[float]) -> float:
    ordered = sorted(values)
    middle = len(ordered) // 2
    return ordered[middle] if len(ordered) % 2 else (ordered[middle - 1] + ordered[middle]) / 2


def _median_run(runs: list[dict[str, Any]]) -> dict[str, Any]:
    out: dict[str, Any] = {key: round(_median([r[key] for r in runs]), 2)
                           for key in ("rps", "p50_ms", "p99_ms", "server_cpu_us_per_request")}
    out["requests"] = sum(r["requests"] for r in runs)
    out["non_2xx"] = sum(r["non_2xx"] for r in runs)
    out["socket_errors"] = sum(r["socket_errors"] for r in runs)
    out["rounds_rps"] = [r["rps"] for r in runs]
    out["rounds_cpu_us"] = [r["server_cpu_us_per_request"] for r in runs]
    return out


def _ratios(ours_runs: list[dict[str, Any]], base_runs: list[dict[str, Any]]) -> dict[str, float]:
    return {"rps": round(_median([o["rps"] / b["rps"] for o, b in zip(ours_runs, base_runs)]), 2),
            "p99": round(_median([o["p99_ms"] / b["p99_ms"] for o, b in zip(ours_runs, base_runs)]), 2),
            "added_cpu_us": round(_median([o["server_cpu_us_per_request"] - b["server_cpu_us_per_request"]
                                           for o, b in zip(ours_runs, base_runs)]), 1),
            "cpu": round(_median([o["server_cpu_us_per_request"] / b["server_cpu_us_per_request"]
                                  for o, b in zip(ours_runs, base_runs)]), 2)}


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--duration", type=int, default=10)
    parser.add_argument("--connections", type=int, default=32)
    parser.add_argument("--out", default=str(ROOT / "bench" / "results" / "webhook.json"))
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--skip-cold", action="store_true")
    parser.add_argument("--only-cold", action="store_true")
    parser.add_argument("--skip-mutation", action="store_true")
    parser.add_argument("--only-mutation", action="store_true",
                        help="measure /mutate's added latency alone and update that entry of --out")
    args = parser.parse_args()
    if not shutil.which("wrk"):
        print("wrk is required (Debian package wrk; `make bench` installs it)", file=sys.stderr)
        return 2
    work = Path(tempfile.mkdtemp(prefix="admission-bench-webhook-"))
    tls = make_tls(work)
    policy = work / "policy.yaml"
    policy.write_text("images: {resolve: false}\n")  # no public registry here; cold images are measured below
    allow, deny = work / "allow.lua", work / "deny.lua"
    allow_template, deny_template = review_template(), review_template(deny=True)
    allow.write_text(lua_script(allow_template))
    deny.write_text(lua_script(deny_template))
    results: dict[str, Any] = {"connections": args.connections, "duration_s": args.duration,
                               "request_bytes": len(allow_template), "cpus": os.cpu_count()}
    if args.only_cold:
        print(json.dumps(cold_images(work, tls), indent=2))
        return 0
    if args.only_mutation:
        measured = mutation_latency(work, tls)
        shutil.rmtree(work, ignore_errors=True)
        out = Path(args.out)
        recorded = json.loads(out.read_text()) if out.exists() else {}
        recorded["mutation"] = measured
        out.write_text(json.dumps(recorded, indent=2) + "\n")
        print(json.dumps(measured, indent=2))
        return 0
    try:
        for workers in (1, 2):
            base = baseline(tls, work, workers=workers)
            server = ours(tls, policy, work, workers=workers, tag=f"ours-{workers}w")
            try:
                check_answer(base, allow_template, expect_allowed=True)
                check_answer(server, allow_template, expect_allowed=True)
                check_answer(server, deny_template, expect_allowed=False)
                for target in (base, server):
                    run_wrk(target, allow, duration=2, connections=args.connections)  # warm-up
                # Interleaved rounds: this machine is shared, so its load moves; each ratio compares two runs
                # next to each other, and the medians are reported.
                rounds: dict[str, list[dict[str, Any]]] = {"baseline": [], "ours": [], "deny": []}
                for _ in range(args.rounds):
                    rounds["baseline"].append(run_wrk(base, allow, duration=args.duration, connections=args.connections))
                    rounds["ours"].append(run_wrk(server, allow, duration=args.duration, connections=args.connections))
                    if workers == 1:
                        rounds["deny"].append(run_wrk(server, deny, duration=args.duration,
                                                      connections=args.connections))
            finally:
                base.stop()
                server.stop()
            results[f"baseline_{workers}w"] = _median_run(rounds["baseline"])
            results[f"ours_{workers}w"] = _median_run(rounds["ours"])
            results[f"ratio_{workers}w"] = _ratios(rounds["ours"], rounds["baseline"])
            if workers == 1:
                results["ours_1w_deny_heavy"] = _median_run(rounds["deny"])
                results["ratio_1w_deny_heavy"] = _ratios(rounds["deny"], rounds["baseline"])
        if not args.skip_cold:
            results["cold_image"] = cold_images(work, tls)
        if not args.skip_mutation:
            results["mutation"] = mutation_latency(work, tls)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(results, indent=2) + "\n")
    print(json.dumps(results, indent=2))
    goal = results["ratio_1w"]
    # CPU per request, not requests/s, is the goal (issue 22): on this shared machine requests/s against the echo
    # swung from 0.43x to 0.72x between runs, CPU time per request much less; requests/s and p99 are reported beside.
    ok = goal["cpu"] <= 1.35 and results["ours_1w"]["non_2xx"] == 0 and results["baseline_1w"]["non_2xx"] == 0
    print(f"goal (CPU per request <= 1.35x the echo's with 1 worker, zero non-2xx): {'met' if ok else 'NOT met'} "
          f"({goal['cpu']}x; requests/s {goal['rps']}x, p99 {goal['p99']}x)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
