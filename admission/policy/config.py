"""The policy file (DESIGN §5): load, validate strictly, overlay on the built-in default.

Validated by hand rather than with pydantic: importing pydantic costs 60-90 ms, about half of
compose-lint's whole run, and `admission-cli check` loads a policy on every run.
"""

from __future__ import annotations

import fnmatch
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from datetime import date
from functools import lru_cache
import os
from typing import Any, Literal

from admission.errors import InputError, PolicyError
from admission.findings import Severity
from admission.images.reference import registry_identity
from admission.policy import catalog
from admission.sources.text import read_path
from admission.sources.yamlload import YMap, YSeq, load_documents, type_name

SeverityOrOff = Literal["deny", "warn", "off"]
DEFAULT_POLICY = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "policies", "default.yaml")

_TOP_KEYS = frozenset(("enforcement", "rules", "exemptions", "exemptions_from_annotations", "images"))
_RULE_KEYS = frozenset(("severity", "params"))
_EXEMPTION_KEYS = frozenset(("rule", "namespace", "name", "kind", "container", "reason", "expires"))


@dataclass(frozen=True, slots=True)
class RuleSetting:
    severity: SeverityOrOff
    params: Mapping[str, Any]


@dataclass(frozen=True, slots=True)
class Exemption:
    rule: str
    reason: str
    namespace: str | None = None
    name: str | None = None
    kind: str | None = None
    container: str | None = None
    expires: date | None = None
    where: str = ""  # file:line of the exemption, for reports

    def matches(self, *, rule: str, kind: str, name: str, namespace: str | None, container: str | None) -> bool:
        if self.rule != "*" and self.rule != rule:
            return False
        if self.namespace is not None and (namespace is None or not fnmatch.fnmatchcase(namespace, self.namespace)):
            return False
        if self.name is not None and not fnmatch.fnmatchcase(name, self.name):
            return False
        if self.kind is not None and self.kind != kind:
            return False
        if self.container not in (None, "*") and (container is None or not fnmatch.fnmatchcase(container, self.container)):
            return False
        return True

    def expired(self, today: date) -> bool:
        return self.expires is not None and today > self.expires


@dataclass(frozen=True, slots=True)
class ImagesSettings:
    resolve: Literal["auto"] | bool = "auto"
    on_error: Severity = "warn"
    platform: str = "linux/amd64"
    allowed_registries: tuple[str, ...] = ()
    restrict_to_allowed: bool = False
    insecure_registries: tuple[str, ...] = ()
    mirrors: Mapping[str, tuple[str, ...]] = field(default_factory=dict)
    tag_ttl: int = 300
    resolve_user_names: bool = False


@dataclass(frozen=True, slots=True)
class Policy:
    enforcement: Severity
    rules: Mapping[str, RuleSetting]
    exemptions: tuple[Exemption, ...]
    exemptions_from_annotations: bool
    images: ImagesSettings
    source: str = "default"

    def setting(self, rule_id: str) -> RuleSetting:
        return self.rules[rule_id]


class _Reader:
    """Validation helpers that name the file, line and key of every problem."""

    def __init__(self, file: str) -> None:
        self.file = file

    def fail(self, message: str, container: Any = None, key: Any = None) -> PolicyError:
        line = None
        if isinstance(container, YMap):
            line = container.key_lines.get(key, container.line) if key is not None else container.line
        elif isinstance(container, YSeq):
            line = container.line_of(key) if isinstance(key, int) else container.line
        where = f"{self.file}:{line}" if line else self.file
        return PolicyError(f"{where}: {message}")

    def mapping(self, value: Any, what: str, container: Any = None, key: Any = None) -> YMap:
        if value is None:
            return YMap()
        if not isinstance(value, dict):
            raise self.fail(f"{what} must be a mapping, not {type_name(value)}", container, key)
        return value if isinstance(value, YMap) else _ymap(value)

    def keys(self, value: YMap, allowed: frozenset[str], what: str) -> None:
        for key in value:
            if key not in allowed:
                raise self.fail(f"unknown key {key!r} in {what} (allowed: {', '.join(sorted(allowed))})", value, key)

    def boolean(self, value: Any, what: str, container: Any, key: Any) -> bool:
        if not isinstance(value, bool):
            raise self.fail(f"{what} must be true or false, not {value!r}", container, key)
        return value

    def strings(self, value: Any, what: str, container: Any, key: Any) -> tuple[str, ...]:
        if value is None:
            return ()
        if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
            raise self.fail(f"{what} must be a list of strings", container, key)
        return tuple(value)


def _ymap(value: Mapping[str, Any]) -> YMap:
    out = YMap()
    out.update(value)
    return out


def _severity(reader: _Reader, value: Any, container: Any, key: Any, *, allow_off: bool, what: str) -> SeverityOrOff:
    if value is False and allow_off:
        return "off"
    if value in ("deny", "warn") or (allow_off and value == "off"):
        return value
    choices = "deny, warn or off" if allow_off else "deny or warn"
    raise reader.fail(f"{what} must be {choices}, not {value!r}", container, key)


def _params(reader: _Reader, rule: catalog.Rule, value: Any, container: Any, key: Any) -> dict[str, Any]:
    raw = reader.mapping(value, f"rules.{rule.id}.params", container, key)
    known = {p.name: p for p in rule.params}
    out: dict[str, Any] = {}
    for name, item in raw.items():
        param = known.get(name)
        if param is None:
            allowed = ", ".join(sorted(known)) or "none"
            raise reader.fail(f"unknown parameter {name!r} for rule {rule.id} (parameters: {allowed})", raw, name)
        what = f"rules.{rule.id}.params.{name}"
        if param.kind is bool:
            out[name] = reader.boolean(item, what, raw, name)
        elif param.kind is list:
            if not isinstance(item, list) or not all(isinstance(v, (str, int)) and not isinstance(v, bool) for v in item):
                raise reader.fail(f"{what} must be a list", raw, name)
            if param.check is not None:
                for index, element in enumerate(item):
                    complaint = param.check(element)
                    if complaint:
                        raise reader.fail(f"{what}[{index}]: {complaint}", raw, name)
            out[name] = tuple(item)
        else:
            if not isinstance(item, param.kind) or isinstance(item, bool):
                raise reader.fail(f"{what} must be {param.kind.__name__}", raw, name)
            complaint = param.check(item) if param.check is not None else None
            if complaint:
                raise reader.fail(f"{what}: {complaint}", raw, name)
            out[name] = item
    return out


def _exemption(reader: _Reader, items: YSeq, index: int) -> Exemption:
    item = reader.mapping(items[index], f"exemptions[{index}]", items, index)
    reader.keys(item, _EXEMPTION_KEYS, f"exemptions[{index}]")
    rule = item.get("rule")
    if not isinstance(rule, str) or not rule:
        raise reader.fail(f"exemptions[{index}].rule is required (a rule id or \"*\")", item, "rule")
    if rule != "*" and rule not in catalog.all_rules():
        raise reader.fail(f"exemptions[{index}].rule: unknown rule {rule!r}", item, "rule")
    reason = item.get("reason")
    if not isinstance(reason, str) or not reason.strip():
        raise reader.fail(f"exemptions[{index}].reason is required", item, "reason" if "reason" in item else None)
    globs: dict[str, str | None] = {}
    for key in ("namespace", "name", "kind", "container"):
        value = item.get(key)
        if value is not None and not isinstance(value, str):
            raise reader.fail(f"exemptions[{index}].{key} must be a string", item, key)
        globs[key] = value
    expires = parse_date(item.get("expires"))
    if expires is False:
        raise reader.fail(f"exemptions[{index}].expires must be a date YYYY-MM-DD, not {item.get('expires')!r}", item, "expires")
    return Exemption(rule=rule, reason=reason.strip(), expires=expires or None,
                     where=f"{reader.file}:{items.line_of(index)}", **globs)


def parse_date(value: Any) -> date | None | Literal[False]:
    """None when absent, False when invalid."""
    if value is None:
        return None
    if isinstance(value, date):
        return value
    if not isinstance(value, str):
        return False
    try:
        return date.fromisoformat(value.strip())
    except ValueError:
        return False


def _images(reader: _Reader, value: Any, base: ImagesSettings, container: Any) -> ImagesSettings:
    raw = reader.mapping(value, "images", container, "images")
    allowed = frozenset(ImagesSettings.__dataclass_fields__)
    reader.keys(raw, allowed, "images")
    changes: dict[str, Any] = {}
    for key, item in raw.items():
        what = f"images.{key}"
        if key == "resolve":
            if item not in ("auto", True, False):
                raise reader.fail(f"{what} must be auto, true or false", raw, key)
            changes[key] = item
        elif key == "on_error":
            changes[key] = _severity(reader, item, raw, key, allow_off=False, what=what)
        elif key == "platform":
            if not isinstance(item, str) or "/" not in item:
                raise reader.fail(f"{what} must look like os/arch, e.g. linux/amd64", raw, key)
            changes[key] = item
        elif key in ("allowed_registries", "insecure_registries"):
            changes[key] = tuple(registry_identity(s) for s in reader.strings(item, what, raw, key))
        elif key in ("restrict_to_allowed", "resolve_user_names"):
            changes[key] = reader.boolean(item, what, raw, key)
        elif key == "tag_ttl":
            if not isinstance(item, int) or isinstance(item, bool) or item < 0:
                raise reader.fail(f"{what} must be a whole number of seconds", raw, key)
            changes[key] = item
        elif key == "mirrors":
            mirrors = reader.mapping(item, what, raw, key)
            changes[key] = {registry_identity(host): reader.strings(m, f"{what}.{host}", mirrors, host)
                            for host, m in mirrors.items()}
    return replace(base, **changes)


def parse_policy(text: str, *, file: str, base: Policy | None) -> Policy:
    """Validate a policy document and overlay it on `base` (None: it is the base itself)."""
    reader = _Reader(file)
    try:
        documents = [d for d in load_documents(text, file=file, dialect="1.2", strict_keys=True) if d.value is not None]
    except InputError as exc:
        raise PolicyError(str(exc)) from None
    if len(documents) > 1:
        raise PolicyError(f"{file}: a policy file holds one YAML document, found {len(documents)}")
    root = reader.mapping(documents[0].value if documents else None, "the policy")
    reader.keys(root, _TOP_KEYS, "the policy")
    known = catalog.all_rules()

    enforcement: Severity = base.enforcement if base else "deny"
    if "enforcement" in root:
        enforcement = _severity(reader, root["enforcement"], root, "enforcement", allow_off=False,  # type: ignore[assignment]
                                what="enforcement")

    rules: dict[str, RuleSetting] = dict(base.rules) if base else {}
    raw_rules = reader.mapping(root.get("rules"), "rules", root, "rules")
    for rule_id, value in raw_rules.items():
        rule = known.get(rule_id)
        if rule is None:
            raise reader.fail(f"unknown rule {rule_id!r} (see `admission-cli rules`)", raw_rules, rule_id)
        if rule.severity_fixed:
            raise reader.fail(f"rule {rule_id!r} takes its severity from images.on_error; it cannot be set under rules", raw_rules, rule_id)
        previous = rules.get(rule_id)
        if value is False or isinstance(value, str):  # shorthand: `numeric-user: off` / `numeric-user: deny`
            body = _ymap({"severity": _severity(reader, value, raw_rules, rule_id, allow_off=True,
                                                what=f"rules.{rule_id}")})
        else:
            body = reader.mapping(value, f"rules.{rule_id}", raw_rules, rule_id)
        reader.keys(body, _RULE_KEYS, f"rules.{rule_id}")
        severity = _severity(reader, body["severity"], body, "severity", allow_off=True,
                             what=f"rules.{rule_id}.severity") if "severity" in body else (
            previous.severity if previous else rule.severity)
        params = dict(rule.param_defaults())
        if previous:
            params.update(previous.params)
        params.update(_params(reader, rule, body.get("params"), body, "params"))
        rules[rule_id] = RuleSetting(severity, params)
    for rule_id, rule in known.items():
        if rule_id not in rules and not rule.severity_fixed:
            if base is None:
                raise PolicyError(f"{file}: the default policy does not list rule {rule_id!r}")
            rules[rule_id] = RuleSetting(rule.severity, rule.param_defaults())

    raw_exemptions = root.get("exemptions")
    if raw_exemptions is not None and not isinstance(raw_exemptions, list):
        raise reader.fail("exemptions must be a list", root, "exemptions")
    exemptions = tuple(base.exemptions) if base else ()
    if raw_exemptions:
        seq = raw_exemptions if isinstance(raw_exemptions, YSeq) else YSeq()
        if not isinstance(raw_exemptions, YSeq):
            seq.extend(raw_exemptions)
        exemptions += tuple(_exemption(reader, seq, i) for i in range(len(seq)))

    from_annotations = base.exemptions_from_annotations if base else False
    if "exemptions_from_annotations" in root:
        from_annotations = reader.boolean(root["exemptions_from_annotations"], "exemptions_from_annotations", root,
                                          "exemptions_from_annotations")
    images = _images(reader, root.get("images"), base.images if base else ImagesSettings(), root)
    return Policy(enforcement=enforcement, rules=rules, exemptions=exemptions,
                  exemptions_from_annotations=from_annotations, images=images, source=file)


@lru_cache(maxsize=1)
def default_policy() -> Policy:
    return parse_policy(read_path(DEFAULT_POLICY, display=DEFAULT_POLICY), file="default.yaml", base=None)


def load_policy(path: str | None) -> Policy:
    """The default policy, overlaid with `path` when given. PolicyError names the file, line and key."""
    base = default_policy()
    if path is None:
        return base
    try:
        text = read_path(path, display=path)
    except InputError as exc:
        raise PolicyError(str(exc)) from None
    return parse_policy(text, file=path, base=base)
