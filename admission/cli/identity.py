"""Finding identity (architecture §2): a fingerprint that survives edits elsewhere, for baselines and CI systems.

A fingerprint hashes the rule, the file relative to its repository root, the object (kind, namespace and
name; a Dockerfile by its file alone, an image by its repository), the container and the rule's key. Never
the line, the message, a list index or a digest. Two distinct findings in one run never share one: a repeat
(the same object twice in one stream) gets an occurrence number, in report order.
"""

from __future__ import annotations

from collections.abc import Callable

from admission.findings import Finding, Report

_VERSION = "admission/v1"  # bump when the recipe changes, so old baselines go stale instead of matching wrongly


def _object(f: Finding) -> str:
    if f.object_kind == "Dockerfile":
        return "Dockerfile"  # its `stage N` name moves when a stage is added; the file identifies it
    if f.object_kind == "Image":
        from admission.policy.rules.common import repository

        return f"Image\0{repository(f.object_name)}"
    return f"{f.object_kind}\0{f.object_namespace or ''}\0{f.object_name}"


def _recipe(f: Finding, file: str) -> str:
    return "\0".join((_VERSION, f.rule, file, _object(f), f.container or "", f.key))


# The slot's own setter: findings are frozen, and `dataclasses.replace` of each (a new Finding through its __init__)
# was a third of the cost of fingerprints on a 10,000-document stream with 54,000 findings (issue 27's benchmark).
_SET_FINGERPRINT = Finding.fingerprint.__set__  # type: ignore[attr-defined]


def assign(report: Report, *, relative: Callable[[str], str]) -> None:
    """Set every finding's fingerprint, `relative` giving the file each is keyed by. In place, through the slot: the
    report's findings are its own and nothing has hashed them or kept them yet (fingerprints come before merging,
    baselines and reports). Repeats are counted by recipe, so each finding is hashed once."""
    from hashlib import sha256  # here, not at the top: the text report needs no fingerprint, and OpenSSL costs ~4 ms

    seen: dict[str, int] = {}
    files: dict[str, str] = {}
    for f in report.findings:
        file = files.get(f.file)
        if file is None:
            file = files[f.file] = relative(f.file)
        text = _recipe(f, file)
        n = seen[text] = seen.get(text, 0) + 1
        if n > 1:
            text += f"\0{n}"
        _SET_FINGERPRINT(f, sha256(text.encode()).hexdigest()[:32])
