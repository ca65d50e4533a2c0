"""Images with fixed digests, written by hand as an OCI layout (architecture §6 allows it): the same bytes on every run,
so a listing with digests in it can be kept exact (the run docs/pin.md shows is checked against one).

skopeo copies them to the registry unchanged (no format conversion), so the registry serves these very digests.
"""

from __future__ import annotations

import gzip
import hashlib
import io
import json
import subprocess
import tarfile
from collections.abc import Mapping, Sequence
from pathlib import Path

OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
OCI_INDEX = "application/vnd.oci.image.index.v1+json"


def _blob(layout: Path, data: bytes) -> dict[str, object]:
    digest = hashlib.sha256(data).hexdigest()
    (layout / "blobs" / "sha256").mkdir(parents=True, exist_ok=True)
    (layout / "blobs" / "sha256" / digest).write_bytes(data)
    return {"digest": f"sha256:{digest}", "size": len(data)}


def _layer(content: str) -> bytes:
    raw = io.BytesIO()
    with tarfile.open(fileobj=raw, mode="w", format=tarfile.USTAR_FORMAT) as tar:
        data = content.encode()
        info = tarfile.TarInfo("etc/release")
        info.size, info.mtime, info.mode = len(data), 0, 0o644
        tar.addfile(info, io.BytesIO(data))
    return gzip.compress(raw.getvalue(), mtime=0)


def _tag(layout: Path, tag: str, descriptor: dict[str, object]) -> None:
    index_path = layout / "index.json"
    index = json.loads(index_path.read_text()) if index_path.exists() else {"schemaVersion": 2, "manifests": []}
    index["manifests"] = [m for m in index["manifests"]
                          if m.get("annotations", {}).get("org.opencontainers.image.ref.name") != tag]
    index["manifests"].append({**descriptor, "annotations": {"org.opencontainers.image.ref.name": tag}})
    index_path.write_text(json.dumps(index))
    (layout / "oci-layout").write_text('{"imageLayoutVersion":"1.0.0"}')


def image(layout: Path, tag: str, *, release: str, architecture: str = "amd64", user: str = "1000") -> str:
    """An image whose one layer holds /etc/release = `release`; returns its manifest digest. Tagged `tag` in
    `layout`, for `push`."""
    layer = _layer(release)
    diff_id = "sha256:" + hashlib.sha256(gzip.decompress(layer)).hexdigest()
    config = json.dumps({"architecture": architecture, "os": "linux", "config": {"User": user},
                         "rootfs": {"type": "layers", "diff_ids": [diff_id]},
                         "history": [{"created_by": f"ADD release {release}"}]}, sort_keys=True).encode()
    manifest = json.dumps({
        "schemaVersion": 2, "mediaType": OCI_MANIFEST,
        "config": {"mediaType": "application/vnd.oci.image.config.v1+json", **_blob(layout, config)},
        "layers": [{"mediaType": "application/vnd.oci.image.layer.v1.tar+gzip", **_blob(layout, layer)}],
    }, sort_keys=True).encode()
    descriptor = {"mediaType": OCI_MANIFEST, **_blob(layout, manifest)}
    _tag(layout, tag, descriptor)
    return str(descriptor["digest"])


def index(layout: Path, tag: str, members: Sequence[tuple[str, str]]) -> dict[str, str]:
    """A multi-platform index over images already in `layout`: `members` are (tag, architecture), all linux.
    Returns {"index": its digest, "<architecture>": each member's manifest digest}."""
    refs = {m["annotations"]["org.opencontainers.image.ref.name"]: m
            for m in json.loads((layout / "index.json").read_text())["manifests"]}
    entries = [{"mediaType": OCI_MANIFEST, "digest": refs[member]["digest"], "size": refs[member]["size"],
                "platform": {"os": "linux", "architecture": arch}} for member, arch in members]
    data = json.dumps({"schemaVersion": 2, "mediaType": OCI_INDEX, "manifests": entries}, sort_keys=True).encode()
    descriptor = {"mediaType": OCI_INDEX, **_blob(layout, data)}
    _tag(layout, tag, descriptor)
    return {"index": str(descriptor["digest"]), **{arch: str(refs[m]["digest"]) for m, arch in members}}


def push(layout: Path, tag: str, destination: str, *, creds: str | None = None) -> None:
    """skopeo copy of `layout:tag` (with every platform of an index) to `docker://destination`."""
    args = ["skopeo", "copy", "--quiet", "--all", "--dest-tls-verify=false", "--preserve-digests"]
    if creds:
        args += ["--dest-creds", creds]
    subprocess.run([*args, f"oci:{layout}:{tag}", f"docker://{destination}"], check=True, capture_output=True,
                   timeout=120)


def skopeo_digest(reference: str, *, creds: str | None = None) -> str:
    """The digest of what `reference`'s tag serves, from `skopeo inspect --raw` (the bytes a client hashes)."""
    args = ["skopeo", "inspect", "--raw", "--tls-verify=false"]
    if creds:
        args += ["--creds", creds]
    raw = subprocess.run([*args, f"docker://{reference}"], check=True, capture_output=True, timeout=60).stdout
    return "sha256:" + hashlib.sha256(raw).hexdigest()


def skopeo_platform_digest(reference: str, platform: Mapping[str, str]) -> str:
    """The digest `skopeo inspect --raw` lists for one platform of an index."""
    raw = subprocess.run(["skopeo", "inspect", "--raw", "--tls-verify=false", f"docker://{reference}"], check=True,
                         capture_output=True, timeout=60).stdout
    for entry in json.loads(raw)["manifests"]:
        if all(entry["platform"].get(k) == v for k, v in platform.items()):
            return str(entry["digest"])
    raise LookupError(f"{reference} lists no {dict(platform)}")
