"""Whether a running container can change its own files: read-only-root-filesystem (architecture §4)."""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from typing import Any

from admission.findings import Violation
from admission.model import Workload
from admission.policy.rule import rule
from admission.policy.rules.common import subject
from admission.policy.rules.users import windows

_K8S_FIX = ("set securityContext.readOnlyRootFilesystem: true and mount an emptyDir at each path the app writes, "
            "e.g. volumes: [{name: tmp, emptyDir: {}}] with volumeMounts: [{name: tmp, mountPath: /tmp}] "
            "(data that must outlive the Pod: a PersistentVolumeClaim)")
_COMPOSE_FIX = ("set read_only: true and tmpfs: [/tmp] for each path the service writes (add /run for PID files and "
                "sockets; data that must outlive the container: a named volume, since a tmpfs is emptied on restart)")
# Kubernetes containers the rule reads: init containers and native sidecars run in the Pod as its regular containers
# do, and kube-score and Polaris check them too; an ephemeral debug container is someone's shell, meant to write.
_KINDS = frozenset(("container", "init", "sidecar"))


@rule("read-only-root-filesystem", severity="warn", summary="Containers run with a read-only root filesystem.",
      applies={"kubernetes": "securityContext.readOnlyRootFilesystem of every container, init container and sidecar",
               "compose": "read_only"})
def read_only_root_filesystem(workload: Workload, params: Mapping[str, Any]) -> Iterator[Violation]:
    """Warn when a container can write to its own root filesystem.

    Why:
        A writable root filesystem lets whoever gets code running in a container change its binaries and
        configuration and leave tools behind for the next step, and it hides state the image does not show: what a
        container writes there is lost on restart and differs between replicas. A read-only root makes every
        write go to a mount that was declared on purpose. kube-score
        (`container-security-context-readonlyrootfilesystem`), Polaris (`notReadOnlyRootFilesystem`), trivy (`KSV014`) and compose-lint (`CL-0007`, CIS Docker Benchmark 5.13)
        check it; Pod Security Admission does not (not even `restricted`), which is why this is a warning by default:
        many images write to /tmp, /var/cache or /run and need those mounted first.

        Kubernetes: `securityContext.readOnlyRootFilesystem: true` on each container, init container and native
        sidecar, as kube-score and Polaris check them (the field exists only on a container's securityContext, not
        the Pod's). Ephemeral containers (`kubectl debug`) are skipped: a debugging shell is meant to write.
        Windows Pods are skipped: the API server forbids the field with `os.name: windows`, and Windows containers
        do not support it. Compose: `read_only: true` on each service. Dockerfiles and images have no such setting:
        it is decided where a container runs, so the rule reads only runtime objects.

    Fix:
        Kubernetes: set `readOnlyRootFilesystem: true` and give each path the app writes an `emptyDir` (`/tmp`,
        caches, PID files; a PersistentVolumeClaim for data that must last). Compose: `read_only: true` with
        `tmpfs: [/tmp]` (and `/run` where it puts PID files or sockets); persistent data in a named volume. To find
        the paths, run it once read-only and read the "Read-only file system" errors, or `docker diff` a container.

    Example:
        ```yaml
        containers:
          - name: web
            image: registry.example.com/web:2.0
            securityContext:
              readOnlyRootFilesystem: true
            volumeMounts:
              - {name: tmp, mountPath: /tmp}
        volumes:
          - {name: tmp, emptyDir: {}}
        ```
        ```yaml
        services:
          web:
            image: registry.example.com/web:2.0
            read_only: true
            tmpfs: [/tmp]
        ```
    """
    if not workload.runtime or windows(workload) is not None:
        return
    compose = workload.source == "compose"
    if not compose and workload.source != "kubernetes":
        return
    field, fix = ("read_only", _COMPOSE_FIX) if compose else ("securityContext.readOnlyRootFilesystem", _K8S_FIX)
    for container in workload.containers:
        if not compose and container.kind not in _KINDS:
            continue
        found = container.read_only_root
        if found is not None and found.value == "true":
            continue
        said = f"sets {field}: false" if found is not None else f"does not set {field}: true"
        yield Violation(
            message=(f"{subject(workload, container)} {said}: whoever gets code running in it can change its files "
                     "and leave tools behind"),
            remediation=fix, origin=found.origin if found is not None else container.origin,
            value=found.text if found is not None else None, container=workload.name if compose else container.name,
            key="read_only" if compose else "readOnlyRootFilesystem")
