"""The image tests' real components for pin: a loopback docker-registry (plain, htpasswd Basic auth, and Bearer tokens
from the test token server) and the fault server for what a real registry will not do (hang)."""

from tests.images.conftest import (  # noqa: F401 - fixtures, shared by import
    faults,
    htpasswd_registry,
    registry,
    token_registry,
    token_server,
)
