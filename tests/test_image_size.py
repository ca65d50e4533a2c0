"""image-size end to end with real images: a real docker-registry on loopback (layer sizes from the manifest the
client already fetches, counted on the registry's access log), warm memory and disk caches, and real
`docker save` / oci-archive tarballs and OCI layouts written by skopeo (architecture §4 image-size, §6)."""

from __future__ import annotations

import asyncio
import json
import os
import re
import tarfile
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from admission.cli.main import main
from admission.images.cache import _FORMAT as FORMAT  # the on-disk layout version in force
from admission.images.cache import ImageResolver
from admission.images.enrich import enrich
from admission.images.registry import RegistryClient
from admission.policy import engine
from admission.policy.config import default_policy, parse_policy
from admission.sources import archive, kubernetes
from tests.images import oci
from tests.images.registry import Registry, free_port, have_registry

MIB = 1024 * 1024
# (created_by, file, bytes of random data): random bytes do not compress, so compressed ~ uncompressed sizes
STEPS = (
    ("ADD rootfs.tar.xz / # buildkit", "/rootfs.bin", int(0.5 * MIB)),
    ("ENV LANG=C.UTF-8", None, 0),
    ("RUN /bin/sh -c apt-get install -y build-essential # buildkit", "/usr/lib/toolchain.bin", int(1.5 * MIB)),
    ("WORKDIR /app", None, 0),
    ("COPY app.py /app/ # buildkit", "/app/app.py", 4096),
    ("COPY static/ /app/static/ # buildkit", "/app/static/bundle.bin", int(0.75 * MIB)),
)
LIMITS = "resources: {limits: {cpu: 100m, memory: 64Mi}}"


def build(layout: Path, tag: str, steps=STEPS, *, history: bool = True) -> str:
    return oci.build_steps(layout, tag, steps, history=history)


@pytest.fixture(scope="module")
def registry(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Registry]:
    if not have_registry() or not oci.have_tools():
        pytest.fail("docker-registry, umoci and skopeo are required; `make test` installs them")
    reg = Registry(tmp_path_factory.mktemp("size-registry"), free_port()).start()
    yield reg
    reg.stop()


@pytest.fixture(scope="module")
def layout(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("size-images") / "layout"


@pytest.fixture(scope="module")
def pushed(registry: Registry, layout: Path) -> dict[str, str]:
    """The same image pushed as an OCI manifest and as Docker schema 2, plus a small one."""
    source = build(layout, "big")
    oci.push(source, registry.host, "size/oci:1")
    oci.push(source, registry.host, "size/docker:1", v2s2=True)
    oci.push(build(layout, "small", STEPS[4:5]), registry.host, "size/small:1")
    return {"oci": f"{registry.host}/size/oci:1", "docker": f"{registry.host}/size/docker:1",
            "small": f"{registry.host}/size/small:1"}


def _policy(tmp_path: Path, registry: Registry, *, size: str = "{params: {max_mib: 2}}") -> Path:
    path = tmp_path / "policy.yaml"
    path.write_text(f"rules: {{image-size: {size}}}\n"
                    f"images: {{allowed_registries: ['{registry.host}'], insecure_registries: ['{registry.host}']}}\n")
    return path


def _pod(tmp_path: Path, *images: str) -> Path:
    body = "".join(f"  - name: c{i}\n    image: {image}\n    {LIMITS}\n" for i, image in enumerate(images))
    path = tmp_path / "pod.yaml"
    path.write_text(f"apiVersion: v1\nkind: Pod\nmetadata: {{name: p}}\nspec:\n  securityContext: {{runAsUser: 1000}}\n"
                    f"  containers:\n{body}")
    return path


def _check(capsys: pytest.CaptureFixture[str], *argv: str) -> dict:
    main(["check", "--format", "json", *argv])
    return json.loads(capsys.readouterr().out)


def _sizes(report: dict) -> list[dict]:
    return [f for f in report["findings"] if f["rule"] == "image-size"]


def _gets(requests: list[tuple[str, str, int]], what: str) -> list[str]:
    return [path for method, path, _ in requests if method == "GET" and f"/{what}/" in path]


# --- registry images ----------------------------------------------------------------------------------------


def test_a_resolved_image_over_the_limit_names_its_three_largest_layers_and_the_steps_that_made_them(
        capsys, tmp_path, registry, pushed) -> None:
    report = _check(capsys, "--resolve-images", "--no-cache", "--policy", str(_policy(tmp_path, registry)),
                    str(_pod(tmp_path, pushed["oci"], pushed["small"])))
    [found] = _sizes(report)
    assert found["container"] == "c0" and found["line"] == 8 and found["severity"] == "warn"
    message = found["message"]
    assert "in 4 layers (compressed, as a pull transfers them), over the 2 MiB limit (max_mib)" in message
    # largest first; history indices skip the empty_layer entries (ENV, WORKDIR), as the image spec maps them
    largest = re.findall(r"layer (\d) ([\d.]+ [KM]iB): `([^`]*)` \(history\[(\d)\]\)", message.split("the largest: ")[1])
    assert [(layer, step, index) for layer, _, step, index in largest] == [
        ("2", "RUN /bin/sh -c apt-get install -y build-essential", "2"),
        ("4", "COPY static/ /app/static/", "5"),
        ("1", "ADD rootfs.tar.xz /", "0"),
    ]
    assert largest[0][1] == "1.5 MiB" and largest[1][1].startswith("76") and largest[2][1].startswith("51")
    assert "multi-stage build" in found["remediation"] and "COPY --from=builder" in found["remediation"]
    assert "slim or distroless base" in found["remediation"]


def test_docker_schema2_manifests_give_the_same_sizes(capsys, tmp_path, registry, pushed) -> None:
    policy = str(_policy(tmp_path, registry))
    oci_report = _check(capsys, "--resolve-images", "--no-cache", "--policy", policy, str(_pod(tmp_path, pushed["oci"])))
    docker_report = _check(capsys, "--resolve-images", "--no-cache", "--policy", policy,
                           str(_pod(tmp_path, pushed["docker"])))
    [a], [b] = _sizes(oci_report), _sizes(docker_report)
    assert a["value"] == b["value"] and "compressed" in b["message"]


def test_compose_services_get_the_rule_from_their_resolved_image(capsys, tmp_path, registry, pushed) -> None:
    compose = tmp_path / "compose.yaml"
    compose.write_text(f"services:\n  web:\n    image: {pushed['oci']}\n    user: '1000'\n    mem_limit: 64m\n"
                       "    cpus: 1\n")
    [found] = _sizes(_check(capsys, "--resolve-images", "--no-cache", "--policy", str(_policy(tmp_path, registry)),
                            str(compose)))
    assert found["source"] == "compose" and found["container"] == "web" and found["line"] == 3
    assert found["message"].startswith(f"service 'web' (image {pushed['oci']}) is ")


def test_layer_sizes_cost_no_request_beyond_what_resolution_already_makes(capsys, tmp_path, registry, pushed) -> None:
    pod = str(_pod(tmp_path, pushed["oci"]))
    mark = registry.mark()
    off = _check(capsys, "--resolve-images", "--no-cache", "--policy",
                 str(_policy(tmp_path, registry, size="{severity: off}")), pod)
    without_rule = registry.since(mark)
    mark = registry.mark()
    on = _check(capsys, "--resolve-images", "--no-cache", "--policy", str(_policy(tmp_path, registry)), pod)
    with_rule = registry.since(mark)
    assert _sizes(off) == [] and len(_sizes(on)) == 1
    assert [(m, p) for m, p, _ in with_rule] == [(m, p) for m, p, _ in without_rule]
    # one manifest and one blob (the config); no layer blob is ever fetched
    assert len(_gets(with_rule, "manifests")) == 1 and len(_gets(with_rule, "blobs")) == 1


def test_a_warm_disk_cache_still_carries_the_layer_sizes(capsys, tmp_path, registry, pushed) -> None:
    policy, pod, cache = str(_policy(tmp_path, registry)), str(_pod(tmp_path, pushed["oci"])), str(tmp_path / "cache")
    cold = _check(capsys, "--resolve-images", "--cache-dir", cache, "--policy", policy, pod)
    mark = registry.mark()
    warm = _check(capsys, "--resolve-images", "--cache-dir", cache, "--policy", policy, pod)
    assert registry.since(mark) == [], "the tag and the config came from disk"
    assert _sizes(warm) == _sizes(cold) and len(_sizes(warm)) == 1


def test_a_disk_cache_entry_without_layer_sizes_is_not_misread(capsys, tmp_path, registry, pushed) -> None:
    policy, pod, cache = str(_policy(tmp_path, registry)), str(_pod(tmp_path, pushed["oci"])), tmp_path / "cache"
    _check(capsys, "--resolve-images", "--cache-dir", str(cache), "--policy", policy, pod)
    # an entry in the shape the previous format wrote: no layer sizes
    [entry] = list((cache / FORMAT / "configs").glob("*.json"))
    body = json.loads(entry.read_text())
    del body["config"]["layer_sizes"], body["config"]["layers_compressed"]
    entry.write_text(json.dumps(body))
    mark = registry.mark()
    report = _check(capsys, "--resolve-images", "--cache-dir", str(cache), "--policy", policy, pod)
    assert len(_gets(registry.since(mark), "blobs")) == 1, "the entry was refetched, not read without sizes"
    assert len(_sizes(report)) == 1
    # and a cache folder of an earlier layout (v1 had no layer sizes) is never read at all
    (cache / FORMAT).rename(cache / "v1")
    mark = registry.mark()
    report = _check(capsys, "--resolve-images", "--cache-dir", str(cache), "--policy", policy, pod)
    assert len(_gets(registry.since(mark), "blobs")) == 1 and len(_sizes(report)) == 1


def test_a_warm_memory_cache_still_carries_the_layer_sizes(tmp_path, registry, pushed) -> None:
    policy = parse_policy(_policy(tmp_path, registry).read_text(), file="p", base=default_policy())
    workloads = kubernetes.load_text(_pod(tmp_path, pushed["oci"]).read_text(), file="pod.yaml").workloads

    async def twice() -> tuple[list, list, list]:
        client = RegistryClient(policy.images)
        resolver = ImageResolver(client, settings=policy.images)
        try:
            first = await enrich(workloads, resolver, deadline=time.monotonic() + 30)
            mark = registry.mark()
            second = await enrich(workloads, resolver, deadline=time.monotonic() + 30)
            return first, second, registry.since(mark)
        finally:
            await client.aclose()

    first, second, requests = asyncio.run(twice())
    assert requests == [], "the second lookup was answered from memory"
    found = [[f.message for f in engine.evaluate(w, policy).findings if f.rule == "image-size"] for w in (first, second)]
    assert found[0] == found[1] and len(found[0]) == 1


# --- archives and layouts -----------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def archives(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    work = tmp_path_factory.mktemp("size-archives")
    source = build(work / "layout", "1.0")
    oci.copy(source, f"docker-archive:{work / 'saved.tar'}:size/app:1.0")
    oci.copy(source, f"oci-archive:{work / 'oci.tar'}:1.0")
    return {"layout": work / "layout", "saved": work / "saved.tar", "oci": work / "oci.tar"}


def _archive_findings(path: Path, max_mib: int = 2) -> list:
    policy = parse_policy(f"rules: {{image-size: {{params: {{max_mib: {max_mib}}}}}}}", file="p", base=default_policy())
    workloads = archive.load(str(path), display=path.name)
    return [f for f in engine.evaluate(workloads, policy).findings if f.rule == "image-size"]


def test_docker_save_sizes_are_its_uncompressed_layer_members_and_the_message_says_so(archives) -> None:
    with tarfile.open(archives["saved"]) as tar:
        manifest = json.load(tar.extractfile("manifest.json"))  # type: ignore[arg-type]
        members = [tar.getmember(name).size for name in manifest[0]["Layers"]]
    config = archive.load(str(archives["saved"]), display="saved.tar")[0].containers[0].image_config
    assert config is not None and config.layer_sizes == tuple(members) and config.layers_compressed is False
    [found] = _archive_findings(archives["saved"])
    assert "(uncompressed, as `docker save` stores them)" in found.message
    assert "`RUN /bin/sh -c apt-get install -y build-essential` (history[2])" in found.message


def test_oci_archives_and_layouts_use_the_manifests_compressed_sizes(archives) -> None:
    layout = archives["layout"]
    index = json.loads((layout / "index.json").read_text())
    digest = next(m["digest"] for m in index["manifests"] if m["annotations"]["org.opencontainers.image.ref.name"] == "1.0")
    manifest = json.loads((layout / "blobs" / "sha256" / digest.split(":")[1]).read_text())
    expected = tuple(layer["size"] for layer in manifest["layers"])
    for path in (archives["layout"], archives["oci"]):
        [workload] = [w for w in archive.load(str(path), display=path.name) if w.name.endswith(":1.0")]
        config = workload.containers[0].image_config
        assert config is not None and config.layer_sizes == expected and config.layers_compressed is True
        [found] = _archive_findings(path)
        assert "(compressed, as a pull transfers them)" in found.message and found.key == "image size"


def test_an_image_under_the_limit_passes(archives) -> None:
    assert _archive_findings(archives["saved"], max_mib=300) == []
    assert _archive_findings(archives["oci"], max_mib=300) == []


def test_layers_without_history_entries_are_named_without_a_step(tmp_path) -> None:
    source = build(tmp_path / "layout", "1.0", history=False)
    oci.copy(source, f"oci-archive:{tmp_path / 'nohistory.tar'}:1.0")
    [found] = _archive_findings(tmp_path / "nohistory.tar")
    assert "the history names 0 layer steps for 4 layers, so no step can be named" in found.message
    assert "layer 2 1.5 MiB;" in found.message and "`" not in found.message.split("the largest:")[1]
