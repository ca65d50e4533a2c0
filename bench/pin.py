"""`admission-cli pin` on 200 references against a real registry on loopback (Debian docker-registry), as users run
it: the installed CLI in a fresh process each time, request counts from the registry's own access log.

Inputs: a compose file with 100 services and a Kubernetes stream of 100 Deployments, 200 distinct tags, each its
own image. Cases, each on a fresh unpinned copy of the files:
1. cold: an empty --cache-dir (one HEAD per tag, and one /v2/ ping);
2. warm: the cache the cold run left (tags younger than images.tag_ttl: no request at all);
3. `pin --check` (offline: the CI guard).
Baselines, measured in every round right after ours (so a load change on a shared machine moves both; each ratio is
the median of the rounds' ratios): a minimal httpx script in a fresh process (import httpx, one client, a HEAD per
tag reading Docker-Content-Digest, sequential), and `skopeo inspect --raw | sha256sum` per reference.

Usage: python bench/pin.py [--refs N] [--runs N]  -> prints the figures and writes bench/results/pin.json
"""

from __future__ import annotations

import argparse
import gzip
import hashlib
import json
import os
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx

ROOT = Path(__file__).resolve().parents[1]
sys.path.append(str(ROOT))  # for tests.images only: `admission` itself comes from the installed package

from tests.images.registry import Registry, free_port

CLI = str(Path(sys.executable).parent / "admission-cli")
OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
REPO = "bench/pin"

HEAD_LOOP = """
import sys, httpx
host, tags = sys.argv[1], sys.argv[2:]
with httpx.Client() as client:
    for tag in tags:
        r = client.head(f"http://{host}/v2/%s/manifests/{tag}" % "REPO",
                        headers={"Accept": "application/vnd.oci.image.index.v1+json, "
                                           "application/vnd.oci.image.manifest.v1+json"})
        assert r.status_code == 200 and r.headers["docker-content-digest"].startswith("sha256:")
""".replace("REPO", REPO)


def _upload(client: httpx.Client, host: str, data: bytes, repo: str = REPO) -> dict[str, object]:
    digest = "sha256:" + hashlib.sha256(data).hexdigest()
    start = client.post(f"http://{host}/v2/{repo}/blobs/uploads/")
    location = httpx.URL(f"http://{host}").join(start.headers["location"])
    client.put(location.copy_merge_params({"digest": digest}), content=data,
               headers={"Content-Type": "application/octet-stream"}).raise_for_status()
    return {"digest": digest, "size": len(data)}


def push_images(host: str, count: int, repo: str = REPO) -> list[str]:
    """`count` distinct images (each its own config) under tags t000..., through the registry API. Returns tags."""
    tags = []
    with httpx.Client() as client:
        layer = _upload(client, host, gzip.compress(b"", mtime=0), repo)  # an empty layer; configs make them distinct
        for n in range(count):
            config = json.dumps({"architecture": "amd64", "os": "linux", "config": {"User": "1000"},
                                 "rootfs": {"type": "layers", "diff_ids": [
                                     "sha256:" + hashlib.sha256(b"").hexdigest()]},
                                 "history": [{"created_by": f"bench image {n}"}]}).encode()
            manifest = json.dumps({"schemaVersion": 2, "mediaType": OCI_MANIFEST,
                                   "config": {"mediaType": "application/vnd.oci.image.config.v1+json",
                                              **_upload(client, host, config, repo)},
                                   "layers": [{"mediaType": "application/vnd.oci.image.layer.v1.tar+gzip",
                                               **layer}]}).encode()
            tag = f"t{n:03d}"
            client.put(f"http://{host}/v2/{repo}/manifests/{tag}", content=manifest,
                       headers={"Content-Type": OCI_MANIFEST}).raise_for_status()
            tags.append(tag)
    return tags


def write_inputs(folder: Path, host: str, tags: list[str]) -> None:
    """Half the references in one compose file, half in a Kubernetes stream; a repository of its own."""
    folder.mkdir(parents=True)
    (folder / ".git").mkdir()
    half = len(tags) // 2
    compose = ["# bench: one compose file", "services:"]
    for tag in tags[:half]:
        compose += [f"  svc-{tag}:", f"    image: {host}/{REPO}:{tag}   # service {tag}"]
    (folder / "compose.yaml").write_text("\n".join(compose) + "\n")
    docs = []
    for tag in tags[half:]:
        docs.append(f"apiVersion: apps/v1\nkind: Deployment\nmetadata:\n  name: d-{tag}\nspec:\n  template:\n"
                    f"    spec:\n      containers:\n        - name: app\n          image: \"{host}/{REPO}:{tag}\"\n")
    (folder / "deploy.yaml").write_text("---\n".join(docs))


CPU: dict[str, list[float]] = {}  # case -> CPU seconds (user + system) of its process, per round


def _children_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def timed(cmd: list[str], cwd: Path | None = None, *, ok: tuple[int, ...] = (0,), case: str = "") -> float:
    """Wall time of `cmd`; its CPU time goes to CPU[case] (less sensitive than wall time to a busy machine)."""
    cpu = _children_cpu()
    start = time.perf_counter()
    proc = subprocess.run(cmd, cwd=cwd, capture_output=True, text=True, check=False)
    elapsed = time.perf_counter() - start
    if case:
        CPU.setdefault(case, []).append(_children_cpu() - cpu)
    if proc.returncode not in ok:
        raise RuntimeError(f"{' '.join(cmd[:3])} exited {proc.returncode}: {proc.stdout[-500:]} {proc.stderr[-500:]}")
    return elapsed


def requests_since(registry: Registry, mark: int) -> dict[str, int]:
    counts: dict[str, int] = {}
    for method, path, _status in registry.since(mark):
        kind = "ping" if path.rstrip("/") == "/v2" else method
        counts[kind] = counts.get(kind, 0) + 1
    return counts


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--refs", type=int, default=200)
    parser.add_argument("--runs", type=int, default=3)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="bench-pin-") as tmp:
        work = Path(tmp)
        (work / "registry").mkdir()
        registry = Registry(work / "registry", free_port()).start()
        try:
            tags = push_images(registry.host, args.refs)
            policy = work / "policy.yaml"
            policy.write_text(f"images:\n  allowed_registries: ['{registry.host}']\n"
                              f"  insecure_registries: ['{registry.host}']\n")
            pin = [CLI, "pin", "--policy", str(policy)]
            rounds: list[dict[str, float]] = []
            cold_requests: dict[str, int] = {}
            warm_requests: dict[str, int] = {}
            # Each round measures ours and both baselines back to back, so a load change on a shared machine moves
            # all of them: the ratios are per round, then the median.
            for run in range(args.runs):
                figures: dict[str, float] = {}
                cache = work / f"cache-{run}"
                for case in ("cold", "warm"):
                    inputs = work / f"{case}-{run}"
                    write_inputs(inputs, registry.host, tags)
                    mark = registry.mark()
                    figures[case] = timed([*pin, "--cache-dir", str(cache), "."], cwd=inputs, case=case)
                    (cold_requests if case == "cold" else warm_requests).update(requests_since(registry, mark))
                    pinned = (inputs / "compose.yaml").read_text().count("@sha256:")
                    pinned += (inputs / "deploy.yaml").read_text().count("@sha256:")
                    assert pinned == len(tags), f"{case}: {pinned} of {len(tags)} pinned"
                unpinned = work / f"check-{run}"
                write_inputs(unpinned, registry.host, tags)
                figures["check"] = timed([CLI, "pin", "--check", "."], cwd=unpinned, ok=(1,), case="check")
                shutil.rmtree(unpinned)
                figures["head_loop"] = timed([sys.executable, "-c", HEAD_LOOP, registry.host, *tags], case="head_loop")
                start = time.perf_counter()
                for tag in tags:
                    raw = subprocess.run(["skopeo", "inspect", "--raw", "--tls-verify=false",
                                          f"docker://{registry.host}/{REPO}:{tag}"], capture_output=True,
                                         check=True).stdout
                    hashlib.sha256(raw).hexdigest()  # what `| sha256sum` computes
                figures["skopeo"] = time.perf_counter() - start
                rounds.append(figures)
        finally:
            registry.stop()
    median = statistics.median

    def of(case: str) -> float:
        return median(r[case] for r in rounds)

    def ratio(case: str, baseline: str) -> float:
        return median(r[case] / r[baseline] for r in rounds)

    results = {
        "references": len(tags),
        "runs": args.runs,
        "pin_cold_s": of("cold"), "pin_cold_requests": cold_requests,
        "pin_warm_s": of("warm"), "pin_warm_requests": warm_requests,
        "pin_check_s": of("check"),
        "baseline_httpx_head_loop_s": of("head_loop"),
        "baseline_skopeo_inspect_raw_s": of("skopeo"),
        "ratio_cold_vs_head_loop": ratio("cold", "head_loop"),
        "ratio_warm_vs_head_loop": ratio("warm", "head_loop"),
        "ratio_cold_vs_skopeo": ratio("cold", "skopeo"),
        "rounds": rounds,
    }
    save("pin", results)


def save(name: str, results: dict[str, Any]) -> None:
    """bench/results/<name>.json, with the load average the run ended at and the CPU medians of its cases."""
    results |= {"cpu_s": {case: statistics.median(values) for case, values in CPU.items()},
                "load_average_after": os.getloadavg()[0]}
    out_dir = ROOT / "bench" / "results"
    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / f"{name}.json").write_text(json.dumps(results, indent=2) + "\n")
    print(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
