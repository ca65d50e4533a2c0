"""Findings and reports: plain data, no logic beyond counting."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

from admission.model import Origin, frozen

Severity = Literal["deny", "warn"]


@frozen
class Violation:
    """What a rule yields: where, what and how to fix. The engine adds rule id, severity and suppression."""

    message: str
    remediation: str
    origin: Origin
    value: str | None = None
    container: str | None = None
    # What is wrong inside the object, short and stable (`limits.cpu`, `hostPort 8080/TCP`, `user`): part of the
    # finding's fingerprint (architecture §2), so never a line, a list index, a digest or a message. "" = the field path.
    key: str = ""
    # "warn" caps the rule's severity for this violation: something the rule could not check (a base image named by a
    # build arg with no value) is worth seeing in every format but must not fail a build as a deny would. None: the
    # rule's configured severity.
    severity: Severity | None = None


@frozen
class Proof:
    """What a verifying rule yields when its check passed: where, and what was proven ("verified sha256:… by key …").
    The engine reports it under `verified`; it is never counted, suppressed or failed on."""

    message: str
    origin: Origin
    value: str | None = None
    container: str | None = None


@frozen
class Verified:
    """A Proof with its rule and object, as reports show it."""

    rule: str
    message: str
    value: str | None
    file: str
    line: int | None
    path: str
    object_kind: str
    object_name: str
    object_namespace: str | None
    container: str | None


@frozen
class Reported:
    """An object a finding is reported for: a finding the same in file, line, rule and message for several objects
    (a Dockerfile two compose files build) is reported once, naming each (cli/repeats.py)."""

    file: str  # the object's own file: the compose file of a service, not its Dockerfile
    kind: str
    name: str
    namespace: str | None
    container: str | None
    fingerprint: str | None = None


@frozen  # a denying request builds a Finding per violation: the frozen __init__ was most of evaluate's time
class Finding:
    rule: str
    severity: Severity
    message: str
    remediation: str
    value: str | None
    file: str
    line: int | None
    path: str
    source: str
    object_kind: str
    object_name: str
    object_namespace: str | None
    container: str | None
    suppressed: bool = False
    reason: str | None = None
    key: str = ""
    fingerprint: str | None = None
    object_file: str = ""  # the file of the object the finding belongs to (finding.file may be its Dockerfile)  # set by the CLI, which knows the repository root (cli/identity.py)
    # Under `enforcement: warn`, a finding whose rule would have denied: reported at warn, counted apart so that an
    # operator sees what switching to deny would refuse (warn-level rules stay plain warnings).
    would_deny: bool = False
    # The other objects this finding was also reported for, when it is reported once for several (their fingerprints
    # still match a baseline written before: cli/baseline.py); empty for most findings.
    also: tuple[Reported, ...] = ()


@frozen
class Evaluated:
    """An object the engine evaluated, with the rules that ran on it: JUnit reports a test case per pair."""

    kind: str
    name: str
    namespace: str | None
    file: str
    source: str
    rules: tuple[str, ...]


@frozen
class Problem:
    """An input that could not be read or interpreted, or a dropped inline exemption. Entries of `errors`."""

    message: str
    file: str | None
    line: int | None = None
    path: str | None = None


@dataclass(slots=True)
class Report:
    findings: list[Finding] = field(default_factory=list)
    errors: list[Problem] = field(default_factory=list)
    files: int = 0
    objects: int = 0
    skipped_files: int = 0
    evaluated: list[Evaluated] = field(default_factory=list)
    skipped: list[tuple[str, str]] = field(default_factory=list)  # (file, reason) of files a walk left out
    stale_baseline_entries: int = 0
    config: str | None = None  # the repository's .admission.yaml in use, as shown
    excluded: dict[str, int] = field(default_factory=dict)  # files left out by each exclude pattern (its label)
    verified: list[Verified] = field(default_factory=list)  # what verifying rules proved (signatures, provenance)

    def count(self, severity: Severity) -> int:
        return sum(1 for f in self.findings if f.severity == severity and not f.suppressed)

    @property
    def suppressed(self) -> int:
        return sum(1 for f in self.findings if f.suppressed)

