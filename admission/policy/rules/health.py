"""Whether a long-running container says how to tell it is healthy: healthcheck (architecture §4)."""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from typing import Any

from admission.findings import Violation
from admission.model import Container, Workload
from admission.policy.rule import rule
from admission.policy.rules.common import subject

# Kinds whose pods run to completion: a probe there would only restart a job that is meant to end.
_RUN_TO_COMPLETION_KINDS = frozenset(("Job", "CronJob"))
_RUN_TO_COMPLETION_POLICIES = frozenset(("OnFailure", "Never"))
_K8S_FIX = ("add a livenessProbe (so the kubelet restarts it when it hangs) and, if a Service sends it traffic, a "
            "readinessProbe (so it gets traffic only while it answers), e.g. readinessProbe: "
            "{httpGet: {path: /healthz, port: 8080}}")
_SAME_FIX = ("make the livenessProbe a cheaper, looser check than the readinessProbe: a separate endpoint that only "
             "says the process is alive (e.g. /livez, not its dependencies) and a larger failureThreshold; or drop the "
             "livenessProbe if the app exits by itself when it breaks")
_COMPOSE_FIX = ('add a healthcheck, e.g. healthcheck: {test: ["CMD", "curl", "-f", "http://localhost:8080/healthz"], '
                "interval: 30s, timeout: 5s, retries: 3}, or HEALTHCHECK CMD ... in its Dockerfile; "
                "if it really has nothing to check, say so with healthcheck: {disable: true}")


@rule("healthcheck", severity="warn", summary="Long-running containers declare a health check.",
      applies={"kubernetes": "long-running containers without liveness or readiness probe, or whose liveness and "
                             "readiness probes are the same check",
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
        (a `startupProbe` alone does not tell the kubelet anything after start-up). Without a livenessProbe nothing
        restarts it when it hangs; without a readinessProbe a Service that selects it sends it traffic before it is
        ready and while it hangs (a Pod that no Service selects gets no traffic either way). Kubernetes ignores a
        Dockerfile's HEALTHCHECK. Jobs, CronJobs and Pods whose restartPolicy is OnFailure or Never run to
        completion and are skipped; init and ephemeral containers too (the API forbids their probes).

        A container whose livenessProbe and readinessProbe are the same check is a warning too (kube-score's
        `pod-probes`, "Container has the same readiness and liveness probe", split out as `pod-probes-identical`):
        when it is slow under load, both fail together, and the kubelet restarts a container that should only have
        been taken out of rotation; its load moves to the other replicas, which then fail the same check and restart
        in turn. Two probes are the same check when they have the same handler:
        the same `exec` command, `httpGet` scheme, host, port, path and headers, `tcpSocket` host and port, or `grpc`
        port and service (a named port is resolved through the container's ports, so `port: http` is `8080` when the
        container names its port 8080 `http`). Timing (`periodSeconds`, `timeoutSeconds`, `failureThreshold`,
        `initialDelaySeconds`) does not make them different checks: it only changes when the same check gives up,
        and kube-score compares handlers alone too. Polaris checks only that the probes exist
        (`livenessProbeMissing`, `readinessProbeMissing`).

    Fix:
        Compose: add `healthcheck: {test: ["CMD", "curl", "-f", "http://localhost:8080/healthz"]}` (or a
        `HEALTHCHECK` to the Dockerfile). Kubernetes: add a `livenessProbe` that asks the app itself, such as an
        HTTP GET on a health endpoint, and a `readinessProbe` where a Service sends it traffic. Make the liveness
        check cheaper and looser than the readiness check (a separate endpoint such as `/livez` that does not test
        the app's dependencies, a larger `failureThreshold`), or leave the livenessProbe out when the app exits by
        itself on a fatal error.

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
                yield from _same_check(workload, container)
                continue
            only = " (a startupProbe alone is not enough)" if "startupProbe" in probes else ""
            yield Violation(
                message=f"{subject(workload, container)} has neither a livenessProbe nor a readinessProbe{only}: "
                        "nothing restarts it when it hangs, and a Service that selects it would send it traffic "
                        "before it is ready",
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


def _same_check(workload: Workload, container: Container) -> Iterator[Violation]:
    """A livenessProbe that is the readinessProbe's check (model.Probe: handlers compared, timing left out)."""
    checks = {probe.name: probe for probe in container.probe_checks}
    liveness, readiness = checks.get("livenessProbe"), checks.get("readinessProbe")
    if liveness is None or readiness is None or not liveness.check or liveness.check != readiness.check:
        return
    yield Violation(
        message=(f"{subject(workload, container)} has the same check as livenessProbe and readinessProbe "
                 f"({liveness.check}): under load the kubelet restarts it where it should only take it out of "
                 "rotation, and the restarts cascade to the other replicas"),
        remediation=_SAME_FIX, origin=liveness.origin, value=liveness.check, container=container.name,
        key="probes.identical")
