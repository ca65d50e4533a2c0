"""The audit judges the image a container runs: the manifest digest of its Pods' `status.containerStatuses[].imageID`
(set here through the status subresource, as a kubelet would: no kubelet runs), else the spec's reference; a bare
`sha256:` imageID (containerd's config digest) falls back to the spec. Each digest is looked up once, counted in
the real registry's access log."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.cluster.auditkit import audit, container, drop_namespaces, namespace, pod, workload
from tests.cluster.controlplane import ControlPlane
from tests.images import oci
from tests.images.conftest import layout, registry  # noqa: F401 (fixtures)
from tests.images.registry import Registry

pytestmark = pytest.mark.controlplane

RUNS = "audit-images"
MANIFEST = "application/vnd.oci.image.manifest.v1+json"


def _digest(reg: Registry, repository: str, tag: str) -> str:
    answer = httpx.head(f"http://{reg.host}/v2/{repository}/manifests/{tag}", headers={"Accept": MANIFEST})
    answer.raise_for_status()
    return answer.headers["Docker-Content-Digest"]


@pytest.fixture(scope="module")
def images(registry: Registry, layout: Path, control_plane: ControlPlane) -> Iterator[dict[str, str]]:  # noqa: F811
    """`audit/app:1.0` is an image that sets a non-root user; the digest Pods report running is one that runs as root
    (the tag was moved after they pulled it)."""
    oci.push(oci.build(layout, "audit-nonroot", user="10001"), registry.host, "audit/app:1.0")
    oci.push(oci.build(layout, "audit-root", user=""), registry.host, "audit/app:root")
    yield {"tag": f"{registry.host}/audit/app:1.0",
           "root": f"{registry.host}/audit/app@{_digest(registry, 'audit/app', 'root')}",
           "config_digest": "sha256:" + "c" * 64}
    drop_namespaces(control_plane, RUNS)


@pytest.fixture()
def policy(registry: Registry, tmp_path: Path) -> Path:  # noqa: F811
    path = tmp_path / "policy.yaml"
    path.write_text(f"images:\n  allowed_registries: ['{registry.host}']\n  insecure_registries: ['{registry.host}']\n")
    return path


def _unpinned(image: str) -> dict[str, Any]:
    """A container that states no user: the image's config decides run-as-non-root."""
    spec = container(image=image)
    del spec["securityContext"]["runAsNonRoot"], spec["securityContext"]["runAsUser"]
    return spec


def _running(plane: ControlPlane, name: str, image: str, image_id: str) -> None:
    """What a kubelet writes once the container started: the status subresource, as the node would patch it."""
    status = {"status": {"phase": "Running", "containerStatuses": [{
        "name": "app", "image": image, "imageID": image_id, "ready": True, "restartCount": 0, "started": True,
        "state": {"running": {"startedAt": "2025-01-01T00:00:00Z"}}}]}}
    import json

    plane.kubectl("patch", "pod", name, "-n", RUNS, "--subresource=status", "--type=merge", "-p", json.dumps(status))


def _denied(run_report: dict[str, Any], kind: str, name: str) -> set[str]:
    return {f["rule"] for f in run_report["findings"] if f["object"]["kind"] == kind and f["object"]["name"] == name
            and f["severity"] == "deny" and not f["suppressed"]}


def test_a_container_is_judged_by_the_digest_its_pods_run_and_each_digest_is_looked_up_once(
        controllers: ControlPlane, registry: Registry, images: dict[str, str], policy: Path) -> None:  # noqa: F811
    namespace(controllers, RUNS)
    controllers.apply([
        pod("runs-root", RUNS, _unpinned(images["tag"])),
        pod("not-started", RUNS, _unpinned(images["tag"])),
        pod("config-digest", RUNS, _unpinned(images["tag"])),
        workload("Deployment", "web", RUNS, _unpinned(images["tag"]), replicas=2),
    ])
    _running(controllers, "runs-root", images["tag"], images["root"])
    _running(controllers, "config-digest", images["tag"], images["config_digest"])
    deadline = time.monotonic() + 90
    while True:
        import json

        made = [p["metadata"]["name"] for p in json.loads(controllers.kubectl(
            "get", "pods", "-n", RUNS, "-l", "app=web", "-o", "json").stdout)["items"]]
        if len(made) == 2:
            break
        assert time.monotonic() < deadline, made
        time.sleep(0.5)
    for name in made:  # the Deployment's Pods run the root digest too, with containerd's docker.io-style prefix
        _running(controllers, name, images["tag"], "docker-pullable://" + images["root"])

    mark = registry.mark()
    run = audit(controllers.admin_kubeconfig, "-n", RUNS, "--policy", str(policy), "--no-cache", "--format", "json",
                offline=False)
    report = run.json()
    assert report["errors"] == [], report["errors"]
    assert "run-as-non-root" in _denied(report, "Pod", "runs-root"), "judged by the root image it runs"
    assert "run-as-non-root" not in _denied(report, "Pod", "not-started"), "judged by its tag's non-root image"
    assert "run-as-non-root" not in _denied(report, "Pod", "config-digest"), "a config digest: the spec decides"
    assert "run-as-non-root" in _denied(report, "Deployment", "web"), "judged by what its Pods run"
    (root_user,) = [f for f in report["findings"] if f["object"]["name"] == "runs-root" and f["rule"] == "run-as-non-root"]
    assert "runs as root" in root_user["message"]

    digest = images["root"].split("@")[1]
    fetched = [path for method, path, status in registry.since(mark)
               if method == "GET" and path.endswith(f"/manifests/{digest}")]
    assert len(fetched) == 1, f"three objects run {digest}; it was fetched {len(fetched)} times"
    tag_lookups = [path for method, path, _ in registry.since(mark) if path.endswith("/manifests/1.0")]
    assert len(tag_lookups) == 1, "the tag, for the two objects that run no known digest, once"
