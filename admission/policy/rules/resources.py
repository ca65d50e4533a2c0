"""CPU and memory limits: resource-limits (architecture §4)."""

from __future__ import annotations

import re
from collections.abc import Iterator, Mapping
from typing import Any

from admission.findings import Violation
from admission.model import Workload
from admission.policy.rule import Param, rule
from admission.policy.rules.common import container_field, subject

# A quantity whose number is zero ("0", "0m", "0.0Gi", "0b"): a zero limit is no limit.
_ZERO = re.compile(r"\s*[+]?0*(\.0*)?\s*([a-zA-Z]+)?\s*\Z")
_NONZERO_LEAD = frozenset("123456789")

CI_LIMITRANGE_NOTE = "a namespace LimitRange may default it for Pods in the cluster, but CI cannot see one"
_COMPOSE_FIELDS = {"cpu": "deploy.resources.limits.cpus (or cpus:)", "memory": "deploy.resources.limits.memory (or mem_limit:)"}
_COMPOSE_EXAMPLE = {"cpu": "cpus: \"0.5\"", "memory": "memory: 512M"}
_KUBE_EXAMPLE = {"cpu": "cpu: 500m", "memory": "memory: 512Mi"}


def is_zero(value: str) -> bool:
    if value[:1] in _NONZERO_LEAD:  # the common "500m", "256Mi": _ZERO cannot match a leading 1-9 (issue 15: speed)
        return False
    return bool(_ZERO.match(value)) and any(ch.isdigit() for ch in value)


@rule("resource-limits", severity="deny", summary="Containers have CPU and memory limits.",
      applies={"kubernetes": "containers and init containers (not ephemeral)", "compose": "every service"},
      params=(Param("require", list, ("cpu", "memory"), "resources that must have a non-zero limit"),))
def resource_limits(workload: Workload, params: Mapping[str, Any]) -> Iterator[Violation]:
    """Every container must have a non-zero limit for each resource in `require` (default cpu and memory).

    Why:
        A container without a memory limit can take the node's memory until the kernel's OOM killer picks a
        victim, often another workload. Without a CPU limit one busy container starves its neighbours.
        A limit of `0` counts as missing. Ephemeral (debug) containers cannot have resources and are skipped.
        In the cluster a namespace LimitRange fills in Pod limits before validating webhooks run, but not
        the limits of pod templates, so the webhook counts LimitRange defaults for templates; CI cannot see
        LimitRanges and says so.

    Fix:
        Kubernetes: set `resources.limits.cpu` and `resources.limits.memory` on every container and init
        container. Compose: `deploy.resources.limits.cpus` and `.memory` (or `cpus:` and `mem_limit:`).

    Example:
        ```yaml
        resources:
          limits: {cpu: 500m, memory: 512Mi}
        ```
    """
    if not workload.runtime:
        return
    note = workload.limits_note or CI_LIMITRANGE_NOTE
    for container in workload.containers:
        if container.kind == "ephemeral":
            continue
        for resource in params.get("require", ()):
            limit = container.limits.get(resource)
            if limit is not None and not is_zero(limit.value):
                continue
            zero = limit is not None
            what = f"a {resource} limit of {limit.value!r}, which means no limit" if zero and limit else f"no {resource} limit"
            if workload.source == "compose":
                message = f"{subject(workload, container)} has {what}"
                fix = f"set {_COMPOSE_FIELDS.get(resource, resource)}, e.g. deploy: {{resources: {{limits: {{{_COMPOSE_EXAMPLE.get(resource, resource + ': ...')}}}}}}}"
            else:
                message = f"{subject(workload, container)} has {what} (resources.limits.{resource}); {note}"
                fix = f"set resources.limits.{resource}, e.g. {_KUBE_EXAMPLE.get(resource, resource + ': ...')}"
            yield Violation(message=message, remediation=fix,
                            origin=limit.origin if limit is not None else container.origin,
                            value=limit.value if limit is not None else None,
                            container=container_field(workload, container), key=f"limits.{resource}")
