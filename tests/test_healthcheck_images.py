"""healthcheck reads a resolved image config's Healthcheck, end to end with real components: images built by buildah
(Docker format, which keeps HEALTHCHECK; the OCI config has no such field), pushed to a real docker-registry on
loopback, resolved by `admission-cli check --resolve-images`, cold and from a warm disk cache."""

from __future__ import annotations

import json
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from admission.cli.main import main
from admission.images.cache import _FORMAT as FORMAT
from tests.images.registry import Registry, free_port, have_registry


@pytest.fixture(scope="module")
def registry(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Registry]:
    if not have_registry() or not shutil.which("buildah"):
        pytest.fail("docker-registry and buildah are required; `make test` installs them")
    reg = Registry(tmp_path_factory.mktemp("health-registry"), free_port()).start()
    yield reg
    reg.stop()


def _buildah(store: Path, *argv: str) -> str:
    proc = subprocess.run(["buildah", "--storage-driver", "vfs", "--root", str(store / "root"), "--runroot",
                           str(store / "run"), *argv], capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    return proc.stdout.strip()


@pytest.fixture(scope="module")
def images(registry: Registry, tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    """Three images: a HEALTHCHECK CMD, a HEALTHCHECK NONE, and none at all."""
    store = tmp_path_factory.mktemp("buildah")
    refs = {}
    for name, health in (("check", 'CMD ["/bin/healthy"]'), ("none", "NONE"), ("unset", None)):
        container = _buildah(store, "from", "scratch")
        if health is not None:
            _buildah(store, "config", "--healthcheck", health, container)
        _buildah(store, "config", "--user", "10001", container)
        _buildah(store, "commit", "--format", "docker", container, f"health-{name}:1")
        ref = f"{registry.host}/health/{name}:1"
        _buildah(store, "push", "--tls-verify=false", "--format", "v2s2", f"health-{name}:1", f"docker://{ref}")
        refs[name] = ref
    return refs


def _project(tmp_path: Path, image: str) -> Path:
    compose = tmp_path / "compose.yaml"
    compose.write_text(f"services:\n  web:\n    image: {image}\n    user: '10001'\n    mem_limit: 64m\n    cpus: 0.5\n")
    return compose


def _check(capsys: pytest.CaptureFixture[str], registry: Registry, tmp_path: Path, *argv: str) -> dict:
    policy = tmp_path / "policy.yaml"
    policy.write_text(f"images: {{allowed_registries: ['{registry.host}'], insecure_registries: ['{registry.host}']}}\n")
    main(["check", "--format", "json", "--resolve-images", "--policy", str(policy), *argv])
    return json.loads(capsys.readouterr().out)


def _health(report: dict) -> list[dict]:
    return [f for f in report["findings"] if f["rule"] == "healthcheck"]


def test_a_service_whose_resolved_image_has_a_healthcheck_passes(capsys, tmp_path, registry, images) -> None:
    compose = _project(tmp_path, images["check"])
    offline = main(["check", "--format", "json", str(compose)]) or json.loads(capsys.readouterr().out)
    assert [f["message"] for f in _health(offline)] and "--resolve-images" in _health(offline)[0]["message"]
    report = _check(capsys, registry, tmp_path, "--no-cache", str(compose))
    assert report["errors"] == [] and _health(report) == []


def test_an_image_healthcheck_none_is_no_health_check(capsys, tmp_path, registry, images) -> None:
    report = _check(capsys, registry, tmp_path, "--no-cache", str(_project(tmp_path, images["none"])))
    [finding] = _health(report)
    assert "HEALTHCHECK NONE" in finding["message"] and finding["severity"] == "warn"


def test_an_image_without_healthcheck_warns_that_its_config_has_none(capsys, tmp_path, registry, images) -> None:
    report = _check(capsys, registry, tmp_path, "--no-cache", str(_project(tmp_path, images["unset"])))
    [finding] = _health(report)
    assert "its image config has none either" in finding["message"]


def test_a_warm_disk_cache_keeps_the_image_healthcheck(capsys, tmp_path, registry, images) -> None:
    compose, cache = _project(tmp_path, images["check"]), tmp_path / "cache"
    cold = _check(capsys, registry, tmp_path, "--cache-dir", str(cache), str(compose))
    [entry] = list((cache / FORMAT / "configs").glob("*.json"))
    assert json.loads(entry.read_text())["config"]["healthcheck"][0] == "CMD", "the disk entry carries the Healthcheck"
    mark = registry.mark()
    warm = _check(capsys, registry, tmp_path, "--cache-dir", str(cache), str(compose))
    assert registry.since(mark) == [], "the tag and the config came from disk"
    assert _health(cold) == _health(warm) == []
