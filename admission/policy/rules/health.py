"""Whether a long-running container says how to tell it is healthy: healthcheck (architecture §4)."""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from typing import Any

from admission.findings import Violation
from admission.model import Workload
from admission.policy.rule import rule
from admission.policy.rules.common import subject

# Kinds whose pods run to completion: a probe there would only restart a job that is meant to end.
_RUN_TO_COMPLETION_KINDS = frozenset(("Job", "CronJob"))
_RUN_TO_COMPLETION_POLICIES = frozenset(("OnFailure", "Never"))
_K8S_FIX = ("add a readinessProbe (so the Service sends traffic only when the app answers) and a livenessProbe (so the "
            "kubelet restarts it when it hangs), e.g. readinessProbe: {httpGet: {path: /healthz, port: 8080}}")
_COMPOSE_FIX = ('add a healthcheck, e.g. healthcheck: {test: ["CMD", "curl", "-f", "http://localhost:8080/healthz"], '
                "interval: 30s, timeout: 5s, retries: 3}, or HEALTHCHECK CMD ... in its Dockerfile; "
                "if it really has nothing to check, say so with healthcheck: {disable: true}")


@rule("healthcheck", severity="warn", summary="Long-running containers declare a health check.",
      applies={"kubernetes": "long-running containers without liveness or readiness probe",
               "compose": "no healthcheck from compose, build Dockerfile or image config"})
def healthcheck(workload: Workload, params: Mapping[str, Any]) -> Iterator[Violation]:
    """Warn when a service or long-running container has no health check.

    Why:
        Without a health check a container counts as healthy as soon as its process starts: a deadlocked or
        half-started app keeps receiving traffic, `depends_on: {condition: service_healthy}` cannot wait for it,
        and nothing restarts it. The guide's own compose file has one.

        Compose: the health check can come from the service (`healthcheck.test`), from the final stage of its build
        Dockerfile (`HEALTHCHECK CMD ...`, inherited through `FROM <stage>`) or, when images are resolved, from its
        image config. `healthcheck: {disable: true}` or `test: [NONE]` is an explicit decision and passes;
        `HEALTHCHECK NONE` in the Dockerfile removes the check and does not count as one.

        Kubernetes: each regular container and native sidecar needs a `livenessProbe` or a `readinessProbe`
        (a `startupProbe` alone does not tell the kubelet anything after start-up). Kubernetes ignores a
        Dockerfile's HEALTHCHECK. Jobs, CronJobs and Pods whose restartPolicy is OnFailure or Never run to
        completion and are skipped; init and ephemeral containers too.

    Fix:
        Compose: add `healthcheck: {test: ["CMD", "curl", "-f", "http://localhost:8080/healthz"]}` (or a
        `HEALTHCHECK` to the Dockerfile). Kubernetes: add a `readinessProbe` and a `livenessProbe` that ask the app
        itself, such as an HTTP GET on a health endpoint.

    Example:
        ```yaml
        services:
          web:
            healthcheck:
              test: ["CMD", "curl", "-f", "http://localhost:5000/"]
              interval: 30s
              timeout: 10s
              retries: 3
        ```
    """
    if workload.source == "kubernetes":
        if workload.kind in _RUN_TO_COMPLETION_KINDS or workload.restart_policy in _RUN_TO_COMPLETION_POLICIES:
            return
        for container in workload.containers:
            if container.kind not in ("container", "sidecar"):
                continue
            probes = container.probes
            if "livenessProbe" in probes or "readinessProbe" in probes:
                continue
            only = " (a startupProbe alone is not enough)" if "startupProbe" in probes else ""
            yield Violation(
                message=f"{subject(workload, container)} has neither a livenessProbe nor a readinessProbe{only}: "
                        "Kubernetes cannot tell when it hangs or is not ready, and keeps sending it traffic",
                remediation=_K8S_FIX, origin=container.origin, container=container.name, key="probes")
    elif workload.source == "compose":
        for container in workload.containers:
            found = container.healthcheck
            if found is not None and found.value != "none":
                continue  # a check, or an explicit `disable: true` / `test: [NONE]`
            if found is None:
                config = container.image_config
                test = getattr(config, "healthcheck", None) if config is not None else None
                if test and test[0] != "NONE":
                    continue
                if config is not None:
                    where = ("; its image config turns it off (HEALTHCHECK NONE)" if test else
                             "; its image config has none either")
                else:
                    where = "" if container.image is None else \
                        " (its image config was not checked: run with --resolve-images)"
                message = f"service '{workload.name}' has no health check{where}"
                origin, value = container.origin, None
            else:
                message = (f"service '{workload.name}' has no health check: its Dockerfile removes it with "
                           "HEALTHCHECK NONE")
                origin, value = found.origin, found.text
            yield Violation(message=message + ": nothing notices when it hangs, and depends_on cannot wait until it "
                            "is ready", remediation=_COMPOSE_FIX, origin=origin, value=value, container=workload.name,
                            key="healthcheck")
