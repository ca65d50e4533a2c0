"""A manual run of an exempted CronJob (`kubectl create job --from=cronjob/...`), on the real API server with
kube-controller-manager (issue 22, items 4 and 5).

The Job is created by a person, not by a controller identity, so it borrows the CronJob's exemptions only where
that is no escalation: it must be the CronJob's jobTemplate unchanged, and its requester must be allowed to patch
the CronJob (a SubjectAccessReview) or the exemption must say `manual_runs: true`. Its Pods, made by the job
controller, borrow through it only while it is. When an exemption would have applied and was not lent, the answer
says so in one line, and the audit line says why.

The first test holds admission/kube/jobs.py's tables (the labels and spec fields the API server adds to a Job on
create) to what this API server does, through server-side dry runs: the object a dry run returns has been through
the whole admission chain, as validating webhooks see it."""

from __future__ import annotations

import copy
import json
import time
from collections.abc import Iterator
from typing import Any

import pytest
import yaml

from admission.kube.jobs import ADDED_LABELS, SERVER_SET_FIELDS, template_difference
from tests.cluster.controlplane import ControlPlane
from tests.cluster.release import Release, installed

pytestmark = pytest.mark.controlplane

NS = "runs"
JOB_CONTROLLER = "system:serviceaccount:kube-system:job-controller"
NOT_APPLIED = ("Warning: [admission] the owner's exemption was not applied: the request did not come from its "
               "controller (see the audit log)")
POLICY = f"""images:
  resolve: false
exemptions:
""" + "".join(f"""  - rule: "*"
    namespace: {NS}
    kind: CronJob
    name: {name}
    reason: legacy batch job {name}, tracked in TICKET-2
""" for name in ("nightly", "paused", "frozen")) + f"""  - rule: "*"
    namespace: {NS}
    kind: CronJob
    name: opted
    reason: legacy batch job anyone in the team may run by hand
    manual_runs: true
"""
LEGACY = {"name": "app", "image": "registry.example.com/legacy:1.0"}  # root, no limits: run-as-non-root denies
COMPLIANT = {"name": "app", "image": "registry.example.com/web:1.4.2",
             "securityContext": {"runAsNonRoot": True, "runAsUser": 10001, "allowPrivilegeEscalation": False},
             "resources": {"limits": {"cpu": "500m", "memory": "128Mi"}}}


def cronjob(name: str, container: dict[str, Any], **job_spec: Any) -> dict[str, Any]:
    return {"apiVersion": "batch/v1", "kind": "CronJob", "metadata": {"name": name, "namespace": NS},
            "spec": {"schedule": "0 3 1 1 *", "suspend": True,  # never scheduled: only manual runs here
                     "jobTemplate": {"metadata": {"labels": {"team": "batch"}}, "spec": {
                         **job_spec, "template": {
                             "metadata": {"labels": {"app": name}, "annotations": {"owner": "team-batch"}},
                             "spec": {"restartPolicy": "Never", "containers": [container]}}}}}}


def get(plane: ControlPlane, kind: str, name: str) -> dict[str, Any]:
    return json.loads(plane.kubectl("get", kind, name, "-n", NS, "-o", "json").stdout)


def manual_yaml(plane: ControlPlane, job: str, cron: str) -> dict[str, Any]:
    """What `kubectl create job --from` would send, written out with --dry-run=client."""
    return yaml.safe_load(plane.kubectl("create", "job", job, f"--from=cronjob/{cron}", "-n", NS,
                                        "--dry-run=client", "-o", "yaml").stdout)


def audited(release: Release, mark: int, kind: str, name: str, operation: str = "CREATE") -> dict[str, Any]:
    lines = release.wait_for_audit(lambda a: a["kind"] == kind and a["name"] == name and a["operation"] == operation,
                                   since=mark)
    assert lines, f"no audit line for {operation} {kind} {name}"
    return lines[-1]


@pytest.fixture(scope="module")
def release(controllers: ControlPlane, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Release]:
    controllers.kubectl("create", "namespace", NS, check=False)
    controllers.ensure_default_service_accounts(NS)
    # alice may run jobs by hand and read CronJobs, not change them
    controllers.apply([
        {"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "Role", "metadata": {"name": "runner", "namespace": NS},
         "rules": [{"apiGroups": ["batch"], "resources": ["jobs"], "verbs": ["create", "get", "list"]},
                   {"apiGroups": ["batch"], "resources": ["cronjobs"], "verbs": ["get", "list"]}]},
        {"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "RoleBinding",
         "metadata": {"name": "runner-alice", "namespace": NS},
         "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": "runner"},
         "subjects": [{"apiGroup": "rbac.authorization.k8s.io", "kind": "User", "name": "alice"}]}])
    yield from installed(controllers, tmp_path_factory.mktemp("runs"), {"policy": POLICY})


VARIANTS = {  # CronJob name -> its jobTemplate.spec fields: each changes which defaults the API server gives
    "probe-plain": {},
    "probe-parallel": {"parallelism": 3},
    "probe-failure-policy": {"podFailurePolicy": {"rules": [{"action": "FailJob", "onExitCodes": {
        "operator": "In", "values": [42]}}]}},
    "probe-indexed": {"completionMode": "Indexed", "completions": 3, "backoffLimitPerIndex": 1},
}


def test_the_api_server_adds_exactly_the_listed_labels_and_spec_fields_to_a_manual_run(
        controllers: ControlPlane, release: Release) -> None:
    mark = release.mark()
    for name, fields in VARIANTS.items():
        controllers.apply([cronjob(name, COMPLIANT, **fields)])
        cron = get(controllers, "cronjob", name)
        job = json.loads(controllers.kubectl("create", "job", f"{name}-run", f"--from=cronjob/{name}", "-n", NS,
                                             "--dry-run=server", "-o", "json").stdout)
        wanted = cron["spec"]["jobTemplate"]["spec"]
        added = {k: v for k, v in job["spec"]["template"]["metadata"]["labels"].items()
                 if k not in wanted["template"]["metadata"]["labels"]}
        assert added == {label: job["metadata"][field] for label, field in ADDED_LABELS.items()}, name
        assert job["metadata"]["uid"] and job["metadata"]["name"] == f"{name}-run"
        set_by_server = set(job["spec"]) - set(wanted)
        assert set_by_server <= set(SERVER_SET_FIELDS), (name, set_by_server)
        assert all(job["spec"][k] == v for k, v in wanted.items() if k != "template"), name
        assert template_difference(job, cron) is None, (name, job["spec"])
        if name == "probe-plain":
            assert set_by_server == set(SERVER_SET_FIELDS)
        # a dry run goes through the webhook too: this is what it saw, and let through as a manual run
        line = audited(release, mark, "Job", f"{name}-run")
        assert line["dryRun"] is True and line["manual_run"] == "allowed: the requester may patch the CronJob"


def test_a_manual_run_of_an_exempted_cronjob_and_its_pod_are_created(controllers: ControlPlane,
                                                                     release: Release) -> None:
    controllers.apply([cronjob("nightly", LEGACY)])
    mark = release.mark()
    run = controllers.kubectl("create", "job", "nightly-by-hand", "--from=cronjob/nightly", "-n", NS, check=False)
    assert run.returncode == 0, run.stderr
    line = audited(release, mark, "Job", "nightly-by-hand")
    assert line["allowed"] and line["owner"] == "CronJob nightly" and line["owner_verified"] is True
    assert line["manual_run"] == "allowed: the requester may patch the CronJob"
    assert {s["reason"] for s in line["suppressed"]} == {
        "legacy batch job nightly, tracked in TICKET-2 (through its owner CronJob nightly)"}
    # the job controller makes its Pod, which borrows through the Job and the CronJob
    deadline = time.monotonic() + 90
    pods: list[Any] = []
    while not pods and time.monotonic() < deadline:
        pods = json.loads(controllers.kubectl("get", "pods", "-n", NS, "-l", "job-name=nightly-by-hand", "-o",
                                              "json").stdout)["items"]
        time.sleep(0.3)
    assert pods, "the job controller made no Pod"
    pod = audited(release, mark, "Pod", pods[0]["metadata"]["name"])
    assert pod["allowed"] and pod["user"] == JOB_CONTROLLER and pod["owner"] == "CronJob nightly"


def test_the_same_job_written_out_with_another_image_is_denied(controllers: ControlPlane, release: Release) -> None:
    controllers.apply([cronjob("nightly", LEGACY)])
    job = manual_yaml(controllers, "nightly-edited", "nightly")
    assert job["metadata"]["ownerReferences"][0]["kind"] == "CronJob"
    job["spec"]["template"]["spec"]["containers"][0]["image"] = "registry.example.com/other:1.0"
    mark = release.mark()
    run = controllers.create([job], check=False)
    assert run.returncode == 1 and "[run-as-non-root]" in run.stderr
    assert NOT_APPLIED in run.stderr
    assert "TICKET-2" not in run.stderr and "differs" not in run.stderr  # neither the exemption nor the cause
    line = audited(release, mark, "Job", "nightly-edited")
    assert not line["allowed"] and line["owner_verified"] is False
    assert "differs at spec.template.spec.containers[0].image" in line["owner_problem"]


def test_a_manual_run_whose_reference_lacks_controller_true_is_matched_by_uid(
        controllers: ControlPlane, release: Release) -> None:
    controllers.apply([cronjob("nightly", LEGACY)])
    job = manual_yaml(controllers, "nightly-plain-ref", "nightly")
    job["metadata"]["ownerReferences"][0].pop("controller")
    mark = release.mark()
    assert controllers.create([job], check=False).returncode == 0
    assert audited(release, mark, "Job", "nightly-plain-ref")["owner_verified"] is True


def test_a_forged_reference_to_an_exempted_cronjob_stays_denied(controllers: ControlPlane, release: Release) -> None:
    controllers.apply([cronjob("nightly", LEGACY)])
    job = manual_yaml(controllers, "nightly-forged", "nightly")
    job["metadata"]["ownerReferences"][0]["uid"] = "00000000-0000-0000-0000-000000000000"
    mark = release.mark()
    run = controllers.create([job], check=False)
    assert run.returncode == 1 and "[run-as-non-root]" in run.stderr
    assert "the owner's exemption was not applied: its owner could not be verified" in run.stderr
    line = audited(release, mark, "Job", "nightly-forged")
    assert line["owner_verified"] is False and "has uid" in line["owner_problem"]


def test_a_requester_who_may_not_patch_the_cronjob_borrows_nothing_without_manual_runs(
        controllers: ControlPlane, release: Release) -> None:
    controllers.apply([cronjob("nightly", LEGACY), cronjob("opted", LEGACY)])
    mark = release.mark()
    run = controllers.kubectl("create", "job", "nightly-by-alice", "--from=cronjob/nightly", "-n", NS, "--as=alice",
                              check=False)
    assert run.returncode == 1 and "[run-as-non-root]" in run.stderr, run.stderr
    assert NOT_APPLIED in run.stderr
    line = audited(release, mark, "Job", "nightly-by-alice")
    assert line["user"] == "alice" and line["manual_run"] == "refused: may not patch the CronJob"
    assert "may not patch it" in line["owner_problem"] and "none of its exemptions sets manual_runs" in \
        line["owner_problem"]
    # the exemption that opts in lends itself to the same requester
    opted = controllers.kubectl("create", "job", "opted-by-alice", "--from=cronjob/opted", "-n", NS, "--as=alice",
                                check=False)
    assert opted.returncode == 0, opted.stderr
    line = audited(release, mark, "Job", "opted-by-alice")
    assert line["manual_run"] == "allowed: exemptions with manual_runs only" and line["owner_verified"] is True


def test_an_update_of_a_suspended_manual_runs_template_is_evaluated_again(
        controllers: ControlPlane, release: Release) -> None:
    controllers.apply([cronjob("paused", LEGACY, suspend=True)])
    assert controllers.kubectl("create", "job", "paused-by-hand", "--from=cronjob/paused", "-n", NS,
                               check=False).returncode == 0
    mark = release.mark()
    # the Job's own labels: not its pod template, skipped
    controllers.kubectl("label", "job", "paused-by-hand", "-n", NS, "checked=yes")
    skipped = audited(release, mark, "Job", "paused-by-hand", "UPDATE")
    assert skipped["allowed"] and skipped["skipped"] == "the pod template is unchanged"
    # a label on the template of a suspended Job: allowed by the API server, and no longer the CronJob's template
    patch = json.dumps({"spec": {"template": {"metadata": {"labels": {"extra": "yes"}}}}})
    mark = release.mark()
    run = controllers.kubectl("patch", "job", "paused-by-hand", "-n", NS, "--type=merge", "-p", patch, check=False)
    assert run.returncode == 1 and "[run-as-non-root]" in run.stderr, run.stderr
    line = audited(release, mark, "Job", "paused-by-hand", "UPDATE")
    assert "differs at spec.template.metadata.labels.extra" in line["owner_problem"]


def test_a_jobs_pods_borrow_through_it_only_while_it_is_its_cronjobs_template(
        controllers: ControlPlane, release: Release) -> None:
    controllers.apply([cronjob("frozen", LEGACY, suspend=True)])  # suspended: the job controller makes no Pod
    assert controllers.kubectl("create", "job", "frozen-by-hand", "--from=cronjob/frozen", "-n", NS,
                               check=False).returncode == 0
    job = get(controllers, "job", "frozen-by-hand")

    def pod(name: str) -> dict[str, Any]:
        template = copy.deepcopy(job["spec"]["template"])
        reference = {"apiVersion": "batch/v1", "kind": "Job", "name": job["metadata"]["name"],
                     "uid": job["metadata"]["uid"], "controller": True, "blockOwnerDeletion": True}
        return {"apiVersion": "v1", "kind": "Pod", "metadata": {**template["metadata"], "name": name, "namespace": NS,
                                                                "ownerReferences": [reference]},
                "spec": template["spec"]}

    assert controllers.create([pod("frozen-pod-1")], f"--as={JOB_CONTROLLER}", check=False).returncode == 0
    changed = cronjob("frozen", {**LEGACY, "image": "registry.example.com/legacy:2.0"}, suspend=True)
    controllers.apply([changed])
    mark = release.mark()
    run = controllers.create([pod("frozen-pod-2")], f"--as={JOB_CONTROLLER}", check=False)
    assert run.returncode == 1 and "[run-as-non-root]" in run.stderr
    line = audited(release, mark, "Pod", "frozen-pod-2")
    assert line["owner"] == "Job frozen-by-hand" and "is not CronJob frozen's jobTemplate" in line["owner_problem"]
    assert "differs at spec.template.spec.containers[0].image" in line["owner_problem"]
