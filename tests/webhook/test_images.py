"""Image configs in the webhook, against a real docker-registry on loopback and a fault server: resolution with
`images.resolve: auto`, the deadline (the answer arrives inside it, as image-config-unavailable), and a policy
reload that changes the registry gates taking effect on the very next request, warm cache or not."""

from __future__ import annotations

import asyncio
import os
import time
from pathlib import Path
from typing import Any

import pytest

from admission.webhook.settings import Settings
from tests.images import oci
from tests.images.faults import Faults, hang
from tests.images.registry import Registry
from tests.webhook.conftest import good_container, pod, review, rules_in, running

pytestmark = pytest.mark.anyio

_PUSHED: dict[str, str] = {}


def pushed(registry: Registry, layout: Path, name: str, user: str) -> str:
    """`<registry>/webhook/<name>:1` whose config user is `user` (built once per session)."""
    ref = f"webhook/{name}:1"
    if ref not in _PUSHED:
        oci.push(oci.build(layout, f"webhook-{name}", user=user), registry.host, ref)
        _PUSHED[ref] = f"{registry.host}/{ref}"
    return _PUSHED[ref]


def images_policy(host: str, *, allowed: bool = True, on_error: str = "deny") -> str:
    listed = f"[{host}]" if allowed else "[]"
    return (f"images:\n  resolve: auto\n  on_error: {on_error}\n  allowed_registries: {listed}\n"
            f"  insecure_registries: [{host}]\n")


def unpinned_user(image: str) -> dict[str, Any]:
    """A container that leaves the user to its image: only the image config can tell."""
    container = good_container(image=image)
    container["securityContext"] = {}
    return container


class ConfigMapDir:
    """A policy mounted from a ConfigMap: `policy.yaml -> ..data/policy.yaml`, `..data -> ..<version>`."""

    def __init__(self, root: Path) -> None:
        self.root = root
        root.mkdir(parents=True, exist_ok=True)
        self.version = 0

    @property
    def path(self) -> Path:
        return self.root / "policy.yaml"

    def publish(self, text: str) -> None:
        self.version += 1
        target = self.root / f"..2026_01_01_00_00_0{self.version}.000000001"
        target.mkdir()
        (target / "policy.yaml").write_text(text)
        tmp = self.root / "..data_tmp"
        os.symlink(target.name, tmp)
        os.replace(tmp, self.root / "..data")  # the kubelet's atomic swap
        if not self.path.is_symlink():
            os.symlink("..data/policy.yaml", self.path)


async def wait_for_generation(hook: Any, generation: int, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while hook.state.holder.generation < generation and time.monotonic() < deadline:
        await asyncio.sleep(0.02)
    assert hook.state.holder.generation >= generation, "the watcher did not pick up the ..data swap"


async def test_the_image_config_decides_run_as_non_root(tmp_path: Path, registry: Registry, layout: Path) -> None:
    non_root = pushed(registry, layout, "nonroot", "1000")
    root = pushed(registry, layout, "root", "0")
    policy = tmp_path / "policy.yaml"
    policy.write_text(images_policy(registry.host))
    async with running(Settings(policy=str(policy))) as hook:
        allowed = await hook.answer(review(pod(containers=[unpinned_user(non_root)])))
        denied = await hook.answer(review(pod(containers=[unpinned_user(root)])))
        metrics = (await hook.client.get("/metrics")).text
    assert allowed["allowed"] is True
    assert denied["allowed"] is False and "run-as-non-root" in rules_in(denied["status"]["message"])
    assert "root" in denied["status"]["message"]
    assert f'admission_registry_requests_total{{registry="{registry.host}",status="200"}}' in metrics
    assert 'admission_image_cache_lookups_total{result="miss"} 2.0' in metrics


@pytest.mark.parametrize("warm", [True, False], ids=["warm-cache", "cold-cache"])
async def test_a_reload_that_removes_a_registry_takes_effect_on_the_next_request(
        tmp_path: Path, registry: Registry, layout: Path, warm: bool) -> None:
    image = pushed(registry, layout, "gated", "1000")
    mount = ConfigMapDir(tmp_path / "config")
    mount.publish(images_policy(registry.host))
    body = review(pod(containers=[unpinned_user(image)]))
    async with running(Settings(policy=str(mount.path), watch_interval=0.05)) as hook:
        if warm:
            first = await hook.answer(body)
            assert first["allowed"] is True
            assert (await hook.answer(body))["allowed"] is True  # now from the cache
        mark = registry.mark()
        mount.publish(images_policy(registry.host, allowed=False))
        await wait_for_generation(hook, 1)
        refused = await hook.answer(body)
        requests_after_reload = [r for r in registry.since(mark) if "/webhook/gated/" in r[1]]
        mount.publish(images_policy(registry.host))
        await wait_for_generation(hook, 2)
        again = await hook.answer(body)
    assert refused["allowed"] is False
    message = refused["status"]["message"]
    assert {"image-config-unavailable", "run-as-non-root"} <= rules_in(message)
    # the requester is told "unavailable", the audit line why: a loopback address outside allowed_registries
    assert "container 'app' uses an image whose config is unavailable" in message and "blocked" not in message
    (failure,) = [line for line in hook.audit() if line["uid"] == body["request"]["uid"] and not line["allowed"]][0][
        "images"]
    assert failure["reason"] == "address-guard" and "loopback" in failure["detail"]
    assert requests_after_reload == []  # refused before any registry request, cached answer or not
    assert again["allowed"] is True


FAILED = 'admission_policy_reloads_total{result="failure"} 1.0'


async def test_an_invalid_policy_reload_keeps_the_old_policy_and_is_counted(tmp_path: Path) -> None:
    mount = ConfigMapDir(tmp_path / "config")
    mount.publish("images: {resolve: false}\nrules:\n  image-tag-pinned: warn\n")
    body = review(pod(containers=[{**good_container(), "image": "nginx:latest"}]))
    async with running(Settings(policy=str(mount.path), watch_interval=0.05)) as hook:
        before = await hook.answer(body)
        mount.publish("images: {resolve: false}\nrules:\n  image-tag-pinned: {severity: sometimes}\n")
        deadline = time.monotonic() + 10
        while FAILED not in (await hook.client.get("/metrics")).text and time.monotonic() < deadline:
            await asyncio.sleep(0.02)
        after = await hook.answer(body)
        metrics = (await hook.client.get("/metrics")).text
        ready = await hook.client.get("/readyz")
    assert before["allowed"] is True and before["warnings"][0].startswith("[image-tag-pinned]")
    assert after == {**before, "uid": after["uid"]}
    assert FAILED in metrics
    assert ready.status_code == 200


async def test_a_hanging_registry_is_answered_inside_the_deadline(tmp_path: Path, faults: Faults) -> None:
    faults.route("/v2/", hang())
    policy = tmp_path / "policy.yaml"
    policy.write_text(images_policy(faults.host, on_error="warn"))
    image = f"{faults.host}/slow/app:1"
    other = f"{faults.host}/slow/worker:2"
    async with running(Settings(policy=str(policy), deadline=0.6)) as hook:
        started = time.monotonic()
        got = await hook.answer(review(pod(containers=[good_container(image=image),
                                                       good_container("worker", image=other)])))
        elapsed = time.monotonic() - started
        metrics = (await hook.client.get("/metrics")).text
    assert elapsed < 0.6, f"answered after {elapsed:.3f} s"
    assert got["allowed"] is True
    # the answer says only "unavailable"; the audit line and the counters say why
    assert "[image-config-unavailable] container 'app' uses an image whose config is unavailable" in got["warnings"]
    assert {"image": image, "container": "app", "reason": "timeout"}.items() <= hook.audit()[-1]["images"][0].items()
    assert "admission_image_deadline_misses_total 2.0" in metrics
    assert 'admission_image_failures_total{reason="timeout"} 2.0' in metrics


async def test_the_api_servers_timeout_shortens_the_deadline(tmp_path: Path, faults: Faults) -> None:
    faults.route("/v2/", hang())
    policy = tmp_path / "policy.yaml"
    policy.write_text(images_policy(faults.host, on_error="deny"))
    image = f"{faults.host}/slow/app:1"
    async with running(Settings(policy=str(policy), deadline=10.0, timeout_margin=0.25)) as hook:
        started = time.monotonic()
        got = await hook.answer(review(pod(containers=[good_container(image=image)])), params={"timeout": "1s"})
        elapsed = time.monotonic() - started
    assert elapsed < 0.75, f"answered after {elapsed:.3f} s"
    assert got["allowed"] is False and "image-config-unavailable" in rules_in(got["status"]["message"])
    assert hook.audit()[-1]["deadline_ms"] == 750.0
