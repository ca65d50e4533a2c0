"""One audit run: list the pod-bearing objects a page at a time, judge each with the webhook's engine, policy and
exemptions, keep only the findings, then (optionally) write the PolicyReports.

A page is decoded, its objects turned into workloads (sources/kubernetes.py, as the webhook reads an AdmissionReview's
object), given their namespace's LimitRange defaults when they are templates (as the webhook counts them), their
images' configs when resolution is on, evaluated (policy/engine.py), and dropped: memory grows with the findings,
not with the objects listed.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

from admission.audit import inventory
from admission.kube.api import ApiError, CallStats, Kube, Resource, automount_setting, pages
from admission.audit.images import Images, lookup_references, variants
from admission.audit.reports import ObjectResults
from admission.errors import InputError
from admission.findings import Finding, Problem, Report
from admission.model import Workload
from admission.policy import engine
from admission.policy.config import Policy
from admission.sources import kubernetes

__all__ = ["Audit", "Outcome", "file_label", "namespaces_in", "run_id"]

log = logging.getLogger("admission.audit")

LIMITRANGES = Resource("", "v1", "limitranges", "LimitRange")
SERVICEACCOUNTS = Resource("", "v1", "serviceaccounts", "ServiceAccount")
POD_NOTE = "no LimitRange of the namespace defaulted it"  # the API server applied them before the Pod was stored
TEMPLATE_NOTE = "no LimitRange of the namespace gives a default for it"


def file_label(namespace: str | None) -> str:
    """What stands for a finding's file: the namespace (a JUnit suite, a SARIF artifact, the text report's first
    column). An audit reads no file; the field path says where in the object."""
    return f"namespace/{namespace}" if namespace else "cluster"


@dataclass
class Outcome:
    report: Report
    objects: dict[str | None, list[ObjectResults]]  # namespace -> what the reports say of each object
    stats: Mapping[str, CallStats]
    unlisted: list[Problem] = field(default_factory=list)  # kinds that could not be listed


@dataclass
class Audit:
    kube: Kube
    policy: Policy
    namespace: str | None  # None: every namespace
    limit: int = 500
    images: Images | None = None
    today: Any = None  # a datetime.date for exemption expiry (tests); default: today, UTC

    def __post_init__(self) -> None:
        self.report = Report()
        self.objects: dict[str | None, list[ObjectResults]] = {}
        self.digests = inventory.Digests()
        self.limit_defaults: dict[str, Any] = {}
        self.limit_problem: str | None = None
        # service-account-token: (namespace, name) -> the ServiceAccount's automountServiceAccountToken ("" unset),
        # listed only when the policy turns the rule on; what could not be listed, said in its findings
        self.accounts: dict[tuple[str, str], str] | None = None
        self.accounts_problem: str | None = None
        self.unlisted: list[Problem] = []
        self._strings: dict[str, str] = {}

    # -- the run --

    def run(self) -> Outcome:
        unreachable = self._read_limit_ranges()
        if unreachable is None:
            self._read_service_accounts()
        for resource in inventory.LISTED:
            if unreachable is not None:
                # No answer at all (after the retries): the other kinds would wait as long for the same nothing.
                self._unlisted(resource, f"not listed: the API server did not answer ({unreachable})")
                continue
            try:
                for page in pages(self.kube, resource, namespace=self.namespace, limit=self.limit):
                    self._page(resource, page)
                    del page  # before the next page is fetched: two pages at once cost ~10 MiB at 500 objects
            except ApiError as exc:
                self._unlisted(resource, str(exc))
                if exc.status == 0:
                    unreachable = str(exc)
        self.report.files = len(self.objects)
        return Outcome(self.report, self.objects, self.kube.stats, self.unlisted)

    def _unlisted(self, resource: Resource, why: str) -> None:
        problem = Problem(message=f"cannot list {resource.name}: {why}", file=file_label(self.namespace))
        self.report.errors.append(problem)
        self.unlisted.append(problem)

    def _read_limit_ranges(self) -> str | None:
        """Each namespace's `type: Container` default limits, as the webhook counts them for templates. A refused
        list is not an error (templates are told no defaults were counted); no answer at all is returned."""
        from admission.kube.limits import defaults_of  # the webhook's reading, so both count the same

        by_namespace: dict[str, list[dict[str, Any]]] = {}
        try:
            for page in pages(self.kube, LIMITRANGES, namespace=self.namespace, limit=self.limit):
                for item in page:
                    meta = item.get("metadata") or {}
                    by_namespace.setdefault(str(meta.get("namespace") or ""), []).append(item)
        except ApiError as exc:
            self.limit_problem = exc.short()
            return str(exc) if exc.status == 0 else None
        self.limit_defaults = {ns: defaults_of(ns, items) for ns, items in by_namespace.items()}
        return None

    def _read_service_accounts(self) -> None:
        """Each ServiceAccount's automountServiceAccountToken, as the webhook reads a template's account: only when
        service-account-token is on (a refused list is said in the findings, not an error of the run)."""
        if not self.policy.enabled("service-account-token"):
            return
        accounts: dict[tuple[str, str], str] = {}
        try:
            for page in pages(self.kube, SERVICEACCOUNTS, namespace=self.namespace, limit=self.limit):
                for item in page:
                    meta = item.get("metadata") or {}
                    accounts[(str(meta.get("namespace") or ""), str(meta.get("name") or ""))] = automount_setting(item)
        except ApiError as exc:
            self.accounts_problem = exc.short()
            return
        self.accounts = accounts

    def _token(self, workload: Workload, namespace: str) -> Workload:
        """A template's token as its ServiceAccount decides it (service-account-token); a stored Pod has passed the
        ServiceAccount admission plugin, so its volume (or its absence) is the evidence."""
        token = workload.token
        if token is None:
            return workload
        if workload.kind == "Pod":
            return replace(workload, token=replace(token, injected=True))
        if token.pod is not None or token.volume is not None:
            return workload
        if self.accounts is None:
            why = f"ServiceAccounts could not be listed ({self.accounts_problem})" if self.accounts_problem else \
                "its ServiceAccount was not read"
            return replace(workload, token=replace(token, account_note=why))
        said = self.accounts.get((namespace, token.account))
        if said is None:
            return replace(workload, token=replace(token, account_note=(
                f"ServiceAccount '{token.account}' does not exist, so its setting is unknown")))
        return replace(workload, token=replace(token, account_automount=said))

    def _page(self, resource: Resource, page: list[dict[str, Any]]) -> None:
        todo: list[tuple[dict[str, Any], dict[str, list[str]]]] = []
        for obj in page:
            obj["apiVersion"], obj["kind"] = resource.api_version, resource.kind  # a List's items carry neither
            uid = inventory.uid_of(obj)
            if resource.kind == "Pod":
                running = inventory.running_digests(obj)
                if inventory.reported("Pod", obj):
                    todo.append((obj, {name: [digest] for name, digest in running.items()}))
                else:
                    owner = inventory.controller_of(obj)
                    self.digests.add(owner[2] if owner else "", running)
                continue
            if not inventory.reported(resource.kind, obj):
                owner = inventory.controller_of(obj)
                self.digests.move(uid, owner[2] if owner else "")
                continue
            todo.append((obj, self.digests.take(uid)))
        if not todo:
            return
        prepared: list[tuple[dict[str, Any], list[Workload], dict[str, list[str]]]] = []
        for obj, running in todo:
            workloads = self._workloads(obj)
            if workloads is not None:
                prepared.append((obj, workloads, running))
        if self.images is not None:
            self.images.lookup({ref for _, workloads, running in prepared for w in workloads
                                for ref in lookup_references(w, running)})
        for obj, workloads, running in prepared:
            self._evaluate(obj, workloads, running)

    def _workloads(self, obj: dict[str, Any]) -> list[Workload] | None:
        """The object's workloads, with LimitRange defaults and the note the resource-limits rule words them with;
        None (and an error) when the object cannot be interpreted, as the webhook answers 400 for it."""
        meta = obj.get("metadata") or {}
        namespace = str(meta.get("namespace") or "")
        try:
            workloads = kubernetes.workloads_from_object(obj, file=file_label(namespace or None),
                                                         namespace=namespace or "default")
        except (InputError, RecursionError) as exc:
            message = exc.message if isinstance(exc, InputError) else "the object nests too deeply"
            path = exc.path if isinstance(exc, InputError) else None
            self._uninterpretable(obj, f"{path + ': ' if path else ''}{message}", path)
            return None
        if obj["kind"] == "Service":
            return workloads
        if self.accounts is not None or self.accounts_problem is not None or obj["kind"] == "Pod":
            workloads = [self._token(w, namespace) for w in workloads]
        template = obj["kind"] != "Pod"
        if not template:
            return [replace(w, limits_note=POD_NOTE) for w in workloads]
        if self.limit_problem:
            note = f"the namespace's LimitRange could not be read ({self.limit_problem}), so no defaults were counted"
            return [replace(w, limits_note=note) for w in workloads]
        defaults = self.limit_defaults.get(namespace)
        if defaults is not None:
            from admission.kube.limits import apply_limit_defaults

            workloads = apply_limit_defaults(workloads, defaults)
        return [replace(w, limits_note=TEMPLATE_NOTE) for w in workloads]

    def _uninterpretable(self, obj: dict[str, Any], message: str, path: str | None) -> None:
        meta = obj.get("metadata") or {}
        namespace = meta.get("namespace") or None
        label = f"{obj['kind']} {namespace + '/' if namespace else ''}{meta.get('name', '')}"
        self.report.errors.append(Problem(message=f"{label}: {message}", file=file_label(namespace), path=path))
        self.report.objects += 1
        self.objects.setdefault(namespace, []).append(ObjectResults(
            obj["apiVersion"], obj["kind"], str(meta.get("name") or ""), namespace, inventory.uid_of(obj), (),
            error=message))

    def _evaluate(self, obj: dict[str, Any], workloads: list[Workload], running: dict[str, list[str]]) -> None:
        meta = obj.get("metadata") or {}
        namespace = meta.get("namespace") or None
        for workload in workloads:
            judged = (variants(workload, running, self.images.results, self.images.checks)
                      if self.images is not None else [workload])
            result = engine.evaluate(judged, self.policy, today=self.today)
            findings = _merge(result.findings) if len(judged) > 1 else result.findings
            findings = [self._compact(f) for f in findings]
            evaluated = result.evaluated[0]
            self.report.objects += 1
            self.report.evaluated.append(evaluated)
            self.report.findings.extend(findings)
            self.report.verified.extend(result.verified)
            self.report.errors.extend(result.errors)
            self.objects.setdefault(namespace, []).append(ObjectResults(
                obj["apiVersion"], obj["kind"], workload.name, namespace, inventory.uid_of(obj),
                evaluated.rules, tuple(findings)))

    def _intern(self, text: str) -> str:
        return self._strings.setdefault(text, text)

    def _compact(self, f: Finding) -> Finding:
        """The finding with its repeated strings shared: 5,000 copies of one Deployment's findings differ only in
        the object's name, so their messages, fixes, paths and keys are one string each."""
        return replace(f, message=self._intern(f.message), remediation=self._intern(f.remediation),
                       path=self._intern(f.path), key=self._intern(f.key), file=self._intern(f.file),
                       object_file=self._intern(f.object_file),
                       value=self._intern(f.value) if f.value is not None else None)


def _merge(findings: Sequence[Finding]) -> list[Finding]:
    """Findings of the variants of one object, each distinct finding once (the first variant's wording)."""
    seen: set[tuple[Any, ...]] = set()
    out = []
    for f in findings:
        key = (f.rule, f.container, f.key, f.path, f.suppressed)
        if key not in seen:
            seen.add(key)
            out.append(f)
    return out


def namespaces_in(objects: Mapping[str | None, Iterable[ObjectResults]]) -> list[str]:
    return sorted(ns for ns in objects if ns)


def run_id(now: float | None = None) -> str:
    """A label value that sorts by time and is unique enough between runs: 20250102t030405-1a2b3c."""
    import os

    stamp = time.strftime("%Y%m%dt%H%M%S", time.gmtime(now if now is not None else time.time()))
    return f"{stamp}-{os.urandom(3).hex()}"

