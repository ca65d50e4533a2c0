"""Cluster reads where no real API server is needed or where it will not fail on demand. No cluster configuration at
all; a static docker config; and a loopback server answering with real Kubernetes API JSON, kept only for faults (a
LimitRange watch that fails with a 500). LimitRange defaults, the watch, per-namespace reads, 403s and pull secrets
are tested against the real API server in tests/cluster/."""

from __future__ import annotations

import asyncio

import logging
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from admission.webhook.settings import Settings
from tests.images import oci
from tests.images.conftest import REGISTRY_PASSWORD, REGISTRY_USER
from tests.images.registry import Registry
from tests.webhook.conftest import deployment, good_container, pod, review, rules_in, running, write_policy
from tests.webhook.kubeapi import KubeAPI, limit_range, status

pytestmark = pytest.mark.anyio


@pytest.fixture()
def kube() -> Iterator[KubeAPI]:
    server = KubeAPI().start()
    yield server
    server.stop()


def no_limits(name: str = "app", image: str = "registry.example/app:1.2.3") -> dict[str, Any]:
    container = good_container(name, image)
    del container["resources"]
    return container


def in_namespace(obj: dict[str, Any], namespace: str) -> dict[str, Any]:
    obj["metadata"]["namespace"] = namespace
    return obj


def settings(tmp_path: Path, kube: KubeAPI, policy: str = "images: {resolve: false}\n", **kwargs: Any) -> Settings:
    return Settings(policy=str(write_policy(tmp_path / "p", policy)), kubeconfig=str(kube.kubeconfig(tmp_path)),
                    **kwargs)


@pytest.fixture(autouse=True)
def _outside_a_cluster(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("KUBERNETES_SERVICE_HOST", raising=False)
    monkeypatch.delenv("KUBERNETES_SERVICE_PORT", raising=False)


async def test_without_cluster_configuration_reads_are_off_and_it_is_logged(
        tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, "admission.webhook")
    policy = write_policy(tmp_path / "p")
    async with running(Settings(policy=str(policy), limitrange_reads=True, pull_secrets=True,
                                kubeconfig=str(tmp_path / "no-such-kubeconfig"))) as hook:
        got = await hook.answer(review(deployment(containers=[no_limits()])))
        assert hook.state.cluster is None
    assert "cluster reads are off" in caplog.text
    assert got["allowed"] is False and "resource-limits" in rules_in(got["status"]["message"])


# --- pull secrets against a registry behind basic auth ------------------------------------------------------


async def test_a_failing_limitrange_watch_falls_back_to_reads_per_namespace_while_it_restarts(
        tmp_path: Path, kube: KubeAPI, caplog: pytest.LogCaptureFixture) -> None:
    """A 500 on the cluster-wide list is a fault a real API server will not produce on demand: the watch backs off
    and retries, and meanwhile each namespace is read when a request needs it."""
    caplog.set_level(logging.INFO, "admission.webhook")
    kube.overrides["/api/v1/limitranges"] = (500, status(500, "InternalError", "etcdserver: request timed out"))
    kube.limitranges["team-a"] = [limit_range("team-a", "defaults", {"cpu": "500m", "memory": "512Mi"})]
    async with running(settings(tmp_path, kube, limitrange_reads=True)) as hook:
        got = await hook.answer(review(in_namespace(deployment(containers=[no_limits()]), "team-a"), namespace="team-a"))
        # The watch runs in its own thread: the answer may come before its failed list is logged.
        deadline = time.monotonic() + 10
        while "LimitRange watch failed" not in caplog.text and time.monotonic() < deadline:
            await asyncio.sleep(0.05)
    assert got["allowed"] is True
    assert "/api/v1/namespaces/team-a/limitranges" in kube.paths()
    assert "LimitRange watch failed (500 InternalError); reading per namespace while it restarts" in caplog.text


@pytest.fixture()
def private_image(htpasswd_registry: Registry, layout: Path) -> str:
    ref = "webhook/private:1"
    oci.push(oci.build(layout, "webhook-private", user="1000"), htpasswd_registry.host, ref,
             creds=f"{REGISTRY_USER}:{REGISTRY_PASSWORD}")
    return f"{htpasswd_registry.host}/{ref}"


def private_policy(host: str) -> str:
    return (f"images:\n  resolve: auto\n  on_error: deny\n  allowed_registries: [{host}]\n"
            f"  insecure_registries: [{host}]\n")


def unpinned(image: str) -> dict[str, Any]:
    container = good_container(image=image)
    container["securityContext"] = {}
    return container


@pytest.mark.parametrize("redact", [True, False], ids=["redacted", "detailed"])
async def test_a_static_docker_config_gives_credentials_and_redaction_hides_what_only_the_image_says(
        tmp_path: Path, htpasswd_registry: Registry, layout: Path, redact: bool) -> None:
    import base64
    import json

    host = htpasswd_registry.host
    named = "webhook/named-user:1"
    oci.push(oci.build(layout, "webhook-named", user="appuser"), host, named,
             creds=f"{REGISTRY_USER}:{REGISTRY_PASSWORD}")
    config = tmp_path / "docker-config.json"
    config.write_text(json.dumps({"auths": {host: {"auth": base64.b64encode(
        f"{REGISTRY_USER}:{REGISTRY_PASSWORD}".encode()).decode()}}}))
    policy = write_policy(tmp_path / "p", private_policy(host))
    container = good_container(image=f"{host}/{named}")
    container["securityContext"] = {"runAsNonRoot": True}  # the kubelet cannot verify a named user
    async with running(Settings(policy=str(policy), docker_config=str(config), redact_details=redact)) as hook:
        got = await hook.answer(review(pod(containers=[container])))
    message = got["status"]["message"]
    assert got["allowed"] is False and "run-as-non-root" in rules_in(message)
    if redact:
        assert "appuser" not in message and "details withheld" in message
    else:
        assert "appuser" in message
