"""The pre-commit hooks, validated by pre-commit's own schema and run end to end with `pre-commit try-repo`
(which installs this project into a fresh virtualenv from the package index, as a user's pre-commit does)."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from pre_commit.clientlib import load_manifest

ROOT = Path(__file__).resolve().parents[1]
HOOKS = ROOT / ".pre-commit-hooks.yaml"


def hooks() -> dict[str, dict]:
    return {hook["id"]: hook for hook in load_manifest(str(HOOKS))}


def test_the_hooks_file_is_valid_for_pre_commit() -> None:
    found = hooks()
    assert set(found) == {"admission-check", "admission-check-files"}
    whole, files = found["admission-check"], found["admission-check-files"]
    assert whole["pass_filenames"] is False and whole["require_serial"] is True
    assert whole["entry"] == "admission-cli check ."
    assert files["pass_filenames"] is True and "--as-walk" in files["entry"].split()


@pytest.mark.parametrize(("path", "matches"), [
    ("compose.yaml", True), ("docker-compose.prod.yml", True), ("svc/compose.override.yaml", True),
    ("Dockerfile", True), ("build/Dockerfile.prod", True), ("api.Dockerfile", True), ("Containerfile", True),
    ("k8s/deploy.yaml", True), ("k8s/list.json", True),
    ("Dockerfile.dockerignore", False), ("src/main.py", False), ("README.md", False), ("dockerfile.py", False),
])
def test_the_hooks_run_for_inputs_and_not_for_other_files(path: str, matches: bool) -> None:
    for hook in hooks().values():
        selected = bool(re.search(hook["files"], path)) and not re.search(hook["exclude"], path)
        assert selected is matches, (hook["id"], path)


def _git(repo: Path, *argv: str) -> None:
    subprocess.run(["git", "-c", "user.name=t", "-c", "user.email=t@example.com", *argv], cwd=repo, check=True,
                   capture_output=True)


def hook_repository(tmp_path: Path) -> Path:
    """This project as pre-commit would clone it: every file git would commit (tracked or new, not ignored), in a
    repository of its own, so the hooks run the working tree as it is."""
    listed = subprocess.run(["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"], cwd=ROOT,
                            check=True, capture_output=True).stdout.decode().split("\0")
    copy = tmp_path / "hooks-repo"
    for name in filter(None, listed):
        source = ROOT / name
        if source.is_file():
            (copy / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(source, copy / name)
    _git(copy, "init", "-q")
    _git(copy, "add", "-A")
    _git(copy, "commit", "-q", "-m", "snapshot")
    return copy


def test_both_hooks_exit_1_with_the_finding_and_never_2_in_a_real_repository(tmp_path: Path) -> None:
    hooks_repo = hook_repository(tmp_path)
    repo = tmp_path / "project"
    files = {
        "compose.yaml": "services:\n  web:\n    image: nginx\n    user: \"10001\"\n"
                        "    deploy: {resources: {limits: {cpus: '1', memory: 256M}}}\n",
        "compose.override.yaml": "services:\n  web:\n    environment: [DEBUG=1]\n",
        "web/tsconfig.json": '{\n  // comments are fine in tsconfig\n  "compilerOptions": {"strict": true,},\n}\n',
        "chart/Chart.yaml": "apiVersion: v2\nname: demo\nversion: 0.1.0\n",
        "chart/values.yaml": "replicas: 1\n",
        "chart/templates/deployment.yaml": "apiVersion: apps/v1\nkind: Deployment\nmetadata:\n"
                                           "  name: {{ .Release.Name }}\n",
    }
    for name, text in files.items():
        (repo / name).parent.mkdir(parents=True, exist_ok=True)
        (repo / name).write_text(text)
    _git(repo, "init", "-q")
    _git(repo, "add", "-A")
    env = {**os.environ, "PRE_COMMIT_HOME": str(tmp_path / "pre-commit-home"), "NO_COLOR": "1"}
    run = subprocess.run([sys.executable, "-m", "pre_commit", "try-repo", str(hooks_repo), "--all-files", "--color", "never"],
                         cwd=repo, env=env, capture_output=True, text=True, timeout=600)
    out = run.stdout + run.stderr
    assert run.returncode == 1, out
    blocks = re.split(r"\n(?=admission check)", out)
    for title in ("admission check (whole repository)", "admission check (changed files)"):
        block = next(b for b in blocks if b.startswith(title))
        assert "Failed" in block.splitlines()[0] and "- exit code: 1" in block, out
        assert "compose.yaml:3  deny  image-tag-pinned  ComposeService web" in block, out
        assert "Traceback" not in block and " error " not in block
