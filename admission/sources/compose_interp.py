"""Compose variable interpolation and `.env` files, as compose-go v2 (Docker Compose v2) does them.

Hand-written: no Python library speaks compose-go's template (`:+`, `?`, nesting) and dotenv dialects.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping, Sequence

from admission.errors import InputError

Lookup = Callable[[str], "str | None"]

# compose-go template/template.go. Python's `re` picks alternatives leftmost-first like Go's regexp,
# so the greedy `.*}` branch behaves the same. A `$` not followed by `$`, a name or `{` stays literal
# (Compose v2.16 keeps "x$1" as written); a `${` that is not a valid braced form is an error.
_PATTERN = re.compile(
    r"\$(?i:(?P<escaped>\$)|(?P<named>[_a-z][_a-z0-9]*)"
    r"|\{(?P<braced>[_a-z][_a-z0-9]*(?::?[-+?](?:.*\}|[^}]*))?)\}|(?P<invalid>\{))"
)
_NAME = re.compile(r"[_a-zA-Z][_a-zA-Z0-9]*")
_MODIFIERS = (":?", "?", ":-", "-", ":+", "+")


class TemplateError(Exception):
    """An interpolation that Compose refuses: a malformed `${...}` or a missing required variable."""

    def __init__(self, message: str, *, required: bool) -> None:
        super().__init__(message)
        self.message = message
        self.required = required


def _first_closing_brace(text: str) -> int:
    """Index of the `}` that closes the first `${`, counting nested `${` (compose-go getFirstBraceClosingIndex)."""
    depth = 0
    i = 0
    while i < len(text):
        if text[i] == "}":
            depth -= 1
            if depth == 0:
                return i
        if text.startswith("${", i):
            depth += 1
            i += 1
        i += 1
    return -1


def _apply_modifier(substitution: str, lookup: Lookup) -> tuple[str, bool]:
    """Evaluate `NAME<op>WORD`; returns (value, applied). Not applied when there is no modifier."""
    name = _NAME.match(substitution)
    assert name is not None  # the pattern guarantees a name first
    rest = substitution[name.end():]
    op = next((m for m in _MODIFIERS if rest.startswith(m)), None)
    if op is None:
        return "", False
    var = name.group(0)
    word = substitute(rest[len(op):], lookup)
    value = lookup(var)
    if op in (":?", "?"):
        if value is None or (op == ":?" and value == ""):
            message = f"required variable {var} is missing a value"
            if word:
                message += f": {word}"
            raise TemplateError(message, required=True)
        return value, True
    if op == ":-":
        return (word if not value else value), True
    if op == "-":
        return (word if value is None else value), True
    if op == ":+":
        return (word if value else (value or "")), True
    return (word if value is not None else ""), True  # "+"


def substitute(template: str, lookup: Lookup) -> str:
    """Interpolate one string the way compose-go's template.Substitute does. Raises TemplateError."""
    if "$" not in template:
        return template
    errors: list[TemplateError] = []

    def replace(match: re.Match[str]) -> str:
        substring = match.group(0)
        closing = _first_closing_brace(substring)
        rest = ""
        if closing > -1:
            rest = substring[closing + 1:]
            substring = substring[: closing + 1]
        inner = _PATTERN.match(substring)
        if inner is None or inner.group("invalid") is not None:
            errors.append(TemplateError(f"invalid interpolation format in {template!r}: "
                                        "a '$' must be escaped with another '$'", required=False))
            return ""
        if inner.group("escaped"):
            return "$"
        named = inner.group("named")
        if named:
            value = lookup(named)
            return value if value is not None else ""
        braced = inner.group("braced") or ""
        try:
            value, applied = _apply_modifier(braced, lookup)
            if applied:
                return value + substitute(rest, lookup)
        except TemplateError as exc:
            errors.append(exc)
            return ""
        plain = lookup(braced)
        return plain if plain is not None else ""

    result = _PATTERN.sub(replace, template)
    if errors:
        raise errors[0]
    return result


# What interpolation put into a value, for no-secret-in-env: a value a variable (from `.env`, an env file or the
# shell) contributed to is not written in the compose file, which is where a secret belongs. Private-use characters
# mark each variable's non-empty value; they are removed from the value itself.
_OPEN, _CLOSE = "\ue000", "\ue001"


class Interpolated(str):
    """A value interpolation changed where a variable contributed text; `marked` is the value with each variable's
    text between private-use markers, so the part of a `KEY=VALUE` entry a variable filled can be told apart."""

    marked: str

    @property
    def from_variable(self) -> bool:
        return _OPEN in self.marked


def substitute_marked(template: str, lookup: Lookup) -> str:
    """substitute(), returning an Interpolated when a variable contributed non-empty text, else a plain str."""

    def marked_lookup(name: str) -> str | None:
        value = lookup(name)
        return value if not value else _OPEN + value + _CLOSE

    try:
        marked = substitute(template, marked_lookup)
    except TemplateError as exc:
        exc.message = exc.message.replace(_OPEN, "").replace(_CLOSE, "")
        exc.args = (exc.message,)
        raise
    if _OPEN not in marked:
        return marked
    out = Interpolated(marked.replace(_OPEN, "").replace(_CLOSE, ""))
    out.marked = marked
    return out


def split_assignment(text: str) -> tuple[str, str | None]:
    """`KEY=VALUE` -> (KEY, VALUE), a bare `KEY` -> (KEY, None); VALUE stays Interpolated when a variable filled it."""
    key, sep, value = text.partition("=")
    if not sep:
        return key, None
    marked = getattr(text, "marked", None)
    if marked is not None:
        rest = marked.partition("=")[2]
        if _OPEN in rest:
            out = Interpolated(value)
            out.marked = rest
            return key, out
    return key, value


# --- .env files (compose-go dotenv/parser.go) -----------------------------------------------------

_EXPORT = re.compile(r"export\s+")
_ESCAPE = re.compile(r"\\(?:[abcfnrtv$\"\\]|0[0-7]{0,3})")
_SIMPLE_ESCAPES = {"a": "\a", "b": "\b", "f": "\f", "n": "\n", "r": "\r", "t": "\t", "v": "\v", '"': '"', "\\": "\\"}
_SPACE = "\t\v\f\r \x85\xa0"  # dotenv's isSpace: whitespace that is not a line break


def _expand_escapes(text: str) -> str:
    def one(match: re.Match[str]) -> str:
        seq = match.group(0)
        if seq == "\\$":
            return "$$"  # `\$` means a literal dollar, which the template reads as `$$`
        if seq[1] == "0":
            return chr(int(seq[2:] or "0", 8)) if len(seq) == 5 else seq
        return _SIMPLE_ESCAPES.get(seq[1], seq)

    return _ESCAPE.sub(one, text)


def _key_char(ch: str) -> bool:
    return ch.isalnum() or ch in "_.-[]"


def parse_dotenv(text: str, *, file: str, lookup: Lookup) -> dict[str, str]:
    """Parse an env file. `lookup` answers variables set outside this file (they win during expansion)."""
    out: dict[str, str] = {}
    text = text.removeprefix("\ufeff")

    def resolve(name: str) -> str | None:
        value = lookup(name)
        return value if value is not None else out.get(name)

    def expand(value: str, line: int) -> str:
        try:
            return substitute(value, resolve)
        except TemplateError as exc:
            raise InputError(exc.message, file=file, line=line) from None

    pos, n = 0, len(text)
    while True:
        # skip blank space and comment lines
        while pos < n:
            if text[pos].isspace():
                pos += 1
            elif text[pos] == "#":
                nl = text.find("\n", pos)
                pos = n if nl < 0 else nl
            else:
                break
        if pos >= n:
            return out
        line = text.count("\n", 0, pos) + 1
        export = _EXPORT.match(text, pos)
        if export:
            pos = export.end()
            while pos < n and text[pos] in _SPACE:
                pos += 1
        start = pos
        end_char = ""
        while pos < n:
            ch = text[pos]
            if ch in _SPACE:
                pos += 1
                continue
            if ch in "=:\n":
                end_char = ch
                break
            if not _key_char(ch):
                raise InputError(f"unexpected character {ch!r} in variable name {text[start:].split(chr(10))[0]!r}",
                                 file=file, line=line)
            pos += 1
        key = text[start:pos].rstrip()
        if " " in key:
            raise InputError("key cannot contain a space", file=file, line=line)
        if end_char in ("\n", ""):
            # A bare KEY takes its value from the environment, if set there.
            inherited = lookup(key)
            if inherited is not None:
                out[key] = inherited
            pos += 1
            continue
        pos += 1
        while pos < n and text[pos] in _SPACE:
            pos += 1
        quote = text[pos] if pos < n and text[pos] in "\"'" else ""
        if not quote:
            nl = text.find("\n", pos)
            raw = text[pos:] if nl < 0 else text[pos:nl]
            pos = n if nl < 0 else nl
            raw = raw.split(" #", 1)[0].rstrip()
            out[key] = expand(raw, line)
            continue
        chars: list[str] = []
        i = pos + 1
        escaped = False
        closed = False
        while i < n:
            ch = text[i]
            if escaped:
                escaped = False
                if ch != quote:
                    chars.append("\\")  # only an escaped quote loses its backslash here
                chars.append(ch)
            elif ch == "\\":
                escaped = True
            elif ch == quote:
                closed = True
                break
            else:
                chars.append(ch)
            i += 1
        if not closed:
            nl = text.find("\n", pos)
            raise InputError(f"unterminated quoted value {text[pos: n if nl < 0 else nl]}", file=file, line=line)
        value = "".join(chars)
        if quote == '"':
            value = expand(_expand_escapes(value), line)
        out[key] = value
        pos = i + 1


def read_env_files(files: Sequence[tuple[str, str]], *, environ: Mapping[str, str],
                   read: Callable[[str, str], str]) -> dict[str, str]:
    """Values of env files (real, display) in order; later files win. `environ` wins during expansion.

    compose-go dotenv.GetEnvFromFile: while a file is parsed, a variable is looked up in the process
    environment first, then in the files read before it, then earlier in the same file.
    """
    values: dict[str, str] = {}
    for real, display in files:
        text = read(real, display)

        def lookup(name: str) -> str | None:
            found = environ.get(name)
            return found if found is not None else values.get(name)

        values.update(parse_dotenv(text, file=display, lookup=lookup))
    return values
