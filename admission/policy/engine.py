"""evaluate(workloads, policy) -> Report. Pure and synchronous: no I/O, no clock unless `today` is omitted."""

from __future__ import annotations

import re
from collections.abc import Iterable
from datetime import date, datetime, timezone

from admission.findings import Evaluated, Finding, Problem, Proof, Report, Severity, Verified, Violation
from admission.model import ExemptionClaim, OwnerRef, Workload, frozen
from admission.policy import catalog
from admission.policy.config import Exemption, Policy, RuleSetting, parse_date

SCHEMA_RULE = "compose-schema"
_INDEX = re.compile(r"\[\d+\]")  # list indices move when entries are added: never part of a finding's key
_GENERIC_SCHEMA_FIX = "change the file so that Docker Compose accepts it (see the Compose Specification)"


@frozen
class _Claim:
    """A validated inline exemption (x-admission or annotation)."""

    rules: frozenset[str]
    reason: str
    expires: date | None
    via: str

    def covers(self, rule: str) -> bool:
        return rule in self.rules or "*" in self.rules


def _validate_claims(workload: Workload, policy: Policy, known: dict[str, catalog.Rule],
                     problems: list[Problem]) -> list[_Claim]:
    claims: list[_Claim] = []
    for claim in workload.exemption_claims:
        if claim.via == "annotation" and not policy.exemptions_from_annotations:
            continue
        error = _claim_error(claim, known)
        if error:
            problems.append(Problem(message=f"{claim.via} exemption dropped: {error}; all findings are still reported",
                                    file=claim.origin.file, line=claim.origin.line, path=claim.origin.path))
            continue
        expires = parse_date(claim.expires)
        claims.append(_Claim(frozenset(claim.rules), (claim.reason or "").strip(), expires or None, claim.via))
    return claims


def _claim_error(claim: ExemptionClaim, known: dict[str, catalog.Rule]) -> str | None:
    if not claim.rules:
        return "it names no rule"
    unknown = [r for r in claim.rules if r != "*" and r not in known]
    if unknown:
        return f"unknown rule {', '.join(repr(r) for r in unknown)}"
    if not isinstance(claim.reason, str) or not claim.reason.strip():
        return "it has no reason (a non-empty string)"
    if parse_date(claim.expires) is False:
        return f"expires {claim.expires!r} is not a date (YYYY-MM-DD)"
    return None


def _suppression(rule: str, workload: Workload, container: str | None, claims: list[_Claim],
                 exemptions: tuple[Exemption, ...], today: date) -> tuple[bool, str | None]:
    """(suppressed, reason). An expired match leaves the finding unsuppressed but says so."""
    expired: str | None = None
    for claim in claims:
        if claim.covers(rule):
            if claim.expires is not None and today > claim.expires:
                expired = expired or f"expired {claim.expires.isoformat()}: {claim.reason}"
                continue
            return True, claim.reason
    owner = workload.owner
    for exemption in exemptions:
        via = ""
        if not exemption.matches(rule=rule, kind=workload.kind, name=workload.name, namespace=workload.namespace,
                                 container=container):
            # A verified top owner lends its exemptions to what its controllers create (never its namespace: an
            # owner lives in its object's namespace).
            if owner is None or (owner.manual_runs_only and not exemption.manual_runs) or not exemption.matches(
                    rule=rule, kind=owner.kind, name=owner.name, namespace=workload.namespace, container=container):
                continue
            via = f" (through its owner {owner.kind} {owner.name})"
        if exemption.expired(today):
            expired = expired or f"expired {exemption.expires.isoformat() if exemption.expires else ''}: {exemption.reason}{via}"
            continue
        return True, exemption.reason + via
    return False, expired


def owner_would_exempt(findings: Iterable[Finding], owner: OwnerRef, policy: Policy, *,
                       today: date | None = None) -> bool:
    """Whether `owner`, had it lent its exemptions, would have suppressed one of these unsuppressed findings (the
    webhook says so when it did not lend them; which exemption, and why not, stay in its audit line)."""
    today = today or datetime.now(timezone.utc).date()
    for f in findings:
        if f.suppressed:
            continue
        for exemption in policy.exemptions:
            if not exemption.expired(today) and exemption.matches(rule=f.rule, kind=owner.kind, name=owner.name,
                                                                  namespace=f.object_namespace, container=f.container):
                return True
    return False


def _finding(rule: str, severity: Severity, workload: Workload, violation: Violation, *,
             suppressed: bool, reason: str | None, would_deny: bool) -> Finding:
    origin = violation.origin
    return Finding(rule=rule, severity=severity, message=violation.message, remediation=violation.remediation,
                   value=violation.value, file=origin.file, line=origin.line, path=origin.path,
                   source=workload.source, object_kind=workload.kind, object_name=workload.name,
                   object_namespace=workload.namespace, container=violation.container,
                   suppressed=suppressed, reason=reason, key=violation.key or (_INDEX.sub("[]", origin.path) if "[" in origin.path else origin.path),
                   object_file=workload.origin.file, would_deny=would_deny)


def _verified(rule: str, workload: Workload, proof: Proof) -> Verified:
    origin = proof.origin
    return Verified(rule=rule, message=proof.message, value=proof.value, file=origin.file, line=origin.line,
                    path=origin.path, object_kind=workload.kind, object_name=workload.name,
                    object_namespace=workload.namespace, container=proof.container)


# The last policy's active rules: the webhook evaluates every request under one policy (issue 15). A Policy is frozen
# and the catalogue only grows (on import), so the policy object and the catalogue's size identify the list.
_active_cache: tuple[Policy, int, tuple[tuple[catalog.Rule, RuleSetting], ...]] | None = None


def _active_rules(policy: Policy, known: dict[str, catalog.Rule]) -> tuple[tuple[catalog.Rule, RuleSetting], ...]:
    global _active_cache
    cached = _active_cache
    if cached is not None and cached[0] is policy and cached[1] == len(known):
        return cached[2]
    active = [(r, policy.rules[r.id]) for r in known.values()
              if r.func is not None and r.id in policy.rules and policy.rules[r.id].severity != "off"]
    # image-config-unavailable takes its severity from images.on_error, image-signature from the matching
    # images.verify entry (each violation carries it), never from `rules:`.
    for r in known.values():
        if r.func is not None and r.severity_from == "images.on_error":
            active.append((r, RuleSetting(policy.images.on_error, {})))
        elif r.func is not None and r.severity_from == "images.verify":
            active.append((r, RuleSetting("deny", {"verify": policy.images.verify})))
    result = tuple(active)
    _active_cache = (policy, len(known), result)
    return result


def evaluate(workloads: Iterable[Workload], policy: Policy, *, today: date | None = None) -> Report:
    """Run every enabled rule over every workload and apply exemptions and enforcement."""
    today = today or datetime.now(timezone.utc).date()
    known = catalog.all_rules()
    active = _active_rules(policy, known)
    schema = policy.rules.get(SCHEMA_RULE)
    report = Report()

    def severity_of(configured: str) -> Severity:
        return "warn" if policy.enforcement == "warn" or configured == "warn" else "deny"

    rolling_out = policy.enforcement == "warn"

    ran: dict[str, tuple[str, ...]] = {}  # source -> ids of the active rules that apply to it

    on_services: tuple[tuple[catalog.Rule, RuleSetting], ...] | None = None  # the rules a Service gets (issue 27)

    for workload in workloads:
        report.objects += 1
        running = active
        if workload.service is not None:
            if on_services is None:
                on_services = tuple((r, s) for r, s in active if r.services)
            running = on_services
            rule_ids = ran.get("Service")
            if rule_ids is None:
                rule_ids = ran["Service"] = tuple(r.id for r, _ in on_services)
        else:
            rule_ids = ran.get(workload.source)
        if rule_ids is None:
            rule_ids = ran[workload.source] = tuple(
                r.id for r, _ in active if workload.source in r.applies) + (
                (SCHEMA_RULE,) if workload.source == "compose" and schema is not None and schema.severity != "off" else ())
        report.evaluated.append(Evaluated(kind=workload.kind, name=workload.name, namespace=workload.namespace,
                                          file=workload.origin.file, source=workload.source, rules=rule_ids))
        claims = _validate_claims(workload, policy, known, report.errors)
        produced: list[tuple[str, str, Violation]] = []  # (rule, configured severity, violation)
        for rule, setting in running:
            for violation in rule.func(workload, setting.params):  # type: ignore[misc]
                if type(violation) is Proof:
                    report.verified.append(_verified(rule.id, workload, violation))
                    continue
                produced.append((rule.id, violation.severity or setting.severity, violation))
        if schema is not None and schema.severity != "off":
            for issue in workload.schema_issues:
                fix = getattr(issue, "remediation", None) or _GENERIC_SCHEMA_FIX
                produced.append((SCHEMA_RULE, schema.severity,
                                 Violation(message=issue.message, remediation=fix, origin=issue.origin,
                                           value=issue.value, container=issue.container,
                                           key=_INDEX.sub("[]", issue.origin.path))))
        exemptions = policy.exemptions
        for rule_id, configured, violation in produced:
            if claims or exemptions:
                suppressed, reason = _suppression(rule_id, workload, violation.container, claims, exemptions, today)
            else:  # what _suppression answers with nothing to match
                suppressed, reason = False, None
            report.findings.append(_finding(rule_id, severity_of(configured), workload, violation,
                                            suppressed=suppressed, reason=reason,
                                            would_deny=rolling_out and configured == "deny"))
    return report
