"""Where each image reference is written: the source adapters say which values are references (and the file each
came from, through compose overrides, `extends` and `include`), sources/spans.py says where those values sit.

The adapters are the one reading of every format, so `pin` rewrites exactly what `check` checks: the same pod-bearing
kinds, init and ephemeral containers, `List` items, compose projects and Dockerfile stages.
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Literal

from admission.errors import InputError
from admission.findings import Problem
from admission.model import Container, Located, Workload
from admission.sources.spans import SourceText, Span, Unspannable, YamlIndex, dockerfile_span

__all__ = ["Site", "Sites", "find_sites"]

Source = Literal["compose", "kubernetes", "dockerfile"]


@dataclass(frozen=True, slots=True)
class Site:
    """One reference as written. `span` is None when it cannot be located exactly (`why` says so).

    `services` are the compose services whose `image` it is (for --lock): several when an anchor or `extends`
    supplies one value to many; empty for build bases, Kubernetes and Dockerfiles.
    """

    file: str  # as shown (a path the user can open)
    line: int
    path: str  # the field: services.web.image, spec.containers[0].image, stages[1].from
    written: str
    source: Source
    span: Span | None
    why: str | None = None
    services: tuple[str, ...] = ()
    built: bool = False  # a compose `image:` beside `build:` names what the build produces


@dataclass(slots=True)
class Sites:
    sites: list[Site] = field(default_factory=list)
    texts: dict[str, SourceText] = field(default_factory=dict)  # by file as shown; one object per real file
    errors: list[Problem] = field(default_factory=list)


def find_sites(workloads: Iterable[Workload], *, parser: Literal["c", "pure"] = "c") -> Sites:
    """Every image reference of `workloads` with its span; one Site per span (an anchor used twice is one Site)."""
    out = Sites()
    indexes: dict[str, YamlIndex | InputError] = {}
    by_span: dict[tuple[str, int, int], int] = {}  # (file, start, end) -> index in out.sites

    by_real: dict[str, SourceText] = {}  # one read per file, however many names it is reached by

    def text_of(file: str) -> SourceText:
        if file not in out.texts:
            real = os.path.realpath(file)
            if real not in by_real:
                by_real[real] = SourceText.read(real, display=file)
            out.texts[file] = by_real[real]
        return out.texts[file]

    def index_of(file: str) -> YamlIndex:
        found = indexes.get(file)
        if found is None:
            text = text_of(file).text
            try:
                found = YamlIndex(text, file=file, parser=parser)
            except InputError as exc:
                # JSON that libyaml refuses for its tabs was read with the tabs as spaces (sources/kubernetes.py):
                # the same length, so the marks index the original text.
                found = exc
                if "\t" in text and text.lstrip()[:1] in ("{", "["):
                    try:
                        found = YamlIndex(text.replace("\t", " "), file=file, parser=parser)
                        found.text = text
                    except InputError:
                        pass
            indexes[file] = found
        if isinstance(found, InputError):
            raise found
        return found

    def add(located: Located[str], source: Source, *, yaml_key: str | None, service: str | None = None,
            built: bool = False) -> None:
        origin = located.origin
        file, line = origin.file, origin.line
        if file in ("-", "") or line is None:
            return  # stdin is refused before here; a value without a line came from no file
        span: Span | None = None
        why: str | None = None
        raw = located.value
        try:
            if yaml_key is not None:
                span = index_of(file).value_span(line=line, key=yaml_key, value=located.value)
            else:
                span = dockerfile_span(text_of(file).text, line=line, reference=located.value)
        except Unspannable as exc:
            why = str(exc)
            if exc.written is not None:
                raw = exc.written
            elif "$" in text_of(file).line_text(line):
                why = "set by a variable or build arg on its line; pin the value where it is defined"
        except InputError as exc:
            out.errors.append(Problem(message=exc.message, file=exc.file or file, line=exc.line, path=exc.path))
            return
        services = (service,) if service is not None else ()
        if span is not None:
            key = (text_of(file).path, span.start, span.end)
            if key in by_span:
                i = by_span[key]
                old = out.sites[i]
                out.sites[i] = Site(old.file, old.line, old.path, old.written, old.source, old.span, old.why,
                                    tuple(dict.fromkeys(old.services + services)), old.built and built)
                return
            by_span[key] = len(out.sites)
            line = span.line
            written = text_of(file).text[span.start:span.end]
        else:
            written = raw
        out.sites.append(Site(file, line, origin.path, written, source, span, why, services, built))

    def inline_bases(container: Container) -> None:
        # dockerfile_inline: a Dockerfile inside the compose file; its FROM is still one line of that file's text
        for base in container.base_images:
            if ".dockerfile_inline" in base.origin.path:
                add(base, "compose", yaml_key=None)

    def dockerfile_sites(file: str) -> None:
        """Every stage's FROM image and every COPY --from / RUN --mount from= image, as written (ARGs unexpanded):
        any stage can be a build target, so each is pinned, not only those one build needs."""
        from admission.sources import dockerfile  # only when there is a Dockerfile

        try:
            parsed = dockerfile.parse(text_of(file).text, file=file)
        except InputError as exc:
            out.errors.append(Problem(message=exc.message, file=exc.file or file, line=exc.line, path=exc.path))
            return
        names = {stage.name for stage in parsed.stages if stage.name is not None}
        for stage in parsed.stages:
            if stage.parent is None and stage.base.value.lower() != dockerfile.SCRATCH:
                add(stage.base, "dockerfile", yaml_key=None)
            for ref, origin in zip(stage.copies_from, stage.copies_from_origins):
                if not (ref.isdigit() or ref.lower() in names or ref.lower() == dockerfile.SCRATCH):
                    add(Located(ref, origin), "dockerfile", yaml_key=None)

    dockerfiles: list[str] = []  # standalone ones and those compose builds read
    for workload in workloads:
        if workload.source == "kubernetes":
            for container in workload.containers:
                if container.image is not None:
                    add(container.image, "kubernetes", yaml_key="image")
        elif workload.source == "compose":
            container = workload.containers[0]
            if container.image is not None:
                add(container.image, "compose", yaml_key="image", service=workload.name, built=container.built)
            inline_bases(container)
            origins = [b.origin for b in container.base_images] + [u.origin for u in container.unresolved_bases]
            dockerfiles.extend(o.file for o in origins if ".dockerfile_inline" not in o.path)
        elif workload.source == "dockerfile":
            dockerfiles.append(workload.origin.file)
    for file in dict.fromkeys(dockerfiles):
        dockerfile_sites(file)
    return out
