"""Baselines (architecture §2): adopt the rules on a repository that already has findings, then only shrink: a refresh
(--baseline B --write-baseline B) drops what no longer occurs and never adds.

A baseline is one JSON file of fingerprints (cli/identity.py), each with the rule, file and object for the
reviewer; only the fingerprint matches. Unlike checkov's, a match needs the file and the rule's key, so a
new violation in another file, or a second one in the same object, is never absorbed.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import replace

from admission.errors import InputError
from admission.findings import Finding, Report
from admission.textio import new_file_mode, write_atomic

BASELINE_REASON = "baseline"
_FORMAT = 1


def load(path: str) -> frozenset[str]:
    """The fingerprints a baseline file holds; an unreadable or foreign file is an InputError naming it."""
    try:
        with open(path, "rb") as fh:
            data = fh.read(64 << 20)
    except OSError as exc:
        raise InputError(f"cannot read the baseline: {exc.strerror or exc}", file=path) from None
    try:
        document = json.loads(data)
    except (ValueError, RecursionError) as exc:
        line = getattr(exc, "lineno", None)
        raise InputError(f"the baseline is not JSON: {getattr(exc, 'msg', exc)}", file=path, line=line) from None
    if not isinstance(document, dict) or document.get("version") != _FORMAT or not isinstance(document.get("findings"), list):
        raise InputError(f"not an admission baseline (expected {{\"version\": {_FORMAT}, \"findings\": [...]}}; "
                         "write one with --write-baseline)", file=path)
    prints: set[str] = set()
    for i, entry in enumerate(document["findings"]):
        value = entry.get("fingerprint") if isinstance(entry, dict) else None
        if not isinstance(value, str) or not value:
            raise InputError("a baseline entry has no fingerprint string", file=path, path=f"findings[{i}].fingerprint")
        prints.add(value)
    return frozenset(prints)


def apply(report: Report, fingerprints: frozenset[str]) -> None:
    """Suppress findings in the baseline (visibly, reason "baseline") and count the entries nothing matched.
    A finding an exemption already suppresses keeps that exemption's reason."""
    from admission.cli.repeats import fingerprints as prints_of

    matched: set[str] = set()
    for i, f in enumerate(report.findings):
        found = fingerprints.intersection(prints_of(f))  # a finding reported once for several objects has each's
        if not found:
            continue
        matched.update(found)
        if not f.suppressed:
            report.findings[i] = replace(f, suppressed=True, reason=BASELINE_REASON)
    report.stale_baseline_entries = len(fingerprints - matched)


def _entry(f: Finding, file: str) -> dict[str, object]:
    namespace = f"{f.object_namespace}/" if f.object_namespace else ""
    return {"fingerprint": f.fingerprint, "rule": f.rule, "file": file,
            "object": f"{f.object_kind} {namespace}{f.object_name}", "container": f.container}


def write(path: str, report: Report, *, relative: Callable[[str], str], refresh: bool) -> int:
    """Write the baseline, sorted by fingerprint so the file diffs well; returns the number of entries.

    A new baseline (`refresh` False) holds every finding no exemption suppresses. A refresh (the run had --baseline)
    holds only the findings that baseline suppressed: it drops what no longer occurs and never adds a finding, so a
    violation introduced since is not absorbed by rewriting the file. Findings an exemption suppresses are never
    written: the exemption already says why. The other objects of a finding reported once keep their own entries.
    Written atomically, with the mode an existing file has (a new one gets 0666 & ~umask, as any file the user
    creates)."""
    def kept(f: Finding) -> bool:
        if refresh:
            return f.suppressed and f.reason == BASELINE_REASON
        return not f.suppressed or f.reason == BASELINE_REASON

    entries = {f.fingerprint: _entry(f, relative(f.file)) for f in report.findings if f.fingerprint and kept(f)}
    for f in report.findings:
        if f.fingerprint in entries:
            for other in f.also:
                if other.fingerprint:
                    entries[other.fingerprint] = _entry(replace(f, object_kind=other.kind, object_name=other.name,
                                                                object_namespace=other.namespace,
                                                                container=other.container,
                                                                fingerprint=other.fingerprint), relative(f.file))
    document = {"version": _FORMAT, "tool": "admission",
                "findings": [entries[k] for k in sorted(entries)]}
    text = json.dumps(document, indent=2, ensure_ascii=False) + "\n"
    try:
        write_atomic(path, text.encode("utf-8"), mode=new_file_mode(path))
    except OSError as exc:
        raise InputError(f"cannot write the baseline: {exc.strerror or exc}", file=path) from None
    return len(entries)
