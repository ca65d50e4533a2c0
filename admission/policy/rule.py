"""A rule's metadata and the decorator that registers it. The rule modules import this, never the catalogue, so the
catalogue can load them without a circle."""

from __future__ import annotations

import inspect
import re
from collections.abc import Callable, Iterator, Mapping
from typing import Any, Literal

from admission.findings import Proof, Severity, Violation
from admission.model import Workload, frozen

# A rule yields Violations; a verifying rule also yields a Proof for what it checked and found good.
RuleFunc = Callable[[Workload, Mapping[str, Any]], Iterator["Violation | Proof"]]


@frozen
class Param:
    name: str
    kind: type  # bool, list (of str), int, str
    default: Any
    help: str
    check: Callable[[Any], str | None] | None = None  # a complaint about one list item (or a scalar value), or None


@frozen
class Rule:
    id: str
    severity: Severity
    summary: str
    applies: Mapping[str, str]  # source -> what it reads there
    params: tuple[Param, ...]
    func: RuleFunc | None
    doc: str
    # Where the severity comes from when `rules:` cannot set it: "images.on_error" (image-config-unavailable) or
    # "images.verify" (image-signature: the matching entry's `signature`). "" = the rule's setting under `rules`.
    severity_from: str = ""
    # Whether the rule reads Kubernetes Services (issue 27): a Service is a Workload with no containers, and the
    # engine runs on it only the rules that say so (no-host-port), so no other rule reports on it or lists it.
    services: bool = False

    @property
    def severity_fixed(self) -> bool:
        return bool(self.severity_from)

    def section(self, name: str) -> str:
        """A docstring section (Why, Fix, Example), dedented."""
        match = re.search(rf"^{name}:\s*\n(.*?)(?=^\w[\w ]*:\s*$|\Z)", self.doc, re.S | re.M)
        return inspect.cleandoc(match.group(1)) if match else ""

    def param_defaults(self) -> dict[str, Any]:
        return {p.name: p.default for p in self.params}


REGISTERED: dict[str, Rule] = {}


def rule(rule_id: str, *, severity: Severity | Literal["off"], summary: str, applies: Mapping[str, str],
         params: tuple[Param, ...] = (), severity_from: str = "",
         services: bool = False) -> Callable[[RuleFunc], RuleFunc]:
    """Register a rule function. Its docstring must have Why, Fix and Example sections. A rule that is `off` by
    default (service-account-token) runs only where a policy turns it on."""

    def register(func: RuleFunc) -> RuleFunc:
        doc = inspect.cleandoc(func.__doc__ or "")
        for section in ("Why", "Fix", "Example"):
            if not re.search(rf"^{section}:\s*$", doc, re.M):
                raise AssertionError(f"rule {rule_id}: docstring lacks a {section}: section")
        REGISTERED[rule_id] = Rule(rule_id, severity, summary, dict(applies), params, func, doc,  # type: ignore[arg-type]
                                   severity_from, services)
        return func

    return register


def register_meta(rule_id: str, *, severity: Severity, summary: str, applies: Mapping[str, str], doc: str,
                  severity_from: str = "") -> None:
    """A rule whose findings are made by the engine or a source, not by a rule function (e.g. compose-schema)."""
    REGISTERED[rule_id] = Rule(rule_id, severity, summary, dict(applies), (), None, inspect.cleandoc(doc), severity_from)
