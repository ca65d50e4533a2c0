"""What make image sends to BuildKit (tools/image/build.py --context-only, the same code the build runs): the wheels
requirements.lock pins for each platform, the project's own wheel with its hash, and the builder's preflight; and the
preflight's refusals, run on this machine's Python as the builder runs it on the base's."""

from __future__ import annotations

import hashlib
import os
import re
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.image.conftest import ROOT, SOURCE, commit_facts
from tools.image.build import public_url

BUILD = ROOT / "tools" / "image" / "build.py"
PREFLIGHT = ROOT / "tools" / "image" / "preflight.py"
MACHINE = {"linux-amd64": "x86_64", "linux-arm64": "aarch64"}


def prepare(folder: Path) -> str:
    done = subprocess.run([sys.executable, str(BUILD), "--context-only", str(folder), "--platforms",
                           "linux/amd64,linux/arm64", "--python-version", "3.11", "--source", SOURCE],
                          capture_output=True, text=True, timeout=1800)
    assert done.returncode == 0, done.stderr[-3000:]
    return done.stdout


@pytest.fixture(scope="module")
def context(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, str]:
    folder = tmp_path_factory.mktemp("context") / "context"
    return folder, prepare(folder)


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_the_context_holds_requirements_the_preflight_and_wheels_only(context: tuple[Path, str]) -> None:
    folder, _ = context
    files = {p.relative_to(folder).as_posix() for p in folder.rglob("*") if p.is_file()}
    assert {"requirements.txt", "preflight.py"} <= files
    rest = files - {"requirements.txt", "preflight.py"}
    assert rest and all(re.fullmatch(r"wheels/linux-(amd64|arm64)/[^/]+\.whl", f) for f in rest), sorted(rest)
    assert (folder / "preflight.py").read_bytes() == PREFLIGHT.read_bytes()


def test_every_wheel_is_hashed_in_requirements_and_each_platform_has_its_own(context: tuple[Path, str]) -> None:
    folder, _ = context
    requirements = (folder / "requirements.txt").read_text()
    hashes = set(re.findall(r"--hash=sha256:([0-9a-f]{64})", requirements))
    locked = {line.split("==")[0].lower().replace("_", "-") for line in requirements.splitlines()
              if re.match(r"^[A-Za-z0-9][\w.-]*==", line)}
    for platform, machine in MACHINE.items():
        wheels = sorted((folder / "wheels" / platform).glob("*.whl"))
        assert {sha256(w) for w in wheels} <= hashes, "pip --require-hashes would refuse a wheel"
        names = {w.name.split("-")[0].lower().replace("_", "-") for w in wheels}
        assert names == locked | {"admission"}, names ^ (locked | {"admission"})
        binary = [w.name for w in wheels if not w.name.endswith("-any.whl")]
        assert binary and all(w.removesuffix(".whl").split("-")[-1].endswith(machine) for w in binary), binary
        assert all(re.search(r"-cp311-|-abi3-", w) for w in binary), "fetched for the base's Python 3.11"


def test_the_project_wheel_is_pinned_by_its_hash_and_the_same_sources_give_the_same_wheel(
        context: tuple[Path, str], tmp_path: Path) -> None:
    folder, _ = context
    (own,) = (folder / "wheels" / "linux-amd64").glob("admission-*.whl")
    version = own.name.split("-")[1]
    requirements = (folder / "requirements.txt").read_text()
    assert f"admission[server]=={version} \\\n    --hash=sha256:{sha256(own)}\n" in requirements
    assert sha256(folder / "wheels" / "linux-arm64" / own.name) == sha256(own)
    again = tmp_path / "again"
    prepare(again)
    assert sha256(again / "wheels" / "linux-amd64" / own.name) == sha256(own), "our wheel is reproducible"


def test_the_docker_buildx_command_is_the_same_build(context: tuple[Path, str]) -> None:
    folder, command = context
    revision, epoch = commit_facts()
    assert command.startswith("docker buildx build --builder admission --platform linux/amd64,linux/arm64 "
                              "--provenance=mode=max ")
    for arg in (f"SOURCE_DATE_EPOCH={epoch}", f"REVISION={revision}", f"SOURCE={SOURCE}", "PYTHON_VERSION=3.11"):
        assert f"--build-arg {arg} " in command, arg
    assert "rewrite-timestamp=true" in command and command.rstrip("\n").endswith(f" {folder}")


@pytest.mark.parametrize(("remote", "label"), [
    ("https://github.com/example/admission.git", "https://github.com/example/admission"),
    ("https://ci:s3cret@git.example.com/platform/admission", "https://git.example.com/platform/admission"),
    ("git@github.com:example/admission.git", "https://github.com/example/admission"),
    ("ssh://git@git.example.com/platform/admission.git", "https://git.example.com/platform/admission"),
    ("/work/main", ""), ("file:///srv/git/admission", ""), ("../admission", ""), ("", "")])
def test_the_source_label_is_a_public_url_or_nothing(remote: str, label: str) -> None:
    """A clone's origin may be a local path, which says nothing to anyone else and differs between clones."""
    assert public_url(remote) == label


# --- the preflight the builder runs --------------------------------------------------------------------------------


def preflight(tmp_path: Path, wheels: list[str], *, python: str = f"{sys.version_info[0]}.{sys.version_info[1]}",
              arch: str = "amd64") -> subprocess.CompletedProcess[str]:
    folder = tmp_path / "wheels"
    folder.mkdir(parents=True, exist_ok=True)
    for name in wheels:
        (folder / name).write_bytes(b"")
    return subprocess.run([sys.executable, str(PREFLIGHT), "--python", python, "--base", "registry.example.com/py:1",
                           "--arch", arch, "--wheels", str(folder)], capture_output=True, text=True, timeout=60)


def test_preflight_prints_the_fetched_platform_tags(tmp_path: Path) -> None:
    done = preflight(tmp_path, ["a-1-py3-none-any.whl", "b-1-cp311-cp311-manylinux_2_17_x86_64.manylinux2014_x86_64.whl",
                                "c-1-cp311-abi3-manylinux1_x86_64.whl"])
    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == ["manylinux1_x86_64", "manylinux2014_x86_64", "manylinux_2_17_x86_64"]


def test_preflight_stops_a_base_with_another_python(tmp_path: Path) -> None:
    have = f"{sys.version_info[0]}.{sys.version_info[1]}"
    done = preflight(tmp_path, ["a-1-py3-none-any.whl"], python="3.99")
    assert done.returncode == 1
    assert done.stderr.strip() == (f"make image: PYTHON_VERSION is 3.99, but the base image registry.example.com/py:1 "
                                   f"runs Python {have}: the wheels were fetched for Python 3.99; pass "
                                   f"PYTHON_VERSION={have}, or a base that runs Python 3.99")


def test_preflight_stops_a_wheel_for_another_machine_or_a_newer_glibc(tmp_path: Path) -> None:
    done = preflight(tmp_path, ["b-1-cp311-cp311-manylinux_2_17_aarch64.whl"])
    assert done.returncode == 1 and "b-1-cp311-cp311-manylinux_2_17_aarch64.whl is for aarch64, and this build's " \
                                    "target is x86_64" in done.stderr
    done = preflight(tmp_path / "new", ["c-1-cp311-cp311-manylinux_2_99_x86_64.whl"])
    assert done.returncode == 1 and "needs glibc 2.99, and the base image has glibc 2." in done.stderr
    done = preflight(tmp_path / "none", [])
    assert done.returncode == 1 and "no wheels in" in done.stderr


def test_a_source_date_epoch_in_the_future_is_refused(tmp_path: Path) -> None:
    """Build times are only ever lowered to the epoch: a future one would leave them in the image."""
    future = str(int(time.time()) + 86400)
    done = subprocess.run([sys.executable, str(BUILD), "--context-only", str(tmp_path / "c")], capture_output=True,
                          text=True, timeout=120, env={**os.environ, "SOURCE_DATE_EPOCH": future})
    assert done.returncode == 1
    assert f"make image: SOURCE_DATE_EPOCH={future} is in the future" in done.stderr
