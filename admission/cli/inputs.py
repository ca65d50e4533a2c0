"""Turn CLI paths into workloads: recognise files by name and content, walk directories (DESIGN §2).

Knows which adapter reads which file, never the syntax inside; each file's failure becomes a Problem
so the other files are still evaluated.
"""

from __future__ import annotations

import os
import re
import sys
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field

from admission.errors import InputError
from admission.findings import Problem
from admission.model import Workload
from admission.sources import text as textio

SKIP_DIRS = frozenset((".git", "node_modules", ".venv", "venv", "vendor", "third_party", "__pycache__", ".tox"))
YAML_SUFFIXES = (".yml", ".yaml", ".json")
COMPOSE_BASES = ("compose.yaml", "compose.yml", "docker-compose.yaml", "docker-compose.yml")
_API_HINT = re.compile(r'^apiVersion\s*:|"apiVersion"\s*:', re.M)
_KIND_HINT = re.compile(r'^kind\s*:|"kind"\s*:', re.M)
_COMPOSE_HINT = re.compile(r"^(services|include)\s*:", re.M)
# Case-sensitive, as DESIGN §2 lists them: `dockerfile.py` is source code, not a Dockerfile.
_DOCKERFILE_NAME = re.compile(r"^(Dockerfile(\..+)?|.+\.Dockerfile|Containerfile.*)$")


def is_dockerfile_name(name: str) -> bool:
    return bool(_DOCKERFILE_NAME.match(name)) and not name.lower().endswith(".dockerignore")


def override_for(base_name: str) -> tuple[str, ...]:
    """Override file names Compose merges onto a standard base file in the same folder."""
    stem = base_name.rsplit(".", 1)[0]
    return (f"{stem}.override.yaml", f"{stem}.override.yml")


@dataclass(slots=True)
class Options:
    namespace: str = "default"
    env_files: Sequence[str] | None = None
    profiles: Sequence[str] = ()
    overrides: Sequence[str] = ()
    environ: Mapping[str, str] = field(default_factory=lambda: dict(os.environ))
    platform: str = "linux/amd64"


@dataclass(slots=True)
class Collected:
    workloads: list[Workload] = field(default_factory=list)
    errors: list[Problem] = field(default_factory=list)
    files: set[str] = field(default_factory=set)
    skipped: int = 0

    def fail(self, exc: InputError, *, file: str) -> None:
        self.errors.append(Problem(message=exc.message, file=exc.file or file, line=exc.line, path=exc.path))


class UsageError(Exception):
    """A usage error (exit 2) found only once the inputs are known, e.g. -f without exactly one compose file."""


def _classify_text(text: str, *, name: str) -> str | None:
    """'kubernetes', 'compose', 'dockerfile' or None, from content (and the file name for Dockerfiles)."""
    if is_dockerfile_name(name):
        return "dockerfile"
    if _API_HINT.search(text) and _KIND_HINT.search(text):
        return "kubernetes"
    if _COMPOSE_HINT.search(text):
        return "compose"
    if name.endswith(YAML_SUFFIXES):
        return "yaml?"
    from admission.sources import dockerfile

    if dockerfile.looks_like_dockerfile(text):
        return "dockerfile"
    return "yaml?"


def _load_kubernetes(text: str, *, display: str, options: Options, out: Collected) -> None:
    from admission.sources import kubernetes

    result = kubernetes.load_text(text, file=display, namespace=options.namespace)
    out.workloads.extend(result.workloads)
    out.errors.extend(result.problems)


def _load_compose(paths: Sequence[str], displays: Sequence[str], *, options: Options, out: Collected,
                  texts: Mapping[str, str] | None = None, require_shape: bool = False) -> frozenset[str]:
    from admission.sources import compose

    result = compose.load_project(paths, displays=displays, environ=options.environ, env_files=options.env_files,
                                  profiles=options.profiles, texts=texts, require_shape=require_shape)
    out.workloads.extend(result.workloads)
    out.errors.extend(result.problems)
    out.files.update(result.files)
    return result.dockerfiles


def _load_dockerfile(text: str, *, display: str, out: Collected) -> None:
    from admission.sources import dockerfile

    out.workloads.extend(dockerfile.load(text, file=display))


def _unknown_yaml(text: str, *, display: str, options: Options, out: Collected, explicit: bool) -> None:
    """A YAML/JSON file with no obvious hint: parse it and look at the documents."""
    from admission.sources import compose, kubernetes
    from admission.sources.yamlload import load_documents

    documents = [d.value for d in load_documents(text, file=display, dialect="1.1") if d.value is not None]
    if not documents:
        if explicit:
            raise InputError("no YAML document in the input (the file is empty)", file=display)
        out.skipped += 1
        return
    if any(kubernetes.is_kubernetes(d) for d in documents):
        _load_kubernetes(text, display=display, options=options, out=out)
    elif compose.looks_like_compose(documents[0]):
        raise _ComposeFromContent()
    elif explicit:
        raise InputError("not a recognised input: neither a compose file, a Kubernetes manifest nor a Dockerfile", file=display)
    else:
        out.files.discard(display)  # read only to recognise it: skipped, not checked
        out.skipped += 1


class _ComposeFromContent(Exception):
    pass


def _guarded(display: str, out: Collected, action: Callable[[], frozenset[str] | None]) -> frozenset[str]:
    """Run what reads one input; its failure becomes an `errors` entry for that input and hides nothing else."""
    try:
        return action() or frozenset()
    except InputError as exc:
        out.files.add(display)
        out.fail(exc, file=display)
    except Exception as exc:  # noqa: BLE001 - a bug on one input must not hide the other inputs' results
        out.files.add(display)
        out.errors.append(Problem(message=f"internal error while reading this input: {type(exc).__name__}: {exc}",
                                  file=display))
    return frozenset()


def _check_file(path: str, *, display: str, options: Options, out: Collected, explicit: bool,
                compose_overrides: Sequence[tuple[str, str]] = (),
                defer: list[_Pending] | None = None) -> frozenset[str]:
    """Read one file (explicit or walked). Returns Dockerfiles its compose builds use.

    With `defer`, a compose file is only queued: a walk loads compose projects last, so that files
    one project includes or extends are not also checked as projects of their own."""
    name = os.path.basename(path)
    if not explicit and not (is_dockerfile_name(name) or name.endswith(YAML_SUFFIXES)):
        out.skipped += 1
        return frozenset()

    def read() -> frozenset[str] | None:
        if not explicit and os.path.getsize(path) == 0:
            out.skipped += 1
            return None
        text = textio.read_path(path, display=display)
        if not text.strip():
            if explicit:
                raise InputError("no YAML document in the input (the file is empty)" if not is_dockerfile_name(name)
                                 else "the Dockerfile is empty", file=display)
            out.skipped += 1
            return None
        kind = _classify_text(text, name=name)
        if kind == "compose" and defer is not None:
            defer.append(_Pending(path, display, compose_overrides, text))
            return None
        out.files.add(display)
        if kind == "yaml?":
            try:
                _unknown_yaml(text, display=display, options=options, out=out, explicit=explicit)
                return None
            except _ComposeFromContent:
                kind = "compose"
        if kind == "dockerfile":
            _load_dockerfile(text, display=display, out=out)
        elif kind == "kubernetes":
            _load_kubernetes(text, display=display, options=options, out=out)
        elif kind == "compose":
            return _load_project(path, display, compose_overrides, options=options, out=out)
        return None

    return _guarded(display, out, read)


def _load_project(path: str, display: str, overrides: Sequence[tuple[str, str]], *, options: Options,
                  out: Collected, text: str | None = None, require_shape: bool = False) -> frozenset[str]:
    return _load_compose([path, *(p for p, _ in overrides)], [display, *(d for _, d in overrides)],
                         options=options, out=out, texts={path: text} if text is not None else None,
                         require_shape=require_shape)


@dataclass(frozen=True, slots=True)
class _Pending:
    """A file a walk took for compose by content, with the text already read."""

    path: str
    display: str
    overrides: Sequence[tuple[str, str]]
    text: str


def _compose_projects(pending: list[_Pending], *, options: Options, out: Collected) -> set[str]:
    """Load the compose projects a walk found; a file another project includes or extends is part of that
    project only (as an override is), not a project of its own. Returns the Dockerfiles their builds use."""
    from admission.sources.compose import NotCompose

    loaded = []
    for item in pending:
        part = Collected()
        part.files.add(item.display)

        def load(item: _Pending = item, part: Collected = part) -> frozenset[str] | None:
            try:
                return _load_project(item.path, item.display, item.overrides, options=options, out=part,
                                     text=item.text, require_shape=True)
            except NotCompose:  # e.g. a .gitlab-ci.yml with `services:` or `include:` lists
                part.files.discard(item.display)
                part.skipped += 1
                return None

        loaded.append((item.display, part, _guarded(item.display, part, load)))
    fragments = {f for display, part, _ in loaded for f in part.files if f != display}
    dockerfiles: set[str] = set()
    for display, part, used in loaded:
        if display in fragments:
            continue
        out.workloads.extend(part.workloads)
        out.errors.extend(part.errors)
        out.files.update(part.files)
        out.skipped += part.skipped
        dockerfiles |= used
    return dockerfiles


def _walk(root: str, *, options: Options, out: Collected) -> None:
    pending: list[_Pending] = []
    standalone_dockerfiles: list[tuple[str, str]] = []
    for folder, dirs, files in os.walk(root, followlinks=False):
        if "Chart.yaml" in files and "templates" in dirs:
            # Helm templates are Go templates, not YAML; `helm template | admission-cli check -` reads them rendered.
            for _, _, inner in os.walk(os.path.join(folder, "templates")):
                out.skipped += len(inner)
            dirs.remove("templates")
        dirs[:] = sorted(d for d in dirs if d not in SKIP_DIRS and not os.path.islink(os.path.join(folder, d)))
        if "oci-layout" in files and folder != root:
            _load_archive(folder, display=_display(root, folder, ""), options=options, out=out)
            dirs[:] = []  # an OCI layout is one input; its blobs are not files to check
            continue
        names = sorted(files)
        handled: set[str] = set()
        for base in COMPOSE_BASES:
            override = next((o for o in override_for(base) if o in names), None)
            if base in names and override is not None:
                handled.update((base, override))
                pair = [(os.path.join(folder, override), _display(root, folder, override))]
                _check_file(os.path.join(folder, base), display=_display(root, folder, base), options=options,
                            out=out, explicit=False, compose_overrides=pair, defer=pending)
        for name in names:
            full = os.path.join(folder, name)
            if name in handled:
                continue
            if os.path.islink(full):
                out.skipped += 1
                continue
            if ".override." in name and name.startswith(("compose", "docker-compose")):
                out.skipped += 1  # an override without its base is never checked alone
                continue
            if is_dockerfile_name(name):
                standalone_dockerfiles.append((full, _display(root, folder, name)))
                continue
            if name.endswith(".tar") and _is_tar(full):
                _load_archive(full, display=_display(root, folder, name), options=options, out=out)
                continue
            _check_file(full, display=_display(root, folder, name), options=options, out=out, explicit=False,
                        defer=pending)
    dockerfiles_used = _compose_projects(pending, options=options, out=out)
    for full, display in standalone_dockerfiles:
        if os.path.realpath(full) in dockerfiles_used:
            continue  # reported under the compose service that builds it
        _check_file(full, display=display, options=options, out=out, explicit=False)


def _display(root: str, folder: str, name: str) -> str:
    return os.path.normpath(os.path.join(folder, name)) if root not in (".", "./") else os.path.relpath(os.path.join(folder, name))


def collect(paths: Sequence[str], *, options: Options, stdin: bytes | None = None) -> Collected:
    """Every input named on the command line -> workloads and per-file problems."""
    out = Collected()
    if options.overrides:
        if len(paths) != 1 or paths[0] == "-" or os.path.isdir(paths[0]):
            raise UsageError("-f OVERRIDE needs exactly one compose file PATH")
    for path in paths:
        if path == "-":
            # read one byte past the cap, never the whole pipe: an endless stream must not exhaust memory
            data = stdin if stdin is not None else sys.stdin.buffer.read(textio.MAX_TEXT_BYTES + 1)
            _check_stdin(data, options=options, out=out)
        elif os.path.isdir(path):
            if os.path.exists(os.path.join(path, "oci-layout")):
                _load_archive(path, display=path, options=options, out=out)
                continue
            _walk(path, options=options, out=out)
        elif not os.path.exists(path):
            out.fail(InputError("no such file or directory", file=path), file=path)
        else:
            if options.overrides:
                _require_compose(path)
            if _is_tar(path):
                _load_archive(path, display=path, options=options, out=out)
                continue
            _check_file(path, display=path, options=options, out=out, explicit=True,
                        compose_overrides=[(o, o) for o in options.overrides])
    return out


def _is_tar(path: str) -> bool:
    """A tar file (or OCI layout), by content, not by name. A cheap header checksum first, so the archive
    reader is imported only for real tarballs: `check` runs on every commit and its start-up is visible."""
    try:
        with open(path, "rb") as fh:
            head = fh.read(512)
    except OSError:
        return False
    if len(head) < 512:
        return False
    stored = head[148:156].split(b"\0", 1)[0].strip()
    try:
        checksum = int(stored or b"x", 8)
    except ValueError:
        return False
    if checksum != sum(head[:148]) + 8 * 32 + sum(head[156:]):
        return False
    from admission.sources import archive

    return archive.is_archive(path)


def _load_archive(path: str, *, display: str, options: Options, out: Collected) -> None:
    """A `docker save` / oci-archive tarball or an OCI layout directory: one input, read without its layers."""
    from admission.sources import archive

    out.files.add(display)
    _guarded(display, out, lambda: out.workloads.extend(archive.load(path, display=display, platform=options.platform)))


def _require_compose(path: str) -> None:
    try:
        text = textio.read_path(path, display=path)
    except InputError:
        return  # reported when the file itself is checked
    if _classify_text(text, name=os.path.basename(path)) not in ("compose", "yaml?"):
        raise UsageError(f"-f OVERRIDE needs exactly one compose file PATH; {path} is not a compose file")


def _check_stdin(data: bytes, *, options: Options, out: Collected) -> None:
    display = "-"
    out.files.add(display)

    def read() -> None:
        text = textio.decode(data, file=display)
        if not text.strip():
            raise InputError("no YAML document in the input (stdin is empty)", file=display)
        kind = _classify_text(text, name="-")
        if kind == "yaml?":
            try:
                _unknown_yaml(text, display=display, options=options, out=out, explicit=True)
                return
            except _ComposeFromContent:
                kind = "compose"
        if kind == "kubernetes":
            _load_kubernetes(text, display=display, options=options, out=out)
        elif kind == "dockerfile":
            _load_dockerfile(text, display=display, out=out)
        else:
            from admission.sources import compose

            pseudo = os.path.join(os.getcwd(), "<stdin>")
            result = compose.load_project([pseudo], displays=[display], environ=options.environ,
                                          env_files=options.env_files, profiles=options.profiles, texts={pseudo: text})
            out.workloads.extend(result.workloads)
            out.errors.extend(result.problems)
            out.files.update(result.files)

    _guarded(display, out, read)
