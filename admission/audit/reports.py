"""PolicyReports of an audit run (wgpolicyk8s.io/v1alpha2, or openreports.io/v1alpha1 on request): built a part at a
time, written with server-side apply, and the previous runs' reports deleted by label selector only.

- One report per namespace (`admission-audit`, then `admission-audit-2`, ... when it would pass `max_bytes`): a
  result per rule and object, one per finding where the rule found something (pass, fail, warn, skip) and `error`
  for an object that could not be interpreted. Each result names the object with its uid, and carries the field
  (`path`), value, container and fix as properties. A summary counts the part's results.
- With every namespace in scope, a cluster report (`ClusterPolicyReport` / `ClusterReport`) carries the run's
  errors that belong to no namespace (a kind that could not be listed).
- Every report is labelled `app.kubernetes.io/managed-by=admission` and `admission.policy/run-id=<run>`; stale ones
  are deleted by the selector `managed-by=admission,run-id!=<run>` in the namespaces the run covered, and nothing
  else is ever deleted.
- A part is serialised as it is filled and sent when full, so at most one part is held (etcd refuses requests over
  1.5 MiB by default; kyverno#2674 and trivy-operator#757 are what an unbounded report does).
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from admission.kube.api import Kube, Resource, pages
from admission.findings import Finding

__all__ = ["MANAGED_BY", "REPORT_APIS", "RUN_ID", "ObjectResults", "ReportApi", "Writer", "results_of", "timestamp_of"]

MANAGED_BY = "app.kubernetes.io/managed-by"
RUN_ID = "admission.policy/run-id"
PART = "admission.policy/part"
OURS = "admission"
NAME = "admission-audit"
FIELD_MANAGER = "admission-audit"
SOURCE = "admission"
MAX_BYTES = 512 << 10  # a third of etcd's default request limit (1.5 MiB), well under the API server's 3 MiB
_MESSAGE_CAP = 1024
_STATUSES = ("pass", "fail", "warn", "error", "skip")


@dataclass(frozen=True, slots=True)
class ReportApi:
    namespaced: Resource
    cluster: Resource


REPORT_APIS: Mapping[str, ReportApi] = {
    "wgpolicyk8s.io/v1alpha2": ReportApi(
        Resource("wgpolicyk8s.io", "v1alpha2", "policyreports", "PolicyReport"),
        Resource("wgpolicyk8s.io", "v1alpha2", "clusterpolicyreports", "ClusterPolicyReport", namespaced=False)),
    "openreports.io/v1alpha1": ReportApi(
        Resource("openreports.io", "v1alpha1", "reports", "Report"),
        Resource("openreports.io", "v1alpha1", "clusterreports", "ClusterReport", namespaced=False)),
}


@dataclass(frozen=True, slots=True)
class ObjectResults:
    """One evaluated (or uninterpretable) object: its reference and what each rule found."""

    api_version: str
    kind: str
    name: str
    namespace: str | None
    uid: str
    rules: tuple[str, ...]
    findings: tuple[Finding, ...] = ()
    error: str | None = None  # why the object could not be interpreted (or, with no kind, a kind not listed)
    error_rule: str = "interpretable"

    def ref(self) -> dict[str, str]:
        out = {"apiVersion": self.api_version, "kind": self.kind, "name": self.name, "uid": self.uid}
        if self.namespace:
            out["namespace"] = self.namespace
        return out


def _status(f: Finding) -> tuple[str, str]:
    """(result, severity) of a finding. A would-deny finding (enforcement: warn) fails the rule all the same."""
    if f.suppressed:
        return "skip", "high" if f.severity == "deny" or f.would_deny else "medium"
    if f.severity == "deny" or f.would_deny:
        return "fail", "high"
    return "warn", "medium"


def _clip(text: str, cap: int = _MESSAGE_CAP) -> str:
    return text if len(text) <= cap else text[: cap - 1] + "…"


def results_of(obj: ObjectResults, *, timestamp: Mapping[str, int]) -> Iterator[dict[str, Any]]:
    """The report results of one object: a pass per rule that found nothing, one result per finding otherwise."""
    ref = obj.ref()
    base = {"source": SOURCE, "category": "admission", "scored": True, "timestamp": dict(timestamp)}
    if obj.error is not None:
        error = {**base, "policy": "admission", "rule": obj.error_rule, "result": "error", "severity": "high"}
        if obj.kind:
            yield {**error, "message": _clip(f"the object cannot be interpreted: {obj.error}"), "resources": [ref]}
        else:  # not about one object: what the run could not do
            yield {**error, "message": _clip(obj.error)}
        return
    by_rule: dict[str, list[Finding]] = {}
    for f in obj.findings:
        by_rule.setdefault(f.rule, []).append(f)
    for rule in list(obj.rules) + [r for r in by_rule if r not in obj.rules]:
        found = by_rule.get(rule)
        if not found:
            yield {**base, "policy": rule, "rule": rule, "result": "pass", "resources": [ref]}
            continue
        for f in found:
            result, severity = _status(f)
            properties = {"container": f.container, "path": f.path, "value": f.value, "fix": f.remediation,
                          "key": f.key or None}
            if f.reason:
                properties["exemption" if f.suppressed else "exemption not honoured"] = f.reason
            if f.would_deny:
                properties["would deny"] = "true"
            yield {**base, "policy": rule, "rule": rule, "result": result, "severity": severity,
                   "message": _clip(f.message), "resources": [ref],
                   "properties": {k: _clip(str(v)) for k, v in properties.items() if v not in (None, "")}}


@dataclass(slots=True)
class _Part:
    """A report being filled: its results already serialised, and their summary."""

    chunks: list[str] = field(default_factory=list)
    size: int = 0
    summary: dict[str, int] = field(default_factory=lambda: dict.fromkeys(_STATUSES, 0))


_ENCODE = json.JSONEncoder(ensure_ascii=False, separators=(",", ":")).encode


@dataclass
class Writer:
    """Writes one run's reports and deletes the stale ones."""

    kube: Kube
    api: ReportApi
    run_id: str
    started: str  # RFC 3339, for the annotation
    max_bytes: int = MAX_BYTES
    written: list[str] = field(default_factory=list)  # namespace/name (or name) of every report written
    deleted: int = 0

    def _envelope(self, resource: Resource, name: str, namespace: str | None, part: int) -> dict[str, Any]:
        meta: dict[str, Any] = {"name": name, "labels": {MANAGED_BY: OURS, RUN_ID: self.run_id, PART: str(part)},
                                "annotations": {"admission.policy/run-started": self.started}}
        if namespace:
            meta["namespace"] = namespace
        doc: dict[str, Any] = {"apiVersion": resource.api_version, "kind": resource.kind, "metadata": meta}
        if resource.group == "openreports.io":
            doc["source"] = SOURCE
        return doc

    def _send(self, resource: Resource, namespace: str | None, part: int, filled: _Part) -> None:
        name = NAME if part == 1 else f"{NAME}-{part}"
        envelope = self._envelope(resource, name, namespace, part)
        envelope["summary"] = filled.summary
        head = _ENCODE(envelope)
        body = head[:-1] + ',"results":[' + ",".join(filled.chunks) + "]}"
        # Server-side apply creates or updates in one call; force: the fields are ours alone.
        self.kube.json("PATCH", resource.path(namespace, name), body=body.encode(),
                       query=[("fieldManager", FIELD_MANAGER), ("force", "true")],
                       content_type="application/apply-patch+yaml", resource=resource.name)
        self.written.append(f"{namespace}/{name}" if namespace else name)

    def write(self, namespace: str | None, objects: Iterable[ObjectResults], *, timestamp: Mapping[str, int],
              always: bool = False) -> None:
        """The reports of one namespace (None: the cluster report), split into parts under `max_bytes`.
        `always`: write a part even with no result (the cluster report records the run)."""
        resource = self.api.namespaced if namespace else self.api.cluster
        overhead = len(_ENCODE(self._envelope(resource, NAME + "-000", namespace, 1))) + 200
        current, part = _Part(), 1
        for obj in objects:
            encoded = [(_ENCODE(r), r["result"]) for r in results_of(obj, timestamp=timestamp)]
            size = sum(len(text) + 1 for text, _ in encoded)
            if current.chunks and current.size + size + overhead > self.max_bytes:
                self._send(resource, namespace, part, current)  # an object's results are never split
                current, part = _Part(), part + 1
            for text, result in encoded:
                current.chunks.append(text)
                current.summary[result] += 1
            current.size += size
        if current.chunks or always:
            self._send(resource, namespace, part, current)

    def delete_stale(self, namespaces: Sequence[str] | None, *, cluster: bool, limit: int = 500) -> None:
        """Delete our reports of other runs, by label selector only: in `namespaces` (None: every namespace) and,
        when `cluster`, the cluster reports."""
        selector = f"{MANAGED_BY}={OURS},{RUN_ID}!={self.run_id}"
        resource = self.api.namespaced
        if namespaces is None:
            stale_in = sorted({str((o.get("metadata") or {}).get("namespace") or "")
                               for page in pages(self.kube, resource, namespace=None, limit=limit,
                                                 label_selector=selector) for o in page} - {""})
        else:
            stale_in = list(namespaces)
        for namespace in stale_in:
            self._delete_collection(resource, namespace, selector)
        if cluster:
            self._delete_collection(self.api.cluster, None, selector)

    def _delete_collection(self, resource: Resource, namespace: str | None, selector: str) -> None:
        answer = self.kube.json("DELETE", resource.path(namespace), query=[("labelSelector", selector)],
                                resource=resource.name, ok=(200, 202))
        items = answer.get("items") if isinstance(answer, dict) else None
        self.deleted += len(items) if isinstance(items, list) else 0


def timestamp_of(seconds: float) -> dict[str, int]:
    return {"seconds": int(seconds), "nanos": int((seconds - int(seconds)) * 1e9)}

