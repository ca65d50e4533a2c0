"""What the audit reports itself and what it leaves to its top owner, and which image digest a container status names."""

from __future__ import annotations

import pytest

from admission.audit.inventory import Digests, manifest_digest, reported, running_digests

DIGEST = "sha256:" + "ab" * 32


def _owned(kind: str, api_version: str, *, controller: bool = True) -> dict:
    return {"metadata": {"ownerReferences": [{"apiVersion": api_version, "kind": kind, "name": "x", "uid": "u-1",
                                              "controller": controller}]}}


@pytest.mark.parametrize(("kind", "owner", "api_version", "expected"), [
    ("Pod", "ReplicaSet", "apps/v1", False),
    ("Pod", "StatefulSet", "apps/v1", False),
    ("Pod", "DaemonSet", "apps/v1", False),
    ("Pod", "Job", "batch/v1", False),
    ("Pod", "ReplicationController", "v1", False),
    ("ReplicaSet", "Deployment", "apps/v1", False),
    ("Job", "CronJob", "batch/v1", False),
    # A controller of a kind the audit does not list is the top of what it can judge: the object is reported.
    ("Pod", "Rollout", "argoproj.io/v1alpha1", True),
    ("ReplicaSet", "Rollout", "argoproj.io/v1alpha1", True),
    ("Job", "Workflow", "argoproj.io/v1alpha1", True),
    # A CRD reusing a listed kind's name in another group owns nothing the audit lists.
    ("Pod", "Job", "batch.volcano.sh/v1alpha1", True),
    # A pod-bearing owner that does not own that kind (a Deployment owning a Pod directly) is not trusted to report it.
    ("Pod", "Deployment", "apps/v1", True),
])
def test_an_object_is_left_to_its_controller_only_when_the_audit_lists_that_controller(
        kind: str, owner: str, api_version: str, expected: bool) -> None:
    assert reported(kind, _owned(owner, api_version)) is expected


def test_an_owner_that_is_not_the_controller_does_not_take_the_object() -> None:
    assert reported("Pod", _owned("ReplicaSet", "apps/v1", controller=False)) is True
    assert reported("Pod", {"metadata": {}}) is True


@pytest.mark.parametrize(("image_id", "expected"), [
    (f"docker.io/library/nginx@{DIGEST}", f"docker.io/library/nginx@{DIGEST}"),  # containerd, CRI-O
    (f"registry.example.com:5000/team/app@{DIGEST}", f"registry.example.com:5000/team/app@{DIGEST}"),
    (f"docker-pullable://nginx@{DIGEST}", f"nginx@{DIGEST}"),  # dockershim, cri-dockerd
    (DIGEST, None),  # containerd's image (config) digest: no repository to fetch it from
    (f"docker://{DIGEST}", None),  # docker's image ID
    ("", None),
    (None, None),
    ("not a reference@sha256:zz", None),
])
def test_only_a_repository_and_manifest_digest_names_what_runs(image_id: object, expected: str | None) -> None:
    assert manifest_digest(image_id) == expected


def test_running_digests_cover_init_regular_and_ephemeral_containers() -> None:
    status = {"status": {
        "initContainerStatuses": [{"name": "init", "imageID": f"a/init@{DIGEST}"}],
        "containerStatuses": [{"name": "app", "imageID": f"a/app@{DIGEST}"}, {"name": "waiting", "imageID": ""}],
        "ephemeralContainerStatuses": [{"name": "debug", "imageID": DIGEST}],
    }}
    assert running_digests(status) == {"init": f"a/init@{DIGEST}", "app": f"a/app@{DIGEST}"}


def test_digests_follow_a_replicaset_up_to_its_deployment_and_are_taken_once() -> None:
    digests = Digests()
    digests.add("rs-1", {"app": "a@1"})
    digests.add("rs-1", {"app": "a@1"})  # a second Pod of the same ReplicaSet
    digests.add("rs-2", {"app": "a@2"})  # a Pod of the next rollout
    digests.move("rs-1", "deploy")
    digests.move("rs-2", "deploy")
    assert digests.take("deploy") == {"app": ["a@1", "a@2"]}
    assert digests.take("deploy") == {} and len(digests) == 0
