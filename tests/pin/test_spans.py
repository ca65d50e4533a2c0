"""Byte preservation without a registry: where each reference is written (sources/spans.py through pin/sites.py), with
libyaml and with PyYAML's pure parser, and what a splice leaves alone."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from admission.inputs import walk as inputs
from admission.pin.sites import find_sites
from admission.sources.spans import SourceText, Span, Unspannable, YamlIndex, dockerfile_span, splice
from tests.pin import project

HOST = "127.0.0.1:5000"
FAKE = "sha256:" + "ab" * 32
VARIANTS = {"lf": {}, "crlf": {"crlf": True}, "bom": {"bom": True}, "crlf-bom": {"crlf": True, "bom": True}}


def _sites(root: Path, parser: str):  # type: ignore[no-untyped-def]
    collected = inputs.collect([str(root)], options=inputs.Options())
    assert collected.errors == []
    return find_sites(collected.workloads, parser=parser)  # type: ignore[arg-type]


def _spans(found) -> set[tuple[str, int, int, int, str]]:  # type: ignore[no-untyped-def]
    return {(s.file, s.line, s.span.start, s.span.end, s.written) for s in found.sites if s.span is not None}


@pytest.mark.parametrize("variant", sorted(VARIANTS))
def test_libyaml_and_pure_pyyaml_locate_every_reference_at_the_same_code_points(tmp_path: Path, variant: str) -> None:
    root = project.make(tmp_path / "repo", HOST, **VARIANTS[variant])
    c, pure = _sites(root, "c"), _sites(root, "pure")
    assert _spans(c) == _spans(pure)
    for site in c.sites:
        if site.span is not None:
            assert c.texts[site.file].text[site.span.start:site.span.end] == site.written


@pytest.mark.parametrize("parser", ["c", "pure"])
@pytest.mark.parametrize("variant", sorted(VARIANTS))
def test_splicing_every_reference_changes_only_the_reference_lines(tmp_path: Path, variant: str, parser: str) -> None:
    root = project.make(tmp_path / "repo", HOST, **VARIANTS[variant])
    before = project.files(root)
    found = _sites(root, parser)
    edits: dict[str, list[tuple[Span, str]]] = {}
    for site in found.sites:
        if site.span is not None and "@" not in site.written and "$" not in site.written and not site.built:
            edits.setdefault(site.file, []).append((site.span, f"{site.written}@{FAKE}"))
    for file, file_edits in edits.items():
        found.texts[file].write(splice(found.texts[file].text, file_edits))
    references = {site.written: FAKE for site in found.sites if site.span is not None}
    project.assert_only_references_changed(before, project.files(root), digest_of=references,
                                           expected=project.PINNED_LINES)


def test_an_anchor_shared_by_two_services_is_one_site_at_the_anchor(tmp_path: Path) -> None:
    root = project.make(tmp_path / "repo", HOST)
    (site,) = [s for s in _sites(root, "c").sites if s.written == f"{HOST}/pin/app:1"]
    assert site.line == 6 and set(site.services) == {"web", "worker"}


def test_a_bom_moves_libyaml_marks_but_not_pure_pyyamls_so_it_is_set_aside(tmp_path: Path) -> None:
    text = "\ufeffimage: &img !!str \"nginx:1.25\"\n"
    c = yaml.compose(text, Loader=yaml.CSafeLoader).value[0][1]
    pure = yaml.compose(text, Loader=yaml.SafeLoader).value[0][1]
    assert pure.start_mark.index == c.start_mark.index + 1, "libyaml does not count the BOM; PyYAML does"
    path = tmp_path / "x.yaml"
    path.write_bytes(text.encode())
    source = SourceText.read(str(path), display="x.yaml")
    assert source.bom == project.BOM and not source.text.startswith("\ufeff")
    spans = {p: YamlIndex(source.text, file="x.yaml", parser=p).value_span(line=1, key="image", value="nginx:1.25")
             for p in ("c", "pure")}
    assert spans["c"] == spans["pure"]
    source.write(splice(source.text, [(spans["c"], "nginx:1.25@" + FAKE)]))
    assert path.read_bytes() == text.replace("nginx:1.25", "nginx:1.25@" + FAKE).encode()


@pytest.mark.parametrize("parser", ["c", "pure"])
def test_the_span_is_inside_the_quotes_after_anchor_and_tag(parser: str) -> None:
    text = "a: &x !!str 'nginx:1'\nb: *x\nc: {image: \"redis:7\"}  # flow\n"
    index = YamlIndex(text, file="f", parser=parser)
    assert text[slice(*_bounds(index.value_span(line=1, key="a", value="nginx:1")))] == "nginx:1"
    assert index.value_span(line=2, key="b", value="nginx:1") == index.value_span(line=1, key="a", value="nginx:1")
    assert text[slice(*_bounds(index.value_span(line=3, key="image", value="redis:7")))] == "redis:7"


def _bounds(span: Span) -> tuple[int, int]:
    return span.start, span.end


@pytest.mark.parametrize(("text", "why"), [
    ("image: |\n  nginx:1\n", "block scalar"),
    ('image: "ngin\\x78:1"\n', "escapes"),
    ("image: nginx\n  :1\n", "across lines"),
])
def test_a_value_that_cannot_be_spliced_exactly_is_refused_with_the_reason(text: str, why: str) -> None:
    node_value = yaml.safe_load(text)["image"]
    with pytest.raises(Unspannable, match=why):
        YamlIndex(text, file="f").value_span(line=1, key="image", value=node_value)


def test_a_dockerfile_reference_is_found_as_a_whole_token_on_its_instruction_lines() -> None:
    text = ("FROM --platform=$BUILDPLATFORM golang:1.22 AS build\n"
            "RUN --mount=type=bind,from=alpine:3,target=/x \\\n    true\n"
            "FROM \\\n  # base image\n  python:3.12\n")
    assert text[slice(*_bounds(dockerfile_span(text, line=1, reference="golang:1.22")))] == "golang:1.22"
    span = dockerfile_span(text, line=2, reference="alpine:3")
    assert text[span.start - 5:span.end + 1] == "from=alpine:3,"
    span = dockerfile_span(text, line=4, reference="python:3.12")
    assert span.line == 6 and text[span.start:span.end] == "python:3.12"
    with pytest.raises(Unspannable):
        dockerfile_span("FROM python:${PY}\n", line=1, reference="python:3.12")


def test_overlapping_edits_are_refused() -> None:
    with pytest.raises(ValueError, match="overlapping"):
        splice("abcdef", [(Span(0, 3, 1), "x"), (Span(2, 4, 1), "y")])
