"""The first minute of a new user: `make demo` in a fresh copy of the checkout installs the checker alone (`pip install
.`, no extras), prints what the README shows and nothing from pip or setuptools; `make test`'s install then adds the
extras in the same venv (editable, a .pth line naming the checkout), and `make demo` afterwards installs nothing.
How long it takes is a benchmark (bench/firstrun.py), not an assertion here.

The installs come from the package index (and pip's cache); without the index these tests skip, naming why (under
CI=true they fail)."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
OFFLINE = ("Could not find a version", "Failed to establish a new connection", "Temporary failure in name resolution",
           "No matching distribution found")
NOT_FOR_THE_DEMO = ("fastapi", "uvicorn", "pydantic", "kubernetes", "prometheus-client", "pytest", "jsonschema",
                    "compose-lint")


def _environment() -> dict[str, str]:
    """The user's shell: the test venv is not on PATH, and nothing points Python at this checkout."""
    ours = str(Path(sys.executable).parent)
    env = {k: v for k, v in os.environ.items() if k not in ("VIRTUAL_ENV", "PYTHONPATH", "MAKEFLAGS", "MAKELEVEL")}
    env["PATH"] = os.pathsep.join(p for p in env.get("PATH", "/usr/bin:/bin").split(os.pathsep) if p != ours)
    return env


def _make(target: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    proc = subprocess.run(["make", "--no-print-directory", target], cwd=cwd, env=_environment(), capture_output=True,
                          text=True, timeout=900, check=False)
    if proc.returncode != 0 and any(word in proc.stderr for word in OFFLINE) and os.environ.get("CI") != "true":
        pytest.skip(f"`make {target}` could not reach the package index: {proc.stderr.strip().splitlines()[-1]}")
    return proc


@pytest.fixture(scope="module")
def fresh(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The checkout's files as a clone has them (tracked and new files, as they are now), with nothing installed."""
    if shutil.which("make") is None or shutil.which("git") is None:
        pytest.skip("needs make and git")
    listed = subprocess.run(["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"], cwd=ROOT,
                            capture_output=True, check=True).stdout.decode().split("\0")
    copy = tmp_path_factory.mktemp("fresh") / "admission"
    for name in filter(None, listed):
        source = ROOT / name
        if not source.exists() and not source.is_symlink():
            continue  # deleted in the working tree
        target = copy / name
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(source, target, follow_symlinks=False)
    subprocess.run(["git", "init", "-q"], cwd=copy, check=True)  # a clone is a repository: .admission.yaml applies
    return copy


@pytest.fixture(scope="module")
def demo(fresh: Path) -> subprocess.CompletedProcess[str]:
    return _make("demo", fresh)


def _readme_demo() -> str:
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    block = readme[readme.index("<!-- demo:begin -->"):readme.index("<!-- demo:end -->")]
    return block.split("```text\n", 1)[1].split("```", 1)[0]


def _installed(venv: Path) -> set[str]:
    proc = subprocess.run([str(venv / "bin" / "python"), "-m", "pip", "list", "--format=freeze"], capture_output=True,
                          text=True, check=True, env=_environment())
    return {line.split("==")[0].split(" @ ")[0].lower().replace("_", "-") for line in proc.stdout.splitlines()}


def test_make_demo_installs_the_checker_alone_and_prints_the_readme_demo(demo, fresh) -> None:
    assert demo.returncode == 0, demo.stdout + demo.stderr
    install, transcript = demo.stdout.split("$ admission-cli", 1)
    assert install.splitlines() == ["python3 -m venv .venv", ".venv/bin/pip install -q ."]
    assert "$ admission-cli" + transcript == _readme_demo()
    assert demo.stderr == "", "nothing from pip or setuptools reaches the user"
    installed = _installed(fresh / ".venv")
    assert "admission" in installed and "pyyaml" in installed and "httpx" in installed
    assert not installed & set(NOT_FOR_THE_DEMO), installed & set(NOT_FOR_THE_DEMO)


def test_make_tests_install_upgrades_the_demos_venv_and_make_demo_then_installs_nothing(demo, fresh) -> None:
    assert demo.returncode == 0
    full = _make(".venv/.installed-full", fresh)  # what `make test` installs before it runs the suite
    assert full.returncode == 0, full.stdout + full.stderr
    assert full.stdout.splitlines() == [".venv/bin/pip install -q -e '.[server,test,bench]'"]
    assert full.stderr == "", "no setuptools banner (compat mode, editable warnings) reaches the user"
    (pth,) = (fresh / ".venv").glob("lib/python*/site-packages/__editable__.admission-*.pth")
    assert pth.read_text().strip() == str(fresh), "the tests run the checkout as it is, through one .pth line"
    assert set(NOT_FOR_THE_DEMO) <= _installed(fresh / ".venv")
    again = _make("demo", fresh)
    assert again.returncode == 0 and again.stdout == _readme_demo() and again.stderr == ""
