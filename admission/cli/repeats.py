"""A finding once (issue 20): the same finding for several objects is reported once, naming each object.

A Dockerfile that two compose files build (`docker-compose.yml` and `docker-compose.prod.yml`, each with a service
`app` and `build: .`) gave every finding on the Dockerfile twice, word for word, with nothing to tell the two apart.
Findings equal in file, line, rule and message (and in severity and suppression, so no state is lost) are merged
into the first, in report order, which keeps its fingerprint; the others are listed in `also` with theirs, so a
baseline written before the merge still matches (no entry goes stale) and JUnit still fails each object's case.
"""

from __future__ import annotations

from dataclasses import replace

from admission.findings import Finding, Reported, Report


def _key(f: Finding) -> tuple[object, ...]:
    return (f.file, f.line, f.rule, f.message, f.severity, f.suppressed, f.reason, f.would_deny)


def reported(f: Finding) -> Reported:
    return Reported(f.object_file or f.file, f.object_kind, f.object_name, f.object_namespace, f.container,
                    f.fingerprint)


def merge_repeats(report: Report) -> int:
    """Merge repeated findings in place; returns how many were merged away."""
    # Keyed first by file, line, rule and message, which nearly every finding has to itself; only when two share them
    # are the whole keys compared (a key of eight fields for each of 54,000 findings cost 4% of issue 27's benchmark).
    first: dict[tuple[object, ...], int] = {}
    whole: dict[tuple[object, ...], int] = {}
    kept: list[Finding] = []
    merged = 0
    for f in report.findings:
        short = (f.file, f.line, f.rule, f.message)
        at = first.get(short)
        if at is None:
            first[short] = len(kept)
            kept.append(f)
            continue
        whole.setdefault(_key(kept[at]), at)
        key = _key(f)
        at = whole.get(key)
        if at is None:
            whole[key] = len(kept)
            kept.append(f)
            continue
        merged += 1
        kept[at] = replace(kept[at], also=(*kept[at].also, reported(f)))
    if merged:
        report.findings[:] = kept
    return merged


def objects(f: Finding) -> tuple[Reported, ...]:
    """Every object a finding is reported for: its own, then the others."""
    return (reported(f), *f.also)


def fingerprints(f: Finding) -> tuple[str, ...]:
    """The finding's fingerprint and those of the repeats merged into it."""
    return tuple(p for p in (f.fingerprint, *(o.fingerprint for o in f.also)) if p)
