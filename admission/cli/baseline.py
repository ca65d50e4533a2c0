"""Baselines (DESIGN §2): adopt the rules on a repository that already has findings, then only shrink.

A baseline is one JSON file of fingerprints (cli/identity.py), each with the rule, file and object for the
reviewer; only the fingerprint matches. Unlike checkov's, a match needs the file and the rule's key, so a
new violation in another file, or a second one in the same object, is never absorbed.
"""

from __future__ import annotations

import json
import os
import tempfile
from collections.abc import Callable
from dataclasses import replace

from admission.errors import InputError
from admission.findings import Finding, Report

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


def write(path: str, report: Report, *, relative: Callable[[str], str]) -> int:
    """Write every finding no exemption suppresses (a baseline's own suppressions are kept), sorted by
    fingerprint so the file diffs well. Returns the number of entries. Written atomically."""
    entries = {f.fingerprint: _entry(f, relative(f.file)) for f in report.findings
               if f.fingerprint and (not f.suppressed or f.reason == BASELINE_REASON)}
    for f in report.findings:  # the other objects of a finding reported once keep their own entries
        if f.fingerprint in entries:
            for other in f.also:
                if other.fingerprint:
                    entries[other.fingerprint] = _entry(replace(f, object_kind=other.kind, object_name=other.name,
                                                                object_namespace=other.namespace,
                                                                container=other.container,
                                                                fingerprint=other.fingerprint), relative(f.file))
    document = {"version": _FORMAT, "tool": "admission",
                "findings": [entries[k] for k in sorted(entries)]}
    folder = os.path.dirname(os.path.abspath(path))
    try:
        fd, tmp = tempfile.mkstemp(dir=folder, prefix=".baseline-")
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            json.dump(document, fh, indent=2, ensure_ascii=False)
            fh.write("\n")
        os.replace(tmp, path)
    except OSError as exc:
        raise InputError(f"cannot write the baseline: {exc.strerror or exc}", file=path) from None
    return len(entries)
