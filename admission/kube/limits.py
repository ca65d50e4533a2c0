"""LimitRange defaults as the API server's LimitRanger applies them: the webhook counts them for pod templates (whose
Pods will get them), the audit for stored templates, so both count the same."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

from admission.model import Located, Origin, Workload


@dataclass(frozen=True, slots=True)
class LimitDefaults:
    """`type: Container` default limits of a namespace: resource -> (value, origin); or why they are unknown."""

    values: Mapping[str, tuple[str, Origin]] = field(default_factory=dict)
    problem: str | None = None


def _meta(obj: Mapping[str, Any]) -> tuple[str, str]:
    meta = obj.get("metadata") if isinstance(obj.get("metadata"), dict) else {}
    return str(meta.get("namespace") or ""), str(meta.get("name") or "")


def defaults_of(namespace: str, items: Sequence[Mapping[str, Any]]) -> LimitDefaults:
    """The first `default` per resource over the namespace's LimitRanges, in list order (as LimitRanger applies them)."""
    values: dict[str, tuple[str, Origin]] = {}
    for item in items:
        _, name = _meta(item)
        spec = item.get("spec")
        limits = spec.get("limits") if isinstance(spec, dict) else None
        if not isinstance(limits, list):
            continue
        for index, limit in enumerate(limits):
            if not isinstance(limit, dict) or limit.get("type") != "Container" or not isinstance(limit.get("default"), dict):
                continue
            for resource, value in limit["default"].items():
                if isinstance(resource, str) and isinstance(value, (str, int, float)) and not isinstance(value, bool):
                    values.setdefault(resource, (str(value), Origin(f"LimitRange {namespace}/{name}", None,
                                                                    f"spec.limits[{index}].default.{resource}")))
    return LimitDefaults(values)


def apply_limit_defaults(workloads: Sequence[Workload], defaults: LimitDefaults) -> list[Workload]:
    """Containers (not ephemeral ones) get the namespace defaults for limits they do not set, as their Pods will."""
    if not defaults.values:
        return list(workloads)
    out = []
    for workload in workloads:
        containers = []
        for c in workload.containers:
            missing = {r: v for r, v in defaults.values.items() if r not in c.limits}
            if c.kind != "ephemeral" and missing:
                limits = dict(c.limits)
                limits.update({r: Located(value, origin) for r, (value, origin) in missing.items()})
                c = replace(c, limits=limits)
            containers.append(c)
        out.append(replace(workload, containers=tuple(containers)))
    return out
