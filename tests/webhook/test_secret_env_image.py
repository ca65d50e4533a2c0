"""no-secret-in-env on a resolved image config, with real components: an image whose config has
`Env: ["API_TOKEN=..."]` (umoci) pushed to a docker-registry on loopback (skopeo), checked by `admission-cli check
--resolve-images` and admitted by the webhook. Both give the same finding; the value is shown in neither, nor in any
CLI format or the audit line."""

from __future__ import annotations

import contextlib
import io
import json
from pathlib import Path

import anyio
import pytest

from admission.cli.main import FORMATS, main
from admission.webhook.settings import Settings
from tests.images import oci
from tests.images.registry import Registry
from tests.webhook.conftest import good_container, pod, review, running

PLANTED = "PLANTED-image-t0ken-51c2e8"
_PUSHED: dict[str, str] = {}


def _image(registry: Registry, layout: Path) -> str:
    if "ref" not in _PUSHED:
        source = oci.build(layout, "secret-env", user="10001",
                           env=("PATH=/usr/bin:/bin", f"API_TOKEN={PLANTED}", "TOKEN_FILE=/run/secrets/token",
                                "TOKENIZERS_PARALLELISM=false"))
        oci.push(source, registry.host, "secrets/env:1")
        _PUSHED["ref"] = f"{registry.host}/secrets/env:1"
    return _PUSHED["ref"]


def _policy_text(host: str) -> str:
    return f"images:\n  resolve: auto\n  allowed_registries: ['{host}']\n  insecure_registries: ['{host}']\n"


def _pod(image: str) -> dict:
    return pod(containers=[good_container(image=image)])


def _cli(args: list[str]) -> str:
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        main(args)
    return out.getvalue()


def _cli_findings(tmp_path: Path, registry: Registry, image: str) -> tuple[list[dict], Path, Path]:
    manifest = tmp_path / "pod.json"
    manifest.write_text(json.dumps(_pod(image)))
    policy = tmp_path / "policy.yaml"
    policy.write_text(_policy_text(registry.host))
    report = json.loads(_cli(["check", "--format", "json", "--resolve-images", "--no-cache", "--policy", str(policy),
                              str(manifest)]))
    assert report["errors"] == []
    return [f for f in report["findings"] if f["rule"] == "no-secret-in-env"], manifest, policy


@pytest.mark.anyio
async def test_cli_and_webhook_give_the_same_finding_for_an_image_env_secret(tmp_path, registry, layout) -> None:
    image = _image(registry, layout)
    found, _, policy = await anyio.to_thread.run_sync(_cli_findings, tmp_path, registry, image)  # the CLI runs its loop
    [finding] = found
    assert finding["severity"] == "warn" and finding["value"] is None and finding["container"] == "app"
    assert "API_TOKEN" in finding["message"] and image in finding["message"] and "Env" in finding["message"]
    assert finding["path"] == "spec.containers[0].image"
    async with running(Settings(policy=str(policy))) as hook:
        response = await hook.post(review(_pod(image)))
        audit = hook.audit()
    answer = response.json()["response"]
    assert answer["allowed"] is True
    warnings = [w for w in answer.get("warnings") or [] if w.startswith("[no-secret-in-env]")]
    assert len(warnings) == 1 and "API_TOKEN" in warnings[0]
    assert PLANTED not in response.text and PLANTED not in json.dumps(audit)


@pytest.mark.anyio
async def test_the_webhook_denies_it_under_a_deny_severity_without_showing_it(tmp_path, registry, layout) -> None:
    image = _image(registry, layout)
    policy = tmp_path / "policy.yaml"
    policy.write_text(_policy_text(registry.host) + "rules:\n  no-secret-in-env: {severity: deny}\n")
    async with running(Settings(policy=str(policy))) as hook:
        response = await hook.post(review(_pod(image)))
        audit = hook.audit()
    answer = response.json()["response"]
    assert answer["allowed"] is False and "no-secret-in-env" in answer["status"]["message"]
    assert "API_TOKEN" in answer["status"]["message"]
    assert PLANTED not in response.text and PLANTED not in json.dumps(audit)


@pytest.mark.parametrize("fmt", FORMATS)
def test_no_cli_format_shows_the_image_env_secret(tmp_path, registry, layout, fmt) -> None:
    image = _image(registry, layout)
    _, manifest, policy = _cli_findings(tmp_path, registry, image)
    text = _cli(["check", "--format", fmt, "--resolve-images", "--policy", str(policy), str(manifest)])
    assert "API_TOKEN" in text and PLANTED not in text
