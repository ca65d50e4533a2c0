"""Image configs for the webhook: one long-lived resolver per process (per credential set), shared by every request.

Uncached lookups of one request run concurrently (images/enrich.py), join lookups already in flight for other
requests, and stop at the request's deadline; what misses it becomes `image-config-unavailable`.

A policy reload hands the new `images` settings to `update()`. The gates (allowed_registries,
restrict_to_allowed, insecure_registries, mirrors, platform) decide which answers may be used, so when they
change the clients and resolvers built under the old ones are retired and the next request uses new ones;
lookups still running under the old gates finish for the requests that started them and are never joined by
a request under the new gates.
"""

from __future__ import annotations

import asyncio
import collections
import logging
import time
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from typing import Any

from admission.images.cache import ImageResolver, MemoryCache
from admission.images.credentials import Credentials
from admission.errors import RegistryError
from admission.images.enrich import DEADLINE_MESSAGE, deadline_missed, enrich, failure_reason
from admission.images.registry import RegistryClient
from admission.model import Workload
from admission.images.settings import ImagesSettings
from admission.kube.cluster import PullCredentials

__all__ = ["ImageFailure", "ImageService", "PullCredentials", "failures", "verdict", "withhold_reasons"]

log = logging.getLogger("admission.webhook")
_MAX_CREDENTIAL_SETS = 256
_EVALUATION_RESERVE = 0.02  # seconds kept back from the deadline for evaluating and answering


@dataclass(frozen=True, slots=True)
class ImageFailure:
    """One image whose config could not be had: for the audit line (with the precise reason) and the counters.
    The answer itself says only "unavailable" or "not allowed by policy" (app.py)."""

    image: str
    container: str
    reason: str  # enrich.failure_reason
    detail: str  # the registry client's message

    def audit(self) -> dict[str, str]:
        return {"image": self.image, "container": self.container, "reason": self.reason, "detail": self.detail[:300]}


def failures(workloads: Sequence[Workload]) -> list[ImageFailure]:
    """Every container whose image config is missing, with why."""
    out = []
    for workload in workloads:
        for c in workload.containers:
            if c.image_config_error and c.image is not None:
                out.append(ImageFailure(c.image.value, c.name, failure_reason(c.image_config_error),
                                        c.image_config_error))
    return out


def signature_audit(workloads: Sequence[Workload]) -> tuple[list[dict[str, str]], list[Workload]]:
    """The images.verify checks for the audit line, and the workloads with each check's precise registry error taken
    out: a requester reads only that the registry could not be asked (which names resolve, and to what, stays in the
    audit line and the log, as for image-config-unavailable)."""
    audit: list[dict[str, str]] = []
    out = []
    for workload in workloads:
        containers = []
        for c in workload.containers:
            for check in c.signatures:
                entry = {"image": check.image, "container": c.name, "status": check.status, "digest": check.digest}
                entry.update({k: v for k, v in (("key", check.key), ("format", check.format), ("where", check.where),
                                                ("error", check.error[:300])) if v})
                audit.append(entry)
            for attested in c.attestations:
                entry = {"image": attested.image, "container": c.name, "provenance": attested.status,
                         "digest": attested.digest, "detail": attested.detail[:300]}
                if attested.error:
                    entry["error"] = attested.error[:300]
                audit.append(entry)
            if any(check.error for check in c.signatures) or any(a.error for a in c.attestations):
                c = replace(c, signatures=tuple(replace(check, error="") for check in c.signatures),
                            attestations=tuple(replace(a, error="") for a in c.attestations))
            containers.append(c)
        out.append(replace(workload, containers=tuple(containers)))
    return audit, out if audit else list(workloads)


def verdict(reason: str) -> str:
    """What a requester is told of a failed lookup: "not allowed by policy" (images.restrict_to_allowed) or
    "unavailable". Nothing finer: a DNS failure, a refused private address or a registry's status would let anyone who
    can create Pods map which names resolve to what (issue 15)."""
    return "not allowed by policy" if reason == "not-allowed" else "unavailable"


def _withheld(error: str) -> str:
    said = verdict(failure_reason(error))
    return said if said != "unavailable" else "the lookup failed (the webhook's audit log says why)"


def withhold_reasons(workloads: Sequence[Workload]) -> list[Workload]:
    """The workloads with every image-config error replaced by its verdict, before any rule reads them: a rule that
    says why a config is missing (run-as-non-root's "its image config is unavailable: ...") can then say only what
    the requester may see. The precise reasons stay in `failures()` (audit line, metrics, server log)."""
    out = []
    for workload in workloads:
        containers = tuple(
            replace(c, image_config_error=_withheld(c.image_config_error) if c.image_config_error else None,
                    base_config_error=_withheld(c.base_config_error) if c.base_config_error else None)
            if c.image_config_error or c.base_config_error else c for c in workload.containers)
        out.append(replace(workload, containers=containers) if containers != workload.containers else workload)
    return out


def _registry_of(image: str) -> str:
    from admission import reference

    try:
        return reference.parse_normalized_named(image).domain
    except reference.ReferenceError:
        return "invalid"


@dataclass
class _Pair:
    client: RegistryClient
    resolver: ImageResolver


@dataclass
class ImageService:
    settings: ImagesSettings
    static: Credentials | None = None  # ADMISSION_DOCKER_CONFIG
    metrics: Any = None
    verify: Any = True
    _pairs: collections.OrderedDict[str, _Pair] = field(default_factory=collections.OrderedDict)
    _memory: MemoryCache = field(default_factory=MemoryCache)
    _retired: collections.Counter[str] = field(default_factory=collections.Counter)
    _closing: set[asyncio.Task[None]] = field(default_factory=set)

    @classmethod
    def from_settings(cls, server: Any, images: ImagesSettings, *, metrics: Any) -> ImageService:
        static = Credentials.load(server.docker_config) if server.docker_config else None
        return cls(images, static=static, metrics=metrics)

    def _count_exchange(self, registry: str, status: str) -> None:
        """Every HTTP exchange with a registry, by registry and status, for /metrics."""
        self.metrics.registry_calls.labels(self.metrics.registry_label(registry), status).inc()

    def _pair(self, pulls: PullCredentials | None) -> tuple[_Pair, str]:
        key = pulls.key if pulls is not None and pulls.credentials is not None else ""
        pair = self._pairs.get(key)
        if pair is None:
            # With pull secrets the request's credentials come first and the static config fills in (as node
            # credentials do for the kubelet); kube/cluster.py merges them.
            credentials = pulls.credentials if key else self.static
            client = RegistryClient(self.settings, credentials=credentials, verify=self.verify,
                                    on_exchange=self._count_exchange if self.metrics is not None else None)
            pair = self._pairs[key] = _Pair(client, ImageResolver(client, settings=self.settings, memory=self._memory))
            while len(self._pairs) > _MAX_CREDENTIAL_SETS:
                _, old = self._pairs.popitem(last=False)
                self._retire(old)
        else:
            self._pairs.move_to_end(key)
        return pair, key

    async def enrich(self, workloads: Sequence[Workload], settings: ImagesSettings, *, deadline: float,
                     pulls: PullCredentials | None = None) -> list[Workload]:
        pair, key = self._pair(pulls)
        until = deadline - min(_EVALUATION_RESERVE, max(0.0, (deadline - time.monotonic()) * 0.1))
        enriched = await enrich(workloads, pair.resolver, deadline=until, cred_key=key, settings=settings)
        if self.metrics is not None:
            self._count_failures(enriched)
        return enriched

    async def digests(self, images: Sequence[str], settings: ImagesSettings, *, deadline: float,
                      pulls: PullCredentials | None = None) -> dict[str, str | RegistryError]:
        """The digest each image's tag names (an index's own for a multi-platform image), or why it could not be had.
        The mutating webhook's lookups: the resolver, gates, credentials and tag cache of `enrich`, so a tag looked up
        here is not looked up again when the validating webhook judges the pinned reference, and concurrent requests
        naming one tag share one lookup."""
        pair, key = self._pair(pulls)
        until = deadline - min(_EVALUATION_RESERVE, max(0.0, (deadline - time.monotonic()) * 0.1))
        tasks = {image: asyncio.ensure_future(pair.resolver.digest_for(image, deadline=until, cred_key=key,
                                                                       settings=settings))
                 for image in dict.fromkeys(images)}
        if not tasks:
            return {}
        done, pending = await asyncio.wait(tasks.values(), timeout=max(0.0, until - time.monotonic()))
        for task in pending:
            task.cancel()
        if pending:
            await asyncio.gather(*pending, return_exceptions=True)
        out: dict[str, str | RegistryError] = {}
        for image, task in tasks.items():
            exc = task.exception() if task in done and not task.cancelled() else None
            if task not in done or task.cancelled():
                out[image] = RegistryError(DEADLINE_MESSAGE.partition(": ")[2], reason="timeout")
            elif exc is not None:
                out[image] = exc if isinstance(exc, RegistryError) else \
                    RegistryError(f"{type(exc).__name__}: {exc}", reason="error")
            else:
                out[image] = task.result()
            failed = out[image]
            if self.metrics is not None and isinstance(failed, RegistryError):
                text = f"{failed.reason}: {failed}"
                self.metrics.image_failed(failure_reason(text), _registry_of(image))
                if deadline_missed(text):
                    self.metrics.deadline_misses.inc()
        return out

    def _count_failures(self, workloads: Sequence[Workload]) -> None:
        """Per failed lookup (an image named by two containers was looked up once): its reason, DNS failures by
        registry, and lookups the deadline cut off."""
        counted: set[str] = set()
        for failure in failures(workloads):
            if failure.image in counted:
                continue
            counted.add(failure.image)
            self.metrics.image_failed(failure.reason, _registry_of(failure.image))
            if deadline_missed(failure.detail):
                self.metrics.deadline_misses.inc()

    def update(self, settings: ImagesSettings) -> None:
        """A policy reload: requests pass their policy's settings themselves; these are the defaults of new clients."""
        self.settings = settings

    def _retire(self, pair: _Pair) -> None:
        self._retired.update(pair.resolver.stats)
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:
            return
        task = loop.create_task(self._close_later(pair))
        self._closing.add(task)
        task.add_done_callback(self._closing.discard)

    @staticmethod
    async def _close_later(pair: _Pair) -> None:
        # Lookups of an evicted credential set may still be awaited by the requests that started them.
        await asyncio.sleep(10)
        await pair.resolver.cancel_pending()
        await pair.client.aclose()

    def stats(self) -> collections.Counter[str]:
        total = collections.Counter(self._retired)
        for pair in self._pairs.values():
            total.update(pair.resolver.stats)
        return total

    async def aclose(self) -> None:
        for task in list(self._closing):
            task.cancel()
        pairs, self._pairs = list(self._pairs.values()), collections.OrderedDict()
        for pair in pairs:
            await pair.resolver.cancel_pending()
            await pair.client.aclose()
