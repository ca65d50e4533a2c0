"""The supply-chain tools built by `make supply-bin` (tests/supply/build.sh) are the pinned releases, and the OCI
registry serves the distribution API with the OCI 1.1 referrers endpoint on loopback."""

from __future__ import annotations

import hashlib
import json
import subprocess
from collections.abc import Iterator

import httpx
import pytest

from tests.images.registry import free_port
from tests.supply.tools import tool_path

COSIGN = "v3.1.3"
BUILDKIT = "v0.35.0"
KUSTOMIZE = "v5.8.2"


def _run(*argv: str) -> str:
    done = subprocess.run(argv, capture_output=True, text=True, timeout=60, check=True)
    return done.stdout + done.stderr


def test_cosign_is_the_pinned_release() -> None:
    out = _run(str(tool_path("cosign")), "version")
    assert any(line.split() == ["GitVersion:", COSIGN] for line in out.splitlines()), out


@pytest.mark.parametrize("binary", ["buildkitd", "buildctl"])
def test_buildkit_is_the_pinned_release(binary: str) -> None:
    out = _run(str(tool_path(binary)), "--version")
    assert out.split()[:3] == [binary, "github.com/moby/buildkit", BUILDKIT], out


def test_kustomize_is_the_pinned_release() -> None:
    assert _run(str(tool_path("kustomize")), "version").strip() == KUSTOMIZE


@pytest.fixture
def registry() -> Iterator[str]:
    """oci-registry on a free loopback port, stopped after the test; yields its base URL."""
    addr = f"127.0.0.1:{free_port()}"
    proc = subprocess.Popen([str(tool_path("registry")), "-addr", addr], stdout=subprocess.PIPE,
                            stderr=subprocess.DEVNULL, text=True)
    try:
        assert proc.stdout is not None
        line = proc.stdout.readline()
        assert line.strip() == f"listening on {addr}", line
        yield f"http://{addr}"
    finally:
        proc.terminate()
        proc.wait(timeout=10)


def _push(client: httpx.Client, repo: str, manifest: dict[str, object]) -> str:
    body = json.dumps(manifest).encode()
    digest = "sha256:" + hashlib.sha256(body).hexdigest()
    r = client.put(f"/v2/{repo}/manifests/{digest}", content=body,
                   headers={"Content-Type": "application/vnd.oci.image.manifest.v1+json"})
    assert r.status_code == 201, r.text
    return digest


def test_registry_serves_v2_and_referrers(registry: str) -> None:
    with httpx.Client(base_url=registry, timeout=10) as client:
        assert client.get("/v2/").status_code == 200
        empty = b"{}"
        empty_digest = "sha256:" + hashlib.sha256(empty).hexdigest()
        r = client.post(f"/v2/demo/blobs/uploads/?digest={empty_digest}", content=empty)
        assert r.status_code == 201, r.text
        config = {"mediaType": "application/vnd.oci.empty.v1+json", "digest": empty_digest, "size": len(empty)}
        image = _push(client, "demo", {"schemaVersion": 2, "mediaType": "application/vnd.oci.image.manifest.v1+json",
                                       "config": config, "layers": []})
        # An artifact (as cosign attaches a signature or attestation) whose subject is the image.
        artifact_type = "application/vnd.example.sbom.v1+json"
        subject = {"mediaType": "application/vnd.oci.image.manifest.v1+json", "digest": image,
                   "size": len(client.get(f"/v2/demo/manifests/{image}",
                                          headers={"Accept": "application/vnd.oci.image.manifest.v1+json"}).content)}
        referrer = _push(client, "demo", {"schemaVersion": 2, "mediaType": "application/vnd.oci.image.manifest.v1+json",
                                          "config": {**config, "mediaType": artifact_type}, "layers": [],
                                          "subject": subject})
        r = client.get(f"/v2/demo/referrers/{image}")
        assert r.status_code == 200, r.text
        assert r.headers["content-type"] == "application/vnd.oci.image.index.v1+json"
        index = r.json()
        assert [(m["digest"], m["artifactType"]) for m in index["manifests"]] == [(referrer, artifact_type)]
        # The artifact itself has no referrers: an empty index, not an error.
        assert client.get(f"/v2/demo/referrers/{referrer}").json()["manifests"] == []
