"""`admission-cli check --resolve-images` end to end, against a real registry: which configs the rules
read for each source, and what an unavailable config becomes (architecture §2 flags, §4)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from admission.cli.main import main
from tests.images import oci
from tests.images.registry import Registry

LABELS = {"org.opencontainers.image.source": "https://example.com/app", "org.opencontainers.image.revision": "abc123"}


@pytest.fixture(scope="module")
def images(registry: Registry, layout: Path) -> dict[str, str]:
    refs = {}
    for tag, user in (("nonroot", "65532"), ("rootless-none", ""), ("named", "appuser")):
        oci.push(oci.build(layout, f"cli-{tag}", user=user, labels=LABELS, history=("umoci config",)),
                 registry.host, f"cli/{tag}:1")
        refs[tag] = f"{registry.host}/cli/{tag}:1"
    return refs


def _check(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, dict]:
    code = main(["check", "--format", "json", "--no-cache", *argv])
    return code, json.loads(capsys.readouterr().out)


def _rules(report: dict) -> set[str]:
    return {f["rule"] for f in report["findings"]}


def test_a_dockerfile_without_user_passes_when_its_base_image_config_sets_one(capsys, tmp_path, images, policy) -> None:
    dockerfile = tmp_path / "Dockerfile"
    dockerfile.write_text(f"FROM {images['nonroot']}\nCOPY app /app\n")
    assert "run-as-non-root" in _rules(_check(capsys, str(dockerfile))[1]), "unresolved: no USER means root"
    code, report = _check(capsys, "--resolve-images", "--policy", str(policy), str(dockerfile))
    assert report["errors"] == [] and "run-as-non-root" not in _rules(report) and code == 0


def test_a_dockerfile_whose_base_sets_no_user_is_root_and_says_why(capsys, tmp_path, images, policy) -> None:
    dockerfile = tmp_path / "Dockerfile"
    dockerfile.write_text(f"FROM {images['rootless-none']}\n")
    _, report = _check(capsys, "--resolve-images", "--policy", str(policy), str(dockerfile))
    (finding,) = [f for f in report["findings"] if f["rule"] == "run-as-non-root"]
    assert "base image" in finding["message"] and finding["line"] == 1


def test_a_compose_service_without_user_or_build_uses_the_image_config_user(capsys, tmp_path, images, policy) -> None:
    compose = tmp_path / "compose.yaml"
    compose.write_text(f"services:\n  web:\n    image: {images['named']}\n    mem_limit: 64m\n    cpus: 1\n"
                       "    healthcheck: {test: [CMD, 'true']}\n    read_only: true\n")
    _, offline = _check(capsys, str(compose))
    assert "run-as-non-root" in _rules(offline), "without the config nothing establishes a user"
    code, report = _check(capsys, "--resolve-images", "--policy", str(policy), str(compose))
    assert _rules(report) == {"numeric-user"} and code == 0
    (warning,) = report["findings"]
    assert warning["value"] == "appuser" and warning["source"] == "compose"


def test_an_unlisted_loopback_registry_is_refused_and_reported_not_silently_passed(capsys, tmp_path, images, registry) -> None:
    manifest = tmp_path / "pod.yaml"
    manifest.write_text(f"apiVersion: v1\nkind: Pod\nmetadata: {{name: p}}\nspec:\n  securityContext: {{runAsUser: 1000}}\n"
                        f"  containers:\n    - name: app\n      image: {images['nonroot']}\n"
                        "      resources: {limits: {cpu: 100m, memory: 64Mi}}\n")
    mark = registry.mark()
    code, report = _check(capsys, "--resolve-images", str(manifest))
    (finding,) = [f for f in report["findings"] if f["rule"] == "image-config-unavailable"]
    assert finding["severity"] == "warn" and "blocked" in finding["message"] and finding["line"] == 8
    assert registry.since(mark) == [], "the guard refuses before any request"
    assert code == 0, "warn by default (images.on_error)"
    strict = tmp_path / "strict.yaml"
    strict.write_text("images: {on_error: deny}\n")
    code, report = _check(capsys, "--resolve-images", "--policy", str(strict), str(manifest))
    assert code == 1 and [f["severity"] for f in report["findings"] if f["rule"] == "image-config-unavailable"] == ["deny"]


def test_offline_reports_nothing_about_image_configs(capsys, tmp_path, images) -> None:
    manifest = tmp_path / "pod.yaml"
    manifest.write_text(f"apiVersion: v1\nkind: Pod\nmetadata: {{name: p}}\nspec:\n  containers:\n"
                        f"    - {{name: app, image: '{images['nonroot']}'}}\n")
    _, report = _check(capsys, "--offline", str(manifest))
    assert "image-config-unavailable" not in _rules(report) and "image-provenance" not in _rules(report)


def test_a_missing_registry_config_file_is_an_input_error(capsys, tmp_path, images, policy) -> None:
    manifest = tmp_path / "pod.yaml"
    manifest.write_text(f"apiVersion: v1\nkind: Pod\nmetadata: {{name: p}}\nspec:\n  containers:\n"
                        f"    - {{name: app, image: '{images['nonroot']}'}}\n")
    code, report = _check(capsys, "--resolve-images", "--policy", str(policy), "--registry-config",
                          str(tmp_path / "absent.json"), str(manifest))
    assert code == 2 and report["errors"]
