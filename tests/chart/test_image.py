"""The production Dockerfile, read by the official Go parser (PyPI `dockerfile`), linted by the real hadolint,
checked by our own policy, and its HEALTHCHECK run against a real server; the build context computed as BuildKit
sends it (the build-context rule's walker: moby/patternmatcher's `.dockerignore` rules, held to moby's vectors in
tests/dockerignore/)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from tests.chart.conftest import ROOT, Rendered, render

DOCKERFILE = ROOT / "Dockerfile"
BIN = Path(sys.executable).parent


def context_files(root: Path, dockerignore: Path | None = None) -> set[str]:
    """Relative paths of the files `docker build root` sends."""
    from admission.sources.context import ContextCache

    walked = ContextCache().walk(str(root), str(dockerignore or root / ".dockerignore"))
    assert walked.cut is None and walked.error is None, (walked.cut, walked.error)
    return set(walked.files)


def _commands() -> list[Any]:
    import dockerfile

    return list(dockerfile.parse_file(str(DOCKERFILE)))


def _stages() -> list[list[Any]]:
    stages: list[list[Any]] = []
    for command in _commands():
        if command.cmd.upper() == "FROM":
            stages.append([])
        if stages:
            stages[-1].append(command)
    return stages


def _final(cmd: str) -> list[Any]:
    return [c for c in _stages()[-1] if c.cmd.upper() == cmd]


def test_dockerfile_is_multi_stage_and_the_runtime_copies_only_the_venv() -> None:
    stages = _stages()
    assert len(stages) >= 2
    builder_name = stages[0][0].value[-1]
    assert stages[0][0].value[1].upper() == "AS"
    final = stages[-1]
    assert not [c for c in final if c.cmd.upper() in ("RUN", "ADD")], "nothing is installed in the runtime stage"
    (copy,) = [c for c in final if c.cmd.upper() == "COPY"]
    assert copy.flags == (f"--from={builder_name}",) and copy.value == ("/opt/venv", "/opt/venv")
    assert not [c for c in stages[0] if c.cmd.upper() == "RUN" and "apt-get" in " ".join(c.value)], \
        "every dependency has wheels: no compiler or curl is installed, in any stage"


def _global_args() -> dict[str, str]:
    args: dict[str, str] = {}
    for command in _commands():
        if command.cmd.upper() == "FROM":
            break
        name, _, value = command.value[0].partition("=")
        args[name] = value
    return args


def test_both_stages_start_from_the_pinned_python_slim_base_with_an_optional_digest() -> None:
    from admission.sources.dockerfile import expand

    args = _global_args()
    assert args["PYTHON_IMAGE"].startswith("python:3.12.") and "-slim" in args["PYTHON_IMAGE"]
    assert args["PYTHON_DIGEST"] == ""
    assert args["PYTHON_IMAGE"].startswith(f"python:{args['PYTHON_VERSION']}."), "the version the wheels are fetched for"
    froms = [stage[0].value[0] for stage in _stages()]
    assert len(set(froms)) == 1, "the venv is built on the interpreter it runs on"
    assert expand(froms[0], args) == args["PYTHON_IMAGE"]
    digest = "sha256:" + "0" * 64
    assert expand(froms[0], {**args, "PYTHON_DIGEST": digest}) == f"{args['PYTHON_IMAGE']}@{digest}"


def test_the_builder_runs_on_the_build_platform_and_every_run_has_no_network() -> None:
    builder, runtime = _stages()
    assert builder[0].flags == ("--platform=$BUILDPLATFORM",), "no emulation: the builder runs where the build does"
    assert runtime[0].flags == (), "the runtime stage is the target platform's base"
    runs = [c for c in _commands() if c.cmd.upper() == "RUN"]
    assert runs and all("--network=none" in c.flags for c in runs), [c.original for c in runs]
    (install,) = [c for c in runs if "pip" in " ".join(c.value) and " install " in " ".join(c.value)]
    text = " ".join(install.value)
    assert "--no-index" in text and "--require-hashes" in text and "--only-binary=:all:" in text


def test_runtime_runs_as_10001_exposes_8443_and_enters_admission_cli_serve() -> None:
    (user,) = _final("USER")
    assert user.value == ("10001:10001",)
    (expose,) = _final("EXPOSE")
    assert expose.value == ("8443",)
    (entrypoint,) = _final("ENTRYPOINT")
    assert entrypoint.json and entrypoint.value == ("admission-cli",)
    (cmd,) = _final("CMD")
    assert cmd.json and cmd.value[0] == "serve"


def test_default_command_and_the_charts_arguments_are_accepted_by_the_real_parser(default_render: Rendered) -> None:
    from admission.cli.main import _parser

    (cmd,) = _final("CMD")
    args = _parser().parse_args(list(cmd.value))
    assert args.command == "serve" and args.port == 8443 and args.host == "0.0.0.0"
    chart = _parser().parse_args(default_render.server["args"])
    assert chart.command == "serve" and chart.port == 8443 and chart.policy
    assert chart.tls_cert is None, "managed TLS (the default): the server makes its own certificate"
    files = _parser().parse_args(render({"tls": {"mode": "selfSigned"}}).server["args"])
    assert files.tls_cert and files.tls_key
    job = default_render.one("Job")["spec"]["template"]["spec"]["containers"][0]
    assert _parser().parse_args(job["args"]).command == "check-policy"


def test_runtime_environment_and_oci_labels() -> None:
    env: dict[str, str] = {}
    for command in _final("ENV"):
        values = list(command.value)
        env.update(zip(values[::2], values[1::2]))
    assert env["PYTHONDONTWRITEBYTECODE"] == "1" and env["PYTHONUNBUFFERED"] == "1"
    assert env["PATH"].startswith("/opt/venv/bin:")
    labels: dict[str, str] = {}
    for command in _final("LABEL"):
        values = list(command.value)
        labels.update(zip(values[::2], values[1::2]))
    build_args = {c.value[0].split("=", 1)[0] for c in _final("ARG")}
    for key, arg in (("source", "SOURCE"), ("revision", "REVISION"), ("created", "CREATED")):
        assert labels[f"org.opencontainers.image.{key}"].strip('"') == "${" + arg + "}"
        assert arg in build_args


def _healthcheck_code() -> tuple[list[str], str]:
    (check,) = _final("HEALTHCHECK")
    assert check.json and check.value[0] == "CMD"
    argv = list(check.value[1:])
    assert argv[:2] == ["python", "-c"], "Python's standard library, not curl"
    return check.flags, argv[2]


def _healthcheck(port: int) -> int:
    _, code = _healthcheck_code()
    env = {**os.environ, "ADMISSION_PORT": str(port)}
    return subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, timeout=30).returncode


def test_healthcheck_passes_against_a_live_server_over_https_and_http_and_fails_without_one(tmp_path: Path) -> None:
    from tests.images.registry import free_port
    from tests.webhook.conftest import write_policy
    from tests.webhook.served import Served, make_tls

    flags, _ = _healthcheck_code()
    assert any(f.startswith("--interval=") for f in flags) and any(f.startswith("--timeout=") for f in flags)
    policy = str(write_policy(tmp_path / "policy"))
    for tls in (make_tls(tmp_path / "tls"), None):
        server = Served(tmp_path / f"serve-{bool(tls)}", ["--policy", policy], tls=tls)
        server.start()
        try:
            assert _healthcheck(server.port) == 0, "https" if tls else "http"
        finally:
            server.stop()
    assert _healthcheck(free_port()) == 1


def test_hadolint_reports_no_error_or_warning() -> None:
    hadolint = BIN / "hadolint"
    run = subprocess.run([str(hadolint), "--format", "json", str(DOCKERFILE)], capture_output=True, text=True,
                         timeout=60)
    findings = json.loads(run.stdout or "[]")
    assert [f for f in findings if f["level"] in ("error", "warning")] == [], findings
    assert run.returncode == 0


def test_hadolint_is_the_real_linter(tmp_path: Path) -> None:
    bad = tmp_path / "Dockerfile"
    bad.write_text("FROM python:latest\nRUN apt-get update && apt-get install -y curl\n")
    run = subprocess.run([str(BIN / "hadolint"), "--format", "json", str(bad)], capture_output=True, text=True,
                         timeout=60)
    assert {f["code"] for f in json.loads(run.stdout)} >= {"DL3007", "DL3008"}


# --- the build context ----------------------------------------------------------------------------------------------


def test_the_checkout_is_no_build_context() -> None:
    """make image prepares the context (tests/image/test_context.py); a `docker build .` at the root sends nothing."""
    assert context_files(ROOT) == set()


def test_no_copy_takes_from_the_build_context() -> None:
    for command in _commands():
        if command.cmd.upper() in ("COPY", "ADD"):
            assert any(f.startswith("--from=") for f in command.flags), command.original
