"""One JSON line per decision (architecture §3): who asked for what, the verdict and why, and how long it took.

Never secrets, never whole objects: the rules with their containers, suppressed items with their reasons,
and the envelope's identifying fields. Written straight to a stream (stdout by default), one write per line,
because the logging module's formatting costs more than the line itself on the hot path.
"""

from __future__ import annotations

import asyncio
import os
import sys
import threading
import time
from typing import IO, Any

from pydantic_core import to_json

from admission.webhook.mutate import Mutation
from admission.webhook.review import AdmissionRequest, Decision

__all__ = ["AuditLog", "mutation_record", "record"]


def record(request: AdmissionRequest | None, decision: Decision, *, duration: float, deadline: float | None = None,
           extra: dict[str, Any] | None = None) -> dict[str, Any]:
    """The audit fields of one decision."""
    rules: dict[str, dict[str, Any]] = {}
    suppressed: list[dict[str, Any]] = []
    report = decision.report
    if report is not None:
        for f in report.findings:
            if f.suppressed:
                suppressed.append({"rule": f.rule, "container": f.container, "reason": f.reason})
                continue
            entry = rules.setdefault(f.rule, {"rule": f.rule, "severity": f.severity, "containers": []})
            if f.would_deny:
                entry["would_deny"] = True
            if f.container and f.container not in entry["containers"]:
                entry["containers"].append(f.container)
    user = request.userInfo.username if request is not None and request.userInfo is not None else ""
    out: dict[str, Any] = {
        "ts": round(time.time(), 3),
        "audit": "admission",
        "uid": request.uid if request is not None else "",
        "kind": decision.kind or (request.kind.kind if request is not None and request.kind is not None else ""),
        "namespace": decision.namespace or (request.namespace or "" if request is not None else ""),
        "name": decision.name or (request.name or "" if request is not None else ""),
        "operation": request.operation if request is not None else "",
        "subResource": (request.subResource or "") if request is not None else "",
        "user": user,
        "dryRun": bool(request.dryRun) if request is not None else False,
        "allowed": decision.allowed,
        "code": decision.code,
        "result": decision.result,
        "rules": list(rules.values()),
        "suppressed": suppressed,
        "warnings": len(decision.warnings),
        "would_deny": decision.would_deny,
        "duration_ms": round(duration * 1000, 3),
    }
    if decision.owner_verified is not None:
        out["owner"] = decision.owner
        out["owner_verified"] = decision.owner_verified
        if decision.owner_problem:
            out["owner_problem"] = decision.owner_problem
        if decision.manual_run:
            out["manual_run"] = decision.manual_run
    if decision.skipped:
        out["skipped"] = decision.skipped
    if decision.result == "invalid" and decision.message:
        out["message"] = decision.message
    if decision.images:
        out["images"] = decision.images  # image, container, precise reason and message: never in the answer
    if decision.signatures:
        out["signatures"] = decision.signatures  # what was verified, by which key; an unanswered registry's error
    if decision.mutated:
        out["mutated"] = decision.mutated  # container, from, to, and how this process knows (webhook/mutate.py)
    if report is not None and report.errors:
        out["problems"] = [p.message for p in report.errors]
    if deadline is not None:
        out["deadline_ms"] = round(deadline * 1000, 1)
    if extra:
        out.update(extra)
    return out


def mutation_record(request: AdmissionRequest, mutation: Mutation, *, duration: float,
                    deadline: float | None = None) -> dict[str, Any]:
    """The audit fields of one /mutate answer: what was pinned (container, from, to), what was left as written and why
    (a lookup's precise reason included: the answer itself carries none), or why nothing was considered."""
    out: dict[str, Any] = {
        "ts": round(time.time(), 3),
        "audit": "admission",
        "webhook": "mutate",
        "uid": request.uid,
        "kind": mutation.kind or (request.kind.kind if request.kind is not None else ""),
        "namespace": mutation.namespace or request.namespace or "",
        "name": mutation.name or request.name or "",
        "operation": request.operation,
        "subResource": request.subResource or "",
        "user": request.userInfo.username if request.userInfo is not None else "",
        "dryRun": bool(request.dryRun),
        "allowed": True,
        "result": mutation.result,
        "pinned": mutation.pinned,
        "left": mutation.left,
        "duration_ms": round(duration * 1000, 3),
    }
    if mutation.skipped:
        out["skipped"] = mutation.skipped
    if deadline is not None:
        out["deadline_ms"] = round(deadline * 1000, 1)
    return out


class AuditLog:
    """Writes one compact JSON line per call. `enabled` False makes it a no-op (ADMISSION_AUDIT=false).

    A real file or pipe (stdout by default) gets the lines with os.write, those of one event-loop turn together
    (under load that is one system call for many decisions; the lines are out before the loop waits for I/O
    again, and `flush()` at shutdown writes what is left). Other streams (tests) get write() and flush() per line.
    """

    def __init__(self, stream: IO[str] | None = None, *, enabled: bool = True) -> None:
        self.stream = stream if stream is not None else sys.stdout
        self.enabled = enabled
        self._lock = threading.Lock()
        self._pending: list[str] = []
        self._fd: int | None = None
        try:
            self.stream.flush()
            self._fd = self.stream.fileno()
        except (AttributeError, OSError, ValueError):
            self._fd = None

    def write(self, fields: dict[str, Any]) -> None:
        if not self.enabled:
            return
        # pydantic-core's encoder (compact, UTF-8 as is): a fraction of json.dumps's time on the hot path
        line = to_json(fields, fallback=str).decode() + "\n"
        if self._fd is not None:
            with self._lock:
                self._pending.append(line)
                first = len(self._pending) == 1
            if first:
                try:
                    asyncio.get_running_loop().call_soon(self.flush)
                except RuntimeError:
                    self.flush()  # no loop running: write now
            return
        try:
            with self._lock:
                self.stream.write(line)
                self.stream.flush()
        except (OSError, ValueError):
            pass  # a closed or broken stdout must not turn a decision into a 500

    def flush(self) -> None:
        with self._lock:
            lines, self._pending = self._pending, []
        if not lines or self._fd is None:
            return
        data = "".join(lines).encode()
        try:
            while data:
                data = data[os.write(self._fd, data):]
        except OSError:
            pass
