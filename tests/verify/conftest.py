"""Fixtures with the real tools: cosign, Debian's docker-registry (no referrers API) and go-containerregistry's registry
with referrers (tests/supply/), keys of every type cosign signs with, and images built by umoci."""

from __future__ import annotations

import socket
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.images import oci
from tests.images.registry import Registry as PlainRegistry
from tests.images.registry import free_port, have_registry
from tests.supply.tools import tool_path
from tests.verify.buildkit import BuildKit
from tests.verify.signing import Cosign, Key, openssl_key


@pytest.fixture(scope="session")
def cosign(tmp_path_factory: pytest.TempPathFactory) -> Cosign:
    return Cosign(tool_path("cosign"), tmp_path_factory.mktemp("cosign-home"))


@pytest.fixture(scope="session")
def keys(cosign: Cosign, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Key]:
    """release and other: cosign's own P-256 keys; p384, rsa, ed25519: openssl keys brought in by import-key-pair."""
    made = {name: cosign.generate(name) for name in ("release", "other")}
    pems = tmp_path_factory.mktemp("pems")
    for kind in ("p384", "rsa", "ed25519"):
        made[kind] = cosign.import_pem(kind, openssl_key(pems, kind))
    return made


@pytest.fixture(scope="session")
def plain(tmp_path_factory: pytest.TempPathFactory) -> Iterator[PlainRegistry]:
    """Debian's docker-registry 2.8: no OCI referrers API, so cosign v3 writes the `sha256-<hex>` fallback tag."""
    if not have_registry() or not oci.have_tools():
        pytest.fail("docker-registry, umoci and skopeo are required; `make test` installs them")
    registry = PlainRegistry(tmp_path_factory.mktemp("plain-registry"), free_port()).start()
    yield registry
    registry.stop()


class ReferrersRegistry:
    """go-containerregistry's registry with referrers support (in memory), on loopback."""

    def __init__(self, binary: Path, log: Path) -> None:
        self.port = free_port()
        self.host = f"127.0.0.1:{self.port}"
        self._log = open(log, "wb")  # noqa: SIM115 - closed in stop()
        self.process = subprocess.Popen([str(binary), "-addr", self.host], stdout=self._log, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + 15
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"oci-registry exited: {log.read_text()[-2000:]}")
            with socket.socket() as s:
                if s.connect_ex(("127.0.0.1", self.port)) == 0:
                    return
            time.sleep(0.05)
        raise RuntimeError("oci-registry did not start listening")

    def stop(self) -> None:
        self.process.terminate()
        try:
            self.process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.process.kill()
        self._log.close()


@pytest.fixture(scope="session")
def referrers(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ReferrersRegistry]:
    registry = ReferrersRegistry(tool_path("oci-registry"), tmp_path_factory.mktemp("referrers") / "registry.log")
    yield registry
    registry.stop()


@pytest.fixture(scope="session")
def layout(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("verify-images") / "layout"


# The fault server (tests/images), for registries that hang or misbehave on demand.
from tests.images.conftest import faults  # noqa: E402,F401


@pytest.fixture(scope="session")
def buildkit(tmp_path_factory: pytest.TempPathFactory) -> Iterator[BuildKit]:
    """buildkitd as root with the OCI worker and runc (tests/verify/buildkit.py)."""
    daemon = BuildKit(tmp_path_factory.mktemp("buildkit"))
    yield daemon
    daemon.stop()
