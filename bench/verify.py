"""image-signature on 200 signed references against a real registry on loopback (Debian docker-registry: no referrers
API, so cosign v3 writes its fallback tag), as users run it: the installed `admission-cli check --resolve-images` in a
fresh process, request counts from the registry's own access log.

Setup: 200 distinct images (bench/pin.py's), each signed by the real cosign v3.1.3 (a bundle). Input: one Kubernetes
stream of 200 Pods whose policy requires a signature by that key.
Cases: cold (an empty --cache-dir), warm (the cache the cold run left, within images.tag_ttl: no request at all).
Baselines, measured in each round right after ours: `cosign verify --key` per reference (a process each, as a
pipeline step would run it), and a minimal httpx script in a fresh process fetching the same objects ours fetches
for a reference (tag HEAD, manifest, config, fallback tag, bundle manifest, bundle blob), verifying nothing.

Usage: python bench/verify.py [--refs N] [--runs N]  -> prints the figures and writes bench/results/verify.json
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.append(str(ROOT))  # tests.* and bench/pin.py only: `admission` itself comes from the installed package
sys.path.append(str(ROOT / "bench"))

from pin import push_images, requests_since, save, timed  # noqa: E402

from tests.images.registry import Registry, free_port  # noqa: E402
from tests.supply.tools import tool_path  # noqa: E402
from tests.verify.signing import Cosign  # noqa: E402

CLI = str(Path(sys.executable).parent / "admission-cli")
REPO = "bench/verify"

FETCH_LOOP = """
import sys, httpx
host, repo, tags = sys.argv[1], sys.argv[2], sys.argv[3:]
accept = {"Accept": "application/vnd.oci.image.index.v1+json, application/vnd.oci.image.manifest.v1+json"}
with httpx.Client() as client:
    for tag in tags:
        digest = client.head(f"http://{host}/v2/{repo}/manifests/{tag}", headers=accept).headers["docker-content-digest"]
        manifest = client.get(f"http://{host}/v2/{repo}/manifests/{digest}", headers=accept).json()
        client.get(f"http://{host}/v2/{repo}/blobs/{manifest['config']['digest']}", follow_redirects=True)
        index = client.get(f"http://{host}/v2/{repo}/manifests/" + digest.replace(":", "-"), headers=accept).json()
        bundle = client.get(f"http://{host}/v2/{repo}/manifests/{index['manifests'][0]['digest']}", headers=accept).json()
        assert client.get(f"http://{host}/v2/{repo}/blobs/{bundle['layers'][0]['digest']}",
                          follow_redirects=True).status_code == 200
"""


def pods(host: str, tags: list[str]) -> str:
    return "---\n".join(
        f"apiVersion: v1\nkind: Pod\nmetadata: {{name: p-{tag}, namespace: bench}}\nspec:\n"
        f"  securityContext: {{runAsNonRoot: true, runAsUser: 1000}}\n  containers:\n  - name: app\n"
        f"    image: {host}/{REPO}:{tag}\n    resources: {{limits: {{cpu: 100m, memory: 64Mi}}}}\n" for tag in tags)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--refs", type=int, default=200)
    parser.add_argument("--runs", type=int, default=3)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="bench-verify-") as tmp:
        work = Path(tmp)
        (work / "registry").mkdir()
        registry = Registry(work / "registry", free_port()).start()
        try:
            tags = push_images(registry.host, args.refs, REPO)
            cosign = Cosign(tool_path("cosign"), work / "home")
            key = cosign.generate("release")
            digests = {}
            for tag in tags:
                digest = subprocess.run(["skopeo", "inspect", "--tls-verify=false", "--format", "{{.Digest}}",
                                         f"docker://{registry.host}/{REPO}:{tag}"], capture_output=True, text=True,
                                        check=True).stdout.strip()
                digests[tag] = digest
                cosign.sign(f"{registry.host}/{REPO}@{digest}", key)
            policy = work / "policy.yaml"
            policy.write_text(f"images:\n  allowed_registries: ['{registry.host}']\n"
                              f"  insecure_registries: ['{registry.host}']\n  verify:\n"
                              f"  - images: ['{registry.host}/bench/*']\n    keys: [{key.public}]\n")
            manifest = work / "pods.yaml"
            manifest.write_text(pods(registry.host, tags))
            rounds: list[dict[str, float]] = []
            requests: dict[str, dict[str, int]] = {}
            for run in range(args.runs):
                figures: dict[str, float] = {}
                cache = work / f"cache-{run}"
                for case in ("cold", "warm"):
                    mark = registry.mark()
                    output = work / f"{case}-{run}.json"
                    figures[case] = timed([CLI, "check", "--resolve-images", "--cache-dir", str(cache), "--policy",
                                           str(policy), "--format", "json", "--output", str(output), str(manifest)],
                                          ok=(0,), case=case)
                    requests[case] = requests_since(registry, mark)
                    report = json.loads(output.read_text())
                    assert len(report["verified"]) == len(tags), f"{case}: {len(report['verified'])} verified"
                start = time.perf_counter()
                for tag in tags:
                    subprocess.run([str(cosign.binary), "verify", "--key", str(key.public), "--insecure-ignore-tlog=true",
                                    "--allow-http-registry", "--allow-insecure-registry",
                                    f"{registry.host}/{REPO}@{digests[tag]}"], capture_output=True, check=True,
                                   env=cosign.env)
                figures["cosign"] = time.perf_counter() - start
                mark = registry.mark()
                figures["fetch_loop"] = timed([sys.executable, "-c", FETCH_LOOP, registry.host, REPO, *tags],
                                              case="fetch_loop")
                requests["fetch_loop"] = requests_since(registry, mark)
                rounds.append(figures)
        finally:
            registry.stop()
    median = statistics.median

    def of(case: str) -> float:
        return median(r[case] for r in rounds)

    def ratio(case: str, baseline: str) -> float:
        return median(r[case] / r[baseline] for r in rounds)

    def per_ref(counts: dict[str, int]) -> float:
        return sum(counts.values()) / len(tags)

    results = {
        "references": len(tags), "runs": args.runs,
        "cold_s": of("cold"), "cold_requests": requests["cold"], "cold_requests_per_reference": per_ref(requests["cold"]),
        "warm_s": of("warm"), "warm_requests": requests["warm"], "warm_requests_per_reference": per_ref(requests["warm"]),
        "baseline_cosign_verify_per_reference_s": of("cosign"),
        "baseline_httpx_fetch_loop_s": of("fetch_loop"), "fetch_loop_requests": requests["fetch_loop"],
        "ratio_cold_vs_fetch_loop": ratio("cold", "fetch_loop"),
        "ratio_warm_vs_fetch_loop": ratio("warm", "fetch_loop"),
        "ratio_cold_vs_cosign": ratio("cold", "cosign"),
        "rounds": rounds,
    }
    save("verify", results)


if __name__ == "__main__":
    main()
