"""A manual run of a CronJob is its jobTemplate unchanged (admission/kube/jobs.py): the Job as the API server hands it
to validating webhooks (four labels on the pod template, a selector and the Job spec's defaults added, as
tests/cluster/test_manual_runs.py measures on a real kube-apiserver) matches; any other change names its path."""

from __future__ import annotations

import copy
from typing import Any

import pytest

from admission.kube.jobs import cronjob_ref, template_difference
from admission.model import OwnerRef

UID = "1529b3bc-67c1-4844-804a-00ddbbd6cf9a"
POD_SPEC = {"containers": [{"image": "registry.example/app:1", "imagePullPolicy": "IfNotPresent", "name": "app",
                            "resources": {}, "terminationMessagePath": "/dev/termination-log",
                            "terminationMessagePolicy": "File"}],
            "dnsPolicy": "ClusterFirst", "restartPolicy": "Never", "schedulerName": "default-scheduler",
            "securityContext": {}, "terminationGracePeriodSeconds": 30}


def cronjob(**job_spec: Any) -> dict[str, Any]:
    return {"apiVersion": "batch/v1", "kind": "CronJob", "metadata": {"name": "nightly", "namespace": "p", "uid": "c1"},
            "spec": {"schedule": "0 3 * * *", "jobTemplate": {"metadata": {"labels": {"team": "a"}}, "spec": {
                **job_spec, "template": {"metadata": {"labels": {"app": "nightly"}, "annotations": {"note": "manual"}},
                                         "spec": copy.deepcopy(POD_SPEC)}}}}}


def manual_job(cron: dict[str, Any], **defaults: Any) -> dict[str, Any]:
    """The Job `kubectl create job manual-1 --from=cronjob/nightly` makes, as the API server stores it (measured)."""
    spec = copy.deepcopy(cron["spec"]["jobTemplate"]["spec"])
    spec["template"]["metadata"]["labels"].update({"batch.kubernetes.io/controller-uid": UID, "controller-uid": UID,
                                                   "batch.kubernetes.io/job-name": "manual-1", "job-name": "manual-1"})
    spec.update({"backoffLimit": 6, "completionMode": "NonIndexed", "completions": 1, "manualSelector": False,
                 "parallelism": 1, "podReplacementPolicy": "TerminatingOrFailed", "suspend": False,
                 "selector": {"matchLabels": {"batch.kubernetes.io/controller-uid": UID}}})
    spec.update(defaults)
    return {"apiVersion": "batch/v1", "kind": "Job",
            "metadata": {"name": "manual-1", "namespace": "p", "uid": UID,
                         "annotations": {"cronjob.kubernetes.io/instantiate": "manual"},
                         "ownerReferences": [{"apiVersion": "batch/v1", "kind": "CronJob", "name": "nightly",
                                              "uid": "c1", "controller": True}]},
            "spec": spec}


def test_the_api_servers_job_of_an_unchanged_template_is_a_manual_run() -> None:
    cron = cronjob()
    assert template_difference(manual_job(cron), cron) is None


@pytest.mark.parametrize(("change", "path"), [
    (lambda j: j["spec"]["template"]["spec"]["containers"][0].update(image="registry.example/other:1"),
     "spec.template.spec.containers[0].image"),
    (lambda j: j["spec"]["template"]["metadata"]["labels"].update(extra="1"), "spec.template.metadata.labels.extra"),
    (lambda j: j["spec"]["template"]["metadata"]["annotations"].update(note="other"),
     "spec.template.metadata.annotations.note"),
    (lambda j: j["spec"]["template"]["metadata"]["labels"].update({"job-name": "someone-else"}),
     "spec.template.metadata.labels.job-name"),
    (lambda j: j["spec"].update(parallelism=100), "spec.parallelism"),
    (lambda j: j["spec"].update(activeDeadlineSeconds=60), "spec.activeDeadlineSeconds"),
    (lambda j: j["spec"].update(selector={"matchLabels": {"app": "nightly"}}), "spec.selector"),
    (lambda j: j["spec"]["template"]["spec"].update(hostNetwork=True), "spec.template.spec.hostNetwork"),
], ids=["image", "added-label", "annotation", "label-not-the-jobs", "parallelism", "deadline", "selector",
        "host-network"])
def test_any_other_change_is_named_by_its_path(change: Any, path: str) -> None:
    cron = cronjob()
    job = manual_job(cron)
    change(job)
    assert template_difference(job, cron) == path


def test_fields_the_template_sets_must_be_equal_and_conditional_defaults_follow_the_template() -> None:
    cron = cronjob(parallelism=3, podFailurePolicy={"rules": []})
    job = manual_job(cron, parallelism=3, podReplacementPolicy="Failed")
    del job["spec"]["completions"]  # with parallelism set, the API server leaves completions unset
    assert template_difference(job, cron) is None
    assert template_difference(manual_job(cron, parallelism=3), cron) == "spec.completions"
    indexed = cronjob(completionMode="Indexed", completions=3, backoffLimitPerIndex=1)
    assert template_difference(manual_job(indexed, completionMode="Indexed", completions=3, backoffLimit=2147483647),
                               indexed) is None
    assert template_difference(manual_job(indexed, completionMode="Indexed", completions=3), indexed) == \
        "spec.backoffLimit"


def test_null_and_empty_template_metadata_are_the_same_as_none() -> None:
    cron = cronjob()
    job = manual_job(cron)
    job["spec"]["template"]["metadata"]["creationTimestamp"] = None
    job["spec"]["template"]["spec"]["nodeSelector"] = {}
    assert template_difference(job, cron) is None


def test_the_cronjob_reference_is_found_with_or_without_controller_true() -> None:
    ref = {"apiVersion": "batch/v1", "kind": "CronJob", "name": "nightly", "uid": "c1"}
    other = {"apiVersion": "v1", "kind": "ConfigMap", "name": "cm", "uid": "x", "controller": False}
    assert cronjob_ref({"ownerReferences": [other, ref]}) == OwnerRef("batch/v1", "CronJob", "nightly", "c1")
    assert cronjob_ref({"ownerReferences": [{**ref, "controller": True}]}) == OwnerRef("batch/v1", "CronJob",
                                                                                         "nightly", "c1")
    assert cronjob_ref({"ownerReferences": [{**ref, "uid": ""}]}) is None
    assert cronjob_ref({"ownerReferences": [{**ref, "apiVersion": "batch/v2"}]}) is None
