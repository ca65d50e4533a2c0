"""Reporters (architecture §2): text (one line per finding, fix below, summary), JSON report v1, SARIF 2.1.0, and the
CI formats: JUnit XML, GitHub Actions workflow commands and GitLab Code Quality.

JUnit XML is written as escaped text: no XML library is imported on the check path (junitparser reads it back in the
tests, as CI servers would).
"""

from __future__ import annotations

import io
import json
import os
import re
import sys
from collections.abc import Callable, Iterable, Iterator, Sequence
from itertools import islice
from typing import IO, Any

from admission import __version__
from admission.findings import Finding, Problem, Report, Verified
from admission.policy import catalog

_COLOURS = {"deny": "\033[31m", "warn": "\033[33m", "suppressed": "\033[2m", "error": "\033[35m",
            "verified": "\033[32m"}
_RESET = "\033[0m"
INFORMATION_URI = "https://github.com/admission/admission"


def sorted_findings(findings: Iterable[Finding]) -> list[Finding]:
    return sorted(findings, key=lambda f: (f.file, f.line or 0, f.rule, f.container or ""))


def summary(report: Report) -> dict[str, Any]:
    return {"files": report.files, "objects": report.objects, "deny": report.count("deny"), "warn": report.count("warn"),
            "would_deny": sum(1 for f in report.findings if f.would_deny and not f.suppressed),
            "suppressed": report.suppressed, "errors": len(report.errors), "skipped_files": report.skipped_files,
            "stale_baseline_entries": report.stale_baseline_entries, "excluded_files": sum(report.excluded.values()),
            "config": report.config}


def summary_line(report: Report, *, hidden: bool = False) -> str:
    s = summary(report)
    stale = f", {s['stale_baseline_entries']} stale baseline entries" if s["stale_baseline_entries"] else ""
    # The config and what its excludes left out are on the summary line: a pull request that adds `exclude: ["**"]`
    # shows in every CI log, not only in the JSON report's `skipped`.
    config = f"; config {report.config}" if report.config else ""
    if report.excluded:
        by = ", ".join(f"{count} by {label}" for label, count in report.excluded.items())
        config += f"; excluded {sum(report.excluded.values())} files: {by}"
    would = f" ({s['would_deny']} would deny)" if s["would_deny"] else ""
    if report.verified:
        config = f"; {len(report.verified)} verified" + config
    suppressed = f"{s['suppressed']} suppressed{' (not listed)' if hidden and s['suppressed'] else ''}"
    return (f"{s['deny']} deny, {s['warn']} warn{would}, {suppressed}, {s['errors']} errors "
            f"({s['files']} files, {s['objects']} objects, {s['skipped_files']} skipped files{stale}){config}")


def _object_label(f: Finding) -> str:
    label = f"{f.object_kind} {f.object_namespace + '/' if f.object_namespace else ''}{f.object_name}"
    if f.container and f.container != f.object_name:
        label += f"/{f.container}"
    return label


def _where(file: str | None, line: int | None) -> str:
    return f"{file or '-'}:{line}" if line else (file or "-")


def render_text(report: Report, *, colour: bool, hide_suppressed: bool = False) -> str:
    def paint(word: str, key: str) -> str:
        return f"{_COLOURS[key]}{word}{_RESET}" if colour else word

    lines: list[str] = []
    for problem in report.errors:
        path = f" ({problem.path})" if problem.path else ""
        lines.append(f"{_where(problem.file, problem.line)}  {paint('error', 'error')}  {problem.message}{path}")
    for f in sorted_findings(report.findings):
        if hide_suppressed and f.suppressed:
            continue
        label = f"{f.severity} (would deny)" if f.would_deny else f.severity
        severity = paint(f"{label} (suppressed)", "suppressed") if f.suppressed else paint(label, f.severity)
        lines.append(f"{_where(f.file, f.line)}  {severity}  {f.rule}  {_object_label(f)}  {f.message}")
        lines.append(f"    fix: {f.remediation}")
        if f.also:
            lines.append(f"    {reported_for(f)}")
        if f.reason:
            lines.append(f"    {'exempt' if f.suppressed else 'exemption not honoured'}: {f.reason}")
    for v in sorted_verified(report.verified):
        lines.append(f"{_where(v.file, v.line)}  {paint('verified', 'verified')}  {v.rule}  {_object_label(v)}  "
                     f"{v.message}")
    lines.append(summary_line(report, hidden=hide_suppressed))
    return "\n".join(lines) + "\n"


def sorted_verified(verified: Iterable[Verified]) -> list[Verified]:
    return sorted(verified, key=lambda v: (v.file, v.line or 0, v.rule, v.container or ""))


def verified_json(v: Verified) -> dict[str, Any]:
    return {"rule": v.rule, "message": v.message, "value": v.value, "file": v.file, "line": v.line, "path": v.path,
            "object": {"kind": v.object_kind, "name": v.object_name, "namespace": v.object_namespace},
            "container": v.container}


def reported_for(f: Finding) -> str:
    """`built by: service app of docker-compose.yml, service app of docker-compose.prod.yml` for a finding in a
    Dockerfile that several compose services build; `reported for: ...` for other findings reported once."""
    from admission.cli.repeats import objects

    found = objects(f)
    if all(o.kind == "ComposeService" and o.file != f.file for o in found):
        return "built by: " + ", ".join(f"service {o.name} of {o.file}" for o in found)
    return "reported for: " + ", ".join(f"{o.kind} {o.namespace + '/' if o.namespace else ''}{o.name} ({o.file})"
                                        for o in found)


def finding_json(f: Finding) -> dict[str, Any]:
    out = {"rule": f.rule, "severity": f.severity, "suppressed": f.suppressed, "reason": f.reason,
           "message": f.message, "remediation": f.remediation, "value": f.value, "file": f.file, "line": f.line,
           "path": f.path, "source": f.source,
           "object": {"kind": f.object_kind, "name": f.object_name, "namespace": f.object_namespace},
           "container": f.container, "fingerprint": f.fingerprint, "would_deny": f.would_deny}
    if f.also:  # reported once for several objects: each, the finding's own first (added in version 1)
        from admission.cli.repeats import objects

        out["reported_for"] = [{"file": o.file, "kind": o.kind, "name": o.name, "namespace": o.namespace,
                                "container": o.container} for o in objects(f)]
    return out


def problem_json(p: Problem) -> dict[str, Any]:
    return {"file": p.file, "line": p.line, "path": p.path, "message": p.message}


# One entry per line: readable, diff-friendly, and written by the C encoder (json's `indent` forces the pure-Python
# one, which cost 0.78 s of a 10,000-document run's 2.6 s).
_ENCODE = json.JSONEncoder(ensure_ascii=False, separators=(", ", ": ")).encode
_BATCH = 1024  # entries joined per chunk: one write each, so neither a call per entry nor the whole report at once


def _json_list(key: str, items: Iterable[Any], encode: Callable[[Any], str] = _ENCODE) -> Iterator[str]:
    """`  "key": [` ... `  ]`, an entry per line, in chunks of _BATCH entries."""
    lines = (encode(item) for item in items)
    batch = list(islice(lines, _BATCH))
    if not batch:
        yield f'  "{key}": []'
        return
    yield f'  "{key}": [\n    '
    while True:
        yield ",\n    ".join(batch)
        batch = list(islice(lines, _BATCH))
        if not batch:
            break
        yield ",\n    "
    yield "\n  ]"


def _null_or(text: str | None) -> str:
    return "null" if text is None else _STRING(text)


_STRING = json.encoder.encode_basestring  # type: ignore[attr-defined]  # the C function the encoder uses (ensure_ascii off)


def finding_line(f: Finding) -> str:
    """`_ENCODE(finding_json(f))`, written out field by field: the same bytes (tests/test_ci_formats.py holds them equal)
    without a dict per finding, which was half of the JSON report's time with 54,000 findings (issue 27's benchmark)."""
    if f.also:
        return _ENCODE(finding_json(f))
    s = _STRING
    return (f'{{"rule": {s(f.rule)}, "severity": {s(f.severity)}, "suppressed": {"true" if f.suppressed else "false"}, '
            f'"reason": {_null_or(f.reason)}, "message": {s(f.message)}, "remediation": {s(f.remediation)}, '
            f'"value": {_null_or(f.value)}, "file": {s(f.file)}, "line": {"null" if f.line is None else int(f.line)}, '
            f'"path": {s(f.path)}, "source": {s(f.source)}, "object": {{"kind": {s(f.object_kind)}, '
            f'"name": {s(f.object_name)}, "namespace": {_null_or(f.object_namespace)}}}, '
            f'"container": {_null_or(f.container)}, "fingerprint": {_null_or(f.fingerprint)}, '
            f'"would_deny": {"true" if f.would_deny else "false"}}}')


def json_chunks(report: Report) -> Iterator[str]:
    """The JSON report (version 1) in pieces that join to it. A large report is written as it is made: built whole and
    then written, 54,000 findings (38 MB) were held three times over and cost a fifth of issue 27's benchmark run."""
    lists = [("findings", sorted_findings(report.findings), finding_line),
             ("errors", (problem_json(p) for p in report.errors), _ENCODE),
             ("skipped", ({"file": file, "reason": reason} for file, reason in report.skipped), _ENCODE)]
    if report.verified:  # additive (report version 1): what verifying rules proved, e.g. a signature by which key
        lists.append(("verified", (verified_json(v) for v in sorted_verified(report.verified)), _ENCODE))
    yield (f'{{\n  "version": 1,\n  "tool": {_ENCODE({"name": "admission", "version": __version__})},\n'
           f'  "summary": {_ENCODE(summary(report))}')
    for key, items, encode in lists:
        yield ",\n"
        yield from _json_list(key, items, encode)
    yield "\n}\n"


def render_json(report: Report) -> str:
    return "".join(json_chunks(report))


def write_json(report: Report, out: IO[str]) -> None:
    """The JSON report written to a text stream as it is made."""
    write = out.write
    for chunk in json_chunks(report):
        write(chunk)


def stdout_to_devnull() -> None:
    """After a BrokenPipeError on stdout (`| head`): what is still buffered goes nowhere, so the interpreter's last
    flush raises nothing and the command's exit status stays its verdict's."""
    try:
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
    except (OSError, ValueError, AttributeError, io.UnsupportedOperation):  # not a real file (a test's capture)
        pass


def _sarif_level(severity: str) -> str:
    return "error" if severity == "deny" else "warning"


SRCROOT = "%SRCROOT%"


class _SarifPaths:
    """Artifact locations relative to the run's repository root (`%SRCROOT%`, given in `originalUriBaseIds`), the root
    fingerprints and `.admission.yaml` use, so code scanning places them from whatever folder the run started in. A
    file outside that root gets an absolute `file:` URI, which takes no base (SARIF 2.1.0 §3.4.4); stdin is `stdin`.
    Without a root (the audit, whose "files" are namespaces) a path stays as given."""

    def __init__(self, root: str | None) -> None:
        self.root = os.path.abspath(root) if root is not None else None

    def base_ids(self) -> dict[str, Any]:
        if self.root is None:
            return {}
        return {SRCROOT: {"uri": _file_uri(self.root.rstrip(os.sep) + os.sep)}}

    def artifact(self, file: str | None) -> dict[str, Any]:
        from urllib.parse import quote

        if file in (None, "-"):
            return {"uri": "stdin"}
        assert file is not None
        if self.root is None:
            return {"uri": _file_uri(file) if file.startswith("/") else quote(file.replace("\\", "/"))}
        full = os.path.abspath(file)
        inside = os.path.relpath(full, self.root)
        if inside == ".." or inside.startswith(".." + os.sep):
            return {"uri": _file_uri(full)}
        return {"uri": quote(inside.replace(os.sep, "/")), "uriBaseId": SRCROOT}

    def location(self, file: str | None, line: int | None, path: str | None) -> dict[str, Any]:
        physical: dict[str, Any] = {"artifactLocation": self.artifact(file)}
        if line:
            physical["region"] = {"startLine": line}
        location: dict[str, Any] = {"physicalLocation": physical}
        if path:
            location["logicalLocations"] = [{"fullyQualifiedName": path, "kind": "member"}]
        return location


def _file_uri(path: str) -> str:
    from urllib.parse import quote

    return "file://" + quote(path.replace("\\", "/"))


def render_sarif(report: Report, *, root: str | None = None) -> str:
    """SARIF 2.1.0; `root` is the run's repository root, which every location inside it is relative to."""
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
    paths = _SarifPaths(root)
    results = []
    for f in sorted_findings(report.findings):
        result: dict[str, Any] = {
            "ruleId": f.rule, "ruleIndex": index.get(f.rule, -1), "level": _sarif_level(f.severity),
            "message": {"text": f"{f.message}. Fix: {f.remediation}"},
            "locations": [paths.location(f.file, f.line, f.path)],
            "partialFingerprints": {"admission/v1": f.fingerprint} if f.fingerprint else {},
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
    notifications = [{"level": "error", "message": {"text": p.message}, "locations": [paths.location(p.file, p.line, p.path)]}
                     for p in report.errors]
    run: dict[str, Any] = {"tool": {"driver": driver}}
    if paths.root is not None:
        run["originalUriBaseIds"] = paths.base_ids()
    run |= {"results": results,
            "invocations": [{"executionSuccessful": not report.errors, "toolExecutionNotifications": notifications}]}
    document = {"$schema": "https://json.schemastore.org/sarif-2.1.0.json", "version": "2.1.0", "runs": [run]}
    return json.dumps(document, indent=2, ensure_ascii=False) + "\n"


# --- CI formats ---------------------------------------------------------------------------------------


def _threshold(fail_on: str) -> tuple[str, ...]:
    return ("deny",) if fail_on == "deny" else ("deny", "warn")


def _finding_lines(f: Finding) -> str:
    state = f" (suppressed: {f.reason})" if f.suppressed else ""
    return (f"{_where(f.file, f.line)}  {f.severity}{state}  {f.rule}  {_object_label(f)}  {f.message}\n"
            f"    fix: {f.remediation}")


def _case_name(kind: str, namespace: str | None, name: str, rule: str) -> str:
    return f"{kind} {namespace}/{name} {rule}" if namespace else f"{kind} {name} {rule}"


_XML_TEXT = {ord("&"): "&amp;", ord("<"): "&lt;", ord(">"): "&gt;",
             **{c: "\ufffd" for c in range(32) if c not in (9, 10, 13)}}  # XML 1.0 has no other control characters
_XML_ATTR = {**_XML_TEXT, ord('"'): "&quot;", 9: "&#9;", 10: "&#10;", 13: "&#13;"}


# str.translate with a mapping costs microseconds even when nothing changes; most texts and names need no escaping
# (a finding's text has newlines, which text keeps and an attribute escapes).
_XML_TEXT_SPECIAL = re.compile("[&<>\x00-\x08\x0b\x0c\x0e-\x1f]")
_XML_SPECIAL = re.compile('[&<>"\x00-\x1f]')


def _xml(text: str) -> str:
    return text.translate(_XML_TEXT) if _XML_TEXT_SPECIAL.search(text) else text


def _esc_attr(text: str) -> str:
    return text.translate(_XML_ATTR) if _XML_SPECIAL.search(text) else text


def _attrs(**values: object) -> str:
    return "".join(f' {key}="{_esc_attr(str(value))}"' for key, value in values.items())


def render_junit(report: Report, *, fail_on: str) -> str:
    return "".join(junit_chunks(report, fail_on=fail_on))


def junit_chunks(report: Report, *, fail_on: str) -> Iterator[str]:
    """One testsuite per input file, one testcase per evaluated object and rule (architecture §2). GitLab keys cases
    by classname + name and drops duplicates, so names are unique within a file. Written as text (escaped for
    XML 1.0): ElementTree and its indenting cost more than the rest of a 1,000-file run's report. In pieces, a suite
    each, that join to the document: the totals come first, so the suites are made before any is given."""
    threshold = _threshold(fail_on)
    # object -> rule -> findings, and each (object, rule) in report order for the cases no evaluated object has
    by_object: dict[tuple[str, str, str | None, str], dict[str, list[Finding]]] = {}
    order: list[tuple[tuple[str, str, str | None, str], str]] = []

    def add(obj: tuple[str, str, str | None, str], f: Finding) -> None:
        rules = by_object.setdefault(obj, {})
        found = rules.get(f.rule)
        if found is None:
            found = rules[f.rule] = []
            order.append((obj, f.rule))
        found.append(f)

    for f in sorted_findings(report.findings):
        add((f.object_file or f.file, f.object_kind, f.object_namespace, f.object_name), f)
        for other in f.also:  # reported once, but each object's case still fails with it
            add((other.file, other.kind, other.namespace, other.name), f)
    # file -> case name -> (escaped name, findings); a dict per file keeps names unique (the same object twice in one
    # stream is one case, its findings already merged) and keeps the order cases were first seen. A name is escaped
    # once per object: rule ids need no escaping.
    suites: dict[str, dict[str, tuple[str, Sequence[Finding]]]] = {}
    for obj in report.evaluated:
        suite = suites.get(obj.file)
        if suite is None:
            suite = suites[obj.file] = {}
        prefix = _case_name(obj.kind, obj.namespace, obj.name, "")
        escaped = _esc_attr(prefix)
        found = by_object.get((obj.file, obj.kind, obj.namespace, obj.name), {})
        for rule_id in obj.rules:
            name = prefix + rule_id
            if name not in suite:
                suite[name] = (escaped + rule_id, found.pop(rule_id, ()))
    for (file, kind, namespace, name), rule_id in order:  # a rule outside `applies` reported anyway
        findings = by_object[(file, kind, namespace, name)].pop(rule_id, None)
        if findings is not None:
            case = _case_name(kind, namespace, name, rule_id)
            suites.setdefault(file, {}).setdefault(case, (_esc_attr(case), findings))
    problems: dict[str, list[Problem]] = {}
    for problem in report.errors:
        problems.setdefault(problem.file or "-", []).append(problem)
    out: list[str] = []  # a suite each
    totals = {"tests": 0, "failures": 0, "errors": 0, "skipped": 0}
    for file in sorted(set(suites) | set(problems)):
        cases: list[str] = []
        tests = failures = errors = skipped = 0
        opening = f'    <testcase classname="{_esc_attr(file)}" name="'
        for case_name, findings in suites.get(file, {}).values():
            tests += 1
            if not findings:  # most cases: a rule that found nothing
                cases.append(f'{opening}{case_name}" time="0" />')
                continue
            head = f'{opening}{case_name}" time="0"'
            failing = [f for f in findings if not f.suppressed and f.severity in threshold]
            if failing:
                failures += 1
                first = failing[0]
                text = _xml("\n".join(_finding_lines(f) for f in findings))
                message = f"{_where(first.file, first.line)}: {first.message}"
                cases.append(f"{head}>\n      <failure{_attrs(type=first.rule, message=message)}>{text}</failure>\n"
                             "    </testcase>")
            elif all(f.suppressed for f in findings):
                skipped += 1
                reasons = "; ".join(sorted({f.reason or "" for f in findings}))
                cases.append(f"{head}>\n      <skipped{_attrs(message=reasons)} />\n    </testcase>")
            else:  # below --fail-on: passes, but stays readable in the report
                text = _xml("\n".join(_finding_lines(f) for f in findings))
                cases.append(f"{head}>\n      <system-out>{text}</system-out>\n    </testcase>")
        for n, problem in enumerate(problems.get(file, []), start=1):
            tests += 1
            errors += 1
            path = f" ({problem.path})" if problem.path else ""
            where = _where(problem.file, problem.line)
            cases.append(f"    <testcase{_attrs(classname=file, name=f'input error {n}', time=0)}>\n"
                         f"      <error{_attrs(type='input-error', message=f'{where}: {problem.message}{path}')}>"
                         f"{_xml(f'{where}  {problem.message}{path}')}</error>\n    </testcase>")
        counts = {"tests": tests, "failures": failures, "errors": errors, "skipped": skipped}
        for key, value in counts.items():
            totals[key] += value
        cases.append("  </testsuite>\n")
        out.append(f"  <testsuite{_attrs(name=file, **counts, time=0)}>\n" + "\n".join(cases))
    yield f'<?xml version="1.0" encoding="UTF-8"?>\n<testsuites{_attrs(name="admission", **totals)}>\n'
    yield from out
    yield "</testsuites>\n"


def _gh_data(text: str) -> str:
    return text.replace("%", "%25").replace("\r", "%0D").replace("\n", "%0A")


def _gh_property(text: str) -> str:
    return _gh_data(text).replace(":", "%3A").replace(",", "%2C")


def _gh_command(level: str, *, file: str, line: int | None, title: str, message: str) -> str:
    props = [f"file={_gh_property(file)}"]
    if line:
        props.append(f"line={line}")
    props.append(f"title={_gh_property(title)}")
    return f"::{level} {','.join(props)}::{_gh_data(message)}"


def render_github(report: Report, *, relative: Callable[[str], str]) -> str:
    """GitHub Actions workflow commands: one annotation per unsuppressed finding and per input error, file names
    relative to the repository root (as the runner resolves them), then the summary line. Never coloured."""
    lines: list[str] = []
    for problem in report.errors:
        path = f" ({problem.path})" if problem.path else ""
        lines.append(_gh_command("error", file=relative(problem.file or "-"), line=problem.line,
                                 title="admission: input error", message=f"{problem.message}{path}"))
    shown = 0
    for f in sorted_findings(report.findings):
        if f.suppressed:
            continue
        shown += 1
        lines.append(_gh_command("error" if f.severity == "deny" else "warning", file=relative(f.file), line=f.line,
                                 title=f.rule, message=f"{_object_label(f)}: {f.message}\nfix: {f.remediation}"))
    total = shown + len(report.errors)
    note = (f"; {total} annotations in all, and GitHub shows only about 10 of each type per step: "
            "every one is listed in this log" if total > 10 else "")
    lines.append(summary_line(report) + note)
    return "\n".join(lines) + "\n"


def render_gitlab(report: Report, *, relative: Callable[[str], str]) -> str:
    """GitLab Code Quality: a JSON array; deny -> major, warn -> minor, input errors -> blocker. Suppressed
    findings are left out (GitLab has no suppressed state); the fingerprint is the finding's own."""
    import hashlib

    issues: list[dict[str, Any]] = []
    for f in sorted_findings(report.findings):
        if f.suppressed:
            continue
        issues.append({"description": f"{_object_label(f)}: {f.message}. Fix: {f.remediation}", "check_name": f.rule,
                       "fingerprint": f.fingerprint, "severity": "major" if f.severity == "deny" else "minor",
                       "location": {"path": relative(f.file), "lines": {"begin": f.line or 1}}})
    seen: dict[str, int] = {}
    for problem in report.errors:
        file = relative(problem.file or "-")
        base = f"input-error\0{file}\0{problem.path or ''}\0{problem.message}"
        n = seen[base] = seen.get(base, 0) + 1
        issues.append({"description": problem.message + (f" ({problem.path})" if problem.path else ""),
                       "check_name": "input-error", "severity": "blocker",
                       "fingerprint": hashlib.sha256(f"{base}\0{n}".encode()).hexdigest()[:32],
                       "location": {"path": file, "lines": {"begin": problem.line or 1}}})
    if not issues:
        return "[]\n"
    return "[\n" + ",\n".join(f"  {_ENCODE(issue)}" for issue in issues) + "\n]\n"  # one issue a line, as in JSON
