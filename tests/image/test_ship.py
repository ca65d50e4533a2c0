"""Shipped as docs/image.md says: the signed image verifies with `cosign verify` and with our own images.verify; the
offline path (`cosign save --dir`, carried, checked by admission-cli before it is loaded) keeps the signature; and
`skopeo copy` does not carry it."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path
from typing import Any

import pytest

from admission.cli.main import main
from tests.image.conftest import Built
from tests.verify.signing import Cosign, Key


def check(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, dict[str, Any]]:
    code = main(["check", "--format", "json", *argv])
    return code, json.loads(capsys.readouterr().out)


def policy(path: Path, built: Built, images: str) -> Path:
    path.write_text(f"images:\n  allowed_registries: ['{built.host}']\n  insecure_registries: ['{built.host}']\n"
                    f"  verify:\n  - images: ['{images}']\n    keys: [{built.key.public}]\n    signature: required\n")
    return path


def test_cosign_verify_accepts_the_pushed_image_with_the_release_key_only(built: Built,
                                                                         signer: tuple[Cosign, Key]) -> None:
    cosign, key = signer
    assert key == built.key
    assert cosign.verify(built.reference, key)
    assert not cosign.verify(built.reference, cosign.generate("not-release"))


def test_a_cosign_save_layout_carries_the_signature_and_is_checked_before_it_is_loaded(
        capsys: pytest.CaptureFixture[str], tmp_path: Path, built: Built, signer: tuple[Cosign, Key]) -> None:
    cosign, _ = signer
    carried = tmp_path / "admission-image"
    cosign.save(built.reference, carried)
    index = json.loads((carried / "index.json").read_text())
    assert built.digest in json.dumps(index), "the layout holds the signed index"
    code, report = check(capsys, "--offline", "--policy", str(policy(tmp_path / "p.yaml", built, f"{built.host}/*")),
                         str(carried))
    assert (code, report["summary"]["deny"], report["summary"]["warn"]) == (0, 0, 0), report["findings"]
    (proof,) = [v for v in report["verified"] if v["rule"] == "image-signature"]
    assert "OCI layout" in proof["message"]


def test_skopeo_copy_leaves_the_signature_behind(capsys: pytest.CaptureFixture[str], tmp_path: Path, built: Built,
                                                  signer: tuple[Cosign, Key]) -> None:
    cosign, key = signer
    copy = f"{built.host}/copied/admission"
    subprocess.run(["skopeo", "copy", "--quiet", "--all", "--preserve-digests", "--src-tls-verify=false",
                    "--dest-tls-verify=false", f"docker://{built.reference}", f"docker://{copy}:{built.tag}"],
                   check=True, capture_output=True, timeout=600)
    assert not cosign.verify(f"{copy}@{built.digest}", key), "cosign finds no signature on the copy"
    pod = tmp_path / "pod.yaml"
    pod.write_text("apiVersion: v1\nkind: Pod\nmetadata: {name: copied, namespace: shop}\nspec:\n"
                   "  securityContext: {runAsNonRoot: true}\n  containers:\n  - name: webhook\n"
                   f"    image: {copy}:{built.tag}@{built.digest}\n"
                   "    resources: {limits: {cpu: 100m, memory: 64Mi}}\n")
    code, report = check(capsys, "--resolve-images", "--no-cache", "--policy",
                         str(policy(tmp_path / "p.yaml", built, f"{built.host}/*")), str(pod))
    (finding,) = [f for f in report["findings"] if f["rule"] == "image-signature"]
    assert code == 1 and finding["severity"] == "deny" and "no cosign signature" in finding["message"]
