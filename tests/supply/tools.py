"""The supply-chain tools the tests run (cosign, buildkitd, buildctl, kustomize, oci-registry), built from Go modules by
`make supply-bin` (tests/supply/build.sh) and cached outside the checkout.

When a tool could not be built the test skips with the build's reason, except under CI=true, where the same condition
fails it: CI must run them. The same policy as the control-plane tests (tests/cluster/conftest.py).
"""

from __future__ import annotations

import os
import subprocess
from pathlib import Path
from typing import NoReturn

import pytest

ROOT = Path(__file__).resolve().parents[2]
BUILD = ROOT / "tests" / "supply" / "build.sh"
# Where `make supply-bin` writes why a build failed, so the skip can say it.
BUILD_LOG = ROOT / ".supply-bin.log"
# Binary name -> the build.sh tool (and its cache folder) that holds it.
TOOLS = {"cosign": "cosign", "buildkitd": "buildkit", "buildctl": "buildkit", "kustomize": "kustomize",
         "oci-registry": "registry"}
ALIASES = {"registry": "oci-registry"}


def _missing(why: str) -> NoReturn:
    if os.environ.get("CI") == "true":
        pytest.fail(f"CI=true and a supply-chain tool is missing: {why}", pytrace=False)
    pytest.skip(why)


def tool_path(name: str) -> Path:
    """The built binary `name` (cosign, buildkitd, buildctl, kustomize, registry or oci-registry); skips the test when it
    is not built (fails it under CI=true)."""
    binary = ALIASES.get(name, name)
    if binary not in TOOLS:
        raise ValueError(f"unknown supply-chain tool {name!r}; one of {sorted([*TOOLS, *ALIASES])}")
    try:
        folder = subprocess.run(["bash", str(BUILD), "--print-dir", TOOLS[binary]], capture_output=True, text=True,
                                timeout=60, check=True).stdout.strip()
    except subprocess.CalledProcessError as exc:
        _missing(f"cannot locate {binary}: {(exc.stderr or '').strip() or exc}")
    except (OSError, subprocess.SubprocessError) as exc:
        _missing(f"cannot locate {binary}: {exc}")
    path = Path(folder) / binary
    if os.access(path, os.X_OK):
        return path
    tail = BUILD_LOG.read_text(errors="replace").strip().splitlines()[-5:] if BUILD_LOG.exists() else []
    _missing(f"{binary} not built ({path} missing): " + (" | ".join(tail) if tail else "not built: run make supply-bin"))
