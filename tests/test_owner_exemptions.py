"""Exemptions and owners in the engine: a workload's verified top owner (set by the webhook) lends its exemptions by
kind and name, in the workload's own namespace and for the containers the exemption names; the controller reference
the object merely claims lends nothing. The reading of `ownerReferences` is the Kubernetes adapter's."""

from __future__ import annotations

from dataclasses import replace
from datetime import date

from admission.model import OwnerRef
from admission.policy.config import default_policy, parse_policy
from admission.policy.engine import evaluate
from admission.sources.kubernetes import workloads_from_object

POLICY = """exemptions:
  - rule: "*"
    namespace: team-a
    kind: Deployment
    name: api
    reason: legacy
  - rule: "*"
    namespace: team-a
    name: mesh
    container: istio-proxy
    reason: injected sidecar
  - rule: "*"
    namespace: team-a
    name: old
    reason: gone
    expires: 2026-01-01
"""
RS = OwnerRef("apps/v1", "ReplicaSet", "api-5d8f9c7b4", "uid-rs")


def pod(*containers: str, namespace: str = "team-a", owner_refs: list[dict] | None = None) -> dict:
    meta: dict = {"name": "api-5d8f9c7b4-x2x9p", "namespace": namespace}
    if owner_refs is not None:
        meta["ownerReferences"] = owner_refs
    return {"apiVersion": "v1", "kind": "Pod", "metadata": meta,
            "spec": {"containers": [{"name": c, "image": "registry.example.com/app:1.0"} for c in containers]}}


def findings(obj: dict, owner: OwnerRef | None) -> list:
    policy = parse_policy(POLICY, file="p.yaml", base=default_policy())
    (workload,) = workloads_from_object(obj, file="request.object", namespace="default")
    return evaluate([replace(workload, owner=owner)], policy, today=date(2026, 12, 6)).findings


def test_the_adapter_reads_the_controller_reference_and_ignores_the_others() -> None:
    refs = [{"apiVersion": "v1", "kind": "ConfigMap", "name": "cm", "uid": "u1"},
            {"apiVersion": "apps/v1", "kind": "ReplicaSet", "name": "api-5d8f9c7b4", "uid": "uid-rs", "controller": True}]
    (workload,) = workloads_from_object(pod("app", owner_refs=refs), file="f", namespace="default")
    assert workload.controller == RS and workload.owner is None
    (bare,) = workloads_from_object(pod("app", owner_refs=[{**refs[1], "uid": ""}]), file="f", namespace="default")
    assert bare.controller is None, "a reference without a uid names nothing to verify"


def test_a_verified_owner_lends_its_exemption_by_kind_and_name() -> None:
    found = findings(pod("app"), OwnerRef("apps/v1", "Deployment", "api", "uid-d"))
    assert found and all(f.suppressed for f in found)
    assert {f.reason for f in found} == {"legacy (through its owner Deployment api)"}


def test_a_claimed_controller_reference_lends_nothing_until_the_webhook_verifies_it() -> None:
    refs = [{"apiVersion": "apps/v1", "kind": "Deployment", "name": "api", "uid": "uid-d", "controller": True}]
    found = findings(pod("app", owner_refs=refs), None)
    assert found and not any(f.suppressed for f in found)


def test_an_owner_of_another_kind_or_in_another_namespace_lends_nothing() -> None:
    assert not any(f.suppressed for f in findings(pod("app"), OwnerRef("apps/v1", "StatefulSet", "api", "u")))
    assert not any(f.suppressed for f in findings(pod("app", namespace="team-b"),
                                                  OwnerRef("apps/v1", "Deployment", "api", "u")))


def test_a_container_exemption_through_an_owner_covers_only_that_container() -> None:
    found = findings(pod("app", "istio-proxy"), OwnerRef("apps/v1", "Deployment", "mesh", "u"))
    assert {f.container for f in found if f.suppressed} == {"istio-proxy"}
    assert {f.container for f in found if not f.suppressed} == {"app"}


def test_an_expired_exemption_through_an_owner_says_so_and_suppresses_nothing() -> None:
    found = findings(pod("app"), OwnerRef("apps/v1", "Deployment", "old", "u"))
    assert found and not any(f.suppressed for f in found)
    assert {f.reason for f in found} == {"expired 2026-01-01: gone (through its owner Deployment old)"}
