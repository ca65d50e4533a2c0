"""The real BuildKit (buildkitd and buildctl, built by tests/supply/build.sh): buildkitd as root with the OCI worker,
Debian's runc and the native snapshotter, building `FROM scratch` Dockerfiles for linux/amd64 and linux/arm64 (no RUN,
so no emulation) with SLSA provenance, pushed to a loopback registry or written as an OCI archive."""

from __future__ import annotations

import os
import shutil
import subprocess
import time
from pathlib import Path

import pytest

from tests.supply.tools import tool_path


class BuildKit:
    def __init__(self, root: Path) -> None:
        if os.geteuid() != 0 or shutil.which("runc") is None:
            why = "buildkitd runs as root with runc here (`make test` installs Debian's runc)"
            if os.environ.get("CI") == "true":
                pytest.fail(why)
            pytest.skip(why)
        self.buildkitd, self.buildctl = tool_path("buildkitd"), tool_path("buildctl")
        self.root = root
        self.socket = f"unix://{root}/buildkitd.sock"
        self._log = open(root / "buildkitd.log", "wb")  # noqa: SIM115 - closed in stop()
        self.process = subprocess.Popen(
            [str(self.buildkitd), "--root", str(root / "state"), "--addr", self.socket, "--oci-worker=true",
             "--containerd-worker=false", "--oci-worker-snapshotter=native",
             f"--oci-worker-binary={shutil.which('runc')}"], stdout=self._log, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"buildkitd exited: {(root / 'buildkitd.log').read_text()[-2000:]}")
            if subprocess.run([str(self.buildctl), "--addr", self.socket, "debug", "workers"], capture_output=True,
                              timeout=30).returncode == 0:
                return
            time.sleep(0.1)
        raise RuntimeError("buildkitd did not answer")

    def build(self, context: Path, *, output: str, platforms: str = "linux/amd64",
              provenance: str | None = "mode=max", opts: dict[str, str] | None = None) -> str:
        """Build `context` (its Dockerfile) and export it (`output`: the --output value); returns buildctl's log."""
        argv = [str(self.buildctl), "--addr", self.socket, "build", "--frontend", "dockerfile.v0",
                "--local", f"context={context}", "--local", f"dockerfile={context}", "--opt", f"platform={platforms}",
                "--output", output]
        if provenance is not None:
            argv += ["--opt", f"attest:provenance={provenance}"]
        for key, value in (opts or {}).items():
            argv += ["--opt", f"{key}={value}"]
        run = subprocess.run(argv, capture_output=True, text=True, timeout=600)
        if run.returncode != 0:
            raise RuntimeError(f"buildctl build failed: {run.stderr[-3000:]}")
        return run.stderr

    def push(self, context: Path, name: str, **kwargs: object) -> str:
        return self.build(context, output=f"type=image,name={name},push=true,registry.insecure=true", **kwargs)  # type: ignore[arg-type]

    def stop(self) -> None:
        self.process.terminate()
        try:
            self.process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            self.process.kill()
        self._log.close()


def scratch_context(folder: Path, text: str = "hello") -> Path:
    """A `FROM scratch` + COPY Dockerfile: builds for any platform with no emulation."""
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "hello.txt").write_text(text)
    (folder / "Dockerfile").write_text("FROM scratch\nCOPY hello.txt /hello.txt\nUSER 10001\n")
    return folder
