"""Cluster reads against the real API server, as the chart's ServiceAccount with exactly the RBAC the chart grants:
LimitRange defaults (listed and watched), pull secrets of the Pod and of its ServiceAccount against a registry behind
basic auth, and a read that RBAC forbids (architecture §3: count no defaults and say so)."""

from __future__ import annotations

import base64
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.cluster.controlplane import ControlPlane
from tests.cluster.release import Release, installed
from tests.cluster.test_webhook_in_cluster import compliant_deployment
from tests.images import oci
from tests.images.conftest import REGISTRY_PASSWORD, REGISTRY_USER, htpasswd_registry, layout  # noqa: F401 (fixtures)
from tests.images.registry import Registry

pytestmark = pytest.mark.controlplane

DEFAULTED, BARE = "reads-defaulted", "reads-bare"
WITH_SECRET, VIA_ACCOUNT, WITHOUT = "reads-secret", "reads-account", "reads-none"


def no_limits(deployment: dict[str, Any]) -> dict[str, Any]:
    del deployment["spec"]["template"]["spec"]["containers"][0]["resources"]["limits"]
    return deployment


def limit_range(namespace: str) -> dict[str, Any]:
    return {"apiVersion": "v1", "kind": "LimitRange", "metadata": {"name": "defaults", "namespace": namespace},
            "spec": {"limits": [{"type": "Container", "default": {"cpu": "500m", "memory": "256Mi"}}]}}


def docker_secret(namespace: str, name: str, host: str) -> dict[str, Any]:
    auth = base64.b64encode(f"{REGISTRY_USER}:{REGISTRY_PASSWORD}".encode()).decode()
    config = json.dumps({"auths": {host: {"auth": auth}}})
    return {"apiVersion": "v1", "kind": "Secret", "type": "kubernetes.io/dockerconfigjson",
            "metadata": {"name": name, "namespace": namespace},
            "data": {".dockerconfigjson": base64.b64encode(config.encode()).decode()}}


def namespaces(plane: ControlPlane, *names: str) -> None:
    for name in names:
        plane.kubectl("create", "namespace", name, check=False)
    plane.ensure_default_service_accounts(*names)


@pytest.fixture(scope="module")
def private_image(htpasswd_registry: Registry, layout: Path) -> str:  # noqa: F811
    ref = "cluster/private:1"
    oci.push(oci.build(layout, "cluster-private", user="1000"), htpasswd_registry.host, ref,
             creds=f"{REGISTRY_USER}:{REGISTRY_PASSWORD}")
    return f"{htpasswd_registry.host}/{ref}"


@pytest.fixture(scope="module")
def release(control_plane: ControlPlane, htpasswd_registry: Registry, private_image: str,  # noqa: F811
            tmp_path_factory: pytest.TempPathFactory) -> Iterator[Release]:
    host = htpasswd_registry.host
    namespaces(control_plane, DEFAULTED, BARE, WITH_SECRET, VIA_ACCOUNT, WITHOUT)
    control_plane.apply([limit_range(DEFAULTED), docker_secret(WITH_SECRET, "regcred", host),
                         docker_secret(DEFAULTED, "regcred", host), docker_secret(BARE, "regcred", host),
                         docker_secret(VIA_ACCOUNT, "sa-cred", host),
                         {"apiVersion": "v1", "kind": "ServiceAccount",
                          "metadata": {"name": "builder", "namespace": VIA_ACCOUNT},
                          "imagePullSecrets": [{"name": "sa-cred"}]}])
    policy = (f"images:\n  resolve: auto\n  on_error: deny\n  allowed_registries: [{host}]\n"
              f"  insecure_registries: [{host}]\n  restrict_to_allowed: true\n")
    values = {"policy": policy, "clusterReads": {"limitRanges": True, "pullSecrets": True}}
    yield from installed(control_plane, tmp_path_factory.mktemp("reads"), values)


def private_deployment(name: str, *, namespace: str, image: str) -> dict[str, Any]:
    deployment = no_limits(compliant_deployment(name, namespace=namespace, image=image))
    deployment["spec"]["template"]["spec"]["imagePullSecrets"] = [{"name": "regcred"}]
    return deployment


def test_a_namespaces_limitrange_defaults_let_a_deployment_without_limits_in(
        control_plane: ControlPlane, release: Release, private_image: str) -> None:
    run = control_plane.apply([private_deployment("defaulted", namespace=DEFAULTED, image=private_image)],
                              check=False)
    assert run.returncode == 0, run.stderr
    bare = control_plane.apply([private_deployment("bare", namespace=BARE, image=private_image)], check=False)
    assert bare.returncode == 1 and "[resource-limits]" in bare.stderr
    # A template: the API server will default its Pods' limits later; this namespace has no LimitRange to do it.
    assert "no LimitRange of the namespace gives a default for it" in bare.stderr


def test_a_pod_reaches_the_webhook_with_the_limits_the_api_servers_limitranger_gave_it(
        control_plane: ControlPlane, release: Release, private_image: str) -> None:
    spec = private_deployment("p", namespace=DEFAULTED, image=private_image)["spec"]["template"]["spec"]
    pod = {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "limited", "namespace": DEFAULTED}, "spec": spec}
    run = control_plane.apply([pod], "--dry-run=server", check=False)
    assert run.returncode == 0, run.stderr


def test_pull_secrets_of_the_pod_and_of_its_service_account_open_a_private_image(
        control_plane: ControlPlane, release: Release, private_image: str) -> None:
    def pod(namespace: str, **spec: Any) -> dict[str, Any]:  # noqa: ANN401
        template = compliant_deployment("x", namespace=namespace, image=private_image)["spec"]["template"]["spec"]
        template["containers"][0]["securityContext"].pop("runAsUser")  # only the image config can tell the user
        return {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "private", "namespace": namespace},
                "spec": {**template, **spec}}

    with_secret = control_plane.apply([pod(WITH_SECRET, imagePullSecrets=[{"name": "regcred"}])], check=False)
    via_account = control_plane.apply([pod(VIA_ACCOUNT, serviceAccountName="builder")], check=False)
    stranger = control_plane.apply([pod(WITHOUT)], check=False)
    assert with_secret.returncode == 0, with_secret.stderr
    assert via_account.returncode == 0, via_account.stderr
    assert stranger.returncode == 1 and "[image-config-unavailable] container 'web' uses an image whose config is " \
        "unavailable" in stranger.stderr
    # The precise reason is the audit log's, never the answer's (it would map the registry to whoever may create Pods).
    (line,) = [a for a in release.audit() if a["namespace"] == WITHOUT and a["name"] == "private"]
    assert [i["reason"] for i in line["images"]] == ["auth"]


def test_a_limitrange_created_later_reaches_the_webhook_through_its_watch(
        control_plane: ControlPlane, release: Release, private_image: str) -> None:
    """No read per request: the server lists LimitRanges once and follows the watch, so a LimitRange added after
    it started counts within moments, and one deleted stops counting."""
    late = "reads-late"
    namespaces(control_plane, late)
    control_plane.apply([docker_secret(late, "regcred", htpasswd_host(private_image))])
    deployment = private_deployment("late", namespace=late, image=private_image)
    assert control_plane.apply([deployment], "--dry-run=server", check=False).returncode == 1
    control_plane.apply([limit_range(late)])
    assert _eventually(lambda: control_plane.apply([deployment], "--dry-run=server", check=False).returncode == 0)
    control_plane.kubectl("delete", "limitrange", "defaults", "-n", late)
    assert _eventually(lambda: control_plane.apply([deployment], "--dry-run=server", check=False).returncode == 1)
    log = release.pod.log()
    assert "reading them per namespace" not in log


def test_a_pull_secret_that_does_not_exist_is_named_in_a_warning(
        control_plane: ControlPlane, release: Release, private_image: str) -> None:
    spec = private_deployment("p", namespace=WITH_SECRET, image=private_image)["spec"]["template"]["spec"]
    spec["imagePullSecrets"] = [{"name": "nope"}]
    pod = {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "nope", "namespace": WITH_SECRET}, "spec": spec}
    run = control_plane.apply([pod], "--dry-run=server", check=False)
    assert f"pull secret {WITH_SECRET}/nope (404 NotFound)" in run.stderr
    assert run.returncode == 1 and "[image-config-unavailable]" in run.stderr


def htpasswd_host(image: str) -> str:
    return image.split("/", 1)[0]


def _eventually(condition: Any, timeout: float = 15) -> bool:  # noqa: ANN401
    import time

    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.3)
    return True
