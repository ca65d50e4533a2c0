"""Where the public corpus is, for the tests that read it: the one place that knows.

The corpus (other projects' manifests, compose files, AdmissionReviews and reference vectors, with their
licences) is not part of this repository. A checkout beside it reads it from ADMISSION_CORPUS, or from
../shared/corpus next to the repository root; a checkout without it skips those tests with one reason, so a
fresh clone's `make test` passes and says what it did not run. What each corpus test guards is also covered by
fixtures the project owns (tests/fixtures/), which always run.

Use `@corpus("k8s")` on a test (or as `pytestmark`) and `corpus_params("k8s")` for its parameters: the
parameters are computed without failing when the folder is absent, and tests/conftest.py skips marked tests
before any fixture is set up.
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import pytest

ENV = "ADMISSION_CORPUS"
REPO = Path(__file__).resolve().parents[1]
DEFAULT = REPO.parent / "shared" / "corpus"
REASON = f"public corpus not found: set {ENV} (default ../shared/corpus)"

# Folders carry a SOURCES.md (and the admission folder a RESPONSE_CONTRACT.md) beside the data.
NOT_DATA = frozenset({"SOURCES.md", "RESPONSE_CONTRACT.md"})

corpus = pytest.mark.corpus


def corpus_root() -> Path:
    value = os.environ.get(ENV)
    return Path(value).expanduser() if value else DEFAULT


def corpus_path(sub: str = "") -> Path | None:
    """The corpus file or folder `sub`, or None when it is not there."""
    path = corpus_root() / sub
    return path if path.exists() else None


def corpus_dir(sub: str) -> Path:
    """The corpus folder `sub`; only for tests marked `@corpus(sub)`, which are skipped when it is absent."""
    path = corpus_path(sub)
    if path is None:
        pytest.skip(missing_reason(sub))
    return path


def corpus_files(sub: str, suffixes: Iterable[str] = (".yaml", ".yml", ".json")) -> list[Path]:
    """The data files of the corpus folder `sub`, sorted; empty when the folder is absent."""
    folder = corpus_path(sub)
    if folder is None or not folder.is_dir():
        return []
    wanted = tuple(suffixes)
    return sorted(p for p in folder.iterdir() if p.is_file() and p.name not in NOT_DATA and p.name.endswith(wanted))


def corpus_params(sub: str, values: list[Any] | None = None,
                  suffixes: Iterable[str] = (".yaml", ".yml", ".json")) -> list[Any]:
    """Parameters for a test marked `@corpus(sub)`: `values` (or the folder's files) when the corpus is there,
    else one placeholder, so collection never fails and the test shows up as skipped rather than vanishing."""
    if corpus_path(sub) is None:
        return [pytest.param(None, id="corpus-absent")]
    return list(values) if values is not None else corpus_files(sub, suffixes)


def missing_reason(sub: str = "") -> str:
    if corpus_path() is None or not sub:
        return REASON
    return f"{REASON}: {corpus_root()} has no {sub}"


def skip_without_corpus(item: pytest.Item) -> None:
    """Skip a test marked `@corpus(...)` whose corpus files are absent (called from tests/conftest.py)."""
    for mark in item.iter_markers(name="corpus"):
        for sub in mark.args or ("",):
            if corpus_path(sub) is None:
                pytest.skip(missing_reason(sub))
