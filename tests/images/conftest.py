"""Fixtures with real components: a plain-HTTP registry on loopback, and images built by umoci."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.images import oci
from tests.images.registry import Registry, free_port, have_registry


@pytest.fixture(scope="session")
def registry(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Registry]:
    """A plain-HTTP docker-registry, shared by the session (tests use distinct repository names)."""
    if not have_registry() or not oci.have_tools():
        pytest.fail("docker-registry, umoci and skopeo are required; `make test` installs them")
    reg = Registry(tmp_path_factory.mktemp("registry"), free_port()).start()
    yield reg
    reg.stop()


@pytest.fixture()
def policy(registry: Registry, tmp_path: Path) -> Path:
    """A policy file that lets the CLI reach `registry` (loopback, plain HTTP) when it resolves images."""
    path = tmp_path / "policy.yaml"
    path.write_text(f"images:\n  allowed_registries: ['{registry.host}']\n  insecure_registries: ['{registry.host}']\n")
    return path


@pytest.fixture(scope="session")
def layout(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One OCI layout directory that tests add tagged images to."""
    return tmp_path_factory.mktemp("images") / "layout"


# --- registries with auth and TLS (tests/images/test_registry.py) -------------------------------------------

import subprocess
from dataclasses import dataclass

from tests.images.faults import Faults
from tests.images.tokenserver import TokenServer

REGISTRY_USER, REGISTRY_PASSWORD = "alice", "s3cret-pass"
IDENTITY_TOKEN = "refresh-token-for-alice"


def _start_registry(root: Path, extra: dict[str, object] | None = None) -> Registry:
    root.mkdir(parents=True, exist_ok=True)
    if not have_registry() or not oci.have_tools():
        pytest.fail("docker-registry, umoci and skopeo are required; `make test` installs them")
    return Registry(root, free_port()).start(extra=extra)


@pytest.fixture(scope="session")
def mirror_registry(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Registry]:
    """A second plain-HTTP registry, to act as a mirror of `registry`."""
    reg = _start_registry(tmp_path_factory.mktemp("mirror"))
    yield reg
    reg.stop()


@pytest.fixture(scope="session")
def htpasswd_registry(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Registry]:
    """A registry behind HTTP Basic auth (apache2-utils htpasswd, bcrypt as the registry requires)."""
    root = tmp_path_factory.mktemp("htpasswd")
    line = subprocess.run(["htpasswd", "-Bbn", REGISTRY_USER, REGISTRY_PASSWORD], capture_output=True, text=True,
                          check=True).stdout.strip()
    (root / "htpasswd").write_text(line + "\n")
    reg = _start_registry(root / "reg", {"auth": {"htpasswd": {"realm": "test", "path": str(root / "htpasswd")}}})
    yield reg
    reg.stop()


@pytest.fixture(scope="session")
def token_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[TokenServer]:
    server = TokenServer(tmp_path_factory.mktemp("tokens"), users={REGISTRY_USER: REGISTRY_PASSWORD},
                         refresh_tokens={IDENTITY_TOKEN: REGISTRY_USER}).start()
    yield server
    server.stop()


@pytest.fixture(scope="session")
def token_registry(tmp_path_factory: pytest.TempPathFactory, token_server: TokenServer) -> Iterator[Registry]:
    """A registry that accepts only JWTs from `token_server` (it verifies them; our client only carries them)."""
    reg = _start_registry(tmp_path_factory.mktemp("token-registry"), {"auth": token_server.registry_auth()})
    yield reg
    reg.stop()


@dataclass(frozen=True)
class TLSRegistry:
    registry: Registry
    ca_file: Path  # PEM of the CA that signed the registry's certificate (for `verify=`)
    names: tuple[str, ...]  # what the certificate is valid for


@pytest.fixture(scope="session")
def tls_registry(tmp_path_factory: pytest.TempPathFactory) -> Iterator[TLSRegistry]:
    """A registry serving HTTPS with a trustme certificate for 127.0.0.1 and registry.test."""
    import trustme

    root = tmp_path_factory.mktemp("tls")
    ca = trustme.CA()
    names = ("127.0.0.1", "registry.test")
    cert = ca.issue_cert(*names)
    cert.private_key_pem.write_to_path(str(root / "key.pem"))
    cert.cert_chain_pems[0].write_to_path(str(root / "cert.pem"))
    ca.cert_pem.write_to_path(str(root / "ca.pem"))
    reg = _start_registry(root / "reg", {"http": {"tls": {"certificate": str(root / "cert.pem"),
                                                             "key": str(root / "key.pem")}}})
    reg.scheme = "https"
    yield TLSRegistry(reg, root / "ca.pem", names)
    reg.stop()


@pytest.fixture()
def faults() -> Iterator[Faults]:
    server = Faults().start()
    yield server
    server.stop()
