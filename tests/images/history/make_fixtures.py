"""Write the image rule fixtures as tiny OCI layout directories (JSON only, no layers).

    python tests/images/history/make_fixtures.py

- tests/rules/image-provenance/{pass,fail}__<name>/ from the transcribed histories in this folder (*.json), plus
  fail__missing-source-labels;
- the image fixtures of the user rules (run-as-non-root, numeric-user).

Output is deterministic (sorted keys, fixed timestamps), so regenerating changes nothing unless the data did;
tests/images/test_provenance.py checks the committed fixtures match. A fail__ fixture gets an expect.txt with
`# expect: <image name>` lines (images have no line numbers).
"""

from __future__ import annotations

import hashlib
import json
import shutil
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
RULES = HERE.parents[1] / "rules"
CREATED = "2024-01-01T00:00:00Z"
REGISTRY = "registry.example.com/fixtures"
PROVENANCE_LABELS = {"org.opencontainers.image.source": "https://github.com/example/app",
                     "org.opencontainers.image.revision": "0123456789abcdef0123456789abcdef01234567"}
BUILDKIT_HISTORY = (
    {"created": CREATED, "created_by": "COPY app /app # buildkit", "comment": "buildkit.dockerfile.v0"},
    {"created": CREATED, "created_by": "USER 1001", "comment": "buildkit.dockerfile.v0", "empty_layer": True},
)
OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
OCI_CONFIG = "application/vnd.oci.image.config.v1+json"


def _canonical(obj: Any) -> bytes:
    return json.dumps(obj, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode("utf-8")


def layout(*, name: str, user: str, history: Sequence[Mapping[str, Any]], labels: Mapping[str, str],
           os_name: str = "linux", expect: bool) -> dict[str, bytes]:
    """The files of one OCI layout holding one image, as {relative path: bytes}."""
    config = _canonical({
        "architecture": "amd64", "os": os_name, "created": CREATED,
        "config": {"User": user, "Labels": dict(labels)} if labels else {"User": user},
        "rootfs": {"type": "layers", "diff_ids": []},
        "history": list(history),
    })
    config_digest = hashlib.sha256(config).hexdigest()
    manifest = _canonical({"schemaVersion": 2, "mediaType": OCI_MANIFEST,
                           "config": {"mediaType": OCI_CONFIG, "digest": f"sha256:{config_digest}", "size": len(config)},
                           "layers": []})
    manifest_digest = hashlib.sha256(manifest).hexdigest()
    index = _canonical({"schemaVersion": 2, "manifests": [{
        "mediaType": OCI_MANIFEST, "digest": f"sha256:{manifest_digest}", "size": len(manifest),
        "annotations": {"org.opencontainers.image.ref.name": name}}]})
    files = {"oci-layout": _canonical({"imageLayoutVersion": "1.0.0"}), "index.json": index,
             f"blobs/sha256/{config_digest}": config, f"blobs/sha256/{manifest_digest}": manifest}
    if expect:
        files["expect.txt"] = f"# expect: {name}\n".encode()
    return files


def fixtures() -> dict[Path, dict[str, bytes]]:
    """Every fixture directory this script owns -> its files."""
    out: dict[Path, dict[str, bytes]] = {}
    provenance = RULES / "image-provenance"
    for source in sorted(HERE.glob("*.json")):
        data = json.loads(source.read_text(encoding="utf-8"))
        verdict = data["verdict"]
        name = f"{REGISTRY}/{source.stem}:1.0"
        out[provenance / f"{verdict}__{source.stem}"] = layout(
            name=name, user="1001", history=data["history"], labels={**data.get("labels", {}), **PROVENANCE_LABELS},
            os_name=data.get("os", "linux"), expect=verdict == "fail")
    out[provenance / "fail__missing-source-labels"] = layout(
        name=f"{REGISTRY}/unlabelled:1.0", user="1001", history=BUILDKIT_HISTORY, labels={}, expect=True)
    users = {
        RULES / "run-as-non-root" / "fail__image-no-user": ("", True),
        RULES / "run-as-non-root" / "fail__image-root-uid": ("0:0", True),
        RULES / "run-as-non-root" / "pass__image-numeric-user": ("1001", False),
        RULES / "numeric-user" / "fail__image-named-user": ("appuser", True),
        RULES / "numeric-user" / "pass__image-numeric": ("1001:1001", False),
    }
    for folder, (user, fails) in users.items():
        out[folder] = layout(name=f"{REGISTRY}/{folder.name.split('__', 1)[1]}:1.0", user=user,
                             history=BUILDKIT_HISTORY, labels=PROVENANCE_LABELS, expect=fails)
    return out


def main() -> int:
    for folder, files in fixtures().items():
        if folder.exists():
            shutil.rmtree(folder)
        for rel, content in files.items():
            path = folder / rel
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_bytes(content)
        print(folder.relative_to(RULES.parent.parent))
    return 0


if __name__ == "__main__":
    sys.exit(main())
