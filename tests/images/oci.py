"""Real OCI images for tests, without a Docker engine: umoci builds them, skopeo copies them
(to a registry, or to docker-archive / oci-archive tarballs). architecture §6."""

from __future__ import annotations

import hashlib
import json
import shutil
import subprocess
from collections.abc import Mapping, Sequence
from pathlib import Path

TOOLS = ("umoci", "skopeo")


def have_tools() -> bool:
    return all(shutil.which(t) for t in TOOLS)


def _run(*cmd: str) -> str:
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=120)
    if proc.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd)} failed: {proc.stderr.strip()}")
    return proc.stdout


def build(layout: Path, tag: str, *, user: str | None = None, labels: Mapping[str, str] | None = None,
          env: Sequence[str] = (), exposed_ports: Sequence[str] = (), history: Sequence[str] = ("umoci config",),
          files: Mapping[str, str] | None = None, architecture: str | None = None) -> str:
    """Create `layout:tag` (an OCI layout directory) and return `oci:<layout>:<tag>` for skopeo.

    `files` maps an absolute path in the image (e.g. /etc/passwd) to its content; each becomes a layer.
    `history` gives created_by of the config change's history entry (what builders write).
    """
    layout.parent.mkdir(parents=True, exist_ok=True)
    if not (layout / "oci-layout").exists():
        _run("umoci", "init", "--layout", str(layout))
    _run("umoci", "new", "--image", f"{layout}:{tag}")
    for path, content in (files or {}).items():
        staging = layout.parent / f".stage-{tag}"
        target = staging / path.lstrip("/")
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(content)
        _run("umoci", "insert", "--image", f"{layout}:{tag}", str(target), path)
        shutil.rmtree(staging)
    args = ["umoci", "config", "--image", f"{layout}:{tag}"]
    if user is not None:
        args += ["--config.user", user]
    for key, value in (labels or {}).items():
        args += ["--config.label", f"{key}={value}"]
    for item in env:
        args += ["--config.env", item]
    for port in exposed_ports:
        args += ["--config.exposedports", port]
    if architecture:
        args += ["--architecture", architecture]
    for created_by in history[:1]:
        args += ["--history.created_by", created_by]
    _run(*args)
    for created_by in history[1:]:
        _run("umoci", "config", "--image", f"{layout}:{tag}", "--history.created_by", created_by)
    return f"oci:{layout}:{tag}"


def copy(source: str, dest: str, *, v2s2: bool = False, all_images: bool = False) -> None:
    """skopeo copy, e.g. to docker://127.0.0.1:PORT/app:1 or docker-archive:/tmp/x.tar:app:1."""
    args = ["skopeo", "copy", "--quiet", "--src-tls-verify=false", "--dest-tls-verify=false"]
    if v2s2:
        args += ["--format", "v2s2"]
    if all_images:
        args += ["--all"]
    _run(*args, source, dest)


def push(source: str, registry: str, ref: str, *, v2s2: bool = False, creds: str | None = None) -> None:
    args = ["skopeo", "copy", "--quiet", "--dest-tls-verify=false"]
    if v2s2:
        args += ["--format", "v2s2"]
    if creds:
        args += ["--dest-creds", creds]
    _run(*args, source, f"docker://{registry}/{ref}")


def build_steps(layout: Path, tag: str, steps: Sequence[tuple[str, str | None, int]], *, history: bool = True,
                user: str = "1000") -> str:
    """`layout:tag` built step by step as a Dockerfile build records it: each (created_by, path, size) with a path
    becomes a layer holding `size` random bytes at `path` (random, so compressed and uncompressed sizes stay close);
    without a path it is a config change (an `empty_layer` history entry). `history=False` records no history for
    the layers. Ends with `USER <user>`; intermediate blobs are garbage-collected. Returns `oci:<layout>:<tag>`."""
    import os

    if not (layout / "oci-layout").exists():
        layout.parent.mkdir(parents=True, exist_ok=True)
        _run("umoci", "init", "--layout", str(layout))
    image = f"{layout}:{tag}"
    _run("umoci", "new", "--image", image)
    stage = layout.parent / f".stage-{tag}"
    for created_by, path, size in steps:
        if path is None:
            _run("umoci", "config", "--image", image, "--history.created_by", created_by)
            continue
        target = stage / path.lstrip("/")
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(os.urandom(size))
        record = ["--history.created_by", created_by] if history else ["--no-history"]
        _run("umoci", "insert", "--image", image, *record, str(target), path)
        shutil.rmtree(stage)
    _run("umoci", "config", "--image", image, "--config.user", user, "--history.created_by", f"USER {user}")
    _run("umoci", "gc", "--layout", str(layout))
    return f"oci:{image}"


def add_index(layout: Path, tag: str, members: dict[str, tuple[str, str]]) -> None:
    """Add an OCI index tagged `tag` to an OCI layout; `members` maps a tag in the layout to (os, architecture)."""
    index_json = json.loads((layout / "index.json").read_text())
    descriptors = []
    for member, (os_name, arch) in members.items():
        entry = next(m for m in index_json["manifests"]
                     if m.get("annotations", {}).get("org.opencontainers.image.ref.name") == member)
        descriptors.append({"mediaType": entry["mediaType"], "digest": entry["digest"], "size": entry["size"],
                            "platform": {"os": os_name, "architecture": arch}})
    data = json.dumps({"schemaVersion": 2, "mediaType": "application/vnd.oci.image.index.v1+json",
                       "manifests": descriptors}).encode()
    digest = hashlib.sha256(data).hexdigest()
    (layout / "blobs" / "sha256" / digest).write_bytes(data)
    index_json["manifests"].append({"mediaType": "application/vnd.oci.image.index.v1+json", "digest": f"sha256:{digest}",
                                    "size": len(data), "annotations": {"org.opencontainers.image.ref.name": tag}})
    (layout / "index.json").write_text(json.dumps(index_json))
