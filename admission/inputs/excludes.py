"""Gitignore-style excludes, hand-written: pathspec (the test oracle, tests/test_repo_config.py) costs ~17 ms of import on the check path and re-includes files under an excluded folder, which git never does."""

from __future__ import annotations

import os
import re
from collections.abc import Sequence
from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class Pattern:
    """One exclude pattern, as git reads a .gitignore line: `!` re-includes, a trailing `/` matches folders only,
    a `/` at the start or in the middle anchors it to the repository root (else it matches at any depth), `*` and
    `?` stay within one folder, `**` spans folders."""

    text: str  # as written, for reports
    origin: str  # where it was written: `.admission.yaml:5` or `--exclude`
    negated: bool
    folders_only: bool
    regex: re.Pattern[str]

    @property
    def label(self) -> str:
        return f"{self.text} ({self.origin})"


def compile_pattern(text: str, *, origin: str) -> Pattern:
    """ValueError says what is wrong with the pattern."""
    negated = text.startswith("!")
    body = _trim(text[1:] if negated else text)
    folders_only = body.endswith("/")
    body = body.rstrip("/")
    if not body:
        raise ValueError(f"pattern {text!r} names no path")
    anchored = "/" in body
    segments = body.removeprefix("/").split("/")
    regex = "" if anchored else "(?:.*/)?"
    for index, segment in enumerate(segments):
        last = index == len(segments) - 1
        if segment == "**":
            regex += ".*" if last else "(?:.*/)?"  # `a/**` is everything in a; `**/b` and `a/**/b` any depth
            continue
        regex += _glob(segment, text) + ("" if last else "/")
    return Pattern(text=text, origin=origin, negated=negated, folders_only=folders_only,
                   regex=re.compile(regex, re.DOTALL))


def _trim(text: str) -> str:
    """Trailing spaces go, as git drops them, unless escaped with a backslash."""
    stripped = text.rstrip(" ")
    if stripped.endswith("\\") and len(stripped) < len(text):
        return stripped + " "
    return stripped


def _glob(segment: str, text: str) -> str:
    out: list[str] = []
    i = 0
    while i < len(segment):
        ch = segment[i]
        if ch == "\\":
            if i + 1 == len(segment):
                raise ValueError(f"pattern {text!r} ends in a lone backslash")
            out.append(re.escape(segment[i + 1]))
            i += 2
            continue
        if ch == "*":
            out.append("[^/]*")
        elif ch == "?":
            out.append("[^/]")
        elif ch == "[":
            first = i + 2 if segment[i + 1:i + 2] in ("!", "^") else i + 1
            end = segment.find("]", first + 1)  # a `]` first in the class is a member, as in fnmatch
            if end < 0:
                raise ValueError(f"pattern {text!r} has a `[` without its `]` (write \\[ for a literal one)")
            body = segment[i + 1:end]
            negate = body[:1] in ("!", "^")
            members = "".join(c if c == "-" else re.escape(c) for c in (body[1:] if negate else body))
            out.append(f"(?!/)[{'^' if negate else ''}{members}]")
            i = end + 1
            continue
        else:
            out.append(re.escape(ch))
        i += 1
    return "".join(out)


class Excludes:
    """The patterns of one run, matched against paths relative to `root` (the repository root)."""

    def __init__(self, patterns: Sequence[Pattern], *, root: str) -> None:
        self.patterns = tuple(patterns)
        self.root = os.path.abspath(root)

    def __bool__(self) -> bool:
        return bool(self.patterns)

    def relative(self, path: str) -> str | None:
        """`path` relative to the root, `/`-separated; None outside it (patterns never reach there)."""
        relative = os.path.relpath(os.path.abspath(path), self.root)
        if relative == "." or relative == ".." or relative.startswith(".." + os.sep):
            return None
        return relative.replace(os.sep, "/")

    def match(self, path: str, *, folder: bool) -> Pattern | None:
        """The pattern that excludes this one path, or None. The last pattern that matches decides, as in a
        .gitignore. A walk asks for each entry it meets and never enters an excluded folder, so the folders above
        the PATH it was given are never asked: a PATH named on the command line is never excluded."""
        relative = self.relative(path)
        if relative is None:
            return None
        decided = None
        for pattern in self.patterns:
            if (folder or not pattern.folders_only) and pattern.regex.fullmatch(relative):
                decided = pattern
        return None if decided is None or decided.negated else decided

    def match_with_parents(self, path: str, *, folder: bool = False) -> Pattern | None:
        """For a file named with --as-walk, or one a compose build reads: as a walk from the root would meet it,
        folders above it first (git never looks inside an excluded folder, so nothing there can be re-included)."""
        relative = self.relative(path)
        if relative is None:
            return None
        parts = relative.split("/")
        for depth in range(1, len(parts)):
            hit = self.match(os.path.join(self.root, *parts[:depth]), folder=True)
            if hit is not None:
                return hit
        return self.match(path, folder=folder)
