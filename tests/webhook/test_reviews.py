"""Every AdmissionReview the project owns (tests/fixtures/admission, and the demo's two in examples/webhook-demo) gets
the answer architecture §3 and the API server's response checks ask for: the same apiVersion and kind, the request's uid
("" when absent), `allowed`, status 403 naming each denying rule (or 400 for an object that cannot be read), rule-
prefixed warnings within their caps, HTTP 400 for an envelope that is not an AdmissionReview, and one audit line per
decision.

The reviews are written as the API server sends them (CreateV1AdmissionReview fills every field), and cover what the
public corpus's reviews cover (tests/webhook/test_corpus.py, skipped without it): v1 and v1beta1, a missing uid and
request.kind, UPDATE with and without a pod spec change, an object being deleted, DELETE and CONNECT, the
`ephemeralcontainers` and `scale` subresources, dryRun, a kind without pods, a CronJob, an uninterpretable object.
Which rules deny is asserted against our reading of each review and, exactly, against the policy core run on the
object as `admission-cli check` would run it."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from admission.policy import engine
from admission.policy.config import load_policy
from admission.sources import kubernetes
from admission.webhook.settings import Settings
from tests.webhook.conftest import DEMO_REVIEWS, OWNED_REVIEWS, rules_in, running, write_policy

pytestmark = pytest.mark.anyio


@dataclass(frozen=True)
class Answer:
    allowed: bool
    deny: frozenset[str] = frozenset()
    warn: frozenset[str] = frozenset()  # rules whose warnings are given
    code: int | None = None  # status.code
    http: int = 200
    why: str = field(default="", compare=False)


def allowed(why: str, *, warn: tuple[str, ...] = ()) -> Answer:
    return Answer(True, warn=frozenset(warn), why=why)


def denied(*rules: str, warn: tuple[str, ...] = (), why: str = "") -> Answer:
    return Answer(False, frozenset(rules), frozenset(warn), 403, why=why)


HOST = ("no-host-port",)
ROOT_TAG_LIMITS = ("run-as-non-root", "image-tag-pinned", "resource-limits")
NO_PROBES = ("healthcheck",)
WRITABLE = ("read-only-root-filesystem",)  # issue 27: a warning where a container does not set readOnlyRootFilesystem

# file (relative to tests/fixtures/admission, or demo/ for examples/webhook-demo) -> the answer it must get
EXPECTED: dict[str, Answer] = {
    "pod-compliant-create.json": allowed("pinned, non-root, limits, probes, a read-only root"),
    "pod-without-probes-create.json": allowed("healthcheck is a warning", warn=NO_PROBES + WRITABLE),
    "pod-two-containers-millicpu-gi-create.json": allowed("1m and 2Gi are limits; each container has a probe"),
    "pod-host-port-root-latest-create.json": denied(*HOST, *ROOT_TAG_LIMITS, warn=NO_PROBES + WRITABLE,
                                                    why="hostNetwork and hostPort 443, image without a tag"),
    "deployment-root-create-v1beta1.json": denied(*ROOT_TAG_LIMITS, warn=NO_PROBES + WRITABLE, why="answered in v1beta1"),
    "pod-update-no-uid-no-kind-v1beta1.json": denied(
        *HOST, "run-as-non-root", "resource-limits", warn=NO_PROBES + WRITABLE,
        why="no uid, no request.kind (the object's kind decides), no oldObject: a CREATE"),
    "pod-object-without-kind-create.json": denied(*ROOT_TAG_LIMITS, warn=NO_PROBES + WRITABLE,
                                                  why="the object has no apiVersion/kind: request.kind decides"),
    "deployment-update-replicas-and-labels.json": allowed("replicas, labels, annotations: the pod spec is unchanged"),
    "deployment-update-image-to-latest.json": denied("image-tag-pinned", warn=WRITABLE, why="the pod template changed"),
    "deployment-update-while-deleting.json": allowed("deletionTimestamp is set"),
    "deployment-delete.json": allowed("DELETE: nothing to validate"),
    "pod-exec-connect.json": allowed("CONNECT"),
    "pod-ephemeralcontainers-add-debugger.json": denied(
        "run-as-non-root", "image-tag-pinned", why="only the added debug container; it takes no limits or probes"),
    "pod-ephemeralcontainers-add-nothing.json": allowed("the ephemeral containers are the old ones"),
    "pod-root-create-dry-run.json": denied("run-as-non-root", warn=WRITABLE, why="dryRun is evaluated like any CREATE"),
    "deployment-scale-subresource-update.json": allowed("a Scale carries no pod spec"),
    "configmap-create.json": allowed("not a pod-bearing kind"),
    "cronjob-root-create.json": denied("run-as-non-root", "resource-limits", warn=WRITABLE,
                                       why="pod spec under jobTemplate"),
    "pod-containers-mapping-create.json": Answer(False, code=400, why="an object no API server could decode"),
    "not-a-review-bare-pod.json": Answer(False, http=400, why="a Pod, not an AdmissionReview"),
    "review-without-request.json": Answer(False, http=400, why="an AdmissionReview without a request"),
    "not-json.json": Answer(False, http=400, why="truncated JSON"),
    "demo/allowed.json": allowed("the demo's compliant Deployment"),
    "demo/denied.json": denied(*ROOT_TAG_LIMITS, warn=NO_PROBES + WRITABLE, why="the demo's root nginx:latest"),
}


def _path(name: str) -> Path:
    return DEMO_REVIEWS / name.removeprefix("demo/") if name.startswith("demo/") else OWNED_REVIEWS / name


def _workloads(sent: dict[str, Any]) -> list[Any]:
    request = sent["request"]
    obj = request["object"]
    if "kind" not in obj:  # the webhook takes apiVersion and kind from request.kind
        gvk = request["kind"]
        obj = {**obj, "apiVersion": f"{gvk['group']}/{gvk['version']}" if gvk["group"] else gvk["version"],
               "kind": gvk["kind"]}
    return kubernetes.workloads_from_object(obj, file="review", namespace=request.get("namespace") or "default")


def test_every_owned_review_has_an_expected_answer() -> None:
    files = [p.name for p in OWNED_REVIEWS.glob("*.json")] + [f"demo/{p.name}" for p in DEMO_REVIEWS.glob("*.json")]
    assert sorted(files) == sorted(EXPECTED)


@pytest.mark.parametrize("name", sorted(EXPECTED))
async def test_owned_review_gets_the_contracted_answer(name: str, tmp_path: Path) -> None:
    expected = EXPECTED[name]
    body = _path(name).read_bytes()
    policy = write_policy(tmp_path)
    async with running(Settings(policy=str(policy))) as hook:
        response = await hook.post(None, raw=body)
        audit = hook.audit()
    assert response.status_code == expected.http, response.text
    assert response.headers["content-type"] == "application/json"
    if expected.http != 200:
        # an envelope error is not a decision: its audit line is a refusal, with no verdict of the policy's
        assert response.json()["error"] and [line["result"] for line in audit] == ["bad_request"]
        assert "rules" not in audit[0]
        return
    sent, answer = json.loads(body), response.json()
    assert answer["apiVersion"] == sent["apiVersion"] and answer["kind"] == "AdmissionReview"
    assert set(answer) == {"apiVersion", "kind", "response"}
    got = answer["response"]
    assert got["uid"] == sent["request"].get("uid", "")
    assert "patch" not in got and "patchType" not in got  # a validating webhook may not return them
    assert got["allowed"] is expected.allowed
    [line] = audit
    assert (line["uid"], line["allowed"]) == (got["uid"], got["allowed"])

    warnings = got.get("warnings", [])
    assert {rules_in(w.split(" ", 1)[0]).pop() for w in warnings} == set(expected.warn)
    assert all(len(w) < 120 for w in warnings) and sum(map(len, warnings)) <= 4096
    if not expected.warn:
        assert "warnings" not in got
    if expected.allowed:
        assert "status" not in got
        return
    status = got["status"]
    assert status["code"] == expected.code
    if expected.code == 400:
        assert "cannot be interpreted" in status["message"]
        return
    message = status["message"]
    assert len(message) <= 1024
    assert rules_in(message) == set(expected.deny)
    # Exactly what the policy core says of the object, as `admission-cli check` would read it.
    report = engine.evaluate(_workloads(sent), load_policy(str(policy)))
    assert rules_in(message) == {f.rule for f in report.findings if f.severity == "deny" and not f.suppressed}
    for finding in report.findings:
        if finding.severity == "deny" and finding.container:
            assert f"'{finding.container}'" in message, f"{finding.rule} names {finding.container}"
