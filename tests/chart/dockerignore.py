"""What `docker build` sends as its context, by Docker's own `.dockerignore` rules (moby/patternmatcher), so a
test can see which files reach the builder without a Docker engine.

- Lines are trimmed; empty lines and `#` comments are skipped; `!` makes an exception; each pattern is cleaned
  like Go's `filepath.Clean` and a leading `/` is dropped.
- `*` and `?` stay inside one path segment, `**` spans any number of them.
- A file is excluded when the last pattern matching it, or any folder above it, is not an exception.
"""

from __future__ import annotations

import os
import posixpath
import re
from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class Pattern:
    text: str
    exception: bool
    regex: re.Pattern[str]


def _compile(pattern: str) -> re.Pattern[str]:
    out, i = "^", 0
    while i < len(pattern):
        ch = pattern[i]
        if ch == "*":
            if pattern[i + 1:i + 2] == "*":
                i += 1
                if pattern[i + 1:i + 2] == "/":
                    i += 1
                out += ".*" if i + 1 >= len(pattern) else "(.*/)?"
            else:
                out += "[^/]*"
        elif ch == "?":
            out += "[^/]"
        elif ch == "\\" and i + 1 < len(pattern):
            i += 1
            out += re.escape(pattern[i])
        else:
            out += re.escape(ch)
        i += 1
    return re.compile(out + "$")


def read_patterns(path: Path) -> list[Pattern]:
    patterns = []
    for raw in path.read_text().splitlines():
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        exception = line.startswith("!")
        if exception:
            line = line[1:].strip()
        line = posixpath.normpath(line)
        if len(line) > 1 and line.startswith("/"):
            line = line[1:]
        patterns.append(Pattern(line, exception, _compile(line)))
    return patterns


def excluded(rel: str, patterns: list[Pattern]) -> bool:
    parts = rel.split("/")
    candidates = ["/".join(parts[:i + 1]) for i in range(len(parts))]
    result = False
    for pattern in patterns:
        if any(pattern.regex.match(c) for c in candidates):
            result = not pattern.exception
    return result


def context_files(root: Path, dockerignore: Path | None = None) -> set[str]:
    """Relative paths of the files `docker build root` would send."""
    patterns = read_patterns(dockerignore or root / ".dockerignore")
    exceptions = [p.text for p in patterns if p.exception]
    sent: set[str] = set()
    for folder, dirs, files in os.walk(root):
        base = os.path.relpath(folder, root)
        base = "" if base == "." else base.replace(os.sep, "/") + "/"
        # Like Docker, skip a whole excluded folder unless an exception could re-include something below it.
        dirs[:] = [d for d in dirs if not (excluded(base + d, patterns) and not any(
            e == base + d or e.startswith(base + d + "/") or "*" in e for e in exceptions))]
        sent |= {base + f for f in files if not excluded(base + f, patterns)}
    return sent
