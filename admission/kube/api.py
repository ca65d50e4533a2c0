"""The audit's only way to the API server: raw calls through the kubernetes client's ApiClient (kubeconfig auth, TLS,
proxies as configured) under a client-side rate limit, with 429/503 and Retry-After honoured and every call counted;
and a pager that lists with `limit` and `continue` and restarts a list on 410 Expired.

Hand-written over ApiClient's raw calls rather than the typed list methods: those deserialise every object of a page
into generated models (slow, and several times the memory of the JSON), and the Python client has no pager like
client-go's `tools/pager`. The token bucket is a dozen lines; a rate-limit library would be a dependency for that.
"""

from __future__ import annotations

import email.utils
import json
import logging
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

__all__ = ["Answer", "ApiError", "CallStats", "Kube", "Resource", "TokenBucket", "api_client", "pages"]

log = logging.getLogger("admission.audit")

RETRIED = frozenset((429, 503))  # API Priority and Fairness answers 429 with Retry-After; an overloaded server 503


@dataclass(frozen=True, slots=True)
class Answer:
    status: int
    headers: Mapping[str, str]
    body: bytes

    def json(self) -> Any:  # noqa: ANN401 - a Kubernetes object, a List or a Status
        return json.loads(self.body) if self.body else None


class ApiError(Exception):
    """A call that failed for good: `status` is the HTTP status (0 without an answer), `reason` the Status reason."""

    def __init__(self, status: int, reason: str, message: str = "", *, verb: str = "", path: str = "",
                 causes: tuple[str, ...] = (), kind: str = "") -> None:
        super().__init__(message or reason)
        self.status = status
        self.reason = reason
        self.message = message
        self.verb = verb
        self.path = path
        self.causes = causes  # the Status's details.causes[].reason, e.g. NamespaceTerminating
        # The Status's details.kind: what was not found, e.g. "namespaces" for a namespace deleted meanwhile (a kind the
        # server does not serve at all answers 404 with no details)
        self.kind = kind

    def short(self) -> str:
        return f"{self.status} {self.reason}" if self.status else self.reason

    def __str__(self) -> str:
        where = f"{self.verb} {self.path}: " if self.path else ""
        detail = f": {self.message}" if self.message and self.message != self.reason else ""
        return f"{where}{self.short()}{detail}"


def _error(answer: Answer, verb: str, path: str) -> ApiError:
    reason, message, causes, kind = "", "", (), ""
    try:
        status = answer.json()
        if isinstance(status, dict):
            reason = str(status.get("reason") or "")
            message = str(status.get("message") or "")
            details = status.get("details") if isinstance(status.get("details"), dict) else {}
            causes = tuple(str(c.get("reason") or c.get("type") or "") for c in details.get("causes") or ()
                           if isinstance(c, dict))
            kind = str(details.get("kind") or "")
    except ValueError:
        message = answer.body[:200].decode("utf-8", "replace")
    return ApiError(answer.status, reason or _REASONS.get(answer.status, "Error"), message, verb=verb, path=path,
                    causes=causes, kind=kind)


_REASONS = {400: "BadRequest", 401: "Unauthorized", 403: "Forbidden", 404: "NotFound", 409: "Conflict",
            410: "Expired", 413: "RequestEntityTooLarge", 422: "Invalid", 429: "TooManyRequests",
            500: "InternalError", 503: "ServiceUnavailable", 504: "Timeout"}


class TokenBucket:
    """`qps` calls a second on average, `burst` at once: client-go's flowcontrol rate limiter, in Python."""

    def __init__(self, qps: float, burst: int, *, clock: Callable[[], float] = time.monotonic,
                 sleep: Callable[[float], None] = time.sleep) -> None:
        if qps <= 0 or burst < 1:
            raise ValueError("qps must be > 0 and burst >= 1")
        self.qps = qps
        self.burst = burst
        self._tokens = float(burst)
        self._clock = clock
        self._sleep = sleep
        self._at = clock()

    def take(self) -> float:
        """Wait for a token; the seconds waited."""
        now = self._clock()
        self._tokens = min(float(self.burst), self._tokens + (now - self._at) * self.qps)
        self._at = now
        self._tokens -= 1.0
        if self._tokens >= 0:
            return 0.0
        wait = -self._tokens / self.qps  # the debt is paid back at qps; the next caller starts from it
        self._sleep(wait)
        return wait


@dataclass(slots=True)
class CallStats:
    """Calls of one resource: `retries` are the calls a fault cost (429/503 retried, a list pass given up on 410)."""

    calls: int = 0
    retries: int = 0
    pages: int = 0
    items: int = 0
    restarts: int = 0
    throttled: float = 0.0  # seconds spent waiting in the client-side limiter
    backoff: float = 0.0  # seconds spent waiting as the server asked (Retry-After)


def retry_after(value: str | None, *, default: float, cap: float) -> float:
    """Seconds a Retry-After header asks for (delta-seconds or an HTTP date), within [0, cap]."""
    if not value:
        return min(default, cap)
    value = value.strip()
    if value.isdigit():
        return min(float(value), cap)
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return min(default, cap)
    return max(0.0, min(when.timestamp() - time.time(), cap))


def api_client(configuration: Any) -> Any:  # noqa: ANN401 - kubernetes.client types
    """An ApiClient for `Kube`: urllib3's own retries off (by default it silently retries a 429 that carries
    Retry-After, up to 3 times), so every retry is ours: paced, capped and counted."""
    from kubernetes import client

    configuration.retries = False
    return client.ApiClient(configuration)


class Kube:
    """Every call the audit makes: rate-limited, retried on 429/503 as the server asks, counted by resource.
    Give it an ApiClient from `api_client()`."""

    def __init__(self, api_client: Any, *, qps: float = 20.0, burst: int = 40, max_retries: int = 8,  # noqa: ANN401
                 retry_cap: float = 30.0, timeout: float = 60.0, sleep: Callable[[float], None] = time.sleep) -> None:
        self.api_client = api_client
        self.limiter = TokenBucket(qps, burst, sleep=sleep)
        self.max_retries = max_retries
        self.retry_cap = retry_cap
        self.timeout = timeout
        self._sleep = sleep
        self.stats: dict[str, CallStats] = {}

    def count(self, resource: str) -> CallStats:
        stats = self.stats.get(resource)
        if stats is None:
            stats = self.stats[resource] = CallStats()
        return stats

    def request(self, verb: str, path: str, *, query: Sequence[tuple[str, Any]] = (), body: Any = None,  # noqa: ANN401
                content_type: str | None = None, resource: str = "") -> Answer:
        """The answer to `verb path?query` (any status but the retried ones); ApiError when none came."""
        stats = self.count(resource or path)
        headers = {"Accept": "application/json"}
        if content_type:
            headers["Content-Type"] = content_type
        attempt = 0
        while True:
            stats.throttled += self.limiter.take()
            stats.calls += 1
            try:
                answer = self._send(verb, path, query, headers, body)
            except ApiError:
                if verb != "GET" or attempt >= 2:  # only reads are retried on a lost connection
                    raise
                attempt += 1
                stats.retries += 1
                self._sleep(min(2.0 ** (attempt - 1), self.retry_cap))  # 1 s, then 2 s
                continue
            if answer.status not in RETRIED:
                return answer
            if attempt >= self.max_retries:
                raise _error(answer, verb, path)
            attempt += 1
            stats.retries += 1
            wait = retry_after(answer.headers.get("Retry-After") or answer.headers.get("retry-after"),
                               default=min(2.0 ** (attempt - 1), self.retry_cap), cap=self.retry_cap)
            log.info("%s %s: %s, retrying in %.1f s", verb, path, answer.status, wait)
            stats.backoff += wait
            self._sleep(wait)

    def _send(self, verb: str, path: str, query: Sequence[tuple[str, Any]], headers: dict[str, str],
              body: Any) -> Answer:  # noqa: ANN401
        client = self.api_client
        method, url, header_params, serialized, post = client.param_serialize(
            method=verb, resource_path=path, query_params=list(query), header_params=dict(headers), body=body,
            auth_settings=["BearerToken"])
        try:
            response = client.call_api(method, url, header_params=header_params, body=serialized, post_params=post,
                                       _request_timeout=self.timeout)
            data = response.read()
        except Exception as exc:  # noqa: BLE001 - urllib3's and the client's errors: no answer came
            status = int(getattr(exc, "status", 0) or 0)
            if status:
                raw = getattr(exc, "body", b"") or b""
                return Answer(status, dict(getattr(exc, "headers", None) or {}),
                              raw.encode() if isinstance(raw, str) else raw)
            raise ApiError(0, type(exc).__name__, str(exc), verb=verb, path=path) from None
        return Answer(response.status, dict(response.headers or {}), data or b"")

    def json(self, verb: str, path: str, *, query: Sequence[tuple[str, Any]] = (), body: Any = None,  # noqa: ANN401
             content_type: str | None = None, resource: str = "", ok: Sequence[int] = (200, 201)) -> Any:  # noqa: ANN401
        """The decoded body of a call that must succeed (ApiError otherwise)."""
        answer = self.request(verb, path, query=query, body=body, content_type=content_type, resource=resource)
        if answer.status not in ok:
            raise _error(answer, verb, path)
        try:
            return answer.json()
        except ValueError as exc:
            raise ApiError(answer.status, "not JSON", str(exc), verb=verb, path=path) from None

    def close(self) -> None:
        try:
            self.api_client.close()
        except Exception:  # noqa: BLE001 - closing what may already be closed
            pass


@dataclass(frozen=True, slots=True)
class Resource:
    """A resource the audit reads or writes: group ("" for core), version, plural, kind."""

    group: str
    version: str
    plural: str
    kind: str
    namespaced: bool = True

    @property
    def api_version(self) -> str:
        return f"{self.group}/{self.version}" if self.group else self.version

    @property
    def name(self) -> str:
        """`deployments.apps`, `pods`: as kubectl and RBAC name it."""
        return f"{self.plural}.{self.group}" if self.group else self.plural

    def path(self, namespace: str | None = None, name: str | None = None) -> str:
        base = f"/apis/{self.group}/{self.version}" if self.group else f"/api/{self.version}"
        if namespace and self.namespaced:
            base += f"/namespaces/{namespace}"
        base += f"/{self.plural}"
        return f"{base}/{name}" if name else base


def automount_setting(account: Mapping[str, Any]) -> str:
    """A ServiceAccount's `automountServiceAccountToken` as the token rule reads it: "true", "false", or "" unset."""
    value = account.get("automountServiceAccountToken")
    return ("true" if value else "false") if isinstance(value, bool) else ""


def pages(kube: Kube, resource: Resource, *, namespace: str | None, limit: int, label_selector: str | None = None,
          max_restarts: int = 3) -> Iterator[list[dict[str, Any]]]:
    """The objects of `resource` (in `namespace`, or all), a page at a time: `limit` per call, `continue` between.

    A 410 Expired (the continue token outlived etcd's compaction window, 5 minutes by default) restarts the list
    from the start, as client-go's pager does; objects already given out are not given again (by uid), and the
    calls of the abandoned pass count as retries. Each page is the caller's to evaluate and drop.
    """
    stats = kube.count(resource.name)
    seen: set[str] = set()  # uids given out, so a restarted list gives each object once
    token: str | None = None
    abandoned = 0  # calls of the current pass, retries if it is abandoned
    path = resource.path(namespace)
    while True:
        query: list[tuple[str, Any]] = [("limit", limit)]
        if token:
            query.append(("continue", token))
        if label_selector:
            query.append(("labelSelector", label_selector))
        before = stats.calls
        answer = kube.request("GET", path, query=query, resource=resource.name)
        abandoned += stats.calls - before
        if answer.status == 410 and stats.restarts < max_restarts:
            stats.restarts += 1
            stats.retries += abandoned  # this pass's calls, the 410 included, bought nothing
            log.info("list %s: %s, restarting the list (%d)", resource.name, _error(answer, "GET", path), stats.restarts)
            token, abandoned = None, 0
            continue
        if answer.status != 200:
            raise _error(answer, "GET", path)
        try:
            body = answer.json()
        except ValueError as exc:
            raise ApiError(200, "not JSON", str(exc), verb="GET", path=path) from None
        items = body.get("items") if isinstance(body, dict) else None
        if not isinstance(items, list):
            raise ApiError(200, "not a List", f"the answer to GET {path} has no items", verb="GET", path=path)
        stats.pages += 1
        listed = body.get("metadata")
        token = listed.get("continue") if isinstance(listed, dict) and isinstance(listed.get("continue"), str) else None
        fresh = []
        for item in items:
            if not isinstance(item, dict):
                continue
            meta = item.get("metadata")
            uid = meta.get("uid") if isinstance(meta, dict) else None
            if isinstance(uid, str) and uid:
                if uid in seen:
                    continue
                seen.add(uid)
            fresh.append(item)
        stats.items += len(fresh)
        del body, items, answer  # the page's bytes and List go before the caller evaluates it
        if fresh:
            yield fresh
        del fresh
        if not token:
            return
