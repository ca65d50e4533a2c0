"""The real cosign (built by tests/supply/build.sh) signing images in loopback registries, and the registry API used
directly to copy or tamper with what cosign wrote. cosign is the oracle: `verify` says whether cosign accepts a
digest with a key, and the tests hold our verdict to it (architecture §6)."""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx

from tests.images import oci

OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
OCI_INDEX = "application/vnd.oci.image.index.v1+json"
ACCEPT = f"{OCI_MANIFEST}, {OCI_INDEX}, application/vnd.docker.distribution.manifest.v2+json"


@dataclass(frozen=True)
class Key:
    name: str
    private: Path  # cosign's encrypted key file
    public: Path
    pem: Path | None = None  # the openssl private key an imported key came from


class Cosign:
    """cosign with offline signing (no transparency log, no signing config) against plain-HTTP loopback registries."""

    def __init__(self, binary: Path, home: Path) -> None:
        self.binary = binary
        self.home = home
        self.env = {**os.environ, "COSIGN_PASSWORD": "", "HOME": str(home), "COSIGN_YES": "true",
                    "SIGSTORE_NO_CACHE": "1", "TUF_ROOT": str(home / "tuf")}

    def _run(self, *args: str, check: bool = True, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
        proc = subprocess.run([str(self.binary), *args], capture_output=True, text=True, timeout=120, env=self.env,
                              cwd=cwd or self.home)
        if check and proc.returncode != 0:
            raise RuntimeError(f"cosign {' '.join(args)} failed ({proc.returncode}): {proc.stderr.strip()[-2000:]}")
        return proc

    def generate(self, name: str) -> Key:
        folder = self.home / "keys" / name
        folder.mkdir(parents=True, exist_ok=True)
        self._run("generate-key-pair", "--output-key-prefix", name, cwd=folder)
        return Key(name, folder / f"{name}.key", folder / f"{name}.pub")

    def import_pem(self, name: str, private_pem: Path) -> Key:
        """A key made by openssl, brought in as `cosign import-key-pair` does (P-384, RSA, Ed25519)."""
        folder = self.home / "keys" / name
        folder.mkdir(parents=True, exist_ok=True)
        self._run("import-key-pair", "--key", str(private_pem), "--output-key-prefix", name, cwd=folder)
        return Key(name, folder / f"{name}.key", folder / f"{name}.pub", private_pem)

    def sign(self, ref: str, key: Key, *, bundle: bool = True) -> None:
        """Sign `ref` (name@digest) offline: a v3 bundle, or with bundle=False the legacy `.sig` format."""
        self._run("sign", "--key", str(key.private), f"--new-bundle-format={'true' if bundle else 'false'}",
                  "--use-signing-config=false", "--tlog-upload=false", "--allow-http-registry",
                  "--allow-insecure-registry", "-y", ref)

    def verify(self, ref: str, key: Key, *, legacy_only: bool = False) -> bool:
        """What cosign says of `ref` (name@digest) with one key: True when it verifies. `legacy_only`: with
        `--new-bundle-format=false`, which reads the `.sig` tag only."""
        mode = ["--new-bundle-format=false"] if legacy_only else []
        return self._run("verify", "--key", str(key.public), *mode, "--insecure-ignore-tlog=true",
                         "--allow-http-registry", "--allow-insecure-registry", ref, check=False).returncode == 0

    def save(self, ref: str, folder: Path) -> None:
        self._run("save", "--dir", str(folder), "--allow-http-registry", "--allow-insecure-registry", ref)


def openssl_key(folder: Path, kind: str) -> Path:
    """A private key in PEM made by openssl: "p384", "rsa" or "ed25519"."""
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{kind}.pem"
    commands = {"p384": ["openssl", "ecparam", "-name", "secp384r1", "-genkey", "-noout", "-out", str(path)],
                "rsa": ["openssl", "genrsa", "-out", str(path), "2048"],
                "ed25519": ["openssl", "genpkey", "-algorithm", "ed25519", "-out", str(path)]}
    subprocess.run(commands[kind], check=True, capture_output=True, timeout=60)
    return path


class Registry:
    """The distribution API of a loopback registry, for what cosign and skopeo do not do: read, copy and tamper."""

    def __init__(self, host: str) -> None:
        self.host = host
        self.base = f"http://{host}/v2"

    def manifest(self, repo: str, reference: str) -> tuple[str, bytes, str]:
        got = httpx.get(f"{self.base}/{repo}/manifests/{reference}", headers={"Accept": ACCEPT}, timeout=30)
        got.raise_for_status()
        return "sha256:" + hashlib.sha256(got.content).hexdigest(), got.content, got.headers["content-type"]

    def has_tag(self, repo: str, tag: str) -> bool:
        return httpx.head(f"{self.base}/{repo}/manifests/{tag}", headers={"Accept": ACCEPT}, timeout=30).status_code == 200

    def blob(self, repo: str, digest: str) -> bytes:
        got = httpx.get(f"{self.base}/{repo}/blobs/{digest}", timeout=30, follow_redirects=True)
        got.raise_for_status()
        return got.content

    def push_blob(self, repo: str, data: bytes) -> str:
        digest = "sha256:" + hashlib.sha256(data).hexdigest()
        start = httpx.post(f"{self.base}/{repo}/blobs/uploads/", timeout=30)
        start.raise_for_status()
        location = start.headers["location"]
        url = location if location.startswith("http") else f"http://{self.host}{location}"
        url += ("&" if "?" in url else "?") + "digest=" + digest.replace(":", "%3A")  # keep the upload's _state
        put = httpx.put(url, content=data, headers={"Content-Type": "application/octet-stream"}, timeout=30)
        put.raise_for_status()
        return digest

    def push_manifest(self, repo: str, reference: str, body: bytes, media_type: str) -> str:
        put = httpx.put(f"{self.base}/{repo}/manifests/{reference}", content=body,
                        headers={"Content-Type": media_type}, timeout=30)
        put.raise_for_status()
        return "sha256:" + hashlib.sha256(body).hexdigest()

    def copy_manifest(self, repo: str, source: str, dest_repo: str, tag: str) -> None:
        """Copy the manifest `source` of `repo` (and, for an OCI index of bundles or a .sig manifest, what it
        references) to `dest_repo:tag`, byte for byte."""
        _, body, media_type = self.manifest(repo, source)
        document = json.loads(body)
        for child in document.get("manifests") or ():
            _, child_body, child_type = self.manifest(repo, child["digest"])
            self._copy_blobs(repo, dest_repo, json.loads(child_body))
            self.push_manifest(dest_repo, child["digest"], child_body, child_type)
        self._copy_blobs(repo, dest_repo, document)
        self.push_manifest(dest_repo, tag, body, media_type.split(";")[0])

    def _copy_blobs(self, repo: str, dest_repo: str, document: dict[str, Any]) -> None:
        for descriptor in [document.get("config"), *(document.get("layers") or ())]:
            if isinstance(descriptor, dict):
                self.push_blob(dest_repo, self.blob(repo, descriptor["digest"]))

    def digest(self, repo: str, tag: str) -> str:
        return self.manifest(repo, tag)[0]


def push_image(layout: Path, registry: str, repo: str, *, user: str = "1000", tag: str = "1.0") -> str:
    """A fresh single-platform image (unique by its label) at registry/repo:tag; returns registry/repo."""
    name = repo.replace("/", "-")
    source = oci.build(layout, name, user=user, labels={"test.image": repo})
    oci.push(source, registry, f"{repo}:{tag}")
    return f"{registry}/{repo}"


def push_index(layout: Path, registry: str, repo: str, *, tag: str = "1.0") -> tuple[str, dict[str, str]]:
    """A fresh two-platform index (linux/amd64, linux/arm64) at registry/repo:tag; returns (registry/repo,
    {platform: manifest digest})."""
    name = repo.replace("/", "-")
    oci.build(layout, f"{name}-amd", user="1000", architecture="amd64", labels={"test.image": repo})
    oci.build(layout, f"{name}-arm", user="1000", architecture="arm64", labels={"test.image": repo})
    oci.add_index(layout, f"{name}-multi", {f"{name}-amd": ("linux", "amd64"), f"{name}-arm": ("linux", "arm64")})
    oci.copy(f"oci:{layout}:{name}-multi", f"docker://{registry}/{repo}:{tag}", all_images=True)
    api = Registry(registry)
    index = json.loads(api.manifest(repo, tag)[1])
    return f"{registry}/{repo}", {f"{m['platform']['os']}/{m['platform']['architecture']}": m["digest"]
                                  for m in index["manifests"]}
