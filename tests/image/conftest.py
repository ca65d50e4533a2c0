"""The project's own image, made as a user makes it: `make image` (tools/image/build.py, BuildKit, no Docker engine) on
the Debian base tests/image/base.sh makes, pushed to a loopback registry (Debian's docker-registry) and signed with
cosign. One build per session: every test reads, checks, runs or probes that one (architecture §6: real components).

The base and the tools are built by `make test` (`make image-base`, `make supply-bin`); a test skips with the build's
reason when one is missing, except under CI=true, where it fails (the policy of tests/supply/tools.py).
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any, NoReturn

import pytest

from tests.images.conftest import registry  # noqa: F401 - the session's docker-registry, shared
from tests.images.registry import Registry as PlainRegistry
from tests.supply.tools import tool_path
from tests.verify.signing import Cosign, Key, Registry

ROOT = Path(__file__).resolve().parents[2]
BASE = ROOT / "tests" / "image" / "base.sh"
BASE_LOG = ROOT / ".image-base.log"
SOURCE = "https://git.example.com/platform/admission"  # the source URL label the tests' builds carry
BASE_PYTHON = "3.11"  # bookworm's python3
PLATFORMS = ("linux/amd64", "linux/arm64")
# cosign offline: no transparency log, no signing config (nothing here reaches Sigstore's services).
COSIGN_ARGS = "--tlog-upload=false --use-signing-config=false"


def _missing(why: str) -> NoReturn:
    if os.environ.get("CI") == "true":
        pytest.fail(f"CI=true and the image tests cannot run: {why}", pytrace=False)
    pytest.skip(why)


def base_layout() -> Path:
    """The OCI layout of the tests' base (tag `bookworm`), built by `make image-base`."""
    try:
        folder = subprocess.run(["bash", str(BASE), "--print-dir"], capture_output=True, text=True, timeout=60,
                                check=True).stdout.strip()
    except (OSError, subprocess.SubprocessError) as exc:
        _missing(f"cannot locate the base image: {exc}")
    layout = Path(folder) / "layout"
    if (layout / "index.json").exists():
        return layout
    tail = BASE_LOG.read_text(errors="replace").strip().splitlines()[-5:] if BASE_LOG.exists() else []
    _missing(f"the base image is not built ({layout}): " + (" | ".join(tail) if tail else "run make image-base"))


def commit_facts() -> tuple[str, int]:
    """(revision label, commit time) as make image derives them from the checkout."""
    def git(*args: str) -> str:
        return subprocess.run(["git", "-C", str(ROOT), *args], capture_output=True, text=True, check=True,
                              timeout=30).stdout.strip()

    from tools.image.build import INPUTS

    revision = git("rev-parse", "HEAD")
    if git("status", "--porcelain", "--", *INPUTS):
        revision += "-dirty"
    return revision, int(git("log", "-1", "--format=%ct", "HEAD"))


@dataclass(frozen=True)
class Made:
    """One `make image` run: its exit code, its output (BuildKit's progress included) and its metadata."""

    code: int
    output: str
    metadata: dict[str, Any] | None


def make_image(work: Path, *, state: Path | None = None, epoch: int | None = None, **variables: str) -> Made:
    """`make image VAR=value ...` from the checkout, run by this interpreter, as a user runs it; `state` gives
    BuildKit a state folder of its own (a cold build) instead of the shared cache; `epoch` is SOURCE_DATE_EPOCH
    instead of the commit's time."""
    work.mkdir(parents=True, exist_ok=True)
    metadata = work / "metadata.json"
    argv = ["make", "--no-print-directory", "-C", str(ROOT), "image", f"PYTHON={sys.executable}",
            f"METADATA={metadata}", *(f"{key}={value}" for key, value in variables.items())]
    env = {**os.environ, "COSIGN_PASSWORD": "", "SIGSTORE_NO_CACHE": "1", "TUF_ROOT": str(work / "tuf")}
    env.pop("SOURCE_DATE_EPOCH", None)
    env.pop("REVISION", None)
    if state is not None:
        env["BUILDKIT_STATE"] = str(state)
    if epoch is not None:
        env["SOURCE_DATE_EPOCH"] = str(epoch)
    done = subprocess.run(argv, capture_output=True, text=True, timeout=3000, env=env)
    return Made(done.returncode, done.stdout + done.stderr,
                json.loads(metadata.read_text()) if done.returncode == 0 and metadata.exists() else None)


@dataclass(frozen=True)
class Built:
    """The session's image: pushed as `repository:tag`, an index of `platforms` (name -> manifest digest)."""

    host: str
    repository: str
    tag: str
    digest: str
    platforms: dict[str, str]
    metadata: dict[str, Any]
    key: Key
    base: str
    base_digest: str

    @property
    def reference(self) -> str:
        return f"{self.repository}@{self.digest}"



@pytest.fixture(scope="session")
def base_image(registry: PlainRegistry) -> tuple[str, str]:  # noqa: F811 - the fixture, imported above
    """The Debian base pushed as-is (digests kept): (reference, index digest)."""
    layout = base_layout()
    reference = f"{registry.host}/debian-python:bookworm"
    subprocess.run(["skopeo", "copy", "--quiet", "--all", "--preserve-digests", "--dest-tls-verify=false",
                    f"oci:{layout}:bookworm", f"docker://{reference}"], check=True, capture_output=True, timeout=300)
    return reference, Registry(registry.host).digest("debian-python", "bookworm")


@pytest.fixture(scope="session")
def signer(tmp_path_factory: pytest.TempPathFactory) -> tuple[Cosign, Key]:
    cosign = Cosign(tool_path("cosign"), tmp_path_factory.mktemp("image-cosign"))
    return cosign, cosign.generate("release")


def _require_builder() -> None:
    tool_path("buildctl")
    tool_path("buildkitd")
    if not (shutil.which("runc") or Path("/usr/sbin/runc").exists()):
        _missing("runc is not installed (make test installs it)")
    if os.geteuid() != 0:
        _missing("make image runs buildkitd as root")


@pytest.fixture(scope="session")
def built(tmp_path_factory: pytest.TempPathFactory, registry: PlainRegistry, base_image: tuple[str, str],  # noqa: F811
          signer: tuple[Cosign, Key]) -> Built:
    """`make image` for linux/amd64 and linux/arm64 on the Debian base, pushed and signed: the session's one build."""
    _require_builder()
    base, base_digest = base_image
    _, key = signer
    from tools.image.build import version

    tag = version()
    made = make_image(tmp_path_factory.mktemp("image-build"), IMAGE=f"{registry.host}/admission:{tag}",
                      PLATFORMS=",".join(PLATFORMS), PYTHON_IMAGE=base, PYTHON_VERSION=BASE_PYTHON, SOURCE=SOURCE,
                      COSIGN_KEY=str(key.private), COSIGN_ARGS=COSIGN_ARGS)
    if made.code != 0 or made.metadata is None:
        pytest.fail(f"make image failed ({made.code}):\n{made.output[-6000:]}", pytrace=False)
    api = Registry(registry.host)
    digest, body, _ = api.manifest("admission", tag)
    assert digest == made.metadata["digest"], "the tag names what make image reported"
    index = json.loads(body)
    platforms = {f"{m['platform']['os']}/{m['platform']['architecture']}": m["digest"] for m in index["manifests"]
                 if m["platform"]["os"] != "unknown"}
    return Built(registry.host, f"{registry.host}/admission", tag, digest, platforms, made.metadata, key,
                 base, base_digest)
