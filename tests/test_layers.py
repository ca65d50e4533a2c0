"""The house's layer contracts (pyproject.toml, `lint-imports`, run by `make test`) bite: a copy of the package with
one wrong-way import added breaks exactly the contract that forbids it, and the copy without it keeps them all."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
LINT = Path(sys.executable).with_name("lint-imports")

# (module file, the line added at its end, the contract that must break)
WRONG_WAY = [
    ("admission/pin/run.py", "from admission.cli import main", "The webhook, the audit and pin import nothing of the CLI"),
    ("admission/policy/engine.py", "def _late():\n    from admission.sources import compose",
     "The policy core stands on the ground floor and images.settings only"),
    ("admission/policy/config.py", "from admission.images import cache",
     "The policy core stands on the ground floor and images.settings only"),
    ("admission/images/cache.py", "from admission.policy import config",
     "The image client imports nothing of the policy or the faces"),
    ("admission/images/settings.py", "from admission.images import gates",
     "images.settings imports nothing but the ground floor"),
    ("admission/model.py", "from admission.images import settings", "The ground floor imports nothing above the ground floor"),
    ("admission/reference.py", "from admission.sources import yamlload",
     "The ground floor imports nothing above the ground floor"),
    ("admission/kube/cluster.py", "from admission.webhook import imaging",
     "Sources, inputs and kube import nothing of the faces"),
    ("admission/inputs/walk.py", "from admission.cli import report", "Sources, inputs and kube import nothing of the faces"),
    ("admission/webhook/app.py", "from admission.audit import run", "The webhook, the audit and pin import nothing of each other"),
    ("admission/policy/rules/users.py", "from admission.policy import catalog", "No circles between the modules of a room"),
    ("admission/sources/context.py", "def _late():\n    from admission.sources import dockerfile",
     "No circles between the modules of a room"),
    ("admission/model.py", "import httpx", "The policy core imports no web, HTTP, Kubernetes-client or CLI framework"),
]


def _copy(tmp_path: Path) -> Path:
    shutil.copytree(ROOT / "admission", tmp_path / "admission", ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copy(ROOT / "pyproject.toml", tmp_path / "pyproject.toml")
    return tmp_path


def _lint(where: Path) -> subprocess.CompletedProcess[str]:
    if not LINT.exists():
        pytest.skip(f"lint-imports is not installed beside {sys.executable}")
    env = dict(os.environ, PYTHONPATH=str(where))
    return subprocess.run([str(LINT), "--no-cache"], cwd=where, env=env, capture_output=True, text=True, timeout=300)


def _broken(output: str) -> set[str]:
    """Names of the contracts the summary lists as BROKEN (`NAME BROKEN` or `NAME BROKEN (1 ignored import)`)."""
    return {line.split(" BROKEN", 1)[0].strip() for line in output.splitlines()
            if " BROKEN" in line and not line.startswith(("-", " "))}


def test_the_house_keeps_every_layer_contract(tmp_path: Path) -> None:
    run = _lint(_copy(tmp_path))
    assert run.returncode == 0, run.stdout + run.stderr
    assert _broken(run.stdout) == set()
    assert "0 broken" in run.stdout


@pytest.mark.parametrize(("module", "line", "contract"), WRONG_WAY,
                         ids=[f"{m.removeprefix('admission/')}->{line.split()[-1]}" for m, line, _ in WRONG_WAY])
def test_a_wrong_way_import_breaks_its_contract(tmp_path: Path, module: str, line: str, contract: str) -> None:
    where = _copy(tmp_path)
    target = where / module
    target.write_text(target.read_text(encoding="utf-8") + "\n\n" + line + "  # noqa\n", encoding="utf-8")
    run = _lint(where)
    assert run.returncode == 1, run.stdout + run.stderr
    assert contract in _broken(run.stdout), run.stdout
