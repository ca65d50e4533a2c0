"""`admission-cli check-policy FILE`, which the chart's hook runs: the server's own loader, so it accepts exactly
what `serve` accepts; exit 0, or 2 naming the file, the line and the key."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from tests.chart.conftest import ROOT

CLI = Path(sys.executable).parent / "admission-cli"

BAD = [  # policy text, line, what the message must name
    ("enforcement: deny\nrulez: {}\n", 2, "'rulez'"),
    ("rules:\n  no-such-rule: deny\n", 2, "'no-such-rule'"),
    ("rules:\n  image-tag-pinned:\n    params: {disallowed_tag: [latest]}\n", 3, "'disallowed_tag'"),
    ("exemptions:\n  - rule: no-host-port\n    namespace: edge\n", 2, "exemptions[0].reason"),
    ("images:\n  resolve: sometimes\n", 2, "images.resolve"),
    ("enforcement: warn\nenforcement: deny\n", 2, "enforcement"),
    ("rules: [\n", 2, "YAML"),
]


def _run(*argv: str, stdin: str | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run([str(CLI), *argv], input=stdin, capture_output=True, text=True, timeout=60, cwd=ROOT)


def test_a_valid_overlay_exits_0_and_says_what_it_amounts_to(tmp_path: Path) -> None:
    policy = tmp_path / "policy.yaml"
    policy.write_text("enforcement: warn\nrules:\n  numeric-user: off\n")  # YAML 1.2: `off` stays a string
    run = _run("check-policy", str(policy))
    assert run.returncode == 0, run.stderr
    assert run.stdout.startswith(f"{policy}: valid policy") and "enforcement warn" in run.stdout
    assert "2 off" in run.stdout and run.stderr == ""  # numeric-user, and service-account-token (off by default)


@pytest.mark.parametrize(("text", "line", "key"), BAD, ids=[b[2] for b in BAD])
def test_a_bad_policy_exits_2_naming_file_line_and_key(tmp_path: Path, text: str, line: int, key: str) -> None:
    policy = tmp_path / "policy.yaml"
    policy.write_text(text)
    run = _run("check-policy", str(policy))
    assert run.returncode == 2
    assert f"{policy}:{line}: " in run.stderr and key in run.stderr, run.stderr
    assert run.stdout == ""


@pytest.mark.parametrize(("text", "line", "key"), BAD[:4], ids=[b[2] for b in BAD[:4]])
def test_serve_refuses_exactly_what_check_policy_refuses_with_the_same_message(
        tmp_path: Path, text: str, line: int, key: str) -> None:
    policy = tmp_path / "policy.yaml"
    policy.write_text(text)
    check = _run("check-policy", str(policy))
    serve = _run("serve", "--policy", str(policy), "--host", "127.0.0.1", "--port", "0")
    assert check.returncode == serve.returncode == 2
    problem = check.stderr.strip().split("policy error: ", 1)[1]
    assert problem in serve.stderr


def test_policy_on_stdin_and_a_missing_file(tmp_path: Path) -> None:
    assert _run("check-policy", "-", stdin="enforcement: warn\n").returncode == 0
    run = _run("check-policy", "-", stdin="enforcement: maybe\n")
    assert run.returncode == 2 and "-:1: " in run.stderr
    run = _run("check-policy", str(tmp_path / "absent.yaml"))
    assert run.returncode == 2 and "absent.yaml" in run.stderr


def test_check_policy_loads_no_web_framework_or_pydantic(tmp_path: Path) -> None:
    policy = tmp_path / "policy.yaml"
    policy.write_text("enforcement: warn\n")
    probe = ("import json, sys, contextlib, io\nbefore = set(sys.modules)\nfrom admission.cli.main import main\n"
             f"with contextlib.redirect_stdout(io.StringIO()):\n    code = main(['check-policy', {str(policy)!r}])\n"
             "print(json.dumps([code, sorted({m.split('.')[0] for m in set(sys.modules) - before})]))")
    run = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, cwd=ROOT, timeout=60)
    code, loaded = json.loads(run.stdout.strip().splitlines()[-1])
    assert code == 0
    assert not set(loaded) & {"fastapi", "starlette", "uvicorn", "pydantic", "kubernetes", "httpx"}
