"""Finding identity (architecture §2): a fingerprint that survives edits elsewhere, for baselines and CI systems.

A fingerprint hashes the rule, the file relative to its repository root, the object (kind, namespace and
name; a Dockerfile by its file alone, an image by its repository), the container and the rule's key. Never
the line, the message, a list index or a digest. Two distinct findings in one run never share one: a repeat
(the same object twice in one stream) gets an occurrence number, in report order.
"""

from __future__ import annotations

from admission.findings import Finding, Report
from admission.inputs.paths import RepoPaths

_VERSION = "admission/v1"  # bump when the recipe changes, so old baselines go stale instead of matching wrongly


def _object(f: Finding) -> str:
    if f.object_kind == "Dockerfile":
        return "Dockerfile"  # its `stage N` name moves when a stage is added; the file identifies it
    if f.object_kind == "Image":
        from admission.policy.rules.common import repository

        return f"Image\0{repository(f.object_name)}"
    return f"{f.object_kind}\0{f.object_namespace or ''}\0{f.object_name}"


def fingerprint(f: Finding, *, file: str, occurrence: int = 1) -> str:
    import hashlib  # here, not at the top: the text report needs no fingerprint, and loading OpenSSL costs ~4 ms

    parts = [_VERSION, f.rule, file, _object(f), f.container or "", f.key]
    if occurrence > 1:
        parts.append(str(occurrence))
    return hashlib.sha256("\0".join(parts).encode()).hexdigest()[:32]


# The slot's own setter: findings are frozen, and `dataclasses.replace` of each (a new Finding through its __init__)
# was a third of the cost of fingerprints on a 10,000-document stream with 54,000 findings (issue 27's benchmark).
_SET_FINGERPRINT = Finding.fingerprint.__set__  # type: ignore[attr-defined]


def assign(report: Report, paths: RepoPaths) -> None:
    """Set every finding's fingerprint. In place, through the slot: the report's findings are its own and nothing has
    hashed them or kept them yet (the engine made them; fingerprints come before merging, baselines and reports)."""
    seen: dict[str, int] = {}
    relative: dict[str, str] = {}
    for f in report.findings:
        file = relative.get(f.file)
        if file is None:
            file = relative[f.file] = paths.relative(f.file)
        first = fingerprint(f, file=file)
        n = seen[first] = seen.get(first, 0) + 1
        _SET_FINGERPRINT(f, first if n == 1 else fingerprint(f, file=file, occurrence=n))
