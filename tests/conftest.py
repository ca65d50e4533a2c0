"""Suite-wide hooks: tests marked `@corpus(...)` are skipped, with one reason, when the public corpus is absent."""

from __future__ import annotations

import pytest

from tests.corpus import skip_without_corpus


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "corpus(*subs): reads the public corpus (ADMISSION_CORPUS); skipped without it")


def pytest_runtest_setup(item: pytest.Item) -> None:
    skip_without_corpus(item)
