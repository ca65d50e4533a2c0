"""Cluster reads against a loopback server that answers with real Kubernetes API JSON, through the `kubernetes`
client and a kubeconfig: LimitRange defaults (per namespace, and kept current by a watch), pull secrets from the
Pod and its ServiceAccount, 403 and 404 answers, and no cluster configuration at all."""

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
from tests.webhook.kubeapi import KubeAPI, docker_secret, forbidden, limit_range, service_account

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


async def test_a_namespace_limitrange_default_lets_a_template_without_limits_pass(tmp_path: Path, kube: KubeAPI) -> None:
    kube.overrides["/api/v1/limitranges"] = (403, forbidden("limitranges"))  # no cluster-wide list: per namespace
    kube.limitranges["team-a"] = [limit_range("team-a", "defaults", {"cpu": "500m", "memory": "512Mi"})]
    kube.limitranges["team-b"] = [limit_range("team-b", "memory-only", {"memory": "1Gi"})]
    async with running(settings(tmp_path, kube, limitrange_reads=True)) as hook:
        team_a = await hook.answer(review(in_namespace(deployment(containers=[no_limits()]), "team-a"), namespace="team-a"))
        team_b = await hook.answer(review(in_namespace(deployment(containers=[no_limits()]), "team-b"), namespace="team-b"))
        bare = await hook.answer(review(in_namespace(deployment(containers=[no_limits()]), "team-c"), namespace="team-c"))
        again = await hook.answer(review(in_namespace(deployment(containers=[no_limits()]), "team-a"), namespace="team-a"))
        metrics = (await hook.client.get("/metrics")).text
    assert team_a["allowed"] is True and again["allowed"] is True
    assert team_b["allowed"] is False and "cpu limit" in team_b["status"]["message"]
    assert "no LimitRange of the namespace gives a default for it" in team_b["status"]["message"]
    assert "memory limit" not in team_b["status"]["message"]
    assert bare["allowed"] is False
    assert kube.paths().count("/api/v1/namespaces/team-a/limitranges") == 1  # cached for the next request
    assert all(auth == "Bearer webhook-test-token" for _, auth in kube.log)
    assert 'admission_cluster_reads_total{resource="limitranges",result="ok"}' in metrics


async def test_a_pod_is_not_given_limitrange_defaults_because_the_api_server_already_applied_them(
        tmp_path: Path, kube: KubeAPI) -> None:
    kube.overrides["/api/v1/limitranges"] = (403, forbidden("limitranges"))
    kube.limitranges["team-a"] = [limit_range("team-a", "defaults", {"cpu": "500m", "memory": "512Mi"})]
    async with running(settings(tmp_path, kube, limitrange_reads=True)) as hook:
        got = await hook.answer(review(in_namespace(pod(containers=[no_limits()]), "team-a"), namespace="team-a"))
    assert got["allowed"] is False  # a Pod reaching us without limits was not given any: its namespace has none now
    assert not [p for p in kube.paths() if p.startswith("/api/v1/namespaces/")]


async def test_a_forbidden_limitrange_read_counts_no_defaults_and_says_so(tmp_path: Path, kube: KubeAPI) -> None:
    kube.overrides["/api/v1/limitranges"] = (403, forbidden("limitranges"))
    kube.overrides["/api/v1/namespaces/locked/limitranges"] = (403, forbidden("limitranges", "locked"))
    async with running(settings(tmp_path, kube, limitrange_reads=True)) as hook:
        got = await hook.answer(review(in_namespace(deployment(containers=[no_limits()]), "locked"), namespace="locked"))
    message = got["status"]["message"]
    assert got["allowed"] is False and "resource-limits" in rules_in(message)
    assert "LimitRange could not be read (403 Forbidden), so no defaults were counted" in message
    assert "CI cannot see" not in message


async def test_limitranges_are_kept_current_by_a_watch(tmp_path: Path, kube: KubeAPI) -> None:
    kube.limitranges["team-a"] = [limit_range("team-a", "defaults", {"cpu": "500m", "memory": "512Mi"})]
    async with running(settings(tmp_path, kube, limitrange_reads=True)) as hook:
        reads = hook.state.cluster
        deadline = time.monotonic() + 10
        while reads._watched is None and time.monotonic() < deadline:
            await asyncio.sleep(0.02)
        assert reads._watched is not None, "the watch did not list"
        assert (await hook.answer(review(in_namespace(deployment(containers=[no_limits()]), "team-a"),
                                         namespace="team-a")))["allowed"] is True
        # A LimitRange added later arrives on the watch stream.
        added = limit_range("team-d", "defaults", {"cpu": "1", "memory": "1Gi"}, version="1002")
        kube.watch_events.put({"type": "ADDED", "object": {"kind": "LimitRange", "apiVersion": "v1", **added}})
        while "team-d" not in reads._watched and time.monotonic() < deadline:
            await asyncio.sleep(0.02)
        team_d = await hook.answer(review(in_namespace(deployment(containers=[no_limits()]), "team-d"), namespace="team-d"))
        kube.watch_events.put({"type": "DELETED", "object": {"kind": "LimitRange", "apiVersion": "v1", **added}})
        while reads._watched.get("team-d") and time.monotonic() < deadline:
            await asyncio.sleep(0.02)
        gone = await hook.answer(review(in_namespace(deployment(containers=[no_limits()]), "team-d"), namespace="team-d"))
    assert team_d["allowed"] is True and gone["allowed"] is False
    assert not [p for p in kube.paths() if p.startswith("/api/v1/namespaces/")]  # no per-namespace reads
    assert any("watch=true" in p or "watch=True" in p for p in kube.paths())


# --- pull secrets against a registry behind basic auth ------------------------------------------------------


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


async def test_pull_secrets_of_the_pod_and_its_service_account_are_used_and_answers_are_kept_apart(
        tmp_path: Path, kube: KubeAPI, htpasswd_registry: Registry, private_image: str) -> None:
    host = htpasswd_registry.host
    kube.objects[("secrets", "team-a", "regcred")] = docker_secret("team-a", "regcred", host, REGISTRY_USER,
                                                                   REGISTRY_PASSWORD)
    kube.objects[("secrets", "team-b", "sa-cred")] = docker_secret("team-b", "sa-cred", host, REGISTRY_USER,
                                                                   REGISTRY_PASSWORD)
    kube.objects[("serviceaccounts", "team-b", "builder")] = service_account("team-b", "builder", ["sa-cred"])
    with_secret = in_namespace(pod(containers=[unpinned(private_image)], imagePullSecrets=[{"name": "regcred"}]),
                               "team-a")
    via_account = in_namespace(pod(containers=[unpinned(private_image)], serviceAccountName="builder"), "team-b")
    without = in_namespace(pod(containers=[unpinned(private_image)]), "team-c")
    missing = in_namespace(pod(containers=[unpinned(private_image)], imagePullSecrets=[{"name": "nope"}]), "team-a")
    async with running(settings(tmp_path, kube, private_policy(host), pull_secrets=True)) as hook:
        first = await hook.answer(review(with_secret, namespace="team-a"))
        second = await hook.answer(review(via_account, namespace="team-b"))
        stranger = await hook.answer(review(without, namespace="team-c"))  # after the others cached the config
        wrong = await hook.answer(review(missing, namespace="team-a"))
    assert first["allowed"] is True
    assert second["allowed"] is True
    assert stranger["allowed"] is False
    assert "image-config-unavailable" in rules_in(stranger["status"]["message"])
    assert "auth" in stranger["status"]["message"]
    assert wrong["allowed"] is False
    assert any("pull secret team-a/nope (404 NotFound)" in w for w in wrong.get("warnings", []))
    assert ("/api/v1/namespaces/team-b/serviceaccounts/builder", "Bearer webhook-test-token") in kube.log


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
