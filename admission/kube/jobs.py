"""Manual runs of a CronJob (`kubectl create job --from=cronjob/nightly`): is this Job the CronJob's jobTemplate,
unchanged? Pure functions over the objects as the API server gives them; kube/cluster.py reads them, the webhook
decides with them (docs/decisions.md, issue 22).

What the API server itself adds to a Job on create, before validating webhooks see it (measured on kube-apiserver
1.37 by tests/cluster/test_manual_runs.py, which holds these tables to a server-side dry run):

- four labels on the pod template, naming the Job: `batch.kubernetes.io/controller-uid` and `controller-uid` (its
  uid), `batch.kubernetes.io/job-name` and `job-name` (its name);
- `spec.selector` matching `batch.kubernetes.io/controller-uid` (unless the template selects manually);
- the defaults of the Job spec fields the template leaves out: backoffLimit, completionMode, completions,
  parallelism, podReplacementPolicy, suspend, manualSelector. Some depend on other fields (below).

Anything else that differs (an image, a command, a volume, an added label or annotation, parallelism 100) makes the
Job not a manual run, and it borrows nothing.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from admission.model import OwnerRef

__all__ = ["ADDED_LABELS", "SERVER_SET_FIELDS", "cronjob_ref", "template_difference"]

CRONJOB = ("batch/v1", "CronJob")
# label -> which of the Job's own fields is its value
ADDED_LABELS: Mapping[str, str] = {
    "batch.kubernetes.io/controller-uid": "uid",
    "batch.kubernetes.io/job-name": "name",
    "controller-uid": "uid",
    "job-name": "name",
}
SERVER_SET_FIELDS = ("selector", "manualSelector", "backoffLimit", "completionMode", "completions", "parallelism",
                     "podReplacementPolicy", "suspend")
_MAX_INT32 = 2147483647


def cronjob_ref(meta: Mapping[str, Any] | None) -> OwnerRef | None:
    """The Job's ownerReference to a batch/v1 CronJob, with `controller: true` or without it (some kubectl versions,
    k9s and Argo CD's "create job" write it so); a claim, matched by uid when the CronJob is read."""
    refs = meta.get("ownerReferences") if isinstance(meta, Mapping) else None
    if not isinstance(refs, list):
        return None
    found = [ref for ref in refs if isinstance(ref, Mapping) and (ref.get("apiVersion"), ref.get("kind")) == CRONJOB]
    found.sort(key=lambda ref: ref.get("controller") is not True)  # the controller reference first
    for ref in found:
        fields = [ref.get(k) for k in ("apiVersion", "kind", "name", "uid")]
        if all(isinstance(f, str) and f for f in fields):
            return OwnerRef(*fields)
    return None


def _defaults(template: Mapping[str, Any]) -> dict[str, Any]:
    """The values the API server gives the fields a Job spec leaves out (SetDefaults_Job), for this template."""
    out: dict[str, Any] = {"completionMode": "NonIndexed", "suspend": False, "manualSelector": False, "parallelism": 1,
                           "backoffLimit": _MAX_INT32 if template.get("backoffLimitPerIndex") is not None else 6,
                           "podReplacementPolicy": "Failed" if template.get("podFailurePolicy") is not None
                           else "TerminatingOrFailed"}
    if template.get("completions") is None and template.get("parallelism") is None:
        out["completions"] = 1
    return out


def _clean(value: Any) -> Any:  # noqa: ANN401
    """null and {} are the same as leaving a field out (`creationTimestamp: null` in older kubectl's output)."""
    if isinstance(value, Mapping):
        out = {k: _clean(v) for k, v in value.items()}
        return {k: v for k, v in out.items() if v is not None and v != {}}
    if isinstance(value, list):
        return [_clean(v) for v in value]
    return value


def _first_difference(a: Any, b: Any, path: str) -> str | None:  # noqa: ANN401
    if isinstance(a, Mapping) and isinstance(b, Mapping):
        for key in sorted(set(a) | set(b), key=str):
            found = _first_difference(a.get(key), b.get(key), f"{path}.{key}")
            if found:
                return found
        return None
    if isinstance(a, list) and isinstance(b, list) and len(a) == len(b):
        for index, (x, y) in enumerate(zip(a, b, strict=True)):
            found = _first_difference(x, y, f"{path}[{index}]")
            if found:
                return found
        return None
    return None if a == b else path


def template_difference(job: Mapping[str, Any], cronjob: Mapping[str, Any]) -> str | None:
    """None when `job` is `cronjob`'s jobTemplate as the API server makes a Job of it; else the first field path
    where it differs (for the audit line: `spec.template.spec.containers[0].image`)."""
    meta = job.get("metadata") if isinstance(job.get("metadata"), Mapping) else {}
    spec = _clean(job.get("spec")) if isinstance(job.get("spec"), Mapping) else {}
    wanted_spec: Any = cronjob.get("spec")
    for step in ("jobTemplate", "spec"):
        wanted_spec = wanted_spec.get(step) if isinstance(wanted_spec, Mapping) else None
    if not isinstance(wanted_spec, Mapping):
        return "spec (the CronJob has no jobTemplate.spec)"
    wanted = _clean(wanted_spec)
    # The pod template, metadata included, less exactly the labels the API server adds with exactly their values.
    template = dict(spec.get("template") or {})
    template_meta = dict(template.get("metadata") or {})
    labels = dict(template_meta.get("labels") or {})
    for label, field in ADDED_LABELS.items():
        if label in labels and labels[label] == meta.get(field) and label not in _labels(wanted):
            del labels[label]
    if labels:
        template_meta["labels"] = labels
    else:
        template_meta.pop("labels", None)
    if template_meta:
        template["metadata"] = template_meta
    else:
        template.pop("metadata", None)
    found = _first_difference(template, wanted.get("template") or {}, "spec.template")
    if found:
        return found
    # The rest of the spec: equal, but for what the API server sets itself where the jobTemplate leaves it out.
    defaults = _defaults(wanted)
    rest = {k: v for k, v in spec.items() if k != "template"}
    expected = {k: v for k, v in wanted.items() if k != "template"}
    for name, value in defaults.items():
        if name not in expected and rest.get(name) == value:
            rest.pop(name)
    if "selector" not in expected and rest.get("selector") == {
            "matchLabels": {"batch.kubernetes.io/controller-uid": meta.get("uid")}}:
        rest.pop("selector")
    return _first_difference(rest, expected, "spec")


def _labels(spec: Mapping[str, Any]) -> Mapping[str, Any]:
    template = spec.get("template") if isinstance(spec.get("template"), Mapping) else {}
    meta = template.get("metadata") if isinstance(template.get("metadata"), Mapping) else {}
    labels = meta.get("labels")
    return labels if isinstance(labels, Mapping) else {}
