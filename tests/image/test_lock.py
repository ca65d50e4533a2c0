"""requirements.lock and requirements-build.lock are what pyproject.toml resolves to (uv, tools/image/lock.py), pin
every runtime requirement for each Python the image may use, and carry nothing make image would misread when it
fetches another platform's wheels."""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest
from packaging.markers import Marker
from packaging.requirements import Requirement
from packaging.version import Version

from tests.image.conftest import ROOT, _missing

LOCK_TOOL = ROOT / "tools" / "image" / "lock.py"
_PIN = re.compile(r"^([A-Za-z0-9][A-Za-z0-9._-]*)==(\S+)(?: ; (.*?))? \\$", re.MULTILINE)


def pins(text: str) -> dict[str, tuple[Version, str | None]]:
    return {name.lower().replace("_", "-"): (Version(version), marker) for name, version, marker in _PIN.findall(text)}


def pyproject() -> dict:
    with open(ROOT / "pyproject.toml", "rb") as handle:
        return tomllib.load(handle)


def lock_check(root: Path) -> subprocess.CompletedProcess[str]:
    done = subprocess.run([sys.executable, str(LOCK_TOOL), "--check", "--root", str(root)], capture_output=True,
                          text=True, timeout=600)
    if done.returncode not in (0, 1) and ("Failed to fetch" in done.stderr or "dns error" in done.stderr.lower()):
        _missing(f"the package index is unreachable: {done.stderr.strip()[-300:]}")
    return done


def test_the_locks_are_what_pyproject_toml_resolves_to() -> None:
    done = lock_check(ROOT)
    assert done.returncode == 0, done.stdout[-4000:] + done.stderr


def test_a_dependency_added_to_pyproject_makes_the_lock_stale(tmp_path: Path) -> None:
    for name in ("pyproject.toml", "README.md", "requirements.lock", "requirements-build.lock"):
        shutil.copy2(ROOT / name, tmp_path / name)
    text = (tmp_path / "pyproject.toml").read_text()
    (tmp_path / "pyproject.toml").write_text(text.replace('"cryptography>=42"]', '"cryptography>=42", "packaging>=24"]', 1))
    assert text != (tmp_path / "pyproject.toml").read_text()
    done = lock_check(tmp_path)
    assert done.returncode == 1
    assert "stale: requirements.lock" in done.stderr and "make lock" in done.stderr
    assert re.search(r"^\+packaging==", done.stdout, re.MULTILINE), done.stdout[-2000:]


@pytest.mark.parametrize("python", ["3.11", "3.12"])
def test_every_runtime_requirement_is_pinned_for_each_python_the_image_may_use(python: str) -> None:
    locked = pins((ROOT / "requirements.lock").read_text())
    project = pyproject()["project"]
    environment = {"python_version": python, "python_full_version": f"{python}.0", "sys_platform": "linux",
                   "platform_system": "Linux", "implementation_name": "cpython",
                   "platform_python_implementation": "CPython", "extra": "server"}
    for text in [*project["dependencies"], *project["optional-dependencies"]["server"]]:
        requirement = Requirement(text)
        if requirement.marker and not requirement.marker.evaluate(environment):
            continue
        name = requirement.name.lower().replace("_", "-")
        assert name in locked, f"{text} is not in requirements.lock: run make lock"
        assert requirement.specifier.contains(locked[name][0], prereleases=True), (text, locked[name][0])


def test_markers_depend_on_nothing_that_differs_between_the_build_machine_and_the_target() -> None:
    """make image's pip evaluates markers on the build machine while fetching for another platform and Python: a
    marker on the machine or the Python version would choose the wrong wheels. Only the implementation and the OS
    (Linux on both sides) may be named."""
    allowed = {"platform_python_implementation", "implementation_name", "sys_platform"}
    named = set()
    for name, (_, marker) in pins((ROOT / "requirements.lock").read_text()).items():
        if marker:
            variables = marker_variables(Marker(marker)._markers)
            named |= variables
            assert variables <= allowed, (name, marker)
    assert named, "the lock has markers (uvloop's), so this test reads them"


def marker_variables(tree: object) -> set[str]:
    """The environment names a parsed marker compares (packaging's tree of (Variable, Op, Value) and and/or)."""
    if isinstance(tree, list):
        return set().union(*(marker_variables(item) for item in tree)) if tree else set()
    if isinstance(tree, tuple):
        return {str(side) for side in (tree[0], tree[2]) if type(side).__name__ == "Variable"}
    return set()


def test_every_pin_of_both_locks_carries_hashes_and_the_build_backend_is_locked() -> None:
    for lock in ("requirements.lock", "requirements-build.lock"):
        text = (ROOT / lock).read_text()
        blocks = re.split(r"\n(?=[A-Za-z0-9])", text.split("\n", 1)[1])
        assert blocks and all("--hash=sha256:" in block for block in blocks if block.strip()), lock
    backend = pins((ROOT / "requirements-build.lock").read_text())
    for text in pyproject()["build-system"]["requires"]:
        requirement = Requirement(text)
        assert requirement.specifier.contains(backend[requirement.name.lower()][0]), text
