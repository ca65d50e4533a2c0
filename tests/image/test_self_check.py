"""Checked by ourselves, as a user would: the chart rendered with the image make image pushed and cosign signed,
pinned by digest, and `admission-cli check --resolve-images` on that render with a policy that requires the image's
signature and its BuildKit provenance, signed through the index and naming our source. Every image rule reads the
real image from the registry: the proofs, the size the image-size rule measures, and what the same check says of the
unlabelled, unsigned Debian base in its place show it."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from admission.cli.main import main
from tests.chart.conftest import render
from tests.image.conftest import SOURCE, Built
from tests.image.images import Source

MIB = 1024 * 1024


def chart(tmp_path: Path, repository: str, digest: str, tag: str | None = None) -> Path:
    image: dict[str, str] = {"repository": repository, "digest": digest}
    if tag:
        image["tag"] = tag
    path = tmp_path / "admission.yaml"
    path.write_text(render({"image": image}).stream)
    return path


def policy(tmp_path: Path, built: Built, *, rules: str = "") -> Path:
    path = tmp_path / "policy.yaml"
    path.write_text(f"{rules}images:\n  allowed_registries: ['{built.host}']\n  insecure_registries: ['{built.host}']\n"
                    f"  verify:\n  - images: ['{built.host}/*']\n    keys: [{built.key.public}]\n"
                    f"    signature: required\n    provenance: required\n    sources: ['{SOURCE}*']\n"
                    "    on_unavailable: deny\n")
    return path


def check(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, dict[str, Any]]:
    code = main(["check", "--format", "json", "--resolve-images", "--no-cache", *argv])
    return code, json.loads(capsys.readouterr().out)


def sizes(built: Built, platform: str) -> list[int]:
    return [layer["size"] for layer in Source.registry(built.host, "admission").layers(built.platforms[platform])]


def test_the_chart_with_our_signed_image_passes_our_own_check(
        capsys: pytest.CaptureFixture[str], tmp_path: Path, built: Built) -> None:
    rendered = chart(tmp_path, built.repository, built.digest)
    assert f"image: \"{built.repository}:{built.tag}@{built.digest}\"" in rendered.read_text()
    code, report = check(capsys, "--policy", str(policy(tmp_path, built)), str(rendered))
    assert report["findings"] == [] and report["errors"] == [], report
    assert (report["summary"]["deny"], report["summary"]["warn"], code) == (0, 0, 0)
    for rule in ("image-signature", "image-attestation"):
        proofs = {(v["object"]["kind"], v["container"]) for v in report["verified"] if v["rule"] == rule}
        assert {("Deployment", "webhook"), ("Job", "check-policy")} <= proofs, (rule, report["verified"])
    assert all(built.digest[:19] in v["message"] for v in report["verified"])
    provenance = [v["message"] for v in report["verified"] if v["rule"] == "image-attestation"]
    assert all("every runnable platform" in m and "built by BuildKit" in m and SOURCE in m for m in provenance), provenance


def test_the_findings_are_computed_from_the_real_image(
        capsys: pytest.CaptureFixture[str], tmp_path: Path, built: Built) -> None:
    """A 1 MiB image-size limit makes the rule say what it measured: the amd64 manifest's compressed layers, the
    largest named by the step that made them. The base image in our image's place, unlabelled and unsigned, is
    denied and warned by the same policy."""
    amd64 = sizes(built, "linux/amd64")
    code, report = check(capsys, "--policy", str(policy(tmp_path, built, rules="rules: {image-size: {params: "
                                                                                 "{max_mib: 1}}}\n")),
                         str(chart(tmp_path, built.repository, built.digest)))
    found = [f for f in report["findings"] if f["rule"] == "image-size"]
    assert found and {f["value"] for f in found} == {f"{sum(amd64) / MIB:.1f} MiB"}
    message = found[0]["message"]
    assert f"in {len(amd64)} layers (compressed, as a pull transfers them), over the 1 MiB limit" in message
    assert f"layer 1 {amd64[0] / MIB:.1f} MiB: `umoci raw add-layer rootfs-amd64.tar`" in message
    assert f"layer 2 {amd64[1] / MIB:.1f} MiB: `COPY /opt/venv /opt/venv`" in message  # BuildKit records COPY --from so
    assert {f["rule"] for f in report["findings"]} == {"image-size"} and code == 0

    name, _, tag = built.base.rpartition(":")
    code, report = check(capsys, "--policy", str(policy(tmp_path, built)),
                         str(chart(tmp_path, name, built.base_digest, tag)))
    rules = {(f["rule"], f["severity"]) for f in report["findings"]}
    assert {("image-signature", "deny"), ("image-attestation", "deny"), ("image-provenance", "warn")} <= rules, rules
    assert code == 1


@pytest.mark.parametrize("platform", ["linux/amd64", "linux/arm64"])
def test_each_platform_is_within_the_default_size_limit(built: Built, platform: str) -> None:
    layers = sizes(built, platform)
    assert sum(layers) < 300 * MIB, "image-size's default max_mib"
    print(f"\n{platform}: {sum(layers) / MIB:.1f} MiB compressed in {len(layers)} layers: "
          + ", ".join(f"{size / MIB:.1f} MiB" for size in sorted(layers, reverse=True)))
