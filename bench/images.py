"""Image-config lookups against a real registry on loopback (Debian docker-registry), with the
request counts read from the registry's own access log.

1. cold lookup of a tagged image (ping + HEAD + manifest + config), next to `skopeo inspect --config`
   of the same image measured in the same run; warm lookup by digest: zero requests
2. 200 distinct images, cold then warm (memory cache, and a fresh process on a warm disk cache):
   wall time and requests per image, next to 200 sequential `skopeo inspect --config`
3. 100 concurrent lookups of one unseen image: one resolution and one config fetch

Usage: python bench/images.py [--images N]  -> prints a table and writes bench/results/images.json
"""

from __future__ import annotations

import argparse
import asyncio
import json
import subprocess
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.append(str(ROOT))  # for tests.images only: `admission` itself comes from the installed package

from admission.images.cache import DiskCache, ImageResolver, MemoryCache  # noqa: E402
from admission.images.registry import RegistryClient  # noqa: E402
from admission.policy.config import ImagesSettings  # noqa: E402
from tests.images import oci  # noqa: E402
from tests.images.registry import Registry, free_port  # noqa: E402


def _kinds(requests: list[tuple[str, str, int]]) -> Counter[str]:
    out: Counter[str] = Counter()
    for method, path, _ in requests:
        if path.rstrip("/") == "/v2":
            out["ping"] += 1
        elif "/manifests/" in path:
            out["head" if method == "HEAD" else "manifest"] += 1
        elif "/blobs/" in path:
            out["blob"] += 1
        else:
            out["other"] += 1
    return out


def _settle(registry: Registry, before: int) -> list[tuple[str, str, int]]:
    last = -1
    for _ in range(40):
        now = registry.requests()
        if len(now) == last:
            break
        last = len(now)
        time.sleep(0.05)
    return registry.requests()[before:]


async def _lookups(settings: ImagesSettings, refs: list[str], *, disk: DiskCache | None = None,
                   resolver: ImageResolver | None = None) -> tuple[float, ImageResolver, RegistryClient | None]:
    client = None
    if resolver is None:
        client = RegistryClient(settings)
        resolver = ImageResolver(client, settings=settings, disk=disk, memory=MemoryCache())
    start = time.perf_counter()
    deadline = time.monotonic() + 120
    await asyncio.gather(*(resolver.config_for(ref, deadline=deadline) for ref in refs))
    return time.perf_counter() - start, resolver, client


def _skopeo(ref: str) -> None:
    subprocess.run(["skopeo", "inspect", "--tls-verify=false", "--config", f"docker://{ref}"], check=True,
                   stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--images", type=int, default=201, help="images pushed (one warms the process)")
    args = parser.parse_args()
    results: dict[str, object] = {}
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        registry = Registry(work / "registry", free_port())
        (work / "registry").mkdir()
        registry.start()
        try:
            layout = work / "layout"
            refs = []
            for i in range(args.images):
                source = oci.build(layout, f"i{i}", user="1001", labels={"bench.index": str(i)})
                oci.push(source, registry.host, f"bench/app{i}:1.0")
                refs.append(f"{registry.host}/bench/app{i}:1.0")
            settings = ImagesSettings(allowed_registries=(registry.host,), insecure_registries=(registry.host,))

            # Warm the process (imports, event loop, TLS context) on the last image, so "cold" below
            # means a cold cache and a new client, not a cold interpreter.
            first_in_process, _, _ = asyncio.run(_lookups(settings, refs[-1:]))
            results["first_lookup_in_a_fresh_process_s"] = first_in_process
            refs = refs[:-1]

            # 1. one cold lookup, then the same image again by digest
            mark = registry.mark()
            cold, resolver, client = asyncio.run(_lookups(settings, refs[:1]))
            cold_requests = _kinds(_settle(registry, mark))
            config = asyncio.run(resolver.config_for(refs[0], deadline=time.monotonic() + 30))
            mark = registry.mark()
            warm, _, _ = asyncio.run(_lookups(settings, [f"{refs[0]}@{config.digest}"], resolver=resolver))
            warm_requests = _kinds(_settle(registry, mark))
            start = time.perf_counter()
            _skopeo(refs[0])
            skopeo_one = time.perf_counter() - start
            results["one_image"] = {"cold_s": cold, "cold_requests": dict(cold_requests),
                                    "warm_by_digest_s": warm, "warm_by_digest_requests": sum(warm_requests.values()),
                                    "skopeo_inspect_s": skopeo_one, "ratio_vs_skopeo": cold / skopeo_one}

            # 2. many distinct images, cold and warm
            disk = DiskCache(work / "cache")
            mark = registry.mark()
            cold_many, resolver, _ = asyncio.run(_lookups(settings, refs[1:], disk=disk))
            cold_many_requests = _kinds(_settle(registry, mark))
            mark = registry.mark()
            warm_memory, _, _ = asyncio.run(_lookups(settings, refs[1:], resolver=resolver))
            warm_memory_requests = sum(_kinds(_settle(registry, mark)).values())
            mark = registry.mark()
            warm_disk, _, _ = asyncio.run(_lookups(settings, refs[1:], disk=DiskCache(work / "cache")))
            warm_disk_requests = _kinds(_settle(registry, mark))
            start = time.perf_counter()
            for ref in refs[1:21]:
                _skopeo(ref)
            skopeo_each = (time.perf_counter() - start) / 20
            n = len(refs) - 1
            results["many_images"] = {
                "images": n, "cold_s": cold_many, "cold_requests_per_image": sum(cold_many_requests.values()) / n,
                "cold_requests": dict(cold_many_requests), "warm_memory_s": warm_memory,
                "warm_memory_requests": warm_memory_requests, "warm_disk_new_process_s": warm_disk,
                "warm_disk_requests": dict(warm_disk_requests),
                "skopeo_sequential_estimate_s": skopeo_each * n, "ratio_cold_vs_skopeo": cold_many / (skopeo_each * n)}

            # 3. 100 concurrent lookups of one unseen image
            source = oci.build(layout, "unseen", user="1001", labels={"bench.unseen": "1"})
            oci.push(source, registry.host, "bench/unseen:1.0")
            mark = registry.mark()
            concurrent, resolver, _ = asyncio.run(_lookups(settings, [f"{registry.host}/bench/unseen:1.0"] * 100))
            concurrent_requests = _kinds(_settle(registry, mark))
            results["concurrent_one_image"] = {"lookups": 100, "s": concurrent, "requests": dict(concurrent_requests),
                                               "dedup": resolver.stats["dedup"]}
        finally:
            registry.stop()
    out_dir = ROOT / "bench" / "results"
    out_dir.mkdir(exist_ok=True)
    (out_dir / "images.json").write_text(json.dumps(results, indent=2) + "\n")
    print(json.dumps(results, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
