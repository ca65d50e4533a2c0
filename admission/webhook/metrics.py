"""Prometheus metrics (prometheus-client). One registry per app, so tests can build several apps in one process.

With more than one worker, prometheus-client's multiprocess mode is used (ADMISSION_METRICS_DIR, which becomes
PROMETHEUS_MULTIPROC_DIR before prometheus_client is first imported): each worker writes its own files and a
scrape of any worker sums them.
"""

from __future__ import annotations

import os
from collections import Counter as _Tally
from typing import Any

from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Counter, Gauge, Histogram, generate_latest

__all__ = ["CONTENT_TYPE_LATEST", "Metrics"]

_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.0, 5.0, 10.0)
_RESOLVER_STATS = ("hit", "miss", "dedup", "negative_hit", "disk_hit", "revalidate")


class Metrics:
    def __init__(self, *, multiprocess_dir: str | None = None) -> None:
        self.multiprocess_dir = multiprocess_dir
        self.registry = CollectorRegistry(auto_describe=True)
        r = self.registry
        self.requests = Counter("admission_requests", "AdmissionReview requests by operation, kind and result "
                                "(allowed, warned, denied, skipped, invalid, bad_request, too_large, error)",
                                ("operation", "kind", "result"), registry=r)
        self.latency = Histogram("admission_request_duration_seconds", "Time from body read to answer, per decision",
                                 ("result",), buckets=_BUCKETS, registry=r)
        self.findings = Counter("admission_findings", "Findings by rule, the rule's severity, and what was done: deny, "
                                "warn, would-deny (enforcement: warn let through what deny would refuse) or suppressed",
                                ("rule", "severity", "action"), registry=r)
        self.image_cache = Counter("admission_image_cache_lookups", "Image config lookups by cache outcome "
                                   "(hit, miss, dedup, negative_hit, disk_hit, revalidate)", ("result",), registry=r)
        self.registry_calls = Counter("admission_registry_requests", "HTTP requests to registries by registry and "
                                      "status (or 'error' without an answer)", ("registry", "status"), registry=r)
        self.policy_reloads = Counter("admission_policy_reloads", "Policy reloads by result (success, failure)",
                                      ("result",), registry=r)
        self.cert_reloads = Counter("admission_certificate_reloads", "TLS certificate reloads by result",
                                    ("result",), registry=r)
        self.cluster_reads = Counter("admission_cluster_reads", "Kubernetes API reads by resource and result",
                                     ("resource", "result"), registry=r)
        self.deadline_misses = Counter("admission_image_deadline_misses", "Image lookups cut off by the deadline",
                                       registry=r)
        gauge_mode: dict[str, Any] = {"multiprocess_mode": "liveall"} if multiprocess_dir else {}
        self.ready = Gauge("admission_ready", "1 when the policy is loaded and the process is not shutting down",
                           registry=r, **gauge_mode)
        self._synced: _Tally[str] = _Tally()
        self._children: dict[tuple[str, str, str], Any] = {}

    def observe(self, operation: str, kind: str, result: str, duration: float) -> None:
        key = (operation, kind, result)
        child = self._children.get(key)
        if child is None:
            if len(self._children) > 2048:  # operation and kind come from requests: bound the label sets we cache
                self._children.clear()
            child = self._children[key] = self.requests.labels(operation[:32], kind[:64], result)
        child.inc()
        self.latency.labels(result).observe(duration)

    def sync_resolver(self, stats: _Tally[str]) -> None:
        """Move the resolver's own counters into the cache metric (only what grew since the last sync)."""
        for name in _RESOLVER_STATS:
            now = stats.get(name, 0)
            delta = now - self._synced[name]
            if delta > 0:
                self.image_cache.labels(name).inc(delta)
                self._synced[name] = now

    def render(self) -> bytes:
        if self.multiprocess_dir:
            from prometheus_client import multiprocess

            registry = CollectorRegistry()
            multiprocess.MultiProcessCollector(registry, path=self.multiprocess_dir)
            return generate_latest(registry)
        return generate_latest(self.registry)


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
