"""Prometheus metrics (prometheus-client). One registry per app, so tests can build several apps in one process.

With more than one worker, prometheus-client's multiprocess mode is used (ADMISSION_METRICS_DIR, which becomes
PROMETHEUS_MULTIPROC_DIR before prometheus_client is first imported): each worker writes its own files and a
scrape of any worker sums them.
"""

from __future__ import annotations

import os
import platform
import ssl
from collections import Counter as _Tally
from collections.abc import Callable, Iterable
from typing import Any

import prometheus_client
from prometheus_client import (CONTENT_TYPE_LATEST, CollectorRegistry, Counter, Gauge, Histogram,
                               PlatformCollector, ProcessCollector, generate_latest)

from admission.sources.kubernetes import POD_SPEC_PATHS

__all__ = ["CONTENT_TYPE_LATEST", "FAILURE_REASONS", "Metrics", "certificate_expiry", "kind_label"]

# Counters' `_created` series double every counter's series and nobody alerts on them.
prometheus_client.disable_created_metrics()

_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.0, 5.0, 10.0)
_RESOLVER_STATS = ("hit", "miss", "dedup", "negative_hit", "disk_hit", "revalidate")
_KINDS = frozenset(POD_SPEC_PATHS) | {"Service"}  # Services: no-host-port (issue 27)
_OPERATIONS = frozenset(("CREATE", "UPDATE", "DELETE", "CONNECT"))
# Why an image lookup failed (admission.images.enrich.failure_reason); the counter's label values.
FAILURE_REASONS = ("timeout", "dns", "connection", "not-found", "auth", "address-guard", "not-allowed", "blocked",
                   "too-large", "digest-mismatch", "error")
REGISTRY_LABELS = 20  # distinct registry label values; the rest count as "other" (a Pod spec names any host)


def kind_label(kind: str) -> str:
    """The kinds the webhook evaluates keep their name; any other kind (the request chooses it) is "other"."""
    return kind if kind in _KINDS or not kind else "other"


def operation_label(operation: str) -> str:
    return operation if operation in _OPERATIONS or not operation else "other"


def certificate_expiry(path: str) -> float | None:
    """The notAfter of the first certificate in a PEM file, as a Unix time; None if it cannot be read.

    The ssl module's own decoder (what its test suite uses): the server extra does not depend on cryptography."""
    try:
        decoded = ssl._ssl._test_decode_cert(path)  # type: ignore[attr-defined]  # noqa: SLF001
        return float(ssl.cert_time_to_seconds(decoded["notAfter"]))
    except (OSError, ValueError, KeyError, AttributeError, ssl.SSLError):
        return None


class Metrics:
    def __init__(self, *, multiprocess_dir: str | None = None, registry_labels: int = REGISTRY_LABELS) -> None:
        self.multiprocess_dir = multiprocess_dir
        self.registry = CollectorRegistry(auto_describe=True)
        r = self.registry
        self.requests = Counter("admission_requests", "AdmissionReview requests by webhook (validate, mutate), "
                                "operation, kind (the evaluated kinds, else other), dry_run and result (allowed, warned, "
                                "denied, skipped, invalid, bad_request, too_large, error; mutate: mutated, unchanged, "
                                "skipped, invalid, ...)", ("webhook", "operation", "kind", "dry_run", "result"),
                                registry=r)
        self.latency = Histogram("admission_request_duration_seconds", "Time from body read to answer, per request, "
                                 "by webhook (validate, mutate), kind and operation", ("webhook", "kind", "operation"),
                                 buckets=_BUCKETS, registry=r)
        self.mutations = Counter("admission_mutations", "Image references /mutate considered, by result: mutated, "
                                 "already-pinned, skipped (a tag image-tag-pinned refuses, a skipped registry, a "
                                 "reference the gates refuse), unresolved (the lookup failed or missed the deadline)",
                                 ("result",), registry=r)
        self.findings = Counter("admission_findings", "Findings by rule, the rule's severity, and what was done: deny, "
                                "warn, would-deny (enforcement: warn let through what deny would refuse) or suppressed",
                                ("rule", "severity", "action"), registry=r)
        self.image_cache = Counter("admission_image_cache_lookups", "Image config lookups by cache outcome "
                                   "(hit, miss, dedup, negative_hit, disk_hit, revalidate)", ("result",), registry=r)
        self.image_failures = Counter("admission_image_failures", "Image config lookups that failed, by reason ("
                                      + ", ".join(FAILURE_REASONS) + ")", ("reason",), registry=r)
        self.registry_calls = Counter("admission_registry_requests", "HTTP requests to registries by registry (the "
                                      f"first {registry_labels} seen, then other) and status (or 'error' without an "
                                      "answer)", ("registry", "status"), registry=r)
        self.dns_failures = Counter("admission_registry_dns_failures", "Registry host names that did not resolve, "
                                    "by registry (capped as in admission_registry_requests)", ("registry",),
                                    registry=r)
        self.policy_reloads = Counter("admission_policy_reloads", "Policy reloads by result (success, failure)",
                                      ("result",), registry=r)
        self.cert_reloads = Counter("admission_certificate_reloads", "TLS certificate reloads by result",
                                    ("result",), registry=r)
        self.cluster_reads = Counter("admission_cluster_reads", "Kubernetes API reads by resource and result",
                                     ("resource", "result"), registry=r)
        self.deadline_misses = Counter("admission_image_deadline_misses", "Image lookups cut off by the deadline",
                                       registry=r)
        self.envelope_refusals = Counter("admission_envelope_refusals", "Bodies refused before a decision "
                                         "(bad_request, too_large); also in admission_requests", ("result",),
                                         registry=r)
        live: dict[str, Any] = {"multiprocess_mode": "liveall"} if multiprocess_dir else {}
        top: dict[str, Any] = {"multiprocess_mode": "livemax"} if multiprocess_dir else {}
        self.ready = Gauge("admission_ready", "1 when the policy is loaded and the process is not shutting down",
                           registry=r, **live)
        self.policy_info = Gauge("admission_policy_info", "1 for the policy being served, by the sha256 of its file "
                                 "(first 16 hex digits; 'default' without a file); 0 for hashes served before",
                                 ("hash",), registry=r, **top)
        self.policy_loaded = Gauge("admission_policy_last_reload_timestamp_seconds", "When the policy being served "
                                   "was loaded (Unix time)", registry=r, **top)
        self.policy_stale = Gauge("admission_policy_stale", "1 while the newest policy file is rejected (the one "
                                  "served is older than the one mounted)", registry=r, **top)
        self.cert_expiry = Gauge("admission_tls_certificate_expiry_timestamp_seconds", "notAfter of the serving "
                                 "certificate (Unix time)", registry=r, **top)
        self.build_info = Gauge("admission_build_info", "1, labelled with the admission version and Python version",
                                ("version", "python"), registry=r, **top)
        self.build_info.labels(_version(), platform.python_version()).set(1)
        if not multiprocess_dir:  # per-process series; in multiprocess mode the summed files stand for the workers
            ProcessCollector(registry=r)
            PlatformCollector(registry=r)
        self.refreshers: list[Callable[[], None]] = []  # set the state gauges (ready, policy, certificate) anew
        self._hash = ""
        self._synced: _Tally[str] = _Tally()
        self._children: dict[tuple[str, str, str, str, str], Any] = {}
        self._latency: dict[tuple[str, str, str], Any] = {}
        self._registry_labels = registry_labels
        self._registries: set[str] = set()

    def observe(self, operation: str, kind: str, result: str, duration: float, *, dry_run: bool = False,
                webhook: str = "validate") -> None:
        key = (webhook, operation, kind, result, "true" if dry_run else "false")
        child = self._children.get(key)
        if child is None:
            # operation and kind come from requests: bounded to the known values, so the label sets are too
            labels = (webhook, operation_label(operation), kind_label(kind))
            child = self._children[key] = self.requests.labels(*labels, key[4], result)
            if len(self._children) > 4096:
                self._children.clear()
        child.inc()
        timer = self._latency.get((webhook, operation, kind))
        if timer is None:
            timer = self._latency[(webhook, operation, kind)] = self.latency.labels(
                webhook, kind_label(kind), operation_label(operation))
            if len(self._latency) > 4096:
                self._latency.clear()
        timer.observe(duration)

    def registry_label(self, registry: str) -> str:
        """The registry's own name for the first `registry_labels` registries seen, then "other"."""
        if registry in self._registries:
            return registry
        if len(self._registries) < self._registry_labels:
            self._registries.add(registry)
            return registry
        return "other"

    def image_failed(self, reason: str, registry: str) -> None:
        self.image_failures.labels(reason if reason in FAILURE_REASONS else "error").inc()
        if reason == "dns":
            self.dns_failures.labels(self.registry_label(registry)).inc()

    def policy_state(self, digest: str, loaded_at: float, stale: bool) -> None:
        if digest != self._hash:
            if self._hash:
                self.policy_info.labels(self._hash).set(0)
            self.policy_info.labels(digest).set(1)
            self._hash = digest
        self.policy_loaded.set(loaded_at)
        self.policy_stale.set(1 if stale else 0)

    def certificate(self, path: str | None) -> None:
        expiry = certificate_expiry(path) if path else None
        if expiry is not None:
            self.cert_expiry.set(expiry)

    def refresh(self) -> None:
        for refresh in self.refreshers:
            refresh()

    def sync_resolver(self, stats: _Tally[str]) -> None:
        """Move the resolver's own counters into the cache metric (only what grew since the last sync)."""
        for name in _RESOLVER_STATS:
            now = stats.get(name, 0)
            delta = now - self._synced[name]
            if delta > 0:
                self.image_cache.labels(name).inc(delta)
                self._synced[name] = now

    def render(self) -> bytes:
        self.refresh()
        return generate_latest(self.collector())

    def collector(self) -> CollectorRegistry:
        """What a scrape reads: this process's registry, or every worker's files in multiprocess mode."""
        if self.multiprocess_dir:
            from prometheus_client import multiprocess

            registry = CollectorRegistry()
            multiprocess.MultiProcessCollector(registry, path=self.multiprocess_dir)
            return registry
        return self.registry


def _version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("admission")
    except PackageNotFoundError:
        return "unknown"


class _Refreshing:
    """A collector that yields nothing and sets the state gauges first: a scrape of the separate metrics port
    (prometheus_client's own HTTP server, in a thread) sees them as current as /metrics does."""

    def __init__(self, metrics: Metrics) -> None:
        self.metrics = metrics

    def collect(self) -> Iterable[Any]:
        self.metrics.refresh()
        return []


def start_metrics_port(metrics: Metrics | None, *, host: str, port: int, multiprocess_dir: str | None = None) -> Any:
    """Serve /metrics on a port of its own (ADMISSION_METRICS_PORT), so a NetworkPolicy can open scraping apart
    from the API server's path. In this process's registry, or (workers > 1, in the parent) the workers' files.
    Raises OSError when the port cannot be bound."""
    if metrics is not None and not metrics.multiprocess_dir:
        registry = metrics.registry
        registry.register(_Refreshing(metrics))  # type: ignore[arg-type]
    else:
        from prometheus_client import multiprocess

        registry = CollectorRegistry()
        multiprocess.MultiProcessCollector(registry, path=multiprocess_dir or (metrics and metrics.multiprocess_dir))
    server, _thread = prometheus_client.start_http_server(port, addr=host, registry=registry)
    return server


def prepare_multiprocess(directory: str) -> None:
    """Before the workers start: point prometheus_client at the shared directory, emptied of an earlier run's
    files (counters would otherwise carry on from the last process that used it)."""
    os.makedirs(directory, exist_ok=True)
    for name in os.listdir(directory):
        if name.endswith(".db"):
            try:
                os.unlink(os.path.join(directory, name))
            except OSError:
                pass
    os.environ["PROMETHEUS_MULTIPROC_DIR"] = directory
