"""Where a value is written in a source file, to the code point, so that `pin` can replace that span and nothing else.

YAML is never round-tripped: a dump rewraps lines, drops comments, and collapses anchors and merge keys. The value's
span comes from the parser's node marks instead. Marks are code-point indices into the text the parser read (not byte
offsets). libyaml skips a byte-order mark without counting it and PyYAML's pure reader counts it, so the BOM is taken
off before parsing and put back when writing; then both parsers agree, and tests hold them to it. A start mark points
at `&anchor`, a tag or the opening quote, so the span is measured back from the end mark, where only a closing quote
can stand, and checked against the node's value: a value written across lines or with escapes is refused rather
than guessed at. Dockerfiles have no parser marks: the reference is found as a whole token on its instruction's lines.

Hand-written: ruamel.yaml keeps comments but still re-emits the document (and reformats what it does not model),
and no library maps a Dockerfile operand back to its columns.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterable, Sequence
from typing import Literal

import yaml
from yaml.nodes import MappingNode, Node, ScalarNode, SequenceNode

from admission.errors import InputError
from admission.textio import MAX_TEXT_BYTES, write_atomic
from admission.model import frozen

__all__ = ["SourceText", "Span", "Unspannable", "YamlIndex", "dockerfile_span", "splice"]

_BOMS = (b"\xef\xbb\xbf",)  # the project reads UTF-8 only (textio.py), with or without a BOM
Parser = Literal["c", "pure"]


class Unspannable(Exception):
    """The value cannot be located exactly (or would not survive a splice); the message says why, for the listing.
    `written` is the text as the file has it, when that is known (`${REGISTRY}/app` for an interpolated value)."""

    def __init__(self, message: str, *, written: str | None = None) -> None:
        super().__init__(message)
        self.written = written


@frozen
class Span:
    """`text[start:end]` of a SourceText is the value as written; `line` is 1-based."""

    start: int
    end: int
    line: int


@frozen
class SourceText:
    """A file decoded once, newlines untouched (`newline=''`), its BOM set aside: what spans index into."""

    path: str
    text: str
    bom: bytes
    mode: int | None  # the file's permission bits, kept when it is rewritten

    @classmethod
    def read(cls, path: str, *, display: str) -> SourceText:
        try:
            with open(path, "rb") as fh:
                data = fh.read(MAX_TEXT_BYTES + 1)
                mode = os.fstat(fh.fileno()).st_mode & 0o7777
        except OSError as exc:
            raise InputError(f"cannot read: {exc.strerror or exc}", file=display) from None
        if len(data) > MAX_TEXT_BYTES:
            raise InputError(f"input is larger than the {MAX_TEXT_BYTES >> 20} MiB cap for text inputs", file=display)
        bom = next((b for b in _BOMS if data.startswith(b)), b"")
        try:
            text = data[len(bom):].decode("utf-8")
        except UnicodeDecodeError as exc:
            line = data.count(b"\n", 0, exc.start) + 1
            raise InputError(f"input is not valid UTF-8 (byte 0x{data[exc.start]:02x} at offset {exc.start})",
                             file=display, line=line) from None
        return cls(path=path, text=text, bom=bom, mode=mode)

    def encode(self, text: str) -> bytes:
        return self.bom + text.encode("utf-8")

    def write(self, text: str) -> None:
        """Replace the file with `text`, encoded as it was read, keeping its mode (see `write_atomic`)."""
        write_atomic(self.path, self.encode(text), mode=self.mode)

    def line_text(self, line: int) -> str:
        lines = self.text.splitlines(keepends=True)
        return lines[line - 1] if 0 < line <= len(lines) else ""


def _loader(parser: Parser) -> type:
    if parser == "c":
        return yaml.CSafeLoader  # type: ignore[no-any-return]
    return yaml.SafeLoader


class YamlIndex:
    """Every mapping entry of a YAML stream, by the line of its key, with the value nodes as the parser marked them.

    An alias is the node it names (the composer shares it), so a value an anchor or a merge key supplies is found at
    the anchor; callers de-duplicate by span.
    """

    def __init__(self, text: str, *, file: str, parser: Parser = "c") -> None:
        self.text = text
        self._by_line: dict[int, list[tuple[str, Node]]] = {}
        try:
            roots = list(yaml.compose_all(text, Loader=_loader(parser)))
        except yaml.MarkedYAMLError as exc:
            mark = exc.problem_mark or exc.context_mark
            raise InputError(f"YAML syntax error: {exc.problem or exc.context}", file=file,
                             line=mark.line + 1 if mark else None) from None
        except yaml.YAMLError as exc:
            raise InputError(f"YAML error: {exc}", file=file) from None
        seen: set[int] = set()
        stack: list[Node] = [r for r in roots if r is not None]
        while stack:
            node = stack.pop()
            if id(node) in seen:
                continue
            seen.add(id(node))
            if isinstance(node, MappingNode):
                for key, value in node.value:
                    if isinstance(key, ScalarNode):
                        self._by_line.setdefault(key.start_mark.line + 1, []).append((key.value, value))
                    stack.append(value)
            elif isinstance(node, SequenceNode):
                stack.extend(node.value)

    def value_span(self, *, line: int, key: str, value: str) -> Span:
        """The span of the scalar under `key` whose key is on `line` (1-based) and whose value is `value` as written.

        Several entries can share a line (flow style: `{image: a}, {image: b}`); the written value tells them apart.
        """
        candidates = [node for name, node in self._by_line.get(line, ()) if name == key]
        if not candidates:
            raise Unspannable(f"no `{key}:` on line {line}")
        matching = [n for n in candidates if isinstance(n, ScalarNode) and n.value == value]
        if not matching:
            scalars = [n.value for n in candidates if isinstance(n, ScalarNode)]
            raise Unspannable(f"the `{key}:` on line {line} is not written as {value!r}",
                              written=scalars[0] if len(scalars) == 1 else None)
        return scalar_span(self.text, matching[0])


def scalar_span(text: str, node: Node) -> Span:
    """The characters of a one-line scalar's value, inside any quotes and after any `&anchor` or `!tag`."""
    if not isinstance(node, ScalarNode):
        raise Unspannable("not a plain string value")
    if node.style in ("|", ">"):
        raise Unspannable("written as a block scalar (| or >)")
    end = node.end_mark.index
    if node.style in ('"', "'"):
        end -= 1
        if text[end:end + 1] != node.style:
            raise Unspannable("its closing quote is not where the parser says")
    start = end - len(node.value)
    if start < node.start_mark.index or text[start:end] != node.value:
        raise Unspannable("written across lines or with escapes; edit it by hand")
    if node.style in ('"', "'") and text[start - 1:start] != node.style:
        raise Unspannable("written across lines or with escapes; edit it by hand")
    return Span(start, end, node.end_mark.line + 1)


_TOKEN_EDGE = " \t\r\n=,\"'"  # what may stand either side of a reference in an instruction (flags: --from=, from=)


def dockerfile_span(text: str, *, line: int, reference: str) -> Span:
    """The first occurrence of `reference` as a whole token after the instruction keyword on `line`, or on its
    continuation lines (an instruction split with `\\` or the escape directive's backtick); comment and blank lines
    inside an instruction are skipped, as BuildKit skips them."""
    offsets = _line_offsets(text)
    if not 0 < line <= len(offsets):
        raise Unspannable(f"line {line} is past the end of the file")
    for index in range(line - 1, len(offsets)):
        start = offsets[index]
        body = text[start:offsets[index + 1] if index + 1 < len(offsets) else len(text)].rstrip("\r\n")
        first = index == line - 1
        if not first and (not body.strip() or body.lstrip().startswith("#")):
            continue
        keyword = re.match(r"\s*\S+", body) if first else None  # the instruction word is never the operand
        found = _token_in(body, reference, keyword.end() if keyword else 0)
        if found is not None:
            return Span(start + found, start + found + len(reference), index + 1)
        if not body.rstrip().endswith(("\\", "`")):
            break
    raise Unspannable(f"{reference!r} is not written as such on line {line} (set by a build arg?)")


def _token_in(segment: str, token: str, start: int) -> int | None:
    index = segment.find(token, start)
    while index >= 0:
        before = segment[index - 1] if index > 0 else " "
        after = segment[index + len(token)] if index + len(token) < len(segment) else " "
        if before in _TOKEN_EDGE and after in _TOKEN_EDGE:
            return index
        index = segment.find(token, index + 1)
    return None


def _line_offsets(text: str) -> list[int]:
    offsets = [0]
    for match in re.finditer("\n", text):
        offsets.append(match.end())
    if offsets[-1] == len(text) and len(offsets) > 1:
        offsets.pop()  # a final newline starts no line
    return offsets


def splice(text: str, edits: Iterable[tuple[Span, str]]) -> str:
    """`text` with each span replaced by its new value, nothing else touched. Spans must not overlap."""
    ordered: Sequence[tuple[Span, str]] = sorted(edits, key=lambda e: e[0].start)
    out: list[str] = []
    position = 0
    for span, value in ordered:
        if span.start < position:
            raise ValueError(f"overlapping edits at line {span.line}")
        out.append(text[position:span.start])
        out.append(value)
        position = span.end
    out.append(text[position:])
    return "".join(out)
