"""Dockerfiles -> stages, FROM, USER and ARG, evaluated as BuildKit evaluates them.

Hand-written after BuildKit's parser.go, not the `dockerfile` package (Go parser via cgo): same lines on the tests and
~430k fuzzed files, but its errors carry no line and it takes ~300 µs per tutorial-file parse vs ~70 µs here.

Two steps, so a compose build can reuse one parse: `parse` reads the text (no build args needed), and
`analyse` substitutes ARGs for a given set of build args and target, then follows the stage graph.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import Any

from admission.errors import InputError
from admission.model import BuildContext, Container, EnvVar, Located, Origin, Setting, UnresolvedBase, Workload

_KNOWN = frozenset(
    {"add", "arg", "cmd", "copy", "entrypoint", "env", "expose", "from", "healthcheck", "label", "maintainer",
     "onbuild", "run", "shell", "stopsignal", "user", "volume", "workdir"}
)
_MAYBE_JSON = frozenset({"run", "cmd", "entrypoint", "shell", "add", "copy", "volume"})
_HEREDOC_CMDS = frozenset({"add", "copy", "run"})

# Go's regexp \s and BuildKit's reWhitespace are ASCII-only; Python's \s is not.
_WS = re.compile(r"[\t\v\f\r ]+")
_DIRECTIVE = re.compile(r"#[\t\n\f\r ]*([a-zA-Z][a-zA-Z0-9]*)[\t\n\f\r ]*=[\t\n\f\r ]*(.+?)[\t\n\f\r ]*\Z")
_HEREDOC = re.compile(r"(\d*)<<(-?)([^<]*)\Z")
_STAGE_NAME = re.compile(r"[a-z][a-z0-9\-_.]*\Z")
_INT = re.compile(r"[+-]?[0-9]+\Z")
_DIRECTIVE_KEYS = frozenset({"syntax", "escape", "check"})
_SPECIAL_PARAMS = frozenset("@*#?-$!0")

SCRATCH = "scratch"


@dataclass(frozen=True, slots=True)
class Instruction:
    """One logical instruction: continuation lines joined, heredoc bodies consumed (lines span them)."""

    cmd: str  # lower-case
    word: str  # as written, for messages
    flags: tuple[str, ...]  # "--from=builder", quotes removed as BuildKit's extractBuilderFlags does
    rest: str  # the operand text after the flags
    json: bool  # exec form (a JSON string array)
    line: int
    end_line: int


@dataclass(frozen=True, slots=True)
class ArgDecl:
    name: str
    default: str | None  # raw text, expanded by analyse()
    line: int


@dataclass(frozen=True, slots=True)
class Stage:
    """One FROM ... [AS name].

    In `ParsedDockerfile.stages` values are as written (ARG references unexpanded); in `BuildInfo`
    they are substituted for the build args given.
    """

    index: int
    name: str | None  # lower-case, as BuildKit stores it
    base: Located[str]  # the FROM operand; origin = FROM line, path "stages[i].from"
    parent: int | None  # an earlier stage this one is built FROM, else None
    user: Located[str] | None  # last USER of this stage only; origin = USER line, path "stages[i].user"
    copies_from: tuple[str, ...]  # COPY --from / RUN --mount from= operands (stage names, indices or images)
    # one per copies_from entry, path "stages[i].copies_from[k]" (COPY --from) or "stages[i].mounts_from[k]" (RUN --mount)
    copies_from_origins: tuple[Origin, ...] = ()
    platform: str | None = None  # FROM --platform
    context_copies: tuple[CopyOp, ...] = ()  # COPY/ADD of this stage; sources expanded only in BuildInfo.stages
    healthcheck: Located[str] | None = None  # last HEALTHCHECK of this stage: "check" (CMD) or "none" (NONE)
    shell: Located[str] | None = None  # last SHELL of this stage: its executable ("powershell"); path "stages[i].shell"
    # BuildInfo.stages only: the build args with no value that the FROM operand needs; then `base` stays as written
    unresolved: tuple[str, ...] = ()

    @property
    def label(self) -> str:
        return self.name if self.name is not None else f"stage {self.index}"


@dataclass(frozen=True, slots=True)
class CopyOp:
    """A COPY or ADD: where it reads from (`from_` a stage or image, else the build context) and its sources.

    `sources` are as written in `Stage.context_copies` of a parse, and expanded with the stage's ARG/ENV
    scope (as BuildKit expands them) in `BuildInfo.stages`. Heredoc sources (`<<EOF`) and ADD URLs are left out.
    """

    line: int
    text: str  # the instruction as written, whitespace collapsed: "COPY --chown=app . /src"
    from_: str | None  # --from operand
    sources: tuple[str, ...]
    excludes: tuple[str, ...] = ()  # --exclude patterns


# What analyse() replays per stage: only the instructions that change ARG/ENV scope or USER.
# (kind, line, data): ("arg", n, ((name, default | None), ...)), ("env", n, ((key, value), ...)), ("user", n, raw).
# A plain tuple: a dataclass costs ~0.8 ms of import time, measured.
_OpData = tuple[tuple[str, str | None], ...] | str | CopyOp
_Op = tuple[str, int, _OpData]


@dataclass(frozen=True, slots=True)
class ParsedDockerfile:
    file: str
    stages: tuple[Stage, ...]  # as written; analyse() substitutes ARGs
    global_args: tuple[ArgDecl, ...]  # ARGs before the first FROM
    instructions: tuple[Instruction, ...]
    escape: str = "\\"
    syntax: str | None = None
    stage_ops: tuple[tuple[_Op, ...], ...] = ()


@dataclass(frozen=True, slots=True)
class BuildInfo:
    stage: Stage  # the target stage (build.target) or the final stage, substituted
    stage_label: str  # stage name, or "stage N" (from 0) when unnamed
    user: Located[str]  # effective USER; "" (origin = the target's FROM line) means none was set: root
    user_set: bool  # some USER instruction in the FROM-chain set it
    inherits_user_from: Located[str] | None  # no USER and the chain starts FROM an image: its config decides
    base_images: tuple[Located[str], ...]  # every image the target needs, in file order (not scratch, not stages)
    stages: tuple[Stage, ...] = ()  # every stage, substituted
    reachable: tuple[int, ...] = ()  # indices of the stages the target needs, itself included
    user_uid: int | None = None  # the uid a RUN useradd/adduser -u gives the named USER in the chain, if any
    healthcheck: Located[str] | None = None  # the last HEALTHCHECK in the target's FROM-chain ("check" or "none")
    unresolved_bases: tuple[UnresolvedBase, ...] = ()  # FROMs the target needs whose image is a build arg with no value
    windows: Setting | None = None  # why the target is a Windows image (its base image, or a Windows SHELL), else None
    # no USER and the chain starts FROM a base named by a build arg with no value: its user cannot be known
    inherits_unresolved: UnresolvedBase | None = None


# --------------------------------------------------------------------------------------------------
# Reading: lines -> instructions (BuildKit parser.Parse)
# --------------------------------------------------------------------------------------------------


def _trim_continuation(line: str, escape: str) -> tuple[str, bool]:
    """BuildKit's `([^\\\\])\\\\[ \\t]*$|^\\\\[ \\t]*$`: an escape token ends the line unless it is itself escaped."""
    stripped = line.rstrip(" \t")
    if not stripped.endswith(escape):
        return line, False
    if len(stripped) == 1:
        return "", True
    if stripped[-2] == escape:
        return line, False
    return stripped[:-1], True


def _extract_flags(line: str, escape: str) -> tuple[str, list[str]]:
    """Leading `--flag[=value]` words (BuildKit extractBuilderFlags): quotes and escapes removed."""
    if not line.lstrip().startswith("--"):
        return line, []
    words: list[str] = []
    n = len(line)
    pos = 0
    while True:
        while pos < n and line[pos].isspace():
            pos += 1
        if pos >= n:
            return "", words
        if not line.startswith("--", pos):
            return line[pos:], words
        word: list[str] = []
        quote = ""
        blank_ok = False
        while pos < n:
            ch = line[pos]
            if quote:
                if ch == quote:
                    quote = ""
                elif ch == escape and pos + 1 < n:
                    pos += 1
                    word.append(line[pos])
                elif ch != escape:
                    word.append(ch)
                pos += 1
                continue
            if ch.isspace():
                break
            if ch in "'\"":
                quote = ch
                blank_ok = True
            elif ch == escape:
                if pos + 1 < n:
                    pos += 1
                    word.append(line[pos])
            else:
                word.append(ch)
            pos += 1
        text = "".join(word)
        if text == "--":
            return line[pos:], words
        if blank_ok or text:
            words.append(text)


def _parse_words(rest: str, escape: str) -> list[str]:
    """Whitespace-separated words with quotes and escapes kept (BuildKit parseWords, used by ARG/ENV)."""
    words: list[str] = []
    word: list[str] = []
    in_word = False
    quote = ""
    blank_ok = False
    n = len(rest)
    pos = 0
    while pos < n:
        ch = rest[pos]
        if not in_word:
            if ch.isspace():
                pos += 1
                continue
            in_word = True
        if quote:
            if ch == quote:
                quote = ""
            if ch == escape and quote != "'":
                if pos + 1 == n:
                    pos += 1
                    continue
                word.append(ch)
                pos += 1
                ch = rest[pos]
            word.append(ch)
            pos += 1
            continue
        if ch.isspace():
            if blank_ok or word:
                words.append("".join(word))
            word, in_word, blank_ok = [], False, False
            pos += 1
            continue
        if ch in "'\"":
            quote = ch
            blank_ok = True
        if ch == escape:
            if pos + 1 == n:
                pos += 1
                continue
            word.append(ch)
            pos += 1
            ch = rest[pos]
        word.append(ch)
        pos += 1
    if in_word and (blank_ok or word):
        words.append("".join(word))
    return words


def _json_args(rest: str) -> list[str] | None:
    """The exec form: a JSON array of strings, else None (shell form). Non-strings are an error, as in BuildKit.

    BuildKit decodes only the first JSON value, so text after the closing bracket is ignored, not shell form.
    """
    if not rest.startswith("["):
        return None
    import json  # lazily: ~2 ms of import, and most lines are not exec form

    try:
        value, _ = json.JSONDecoder(parse_constant=_reject_constant).raw_decode(rest)
    except ValueError:
        return None
    if not isinstance(value, list):
        return None
    if not all(isinstance(v, str) for v in value):
        raise ValueError("when using JSON array syntax, arrays must be comprised of strings only")
    return value


def _reject_constant(name: str) -> object:
    raise ValueError(name)  # Go's encoding/json has no NaN/Infinity: such text is shell form


def _shell_words(text: str, *, raw: bool) -> list[str] | None:
    """Shell words as BuildKit's lexer splits them for heredoc detection; None where that lexer fails.

    raw=True keeps quotes and escapes (RawQuotes/RawEscapes); raw=False removes them.
    """
    words: list[str] = []
    word: list[str] = []
    quote = ""
    n = len(text)
    pos = 0
    while pos < n:
        ch = text[pos]
        if quote:
            if ch == quote:
                quote = ""
                if raw:
                    word.append(ch)
            elif ch == "\\" and quote == '"' and pos + 1 < n and text[pos + 1] in '"$\\':
                pos += 1
                if raw:
                    word.append(ch)
                word.append(text[pos])
            elif ch == "$" and quote == '"':
                end = _dollar_end(text, pos)
                if end is None:
                    return None
                word.append(text[pos:end])
                pos = end
                continue
            else:
                word.append(ch)
            pos += 1
            continue
        if ch.isspace():
            if word:  # BuildKit's lexer never yields an empty word: `<<""` is no heredoc
                words.append("".join(word))
            word = []
        elif ch in "'\"":
            quote = ch
            if raw:
                word.append(ch)
        elif ch == "\\":
            if pos + 1 < n:
                pos += 1
                if raw:
                    word.append(ch)
                word.append(text[pos])
        elif ch == "$":
            end = _dollar_end(text, pos)
            if end is None:
                return None
            word.append(text[pos:end])
            pos = end
            continue
        else:
            word.append(ch)
        pos += 1
    if quote:
        return None
    if word:
        words.append("".join(word))
    return words


def _dollar_end(text: str, pos: int) -> int | None:
    """End of the `$...` at pos, or None when BuildKit's lexer fails on it (then a line yields no heredoc)."""
    lexer = _Lexer(text, {}, "\\", strict=False)
    lexer.pos = pos
    try:
        lexer.dollar()
    except _ExpandError:
        return None
    return lexer.pos


def _heredocs(line: str) -> list[tuple[str, bool]]:
    """(terminator, chomp) for each `<<WORD` / `<<-WORD` / `<<"WORD"` in the instruction line."""
    found: list[tuple[str, bool]] = []
    for word in _shell_words(line, raw=True) or ():
        m = _HEREDOC.match(word)
        if m is None or not m.group(3):
            continue
        names = _shell_words(m.group(3), raw=False)
        if names is not None and len(names) == 1:
            found.append((names[0], m.group(2) == "-"))
    return found


def _instructions(
    text: str, *, file: str, lenient: bool = False, meta: dict[str, str] | None = None
) -> Iterator[Instruction]:
    """Logical instructions with their real first and last lines. Lazy, so sniffing reads only the head.

    `meta` receives the parser directives seen (escape, syntax, check). `lenient` ignores bad directives.
    """
    lines = text.split("\n")  # only "\n" ends a line for Go's scanner; str.splitlines() splits on more
    if text.endswith("\n"):
        lines.pop()
    if lines and lines[0].startswith("\ufeff"):
        lines[0] = lines[0][1:]
    n = len(lines)
    escape = "\\"
    directives_done = False
    seen: set[str] = set()
    i = 0
    while i < n:
        raw = lines[i].rstrip("\r\n")
        i += 1
        start = i
        s = raw.lstrip()
        if not directives_done:
            m = _DIRECTIVE.match(s)
            key = m.group(1).lower() if m else ""
            if key not in _DIRECTIVE_KEYS:
                directives_done = True
            elif key in seen:
                if not lenient:
                    raise InputError(f"only one {key} parser directive can be used", file=file, line=start)
            elif m is not None:
                seen.add(key)
                if meta is not None:
                    meta[key] = m.group(2)
                if key == "escape":
                    value = m.group(2)
                    if value in ("\\", "`"):
                        escape = value
                    elif not lenient:
                        message = f"invalid escape token '{value}' does not match ` or \\"
                        raise InputError(message, file=file, line=start)
        if s.startswith("#"):
            continue
        content, more = _trim_continuation(s, escape)
        if not more and not content:
            continue
        parts = [content]
        while more and i < n:
            raw = lines[i].rstrip("\r\n")
            i += 1
            stripped = raw.lstrip()
            # BuildKit drops comment lines and blank lines inside a continuation, but still counts them
            if not stripped or stripped.startswith("#"):
                continue
            content, more = _trim_continuation(raw, escape)
            parts.append(content)
        line = "".join(parts).strip()
        split = _WS.split(line, maxsplit=1)
        word = split[0]
        rest, flags = _extract_flags(split[1], escape) if len(split) == 2 else ("", [])
        rest = rest.strip()
        cmd = word.lower()
        sub = cmd
        sub_rest = rest
        if cmd == "onbuild":  # ONBUILD RUN <<EOF also carries a heredoc
            sub_split = _WS.split(rest, maxsplit=1)
            sub = sub_split[0].lower()
            sub_rest = _extract_flags(sub_split[1], escape)[0].strip() if len(sub_split) == 2 else ""
        is_json = False
        if sub in _MAYBE_JSON:
            try:
                is_json = _json_args(sub_rest) is not None
            except ValueError as exc:
                if not lenient:
                    raise InputError(str(exc), file=file, line=start) from None
        if sub in _HEREDOC_CMDS and not is_json and "<<" in line:
            for name, chomp in _heredocs(line):
                while i < n:
                    body = lines[i].rstrip("\r\n")
                    i += 1
                    if (body.lstrip("\t") if chomp else body) == name:
                        break
                else:
                    raise InputError("unterminated heredoc", file=file, line=start)
        yield Instruction(cmd, word, tuple(flags), rest, is_json, start, i)


# --------------------------------------------------------------------------------------------------
# Variable expansion (BuildKit shell.Lex.ProcessWord)
# --------------------------------------------------------------------------------------------------


class _ExpandError(Exception):
    pass


class _Lexer:
    __slots__ = ("env", "escape", "missed", "pos", "s", "strict")

    def __init__(self, s: str, env: Mapping[str, str], escape: str, *, strict: bool = True) -> None:
        self.s = s
        self.pos = 0
        self.env = env
        self.escape = escape
        self.strict = strict  # False: `${X:?}` on an unset X is not an error (BuildKit's SkipUnsetEnv)
        self.missed: list[str] = []  # unset names whose value the word takes as is (`$X`, `${X}`, `${X#..}`, ...)

    def value(self, name: str) -> str:
        """The value of a name the word uses as it is; an unset name is "" and recorded."""
        found = self.env.get(name)
        if found is None:
            self.missed.append(name)
            return ""
        return found

    def until(self, stop: str) -> str:
        """Process up to `stop` (consumed) or, with stop == "", to the end."""
        s, n = self.s, len(self.s)
        out: list[str] = []
        while self.pos < n:
            ch = s[self.pos]
            if stop and ch == stop:
                self.pos += 1
                return "".join(out)
            if ch == "'":
                out.append(self.single_quoted())
            elif ch == '"':
                out.append(self.double_quoted())
            elif ch == "$":
                out.append(self.dollar())
            else:
                self.pos += 1
                if ch == self.escape:
                    if self.pos >= n:
                        break  # an escape at the very end is dropped
                    ch = s[self.pos]
                    self.pos += 1
                out.append(ch)
        if stop:
            if stop == "}":
                raise _ExpandError("syntax error: missing '}'")
            raise _ExpandError(f"unexpected end of statement while looking for matching {stop}")
        return "".join(out)

    def single_quoted(self) -> str:
        end = self.s.find("'", self.pos + 1)
        if end < 0:
            raise _ExpandError("unexpected end of statement while looking for matching single-quote")
        value = self.s[self.pos + 1 : end]
        self.pos = end + 1
        return value

    def double_quoted(self) -> str:
        s, n = self.s, len(self.s)
        out: list[str] = []
        self.pos += 1
        while True:
            if self.pos >= n:
                raise _ExpandError("unexpected end of statement while looking for matching double-quote")
            ch = s[self.pos]
            if ch == '"':
                self.pos += 1
                return "".join(out)
            if ch == "$":
                out.append(self.dollar())
                continue
            self.pos += 1
            if ch == self.escape:
                if self.pos >= n:
                    continue
                if s[self.pos] in ('"', "$", self.escape):
                    ch = s[self.pos]
                    self.pos += 1
            out.append(ch)

    def name(self) -> str:
        s, n, start = self.s, len(self.s), self.pos
        if start < n and s[start].isdigit():
            while self.pos < n and s[self.pos].isdigit():
                self.pos += 1
            return s[start : self.pos]
        if start < n and s[start] in _SPECIAL_PARAMS:
            self.pos += 1
            return s[start]
        while self.pos < n and (s[self.pos].isalnum() or s[self.pos] == "_"):
            self.pos += 1
        return s[start : self.pos]

    def dollar(self) -> str:
        s, n = self.s, len(self.s)
        self.pos += 1
        if self.pos >= n or s[self.pos] != "{":
            name = self.name()
            return self.value(name) if name else "$"
        self.pos += 1
        if self.pos >= n:
            raise _ExpandError("syntax error: missing '}'")
        if s[self.pos] in "{}:":
            raise _ExpandError("syntax error: bad substitution")
        name = self.name()
        if self.pos >= n:
            raise _ExpandError("syntax error: missing '}'")
        op = s[self.pos]
        self.pos += 1
        if op == "}":
            return self.value(name)
        colon = op == ":"
        if colon:
            if self.pos >= n:
                raise _ExpandError("syntax error: missing '}'")
            op = s[self.pos]
            self.pos += 1
        if op == "/" and not colon:
            return self.replace(name)
        if op not in "+-?#%" or (colon and op in "#%"):
            if colon and op not in "#%" and not self.strict:
                self.until("}")  # BuildKit leaves an unset `${X:...}` as it is before checking the modifier
                return ""
            raise _ExpandError(f"unsupported modifier ({':' if colon else ''}{op}) in substitution")
        word = self.until("}")
        value = self.env.get(name)
        missing = value is None or (colon and value == "")
        if op == "-":
            return word if missing else value or ""
        if op == "+":
            return "" if missing else word
        if op == "?":
            if missing and self.strict:
                default = "is not allowed to be unset" if value is None else "is not allowed to be empty"
                raise _ExpandError(f"{name}: {word or default}")
            return value or ""
        value = self.value(name)
        from fnmatch import fnmatchcase  # lazily: pattern removal is rare

        greedy = word.startswith(op)
        pattern = word[1:] if greedy else word
        cuts = range(len(value), -1, -1) if greedy else range(len(value) + 1)
        for cut in cuts:
            if op == "#" and fnmatchcase(value[:cut], pattern):
                return value[cut:]
            if op == "%" and fnmatchcase(value[len(value) - cut :], pattern):
                return value[: len(value) - cut]
        return value

    def replace(self, name: str) -> str:
        every = self.pos < len(self.s) and self.s[self.pos] == "/"
        if every:
            self.pos += 1
        pattern = self.until_any("/}")
        repl = self.until("}") if self.s[self.pos - 1] == "/" else ""
        value = self.value(name)
        if not pattern:
            return value
        from fnmatch import fnmatchcase

        out: list[str] = []
        i = 0
        while i <= len(value):
            for end in range(len(value), i - 1, -1):  # the longest match, as the shell does
                if end > i and fnmatchcase(value[i:end], pattern):
                    out.append(repl)
                    i = end
                    if not every:
                        return "".join(out) + value[i:]
                    break
            else:
                if i < len(value):
                    out.append(value[i])
                i += 1
        return "".join(out)

    def until_any(self, stops: str) -> str:
        start = self.pos
        while self.pos < len(self.s) and self.s[self.pos] not in stops:
            self.pos += 1
        if self.pos >= len(self.s):
            raise _ExpandError("syntax error: missing '}'")
        self.pos += 1
        return self.s[start : self.pos - 1]


def expand(word: str, env: Mapping[str, str], *, escape: str = "\\") -> str:
    """Substitute `$VAR`, `${VAR}`, `${VAR:-x}`, `${VAR:+x}`, ... and remove quotes, as BuildKit does for one word."""
    if "$" not in word and "'" not in word and '"' not in word and escape not in word:
        return word
    return _Lexer(word, env, escape).until("")


def _expand_at(word: str, env: Mapping[str, str], *, escape: str, file: str, line: int | None, path: str) -> str:
    try:
        return expand(word, env, escape=escape)
    except _ExpandError as exc:
        raise InputError(str(exc), file=file, line=line, path=path) from None


def _is_reference(text: str) -> bool:
    """Whether a FROM operand is an image reference the build could pull (docker's reference grammar)."""
    from admission import reference  # lazily: only FROMs that use an unset build arg get here

    try:
        reference.parse_normalized_named(text)
    except reference.ReferenceError:
        return False
    return True


def _expand_base(word: str, env: Mapping[str, str], *, escape: str, origin: Origin) -> tuple[str, list[str]]:
    """A FROM operand expanded, and the unset names it took as they are (`$X`, `${X}`; not `${X:-default}`)."""
    lexer = _Lexer(word, env, escape)
    try:
        return lexer.until(""), lexer.missed
    except _ExpandError as exc:
        raise InputError(str(exc), file=origin.file, line=origin.line, path=origin.path) from None


# --------------------------------------------------------------------------------------------------
# parse: instructions -> stages
# --------------------------------------------------------------------------------------------------


def _arg_decls(ins: Instruction, escape: str, file: str) -> tuple[tuple[str, str | None], ...]:
    words = _parse_words(ins.rest, escape)
    if not words:
        raise InputError("ARG requires at least one argument", file=file, line=ins.line)
    out: list[tuple[str, str | None]] = []
    for w in words:
        name, eq, default = w.partition("=")
        if not name:
            raise InputError("ARG names can not be blank", file=file, line=ins.line)
        out.append((name, default if eq else None))
    return tuple(out)


def _env_pairs(ins: Instruction, escape: str, file: str) -> tuple[tuple[str, str], ...]:
    words = _parse_words(ins.rest, escape)
    if not words:
        raise InputError("ENV requires at least one argument", file=file, line=ins.line)
    if "=" not in words[0]:  # legacy `ENV KEY value with spaces`
        parts = _WS.split(ins.rest, maxsplit=1)
        if len(parts) < 2:
            raise InputError("ENV must have two arguments", file=file, line=ins.line)
        return ((parts[0], parts[1]),)
    pairs: list[tuple[str, str]] = []
    for w in words:
        key, eq, value = w.partition("=")
        if not eq:
            message = f"Syntax error - can't find = in {w!r}. Must be of the form: name=value"
            raise InputError(message, file=file, line=ins.line)
        if not key:
            raise InputError("ENV names can not be blank", file=file, line=ins.line)
        pairs.append((key, value))
    return tuple(pairs)


def _flag(ins: Instruction, name: str, file: str) -> str | None:
    """The value of a string flag, BuildKit BFlags rules: `--name=value`, given at most once."""
    value: str | None = None
    for flag in ins.flags:
        key, eq, val = flag[2:].partition("=")
        if key != name:
            continue
        if not eq:
            raise InputError(f"missing a value on flag: {name}", file=file, line=ins.line)
        if value is not None:
            raise InputError(f"duplicate flag specified: {name}", file=file, line=ins.line)
        value = val
    return value


def _mount_froms(ins: Instruction) -> list[str]:
    """`from=` of each RUN --mount that reads a stage or image (bind and cache; tmpfs/secret/ssh do not)."""
    froms: list[str] = []
    for flag in ins.flags:
        if not flag.startswith("--mount="):
            continue
        import csv  # lazily: BuildKit reads the mount spec as a CSV record; few files use --mount

        try:
            fields = next(csv.reader([flag[len("--mount=") :]]), [])
        except csv.Error:
            continue
        kind, source = "bind", ""
        for field in fields:
            key, _, value = field.partition("=")
            key = key.strip().lower()
            if key == "type":
                kind = value.strip()
            elif key == "from":
                source = value.strip()
        if source and kind in ("bind", "cache"):
            froms.append(source)
    return froms


_URL_SOURCE = re.compile(r"(?:https?|git|ssh)://|git@", re.IGNORECASE)


def _copy_op(ins: Instruction) -> CopyOp:
    """A COPY/ADD as written. BuildKit splits the shell form on whitespace (quotes do not group; they are removed
    when each word is expanded) and takes the exec form's JSON strings; the last word is the destination."""
    words = (_json_args(ins.rest) if ins.json else None) or _WS.split(ins.rest.strip()) if ins.rest.strip() else []
    sources = tuple(w for w in words[:-1] if not w.startswith("<<") and not (ins.cmd == "add" and _URL_SOURCE.match(w)))
    from_ = excludes = None
    for flag in ins.flags:
        key, _, value = flag[2:].partition("=")
        if key == "from":
            from_ = value
        elif key == "exclude":
            excludes = (*(excludes or ()), value)
    text = " ".join([ins.word, *ins.flags, *(_WS.split(ins.rest.strip()) if ins.rest.strip() else [])])
    return CopyOp(ins.line, text, from_, sources, excludes or ())


def _expand_copy(op: CopyOp, scope: Mapping[str, str], escape: str) -> CopyOp:
    """Sources (and --exclude patterns) expanded with the stage's ARG/ENV scope at that instruction."""

    def one(word: str) -> str:
        try:
            return expand(word, scope, escape=escape)
        except _ExpandError:  # BuildKit fails the build; the text as written is the best account of it
            return word

    return CopyOp(op.line, op.text, op.from_, tuple(one(w) for w in op.sources), tuple(one(w) for w in op.excludes))


def parse(text: str, *, file: str) -> ParsedDockerfile:
    """Read a Dockerfile. InputError (with the line) for what BuildKit rejects before knowing build args."""
    meta: dict[str, str] = {}
    instructions = tuple(_instructions(text, file=file, meta=meta))
    escape = meta.get("escape", "\\")
    if not instructions:
        raise InputError("file with no instructions", file=file, line=1)

    global_args: list[ArgDecl] = []
    froms: list[tuple[Instruction, str, str | None, str | None]] = []  # (FROM, base, name, platform)
    ops: list[list[_Op]] = []
    users: list[Located[str] | None] = []
    healths: dict[int, Located[str]] = {}  # stage -> its last HEALTHCHECK
    shells: dict[int, Located[str]] = {}  # stage -> the executable of its last SHELL
    copies: list[list[tuple[str, Origin]]] = []
    for ins in instructions:
        cmd = ins.cmd
        if cmd not in _KNOWN:
            raise InputError(f"unknown instruction: {ins.word}", file=file, line=ins.line)
        if cmd == "from":
            i = len(froms)
            args = _WS.split(ins.rest) if ins.rest else []
            if len(args) == 3 and args[1].lower() == "as":
                name = args[2].lower()
                if not _STAGE_NAME.match(name):
                    raise InputError(
                        f"invalid name for build stage: {args[2]!r}, name can't start with a number or contain symbols",
                        file=file, line=ins.line, path=f"stages[{i}]",
                    )
                if any(earlier[2] == name for earlier in froms):
                    raise InputError(f"duplicate stage name {args[2]!r}", file=file, line=ins.line, path=f"stages[{i}]")
            elif len(args) == 1:
                name = None
            else:
                message = "FROM requires either one or three arguments"
                raise InputError(message, file=file, line=ins.line, path=f"stages[{i}]")
            for flag in ins.flags:
                if flag[2:].partition("=")[0] != "platform":
                    raise InputError(f"unknown flag: {flag[2:].partition('=')[0]}", file=file, line=ins.line)
            froms.append((ins, args[0], name, _flag(ins, "platform", file)))
            ops.append([])
            users.append(None)
            copies.append([])
            continue
        if not froms:
            if cmd == "arg":
                global_args.extend(ArgDecl(n, d, ins.line) for n, d in _arg_decls(ins, escape, file))
                continue
            raise InputError(
                f"no build stage in current context: {ins.word} before the first FROM (only ARG may come first)",
                file=file, line=ins.line,
            )
        i = len(froms) - 1
        if cmd == "arg":
            ops[i].append(("arg", ins.line, _arg_decls(ins, escape, file)))
        elif cmd == "env":
            ops[i].append(("env", ins.line, _env_pairs(ins, escape, file)))
        elif cmd == "user":
            if not ins.rest or len(_WS.split(ins.rest.strip())) != 1:
                raise InputError("USER requires exactly one argument", file=file, line=ins.line)
            ops[i].append(("user", ins.line, ins.rest))
            users[i] = Located(ins.rest, Origin(file, ins.line, f"stages[{i}].user"))
        elif cmd == "copy":
            source = _flag(ins, "from", file)
            if source:
                # BuildKit expands --from with no variables at all and refuses it if anything changed.
                if _expand_at(source, {}, escape=escape, file=file, line=ins.line, path="") != source:
                    raise InputError(
                        "variable expansion is not supported for --from, define a new stage with FROM using ARG "
                        "from global scope as a workaround",
                        file=file, line=ins.line,
                    )
                copies[i].append((source, Origin(file, ins.line, f"stages[{i}].copies_from[{len(copies[i])}]")))
        elif cmd == "run":
            for source in _mount_froms(ins):
                k = sum(1 for _, o in copies[i] if ".mounts_from[" in o.path)
                copies[i].append((source, Origin(file, ins.line, f"stages[{i}].mounts_from[{k}]")))
        if cmd in ("copy", "add"):
            ops[i].append(("copy", ins.line, _copy_op(ins)))
        elif cmd == "healthcheck":
            kind = _healthcheck_kind(ins)
            if kind is not None:
                healths[i] = Located(kind, Origin(file, ins.line, f"stages[{i}].healthcheck"))
        elif cmd == "shell" and ins.json:
            words = _json_args(ins.rest)
            if words:
                shells[i] = Located(words[0], Origin(file, ins.line, f"stages[{i}].shell"))

    if not froms:
        message = "dockerfile contains no stages to build: no FROM instruction"
        raise InputError(message, file=file, line=instructions[-1].line)

    stages: list[Stage] = []
    names: dict[str, int] = {}
    for i, (ins, base, name, platform) in enumerate(froms):
        stages.append(
            Stage(
                index=i,
                name=name,
                base=Located(base, Origin(file, ins.line, f"stages[{i}].from")),
                parent=names.get(base.lower()),
                user=users[i],
                copies_from=tuple(c for c, _ in copies[i]),
                copies_from_origins=tuple(o for _, o in copies[i]),
                platform=platform,
                context_copies=tuple(d for k, _, d in ops[i] if k == "copy"),  # type: ignore[misc]
                healthcheck=healths.get(i),
                shell=shells.get(i),
            )
        )
        if name is not None:
            names[name] = i
    return ParsedDockerfile(
        file=file,
        stages=tuple(stages),
        global_args=tuple(global_args),
        instructions=instructions,
        escape=escape,
        syntax=meta.get("syntax"),
        stage_ops=tuple(tuple(o) for o in ops),
    )


# --------------------------------------------------------------------------------------------------
# analyse: build args + target -> the stage graph BuildKit would build
# --------------------------------------------------------------------------------------------------


class TargetNotFound(InputError):
    """A build target (compose `build.target`) names no stage, as BuildKit refuses it. The build's own file names the
    mistake, so the compose adapter puts the error on its `target:` line; `stages` are the stages there are."""

    def __init__(self, target: str, stages: tuple[str, ...], *, file: str) -> None:
        super().__init__(f'target stage "{target}" could not be found in {file} (its stages: {", ".join(stages)})',
                         file=file)
        self.target = target
        self.stages = stages


def _default_args(platform: str, build_args: Mapping[str, str], target: str) -> dict[str, str]:
    """The ARGs BuildKit predefines in the global scope (usable in FROM without declaring them)."""
    os_, _, arch_variant = platform.partition("/")
    arch, _, variant = arch_variant.partition("/")
    defaults = {
        "BUILDPLATFORM": platform, "BUILDOS": os_, "BUILDARCH": arch, "BUILDVARIANT": variant,
        "TARGETPLATFORM": platform, "TARGETOS": os_, "TARGETARCH": arch, "TARGETVARIANT": variant,
        "TARGETSTAGE": target,
    }
    return {k: build_args.get(k, v) for k, v in defaults.items()}


def _resolve_ref(ref: str, stages: tuple[Stage, ...], by_name: Mapping[str, int], *, origin: Origin) -> int | None:
    """A --from operand -> stage index, or None for an image. Index first, then name (BuildKit toCommand)."""
    if _INT.match(ref):
        index = int(ref)
        if not 0 <= index < len(stages):
            raise InputError(f"invalid stage index {index}", file=origin.file, line=origin.line, path=origin.path)
        return index
    return by_name.get(ref.lower())


def analyse(
    parsed: ParsedDockerfile,
    *,
    build_args: Mapping[str, str] | None = None,
    target: str | None = None,
    platform: str = "linux/amd64",
) -> BuildInfo:
    """Substitute ARGs, pick the target stage and follow what it needs. InputError as BuildKit would fail."""
    file, escape = parsed.file, parsed.escape
    args = dict(build_args or {})
    target_name = target if target is not None else (parsed.stages[-1].name or "")

    # Global scope: predefined platform ARGs, then the ARGs before the first FROM. A build arg
    # overrides only an ARG that is declared; an ARG with neither stays unset (expands to "").
    scope_global = _default_args(platform, args, target_name)
    for decl in parsed.global_args:
        if decl.name in args:
            scope_global[decl.name] = args[decl.name]
        elif decl.default is not None:
            scope_global[decl.name] = _expand_at(
                decl.default, scope_global, escape=escape, file=file, line=decl.line, path=""
            )
    # Declared before the first FROM with neither a default nor a build arg: a FROM that uses one as it is, and is no
    # image without it, names an image only the build command knows (`ARG BASE_IMAGE` / `FROM ${BASE_IMAGE}`), so it
    # is left unresolved (BuildKit would fail it as blank or an invalid reference).
    unset_globals = {decl.name for decl in parsed.global_args} - scope_global.keys()

    resolved: list[Stage] = []
    scopes: list[dict[str, str]] = []
    earlier: dict[str, int] = {}
    for stage, ops in zip(parsed.stages, parsed.stage_ops):
        i, origin = stage.index, stage.base.origin
        base, missed = _expand_base(stage.base.value, scope_global, escape=escape, origin=origin)
        unresolved = tuple(dict.fromkeys(name for name in missed if name in unset_globals))
        if unresolved and base and _is_reference(base):
            unresolved = ()  # an optional part (`FROM ${REGISTRY}node:20`): the build uses what it expands to
        if unresolved:
            base = stage.base.value  # not an image anyone can check, nor an earlier stage
        elif base == "":
            message = f"base name ({stage.base.value}) should not be blank"
            raise InputError(message, file=file, line=origin.line, path=origin.path)
        parent = None if unresolved else earlier.get(base.lower())
        # A stage built FROM another starts with its state: ENV and ARG values alike (BuildKit AddEnv).
        scope = dict(scopes[parent]) if parent is not None else {}
        user: Located[str] | None = None
        copy_ops: list[CopyOp] = []
        for kind, line, data in ops:
            if isinstance(data, str):  # USER
                path = f"stages[{i}].user"
                value = _expand_at(data, scope, escape=escape, file=file, line=line, path=path)
                user = Located(value, Origin(file, line, path))
            elif kind == "arg":
                for name, default in data:
                    if name in args:
                        scope[name] = args[name]
                    elif default is not None:
                        scope[name] = _expand_at(default, scope, escape=escape, file=file, line=line, path="")
                    elif name in scope_global:
                        scope[name] = scope_global[name]
            elif kind == "env":
                # All pairs of one ENV see the scope before it, as BuildKit expands the whole instruction first.
                new = [
                    (_expand_at(k, scope, escape=escape, file=file, line=line, path=""),
                     _expand_at(v or "", scope, escape=escape, file=file, line=line, path=""))
                    for k, v in data
                ]
                scope.update(new)
            elif kind == "copy":
                copy_ops.append(_expand_copy(data, scope, escape))  # type: ignore[arg-type]
        plat = stage.platform
        if plat is not None:
            plat = _expand_at(plat, scope_global, escape=escape, file=file, line=origin.line, path=origin.path)
        resolved.append(
            Stage(
                index=i, name=stage.name, base=Located(base, origin), parent=parent, user=user,
                copies_from=stage.copies_from, copies_from_origins=stage.copies_from_origins, platform=plat,
                context_copies=tuple(copy_ops), healthcheck=stage.healthcheck, shell=stage.shell,
                unresolved=unresolved,
            )
        )
        scopes.append(scope)
        if stage.name is not None:
            earlier[stage.name] = i

    stages = tuple(resolved)
    by_name = {s.name: s.index for s in stages if s.name is not None}  # later duplicates win, as in BuildKit
    if target is None:
        ti = len(stages) - 1
    elif target.lower() in by_name:
        ti = by_name[target.lower()]
    else:
        raise TargetNotFound(target, tuple(s.label for s in stages), file=file)

    # Stage graph: FROM <stage>, COPY --from and RUN --mount from=. A cycle is an error, as in BuildKit.
    deps: list[list[int]] = []
    for s in stages:
        edges = [s.parent] if s.parent is not None else []
        for ref, ref_origin in zip(s.copies_from, s.copies_from_origins):
            j = _resolve_ref(ref, stages, by_name, origin=ref_origin)
            if j is not None:
                edges.append(j)
        deps.append(edges)
    # Iterative depth-first walk: a hostile file may chain thousands of stages.
    state = [0] * len(stages)  # 0 new, 1 on the current path, 2 done
    stack: list[tuple[int, int]] = [(ti, 0)]
    state[ti] = 1
    while stack:
        k, e = stack.pop()
        if e < len(deps[k]):
            stack.append((k, e + 1))
            j = deps[k][e]
            if state[j] == 1:
                raise InputError(
                    f"circular dependency detected on stage: {stages[j].label}",
                    file=file, line=stages[j].base.origin.line, path=f"stages[{j}]",
                )
            if state[j] == 0:
                state[j] = 1
                stack.append((j, 0))
        else:
            state[k] = 2
    reachable = [k for k in range(len(stages)) if state[k] == 2]

    base_images: list[Located[str]] = []
    unresolved_bases: list[UnresolvedBase] = []
    for k in reachable:
        s = stages[k]
        if s.unresolved:
            unresolved_bases.append(UnresolvedBase(s.base.value, s.unresolved, s.base.origin))
        elif s.parent is None and s.base.value != SCRATCH:
            base_images.append(s.base)
        for ref, ref_origin in zip(s.copies_from, s.copies_from_origins):
            if ref != SCRATCH and _resolve_ref(ref, stages, by_name, origin=ref_origin) is None:
                base_images.append(Located(ref, ref_origin))

    chain = stages[ti]
    user = chain.user
    while user is None and chain.parent is not None:
        chain = stages[chain.parent]
        user = chain.user
    target_stage = stages[ti]
    inherits = None
    inherits_unresolved = None
    if user is None and chain.unresolved:
        inherits_unresolved = UnresolvedBase(chain.base.value, chain.unresolved, chain.base.origin)
    elif user is None and chain.base.value != SCRATCH:
        inherits = chain.base
    user_uid = _created_uid(parsed, stages, ti, user.value.split(":", 1)[0]) if user is not None else None
    return BuildInfo(
        stage=target_stage,
        stage_label=target_stage.label,
        user=user if user is not None else Located("", target_stage.base.origin),
        user_set=user is not None,
        inherits_user_from=inherits,
        base_images=tuple(base_images),
        stages=stages,
        reachable=tuple(reachable),
        user_uid=user_uid,
        healthcheck=_chain_healthcheck(stages, ti),
        unresolved_bases=tuple(unresolved_bases),
        windows=_windows(stages, ti, escape),
        inherits_unresolved=inherits_unresolved,
    )


# Microsoft's Windows base images (mcr.microsoft.com/windows/servercore, /nanoserver, /server, windows itself and the
# images under them), their retired Docker Hub names, and the tags other images give their Windows variants
# (docker-library's `python:3.12-windowsservercore-ltsc2022`, `golang:1.22-nanoserver-ltsc2022`, .NET's `-nanoserver-`).
_WINDOWS_REPOS = ("mcr.microsoft.com/windows", "docker.io/microsoft/windowsservercore", "docker.io/microsoft/nanoserver")
_WINDOWS_TAG = re.compile(r"(?:^|[-_.])(?:windowsservercore|nanoserver)(?:$|[-_.])")
_WINDOWS_SHELLS = frozenset({"cmd", "powershell"})


def is_windows_image(text: str) -> bool:
    """Whether an image reference names a Windows base image or a Windows variant of an image (by its tag)."""
    lowered = text.lower()
    if "windows" not in lowered and "nanoserver" not in lowered:
        return False  # the common case, without parsing the reference
    from admission import reference  # lazily: only references that mention Windows get here

    try:
        ref = reference.parse_normalized_named(text)
    except reference.ReferenceError:
        return False
    name = ref.name
    if any(name == repo or name.startswith(repo + "/") for repo in _WINDOWS_REPOS):
        return True
    return ref.tag is not None and bool(_WINDOWS_TAG.search(ref.tag.lower()))


def _windows_shell(executable: str, escape: str) -> bool:
    """`cmd`, `powershell` (Windows PowerShell), any `*.exe` or `C:\\...` path; `pwsh` only under a backtick escape
    directive (PowerShell 7 also runs on Linux images)."""
    program = executable.replace("\\", "/").rsplit("/", 1)[-1].lower()
    if program.endswith(".exe") or (len(executable) > 1 and executable[1] == ":"):
        return True
    return program in _WINDOWS_SHELLS or (program == "pwsh" and escape == "`")


def _windows(stages: tuple[Stage, ...], target: int, escape: str) -> Setting | None:
    """Why the target stage builds a Windows image: the base image its FROM-chain starts from, else a Windows SHELL
    in that chain (`SHELL ["powershell", ...]`, or `pwsh` in a file whose escape directive is a backtick)."""
    chain = [stages[target]]
    while chain[-1].parent is not None:
        chain.append(stages[chain[-1].parent])  # type: ignore[index]
    root = chain[-1]
    if not root.unresolved and root.base.value != SCRATCH and is_windows_image(root.base.value):
        return Setting("windows", f"FROM {root.base.value}", root.base.origin)
    for stage in chain:
        if stage.shell is not None and _windows_shell(stage.shell.value, escape):
            return Setting("windows", f'SHELL ["{stage.shell.value}", ...]', stage.shell.origin)
    return None


def _healthcheck_kind(ins: Instruction) -> str | None:
    """`HEALTHCHECK [flags] CMD ...` -> "check", `HEALTHCHECK NONE` -> "none"; anything else BuildKit refuses -> None."""
    first = ins.rest.split(None, 1)[0].upper() if ins.rest.strip() else ""
    if first == "NONE":
        return "none"
    if first == "CMD" and len(ins.rest.split(None, 1)) == 2:
        return "check"
    return None


def _chain_healthcheck(stages: tuple[Stage, ...], target: int) -> Located[str] | None:
    """The health check the target image has: its own last HEALTHCHECK, else the one it inherits FROM an earlier stage."""
    stage: Stage | None = stages[target]
    while stage is not None:
        if stage.healthcheck is not None:
            return stage.healthcheck
        stage = stages[stage.parent] if stage.parent is not None else None
    return None


def context_stages(info: BuildInfo) -> list[tuple[Stage, str]]:
    """The stages whose COPY/ADD can put build-context files into the built image, with how each is reached.

    The built stage itself (reached "") and every stage it reaches through `FROM <stage>` or
    `COPY --from=<stage>`, transitively, in file order. `RUN --mount=from=` is not followed: a mount is not copied.
    """
    stages = info.stages
    by_name = {s.name: s.index for s in stages if s.name is not None}
    target = info.stage.index
    how: dict[int, str] = {target: ""}
    queue = [target]
    while queue:
        k = queue.pop(0)
        stage = stages[k]
        edges: list[tuple[int, str]] = []
        if stage.parent is not None:
            edges.append((stage.parent, f"which '{stage.label}' is built FROM"))
        for op in stage.context_copies:
            if op.from_ is None:
                continue
            j = _resolve_ref(op.from_, stages, by_name, origin=Origin(stage.base.origin.file, op.line, ""))
            if j is not None:
                edges.append((j, f"which '{stage.label}' copies from on line {op.line}"))
        for j, why in edges:
            if j not in how:
                how[j] = why
                queue.append(j)
    return [(stages[k], how[k]) for k in sorted(how)]


_USERADD = re.compile(r"\b(?:useradd|adduser)\b([^;&|\n]*)")
_UID_FLAG = re.compile(r"(?:^|\s)(?:-u|--uid)(?:=|\s+)(\d+)")


def _created_uid(parsed: ParsedDockerfile, stages: tuple[Stage, ...], target: int, name: str) -> int | None:
    """The uid `RUN useradd -u N name` (or adduser -u/--uid) gives `name` in the target's FROM chain.

    Only used to name the uid in a fix ("use USER 1001"), so a miss costs nothing but a generic hint.
    """
    if not name or name.isdigit():
        return None
    chain = [target]
    while stages[chain[-1]].parent is not None:
        chain.append(stages[chain[-1]].parent)  # type: ignore[arg-type]
    starts = [st.base.origin.line or 0 for st in parsed.stages]
    for ins in reversed(parsed.instructions):
        if ins.cmd != "run":
            continue
        owner = max((k for k, line in enumerate(starts) if line <= ins.line), default=None)
        if owner not in chain:
            continue
        for match in _USERADD.finditer(ins.rest):
            args = match.group(1)
            words = [w for w in args.split() if not w.startswith("-")]
            uid = _UID_FLAG.search(args)
            if uid and words and words[-1] == name:
                return int(uid.group(1))
    return None


# --------------------------------------------------------------------------------------------------
# Entry points for the CLI
# --------------------------------------------------------------------------------------------------


def load(text: str, *, file: str, path: str | None = None, contexts: Any = None,
         build_args: Mapping[str, str] | None = None) -> list[Workload]:
    """A Dockerfile as its own object: one Workload for the final stage.

    `path` is where the Dockerfile is on disk (None for stdin): its folder is the build context (architecture §4
    build-context), walked through `contexts` (a sources.context.ContextCache, one per run). `build_args` are the
    CLI's `--build-arg NAME=VALUE`s, as `docker build` takes them.
    """
    parsed = parse(text, file=file)
    info = analyse(parsed, build_args=build_args)
    stage = info.stage
    # Every stage can be a build target, so every FROM that names an image is checked (architecture §4),
    # not only those the final stage needs; COPY --from images come from the final stage's analysis.
    seen: set[tuple[str, int | None]] = set()
    bases: list[Located[str]] = []
    for located in [s.base for s in info.stages if s.parent is None and not s.unresolved] + list(info.base_images):
        key = (located.value, located.origin.line)
        if located.value.lower() != "scratch" and key not in seen:
            seen.add(key)
            bases.append(located)
    bases.sort(key=lambda b: b.origin.line or 0)
    unresolved = tuple(UnresolvedBase(s.base.value, s.unresolved, s.base.origin) for s in info.stages if s.unresolved)
    container = Container(
        name=info.stage_label,
        origin=Origin(file, stage.base.origin.line, f"stages[{stage.index}]"),
        image=None,
        base_images=tuple(bases),
        unresolved_bases=unresolved,
        image_user=info.user,
        image_user_uid=info.user_uid,
        inherits_user_from=info.inherits_user_from,
        inherits_unresolved=info.inherits_unresolved,
        build_context=_own_context(info, file=file, path=path, contexts=contexts),
        env=literal_env(parsed),
    )
    return [
        Workload(
            source="dockerfile",
            kind="Dockerfile",
            name=info.stage_label,
            namespace=None,
            origin=Origin(file, 1, ""),
            containers=(container,),
            runtime=False,
            windows=info.windows,
        )
    ]


def literal_env(parsed: ParsedDockerfile) -> tuple[EnvVar, ...]:
    """Every stage's ENV values and ARG defaults as written (before substitution), for no-secret-in-env: an ENV stays
    in the image config, an ARG default in the history of every RUN that uses it, and both in the repository."""
    file = parsed.file
    out = [EnvVar(a.name, a.default, "ARG", Origin(file, a.line, f"args.{a.name}"))
           for a in parsed.global_args if a.default is not None]
    for i, ops in enumerate(parsed.stage_ops):
        for kind, line, data in ops:
            if kind == "arg":
                out.extend(EnvVar(name, default, "ARG", Origin(file, line, f"stages[{i}].args.{name}"))
                           for name, default in data if default is not None)  # type: ignore[union-attr,misc]
            elif kind == "env":
                out.extend(EnvVar(name, value or "", "ENV", Origin(file, line, f"stages[{i}].env.{name}"))
                           for name, value in data)  # type: ignore[union-attr,misc]
    return tuple(out)


def _own_context(info: BuildInfo, *, file: str, path: str | None, contexts: Any) -> BuildContext | None:
    """A Dockerfile checked alone: its own folder is the context (`docker build -f F DIR` with DIR = F's folder)."""
    if path is None:
        return None
    from admission.sources import context  # lazily: only Dockerfiles on disk have a context

    return context.gather(contexts if contexts is not None else context.ContextCache(),
                          context=os.path.dirname(os.path.abspath(path)), context_display=os.path.dirname(file),
                          dockerfile=os.path.abspath(path), dockerfile_display=file, stages=context_stages(info))


def looks_like_dockerfile(text: str) -> bool:
    """Content sniffing: the first instruction after directives, comments, blank lines and ARGs is a FROM.

    The FROM must also have BuildKit's shape (one operand, or `x AS name`), so `from x import y` is not one.
    """
    try:
        for ins in _instructions(text, file="", lenient=True):
            if ins.cmd == "arg":
                continue
            if ins.cmd != "from":
                return False
            args = _WS.split(ins.rest) if ins.rest else []
            return len(args) == 1 or (len(args) == 3 and args[1].lower() == "as")
    except InputError:
        return False
    return False
