"""The one warning line when an owner's exemption was not applied (issue 22, item 5), without a cluster: the request
is not from a controller identity, or it is but the owner cannot be verified (no cluster reads here). The line names
neither the exemption nor its reason, and comes only when the exemption would have suppressed a finding. The same
on the real API server, with verified and forged chains and manual runs: tests/cluster/test_ownership.py and
tests/cluster/test_manual_runs.py."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from admission.webhook.settings import Settings
from tests.webhook.conftest import bad_container, pod, review, running, write_policy

pytestmark = pytest.mark.anyio

POLICY = """images: {resolve: false}
exemptions:
  - rule: run-as-non-root
    namespace: default
    kind: Deployment
    name: api
    reason: legacy root image, tracked in TICKET-7
"""
RS_CONTROLLER = "system:serviceaccount:kube-system:replicaset-controller"


def owned(replica_set: str) -> dict[str, Any]:
    obj = pod(containers=[bad_container()])
    obj["metadata"]["ownerReferences"] = [{"apiVersion": "apps/v1", "kind": "ReplicaSet", "name": replica_set,
                                           "uid": "3f7c1d2e-0000-4000-8000-000000000001", "controller": True}]
    return obj


def notes(answer: dict[str, Any]) -> list[str]:
    return [w for w in answer.get("warnings", []) if w.startswith("[admission] the owner's exemption")]


@pytest.mark.parametrize(("user", "said"), [
    ("alice", "the request did not come from its controller"),
    (RS_CONTROLLER, "its owner could not be verified"),
])
async def test_an_exemption_the_owner_would_have_lent_is_said_to_be_not_applied(
        tmp_path: Path, user: str, said: str) -> None:
    async with running(Settings(policy=str(write_policy(tmp_path / "p", POLICY)))) as hook:
        got = await hook.answer(review(owned("api-5d8f9c7b4"), user=user))
    assert got["allowed"] is False and "[run-as-non-root]" in got["status"]["message"]
    assert notes(got) == [f"[admission] the owner's exemption was not applied: {said} (see the audit log)"]
    assert got["warnings"][0] == notes(got)[0]  # first: the warnings' budget never drops it
    assert "TICKET-7" not in str(got) and "Deployment" not in str(got)
    line = hook.audit()[-1]
    assert line["owner_verified"] is False and line["owner_problem"]


async def test_no_line_when_no_exemption_of_the_owner_would_have_applied(tmp_path: Path) -> None:
    async with running(Settings(policy=str(write_policy(tmp_path / "p", POLICY)))) as hook:
        other = await hook.answer(review(owned("web-7c9d8b6f5"), user="alice"))  # Deployment web: not exempted
        clean = await hook.answer(review({**owned("api-5d8f9c7b4"), "spec": pod()["spec"]}, user="alice"))
    assert other["allowed"] is False and notes(other) == []
    assert clean["allowed"] is True and notes(clean) == []
