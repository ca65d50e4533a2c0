"""Turn CLI paths into workloads: recognise files by name and content, walk directories (architecture §2).

Knows which adapter reads which file, never the syntax inside; each file's failure becomes a Problem
so the other files are still evaluated.
"""

from __future__ import annotations

import io
import os
import re
import sys
from collections.abc import Callable, Mapping, Sequence
from typing import IO, TYPE_CHECKING, Any
from dataclasses import dataclass, field

from admission.errors import InputError
from admission.findings import Problem
from admission.inputs.kustomize import KUSTOMIZATION_NAMES
from admission.model import Workload
from admission import textio

if TYPE_CHECKING:
    from admission.inputs.excludes import Excludes, Pattern

SKIP_DIRS = frozenset((".git", "node_modules", ".venv", "venv", "vendor", "third_party", "__pycache__", ".tox"))
YAML_SUFFIXES = (".yml", ".yaml", ".json")
TAR_SUFFIXES = (".tar", ".tar.gz", ".tgz", ".tar.zst", ".tar.zstd")  # a walk sniffs these (architecture §2)
COMPOSE_BASES = ("compose.yaml", "compose.yml", "docker-compose.yaml", "docker-compose.yml")
# Top-level keys of block YAML start a line. A walk takes only these for Kubernetes before parsing: `"apiVersion":` in
# JSON can be a nested property name (a Helm values.schema.json), so there the parsed shape decides.
_API_HINT = re.compile(r"^apiVersion\s*:", re.M)
_KIND_HINT = re.compile(r"^kind\s*:", re.M)
_JSON_API_HINT = re.compile(r'"apiVersion"\s*:')
_JSON_KIND_HINT = re.compile(r'"kind"\s*:')
_COMMENT = re.compile(r"(?:^|\s)#")  # where a YAML comment starts: `#` first on the line or after whitespace
_COMPOSE_HINT = re.compile(r"^(services|include)\s*:", re.M)
# Case-sensitive, as architecture §2 lists them: `dockerfile.py` is source code, not a Dockerfile.
HELM_TEMPLATE = "a Helm template (render it: helm template CHART | admission-cli check -)"
UNRECOGNISED = "not a compose file, Kubernetes manifest, Dockerfile or image archive"
_COMPOSE_NAME = re.compile(r"^(docker-)?compose[^/]*\.ya?ml$")
_DOCKERFILE_NAME = re.compile(r"^(Dockerfile(\..+)?|.+\.Dockerfile|Containerfile.*)$")


def is_compose_name(name: str) -> bool:
    """`compose*.y*ml`, `docker-compose*.y*ml` and their overrides: a file that fails to parse under such a name
    is an input error even in a walk."""
    return bool(_COMPOSE_NAME.match(name))


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
    as_walk: bool = False  # named files are handled as a walk handles them (architecture §2, pre-commit's per-file hook)
    excludes: Excludes | None = None  # --exclude and .admission.yaml patterns; walks (and --as-walk) honour them
    build_args: Mapping[str, str] = field(default_factory=dict)  # --build-arg NAME=VALUE, for Dockerfiles checked alone
    # build-context's secret_patterns: copied files with such names are opened to tell public PEM material (None: the
    # built-in policy's; empty: open nothing)
    secret_patterns: Sequence[str] | None = None


@dataclass(slots=True)
class Collected:
    workloads: list[Workload] = field(default_factory=list)
    errors: list[Problem] = field(default_factory=list)
    files: set[str] = field(default_factory=set)
    skipped: int = 0
    skipped_reasons: list[tuple[str, str]] = field(default_factory=list)
    excluded: dict[str, int] = field(default_factory=dict)  # files an exclude pattern left out, by pattern label
    excluded_paths: set[str] = field(default_factory=set)  # their real paths, so a build meeting one lists it once
    named: set[str] = field(default_factory=set)  # real paths of the files named on the command line: never excluded
    projects: list[tuple[str, ...]] = field(default_factory=list)  # each compose project's files, as `-f` takes them
    run: Collected | None = None  # for a part (one file or project, kept or not): the run's own Collected
    contexts: Any = None  # sources.context.ContextCache: one per run, so a build context is walked once
    secret_patterns: Sequence[str] = ()  # for the ContextCache (Options.secret_patterns)

    def context_cache(self) -> Any:
        if self.contexts is None:
            from admission.sources.context import ContextCache

            self.contexts = ContextCache(secret_patterns=self.secret_patterns)
        return self.contexts

    def part(self) -> Collected:
        """A Collected for one file or project, merged into this one only when kept. It shares the run's build-context
        walks, and what a build finds excluded is listed on the run itself, once."""
        return Collected(contexts=self.context_cache(), run=self.run or self)

    def fail(self, exc: InputError, *, file: str) -> None:
        self.errors.append(Problem(message=exc.message, file=exc.file or file, line=exc.line, path=exc.path))

    def skip(self, display: str, reason: str) -> None:
        """A file a walk leaves out, with the reason (the JSON report's `skipped`)."""
        self.skipped_reasons.append((display, reason))
        self.skipped += 1

    def exclude(self, display: str, pattern: Pattern, *, path: str | None = None) -> None:
        """A file an exclude pattern left out: skipped with the pattern as its reason, so that a pattern hiding
        more than it should shows in the report (and in review of the pull request that adds it)."""
        if path is not None:
            real = os.path.realpath(path)
            if real in self.excluded_paths:
                return
            self.excluded_paths.add(real)
        self.skip(display, f"excluded by {pattern.label}")
        self.excluded[pattern.label] = self.excluded.get(pattern.label, 0) + 1


class UsageError(Exception):
    """A usage error (exit 2) found only once the inputs are known, e.g. -f without exactly one compose file."""


def _classify_text(text: str, *, name: str, walk: bool = False) -> str | None:
    """'kubernetes', 'compose', 'dockerfile' or 'yaml?' (parse it and look), from content (and the file name for
    Dockerfiles). In a walk, JSON is Kubernetes only by its parsed shape."""
    if is_dockerfile_name(name):
        return "dockerfile"
    if _API_HINT.search(text) and _KIND_HINT.search(text):
        return "kubernetes"
    if not walk and _JSON_API_HINT.search(text) and _JSON_KIND_HINT.search(text):
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
                                  profiles=options.profiles, texts=texts, require_shape=require_shape,
                                  contexts=out.context_cache(), excluded=_build_exclusion(options, out.run or out))
    out.workloads.extend(result.workloads)
    out.errors.extend(result.problems)
    out.files.update(result.files)
    out.projects.append(tuple(displays))
    return result.dockerfiles


def _build_exclusion(options: Options, out: Collected) -> Callable[[str, str, bool], str | None] | None:
    """What a compose build asks before it reads its context or Dockerfile: an excluded one is not read (it is listed
    as excluded, once), and the service is judged without it. A file named on the command line is always read."""
    excludes = options.excludes
    if not excludes:
        return None

    def excluded(path: str, display: str, folder: bool) -> str | None:
        if os.path.realpath(path) in out.named:
            return None
        pattern = excludes.match_with_parents(path, folder=folder)
        if pattern is None:
            return None
        if not folder:
            out.exclude(display, pattern, path=path)
        return f"excluded by {pattern.label}"

    return excluded


def _load_dockerfile(text: str, *, display: str, out: Collected, path: str | None = None,
                     build_args: Mapping[str, str] | None = None) -> None:
    from admission.sources import dockerfile

    contexts = out.context_cache() if path is not None else None
    out.workloads.extend(dockerfile.load(text, file=display, path=path, contexts=contexts, build_args=build_args))


def _unknown_yaml(text: str, *, display: str, options: Options, out: Collected, explicit: bool) -> None:
    """A YAML/JSON file with no obvious hint: parse it and look at the documents."""
    from admission.sources import compose, kubernetes

    try:
        documents = kubernetes.read_documents(text, file=display)  # YAML 1.1 as kubectl reads it, JSON too
    except InputError as exc:
        # architecture §2: in a walk only what is recognisably an input may fail it; a tsconfig.json with comments or
        # another tool's template is not ours to judge.
        if explicit or is_compose_name(os.path.basename(display)):
            raise
        out.files.discard(display)
        where = f" (line {exc.line})" if exc.line else ""
        out.skip(display, f"not compose or Kubernetes, and not valid YAML/JSON: {exc.message}{where}")
        return
    if not documents:
        if explicit:
            raise InputError("no YAML document in the input (the file is empty)", file=display)
        out.files.discard(display)
        out.skip(display, "no YAML document (only comments or blank lines)")
        return
    if any(kubernetes.is_kubernetes(d) for d in documents):
        _load_kubernetes(text, display=display, options=options, out=out)
    elif compose.looks_like_compose(documents[0]):
        raise _ComposeFromContent()
    elif explicit:
        raise InputError("not a recognised input: neither a compose file, a Kubernetes manifest nor a Dockerfile", file=display)
    else:
        out.files.discard(display)  # read only to recognise it: skipped, not checked
        out.skip(display, "not compose or Kubernetes: no top-level apiVersion and kind, no services")


class _ComposeFromContent(Exception):
    pass


def _template(text: str, *, display: str) -> str | None:
    """Why a walked YAML or JSON file is another tool's `{{ }}` template, or None (docs/decisions.md "Walks", which
    amends architecture §2). Text that does not parse is a template when a `{{` stands outside a comment; text that parses
    is one only when `{{` is in a mapping key, `metadata.name`, `metadata.namespace` or an `image`, where no object
    could have it. In a comment or in any other string (Vault or Prometheus annotations) a `{{` is data: a comment
    must not exempt a manifest from CI."""
    from admission.sources import kubernetes

    try:
        documents = kubernetes.read_documents(text, file=display)
    except InputError as exc:
        line = _template_line(text)
        if line is None:
            return None  # a broken manifest, with `{{` only in comments: still an error where it is an input
        at = f" (line {exc.line})" if exc.line else ""
        return f"template: `{{{{` on line {line}, and not valid YAML/JSON: {exc.message}{at}"
    for document in documents:
        found = _template_field(document)
        if found is not None:
            return f"template: `{{{{` in {found}"
    return None


def _template_line(text: str) -> int | None:
    """The first line with a `{{` before any comment on it."""
    for number, line in enumerate(text.splitlines(), 1):
        at = line.find("{{")
        if at >= 0:
            comment = _COMMENT.search(line)
            if comment is None or comment.start() > at:
                return number
    return None


def _template_field(document: Any) -> str | None:
    """Where a parsed document has a `{{` that only a template would have, or None."""
    from admission.yamlload import line_of

    def where(container: Any, key: Any) -> str:
        line = line_of(container, key)
        return f" (line {line})" if line else ""

    stack = [document]
    while stack:
        node = stack.pop()
        if isinstance(node, dict):
            for key, value in node.items():
                if isinstance(key, str) and "{{" in key:
                    return f"a mapping key {key!r}{where(node, key)}"
                if key == "image" and isinstance(value, str) and "{{" in value:
                    return f"an image {value!r}{where(node, key)}"
                if key == "metadata" and isinstance(value, dict):
                    for name in ("name", "namespace"):
                        if isinstance(value.get(name), str) and "{{" in value[name]:
                            return f"metadata.{name} {value[name]!r}{where(value, name)}"
            stack.extend(reversed(node.values()))  # depth first, in file order
        elif isinstance(node, list):
            stack.extend(reversed(node))
    return None


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
    from admission.inputs.repoconfig import CONFIG_NAME

    name = os.path.basename(path)
    if not explicit and not (is_dockerfile_name(name) or name.endswith(YAML_SUFFIXES)):
        out.skip(display, UNRECOGNISED)
        return frozenset()
    if not explicit and name == CONFIG_NAME:
        out.skip(display, "admission-cli's repository config")
        return frozenset()

    def read() -> frozenset[str] | None:
        if not explicit and os.path.getsize(path) == 0:
            out.skip(display, "empty file")
            return None
        try:
            text = textio.read_path(path, display=display)
        except InputError as exc:
            if explicit or is_dockerfile_name(name) or is_compose_name(name):
                raise
            out.skip(display, f"not compose or Kubernetes, and not readable as text: {exc.message}")
            return None
        if not text.strip():
            if explicit:
                raise InputError("no YAML document in the input (the file is empty)" if not is_dockerfile_name(name)
                                 else "the Dockerfile is empty", file=display)
            out.skip(display, "empty file")
            return None
        if not explicit and "{{" in text and not is_dockerfile_name(name):
            reason = _template(text, display=display)
            if reason is not None:
                out.skip(display, reason)
                return None
        kind = _classify_text(text, name=name, walk=not explicit)
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
        if kind == "dockerfile" and not explicit and "{{" in text:
            _dockerfile_or_template(text, display=display, path=path, options=options, out=out)
        elif kind == "dockerfile":
            _load_dockerfile(text, display=display, out=out, path=path, build_args=options.build_args)
        elif kind == "kubernetes":
            _load_kubernetes(text, display=display, options=options, out=out)
        elif kind == "compose":
            return _load_project(path, display, compose_overrides, options=options, out=out)
        return None

    return _guarded(display, out, read)


def _dockerfile_or_template(text: str, *, display: str, path: str, options: Options, out: Collected) -> None:
    """A walked Dockerfile with `{{`: another tool's template (docker-library's `Dockerfile.template`) when it does
    not parse with a `{{` outside a comment, or when a FROM image has one; a `{{` in a RUN or a comment is data."""
    part = out.part()
    try:
        _load_dockerfile(text, display=display, out=part, path=path, build_args=options.build_args)
    except InputError as exc:
        line = _template_line(text)
        if line is None:
            raise
        out.files.discard(display)
        at = f" (line {exc.line})" if exc.line else ""
        out.skip(display, f"template: `{{{{` on line {line}, and not a valid Dockerfile: {exc.message}{at}")
        return
    images = (image for w in part.workloads for c in w.containers for image in (c.image, *c.base_images) if image)
    templated = next((image for image in images if "{{" in image.value), None)
    if templated is None:
        out.workloads.extend(part.workloads)
        return
    out.files.discard(display)
    at = f" (line {templated.origin.line})" if templated.origin.line else ""
    out.skip(display, f"template: `{{{{` in an image {templated.value!r}{at}")


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
    from admission.inputs.layers import compose_fragments
    from admission.sources.compose import NotCompose

    layers = compose_fragments(((p.path, p.display, p.text) for p in pending), bases=COMPOSE_BASES)
    loaded = []
    for item in pending:
        if item.display in layers:
            continue
        part = out.part()
        part.files.add(item.display)

        def load(item: _Pending = item, part: Collected = part) -> frozenset[str] | None:
            try:
                return _load_project(item.path, item.display, item.overrides, options=options, out=part,
                                     text=item.text, require_shape=True)
            except NotCompose:  # e.g. a .gitlab-ci.yml with `services:` or `include:` lists
                part.files.discard(item.display)
                part.skip(item.display, "has `services:` or `include:` but is not shaped like a compose file")
                return None

        loaded.append((item.display, part, _guarded(item.display, part, load)))
    fragments = {f for display, part, _ in loaded for f in part.files if f != display}
    for display, reason in layers.items():
        if display not in fragments:  # a layer another project includes or extends is read as part of it
            out.skip(display, reason)
    dockerfiles: set[str] = set()
    for display, part, used in loaded:
        if display in fragments:
            continue
        out.workloads.extend(part.workloads)
        out.errors.extend(part.errors)
        out.files.update(part.files)
        out.skipped += part.skipped
        out.skipped_reasons.extend(part.skipped_reasons)
        out.projects.extend(part.projects)
        dockerfiles |= used
    return dockerfiles


@dataclass(slots=True)
class _Walk:
    """What a walk (or `--as-walk`) gathers before compose projects and standalone Dockerfiles are loaded."""

    root: str | None  # None: named files (--as-walk), shown as given
    pending: list[_Pending] = field(default_factory=list)
    dockerfiles: list[tuple[str, str]] = field(default_factory=list)
    kustomize: Any = None  # inputs.kustomize.Patches, once a kustomization is met

    def patches(self) -> Any:
        if self.kustomize is None:
            from admission.inputs.kustomize import Patches

            self.kustomize = Patches()
        return self.kustomize

    def display(self, folder: str, name: str) -> str:
        if self.root is None:
            return os.path.normpath(os.path.join(folder, name))
        return _display(self.root, folder, name)


def _walk(root: str, *, options: Options, out: Collected) -> None:
    walk = _Walk(root)
    for folder, dirs, files in os.walk(root, followlinks=False):
        linked = sorted(d for d in dirs if d not in SKIP_DIRS and os.path.islink(os.path.join(folder, d)))
        dirs[:] = sorted(d for d in dirs if _entered(folder, d))
        if options.excludes:
            dirs[:] = [d for d in dirs if not _excluded_folder(walk, os.path.join(folder, d), options.excludes, out)]
            files = [name for name in files if not _excluded_file(walk, folder, name, options.excludes, out)]
            linked = [d for d in linked if not _excluded_file(walk, folder, d, options.excludes, out)]
        for name in linked:  # as a linked file is: listed, never followed
            out.skip(walk.display(folder, name), "a symbolic link to a folder (walks do not follow links)")
        if "Chart.yaml" in files and "templates" in dirs:
            # Helm templates are Go templates, not YAML; `helm template | admission-cli check -` reads them rendered.
            for inner_folder, _, inner in os.walk(os.path.join(folder, "templates")):
                for name in sorted(inner):
                    out.skip(walk.display(inner_folder, name), HELM_TEMPLATE)
            dirs.remove("templates")
        if "oci-layout" in files and folder != root:
            _load_archive(folder, display=_display(root, folder, ""), options=options, out=out)
            dirs[:] = []  # an OCI layout is one input; its blobs are not files to check
            continue
        if any(name in files for name in KUSTOMIZATION_NAMES):  # before its patches: they are in or below it
            walk.patches().add_folder(folder, shown=walk.display(folder, ""))
        _scan_folder(walk, folder, sorted(files), options=options, out=out)
    _finish_walk(walk, options=options, out=out)


def _entered(folder: str, name: str) -> bool:
    """Whether a walk goes into a subfolder: never into SKIP_DIRS, links or virtualenvs."""
    full = os.path.join(folder, name)
    return name not in SKIP_DIRS and not os.path.islink(full) and not _virtualenv(full)


def _excluded_folder(walk: _Walk, folder: str, excludes: Excludes, out: Collected) -> bool:
    """Whether an exclude pattern leaves out a subfolder the walk met. Its files are listed with the pattern, so that
    a pattern hiding more than it should is seen."""
    pattern = excludes.match(folder, folder=True)
    if pattern is None:
        return False
    for inner, dirs, files in os.walk(folder, followlinks=False):
        dirs[:] = sorted(d for d in dirs if _entered(inner, d))
        for name in sorted(files):
            out.exclude(walk.display(inner, name), pattern, path=os.path.join(inner, name))
    return True


def _excluded_file(walk: _Walk, folder: str, name: str, excludes: Excludes, out: Collected) -> bool:
    pattern = excludes.match(os.path.join(folder, name), folder=False)
    if pattern is not None:
        out.exclude(walk.display(folder, name), pattern, path=os.path.join(folder, name))
    return pattern is not None


def _virtualenv(folder: str) -> bool:
    """A Python virtualenv under any name (`.venv-bench`, `env`, `.tox/py311`): it holds installed packages'
    YAML and JSON, never this repository's inputs. Every venv has a pyvenv.cfg at its top."""
    return os.path.isfile(os.path.join(folder, "pyvenv.cfg"))


def _scan_folder(walk: _Walk, folder: str, names: Sequence[str], *, options: Options, out: Collected) -> None:
    """Read the named files of one folder as a walk does: overrides merged onto their base, compose projects and
    Dockerfiles queued for `_finish_walk`, everything else checked or skipped with a reason."""
    handled: set[str] = set()
    for base in COMPOSE_BASES:
        override = next((o for o in override_for(base) if o in names), None)
        if base in names and override is not None:
            handled.update((base, override))
            pair = [(os.path.join(folder, override), walk.display(folder, override))]
            _check_file(os.path.join(folder, base), display=walk.display(folder, base), options=options,
                        out=out, explicit=False, compose_overrides=pair, defer=walk.pending)
    for name in names:
        full = os.path.join(folder, name)
        display = walk.display(folder, name)
        if name in handled:
            continue
        if os.path.islink(full):
            out.skip(display, "a symbolic link (walks do not follow links)")
            continue
        patch = walk.kustomize.reason(full) if walk.kustomize is not None else None
        if patch is not None:
            out.skip(display, patch)
            continue
        if name in KUSTOMIZATION_NAMES:
            out.skip(display, "kustomize's own file: its resources are checked where they are, its patches skipped; "
                              f"what it builds: kubectl kustomize {walk.display(folder, '')} | admission-cli check -")
            continue
        if ".override." in name and name.startswith(("compose", "docker-compose")):
            out.skip(display, "a compose override without its base file in the same folder")
            continue
        if is_dockerfile_name(name):
            walk.dockerfiles.append((full, display))
            continue
        if name.endswith(TAR_SUFFIXES):
            _walk_tarball(full, display=display, options=options, out=out)
            continue
        _check_file(full, display=display, options=options, out=out, explicit=False, defer=walk.pending)


def _finish_walk(walk: _Walk, *, options: Options, out: Collected) -> None:
    dockerfiles_used = _compose_projects(walk.pending, options=options, out=out)
    for full, display in walk.dockerfiles:
        if os.path.realpath(full) in dockerfiles_used:
            continue  # reported under the compose service that builds it
        _check_file(full, display=display, options=options, out=out, explicit=False)


def _helm_template(path: str) -> bool:
    """Inside a `templates/` folder whose parent has a Chart.yaml, at any depth."""
    folder = os.path.dirname(os.path.abspath(path))
    while True:
        parent = os.path.dirname(folder)
        if os.path.basename(folder) == "templates" and os.path.isfile(os.path.join(parent, "Chart.yaml")):
            return True
        if parent == folder:
            return False
        folder = parent


def _as_walk(paths: Sequence[str], *, options: Options, out: Collected) -> None:
    """`--as-walk` (pre-commit's per-file hook): the named files are handled as a walk would handle them. An
    override brings its base file (and a base its override), and neither is checked alone."""
    walk = _Walk(None)
    folders: dict[str, set[str]] = {}
    for path in paths:
        folder, name = os.path.split(path)
        folder = folder or "."
        excluded = options.excludes.match_with_parents(path) if options.excludes else None
        if excluded is not None:
            out.exclude(walk.display(folder, name), excluded, path=path)
            continue
        if _helm_template(path):
            out.skip(walk.display(folder, name), HELM_TEMPLATE)
            continue
        chosen = folders.setdefault(folder, set())
        chosen.add(name)
        for base in COMPOSE_BASES:
            if name in override_for(base) and os.path.isfile(os.path.join(folder, base)):
                chosen.add(base)
            if name == base:
                chosen.update(o for o in override_for(base) if os.path.isfile(os.path.join(folder, o)))
    for folder in folders:  # a changed patch comes without its kustomization: look in and above its folder
        walk.patches().add_above(folder, shown=folder, stop=os.getcwd())
    for folder, names in folders.items():
        _scan_folder(walk, folder, sorted(names), options=options, out=out)
    _finish_walk(walk, options=options, out=out)


def _display(root: str, folder: str, name: str) -> str:
    return os.path.normpath(os.path.join(folder, name)) if root not in (".", "./") else os.path.relpath(os.path.join(folder, name))


def collect(paths: Sequence[str], *, options: Options, stdin: bytes | IO[bytes] | None = None) -> Collected:
    """Every input named on the command line -> workloads and per-file problems."""
    named = () if options.as_walk else [p for p in paths if p != "-" and os.path.isfile(p)]
    out = Collected(named={os.path.realpath(p) for p in named}, secret_patterns=_secret_patterns(options))
    if options.overrides:
        if options.as_walk:
            raise UsageError("-f OVERRIDE cannot be combined with --as-walk (a walk merges overrides by name)")
        if len(paths) != 1 or paths[0] == "-" or os.path.isdir(paths[0]):
            raise UsageError("-f OVERRIDE needs exactly one compose file PATH")
    if options.as_walk:
        named = [p for p in paths if p != "-" and os.path.isfile(p)]
        paths = [p for p in paths if p == "-" or not os.path.isfile(p)]
        _as_walk(named, options=options, out=out)
    for path in paths:
        if path == "-":
            stream = sys.stdin.buffer if stdin is None else io.BytesIO(stdin) if isinstance(stdin, bytes) else stdin
            _check_stdin(stream, options=options, out=out)
        elif os.path.isdir(path):
            if os.path.exists(os.path.join(path, "oci-layout")):
                _load_archive(path, display=path, options=options, out=out)
                continue
            _walk(path, options=options, out=out)
        elif not os.path.exists(path):
            out.fail(InputError(_missing(path), file=path), file=path)
        else:
            if options.overrides:
                _require_compose(path)
            if _is_tar(path):
                _load_archive(path, display=path, options=options, out=out)
                continue
            _check_file(path, display=path, options=options, out=out, explicit=True,
                        compose_overrides=[(o, o) for o in options.overrides])
    return out


def _missing(path: str) -> str:
    """Why a named PATH cannot be opened: a symlink loop and a dangling link are not "no such file"."""
    import errno

    try:
        os.stat(path)
    except OSError as exc:
        if exc.errno == errno.ELOOP:
            return "a symlink loop: the link resolves back to itself and names no file"
        if os.path.islink(path):
            return f"a symbolic link to {os.readlink(path)!r}, which does not exist"
        if exc.errno == errno.ENOENT:
            return "no such file or directory"
        return exc.strerror or str(exc)
    return "no such file or directory"


def _secret_patterns(options: Options) -> Sequence[str]:
    if options.secret_patterns is not None:
        return options.secret_patterns
    from admission.policy.rules.context import DEFAULT_SECRET_PATTERNS

    return DEFAULT_SECRET_PATTERNS


def _is_tar(path: str) -> bool:
    """A tarball, plain, gzip or zstd, by content, not by name."""
    try:
        with open(path, "rb") as fh:
            head = fh.read(512)
    except OSError:
        return False
    return _tar_head(head)


def _tar_head(head: bytes) -> bool:
    """Whether the first bytes of a file or stream (512, or all there are) start a tarball: gzip or zstd magic, or
    a tar header with the right checksum. Cheap, and the archive reader is imported only when it holds: `check`
    runs on every commit and its start-up is visible."""
    if head.startswith((b"\x1f\x8b", b"\x28\xb5\x2f\xfd")):
        return True
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

    return archive.is_tar_stream(head)


def _load_archive(path: str, *, display: str, options: Options, out: Collected) -> None:
    """A `docker save` / oci-archive tarball or an OCI layout directory: one input, read without its layers."""
    from admission.sources import archive

    out.files.add(display)
    _guarded(display, out, lambda: out.workloads.extend(archive.load(path, display=display, platform=options.platform)))


def _walk_tarball(path: str, *, display: str, options: Options, out: Collected) -> None:
    """A tarball met in a walk: checked only when its first members look like an image archive (architecture §2)."""
    from admission.sources import archive

    def sniff() -> None:
        reason = archive.sniff(path, display=display)
        if reason is None:
            _load_archive(path, display=display, options=options, out=out)
        else:
            out.skip(display, reason)

    _guarded(display, out, sniff)


def _require_compose(path: str) -> None:
    try:
        text = textio.read_path(path, display=path)
    except InputError:
        return  # reported when the file itself is checked
    if _classify_text(text, name=os.path.basename(path)) not in ("compose", "yaml?"):
        raise UsageError(f"-f OVERRIDE needs exactly one compose file PATH; {path} is not a compose file")


def _check_stdin(stream: IO[bytes], *, options: Options, out: Collected) -> None:
    """stdin: a tarball (plain, gzip or zstd; `docker save app | admission-cli check -`) is streamed through the
    archive reader in constant memory; anything else is text, read up to one byte past the cap."""
    display = "-"
    out.files.add(display)

    def read() -> None:
        head = _read_head(stream, 512)
        if _tar_head(head):
            from admission.sources import archive

            out.workloads.extend(archive.load_stream(stream, display=display, platform=options.platform, head=head))
            return
        # one byte past the cap, never the whole pipe: an endless stream must not exhaust memory
        rest = stream.read(textio.MAX_TEXT_BYTES + 1 - len(head)) if len(head) == 512 else b""
        text = textio.decode(head + rest, file=display)
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
            _load_dockerfile(text, display=display, out=out, build_args=options.build_args)
        else:
            from admission.sources import compose

            pseudo = os.path.join(os.getcwd(), "<stdin>")
            result = compose.load_project([pseudo], displays=[display], environ=options.environ,
                                          env_files=options.env_files, profiles=options.profiles, texts={pseudo: text},
                                          contexts=out.context_cache())
            out.workloads.extend(result.workloads)
            out.errors.extend(result.problems)
            out.files.update(result.files)

    _guarded(display, out, read)


def _read_head(stream: IO[bytes], size: int) -> bytes:
    """The first `size` bytes of a stream, fewer only at its end (a pipe may return less per read)."""
    head = b""
    while len(head) < size:
        chunk = stream.read(size - len(head))
        if not chunk:
            break
        head += chunk
    return head
