"""Every AdmissionReview of the public corpus's admission folder gets a checked answer (its RESPONSE_CONTRACT.md):
the same apiVersion and kind, the request's uid (\"\" when absent), `allowed`, the status code, and the warnings.

Which rules deny is asserted twice: against our reading of each payload (the table, from SOURCES.md's notes),
and exactly against the policy core run on the object itself, as `admission-cli check` would run it. Skipped
without the corpus (tests/corpus.py); tests/webhook/test_reviews.py asserts the same on reviews the project owns."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from admission.policy import engine
from admission.policy.config import load_policy
from admission.sources import kubernetes
from admission.webhook.settings import Settings
from tests.corpus import corpus, corpus_files, corpus_params
from tests.webhook.conftest import rules_in, running, write_policy

pytestmark = [pytest.mark.anyio, corpus("admission")]

ALLOW = None
# file -> rules that must deny (ALLOW: allowed at once, no status), by our reading of the payload
EXPECTED: dict[str, set[str] | None] = {
    "01-k8s-docs-deployment-scale-update-v1.json": ALLOW,  # Scale (deployments/scale): no pod spec
    "02-k8s-docs-deployment-scale-update-v1beta1.json": ALLOW,
    "03-k8s-api-testdata-all-fields-v1-dryrun.json": ALLOW,  # operation "operationValue": not evaluated
    "04-k8s-api-testdata-all-fields-v1beta1-dryrun.json": ALLOW,
    "05-pod-hostnetwork-hostport-create.json": {"no-host-port", "image-tag-pinned", "resource-limits", "run-as-non-root"},
    "06-deployment-hostnetwork-hostport-create.json": {"no-host-port", "image-tag-pinned", "resource-limits",
                                                       "run-as-non-root"},
    "07-pod-image-latest-create.json": {"image-tag-pinned", "resource-limits", "run-as-non-root"},
    "08-pod-image-implicit-latest-create.json": {"image-tag-pinned", "resource-limits", "run-as-non-root"},
    "09-pod-image-pinned-create.json": {"resource-limits", "run-as-non-root"},
    "10-deployment-runasuser-0-create.json": {"run-as-non-root", "image-tag-pinned", "resource-limits"},
    "11-pod-runasuser-0-create.json": {"run-as-non-root", "image-tag-pinned", "resource-limits"},
    "12-pod-runasuser-1000-create.json": {"run-as-non-root", "image-tag-pinned", "resource-limits"},  # the sidecar
    "13-cronjob-runasuser-0-create.json": {"run-as-non-root", "resource-limits"},
    "14-deployment-no-resources-create.json": {"resource-limits", "image-tag-pinned", "run-as-non-root"},
    "15-deployment-with-limits-create.json": {"image-tag-pinned", "run-as-non-root"},
    "16-pod-limits-millicpu-gi-create.json": {"image-tag-pinned", "run-as-non-root"},
    "17-deployment-update-with-oldobject.json": ALLOW,  # the pod template is unchanged from oldObject
    "18-deployment-delete.json": ALLOW,
    "19-pod-delete.json": ALLOW,
    "20-pod-ephemeral-container-in-spec-create.json": {"run-as-non-root", "image-tag-pinned", "resource-limits"},
    "21-pod-image-no-tag-create-fullreview.json": {"image-tag-pinned", "resource-limits", "run-as-non-root"},
    "22-deployment-ghcr-pinned-create-fullreview.json": {"resource-limits", "run-as-non-root"},
    "23-v1beta1-minimal-update-no-uid-hostnetwork.json": {"no-host-port", "image-tag-pinned", "resource-limits",
                                                          "run-as-non-root"},  # UPDATE without oldObject: a CREATE
    "24-v1beta1-minimal-update-no-uid-runasuser0.json": {"run-as-non-root", "image-tag-pinned", "resource-limits"},
}


def test_every_corpus_review_has_an_expected_answer() -> None:
    assert [p.name for p in corpus_files("admission", (".json",))] == sorted(EXPECTED)


@pytest.mark.parametrize("path", corpus_params("admission", suffixes=(".json",)), ids=lambda p: p.name[:2])
async def test_corpus_review_gets_the_contracted_answer(path: Path, tmp_path: Path) -> None:
    policy = write_policy(tmp_path)
    sent = json.loads(path.read_text())
    async with running(Settings(policy=str(policy))) as hook:
        response = await hook.post(None, raw=path.read_bytes())
        assert response.status_code == 200
        assert response.headers["content-type"] == "application/json"
        answer = response.json()
    assert answer["apiVersion"] == sent["apiVersion"] and answer["kind"] == "AdmissionReview"
    assert set(answer) == {"apiVersion", "kind", "response"}
    got = answer["response"]
    assert got["uid"] == sent["request"].get("uid", "")
    assert "patch" not in got and "patchType" not in got  # a validating webhook may not return them
    expected = EXPECTED[path.name]
    if expected is ALLOW:
        assert got["allowed"] is True and "status" not in got
        assert "warnings" not in got
        return
    assert got["allowed"] is False
    assert got["status"]["code"] == 403
    message = got["status"]["message"]
    assert len(message) <= 1024
    denying = rules_in(message)
    assert expected <= denying
    # Exactly what the policy core says of the object, as `admission-cli check` would read it.
    obj = sent["request"]["object"]
    if "kind" not in obj:  # minimal kubewarden fixtures: the webhook takes apiVersion and kind from request.kind
        gvk = sent["request"]["kind"]
        obj = {**obj, "apiVersion": f"{gvk['group']}/{gvk['version']}" if gvk["group"] else gvk["version"],
               "kind": gvk["kind"]}
    workloads = kubernetes.workloads_from_object(obj, file=path.name, namespace=sent["request"].get("namespace") or "default")
    report = engine.evaluate(workloads, load_policy(str(policy)))
    core_deny = {f.rule for f in report.findings if f.severity == "deny" and not f.suppressed}
    core_warn = [f"[{f.rule}] " for f in report.findings if f.severity == "warn" and not f.suppressed]
    assert denying == core_deny
    for finding in report.findings:
        if finding.severity == "deny" and finding.container:
            assert finding.container in message, f"{finding.rule} names {finding.container}"
    warnings = got.get("warnings", [])
    assert sorted({w.split("] ", 1)[0] + "] " for w in warnings}) == sorted(set(core_warn))
    assert all(len(w) < 120 for w in warnings) and sum(map(len, warnings)) <= 4096
