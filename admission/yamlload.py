"""YAML with line numbers, in two dialects: YAML 1.2 as Docker Compose reads it (go-yaml v3), and
YAML 1.1 as kubectl reads it (sigs.k8s.io/yaml over go-yaml v2).

Hand-written on top of libyaml's node composer (PyYAML CParser) because no YAML library offers
both dialects with per-key line numbers at C speed: ruamel.yaml tracks lines but is several times
slower, and PyYAML's constructors resolve scalars as YAML 1.1 only. Scalars are resolved here, once,
by dialect; mappings and sequences come back as dict/list subclasses that remember their lines.
Aliases are shared, not copied, and what they would expand to is bounded (alias bombs): only nodes reached
through an alias count, so a file without anchors is never refused however large it is. Depth is bounded.
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any, Literal

import yaml
from yaml.nodes import MappingNode, ScalarNode, SequenceNode

from admission.errors import InputError

Dialect = Literal["1.1", "1.2"]

MAX_DEPTH = 200
# Nodes a naive reader would copy through aliases (a merge key's alias included), per document. Nodes written out
# in the file never count: a 10 MB compose file with 600,000 environment entries is large, not a bomb.
MAX_ALIAS_EXPANSION = 1_000_000

_STR = "tag:yaml.org,2002:str"
_MAP = "tag:yaml.org,2002:map"
_SEQ = "tag:yaml.org,2002:seq"


class YMap(dict):
    """A mapping that knows its own line and the line of each key (1-based)."""

    __slots__ = ("line", "key_lines")

    def __init__(self, line: int = 0) -> None:
        super().__init__()
        self.line = line
        self.key_lines: dict[str, int] = {}

    def line_of(self, key: str) -> int:
        return self.key_lines.get(key, self.line)


class YSeq(list):
    """A sequence that knows its own line and the line of each item (1-based)."""

    __slots__ = ("line", "item_lines")

    def __init__(self, line: int = 0) -> None:
        super().__init__()
        self.line = line
        self.item_lines: list[int] = []

    def line_of(self, index: int) -> int:
        return self.item_lines[index] if 0 <= index < len(self.item_lines) else self.line


@dataclass(frozen=True, slots=True)
class Tagged:
    """A value under a local tag we give meaning to (compose `!reset`, `!override`)."""

    tag: str
    value: Any
    line: int


@dataclass(frozen=True, slots=True)
class Document:
    value: Any
    line: int


def type_name(value: object) -> str:
    """How an error message names a YAML value's type ("a mapping", "an integer", "null")."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, int):
        return "an integer"
    if isinstance(value, float):
        return "a number"
    if isinstance(value, str):
        return "a string"
    if isinstance(value, dict):
        return "a mapping"
    if isinstance(value, list):
        return "a list"
    return type(value).__name__


def line_of(container: Any, key: Any, default: int | None = None) -> int | None:
    """Line of `container[key]` when the container came from this loader, else `default`."""
    if isinstance(container, YMap):
        return container.key_lines.get(key, container.line)
    if isinstance(container, YSeq) and isinstance(key, int):
        return container.line_of(key)
    return default


# --- scalar resolution ---------------------------------------------------------------------------

_NULLS = frozenset(("", "~", "null", "Null", "NULL"))
_TRUE_12 = frozenset(("true", "True", "TRUE"))
_FALSE_12 = frozenset(("false", "False", "FALSE"))
_TRUE_11 = _TRUE_12 | frozenset(("y", "Y", "yes", "Yes", "YES", "on", "On", "ON"))
_FALSE_11 = _FALSE_12 | frozenset(("n", "N", "no", "No", "NO", "off", "Off", "OFF"))
_FLOAT = re.compile(r"^[-+]?(\.[0-9]+|[0-9]+(\.[0-9]*)?)([eE][-+]?[0-9]+)?$")
_INF = {".inf": math.inf, ".Inf": math.inf, ".INF": math.inf, "+.inf": math.inf, "+.Inf": math.inf,
        "+.INF": math.inf, "-.inf": -math.inf, "-.Inf": -math.inf, "-.INF": -math.inf}
_NAN = frozenset((".nan", ".NaN", ".NAN"))
_NUMERIC_START = frozenset("0123456789+-.")
_BASES = {"x": 16, "X": 16, "o": 8, "O": 8, "b": 2, "B": 2}


def _go_int(text: str, dialect: Dialect) -> int | None:
    """strconv.ParseInt(text, 0, 64) as go-yaml calls it, after dropping underscores."""
    s = text.replace("_", "")
    sign = 1
    if s[:1] in "+-":
        sign = -1 if s[0] == "-" else 1
        s = s[1:]
    if not s:
        return None
    try:
        if len(s) > 2 and s[0] == "0" and s[1] in _BASES:
            if dialect == "1.1" and s[1] in "oO":
                return None  # go-yaml v2 has no 0o octals
            value = int(s[2:], _BASES[s[1]])
        elif len(s) > 1 and s[0] == "0":
            value = int(s[1:], 8)
        elif s.isdigit():
            value = int(s)
        else:
            return None
    except ValueError:
        return None
    value *= sign
    return value if -(2**63) <= value < 2**63 else None


def resolve_plain(text: str, dialect: Dialect) -> Any:
    """The value of an unquoted, untagged scalar in the given dialect."""
    if text in _NULLS:
        return None
    first = text[0]
    if first in "tTfFyYnNoO":
        if dialect == "1.2":
            if text in _TRUE_12:
                return True
            if text in _FALSE_12:
                return False
        else:
            if text in _TRUE_11:
                return True
            if text in _FALSE_11:
                return False
        return text
    if first not in _NUMERIC_START:
        return text
    number = _go_int(text, dialect)
    if number is not None:
        return number
    plain = text.replace("_", "")
    if _FLOAT.match(plain):
        return float(plain)
    if text in _INF:
        return _INF[text]
    if text in _NAN:
        return math.nan
    return text


def _resolve_tagged(tag: str, text: str, dialect: Dialect, mark: Any) -> Any:
    if tag == _STR:
        return text
    if tag == "tag:yaml.org,2002:int":
        value = _go_int(text, dialect)
        if value is None:
            raise _error(f"cannot decode {text!r} as !!int", mark)
        return value
    if tag == "tag:yaml.org,2002:float":
        try:
            return float(text.replace("_", ""))
        except ValueError:
            raise _error(f"cannot decode {text!r} as !!float", mark) from None
    if tag == "tag:yaml.org,2002:bool":
        value = resolve_plain(text, dialect)
        if not isinstance(value, bool):
            raise _error(f"cannot decode {text!r} as !!bool", mark)
        return value
    if tag == "tag:yaml.org,2002:null":
        return None
    return resolve_plain(text, dialect) if text else text


# --- composing and constructing ------------------------------------------------------------------

try:
    from yaml.cyaml import CParser as _Parser
except ImportError:  # pragma: no cover - PyYAML built without libyaml
    _Parser = None


class _Resolver(yaml.resolver.BaseResolver):
    def resolve(self, kind: Any, value: Any, implicit: Any) -> str:  # noqa: D401 - PyYAML hook
        if kind is ScalarNode:
            return "" if implicit[0] else _STR
        return _MAP if kind is MappingNode else _SEQ


if _Parser is not None:

    class _NodeLoader(_Parser, _Resolver):  # type: ignore[misc, valid-type]
        def __init__(self, stream: str) -> None:
            _Parser.__init__(self, stream)
            _Resolver.__init__(self)

else:  # pragma: no cover

    class _NodeLoader(yaml.reader.Reader, yaml.scanner.Scanner, yaml.parser.Parser, yaml.composer.Composer, _Resolver):  # type: ignore[no-redef]
        def __init__(self, stream: str) -> None:
            yaml.reader.Reader.__init__(self, stream)
            yaml.scanner.Scanner.__init__(self)
            yaml.parser.Parser.__init__(self)
            yaml.composer.Composer.__init__(self)
            _Resolver.__init__(self)


class _Error(Exception):
    def __init__(self, message: str, line: int | None) -> None:
        super().__init__(message)
        self.message = message
        self.line = line


def _error(message: str, mark: Any) -> _Error:
    return _Error(message, mark.line + 1 if mark is not None else None)


class _Builder:
    __slots__ = ("dialect", "strict_keys", "keep_tags", "memo", "sizes", "nodes", "aliased")

    def __init__(self, dialect: Dialect, strict_keys: bool, keep_tags: frozenset[str]) -> None:
        self.dialect = dialect
        self.strict_keys = strict_keys
        self.keep_tags = keep_tags
        self.memo: dict[int, Any] = {}
        self.sizes: dict[int, int] = {}
        self.nodes = 0  # nodes built so far, through aliases too: what a subtree costs when an alias repeats it
        self.aliased = 0  # nodes reached only through aliases: the bound

    def build(self, node: Any, depth: int = 0) -> Any:
        cls = type(node)
        if cls is ScalarNode:
            self.nodes += 1
            tag = node.tag
            if tag == "":
                return node.value if node.style else resolve_plain(node.value, self.dialect)
            if tag in self.keep_tags:
                text = node.value
                value = text if node.style else (resolve_plain(text, self.dialect) if text else None)
                return Tagged(tag, value, node.start_mark.line + 1)
            return _resolve_tagged(tag, node.value, self.dialect, node.start_mark)
        key = id(node)
        if key in self.memo:
            # An alias: shared, not copied. Count what a naive expansion would cost.
            size = self.sizes.get(key, 1)
            self.nodes += size
            self.aliased += size
            if self.aliased > MAX_ALIAS_EXPANSION:
                # The alias is the anchored node itself, whose mark is the anchor's: the key that holds the alias
                # gives the line (see _mapping).
                raise _Error(f"alias expansion exceeds {MAX_ALIAS_EXPANSION} nodes (possible alias bomb)", None)
            return self.memo[key]
        if depth > MAX_DEPTH:
            raise _error(f"nesting deeper than {MAX_DEPTH} levels", node.start_mark)
        before = self.nodes
        self.nodes += 1
        if cls is MappingNode:
            result: Any = self._mapping(node, depth)
        else:
            seq = YSeq(node.start_mark.line + 1)
            self.memo[key] = seq
            append, lines = seq.append, seq.item_lines.append
            for item in node.value:
                append(self.build(item, depth + 1))
                lines(item.start_mark.line + 1)
            result = seq
        self.sizes[key] = self.nodes - before
        if node.tag in self.keep_tags:
            return Tagged(node.tag, result, node.start_mark.line + 1)
        return result

    def _mapping(self, node: Any, depth: int) -> YMap:
        mapping = YMap(node.start_mark.line + 1)
        self.memo[id(node)] = mapping
        merges: list[tuple[Any, Any]] = []
        key_lines = mapping.key_lines
        for key_node, value_node in node.value:
            if type(key_node) is not ScalarNode:
                raise _error("a mapping key must be a scalar", key_node.start_mark)
            if key_node.value == "<<" and key_node.tag in ("", "tag:yaml.org,2002:merge"):
                merges.append((key_node, value_node))
                continue
            key = self.build(key_node, depth + 1)
            if not isinstance(key, str):
                key = _key_text(key)
            if key in mapping and self.strict_keys:
                raise _error(f"mapping key {key!r} already defined at line {key_lines[key]}", key_node.start_mark)
            try:
                mapping[key] = self.build(value_node, depth + 1)
            except _Error as exc:
                if exc.line is None:
                    exc.line = key_node.start_mark.line + 1
                raise
            key_lines[key] = key_node.start_mark.line + 1
        for merge_key, merge in merges:
            sources = merge.value if type(merge) is SequenceNode else [merge]
            for source in sources:
                try:
                    value = self.build(source, depth + 1)
                except _Error as exc:
                    if exc.line is None:
                        exc.line = merge_key.start_mark.line + 1
                    raise
                if not isinstance(value, YMap):
                    raise _error("merge key '<<' needs a mapping or a list of mappings", source.start_mark)
                for k, v in value.items():
                    if k not in mapping:
                        mapping[k] = v
                        key_lines[k] = value.key_lines.get(k, value.line)
        return mapping


def _key_text(key: Any) -> str:
    if key is True:
        return "true"
    if key is False:
        return "false"
    if key is None:
        return "null"
    if isinstance(key, Tagged):
        return _key_text(key.value)
    return str(key)


def load_documents(text: str, *, file: str, dialect: Dialect, strict_keys: bool = False,
                   keep_tags: frozenset[str] = frozenset()) -> list[Document]:
    """Every document of a YAML stream, with lines. Raises InputError naming file and line."""
    return list(iter_documents(text, file=file, dialect=dialect, strict_keys=strict_keys, keep_tags=keep_tags))


def iter_documents(text: str, *, file: str, dialect: Dialect, strict_keys: bool = False,
                   keep_tags: frozenset[str] = frozenset()) -> Iterator[Document]:
    """The documents of a YAML stream one at a time, so that a reader of a large stream holds one document's nodes
    and values at once, not the whole stream's. Raises InputError naming file and line when it meets one."""
    loader = _NodeLoader(text)
    builder = _Builder(dialect, strict_keys, keep_tags)
    try:
        while True:
            try:
                if not loader.check_node():
                    return
                node = loader.get_node()
                builder.memo.clear()
                builder.sizes.clear()
                builder.nodes = builder.aliased = 0
                document = Document(builder.build(node), node.start_mark.line + 1)
                del node  # the node graph of a large document is most of its memory
                builder.memo.clear()
                builder.sizes.clear()
            except yaml.MarkedYAMLError as exc:
                mark = exc.problem_mark or exc.context_mark
                message = " ".join(part for part in (exc.context, exc.problem) if part) or "invalid YAML"
                raise InputError(f"YAML syntax error: {message}", file=file,
                                 line=mark.line + 1 if mark else None) from None
            except yaml.YAMLError as exc:
                raise InputError(f"YAML error: {exc}", file=file) from None
            except _Error as exc:
                raise InputError(exc.message, file=file, line=exc.line) from None
            except RecursionError:
                raise InputError(f"nesting deeper than {MAX_DEPTH} levels", file=file) from None
            yield document
    finally:
        dispose = getattr(loader, "dispose", None)
        if dispose:
            dispose()
