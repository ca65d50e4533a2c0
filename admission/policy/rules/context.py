"""Secrets in build contexts: build-context (architecture §4).

The source (sources/context.py) walks the context as BuildKit sends it, with `.dockerignore` applied, and records
which context files each COPY/ADD of the needed stages takes; this rule only decides which of those look secret.
"""

from __future__ import annotations

import re
from collections.abc import Iterator, Mapping
from functools import lru_cache
from typing import Any

from admission.findings import Violation
from admission.model import BuildContext, Container, ContextCopy, Workload
from admission.policy.rule import Param, rule
from admission.policy.rules.common import container_field, subject

DEFAULT_SECRET_PATTERNS = (".env", ".env.*", "*.pem", "*.key", "id_rsa*", "id_ed25519*", "*.p12", "*.pfx", ".npmrc",
                           ".pypirc", ".git/", ".aws/", ".ssh/")
MAX_NAMED = 5


def _check_pattern(value: Any) -> str | None:
    text = str(value)
    if not text.strip("/"):
        return f"{value!r} is not a name pattern"
    if "/" in text.rstrip("/"):
        return f"{value!r} has a '/' inside: patterns match a file's base name (or, ending in '/', a folder's name)"
    return None


@lru_cache(maxsize=16)
def _compile(patterns: tuple[str, ...]) -> tuple[list[tuple[str, re.Pattern[str]]], list[tuple[str, re.Pattern[str]]]]:
    """Base-name globs (`*`, `?`, `[...]`, case-sensitive) as regexes; a name has no `/`, so `*` cannot cross one."""
    import fnmatch

    files = [(p, re.compile(fnmatch.translate(p))) for p in patterns if not p.endswith("/")]
    folders = [(p, re.compile(fnmatch.translate(p.rstrip("/")))) for p in patterns if p.endswith("/")]
    return files, folders


def secret_hits(files: tuple[str, ...], patterns: tuple[str, ...]) -> list[tuple[str, str]]:
    """(shown, pattern) for each secret-looking entry: a file whose base name matches, or a folder whose name
    matches (shown once, as `path/`, for everything under it). Shallow entries first, as the walk saw them."""
    file_patterns, folder_patterns = _compile(patterns)
    hits: list[tuple[str, str]] = []
    folders_seen: set[str] = set()
    for path in files:
        parts = path.split("/")
        folder_hit = None
        if folder_patterns:
            for depth, name in enumerate(parts[:-1]):
                for pattern, regex in folder_patterns:
                    if regex.match(name):
                        folder_hit = ("/".join(parts[: depth + 1]) + "/", pattern)
                        break
                if folder_hit:
                    break
        if folder_hit is not None:
            if folder_hit[0] not in folders_seen:
                folders_seen.add(folder_hit[0])
                hits.append(folder_hit)
            continue
        name = parts[-1]
        for pattern, regex in file_patterns:
            if regex.match(name):
                hits.append((path, pattern))
                break
    return hits


def ignore_lines(hits: list[tuple[str, str]]) -> list[str]:
    """The .dockerignore lines that exclude the hits: the name at the root, `**/name` below it; a pattern that
    caught several names becomes one line (`**/*.pem`)."""
    by_pattern: dict[str, list[str]] = {}
    for shown, pattern in hits:
        by_pattern.setdefault(pattern, []).append(shown)
    lines: list[str] = []
    for pattern, shown in by_pattern.items():
        names = {s.rstrip("/").rsplit("/", 1)[-1] for s in shown}
        nested = any("/" in s.rstrip("/") for s in shown)
        for name in sorted(names) if len(names) == 1 else [pattern.rstrip("/")]:
            line = f"**/{name}" if nested else name
            if line not in lines:
                lines.append(line)
    return lines


def _message(who: str, copy: ContextCopy, context: BuildContext, hits: list[tuple[str, str]]) -> str:
    named = ", ".join(s for s, _ in hits[:MAX_NAMED])
    more = f" and {len(hits) - MAX_NAMED} more" if len(hits) > MAX_NAMED else ""
    where = "" if not copy.reached else f" in stage '{copy.stage}' ({copy.reached})"
    ignore = (f"{context.dockerignore} does not exclude {'it' if len(hits) == 1 else 'them'}"
              if context.dockerignore_exists else "there is no .dockerignore")
    cut = f"; {context.cut}, so there may be more" if context.cut else ""
    noun = "entry" if len(hits) == 1 else "entries"
    return (f"{who}: `{copy.instruction}`{where} copies {len(hits)} secret-looking {noun} of the build context "
            f"'{context.path}' into the image: {named}{more} ({ignore}){cut}")


def _remediation(copy: ContextCopy, context: BuildContext, hits: list[tuple[str, str]]) -> str:
    lines = ignore_lines(hits)
    verb = (f"append these lines to {context.dockerignore} (the last matching line wins)" if context.dockerignore_exists
            else f"create {context.dockerignore} with these lines")
    return (f"{verb}: {', '.join(f'`{line}`' for line in lines)}; or copy only what the image needs instead "
            f"of `{copy.instruction}`, and pass secrets at build time with `RUN --mount=type=secret`")


def _check(workload: Workload, container: Container, context: BuildContext,
           patterns: tuple[str, ...]) -> Iterator[Violation]:
    who = subject(workload, container)
    name = container_field(workload, container)
    if context.error is not None:
        yield Violation(
            message=f"{who}: the build context '{context.path}' cannot be checked: {context.error}; "
                    "`docker build` refuses it too",
            remediation=f"fix {context.dockerignore}: every line is a Go filepath.Match pattern, `!` needs a pattern",
            origin=container.origin, value=context.dockerignore, container=name, key="dockerignore")
        return
    found = False
    for copy in context.copies:
        hits = secret_hits(copy.files, patterns)
        if copy.public:  # PEM files without a private key: certificates, public keys, DH parameters
            public = set(copy.public)
            hits = [hit for hit in hits if hit[0] not in public]
        if not hits:
            continue
        found = True
        yield Violation(message=_message(who, copy, context, hits), remediation=_remediation(copy, context, hits),
                        origin=copy.origin, value=", ".join(s for s, _ in hits[:MAX_NAMED]), container=name,
                        key=copy.instruction)
    if context.cut is not None and not found and context.copies:
        yield Violation(
            message=f"{who}: the build context '{context.path}' was only partly checked for secrets: {context.cut}",
            remediation=(f"exclude what the image does not need (dependency folders, build output, .git) in "
                         f"{context.dockerignore}; a smaller context also builds faster"),
            origin=context.copies[0].origin, value=context.path, container=name, key="context walk")


@rule("build-context", severity="warn",
      summary="No secret-looking file of the build context is copied into the image (.dockerignore excludes them).",
      applies={"compose": "the build's context", "dockerfile": "its folder as context"},
      params=(Param("secret_patterns", list, DEFAULT_SECRET_PATTERNS,
                    "base-name globs of secret-looking files at any depth; ending in '/': a folder and all under it",
                    _check_pattern),))
def build_context(workload: Workload, params: Mapping[str, Any]) -> Iterator[Violation]:
    """Warn when a COPY or ADD would put a secret-looking file of the build context into the image.

    Why:
        `COPY . /app` copies whatever the build context holds: a `.env` with production passwords, a TLS key, a
        `.git` folder with the whole history, cloud credentials. Anyone who can pull the image can read them, even
        when a later step deletes them (they stay in the layer). `.dockerignore` is what keeps them out of the
        context. It is applied as Docker applies it (moby/patternmatcher): patterns are anchored at the context
        root, so `.env` excludes only `./.env` and `**/.env` excludes it at any depth; `!` makes an exception and
        the last matching line wins; `<Dockerfile>.dockerignore` beside the Dockerfile is preferred. The
        instructions checked are those of the built stage and of every stage it reaches through `FROM <stage>` or
        `COPY --from=<stage>`: the common leak is `COPY . /src` in a builder. The context is a compose service's
        `build.context`, or the Dockerfile's own folder when a Dockerfile is checked alone; remote contexts are
        skipped. The walk of a context is bounded (20,000 entries, 2 s) and says so when it stops early.
        A file whose name matches is opened (no other file is): one whose first 64 KiB hold
        PEM blocks but no `-----BEGIN ... PRIVATE KEY-----` (a certificate, DH parameters, a public key) is public
        material, not a secret. Any other content under a matching name counts.

    Fix:
        Add the lines the finding gives to `.dockerignore` (append them: the last match wins), for example `.env`
        and `**/*.pem`; or copy only what the image needs (`COPY src/ /app/src/`). Pass build-time secrets with
        `RUN --mount=type=secret,id=...` instead of files in the context.

    Example:
        ```dockerfile
        # context: app.py, requirements.txt, .env        .dockerignore: (none)
        FROM python:3.12-slim
        COPY . /app          # warns: .env is copied into the image
        # .dockerignore with the line `.env` (or `**/.env` for every folder) makes it pass
        ```
    """
    for container in workload.containers:
        if container.build_context is not None:
            patterns = tuple(str(p) for p in params.get("secret_patterns", DEFAULT_SECRET_PATTERNS))
            yield from _check(workload, container, container.build_context, patterns)
