"""The results an audited object gets in a PolicyReport: one pass per rule that found nothing, one result per finding
otherwise (fail, warn, skip for an exemption), error for an object that could not be interpreted; each names the
object with its uid and carries the field, value, container and fix."""

from __future__ import annotations

from dataclasses import replace

from admission.audit.reports import ObjectResults, results_of
from admission.findings import Finding

STAMP = {"seconds": 1_700_000_000, "nanos": 5}


def _finding(rule: str, severity: str = "deny", **extra: object) -> Finding:
    base = Finding(rule=rule, severity=severity, message=f"{rule} says no", remediation=f"fix {rule}",  # type: ignore[arg-type]
                   value="nginx:latest", file="namespace/team", line=None, path="spec.template.spec.containers[0].image",
                   source="kubernetes", object_kind="Deployment", object_name="web", object_namespace="team",
                   container="app", key="image")
    return replace(base, **extra)  # type: ignore[arg-type]


def _object(*findings: Finding, rules: tuple[str, ...] = ("image-tag-pinned", "healthcheck", "no-host-port"),
            error: str | None = None) -> ObjectResults:
    return ObjectResults("apps/v1", "Deployment", "web", "team", "uid-1", rules, findings, error=error)


def test_each_rule_that_found_nothing_passes_and_each_finding_is_its_own_result() -> None:
    results = list(results_of(_object(_finding("image-tag-pinned"), _finding("healthcheck", "warn")), timestamp=STAMP))
    assert [(r["policy"], r["result"], r.get("severity")) for r in results] == [
        ("image-tag-pinned", "fail", "high"), ("healthcheck", "warn", "medium"), ("no-host-port", "pass", None)]
    fail = results[0]
    assert fail["resources"] == [{"apiVersion": "apps/v1", "kind": "Deployment", "name": "web", "namespace": "team",
                                  "uid": "uid-1"}]
    assert fail["properties"] == {"container": "app", "path": "spec.template.spec.containers[0].image",
                                  "value": "nginx:latest", "fix": "fix image-tag-pinned", "key": "image"}
    assert fail["message"] == "image-tag-pinned says no" and fail["source"] == "admission"
    assert fail["timestamp"] == STAMP and fail["scored"] is True


def test_an_exempted_finding_is_skipped_with_the_reason_and_an_expired_one_still_fails() -> None:
    exempt = _finding("no-host-port", suppressed=True, reason="edge proxy")
    expired = _finding("image-tag-pinned", reason="expired 2020-01-01: old")
    results = {r["policy"]: r for r in results_of(_object(exempt, expired), timestamp=STAMP)}
    assert results["no-host-port"]["result"] == "skip"
    assert results["no-host-port"]["properties"]["exemption"] == "edge proxy"
    assert results["image-tag-pinned"]["result"] == "fail"
    assert results["image-tag-pinned"]["properties"]["exemption not honoured"] == "expired 2020-01-01: old"


def test_a_would_deny_finding_of_warn_enforcement_fails_the_rule_and_says_so() -> None:
    (result,) = [r for r in results_of(_object(_finding("image-tag-pinned", "warn", would_deny=True)), timestamp=STAMP)
                 if r["policy"] == "image-tag-pinned"]
    assert (result["result"], result["severity"], result["properties"]["would deny"]) == ("fail", "high", "true")


def test_an_uninterpretable_object_is_one_error_result() -> None:
    (result,) = results_of(_object(error="spec.template.spec.containers[0].name: must be a string", rules=()),
                           timestamp=STAMP)
    assert result["result"] == "error" and "must be a string" in result["message"]
    assert result["resources"][0]["uid"] == "uid-1"


def test_long_messages_are_clipped_so_one_result_cannot_bloat_a_report() -> None:
    (result,) = [r for r in results_of(_object(_finding("image-tag-pinned", message="x" * 5000)), timestamp=STAMP)
                 if r["policy"] == "image-tag-pinned"]
    assert len(result["message"]) == 1024 and result["message"].endswith("…")


def test_a_kind_the_run_could_not_list_is_an_error_result_about_no_object() -> None:
    unlisted = ObjectResults("", "", "", None, "", (), error="cannot list deployments.apps: 403 Forbidden",
                             error_rule="list")
    (result,) = results_of(unlisted, timestamp=STAMP)
    assert (result["policy"], result["rule"], result["result"]) == ("admission", "list", "error")
    assert result["message"] == "cannot list deployments.apps: 403 Forbidden" and "resources" not in result
