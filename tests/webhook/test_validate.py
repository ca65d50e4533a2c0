"""POST /validate as architecture §3 specifies, through the app (httpx ASGITransport, lifespan running)."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest

from admission.webhook import review as review_module
from admission.webhook.settings import Settings
from tests.webhook.conftest import (bad_container, deployment, good_container, mutate, pod, review, rules_in, running,
                                    write_policy)

pytestmark = pytest.mark.anyio


def settings(tmp_path: Path, policy: str = "images: {resolve: false}\n", **kwargs: Any) -> Settings:
    return Settings(policy=str(write_policy(tmp_path / "p", policy)), **kwargs)


async def test_a_compliant_pod_is_allowed_without_status_or_warnings(tmp_path: Path) -> None:
    async with running(settings(tmp_path)) as hook:
        got = await hook.answer(review(pod(), uid="u-1"))
    assert got == {"uid": "u-1", "allowed": True}


async def test_v1beta1_without_uid_is_answered_in_v1beta1_with_an_empty_uid(tmp_path: Path) -> None:
    body = review(pod(), version="admission.k8s.io/v1beta1")
    del body["request"]["uid"]
    async with running(settings(tmp_path)) as hook:
        response = await hook.post(body)
    assert response.json()["apiVersion"] == "admission.k8s.io/v1beta1"
    assert response.json()["response"] == {"uid": "", "allowed": True}


async def test_dispatch_falls_back_to_the_objects_kind_when_request_kind_is_absent(tmp_path: Path) -> None:
    body = review(pod(containers=[bad_container()]))
    body["request"]["kind"] = None
    async with running(settings(tmp_path)) as hook:
        got = await hook.answer(body)
    assert got["allowed"] is False and "run-as-non-root" in rules_in(got["status"]["message"])


async def test_request_kind_decides_dispatch_over_the_object(tmp_path: Path) -> None:
    # deployments/scale: the API server sends kind Scale; a pod-policy webhook has nothing to check.
    body = review(deployment(containers=[bad_container()]), kind={"group": "autoscaling", "version": "v1", "kind": "Scale"},
                  operation="UPDATE", sub="scale")
    async with running(settings(tmp_path)) as hook:
        assert (await hook.answer(body))["allowed"] is True


async def test_a_crd_reusing_a_pod_bearing_kind_name_is_not_evaluated(tmp_path: Path) -> None:
    job = {"apiVersion": "batch.volcano.sh/v1alpha1", "kind": "Job", "metadata": {"name": "j"}, "spec": {"tasks": []}}
    async with running(settings(tmp_path)) as hook:
        assert (await hook.answer(review(job)))["allowed"] is True


@pytest.mark.parametrize("change", [
    pytest.param(lambda o: o["metadata"]["labels"].update(team="a"), id="label"),
    pytest.param(lambda o: o["metadata"].update(annotations={"note": "x"}), id="annotation"),
    pytest.param(lambda o: o["metadata"].update(finalizers=["example.com/keep"]), id="finalizer"),
    pytest.param(lambda o: o.update(status={"phase": "Running"}), id="status"),
])
async def test_update_that_leaves_the_pod_spec_alone_is_allowed_even_for_a_noncompliant_pod(
        tmp_path: Path, change: Any) -> None:
    old = pod(containers=[bad_container()])
    async with running(settings(tmp_path)) as hook:
        got = await hook.answer(review(mutate(old, change), operation="UPDATE", old=old))
    assert got["allowed"] is True and "status" not in got
    assert hook.audit()[-1]["skipped"] == "the pod spec is unchanged"


async def test_replicas_only_update_of_a_noncompliant_deployment_is_allowed(tmp_path: Path) -> None:
    old = deployment(containers=[bad_container()], replicas=1)
    new = mutate(old, lambda o: o["spec"].update(replicas=5))
    async with running(settings(tmp_path)) as hook:
        assert (await hook.answer(review(new, operation="UPDATE", old=old)))["allowed"] is True


async def test_update_that_changes_the_pod_template_is_evaluated(tmp_path: Path) -> None:
    old = deployment()
    new = mutate(old, lambda o: o["spec"]["template"]["spec"]["containers"].append(bad_container("sidecar")))
    async with running(settings(tmp_path)) as hook:
        got = await hook.answer(review(new, operation="UPDATE", old=old))
    assert got["allowed"] is False and "'sidecar'" in got["status"]["message"]


async def test_cronjob_update_compares_the_job_templates_pod_spec(tmp_path: Path) -> None:
    old = {"apiVersion": "batch/v1", "kind": "CronJob", "metadata": {"name": "c", "namespace": "default"},
           "spec": {"schedule": "* * * * *", "jobTemplate": {"spec": {"template": {"spec": {
               "restartPolicy": "Never", "containers": [bad_container()]}}}}}}
    schedule_only = mutate(old, lambda o: o["spec"].update(schedule="*/5 * * * *"))
    image_change = mutate(old, lambda o: o["spec"]["jobTemplate"]["spec"]["template"]["spec"]["containers"][0]
                          .update(image="nginx:1.27"))
    async with running(settings(tmp_path)) as hook:
        assert (await hook.answer(review(schedule_only, operation="UPDATE", old=old)))["allowed"] is True
        assert (await hook.answer(review(image_change, operation="UPDATE", old=old)))["allowed"] is False


async def test_update_without_old_object_is_evaluated_as_a_create(tmp_path: Path) -> None:
    async with running(settings(tmp_path)) as hook:
        got = await hook.answer(review(pod(containers=[bad_container()]), operation="UPDATE"))
    assert got["allowed"] is False and got["status"]["code"] == 403


async def test_a_pod_being_deleted_is_allowed(tmp_path: Path) -> None:
    old = pod(containers=[bad_container()])
    new = mutate(old, lambda o: o["metadata"].update(deletionTimestamp="2026-01-01T00:00:00Z"))
    new["spec"]["containers"].append(bad_container("late"))
    async with running(settings(tmp_path)) as hook:
        assert (await hook.answer(review(new, operation="UPDATE", old=old)))["allowed"] is True
    assert hook.audit()[-1]["skipped"] == "the object is being deleted"


@pytest.mark.parametrize("operation", ["DELETE", "CONNECT"])
async def test_delete_and_connect_are_allowed_at_once(tmp_path: Path, operation: str) -> None:
    old = pod(containers=[bad_container()])
    body = review(None, operation=operation, old=old)
    async with running(settings(tmp_path)) as hook:
        assert (await hook.answer(body))["allowed"] is True


async def test_kubectl_debug_adding_busybox_is_denied_naming_only_that_container(tmp_path: Path) -> None:
    # What `kubectl debug -it web --image=busybox` sends on current clusters: UPDATE pods/ephemeralcontainers
    # with the whole Pod, old and new, the new one with the added ephemeral container.
    old = pod(containers=[bad_container("legacy")], hostNetwork=True)  # admitted earlier (say, exempt)
    new = mutate(old, lambda o: o["spec"].update(ephemeralContainers=[
        {"name": "debugger-x7k2p", "image": "busybox", "stdin": True, "tty": True, "targetContainerName": "legacy"}]))
    async with running(settings(tmp_path)) as hook:
        got = await hook.answer(review(new, operation="UPDATE", old=old, sub="ephemeralcontainers"))
    message = got["status"]["message"]
    assert got["allowed"] is False and got["status"]["code"] == 403
    assert "debugger-x7k2p" in message
    assert "legacy" not in message and "no-host-port" not in rules_in(message)
    assert {"run-as-non-root", "image-tag-pinned"} <= rules_in(message)
    assert "resource-limits" not in rules_in(message)  # ephemeral containers cannot have resources


async def test_ephemeral_update_that_adds_nothing_is_allowed(tmp_path: Path) -> None:
    old = pod(containers=[good_container()], ephemeralContainers=[{"name": "dbg", "image": "busybox"}])
    async with running(settings(tmp_path)) as hook:
        got = await hook.answer(review(old, operation="UPDATE", old=old, sub="ephemeralcontainers"))
    assert got["allowed"] is True


@pytest.mark.parametrize("sub", ["status", "binding", "exec"])
async def test_other_subresources_are_not_evaluated(tmp_path: Path, sub: str) -> None:
    old = pod(containers=[bad_container()])
    async with running(settings(tmp_path)) as hook:
        assert (await hook.answer(review(old, operation="UPDATE", old=old, sub=sub)))["allowed"] is True


async def test_dry_run_is_evaluated_and_audited_as_dry_run(tmp_path: Path) -> None:
    async with running(settings(tmp_path)) as hook:
        got = await hook.answer(review(pod(containers=[bad_container()]), dry_run=True))
    assert got["allowed"] is False
    assert hook.audit()[-1]["dryRun"] is True


async def test_deny_names_each_rule_container_and_fix(tmp_path: Path) -> None:
    containers = [bad_container("api"), {**good_container("cache"), "ports": [{"containerPort": 80, "hostPort": 8080}]}]
    async with running(settings(tmp_path)) as hook:
        got = await hook.answer(review(pod(containers=containers)))
    message = got["status"]["message"]
    assert got["status"]["code"] == 403
    assert {"run-as-non-root", "image-tag-pinned", "resource-limits", "no-host-port"} <= rules_in(message)
    assert "'api'" in message and "'cache'" in message and "fix: " in message
    assert message.startswith("Pod default/web denied")
    assert "no LimitRange of the namespace defaulted it" in message  # a Pod: the API server applied them already


async def test_deny_message_stays_within_a_kibibyte_and_still_names_every_rule(tmp_path: Path) -> None:
    containers = [bad_container(f"worker-{i:02d}", image=f"registry.example.com/team/very-long-image-name-{i}:latest")
                  for i in range(30)]
    containers.append({"name": "edge", "image": "edge:1", "securityContext": {"runAsUser": 1000},
                       "resources": {"limits": {"cpu": "1", "memory": "1Gi"}}, "ports": [{"containerPort": 1, "hostPort": 80}]})
    async with running(settings(tmp_path)) as hook:
        got = await hook.answer(review(pod(containers=containers)))
    message = got["status"]["message"]
    assert len(message) <= 1024
    assert {"run-as-non-root", "image-tag-pinned", "resource-limits", "no-host-port"} <= rules_in(message)
    assert "worker-00" in message and "30 containers: worker-00, worker-01" in message  # said once for all
    # what does not fit is counted by rule at a finding boundary, not cut off mid-word
    assert re.search(r"\S; fix: [^|]*[^ …] … and \d+ more: \[", message)
    assert "admission-cli check" in message  # says where the full list is


async def test_deny_names_a_missing_cpu_limit_and_a_missing_memory_limit_apart(tmp_path: Path) -> None:
    container = {**good_container(), "resources": {}}
    async with running(settings(tmp_path)) as hook:
        got = await hook.answer(review(pod(containers=[container])))
    message = got["status"]["message"]
    assert "container 'app' has no cpu limit (resources.limits.cpu)" in message
    assert "container 'app' has no memory limit (resources.limits.memory)" in message


async def test_repeated_warnings_are_merged_into_one_line_per_rule(tmp_path: Path) -> None:
    containers = [{**good_container(f"c{i}"), "livenessProbe": None, "readinessProbe": None} for i in range(30)]
    async with running(settings(tmp_path)) as hook:
        got = await hook.answer(review(pod(containers=containers)))
    health = [w for w in got["warnings"] if w.startswith("[healthcheck]")]
    assert len(health) == 1 and len(health[0]) < 120
    assert re.match(r"\[healthcheck\] 30 containers: c0, c1, c2, (c\d+, )*c(\d+) and (\d+) more have neither a "
                    r"livenessProbe", health[0])
    shown, more = re.search(r"c(\d+) and (\d+) more", health[0]).groups()
    assert int(shown) + 1 + int(more) == 30


async def test_merged_would_deny_warnings_keep_their_prefix_and_come_first(tmp_path: Path) -> None:
    containers = [{**good_container(f"c{i}"), "image": f"registry.example/app{i}:latest", "livenessProbe": None,
                   "readinessProbe": None} for i in range(5)]
    policy = "enforcement: warn\nrules: {healthcheck: deny}\nimages: {resolve: false}\n"
    async with running(settings(tmp_path, policy)) as hook:
        got = await hook.answer(review(pod(containers=containers)))
    assert all(w.startswith("[would deny] ") for w in got["warnings"][:2])
    assert got["warnings"][0].startswith("[would deny] [image-tag-pinned] ")
    assert "[would deny] [healthcheck] 5 containers: c0, c1, c2, c3, c4 have neither a livenessProbe nor a " \
           "readinessProbe: nothing…" in got["warnings"]


async def test_warnings_are_rule_prefixed_short_and_capped(tmp_path: Path) -> None:
    policy = "images: {resolve: false}\nrules:\n  image-tag-pinned: warn\n  resource-limits: warn\n"
    containers = [{**good_container(f"c{i:02d}"), "image": f"registry.example.com/a-rather-long-repository-name-{i}",
                   "resources": {}} for i in range(40)]
    async with running(settings(tmp_path, policy)) as hook:
        got = await hook.answer(review(pod(containers=containers)))
    warnings = got["warnings"]
    assert got["allowed"] is True
    assert all(len(w) < 120 for w in warnings)
    assert sum(len(w) for w in warnings) <= 4096
    assert all(w.startswith(("[image-tag-pinned] ", "[resource-limits] ", "[admission] ")) for w in warnings)
    assert warnings[-1].startswith("[admission]") and "audit log" in warnings[-1]


async def test_enforcement_warn_turns_denials_into_warnings(tmp_path: Path) -> None:
    async with running(settings(tmp_path, "enforcement: warn\nimages: {resolve: false}\n")) as hook:
        got = await hook.answer(review(pod(containers=[bad_container()])))
    assert got["allowed"] is True and "status" not in got
    assert any(w.startswith("[would deny] [run-as-non-root] ") for w in got["warnings"])


async def test_warn_mode_marks_what_deny_would_refuse_in_warnings_audit_and_metrics(tmp_path: Path) -> None:
    """A Deployment breaking four deny rules under enforcement: warn: every place says 'would deny', apart from the
    warn-level healthcheck finding, which stays a plain warning and comes after them."""
    container = bad_container()  # nginx:latest, root, no limits, no probes
    policy = "enforcement: warn\nimages: {resolve: false}\n"
    async with running(settings(tmp_path, policy)) as hook:
        got = await hook.answer(review(deployment(containers=[container])))
        metrics = (await hook.client.get("/metrics")).text
    assert got["allowed"] is True
    warnings = got["warnings"]
    marked = [w for w in warnings if w.startswith("[would deny] ")]
    assert {w.split("] ", 2)[1].lstrip("[") for w in marked} >= {"run-as-non-root", "image-tag-pinned",
                                                                 "resource-limits"}
    assert warnings[: len(marked)] == marked, "would-deny lines come first"
    assert any(w.startswith("[healthcheck] ") for w in warnings[len(marked):])
    line = hook.audit()[-1]
    assert line["enforcement"] == "warn" and line["would_deny"] is True and line["result"] == "warned"
    rules = {r["rule"]: r for r in line["rules"]}
    assert rules["image-tag-pinned"]["would_deny"] is True and "would_deny" not in rules["healthcheck"]
    assert 'admission_findings_total{action="would-deny",rule="image-tag-pinned",severity="deny"} 1.0' in metrics
    assert 'admission_findings_total{action="warn",rule="healthcheck",severity="warn"} 1.0' in metrics
    assert 'action="deny"' not in metrics


async def test_deny_mode_audit_names_the_enforcement_and_no_would_deny(tmp_path: Path) -> None:
    async with running(settings(tmp_path, "images: {resolve: false}\n")) as hook:
        got = await hook.answer(review(pod(containers=[bad_container()])))
    line = hook.audit()[-1]
    assert got["allowed"] is False and line["enforcement"] == "deny" and line["would_deny"] is False
    assert not any(w.startswith("[would deny]") for w in got.get("warnings", []))


@pytest.mark.parametrize("policy", ["images: {resolve: false}\n", "enforcement: warn\nimages: {resolve: false}\n"])
async def test_an_uninterpretable_object_is_refused_with_code_400_even_under_warn(tmp_path: Path, policy: str) -> None:
    broken = pod()
    broken["spec"]["containers"] = {"app": {"image": "x"}}  # a mapping: the API server could not decode it
    async with running(settings(tmp_path, policy)) as hook:
        response = await hook.post(review(broken))
    assert response.status_code == 200
    got = response.json()["response"]
    assert got["allowed"] is False and got["status"]["code"] == 400
    assert "spec.containers" in got["status"]["message"]
    assert hook.audit()[-1]["result"] == "invalid"


async def test_a_create_without_an_object_is_refused_with_code_400(tmp_path: Path) -> None:
    body = review(pod())
    body["request"]["object"] = None
    async with running(settings(tmp_path)) as hook:
        got = await hook.answer(body)
    assert got["allowed"] is False and got["status"]["code"] == 400


async def test_a_bug_of_ours_is_a_500_with_the_uid_and_the_worker_goes_on(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                                           caplog: pytest.LogCaptureFixture) -> None:
    real = review_module.finish

    def broken(*args: Any, **kwargs: Any) -> Any:
        raise ZeroDivisionError("bug")

    async with running(settings(tmp_path)) as hook:
        monkeypatch.setattr(review_module, "finish", broken)
        response = await hook.post(review(pod(), uid="uid-of-the-bug"))
        monkeypatch.setattr(review_module, "finish", real)
        after = await hook.post(review(pod(), uid="next"))
    assert response.status_code == 500
    assert response.json() == {"error": "internal error in the admission webhook", "uid": "uid-of-the-bug"}
    assert "uid=uid-of-the-bug" in caplog.text and "ZeroDivisionError" in caplog.text
    assert after.status_code == 200 and after.json()["response"]["uid"] == "next"


async def test_policy_exemption_suppresses_and_the_suppression_goes_only_to_the_audit_log(tmp_path: Path) -> None:
    policy = ("images: {resolve: false}\nexemptions:\n  - rule: run-as-non-root\n    namespace: default\n"
              "    name: 'legacy-*'\n    kind: Pod\n    container: app\n    reason: vendor image runs as root\n"
              "    expires: 2999-01-01\n")
    container = {**good_container(), "securityContext": {"runAsUser": 0, "readOnlyRootFilesystem": True}}
    async with running(settings(tmp_path, policy)) as hook:
        exempt = await hook.answer(review(pod("legacy-1", containers=[container])))
        other = await hook.answer(review(pod("web", containers=[container])))
    assert exempt == {"uid": exempt["uid"], "allowed": True}
    assert other["allowed"] is False
    line = hook.audit()[0]
    assert line["suppressed"] == [{"rule": "run-as-non-root", "container": "app", "reason": "vendor image runs as root"}]
    assert line["rules"] == []


async def test_expired_exemption_is_not_honoured(tmp_path: Path) -> None:
    policy = ("images: {resolve: false}\nexemptions:\n  - rule: '*'\n    namespace: default\n    reason: old\n"
              "    expires: 2020-01-01\n")
    async with running(settings(tmp_path, policy)) as hook:
        got = await hook.answer(review(pod(containers=[bad_container()])))
    assert got["allowed"] is False


@pytest.mark.parametrize("enabled", [False, True])
async def test_annotation_exemptions_count_only_when_the_policy_enables_them(tmp_path: Path, enabled: bool) -> None:
    policy = f"images: {{resolve: false}}\nexemptions_from_annotations: {str(enabled).lower()}\n"
    obj = pod(containers=[{**good_container(), "securityContext": {"runAsUser": 0}}])
    obj["metadata"]["annotations"] = {"admission.policy/exempt": "run-as-non-root",
                                      "admission.policy/exempt-reason": "migration ticket OPS-1"}
    async with running(settings(tmp_path, policy)) as hook:
        got = await hook.answer(review(obj))
    assert got["allowed"] is enabled


async def test_a_bad_annotation_exemption_is_a_warning_and_the_object_is_still_evaluated(tmp_path: Path) -> None:
    policy = "images: {resolve: false}\nexemptions_from_annotations: true\n"
    obj = pod(containers=[bad_container()])
    obj["metadata"]["annotations"] = {"admission.policy/exempt": "run-as-non-root"}  # no reason
    async with running(settings(tmp_path, policy)) as hook:
        got = await hook.answer(review(obj))
    assert got["allowed"] is False and "run-as-non-root" in rules_in(got["status"]["message"])
    assert any(w.startswith("[admission] annotation exemption dropped") for w in got["warnings"])


async def test_audit_line_has_the_decision_fields_and_no_object(tmp_path: Path) -> None:
    obj = pod(containers=[bad_container()])
    obj["spec"]["containers"][0]["env"] = [{"name": "PASSWORD", "value": "hunter2"}]
    async with running(settings(tmp_path)) as hook:
        await hook.answer(review(obj, uid="audit-uid", user="bob", dry_run=True))
    line = hook.audit()[-1]
    assert {"uid", "kind", "namespace", "name", "operation", "user", "dryRun", "allowed", "rules", "suppressed",
            "duration_ms"} <= set(line)
    assert (line["uid"], line["kind"], line["namespace"], line["name"], line["operation"], line["user"]) == (
        "audit-uid", "Pod", "default", "web", "CREATE", "bob")
    assert line["allowed"] is False and line["dryRun"] is True
    assert {"rule": "run-as-non-root", "severity": "deny", "containers": ["app"]} in line["rules"]
    assert "hunter2" not in json.dumps(line)


async def test_each_decision_writes_exactly_one_audit_line(tmp_path: Path) -> None:
    async with running(settings(tmp_path)) as hook:
        for body in (review(pod()), review(None, operation="DELETE", old=pod()), review(pod(containers=[bad_container()]))):
            await hook.answer(body)
    assert [line["result"] for line in hook.audit()] == ["allowed", "skipped", "denied"]


async def test_health_readiness_and_metrics_endpoints(tmp_path: Path) -> None:
    async with running(settings(tmp_path)) as hook:
        await hook.answer(review(pod(containers=[bad_container()])))
        await hook.answer(review(pod()))
        health = await hook.client.get("/healthz")
        ready = await hook.client.get("/readyz")
        metrics = (await hook.client.get("/metrics")).text
    assert health.status_code == 200 and ready.status_code == 200 and ready.json() == {"ready": True}
    assert ('admission_requests_total{dry_run="false",kind="Pod",operation="CREATE",'
            'result="denied",webhook="validate"} 1.0') in metrics
    assert ('admission_requests_total{dry_run="false",kind="Pod",operation="CREATE",'
            'result="allowed",webhook="validate"} 1.0') in metrics
    assert 'admission_findings_total{action="deny",rule="run-as-non-root",severity="deny"} 1.0' in metrics
    assert "admission_request_duration_seconds_bucket" in metrics
    assert "admission_policy_reloads_total" in metrics.replace("# HELP admission_policy_reloads", "") or \
        "admission_policy_reloads" in metrics


async def test_readiness_is_false_while_draining_and_answers_keep_the_connection_open(tmp_path: Path) -> None:
    from admission.webhook.reload import LIFECYCLE

    async with running(settings(tmp_path)) as hook:
        LIFECYCLE.draining = True
        try:
            ready = await hook.client.get("/readyz")
            response = await hook.post(review(pod()))
        finally:
            LIFECYCLE.draining = False
    assert ready.status_code == 503 and ready.json()["reason"] == "shutting down"
    # keep-alive through the drain delay: a new TLS handshake per request would cut throughput 5x
    assert response.status_code == 200 and "connection" not in response.headers
