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


@pytest.fixture(scope="session")
def layout(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One OCI layout directory that tests add tagged images to."""
    return tmp_path_factory.mktemp("images") / "layout"
