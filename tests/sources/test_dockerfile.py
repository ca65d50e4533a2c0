"""Dockerfile source: stages, FROM, USER and ARG as BuildKit evaluates them."""

from __future__ import annotations

import random
from pathlib import Path

import pytest

from admission.errors import InputError
from admission.sources.dockerfile import analyse, expand, load, looks_like_dockerfile, parse

HERE = Path(__file__).resolve().parent
DATA = HERE / "dockerfiles"
TUTORIAL = HERE.parents[1] / "examples" / "flask-prod-app" / "Dockerfile"  # the project's copy, as published


def info(text: str, **kwargs: object):
    return analyse(parse(text, file="Dockerfile"), **kwargs)  # type: ignore[arg-type]


def images(text: str, **kwargs: object) -> list[tuple[str, int | None]]:
    return [(b.value, b.origin.line) for b in info(text, **kwargs).base_images]


def data(name: str) -> str:
    return (DATA / name).read_text(encoding="utf-8")


# ---------------------------------------------------------------- the tutorial's Dockerfile


def test_tutorial_final_stage_is_unnamed_stage_1_running_as_appuser_from_line_21() -> None:
    result = analyse(parse(TUTORIAL.read_text(encoding="utf-8"), file="Dockerfile"))
    assert result.stage_label == "stage 1"
    assert (result.user.value, result.user.origin.line, result.user.origin.path) == ("appuser", 21, "stages[1].user")
    assert result.user_set is True
    assert result.inherits_user_from is None


def test_tutorial_needs_both_python_froms_with_their_own_lines() -> None:
    result = analyse(parse(TUTORIAL.read_text(encoding="utf-8"), file="Dockerfile"))
    assert [(b.value, b.origin.line, b.origin.path) for b in result.base_images] == [
        ("docker.xuanyuan.run/python:3.10-slim", 2, "stages[0].from"),
        ("docker.xuanyuan.run/python:3.10-slim", 12, "stages[1].from"),
    ]


def test_tutorial_loads_as_one_dockerfile_workload_for_the_final_stage() -> None:
    [workload] = load(TUTORIAL.read_text(encoding="utf-8"), file="flask/Dockerfile")
    assert (workload.source, workload.kind, workload.name, workload.namespace, workload.runtime) == (
        "dockerfile", "Dockerfile", "stage 1", None, False,
    )
    assert (workload.origin.file, workload.origin.line) == ("flask/Dockerfile", 1)
    [container] = workload.containers
    assert container.name == "stage 1"
    assert container.image is None
    assert (container.origin.line, container.origin.path) == (12, "stages[1]")
    assert container.image_user is not None and container.image_user.value == "appuser"
    assert [b.origin.line for b in container.base_images] == [2, 12]


# ---------------------------------------------------------------- reading lines as BuildKit does


def test_comment_and_blank_lines_inside_a_continuation_are_skipped_but_counted() -> None:
    parsed = parse(data("continuation.df"), file="c")
    runs = [(i.line, i.end_line) for i in parsed.instructions if i.cmd == "run"]
    assert runs == [(2, 6), (7, 9), (12, 12)]
    users = [(i.rest, i.line) for i in parsed.instructions if i.cmd == "user"]
    assert users == [("appuser", 10), ("app2", 13)]


def test_an_escaped_escape_at_line_end_does_not_continue_the_line() -> None:
    parsed = parse("FROM a:1\nRUN echo \\\\\nUSER x\n", file="d")
    assert [(i.cmd, i.line) for i in parsed.instructions] == [("from", 1), ("run", 2), ("user", 3)]


def test_heredoc_bodies_are_not_read_as_instructions() -> None:
    parsed = parse(data("heredoc.df"), file="h")
    assert [s.base.value for s in parsed.stages] == ["alpine:3.19"]
    result = analyse(parsed)
    assert (result.user.value, result.user.origin.line) == ("1001", 18)


def test_heredoc_spans_chomped_quoted_and_several_per_line() -> None:
    parsed = parse(data("heredoc.df"), file="h")
    spans = [(i.cmd, i.line, i.end_line) for i in parsed.instructions]
    assert spans == [
        ("from", 2, 2), ("run", 3, 6), ("copy", 7, 9), ("run", 10, 14),
        ("run", 15, 15), ("run", 16, 16), ("run", 17, 17), ("user", 18, 18),
    ]


def test_exec_form_run_with_heredoc_marker_is_not_a_heredoc() -> None:
    parsed = parse('FROM a:1\nRUN ["sh", "-c", "cat <<EOF"]\nUSER u\n', file="d")
    assert [(i.cmd, i.json) for i in parsed.instructions] == [("from", False), ("run", True), ("user", False)]


def test_exec_form_followed_by_text_is_still_exec_form_so_no_heredoc() -> None:
    # BuildKit decodes only the first JSON value of the line.
    parsed = parse('FROM a:1\nRUN ["sh"] <<B\nUSER x\n', file="d")
    assert [(i.cmd, i.line, i.json) for i in parsed.instructions] == [
        ("from", 1, False), ("run", 2, True), ("user", 3, False),
    ]


def test_unterminated_heredoc_is_an_input_error_at_its_instruction() -> None:
    with pytest.raises(InputError, match="unterminated heredoc") as exc:
        parse("FROM a:1\nRUN <<EOF\necho hi\n", file="d")
    assert exc.value.line == 2


def test_backtick_escape_directive_reads_a_windows_dockerfile() -> None:
    parsed = parse(data("windows.df"), file="w")
    assert parsed.escape == "`"
    assert [(i.cmd, i.line, i.end_line) for i in parsed.instructions] == [
        ("from", 3, 3), ("run", 4, 5), ("copy", 6, 6), ("user", 7, 7),
    ]
    assert analyse(parsed).user.value == "ContainerUser"


def test_crlf_line_endings_keep_line_numbers() -> None:
    text = "FROM a:1\r\nRUN a \\\r\n  b\r\nUSER c\r\n"
    result = info(text)
    assert (result.user.value, result.user.origin.line) == ("c", 4)


def test_instructions_are_case_insensitive() -> None:
    result = info("from alpine:3.19 as Base\nuser 1001\n")
    assert (result.stage_label, result.user.value) == ("base", "1001")


@pytest.mark.parametrize("name", ["continuation.df", "heredoc.df", "windows.df", "multistage.df"])
def test_instruction_lines_agree_with_buildkits_own_parser(name: str) -> None:
    import dockerfile as gofront  # the Go parser, packaged for Python (a test dependency)
    text = data(name)
    expected = [(c.cmd.lower(), c.start_line, c.end_line) for c in gofront.parse_string(text)]
    assert [(i.cmd, i.line, i.end_line) for i in parse(text, file=name).instructions] == expected


def test_tutorial_instruction_lines_agree_with_buildkits_own_parser() -> None:
    import dockerfile as gofront
    text = TUTORIAL.read_text(encoding="utf-8")
    expected = [(c.cmd.lower(), c.start_line, c.end_line) for c in gofront.parse_string(text)]
    assert [(i.cmd, i.line, i.end_line) for i in parse(text, file="t").instructions] == expected


def _mutants(seed: int, count: int) -> list[str]:
    """Seeded random edits of the fixtures around the characters the reader gives meaning to."""
    seeds = [data(n) for n in ("continuation.df", "heredoc.df", "windows.df", "multistage.df")]
    pieces = [*"\\`$'\"{}[]:-#=<>\n\t ", "<<EOF", "EOF", "<<-X", "\tX", "# c", "RUN ", "COPY --from=", "ONBUILD ",
              "\\\n", '["a"]', "\r", "FROM ", "USER ", "ARG ", "${", "AS ", "scratch", "--mount=from="]
    rng = random.Random(seed)
    out = []
    for _ in range(count):
        text = list(rng.choice(seeds))
        for _ in range(rng.randint(1, 5)):
            pos = rng.randrange(len(text) + 1)
            if rng.random() < 0.6:
                text[pos:pos] = list(rng.choice(pieces))
            else:
                del text[pos : pos + rng.randint(1, 4)]
        out.append("".join(text))
    return out


def test_instruction_lines_agree_with_buildkits_parser_on_mutated_files() -> None:
    import dockerfile as gofront
    def go_lines(text: str) -> list[tuple[str, int, int, bool]] | None:
        try:
            return [(c.cmd.lower(), c.start_line, c.end_line, c.json) for c in gofront.parse_string(text)]
        except (gofront.GoParseError, AttributeError):  # refused (or crashed on) by the Go side: nothing to compare
            return None

    compared = 0
    for text in _mutants(seed=20, count=400):
        expected = go_lines(text)
        if expected is not None:
            assert [(i.cmd, i.line, i.end_line, i.json) for i in parse_instructions(text)] == expected, text
            compared += 1
    assert compared > 300


def test_mutated_files_raise_nothing_but_input_errors() -> None:
    for text in _mutants(seed=7, count=400):
        try:
            looks_like_dockerfile(text)
            parsed = parse(text, file="f")
            analyse(parsed, build_args={"TAG": "x"})
            for stage in parsed.stages:
                if stage.name:
                    analyse(parsed, target=stage.name)
        except InputError:
            pass


def parse_instructions(text: str) -> list:  # type: ignore[type-arg]
    from admission.sources.dockerfile import _instructions

    return list(_instructions(text, file="f"))


# ---------------------------------------------------------------- USER and the stage graph


def test_user_forms_are_kept_as_written() -> None:
    for user in ("appuser", "1001", "1001:1001", "app:grp"):
        assert info(f"FROM a:1\nUSER {user}\n").user.value == user


def test_last_user_of_the_stage_wins() -> None:
    result = info("FROM a:1\nUSER root\nRUN x\nUSER 1001\n")
    assert (result.user.value, result.user.origin.line) == ("1001", 4)


def test_stage_built_from_an_earlier_stage_inherits_its_user() -> None:
    text = "FROM python:3.12 AS base\nUSER 10001\nFROM base AS app\nRUN true\nFROM app\nCMD x\n"
    result = info(text)
    assert result.stage.parent == 1
    assert (result.user.value, result.user.origin.line, result.user_set) == ("10001", 2, True)
    assert [b.value for b in result.base_images] == ["python:3.12"]


def test_stage_reference_in_from_is_case_insensitive() -> None:
    result = info("FROM python:3.12 AS base\nUSER app\nFROM Base\n")
    assert result.stage.parent == 0
    assert result.user.value == "app"


def test_no_user_anywhere_means_root_at_the_target_from_line_and_names_the_image_to_look_at() -> None:
    result = info("FROM python:3.12 AS base\nFROM base\nRUN x\n")
    assert (result.user.value, result.user.origin.line, result.user_set) == ("", 2, False)
    assert result.inherits_user_from is not None
    assert (result.inherits_user_from.value, result.inherits_user_from.origin.line) == ("python:3.12", 1)


def test_scratch_is_not_a_base_image_and_has_no_user_to_inherit() -> None:
    text = "FROM golang:1.22 AS build\nRUN go build\nFROM scratch\nCOPY --from=build /app /app\n"
    result = info(text)
    assert images(text) == [("golang:1.22", 1)]
    assert (result.user.value, result.user_set, result.inherits_user_from) == ("", False, None)


def test_copy_from_an_image_is_a_base_image_at_the_copy_line() -> None:
    text = "FROM alpine:3.19\nCOPY --from=busybox:1.36 /bin/busybox /bin/\n"
    result = info(text)
    assert [(b.value, b.origin.line, b.origin.path) for b in result.base_images] == [
        ("alpine:3.19", 1, "stages[0].from"),
        ("busybox:1.36", 2, "stages[0].copies_from[0]"),
    ]


def test_copy_from_a_stage_index_follows_that_stage() -> None:
    text = "FROM golang:1.22\nRUN b\nFROM alpine:3.19\nCOPY --from=0 /a /a\n"
    assert images(text) == [("golang:1.22", 1), ("alpine:3.19", 3)]


def test_copy_from_a_missing_stage_index_is_an_input_error() -> None:
    with pytest.raises(InputError, match="invalid stage index 3") as exc:
        info("FROM alpine:3.19\nCOPY --from=3 /a /a\n")
    assert exc.value.line == 2


def test_copy_from_with_a_variable_is_rejected_like_buildkit() -> None:
    with pytest.raises(InputError, match="variable expansion is not supported for --from") as exc:
        parse("ARG IMG=busybox:1\nFROM alpine:3.19\nCOPY --from=$IMG /a /a\n", file="d")
    assert exc.value.line == 3


def test_copy_from_with_a_broken_variable_is_an_input_error_not_a_crash() -> None:
    with pytest.raises(InputError, match="missing '}'") as exc:
        parse("FROM alpine:3.19\nCOPY --from=${IMG /a /a\n", file="d")
    assert exc.value.line == 2


def test_run_mount_from_counts_bind_and_cache_sources_but_not_tmpfs() -> None:
    result = info(data("multistage.df"), target="runtime")
    mounted = [b for b in result.base_images if b.origin.line == 13]
    assert [b.value for b in mounted] == ["ghcr.io/acme/tools:2.1"]
    assert result.stages[2].copies_from == ("build", "busybox:1.36", "ghcr.io/acme/tools:2.1")


def test_target_needs_only_reachable_stages() -> None:
    result = info(data("multistage.df"), target="runtime")
    assert result.stage_label == "runtime"
    assert result.reachable == (0, 1, 2)
    assert [(b.value, b.origin.line) for b in result.base_images] == [
        ("golang:1.22", 3), ("python:3.12-slim", 6), ("busybox:1.36", 12), ("ghcr.io/acme/tools:2.1", 13),
    ]
    assert (result.user.value, result.user.origin.line) == ("10001:10001", 8)


def test_default_target_is_the_last_stage() -> None:
    result = info(data("multistage.df"))
    assert (result.stage_label, result.user.value) == ("unused", "node")
    assert [b.value for b in result.base_images] == ["node:20-alpine"]


def test_target_selection_is_case_insensitive() -> None:
    assert info(data("multistage.df"), target="BUILD").stage_label == "build"


def test_unknown_target_is_an_input_error_in_buildkits_words() -> None:
    with pytest.raises(InputError, match='target stage "nope" could not be found'):
        info(data("multistage.df"), target="nope")


def test_copy_from_cycle_is_an_input_error() -> None:
    text = "FROM a:1 AS one\nRUN --mount=from=two,target=/t x\nFROM one AS two\n"
    with pytest.raises(InputError, match="circular dependency"):
        info(text)


# ---------------------------------------------------------------- ARG and ENV substitution


def test_global_arg_default_is_substituted_in_from() -> None:
    assert images("ARG TAG=3.19\nFROM alpine:${TAG}\n") == [("alpine:3.19", 2)]


def test_build_arg_overrides_a_declared_arg() -> None:
    assert images("ARG TAG=3.19\nFROM alpine:$TAG\n", build_args={"TAG": "3.20"}) == [("alpine:3.20", 2)]


def test_build_arg_for_an_undeclared_arg_does_not_reach_from() -> None:
    assert images("FROM alpine${SUFFIX}\n", build_args={"SUFFIX": ":3.20"}) == [("alpine", 1)]


def test_declared_arg_without_value_expands_to_empty() -> None:
    assert images("ARG REGISTRY\nFROM ${REGISTRY}alpine:3.19\n") == [("alpine:3.19", 2)]


def test_default_and_alternative_value_modifiers() -> None:
    text = "ARG A\nARG B=set\nFROM ${A:-alpine}:${B:+3.19}\n"
    assert images(text) == [("alpine:3.19", 3)]
    assert images(text, build_args={"A": "debian", "B": ""}) == [("debian:", 3)]


def test_predefined_platform_args_are_usable_in_from() -> None:
    result = info(data("multistage.df"), target="build")
    assert result.stage.platform == "linux/amd64"
    assert images("FROM --platform=$TARGETPLATFORM img-${TARGETARCH}:1\n") == [("img-amd64:1", 1)]


def test_base_that_expands_to_nothing_is_an_input_error_at_the_from_line() -> None:
    # An undeclared name: no --build-arg can give it a value (a declared ARG with none is tests/sources/test_build_args.py)
    with pytest.raises(InputError, match="should not be blank") as exc:
        info("FROM alpine:3.19\nRUN true\nFROM $BASE\n")
    assert exc.value.line == 3


def test_build_args_can_supply_a_base_that_is_blank_by_default() -> None:
    assert images("ARG BASE\nFROM $BASE\n", build_args={"BASE": "alpine:3.19"}) == [("alpine:3.19", 2)]


def test_user_sees_a_global_arg_only_when_redeclared_in_the_stage() -> None:
    assert info("ARG UID=1001\nFROM a:1\nUSER $UID\n").user.value == ""
    assert info("ARG UID=1001\nFROM a:1\nARG UID\nUSER $UID\n").user.value == "1001"
    assert info("ARG UID=1001\nFROM a:1\nARG UID\nUSER $UID\n", build_args={"UID": "2000"}).user.value == "2000"


def test_user_sees_stage_arg_defaults_and_env() -> None:
    assert info("FROM a:1\nARG U=app\nUSER ${U}:grp\n").user.value == "app:grp"
    assert info("FROM a:1\nENV APP_USER=svc\nUSER $APP_USER\n").user.value == "svc"
    assert info("FROM a:1\nENV APP_USER svc\nUSER $APP_USER\n").user.value == "svc"  # legacy ENV form


def test_user_in_a_child_stage_sees_the_parents_env() -> None:
    assert info("FROM a:1 AS base\nENV U=app\nFROM base\nUSER $U\n").user.value == "app"


def test_unset_required_variable_in_user_is_an_input_error_at_its_line() -> None:
    with pytest.raises(InputError, match="U: is not allowed to be unset") as exc:
        info("FROM a:1\nUSER ${U:?}\n")
    assert exc.value.line == 2


def test_expand_removes_quotes_and_honours_escapes() -> None:
    env = {"A": "x"}
    assert expand("'$A'", env) == "$A"
    assert expand('"$A"-\\$A', env) == "x-$A"
    assert expand("${A}${B:-d}${A:+y}${B+z}", env) == "xdy"
    assert expand("${V#*.}|${V##*.}|${V%.*}|${V%%.*}", {"V": "a.b.c"}) == "b.c|c|a.b|a"


# ---------------------------------------------------------------- input errors


@pytest.mark.parametrize(
    ("text", "line", "message"),
    [
        ("", 1, "file with no instructions"),
        ("# just a comment\n\n", 1, "file with no instructions"),
        ("RUN echo hi\nFROM a:1\n", 1, "no build stage in current context"),
        ("ARG A=1\nARG B=2\n", 2, "no stages to build"),
        ("# syntax=docker/dockerfile:1\nARG A=1\nCOPY . /app\n", 3, "no build stage in current context"),
    ],
)
def test_dockerfile_without_from_is_an_input_error_with_a_line(text: str, line: int, message: str) -> None:
    with pytest.raises(InputError, match=message) as exc:
        parse(text, file="Dockerfile")
    assert (exc.value.file, exc.value.line) == ("Dockerfile", line)


@pytest.mark.parametrize(
    ("text", "line", "message"),
    [
        ("FROM a:1\nFOO bar\n", 2, "unknown instruction: FOO"),
        ("FROM\n", 1, "FROM requires either one or three arguments"),
        ("FROM a:1 b\n", 1, "FROM requires either one or three arguments"),
        ("FROM a:1 AS 1st\n", 1, "invalid name for build stage"),
        ("FROM --plat=x a:1\n", 1, "unknown flag: plat"),
        ("FROM a:1\nUSER\n", 2, "USER requires exactly one argument"),
        ("FROM a:1\nCOPY --from /a /b\n", 2, "missing a value on flag: from"),
        ("# escape=x\nFROM a:1\n", 1, "invalid escape token"),
        ("# escape=`\n# escape=\\\nFROM a:1\n", 2, "only one escape parser directive"),
        ("FROM a:1\nENV A=1 B\n", 2, "can't find = in 'B'"),
        ('FROM a:1\nRUN ["a", 1]\n', 2, "arrays must be comprised of strings only"),
    ],
)
def test_what_buildkit_rejects_is_an_input_error_at_its_line(text: str, line: int, message: str) -> None:
    with pytest.raises(InputError, match=message) as exc:
        parse(text, file="Dockerfile")
    assert exc.value.line == line


# ---------------------------------------------------------------- content sniffing


@pytest.mark.parametrize(
    "text",
    [
        "FROM alpine:3.19\n",
        "from alpine:3.19 as base\nRUN x\n",
        "# syntax=docker/dockerfile:1\n# a comment\n\nARG TAG=1\nARG REG \\\n  =x\nFROM ${REG}alpine:${TAG}\n",
        "# escape=`\nARG A=`\n  b\nFROM --platform=linux/amd64 mcr.microsoft.com/windows:ltsc2022\n",
        "\ufeffFROM alpine:3.19\n",
    ],
)
def test_looks_like_dockerfile_when_the_first_instruction_after_args_is_from(text: str) -> None:
    assert looks_like_dockerfile(text) is True


def test_tutorial_looks_like_a_dockerfile() -> None:
    assert looks_like_dockerfile(TUTORIAL.read_text(encoding="utf-8")) is True


@pytest.mark.parametrize(
    "text",
    [
        "",
        "# only comments\n",
        "services:\n  web:\n    image: nginx:1.27\n",
        "from os import path\n",
        "RUN echo hi\nFROM alpine:3.19\n",
        "#!/bin/sh\necho FROM alpine\n",
        "ARG A=1\n",
        '{"apiVersion": "v1", "kind": "Pod"}\n',
    ],
)
def test_does_not_look_like_dockerfile(text: str) -> None:
    assert looks_like_dockerfile(text) is False


@pytest.mark.parametrize(("run", "uid"), [
    ("RUN useradd -m -u 1001 appuser", 1001),
    ("RUN apt-get update && useradd --uid 2000 --create-home appuser && true", 2000),
    ("RUN addgroup -S app && adduser -S -D -u 10001 -G app appuser", 10001),
    ("RUN useradd -m appuser", None),
    ("RUN useradd -u 1001 someoneelse", None),
])
def test_the_uid_a_run_useradd_gives_the_named_user_is_found_for_the_fix(run: str, uid: int | None) -> None:
    info = analyse(parse(f"FROM debian:12\n{run}\nUSER appuser\n", file="Dockerfile"))
    assert info.user.value == "appuser" and info.user_uid == uid


def test_a_useradd_in_another_stage_does_not_name_the_uid() -> None:
    text = "FROM debian:12 AS build\nRUN useradd -u 1001 appuser\nFROM debian:12\nUSER appuser\n"
    assert analyse(parse(text, file="Dockerfile")).user_uid is None


@pytest.mark.parametrize(("text", "message", "line"), [
    ("FROM alpine:3.20\nUSER 1 2\n", "USER requires exactly one argument", 2),
    ("FROM alpine:3.20 AS a\nFROM alpine:3.20 AS A\n", "duplicate stage name", 2),
])
def test_what_buildkit_refuses_is_an_input_error_with_its_line(text: str, message: str, line: int) -> None:
    with pytest.raises(InputError, match=message) as info:
        parse(text, file="Dockerfile")
    assert info.value.line == line
