"""Reporters: text (one line per finding, fix below, summary), JSON report v1, SARIF 2.1.0 (DESIGN §2)."""

from __future__ import annotations

import json
from collections.abc import Iterable
from typing import Any

from admission import __version__
from admission.findings import Finding, Problem, Report
from admission.policy import catalog

_COLOURS = {"deny": "\033[31m", "warn": "\033[33m", "suppressed": "\033[2m", "error": "\033[35m"}
_RESET = "\033[0m"
INFORMATION_URI = "https://github.com/admission/admission"


def sorted_findings(findings: Iterable[Finding]) -> list[Finding]:
    return sorted(findings, key=lambda f: (f.file, f.line or 0, f.rule, f.container or ""))


def summary(report: Report) -> dict[str, int]:
    return {"files": report.files, "objects": report.objects, "deny": report.count("deny"), "warn": report.count("warn"),
            "suppressed": report.suppressed, "errors": len(report.errors), "skipped_files": report.skipped_files}


def _object_label(f: Finding) -> str:
    label = f"{f.object_kind} {f.object_namespace + '/' if f.object_namespace else ''}{f.object_name}"
    if f.container and f.container != f.object_name:
        label += f"/{f.container}"
    return label


def _where(file: str | None, line: int | None) -> str:
    return f"{file or '-'}:{line}" if line else (file or "-")


def render_text(report: Report, *, colour: bool) -> str:
    def paint(word: str, key: str) -> str:
        return f"{_COLOURS[key]}{word}{_RESET}" if colour else word

    lines: list[str] = []
    for problem in report.errors:
        path = f" ({problem.path})" if problem.path else ""
        lines.append(f"{_where(problem.file, problem.line)}  {paint('error', 'error')}  {problem.message}{path}")
    for f in sorted_findings(report.findings):
        severity = paint(f"{f.severity} (suppressed)", "suppressed") if f.suppressed else paint(f.severity, f.severity)
        lines.append(f"{_where(f.file, f.line)}  {severity}  {f.rule}  {_object_label(f)}  {f.message}")
        lines.append(f"    fix: {f.remediation}")
        if f.reason:
            lines.append(f"    {'exempt' if f.suppressed else 'exemption not honoured'}: {f.reason}")
    s = summary(report)
    lines.append(f"{s['deny']} deny, {s['warn']} warn, {s['suppressed']} suppressed, {s['errors']} errors "
                 f"({s['files']} files, {s['objects']} objects, {s['skipped_files']} skipped files)")
    return "\n".join(lines) + "\n"


def finding_json(f: Finding) -> dict[str, Any]:
    return {"rule": f.rule, "severity": f.severity, "suppressed": f.suppressed, "reason": f.reason,
            "message": f.message, "remediation": f.remediation, "value": f.value, "file": f.file, "line": f.line,
            "path": f.path, "source": f.source,
            "object": {"kind": f.object_kind, "name": f.object_name, "namespace": f.object_namespace},
            "container": f.container}


def problem_json(p: Problem) -> dict[str, Any]:
    return {"file": p.file, "line": p.line, "path": p.path, "message": p.message}


def render_json(report: Report) -> str:
    document = {"version": 1, "tool": {"name": "admission", "version": __version__}, "summary": summary(report),
                "findings": [finding_json(f) for f in sorted_findings(report.findings)],
                "errors": [problem_json(p) for p in report.errors]}
    return json.dumps(document, indent=2, ensure_ascii=False) + "\n"


def _sarif_level(severity: str) -> str:
    return "error" if severity == "deny" else "warning"


def _uri(file: str | None) -> str:
    """A SARIF artifact URI: relative paths stay relative (code scanning resolves them against the checkout),
    absolute ones become file: URIs; both percent-encoded."""
    from urllib.parse import quote

    if file in (None, "-"):
        return "stdin"
    assert file is not None
    if file.startswith("/"):
        return "file://" + quote(file)
    return quote(file.replace("\\", "/"))


def _location(file: str | None, line: int | None, path: str | None) -> dict[str, Any]:
    physical: dict[str, Any] = {"artifactLocation": {"uri": _uri(file)}}
    if line:
        physical["region"] = {"startLine": line}
    location: dict[str, Any] = {"physicalLocation": physical}
    if path:
        location["logicalLocations"] = [{"fullyQualifiedName": path, "kind": "member"}]
    return location


def render_sarif(report: Report) -> str:
    rules = list(catalog.all_rules().values())
    index = {r.id: i for i, r in enumerate(rules)}
    driver = {
        "name": "admission", "version": __version__, "informationUri": INFORMATION_URI,
        "rules": [{
            "id": r.id, "name": "".join(part.capitalize() for part in r.id.split("-")),
            "shortDescription": {"text": r.summary},
            "fullDescription": {"text": r.section("Why").replace("\n", " ")},
            "help": {"text": f"{r.section('Why')}\n\nFix: {r.section('Fix')}",
                     "markdown": f"{r.section('Why')}\n\n**Fix.** {r.section('Fix')}\n\n{r.section('Example')}"},
            "defaultConfiguration": {"level": _sarif_level(r.severity)},
        } for r in rules],
    }
    results = []
    for f in sorted_findings(report.findings):
        result: dict[str, Any] = {
            "ruleId": f.rule, "ruleIndex": index.get(f.rule, -1), "level": _sarif_level(f.severity),
            "message": {"text": f"{f.message}. Fix: {f.remediation}"},
            "locations": [_location(f.file, f.line, f.path)],
            "properties": {"object": {"kind": f.object_kind, "name": f.object_name, "namespace": f.object_namespace},
                           "container": f.container, "value": f.value, "source": f.source},
        }
        if result["ruleIndex"] < 0:
            del result["ruleIndex"]
        if f.suppressed:
            result["suppressions"] = [{"kind": "external", "status": "accepted", "justification": f.reason or ""}]
        elif f.reason:
            result["properties"]["exemption"] = f.reason
        results.append(result)
    notifications = [{"level": "error", "message": {"text": p.message}, "locations": [_location(p.file, p.line, p.path)]}
                     for p in report.errors]
    run = {"tool": {"driver": driver}, "results": results,
           "invocations": [{"executionSuccessful": not report.errors, "toolExecutionNotifications": notifications}]}
    document = {"$schema": "https://json.schemastore.org/sarif-2.1.0.json", "version": "2.1.0", "runs": [run]}
    return json.dumps(document, indent=2, ensure_ascii=False) + "\n"
