"""`admission-cli pin`: lock image references to digests, changing only the reference's characters.

What happens to each reference (an Entry each, listed with file, line and field):
- `pinned`: it had a tag only and now reads `name:tag@sha256:...` (a name without a tag gets `:latest@...`, the tag
  it pulled). `unpinned` is the same reference under `--check`, which writes nothing and asks no registry.
- already pinned (`name@digest`, `name:tag@digest`): left as it is and counted; with `--drift` (or
  `--fail-on-drift`) its tag is looked up, and `drift` lists a tag that now points elsewhere.
- `unresolved`: the lookup failed (refused, not found, auth, timeout): left as it is; not an error, unless no lookup
  of the run was answered (below).
- `left alone`: not a reference `pin` can pin, with the reason: a variable (`${TAG}`), a value written across
  lines or with escapes, an invalid reference, a compose `image:` that names what its `build:` produces.
- `not written`: the file is outside the repository root (an `include` or `extends` elsewhere).
- `not locked`: `--lock` writes a compose override, so Kubernetes manifests and Dockerfiles are not in it.
Exit codes: 2 when an input cannot be read or a file cannot be written, when the run sent lookups and none was
answered (no registry reachable, no credentials: the listing gives each distinct reason once, and `--lock` writes no
file), and under `--fail-on-drift` when the drift of a reference could not be checked; 1 under `--check` when a
reference is unpinned, and under `--fail-on-drift` when one drifted; 0 otherwise. A run that needs no lookup
(`--check`, everything pinned) never counts as unanswered.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Literal

from admission.errors import InputError
from admission.findings import Problem
from admission import reference
from admission.pin.sites import Site, Sites, find_sites
from admission.images.settings import ImagesSettings
from admission.sources.spans import SourceText, Span, splice
from admission.textio import new_file_mode, write_atomic

if TYPE_CHECKING:
    from admission.inputs.walk import Options as InputOptions
    from admission.pin.lookup import Drift, Found

__all__ = ["Entry", "Outcome", "PinOptions", "pin"]

Status = Literal["pinned", "unpinned", "drift", "unresolved", "left alone", "not written", "not locked"]
EXIT_OK, EXIT_UNPINNED, EXIT_ERROR = 0, 1, 2


@dataclass(frozen=True, slots=True)
class PinOptions:
    settings: ImagesSettings  # the policy's `images` gates: allowed_registries, insecure_registries, mirrors, ...
    check: bool = False
    lock: str | None = None
    platform: str | None = None
    drift: bool = False
    fail_on_drift: bool = False
    cache_dir: str | None = None
    no_cache: bool = False
    registry_config: str | None = None
    cwd: str | None = None
    deadline_s: float = 60.0  # for every lookup of the run together


@dataclass(frozen=True, slots=True)
class Entry:
    file: str
    line: int
    field: str
    status: Status
    detail: str
    written: str
    pinned: str | None = None  # the new reference, for `pinned`
    reason: str | None = None  # why a lookup failed (`unresolved`), as "<reason>: <message>"


@dataclass(slots=True)
class Outcome:
    entries: list[Entry] = field(default_factory=list)
    errors: list[Problem] = field(default_factory=list)
    already: int = 0  # references pinned before this run
    files_written: list[str] = field(default_factory=list)
    lock_written: str | None = None
    lock_from: tuple[tuple[str, ...], ...] = ()  # the compose projects (`-f` files) the lock was made from
    asked: int = 0  # lookups sent: tags to pin, and (--drift) the tags of pinned references
    answered: int = 0  # of those, the ones a registry answered (a digest, or: no such tag or platform)
    drift_unchecked: int = 0  # pinned references whose tag could not be looked up under --drift
    code: int = EXIT_OK

    def count(self, status: Status) -> int:
        return sum(1 for e in self.entries if e.status == status)

    @property
    def nothing_answered(self) -> bool:
        """Lookups were sent and not one was answered: the registry, the network or the credentials are wrong for
        the whole run, which is an error (exit 2), not a list of references to look at one by one."""
        return self.asked > 0 and self.answered == 0


@dataclass(frozen=True, slots=True)
class _Judged:
    site: Site
    kind: Literal["unpinned", "pinned", "left alone"]
    why: str = ""
    has_tag: bool = False


def _judge(site: Site) -> _Judged:
    if "$" in site.written:
        return _Judged(site, "left alone", "interpolated from a variable; pin the value where the variable is set")
    try:
        ref = reference.parse_normalized_named(site.written)
    except reference.ReferenceError as exc:
        if site.why is not None:
            return _Judged(site, "left alone", site.why)
        return _Judged(site, "left alone", f"not a valid image reference ({exc})")
    if ref.digest is not None:
        return _Judged(site, "pinned", has_tag=ref.tag is not None)
    if site.why is not None:
        return _Judged(site, "left alone", site.why)
    if site.built:
        why = "a local build: names the image its service builds (build:), not one it pulls"
        if ref.tag is None or ref.tag == reference.DEFAULT_TAG:
            from admission.policy.rules.images import tag_the_build

            why += f"; {tag_the_build(site.written, ref.tag)}"
        return _Judged(site, "left alone", why)
    return _Judged(site, "unpinned", has_tag=ref.tag is not None)


def _new_value(written: str, digest: str, *, has_tag: bool) -> str:
    # A name without a tag pulled :latest; saying so keeps the tag checkable for drift.
    return f"{written}@{digest}" if has_tag else f"{written}:{reference.DEFAULT_TAG}@{digest}"


class _Roots:
    """The repository roots writes stay under: each PATH's nearest folder with `.git`; outside a repository, the
    current directory for a PATH inside it, else the PATH's own folder. Compared after resolving symlinks."""

    def __init__(self, paths: Sequence[str], cwd: str) -> None:
        from admission.inputs.paths import RepoPaths

        repo = RepoPaths(cwd)
        roots: set[str] = set()
        for path in paths:
            full = os.path.normpath(os.path.join(cwd, path))
            folder = full if os.path.isdir(full) else os.path.dirname(full)
            root = repo.root(folder)
            if root is None:
                root = cwd if folder == cwd or folder.startswith(cwd.rstrip(os.sep) + os.sep) else folder
            roots.add(os.path.realpath(root))
        self.roots = sorted(roots)

    def holds(self, file: str) -> bool:
        real = os.path.realpath(file)
        return any(real == r or real.startswith(r.rstrip(os.sep) + os.sep) for r in self.roots)


def pin(paths: Sequence[str], *, options: PinOptions, inputs_options: InputOptions) -> Outcome:
    """Run `pin` over `paths` (files or directories, read as `check` reads them). `inputs_options` is the CLI's
    inputs.Options (compose -f overrides, --env-file, excludes). Raises inputs.UsageError for a usage error."""
    from admission.inputs import walk as inputs

    cwd = os.path.abspath(options.cwd or os.getcwd())
    if "-" in paths:
        raise inputs.UsageError("pin rewrites files in place, so it cannot read stdin (-); name the files")
    collected = inputs.collect(paths, options=inputs_options)
    out = Outcome(errors=list(collected.errors))
    found = find_sites(collected.workloads)
    out.errors.extend(found.errors)
    judged = [_judge(site) for site in found.sites]
    roots = _Roots(paths, cwd)
    if options.lock is not None:
        _lock(judged, out, options=options, lock=options.lock, projects=collected.projects)
    else:
        _in_place(judged, found, out, options=options, roots=roots)
    out.entries.sort(key=lambda e: (e.file, e.line, e.field))
    if out.errors or out.nothing_answered or (options.fail_on_drift and out.drift_unchecked):
        out.code = EXIT_ERROR
    elif (options.check and out.count("unpinned")) or (options.fail_on_drift and out.count("drift")):
        out.code = EXIT_UNPINNED
    return out


def _lookups(options: PinOptions, *, wanted: Sequence[str], pinned: Sequence[str],
             out: Outcome) -> tuple[dict[str, Found], dict[str, Drift]]:
    if not wanted and not pinned:
        return {}, {}
    from admission.pin.lookup import lookup

    try:
        answers, drifts = lookup(wanted=wanted, pinned=pinned, settings=options.settings, platform=options.platform,
                                 cache_dir=options.cache_dir, no_cache=options.no_cache,
                                 registry_config=options.registry_config, deadline_s=options.deadline_s)
    except InputError as exc:
        out.errors.append(Problem(message=exc.message, file=exc.file, line=exc.line, path=exc.path))
    except RecursionError:
        out.errors.append(Problem(message="the registry config nests too deeply to be a Docker config",
                                  file=options.registry_config))
        return {}, {}
    out.asked += len(answers) + len(drifts)
    out.answered += sum(1 for answer in (*answers.values(), *drifts.values()) if answer.answered)
    return answers, drifts


def _answered(j: _Judged, answers: dict[str, Found], out: Outcome) -> str | None:
    """The pinned form of an unpinned reference from its lookup, or None after listing it `unresolved`."""
    answer = answers.get(j.site.written)
    if answer is None or answer.digest is None:
        error = answer.error if answer is not None else "error: not looked up"
        out.entries.append(_entry(j.site, "unresolved", f"{j.site.written}: {error}", reason=error))
        return None
    return _new_value(j.site.written, answer.digest, has_tag=j.has_tag)


def _platform_note(options: PinOptions) -> str:
    if options.platform is None:
        return ""
    return f" ({options.platform} manifest, not the index: other platforms cannot pull it)"


def _entry(site: Site, status: Status, detail: str, *, pinned: str | None = None, reason: str | None = None) -> Entry:
    return Entry(site.file, site.line, site.path, status, detail, site.written, pinned, reason)


def _drift_entries(judged: Sequence[_Judged], drifts: dict[str, Drift], out: Outcome) -> None:
    for j in judged:
        drift = drifts.get(j.site.written)
        if drift is None:
            continue
        if drift.error is not None:
            out.drift_unchecked += 1
            out.entries.append(_entry(j.site, "unresolved", f"{j.site.written}: drift not checked: {drift.error}",
                                      reason=drift.error))
        elif drift.moved:
            tag = reference.parse_normalized_named(j.site.written).tag
            out.entries.append(_entry(j.site, "drift", f"{j.site.written}: tag {tag} now points at {drift.current}"))


def _in_place(judged: Sequence[_Judged], found: Sites, out: Outcome, *, options: PinOptions, roots: _Roots) -> None:
    writable = {j.site.file: roots.holds(j.site.file) for j in judged}
    to_pin = [j for j in judged if j.kind == "unpinned" and writable[j.site.file]]
    drift_wanted = [j for j in judged if j.kind == "pinned" and j.has_tag] if options.drift else []
    answers, drifts = _lookups(options, wanted=[] if options.check else [j.site.written for j in to_pin],
                               pinned=[j.site.written for j in drift_wanted], out=out)
    edits: dict[str, list[tuple[Span, str]]] = {}  # by real path: a file reached by two names is written once
    shown: dict[str, str] = {}
    for j in judged:
        site = j.site
        if j.kind == "pinned":
            out.already += 1
        elif j.kind == "left alone":
            out.entries.append(_entry(site, "left alone", f"{site.written}: {j.why}"))
        elif not writable[site.file]:
            out.entries.append(_entry(site, "not written", f"{site.written}: {site.file} is outside the repository "
                                                           f"root ({', '.join(roots.roots)})"))
        elif options.check:
            out.entries.append(_entry(site, "unpinned", f"{site.written} has no digest"))
        else:
            value = _answered(j, answers, out)
            if value is None:
                continue
            assert site.span is not None  # a site without a span is judged "left alone"
            edits.setdefault(found.texts[site.file].path, []).append((site.span, value))
            shown.setdefault(found.texts[site.file].path, site.file)
            out.entries.append(_entry(site, "pinned", f"{value}{_platform_note(options)}",
                                      pinned=value))
    _drift_entries(drift_wanted, drifts, out)
    sources = {text.path: text for text in found.texts.values()}
    for real, file_edits in sorted(edits.items()):
        _write(sources[real], shown[real], file_edits, out)


def _write(source: SourceText, file: str, edits: list[tuple[Span, str]], out: Outcome) -> None:
    """Splice and write one file, after checking that it still says what it said when it was read."""
    try:
        current = SourceText.read(source.path, display=file)
    except InputError as exc:
        out.errors.append(Problem(message=exc.message, file=file))
        return
    if current.text != source.text or current.bom != source.bom:
        out.errors.append(Problem(message="changed while pin was running; nothing written to it, run pin again",
                                  file=file))
        return
    try:
        source.write(splice(source.text, edits))
    except OSError as exc:
        out.errors.append(Problem(message=f"cannot write: {exc.strerror or exc}", file=file))
        return
    out.files_written.append(file)


def _lock(judged: Sequence[_Judged], out: Outcome, *, options: PinOptions, lock: str,
          projects: Sequence[tuple[str, ...]]) -> None:
    """A compose override with `services.<name>.image` pinned, as `docker compose config --lock-image-digests`
    writes it; the sources are not touched. A lock entry stays while its service's reference is unchanged (a lock
    is updated by changing the reference, or by deleting the entry), so a second run changes nothing. Under
    --check: every service is pinned, in the sources or in the lock. When no lookup was answered nothing is
    written (the old lock, if any, stays as it was). `projects`: the compose files (as `-f` takes them) the
    services came from, named in the lock's comment."""
    services: dict[str, _Judged] = {}
    for j in judged:
        site = j.site
        if j.kind == "left alone":
            out.entries.append(_entry(site, "left alone", f"{site.written}: {j.why}"))
        elif not site.services:
            if j.kind != "pinned":
                advice = ("pin Kubernetes manifests in place (without --lock) or with kustomize `images:`"
                          if site.source == "kubernetes" else "pin Dockerfiles in place (without --lock)")
                out.entries.append(_entry(site, "not locked", f"{site.written}: --lock writes a compose override; "
                                                              f"{advice}"))
        else:
            services.update((name, j) for name in site.services)
    locked = _read_lock(lock, out)
    result: dict[str, str] = {}
    pending: dict[str, _Judged] = {}
    drift_wanted: list[tuple[_Judged, str]] = []
    for name, j in sorted(services.items()):
        kept = locked.get(name)
        if j.kind == "pinned":
            result[name] = j.site.written
        elif kept is not None and _locks(kept, j.site.written):
            result[name] = kept
        else:
            pending[name] = j
            continue
        out.already += 1
        if options.drift and "@" in result[name]:
            drift_wanted.append((j, result[name]))
    wanted = [] if options.check else sorted({j.site.written for j in pending.values()})
    answers, drifts = _lookups(options, wanted=wanted, pinned=[pin for _, pin in drift_wanted], out=out)
    for name, j in pending.items():
        site = j.site
        if options.check:
            out.entries.append(_entry(site, "unpinned", f"{site.written}: service {name} has no digest here "
                                                        f"or in {lock}"))
            continue
        value = _answered(j, answers, out)
        if value is None:
            continue
        result[name] = value
        out.entries.append(_entry(site, "pinned", f"service {name}: {value} in {lock}"
                                                  f"{_platform_note(options)}", pinned=value))
    for j, pin in drift_wanted:
        drift = drifts.get(pin)
        if drift is not None and (drift.moved or drift.error):
            shown = _Judged(Site(j.site.file, j.site.line, j.site.path, pin, j.site.source, None), "pinned")
            _drift_entries([shown], {pin: drift}, out)
    out.lock_from = tuple(dict.fromkeys(projects))
    if options.check or out.nothing_answered or (result == locked and os.path.exists(lock)):
        return
    try:
        _write_lock(lock, dict(sorted(result.items())), projects=out.lock_from)
    except OSError as exc:
        out.errors.append(Problem(message=f"cannot write the lock file: {exc.strerror or exc}", file=lock))
        return
    out.lock_written = lock


def _locks(locked: str, written: str) -> bool:
    """Whether a lock entry pins the reference the sources write now (`written@digest`, or `written:latest@...`)."""
    base, at, digest = locked.rpartition("@")
    if not at or base not in (written, f"{written}:{reference.DEFAULT_TAG}"):
        return False
    try:
        reference.validate_digest(digest)
    except reference.ReferenceError:
        return False
    return True


def _read_lock(lock: str, out: Outcome) -> dict[str, str]:
    """services.<name>.image of an existing lock file; {} when there is none yet."""
    if not os.path.exists(lock):
        return {}
    from admission.yamlload import load_documents

    try:
        text = SourceText.read(lock, display=lock).text
        documents = load_documents(text, file=lock, dialect="1.2")
    except InputError as exc:
        out.errors.append(Problem(message=exc.message, file=exc.file or lock, line=exc.line))
        return {}
    images: dict[str, str] = {}
    for document in documents:
        services = document.value.get("services") if isinstance(document.value, dict) else None
        for name, service in (services or {}).items() if isinstance(services, dict) else ():
            if isinstance(service, dict) and isinstance(service.get("image"), str):
                images[str(name)] = service["image"]
    return images


def _write_lock(lock: str, images: dict[str, str], *, projects: Sequence[tuple[str, ...]]) -> None:
    import json
    import shlex

    # JSON strings are YAML strings: every value is quoted exactly, and the file needs no YAML emitter.
    made_from = ", ".join(dict.fromkeys(f for files in projects for f in files)) or "no compose file"
    lines = [f"# Image digests written by `admission-cli pin --lock` from {made_from}.",
             "# Use it as the last compose file, from the folder pin ran in:"]
    lines += [f"#   docker compose {' '.join(f'-f {shlex.quote(f)}' for f in (*files, lock))} up" for files in projects]
    lines.append("services:" if images else "services: {}")
    for name, image in images.items():
        lines += [f"  {json.dumps(name)}:", f"    image: {json.dumps(image)}"]
    write_atomic(lock, ("\n".join(lines) + "\n").encode(), mode=new_file_mode(lock))
