"""Build args: `--build-arg NAME=VALUE` and compose `build.args` feed a Dockerfile's ARGs, and a FROM whose image only
the build command knows (`ARG BASE_IMAGE` / `FROM ${BASE_IMAGE}`, the shape of ingress-nginx's rootfs/Dockerfile) is a
warn finding of image-tag-pinned instead of an input error that drops every other check of the file."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from admission.cli.main import main
from admission.errors import InputError
from admission.sources.dockerfile import analyse, load, parse

FIXTURES = Path(__file__).resolve().parents[1] / "rules" / "image-tag-pinned"
INGRESS = FIXTURES / "fail__from-build-arg-without-value" / "Dockerfile"
COMPOSE = FIXTURES / "fail__compose-build-arg-without-value" / "compose.yaml"
FORMATS = ("text", "json", "sarif", "junit", "github", "gitlab")


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def pinned(report: dict) -> list[dict]:
    return [f for f in report["findings"] if f["rule"] == "image-tag-pinned"]


# ------------------------------------------------------------------ the adapter


def test_a_from_named_by_a_declared_arg_with_no_value_is_unresolved_not_an_error() -> None:
    info = analyse(parse("ARG BASE_IMAGE\nFROM ${BASE_IMAGE}\nUSER 10001\n", file="Dockerfile"))
    assert info.base_images == ()
    [base] = info.unresolved_bases
    assert (base.text, base.args, base.origin.line, base.origin.path) == ("${BASE_IMAGE}", ("BASE_IMAGE",), 2,
                                                                           "stages[0].from")
    assert info.inherits_user_from is None  # no image to read a user from
    assert info.user.value == "10001"  # the rest of the file is still read


def test_a_build_arg_gives_the_unresolved_base_its_image() -> None:
    info = analyse(parse("ARG BASE_IMAGE\nFROM ${BASE_IMAGE}\n", file="Dockerfile"),
                   build_args={"BASE_IMAGE": "nginx:1.27.1"})
    assert [(b.value, b.origin.line) for b in info.base_images] == [("nginx:1.27.1", 2)]
    assert info.unresolved_bases == ()


def test_an_optional_registry_prefix_with_no_value_builds_what_it_expands_to() -> None:
    # `ARG REGISTRY` then `FROM ${REGISTRY}node:20`: without the arg, docker builds node:20; that is checked.
    info = analyse(parse("ARG REGISTRY\nFROM ${REGISTRY}node:20-alpine\n", file="Dockerfile"))
    assert [b.value for b in info.base_images] == ["node:20-alpine"] and info.unresolved_bases == ()


def test_a_tag_from_an_arg_with_no_value_is_unresolved_and_names_that_arg() -> None:
    info = analyse(parse("ARG REGISTRY=ghcr.io/acme\nARG TAG\nFROM ${REGISTRY}/app:${TAG}\n", file="Dockerfile"))
    assert [(u.text, u.args) for u in info.unresolved_bases] == [("${REGISTRY}/app:${TAG}", ("TAG",))]


def test_a_default_in_the_substitution_is_a_value() -> None:
    info = analyse(parse("ARG BASE\nFROM ${BASE:-alpine:3.20}\n", file="Dockerfile"))
    assert [b.value for b in info.base_images] == ["alpine:3.20"] and info.unresolved_bases == ()


def test_an_undeclared_name_is_still_blank_as_buildkit_says() -> None:
    # No --build-arg reaches an ARG that is not declared before the first FROM, so this build always fails.
    with pytest.raises(InputError, match=r"base name \(\$BASE\) should not be blank") as exc:
        analyse(parse("FROM $BASE\n", file="Dockerfile"))
    assert exc.value.line == 1


def test_a_later_stage_built_from_an_unresolved_one_is_not_a_second_finding() -> None:
    [workload] = load("ARG BASE_IMAGE\nFROM ${BASE_IMAGE} AS base\nFROM base\nUSER 10001\n", file="Dockerfile")
    [container] = workload.containers
    assert [u.origin.line for u in container.unresolved_bases] == [2] and container.base_images == ()


# ------------------------------------------------------------------ the CLI


@pytest.mark.parametrize("fmt", FORMATS)
def test_an_unresolved_base_is_a_warn_finding_in_every_format(capsys, monkeypatch, fmt) -> None:
    monkeypatch.chdir(INGRESS.parent)
    code, out, _ = run(capsys, "check", "--format", fmt, "Dockerfile")
    assert code == 0  # a warn finding: the default --fail-on deny passes
    assert "base image set by build arg BASE_IMAGE, not checked; pass --build-arg" in out
    if fmt == "json":
        [finding] = pinned(json.loads(out))
        assert (finding["severity"], finding["line"], finding["path"], finding["value"]) == (
            "warn", 9, "stages[0].from", "${BASE_IMAGE}")
        assert "--build-arg BASE_IMAGE=" in finding["remediation"]


def test_an_unresolved_base_fails_only_with_fail_on_warn_and_the_other_checks_still_run(capsys, monkeypatch) -> None:
    monkeypatch.chdir(INGRESS.parent)
    code, out, _ = run(capsys, "check", "--format", "json", "--fail-on", "warn", "Dockerfile")
    report = json.loads(out)
    assert code == 1 and report["errors"] == []
    assert {f["rule"] for f in report["findings"]} >= {"image-tag-pinned", "numeric-user"}


def test_an_unresolved_base_is_keyed_by_the_from_as_written() -> None:
    from admission.policy import engine
    from admission.policy.config import default_policy

    workloads = load(INGRESS.read_text(encoding="utf-8"), file="Dockerfile")
    [finding] = [f for f in engine.evaluate(workloads, default_policy()).findings if f.rule == "image-tag-pinned"]
    assert (finding.key, finding.severity) == ("FROM ${BASE_IMAGE}", "warn")


def test_build_arg_flag_checks_the_image_the_build_uses(capsys, monkeypatch) -> None:
    monkeypatch.chdir(INGRESS.parent)
    code, out, _ = run(capsys, "check", "--format", "json", "--build-arg", "BASE_IMAGE=nginx:latest", "Dockerfile")
    [finding] = pinned(json.loads(out))
    assert code == 1 and finding["severity"] == "deny" and finding["value"] == "nginx:latest"
    assert finding["line"] == 9
    assert finding["message"] == ("a FROM line uses image 'nginx:latest' with the tag 'latest', "
                                  "which the policy does not allow (disallowed_tags)")
    code, out, _ = run(capsys, "check", "--format", "json", "--build-arg", "BASE_IMAGE=nginx:1.27.1",
                       "--build-arg", "UNUSED=x", "Dockerfile")
    assert pinned(json.loads(out)) == []


def test_build_arg_flag_reaches_a_dockerfile_on_stdin(capsys, monkeypatch) -> None:
    import io

    stdin = io.TextIOWrapper(io.BytesIO(b"ARG BASE_IMAGE\nFROM ${BASE_IMAGE}\nUSER 10001\n"))
    monkeypatch.setattr("sys.stdin", stdin)
    code, out, _ = run(capsys, "check", "--format", "json", "--build-arg", "BASE_IMAGE=alpine", "-")
    assert [f["value"] for f in pinned(json.loads(out))] == ["alpine"] and code == 1


@pytest.mark.parametrize("bad", ["BASE_IMAGE", "=nginx:1.27.1"])
def test_a_build_arg_without_name_and_equals_is_a_usage_error_naming_the_flag(capsys, bad) -> None:
    with pytest.raises(SystemExit) as exc:
        main(["check", "--build-arg", bad, str(INGRESS)])
    assert exc.value.code == 2
    err = capsys.readouterr().err
    assert "argument --build-arg: expected NAME=VALUE" in err and repr(bad) in err


def test_an_empty_value_is_a_value_as_docker_takes_it(capsys, monkeypatch) -> None:
    monkeypatch.chdir(INGRESS.parent)
    code, out, _ = run(capsys, "check", "--format", "json", "--build-arg", "BASE_IMAGE=", "Dockerfile")
    report = json.loads(out)
    assert code == 2 and "should not be blank" in report["errors"][0]["message"]


def test_compose_build_args_feed_the_dockerfile_and_a_missing_one_is_a_warn_on_the_service(capsys) -> None:
    # --no-config: this repository's .admission.yaml excludes the rule fixtures, so their Dockerfiles are not read.
    code, out, _ = run(capsys, "check", "--no-config", "--format", "json", str(COMPOSE))
    report = json.loads(out)
    assert code == 1  # the services' resource-limits deny; the unresolved base alone is a warn
    found = {(f["object"]["name"], f["severity"], f["value"]) for f in pinned(report)}
    assert found == {("web", "warn", "${BASE_IMAGE}")}
    [web] = pinned(report)
    assert web["message"] == "base image set by build arg BASE_IMAGE, not checked; set it in build.args"
    assert web["file"].endswith("Dockerfile") and web["line"] == 2 and report["errors"] == []
