"""Build contexts on disk -> what a build sends and what its COPY/ADD take (architecture §4 build-context).

A context is walked as BuildKit sends it: `.dockerignore` (or `<Dockerfile>.dockerignore` beside the Dockerfile,
which BuildKit prefers) applied with Docker's own pattern rules, through e2b-dockerfile-utils' port of
moby/patternmatcher (tests/dockerignore/ compares it with moby's own test vectors). Folders that are
excluded and that no `!` exception can reach into are not entered, as BuildKit's walker skips them.

The walk is bounded (file count and time), breadth first so that files near the root are seen first, and it
says when it stopped early. One `ContextCache` is one run: a context is walked at most once however many
services (or Dockerfiles) share it, with one ignore file; the rules read the result from the model.
"""

from __future__ import annotations

import os
import re
import time
from collections import deque
from collections.abc import Callable, Sequence
from typing import Any

from admission.model import BuildContext, ContextCopy, Origin

MAX_FILES = 20_000  # directory entries looked at per context
MAX_SECONDS = 2.0
MAX_IGNORE_BYTES = 1 << 20
_GLOB = frozenset("*?[\\")


class _Walked:
    __slots__ = ("cut", "error", "files")

    def __init__(self, files: tuple[str, ...], cut: str | None, error: str | None) -> None:
        self.files = files  # sent files, relative, '/'-separated, breadth first
        self.cut = cut
        self.error = error


class ContextCache:
    """One run's walks of build contexts, by (context, ignore file). `walked` lists each walk, for tests and audits.

    `secret_patterns` are build-context's base-name globs (the policy's `secret_patterns`, given by the caller):
    a copied file whose name matches one is opened to tell a PEM file without a private key (public material);
    no other file is ever opened. Empty: none is opened, and every match counts as a secret.
    """

    def __init__(self, *, max_files: int = MAX_FILES, max_seconds: float = MAX_SECONDS,
                 secret_patterns: Sequence[str] = ()) -> None:
        self.max_files = max_files
        self.max_seconds = max_seconds
        self.walked: list[str] = []
        self.opened: list[str] = []  # the files read to tell public PEM material, for tests
        self._walks: dict[tuple[str, str | None], _Walked] = {}
        self._names = _name_matcher(secret_patterns)
        self._public: dict[str, bool] = {}

    def public(self, context: str, files: tuple[str, ...]) -> tuple[str, ...]:
        """Those of `files` (relative to `context`) with a secret-looking name that are PEM files without a private
        key in their first 64 KiB; each file is read once per run."""
        if self._names is None:
            return ()
        out = []
        for rel in files:
            if not self._names.match(rel.rsplit("/", 1)[-1]):
                continue
            path = os.path.join(context, rel)
            if os.path.islink(path):
                continue  # the build sends the link itself, not what it points to: nothing here to read
            real = os.path.realpath(path)
            found = self._public.get(real)
            if found is None:
                self.opened.append(rel)
                found = self._public[real] = _public_pem(real)
            if found:
                out.append(rel)
        return tuple(out)

    def walk(self, context: str, ignore: str | None) -> _Walked:
        key = (os.path.realpath(context), os.path.realpath(ignore) if ignore else None)
        found = self._walks.get(key)
        if found is None:
            self.walked.append(key[0])
            found = self._walks[key] = _walk(key[0], ignore, max_files=self.max_files, max_seconds=self.max_seconds)
        return found


# --------------------------------------------------------------------------------------------------
# PEM files: a certificate or a public key is not a secret
# --------------------------------------------------------------------------------------------------

PEM_HEAD_BYTES = 64 * 1024
_PEM_BEGIN = re.compile(rb"^-----BEGIN ([^\r\n-]+)-----[ \t\r]*$", re.M)


def _name_matcher(patterns: Sequence[str]) -> re.Pattern[str] | None:
    """One regex for the file patterns among build-context's globs (case-sensitive base-name globs, as the rule
    matches them); folder patterns (`.ssh/`) stay secret as a whole and open nothing."""
    import fnmatch

    files = [fnmatch.translate(p) for p in patterns if not p.endswith("/")]
    return re.compile("|".join(f"(?:{f})" for f in files)) if files else None


def _public_pem(path: str) -> bool:
    """Whether a file is PEM (RFC 7468: a `-----BEGIN <label>-----` line) with no private key among the labels of its
    first 64 KiB (`PRIVATE KEY`, `RSA PRIVATE KEY`, `ENCRYPTED PRIVATE KEY`, `OPENSSH PRIVATE KEY`, PGP's `PRIVATE KEY
    BLOCK`). Anything else, or a file that cannot be read, is not known to be public."""
    try:
        with open(path, "rb") as fh:
            head = fh.read(PEM_HEAD_BYTES)
    except OSError:
        return False
    labels = _PEM_BEGIN.findall(head)
    return bool(labels) and not any(b"PRIVATE KEY" in label for label in labels)


# --------------------------------------------------------------------------------------------------
# .dockerignore
# --------------------------------------------------------------------------------------------------


def ignore_lines(text: str) -> list[str]:
    """The lines of a .dockerignore as moby's ignorefile.ReadAll scans them (a UTF-8 BOM dropped, CR-LF ends)."""
    return [line.removesuffix("\r") for line in text.removeprefix("\ufeff").split("\n")]


def matcher(lines: Sequence[str]) -> Any:
    """A moby/patternmatcher PatternMatcher for .dockerignore lines (comments, blanks, `!`, leading `/` handled
    as ignorefile.ReadAll does); ValueError names an invalid line, as `docker build` refuses it."""
    from e2b_dockerfile_utils.dockerignore import PatternMatcher  # lazily: only contexts with a .dockerignore

    try:
        return PatternMatcher(list(lines))
    except ValueError:
        for number, line in enumerate(lines, 1):
            try:
                PatternMatcher([line])
            except ValueError as exc:
                raise ValueError(f"line {number}: {exc}") from None
        raise


def _read_ignore(path: str) -> list[str]:
    with open(path, "rb") as fh:
        data = fh.read(MAX_IGNORE_BYTES + 1)
    if len(data) > MAX_IGNORE_BYTES:
        raise ValueError(f"larger than {MAX_IGNORE_BYTES >> 20} MiB")
    return ignore_lines(data.decode("utf-8", errors="replace"))


# --------------------------------------------------------------------------------------------------
# the walk
# --------------------------------------------------------------------------------------------------


def _walk(root: str, ignore: str | None, *, max_files: int, max_seconds: float) -> _Walked:
    excluded: Callable[[str], bool] | None = None
    may_reinclude: Callable[[str], bool] | None = None
    if ignore is not None:
        try:
            lines = _read_ignore(ignore)
            if any(line.strip() and not line.startswith("#") for line in lines):
                pm = matcher(lines)
                excluded, may_reinclude = pm.matches, pm.may_match_under
        except (OSError, ValueError) as exc:
            reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)
            return _Walked((), None, f"{os.path.basename(ignore)} cannot be read as Docker reads it: {reason}")
    deadline = time.monotonic() + max_seconds
    files: list[str] = []
    queue: deque[str] = deque([""])
    seen = 0
    unreadable: list[str] = []
    cut: str | None = None
    while queue and cut is None:
        rel = queue.popleft()
        if time.monotonic() > deadline:
            cut = f"the walk of the context stopped after {max_seconds:g} s ({seen} entries seen)"
            break
        try:
            with os.scandir(os.path.join(root, rel) if rel else root) as it:
                entries = sorted((e.name, e.is_dir(follow_symlinks=False)) for e in it)
        except OSError:
            unreadable.append(rel)
            continue
        for name, is_dir in entries:
            seen += 1
            if seen > max_files:
                cut = f"the walk of the context stopped after {max_files:,} entries"
                break
            path = f"{rel}/{name}" if rel else name
            out = excluded is not None and excluded(path)
            if is_dir:
                if not out or (may_reinclude is not None and may_reinclude(path)):
                    queue.append(path)
            elif not out:
                files.append(path)
    if unreadable and cut is None:
        shown = ", ".join(f"{u}/" for u in unreadable[:3]) + (" ..." if len(unreadable) > 3 else "")
        cut = f"{len(unreadable)} folder{'s' if len(unreadable) > 1 else ''} could not be read ({shown})"
    return _Walked(tuple(files), cut, None)


# --------------------------------------------------------------------------------------------------
# COPY/ADD sources -> the context files they take
# --------------------------------------------------------------------------------------------------


def _clean(source: str) -> str:
    """A COPY source as BuildKit resolves it against the context root: leading `/` and `./` and `..` held at the root."""
    parts: list[str] = []
    for part in source.replace("\\", "/").split("/"):
        if part in ("", "."):
            continue
        if part == "..":
            if parts:
                parts.pop()
            continue
        parts.append(part)
    return "/".join(parts)


def _component(part: str) -> str:
    """One path component of a Go filepath.Match pattern as a regex that never crosses a `/`."""

    out: list[str] = []
    i, n = 0, len(part)
    while i < n:
        ch = part[i]
        i += 1
        if ch == "*":
            out.append("[^/]*")
        elif ch == "?":
            out.append("[^/]")
        elif ch == "\\" and i < n:
            out.append(re.escape(part[i]))
            i += 1
        elif ch == "[":
            negate = i < n and part[i] == "^"
            j = i + negate
            items: list[str] = []
            while j < n and part[j] != "]":
                if part[j] == "\\" and j + 1 < n:
                    j += 1
                items.append(part[j] if part[j] == "-" else re.escape(part[j]))
                j += 1
            if j >= n or not items:  # not a class: Go refuses the pattern; taken literally here
                out.append(re.escape(ch))
                continue
            out.append(("[^/" if negate else "[") + "".join(items) + "]")
            i = j + 1
        else:
            out.append(re.escape(ch))
    return "".join(out)


def _source_test(source: str) -> Callable[[str], str | None]:
    """For one cleaned source: a file -> the file's path below the copied item ("" for the item itself), or None.

    A source includes a file when it is that file, a folder above it, or a glob (Go filepath.Match per path
    component; `**` any number of components, as with `COPY --parents`) matching it or a folder above it."""
    if source == "":
        return lambda path: path
    if not any(ch in _GLOB for ch in source):
        prefix = source + "/"
        return lambda path: "" if path == source else path[len(prefix):] if path.startswith(prefix) else None

    parts = source.split("/")
    regex = ""
    for k, part in enumerate(parts):
        if part == "**":
            regex += "(?:[^/]+/)*" if k < len(parts) - 1 else "[^/]+"
            continue
        regex += _component(part) + "/"
    compiled = re.compile(regex.removesuffix("/") + r"(?:/(.*))?\Z", re.S)

    def test(path: str) -> str | None:
        m = compiled.match(path)
        return None if m is None else (m.group(1) or "")

    return test


def _copied(op: Any, files: tuple[str, ...]) -> tuple[str, ...]:
    """The sent files a COPY/ADD takes, after its `--exclude`s (patterns relative to each copied item's root)."""
    sources = [_clean(s) for s in op.sources]
    if "" in sources and not op.excludes:
        return files
    tests = [_source_test(s) for s in sources]
    excluded = matcher(op.excludes).matches if op.excludes else None
    out = []
    for path in files:
        for test in tests:
            below = test(path)
            if below is None:
                continue
            if excluded is not None and excluded(below or path.rsplit("/", 1)[-1]):
                continue
            out.append(path)
            break
    return tuple(out)


def gather(cache: ContextCache, *, context: str, context_display: str, dockerfile: str | None,
           stages: Sequence[tuple[Any, str]], dockerfile_display: str, line_offset: int = 0,
           path_prefix: str = "") -> BuildContext | None:
    """The BuildContext of one build, or None when none of the stages it needs reads the context.

    `dockerfile` is the Dockerfile's real path (None for `dockerfile_inline`, whose lines count from
    `line_offset`). `stages` are the build's stages that can copy from the context, with how each is reached
    (dockerfile.context_stages: the caller knows the Dockerfile, this module only the context).
    """
    reading = [(stage, why, op) for stage, why in stages
               for op in stage.context_copies if op.from_ is None and op.sources]
    if not reading or not os.path.isdir(context):
        return None
    ignore, ignore_display = None, os.path.join(context_display, ".dockerignore") if context_display else ".dockerignore"
    if dockerfile is not None:
        beside = dockerfile + ".dockerignore"
        if os.path.isfile(beside):
            ignore = beside
            ignore_display = dockerfile_display + ".dockerignore"
    if ignore is None and os.path.isfile(os.path.join(context, ".dockerignore")):
        ignore = os.path.join(context, ".dockerignore")
    walked = cache.walk(context, ignore)
    copies: list[ContextCopy] = []
    if walked.error is None:
        for stage, why, op in reading:
            try:
                files = _copied(op, walked.files)
            except ValueError:  # an invalid --exclude: BuildKit refuses the build, nothing is copied
                files = ()
            line = op.line + line_offset
            path = f"{path_prefix}stages[{stage.index}].{op.text.split(' ', 1)[0].lower()}"
            copies.append(ContextCopy(op.text, Origin(dockerfile_display, line, path), stage.label, why, files,
                                      cache.public(context, files)))
    return BuildContext(path=context_display or ".", dockerignore=ignore_display, dockerignore_exists=ignore is not None,
                        copies=tuple(copies), cut=walked.cut, error=walked.error)
