"""The webhook's FastAPI app: POST /validate and /mutate, GET /healthz, /readyz, /metrics (architecture §3).

`create_app(settings)` builds one app with its own policy holder, image resolver, cluster reader, metrics and
audit log. A request is: read the body under the cap, validate the envelope (400/413), plan (review.plan:
dispatch and UPDATE rules), resolve images and read the namespace's LimitRange inside the deadline, evaluate with
the same engine as `admission-cli check`, answer, write one audit line.
"""

from __future__ import annotations

import asyncio
import functools
import gc
import json
import logging
import os
import re
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass, replace
from typing import IO, Any
from urllib.parse import unquote

from fastapi import FastAPI, Request
from pydantic_core import to_json
from fastapi.responses import Response
from starlette.routing import Route

from admission.errors import PolicyError, RegistryError
from admission.findings import Finding
from admission.kube.cluster import ReadError
from admission.kube.jobs import cronjob_ref, template_difference
from admission.model import OwnerRef, Workload
from admission.policy import catalog, engine
from admission.policy.config import Policy, load_policy
from admission.webhook import mutate, review
from admission.webhook.audit import AuditLog, mutation_record, record
from admission.webhook.imaging import ImageFailure, failures, signature_audit, verdict, withhold_reasons
from admission.webhook.metrics import CONTENT_TYPE_LATEST, Metrics
from admission.webhook.reload import LIFECYCLE, PolicyHolder
from admission.webhook.settings import Settings

__all__ = ["create_app", "create_app_from_env", "request_deadline"]

log = logging.getLogger("admission.webhook")
# Why a request does not borrow its owner's exemptions when its user is not a controller (the audit line's words).
NOT_A_CONTROLLER = "the request's user is not a controller identity (policy owners.controllers)"
# What the answer says when an owner's exemption would have applied and was not lent (item 5 of issue 22): the cause
# in a few words, never the exemption, its reason or what the reads found.
NOT_FROM_ITS_CONTROLLER = "the request did not come from its controller"
NOT_VERIFIED = "its owner could not be verified"


@dataclass(frozen=True, slots=True)
class _Lent:
    """What an object's owner lends: `owner` (None: nothing), `claimed` (the top owner named, whose exemptions were
    at stake, when known), `problem` (the precise cause, audit only), `said` (the cause the answer may give) and how
    a manual run was decided."""

    owner: OwnerRef | None = None
    claimed: OwnerRef | None = None
    problem: str = ""
    said: str = ""
    manual_run: str | None = None


_JSON = "application/json"
_DURATION = re.compile(r"(\d+(?:\.\d*)?|\.\d+)(ns|us|µs|ms|s|m|h)")
_UNIT = {"ns": 1e-9, "us": 1e-6, "µs": 1e-6, "ms": 1e-3, "s": 1.0, "m": 60.0, "h": 3600.0}
# What the answer says of a failed image lookup (imaging.verdict), and its fix; the audit line has the rest.
_VERDICT_FIX = {
    "not allowed by policy": "use an image from a registry the policy allows (ask the cluster's operators which)",
    "unavailable": "check the image reference and its registry; the webhook's audit log says why the lookup failed",
}
# Rules whose messages can carry what only an image's config says (users, labels, history, layer sizes).
_IMAGE_DETAIL_RULES = frozenset(("image-provenance", "image-size", "numeric-user", "run-as-non-root"))


def _named_owners(ref: OwnerRef) -> list[OwnerRef]:
    """The owner a controller's naming says a ReplicaSet or Job has (Deployment `api` makes ReplicaSet `api-5d8f9c7b4`,
    CronJob `nightly` makes Job `nightly-29421180`), when the chain cannot be read. Only to say that an exemption was
    not applied: nothing is lent on a name."""
    stem, dash, suffix = ref.name.rpartition("-")
    if not dash or not stem or not suffix:
        return []
    if ref.kind == "ReplicaSet":
        return [OwnerRef("apps/v1", "Deployment", stem, "")]
    if ref.kind == "Job" and suffix.isdigit():
        return [OwnerRef("batch/v1", "CronJob", stem, "")]
    return []


def _account_decides(workload: Workload) -> bool:
    """A pod template that leaves its token to its ServiceAccount: the account's own field decides (issue 27)."""
    token = workload.token
    return token is not None and token.pod is None and token.volume is None and not token.injected


def parse_go_duration(text: str) -> float | None:
    """Seconds of a Go duration as the API server writes ?timeout= ("10s", "1m30s", "500ms"); None if invalid."""
    text = text.strip()
    if not text:
        return None
    pos, total = 0, 0.0
    for match in _DURATION.finditer(text):
        if match.start() != pos:
            return None
        total += float(match.group(1)) * _UNIT[match.group(2)]
        pos = match.end()
    return total if pos == len(text) else None


def request_deadline(settings: Settings, timeout_param: str | None) -> float:
    """Seconds this request may take: min(ADMISSION_DEADLINE, ?timeout= minus the margin), at least 10 ms."""
    budget = settings.deadline
    if timeout_param:
        sent = _cached_duration(timeout_param)
        if sent is not None:
            budget = min(budget, sent - settings.timeout_margin)
    return max(0.01, budget)


@functools.lru_cache(maxsize=64)
def _cached_duration(text: str) -> float | None:
    return parse_go_duration(text)  # the API server sends the webhook's timeoutSeconds, the same every time


class _Disconnected(Exception):
    """The client hung up before its body arrived."""


def _timeout_param(query: bytes) -> str | None:
    for part in query.split(b"&"):
        if part.startswith(b"timeout="):
            return unquote(part[8:].decode("latin-1"))
    return None


def _uid_of(body: bytes) -> str:
    """request.uid of a body that failed validation, when it is JSON and has a string one (rate-limited path only)."""
    try:
        data = json.loads(body)
    except (ValueError, RecursionError):
        return ""
    request = data.get("request") if isinstance(data, dict) else None
    uid = request.get("uid") if isinstance(request, dict) else None
    return uid[:128] if isinstance(uid, str) else ""


class _RateLimit:
    """A token bucket (hand-written: a dozen lines, no library needed): `take()` is (allowed, dropped since the
    last allowed one)."""

    def __init__(self, *, per_second: float, burst: int) -> None:
        self.rate, self.burst = per_second, float(burst)
        self.tokens, self.at, self.dropped = float(burst), time.monotonic(), 0

    def take(self) -> tuple[bool, int]:
        now = time.monotonic()
        self.tokens = min(self.burst, self.tokens + (now - self.at) * self.rate)
        self.at = now
        if self.tokens < 1.0:
            self.dropped += 1
            return False, 0
        self.tokens -= 1.0
        dropped, self.dropped = self.dropped, 0
        return True, dropped


class _App(FastAPI):
    """FastAPI for every endpoint but POST /validate and /mutate, which go straight to the webhook's ASGI handler: the
    profile showed the middleware stack and the Request/Response objects as a tenth of a decision's cost."""

    webhook: Any = None

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] == "http" and scope["method"] == "POST":
            if scope["path"] == "/validate":
                await self.webhook.asgi_validate(scope, receive, send)
                return
            if scope["path"] == "/mutate":
                await self.webhook.asgi_mutate(scope, receive, send)
                return
        await super().__call__(scope, receive, send)


class _Webhook:
    """Everything one app instance holds; the route handlers are its methods."""

    def __init__(self, settings: Settings, holder: PolicyHolder, metrics: Metrics, audit: AuditLog,
                 images: Any = None, cluster: Any = None) -> None:
        self.settings = settings
        self.holder = holder
        self.metrics = metrics
        self.audit = audit
        self.images = images  # admission.webhook.imaging.ImageService, or None when nothing resolves
        self.cluster = cluster  # admission.kube.cluster.ClusterReads, or None when cluster reads are off
        self.started = False
        self.redacting = settings.redact_details and bool(settings.docker_config or settings.pull_secrets)
        self.pins = mutate.Pins()  # what /mutate pinned, for /validate's audit line (same process only)
        self.skip_registries = mutate.skip_set(settings.mutation_skip_registries)
        self._finding_children: dict[tuple[str, str, str], Any] = {}
        self._refusals = _RateLimit(per_second=5.0, burst=20)

    # --- endpoints -------------------------------------------------------------------------------------------

    async def healthz(self, request: Request) -> Response:
        return Response(b'{"status":"ok"}', media_type=_JSON)

    def ready(self) -> bool:
        return self.started and self.holder.policy is not None and not LIFECYCLE.draining and self.certificate_held()

    def certificate_held(self) -> bool:
        """Managed TLS: the Secret's certificate is being served (until then a placeholder is)."""
        return not self.settings.tls_held or os.path.exists(self.settings.tls_held)

    async def readyz(self, request: Request) -> Response:
        if self.ready():
            return Response(b'{"ready":true}', media_type=_JSON)
        why = "shutting down" if LIFECYCLE.draining else "no certificate yet (managed TLS)" \
            if not self.certificate_held() else "policy not loaded"
        return Response(json.dumps({"ready": False, "reason": why}).encode(), status_code=503, media_type=_JSON)

    async def metrics_endpoint(self, request: Request) -> Response:
        if self.settings.metrics_port is not None:  # served on its own port (ADMISSION_METRICS_PORT) only
            return Response(b'{"error":"metrics are served on the metrics port"}', status_code=404, media_type=_JSON)
        return Response(self.metrics.render(), media_type=CONTENT_TYPE_LATEST)

    def refresh_gauges(self) -> None:
        """The state gauges, set just before a scrape reads them (Metrics.refreshers)."""
        self.metrics.ready.set(1 if self.ready() else 0)
        self.metrics.policy_state(self.holder.digest, self.holder.loaded_at, self.holder.stale)
        self.metrics.certificate(self.settings.tls_cert)
        if self.images is not None:
            self.metrics.sync_resolver(self.images.stats())

    async def validate(self, request: Request) -> Response:
        """The Starlette route (what a mounted or wrapped app reaches); the app itself takes the raw path below."""
        return self._response(*await self.handle(request.scope, request.receive))

    async def mutate_route(self, request: Request) -> Response:
        return self._response(*await self.handle_mutate(request.scope, request.receive))

    @staticmethod
    def _response(status: int, content: bytes) -> Response:
        return Response(content, status_code=status, media_type=_JSON,
                        headers={"Connection": "close"} if LIFECYCLE.closing else None)

    async def asgi_validate(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        """POST /validate as plain ASGI: no middleware stack, Request or Response objects on the hot path.

        No `Connection: close` while draining: keep-alive is kept through the drain delay (a new TLS handshake per
        request cost 5x the throughput); only once the listener is closed does each answer close its connection."""
        await self._send(send, *await self.handle(scope, receive))

    async def asgi_mutate(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        """POST /mutate, as plain ASGI like /validate."""
        await self._send(send, *await self.handle_mutate(scope, receive))

    @staticmethod
    async def _send(send: Any, status: int, content: bytes) -> None:
        headers = [(b"content-type", b"application/json"), (b"content-length", str(len(content)).encode())]
        if LIFECYCLE.closing:
            headers.append((b"connection", b"close"))
        await send({"type": "http.response.start", "status": status, "headers": headers})
        await send({"type": "http.response.body", "body": content})

    async def handle(self, scope: dict[str, Any], receive: Any) -> tuple[int, bytes]:
        """(HTTP status, JSON body) for one POST /validate."""
        return await self._serve(scope, receive, "validate", self._answer_validate)

    async def handle_mutate(self, scope: dict[str, Any], receive: Any) -> tuple[int, bytes]:
        """(HTTP status, JSON body) for one POST /mutate: always allowed (the validating webhook decides), with a
        JSONPatch when something was pinned."""
        return await self._serve(scope, receive, "mutate", self._answer_mutate)

    async def _serve(self, scope: dict[str, Any], receive: Any, webhook: str,
                     answer: Callable[[review.AdmissionReview, float, float], Awaitable[bytes]]) -> tuple[int, bytes]:
        """Read the body under the cap, validate the envelope (400, 413), then `answer(parsed, start, budget)`; a bug
        of ours is a 500 with the uid, logged, and the worker lives on."""
        start = time.monotonic()
        try:
            body = await self._read_body(scope, receive)
        except _Disconnected:
            return 400, b'{"error":"the client went away"}'
        if body is None:
            return 413, self._refused(413, {"error": f"the body is larger than {self.settings.max_body} bytes"},
                                      "too_large", start, scope, None, webhook=webhook)
        try:
            parsed = review.parse(body)
        except review.EnvelopeError as exc:
            return 400, self._refused(400, exc.body(), "bad_request", start, scope, body, webhook=webhook)
        query = scope.get("query_string", b"")
        budget = request_deadline(self.settings, _timeout_param(query) if b"timeout=" in query else None)
        try:
            return 200, await answer(parsed, start, budget)
        except Exception:  # noqa: BLE001 - our bug: 500 with the uid, logged; the worker lives on
            req = parsed.request
            log.exception("internal error in /%s uid=%s", webhook, req.uid)
            return 500, self._error(500, {"error": "internal error in the admission webhook", "uid": req.uid},
                                    "error", start, request=req, webhook=webhook)

    async def _answer_validate(self, parsed: review.AdmissionReview, start: float, budget: float) -> bytes:
        req = parsed.request
        decision = await self.decide(req, start + budget)
        answer = review.response_body(parsed.apiVersion, req.uid, decision.allowed, code=decision.code,
                                      message=decision.message, warnings=decision.warnings)
        content = to_json(answer)  # pydantic-core's encoder: a seventh of json.dumps's time on an answer
        self._account(req, decision, time.monotonic() - start, budget)
        return content

    async def _answer_mutate(self, parsed: review.AdmissionReview, start: float, budget: float) -> bytes:
        req = parsed.request
        mutation = await self.mutate(req, start + budget)
        content = to_json(review.response_body(parsed.apiVersion, req.uid, True, patch=mutation.encoded_patch()))
        duration = time.monotonic() - start
        kind = mutation.kind or (req.kind.kind if req.kind is not None else "")
        self.metrics.observe(req.operation, kind, mutation.result, duration, dry_run=bool(req.dryRun),
                             webhook="mutate")
        for result, count in mutation.counts().items():
            self.metrics.mutations.labels(result).inc(count)
        self.audit.write(mutation_record(req, mutation, duration=duration, deadline=budget))
        return content

    # --- mutation ----------------------------------------------------------------------------------------------

    async def mutate(self, req: review.AdmissionRequest, deadline: float) -> mutate.Mutation:
        """Pin what the request adds to the digests its tags name now (webhook/mutate.py says what and why)."""
        found = mutate.target(req, templates=self.settings.mutation_templates)
        if isinstance(found, str):
            return mutate.Mutation(result="skipped", skipped=found)
        policy = self.holder.policy  # one snapshot per request, as for validation
        assert policy is not None
        params = policy.setting("image-tag-pinned").params
        out = mutate.Mutation(result="unchanged", kind=found.kind, namespace=found.namespace, name=found.name)
        judged = {site: mutate.judge(site.image, params=params, skip=self.skip_registries) for site in found.sites}
        wanted = [site.image for site, left_as in judged.items() if left_as is None]
        digests: dict[str, str | RegistryError] = {}
        if wanted and (self.images is None or policy.images.resolve not in ("auto", True)):
            judged.update({site: (mutate.SKIPPED, "image lookups are off (images.resolve: false)")
                           for site, left_as in judged.items() if left_as is None})
        elif wanted:
            credentials = None
            if self.cluster is not None and self.cluster.pull_secrets:
                credentials = await self.cluster.pull_credentials(req.object or {}, found.kind, found.namespace,
                                                                  deadline=deadline)
            digests = await self.images.digests(wanted, policy.images, deadline=deadline, pulls=credentials)
        pinned: list[tuple[mutate.Site, str]] = []
        for site, left_as in judged.items():
            if left_as is None:
                answer = digests[site.image]
                if isinstance(answer, str):
                    pinned.append((site, f"{site.image}@{answer}"))
                    continue
                left_as = mutate.not_resolved(answer)
            out.left.append({"container": site.container, "image": site.image, "result": left_as[0],
                             **({"reason": left_as[1]} if left_as[1] else {})})
        if pinned:
            out.result = "mutated"
            out.patch = mutate.patch(req.object or {}, found, pinned)
            out.pinned = [{"container": site.container, "from": site.image, "to": to} for site, to in pinned]
            if found.kind == "Pod" and not req.dryRun:
                for site, to in pinned:
                    self.pins.record(found.namespace, found.name, site.container, to, site.image)
        return out

    # --- the decision ----------------------------------------------------------------------------------------

    async def decide(self, req: review.AdmissionRequest, deadline: float) -> review.Decision:
        planned = review.plan(req)
        if isinstance(planned, review.Decision):
            return planned
        policy = self.holder.policy  # one snapshot per request: a reload never mixes two policies in one answer
        assert policy is not None
        workloads: list[Workload] = planned.workloads
        notes: list[str] = []
        image_failures: list[ImageFailure] = []
        signatures: list[dict[str, str]] = []
        # The LimitRange read and the image lookups run side by side, both inside the deadline.
        limit_task = None
        if planned.template and self.cluster is not None and self.cluster.limitranges:
            limit_task = asyncio.ensure_future(self.cluster.limit_defaults(planned.namespace, deadline=deadline))
        token_task = None
        if planned.template and policy.enabled("service-account-token") and any(_account_decides(w) for w in workloads):
            token_task = asyncio.ensure_future(self._accounts(workloads, planned.namespace, deadline))
        if self.images is not None and policy.images.resolve in ("auto", True) and planned.kind != "Service":
            credentials = None
            if self.cluster is not None and self.cluster.pull_secrets:
                credentials = await self.cluster.pull_credentials(req.object or {}, planned.kind, planned.namespace,
                                                                  deadline=deadline)
                if credentials.problem:
                    notes.append(credentials.problem)
            workloads = await self.images.enrich(workloads, policy.images, deadline=deadline, pulls=credentials)
            image_failures = failures(workloads)
            if image_failures:
                for failure in image_failures:
                    log.info("image config of %s (container %s) unavailable: %s", failure.image, failure.container,
                             failure.detail)
                workloads = withhold_reasons(workloads)  # no rule's message can carry the precise reason
            signatures, workloads = signature_audit(workloads)  # nor can a signature check's
        limit_problem = None
        if limit_task is not None:
            defaults = await limit_task
            if defaults.problem:
                limit_problem = defaults.problem
            else:
                from admission.kube.limits import apply_limit_defaults

                workloads = apply_limit_defaults(workloads, defaults)
        if token_task is not None:
            said = await token_task
            workloads = [replace(w, token=replace(w.token, account_automount=said[w.token.account][0],
                                                  account_note=said[w.token.account][1]))
                         if _account_decides(w) else w for w in workloads]
        note = self._limits_note(limit_problem, template=planned.template)
        controller = workloads[0].controller if workloads else None
        if controller is None and planned.kind == "Job":
            controller = cronjob_ref((req.object or {}).get("metadata"))  # a manual run may say controller: false
        lent = _Lent()
        if controller is not None and policy.exemptions:  # with no exemption there is nothing to borrow
            lent = await self._owner(req, policy, planned, controller, deadline)
        workloads = [replace(w, limits_note=note, owner=lent.owner) for w in workloads]
        report = engine.evaluate(workloads, policy)
        if lent.problem and any(not f.suppressed for f in report.findings):
            claimed = lent.claimed
            if claimed is None and self.cluster is not None and self.cluster.owners:
                # Not a controller's request: which top owner does the object name? (what it would have borrowed)
                claimed = (await self.cluster.top_owner(planned.namespace, controller, deadline=deadline)).claimed
            named = claimed or controller  # a chain cut short names no owner above the link it stopped at: guess
            candidates = [named, *_named_owners(named)]
            if any(engine.owner_would_exempt(report.findings, c, policy) for c in candidates):
                # One line, without the exemption or its reason; the audit line has the precise cause.
                notes.insert(0, f"the owner's exemption was not applied: {lent.said} (see the audit log)")
        describe = self._describer(workloads, image_failures) if report.findings else review.plain
        decision = review.finish(planned, report, notes=notes, describe=describe)
        if len(self.pins) and planned.kind == "Pod":
            decision.mutated = self._pinned_here(req, planned) or None
        if image_failures:
            decision.images = [failure.audit() for failure in image_failures]
        if signatures:
            decision.signatures = signatures
        if controller is not None and policy.exemptions:
            shown = lent.owner or controller
            decision.owner = f"{shown.kind} {shown.name}"
            decision.owner_verified = lent.owner is not None
            decision.owner_problem = lent.problem or None
            decision.manual_run = lent.manual_run
        return decision

    async def _accounts(self, workloads: Sequence[Workload], namespace: str,
                        deadline: float) -> dict[str, tuple[str | None, str | None]]:
        """What each ServiceAccount the templates run as says of its token (service-account-token): its
        `automountServiceAccountToken`, or what could not be read."""
        names = {w.token.account for w in workloads if _account_decides(w)}  # type: ignore[union-attr]
        if self.cluster is None or not self.cluster.service_accounts:
            why = "ADMISSION_SERVICE_ACCOUNT_READS is off" if self.cluster is not None or \
                not self.settings.service_account_reads else "no cluster configuration"
            return {n: (None, f"its ServiceAccount was not read ({why})") for n in names}
        return {n: await self.cluster.account_automount(namespace, n, deadline=deadline) for n in names}

    async def _owner(self, req: review.AdmissionRequest, policy: Policy, planned: review.Plan, ref: OwnerRef,
                     deadline: float) -> _Lent:
        """The top owner whose exemptions this object may borrow, or why it may not: only a controller identity's
        request borrows (a uid is no secret), and only an owner chain read back from the API with matching uids;
        or a person's manual run of a CronJob, where that is no escalation (`_manual_run`)."""
        user = req.userInfo.username if req.userInfo is not None else ""
        if user not in policy.controllers:
            if planned.kind == "Job" and (ref.api_version, ref.kind) == ("batch/v1", "CronJob"):
                return await self._manual_run(req, policy, planned.namespace, ref, deadline)
            return _Lent(problem=NOT_A_CONTROLLER, said=NOT_FROM_ITS_CONTROLLER)
        if self.cluster is None or not self.cluster.owners:
            return _Lent(problem="owners not verified: cluster reads off", said=NOT_VERIFIED)
        chain = await self.cluster.top_owner(planned.namespace, ref, deadline=deadline)
        if chain.top is None:
            return _Lent(claimed=chain.claimed, problem=f"owner not verified: {chain.problem}", said=NOT_VERIFIED)
        return _Lent(chain.top, chain.claimed, chain.problem, NOT_VERIFIED if chain.problem else "")

    async def _manual_run(self, req: review.AdmissionRequest, policy: Policy, namespace: str, ref: OwnerRef,
                          deadline: float) -> _Lent:
        """`kubectl create job --from=cronjob/nightly` by a person: the Job borrows its CronJob's exemptions only
        where that is no escalation. The CronJob is read now (no cache); the Job must be its jobTemplate unchanged
        (kube/jobs.py); and the requester must be allowed to patch the CronJob (a SubjectAccessReview: they could
        change the template themselves), or the exemption must opt in with `manual_runs: true`."""
        where = f"manual run of CronJob {namespace}/{ref.name}"
        if self.cluster is None or not self.cluster.owners:
            return _Lent(claimed=ref, problem=f"{where}: owners not verified: cluster reads off", said=NOT_VERIFIED)
        try:
            cronjob = await self.cluster.owner_object(namespace, ref, deadline=deadline, fresh=True)
        except ReadError as exc:
            why = exc.args[0] if exc.reason == "uid" else f"it could not be read ({exc.short()})"
            return _Lent(claimed=ref, problem=f"{where}: {why}", said=NOT_VERIFIED)
        differs = template_difference(req.object or {}, cronjob)
        if differs is not None:
            return _Lent(claimed=ref, problem=f"{where}: the Job is not its jobTemplate (it differs at {differs})",
                         said=NOT_FROM_ITS_CONTROLLER, manual_run=f"refused: differs at {differs}")
        user = req.userInfo.model_dump() if req.userInfo is not None else {}
        allowed, why = await self.cluster.may(user, {"verb": "patch", "group": "batch", "resource": "cronjobs",
                                                     "namespace": namespace, "name": ref.name}, deadline=deadline)
        if allowed:
            return _Lent(ref, ref, manual_run="allowed: the requester may patch the CronJob")
        opted_in = any(e.manual_runs and e.names(kind=ref.kind, name=ref.name, namespace=namespace)
                       for e in policy.exemptions)
        if opted_in:
            return _Lent(replace(ref, manual_runs_only=True), ref, f"{where}: the requester may not patch it ({why}); "
                         "only its exemptions with manual_runs are lent", NOT_FROM_ITS_CONTROLLER,
                         manual_run="allowed: exemptions with manual_runs only")
        return _Lent(claimed=ref, problem=f"{where}: the requester may not patch it ({why}) and none of its exemptions "
                     "sets manual_runs", said=NOT_FROM_ITS_CONTROLLER, manual_run="refused: may not patch the CronJob")

    def _pinned_here(self, req: review.AdmissionRequest, planned: review.Plan) -> list[dict[str, str]]:
        """The references of a Pod that this process's /mutate pinned, from its own record: the annotation says the same
        but anyone can write it, so it is never read here."""
        metadata = (req.object or {}).get("metadata")
        names = [n for n in ((metadata or {}).get(k) for k in ("name", "generateName")) if isinstance(n, str) and n] \
            if isinstance(metadata, dict) else []
        out = []
        for workload in planned.workloads:
            for c in workload.containers:
                if c.image is None or "@" not in c.image.value:
                    continue
                original = self.pins.original(planned.namespace, names, c.name, c.image.value)
                if original is not None:
                    out.append({"container": c.name, "from": original, "to": c.image.value})
        return out

    def _limits_note(self, limit_problem: str | None, *, template: bool) -> str:
        """What the cluster knows and CI does not about LimitRange defaults, for resource-limits messages."""
        if not template:
            return "no LimitRange of the namespace defaulted it"  # the API server applied them before us
        if limit_problem:
            return f"the namespace's LimitRange could not be read ({limit_problem}), so no defaults were counted"
        if self.cluster is not None and self.cluster.limitranges:
            return "no LimitRange of the namespace gives a default for it"
        return "LimitRange defaults are not counted (ADMISSION_LIMITRANGE_READS is off)"

    def _describer(self, workloads: Sequence[Workload], image_failures: Sequence[ImageFailure] = ()) -> review.Describe:
        """Image details withheld when redacting, and why an image lookup failed always. Applied to the findings the
        answer shows, when it shows them (the audit line carries no messages).

        A failed lookup is only "unavailable" or "not allowed by policy", of the container's image (one line for the
        containers that share it): the precise reason (a DNS failure, a private address refused) would let anyone
        who can create Pods map which names resolve to private addresses. The audit line has it."""
        verdicts = {(f.container, f.image): verdict(f.reason) for f in image_failures}
        configured: dict[str, str] = {}
        if self.redacting:
            for workload in workloads:
                for c in workload.containers:
                    if c.image_config is not None and c.image is not None:
                        configured[c.name] = c.image.value
        def describe(f: Finding) -> tuple[str, str]:
            if f.rule == "image-config-unavailable" and verdicts:
                # Not even the reference: its host may be the very address (10.1.2.3) a requester probes with.
                said = verdicts.get((f.container or "", f.value or ""), "unavailable")
                what = "registry is not allowed by policy" if said != "unavailable" else "config is unavailable"
                return f"container '{f.container}' uses an image whose {what}", _VERDICT_FIX[said]
            if configured and f.rule in _IMAGE_DETAIL_RULES and f.container in configured:
                rule = catalog.get(f.rule)
                return ((f"container '{f.container}': the config of image '{configured[f.container]}' fails "
                         f"{f.rule} ({rule.summary if rule else ''}); details withheld (ADMISSION_REDACT_DETAILS)"),
                        "run `admission-cli check --resolve-images` with credentials for the image's registry to "
                        "see the details")
            return f.message, f.remediation

        return describe

    # --- plumbing --------------------------------------------------------------------------------------------

    async def _read_body(self, scope: dict[str, Any], receive: Any) -> bytes | None:
        """The body, or None when it is over the cap (by Content-Length, or while it streams in)."""
        cap = self.settings.max_body
        for name, value in scope.get("headers", ()):
            if name == b"content-length":
                if value.isdigit() and int(value) > cap:
                    return None
                break
        chunks: list[bytes] = []
        size = 0
        while True:
            message = await receive()
            if message["type"] == "http.disconnect":
                raise _Disconnected
            chunk = message.get("body", b"")
            size += len(chunk)
            if size > cap:
                return None
            chunks.append(chunk)
            if not message.get("more_body", False):
                break
        return chunks[0] if len(chunks) == 1 else b"".join(chunks)

    def _refused(self, status: int, body: dict[str, Any], result: str, start: float, scope: dict[str, Any],
                 received: bytes | None, *, webhook: str = "validate") -> bytes:
        """A 400 or 413: counted always; an audit line (with the uid when the body was read and has one; a 413 body is
        not read past the cap) and a log line, both rate-limited, since anyone who reaches the port can send them."""
        self.metrics.envelope_refusals.labels(result).inc()
        content = self._error(status, body, result, start, webhook=webhook)
        allowed, dropped = self._refusals.take()
        if not allowed:
            return content
        uid = _uid_of(received) if received is not None else ""
        client = scope.get("client") or ("", 0)
        line: dict[str, Any] = {"ts": round(time.time(), 3), "audit": "admission",
                                **({"webhook": webhook} if webhook != "validate" else {}), "uid": uid, "result": result,
                                "code": status, "allowed": False, "error": body.get("error", ""),
                                "client": str(client[0]), "duration_ms": round((time.monotonic() - start) * 1000, 3)}
        if body.get("details"):
            line["details"] = body["details"][:3]
        if dropped:
            line["refusals_not_logged"] = dropped
        self.audit.write(line)
        log.warning("refused a request from %s with %d (%s)%s%s", client[0], status, body.get("error", ""),
                    f" uid={uid}" if uid else "", f"; {dropped} more refusals were not logged" if dropped else "")
        return content

    def _error(self, status: int, body: dict[str, Any], result: str, start: float,
               request: review.AdmissionRequest | None = None, *, webhook: str = "validate") -> bytes:
        duration = time.monotonic() - start
        operation = request.operation if request is not None else ""
        kind = request.kind.kind if request is not None and request.kind is not None else ""
        self.metrics.observe(operation, kind, result, duration, dry_run=bool(request is not None and request.dryRun),
                             webhook=webhook)
        if result == "error" and request is not None:
            line = record(request, review.Decision(allowed=webhook == "mutate", result="error"), duration=duration)
            if webhook != "validate":
                line["webhook"] = webhook
            self.audit.write({**line, "error": body.get("error")})
        return json.dumps(body).encode()

    def _account(self, req: review.AdmissionRequest, decision: review.Decision, duration: float, budget: float) -> None:
        kind = decision.kind or (req.kind.kind if req.kind is not None else "")
        self.metrics.observe(req.operation, kind, decision.result, duration, dry_run=bool(req.dryRun))
        report = decision.report
        if report is not None and report.findings:
            tally: dict[tuple[str, str, str], int] = {}
            for f in report.findings:
                severity = "deny" if f.would_deny else f.severity
                action = "suppressed" if f.suppressed else "would-deny" if f.would_deny else f.severity
                key = (f.rule, severity, action)
                tally[key] = tally.get(key, 0) + 1
            for key, count in tally.items():
                child = self._finding_children.get(key)
                if child is None:
                    child = self._finding_children[key] = self.metrics.findings.labels(*key)
                child.inc(count)
        if self.images is not None and decision.report is not None and self.holder.policy is not None \
                and self.holder.policy.images.resolve in ("auto", True):
            self.metrics.sync_resolver(self.images.stats())
        policy = self.holder.policy
        extra = {"enforcement": policy.enforcement} if policy is not None and decision.report is not None else None
        self.audit.write(record(req, decision, duration=duration, deadline=budget, extra=extra))


def create_app(settings: Settings | None = None, *, policy: Policy | None = None, audit_stream: IO[str] | None = None,
               cluster: Any = None, images: Any = None) -> FastAPI:
    """The webhook app. The policy is loaded now, so a bad policy file refuses to start (PolicyError).

    `cluster` / `images` replace the cluster reader and image service (tests give loopback-backed ones); by
    default cluster reads start in the lifespan when configured, and images resolve through a registry client.
    """
    settings = settings or Settings()
    metrics = Metrics(multiprocess_dir=settings.metrics_dir, registry_labels=settings.registry_labels)
    holder = PolicyHolder(settings.policy, metrics=metrics, initial=policy if policy is not None else load_policy(settings.policy))
    audit = AuditLog(audit_stream, enabled=settings.audit)
    if images is None:
        from admission.webhook.imaging import ImageService

        images = ImageService.from_settings(settings, holder.policy.images, metrics=metrics)
    hook = _Webhook(settings, holder, metrics, audit, images=images, cluster=cluster)
    metrics.refreshers.append(hook.refresh_gauges)
    hook.refresh_gauges()  # in multiprocess mode the state gauges are in the files from the start

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        tasks: list[asyncio.Task[None]] = []
        if hook.cluster is None and (settings.limitrange_reads or settings.pull_secrets or settings.owner_reads
                                     or settings.service_account_reads):
            from admission.kube.cluster import connect

            hook.cluster = await connect(settings, metrics=metrics)
        if settings.policy:
            tasks.append(asyncio.create_task(holder.watch(settings.watch_interval, on_change=_images_follow)))
        from admission.webhook.reload import watch_certificates

        tasks.append(asyncio.create_task(watch_certificates(settings.watch_interval, metrics=metrics)))
        hook.started = True
        metrics.ready.set(1)
        gc.freeze()  # what start-up made lives as long as the process: keep it out of every collection
        try:
            yield
        finally:
            hook.started = False
            audit.flush()
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            if hook.images is not None:
                await hook.images.aclose()
            if hook.cluster is not None:
                hook.cluster.close()

    def _images_follow(new: Policy) -> None:
        if hook.images is not None:
            hook.images.update(new.images)

    app = _App(title="admission", lifespan=lifespan, docs_url=None, redoc_url=None, openapi_url=None)
    app.webhook = hook
    # Plain Starlette routes: the handlers take the Request and build their answer themselves, so FastAPI's
    # dependency solving and response encoding are not paid per request.
    app.router.routes.append(Route("/validate", hook.validate, methods=["POST"]))
    app.router.routes.append(Route("/mutate", hook.mutate_route, methods=["POST"]))
    app.router.routes.append(Route("/healthz", hook.healthz, methods=["GET"]))
    app.router.routes.append(Route("/readyz", hook.readyz, methods=["GET"]))
    app.router.routes.append(Route("/metrics", hook.metrics_endpoint, methods=["GET"]))
    app.state.webhook = hook
    return app


def create_app_from_env() -> FastAPI:
    """uvicorn's factory for workers > 1 (each worker builds its app from the ADMISSION_* environment)."""
    try:
        return create_app(Settings())
    except PolicyError as exc:
        log.error("policy error: %s", exc)
        raise SystemExit(2) from None
