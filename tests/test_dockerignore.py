"""The .dockerignore matcher against moby/patternmatcher's own test vectors (tests/dockerignore/SOURCES.md).

`admission/sources/context.py` applies `.dockerignore` through e2b-dockerfile-utils' port of moby/patternmatcher;
these tests hold it to Docker's verdicts, vector for vector, and check the ignore-file reading of ignorefile.ReadAll.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from admission.sources.context import ignore_lines, matcher

VECTORS = json.loads((Path(__file__).parent / "dockerignore" / "patternmatcher_vectors.json").read_text(encoding="utf-8"))


def _ids(cases: list[dict], *keys: str) -> list[str]:
    return [" ".join(repr(case[k]) for k in keys) for case in cases]


@pytest.mark.parametrize("case", VECTORS["TestMatches"], ids=_ids(VECTORS["TestMatches"], "pattern", "text"))
def test_single_pattern_verdict_matches_moby(case: dict) -> None:
    assert matcher([case["pattern"]]).matches(case["text"]) is case["pass"]


@pytest.mark.parametrize("case", VECTORS["TestMatches_multi"], ids=_ids(VECTORS["TestMatches_multi"], "patterns", "text"))
def test_exceptions_and_last_match_win_as_in_moby(case: dict) -> None:
    assert matcher(case["patterns"]).matches(case["text"]) is case["pass"]


@pytest.mark.parametrize("case", VECTORS["TestMatch"], ids=_ids(VECTORS["TestMatch"], "pattern", "s"))
def test_go_filepath_match_table_including_bad_patterns(case: dict) -> None:
    if case["error"]:
        with pytest.raises(ValueError, match="line 1"):
            matcher([case["pattern"]])
    else:
        assert matcher([case["pattern"]]).matches(case["s"]) is case["match"]


@pytest.mark.parametrize("case", VECTORS["functions"], ids=[c["test"] for c in VECTORS["functions"]])
def test_matcher_functions_as_moby_tests_them(case: dict) -> None:
    if case.get("error"):
        with pytest.raises(ValueError):
            matcher(case["patterns"])
    else:
        assert matcher(case["patterns"]).matches(case["file"]) is case["match"]


@pytest.mark.parametrize("case", VECTORS["clean"], ids=[c["test"] for c in VECTORS["clean"]])
def test_patterns_are_cleaned_as_moby_cleans_them(case: dict) -> None:
    if case.get("error"):
        with pytest.raises(ValueError):
            matcher(case["patterns"])
        return
    cleaned = matcher(case["patterns"]).patterns
    if "count" in case:
        assert len(cleaned) == case["count"]
    if "exclusions" in case:
        assert any(p.startswith("!") for p in cleaned) is case["exclusions"]


def test_ignore_file_is_read_as_ignorefile_readall_reads_it() -> None:
    case = VECTORS["TestReadAll"]
    lines = ignore_lines(case["content"])
    # ReadAll keeps the lone "!" lines; turning them into a matcher is what fails (the build fails on them too)
    with pytest.raises(ValueError, match="line 8"):
        matcher(lines)
    assert matcher(lines[:7]).patterns == case["expected"][:5]


def test_ignore_file_drops_a_byte_order_mark_and_carriage_returns() -> None:
    lines = ignore_lines("\ufeff.env\r\n*.pem\r\n")
    assert matcher(lines).patterns == [".env", "*.pem"]


def test_a_comment_is_only_a_line_that_starts_with_hash() -> None:
    # ReadAll checks for '#' before trimming: " #x" is the pattern "#x"
    assert matcher(ignore_lines("# comment\n #x\n")).patterns == ["#x"]
