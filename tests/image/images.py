"""Reading what make image produced, from the registry or from an OCI archive: indexes, configs, layers and the
SLSA provenance BuildKit attaches (an attestation manifest per platform, naming it by `vnd.docker.reference.digest`)."""

from __future__ import annotations

import gzip
import io
import json
import tarfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

from tests.verify.signing import Registry


class Source:
    """An image store: `document(digest)` and `blob(digest)`, from a registry repository or an OCI archive."""

    def __init__(self, blob: Callable[[str], bytes]) -> None:
        self.blob = blob

    @classmethod
    def registry(cls, host: str, repository: str) -> Source:
        api = Registry(host)

        def read(digest: str) -> bytes:
            try:
                return api.blob(repository, digest)
            except Exception:  # noqa: BLE001 - manifests are not blobs on every registry
                return api.manifest(repository, digest)[1]

        return cls(read)

    @classmethod
    def archive(cls, path: Path) -> tuple[Source, str]:
        """An OCI archive (tar of an OCI layout): the source and the digest of the image its index.json names."""
        with tarfile.open(path) as tar:
            members = {m.name.removeprefix("./"): m for m in tar.getmembers()}
            index = json.loads(tar.extractfile(members["index.json"]).read())  # type: ignore[union-attr]

        def read(digest: str) -> bytes:
            with tarfile.open(path) as tar:
                member = tar.extractfile(members["blobs/sha256/" + digest.split(":", 1)[1]])
                assert member is not None
                return member.read()

        (top,) = index["manifests"]
        return cls(read), top["digest"]

    def document(self, digest: str) -> dict[str, Any]:
        return json.loads(self.blob(digest))

    def platforms(self, index_digest: str) -> dict[str, str]:
        index = self.document(index_digest)
        return {f"{m['platform']['os']}/{m['platform']['architecture']}": m["digest"] for m in index["manifests"]
                if m["platform"]["os"] != "unknown"}

    def config(self, manifest_digest: str) -> dict[str, Any]:
        return self.document(self.document(manifest_digest)["config"]["digest"])

    def layers(self, manifest_digest: str) -> list[dict[str, Any]]:
        return self.document(manifest_digest)["layers"]

    def provenance(self, index_digest: str, manifest_digest: str) -> dict[str, Any]:
        """The in-toto statement of the attestation manifest that names `manifest_digest`."""
        index = self.document(index_digest)
        (attestation,) = [m for m in index["manifests"]
                          if m.get("annotations", {}).get("vnd.docker.reference.digest") == manifest_digest]
        assert attestation["annotations"]["vnd.docker.reference.type"] == "attestation-manifest"
        (layer,) = [layer for layer in self.document(attestation["digest"])["layers"]
                    if layer["mediaType"] == "application/vnd.in-toto+json"]
        return json.loads(self.blob(layer["digest"]))

    def layer_files(self, layer_digest: str) -> tarfile.TarFile:
        return tarfile.open(fileobj=io.BytesIO(gzip.decompress(self.blob(layer_digest))))
