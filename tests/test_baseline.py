"""Baselines (architecture §2): adopt on a repository with findings; new findings still fail; the baseline only shrinks."""

from __future__ import annotations

import json
import textwrap
from pathlib import Path

import pytest

from admission.cli.main import main

COMPOSE = textwrap.dedent("""\
    services:
      web:
        image: nginx:1.27
        ports: ["8080:80"]
        deploy: {resources: {limits: {cpus: "0.5", memory: 256M}}}
        user: "10001"
        healthcheck: {test: ["CMD", "true"]}
        read_only: true
""")


def check(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, dict]:
    code = main(["check", "--format", "json", *argv])
    out, _ = capsys.readouterr()
    return code, json.loads(out)


@pytest.fixture()
def repo(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    (tmp_path / ".git").mkdir()
    (tmp_path / "compose.yaml").write_text(COMPOSE)
    monkeypatch.chdir(tmp_path)
    return tmp_path


def write_baseline(capsys: pytest.CaptureFixture[str]) -> dict:
    code, report = check(capsys, ".", "--write-baseline", "baseline.json")
    assert code == 1 and report["summary"]["deny"] == 1  # writing a baseline does not hide this run's findings
    return json.loads(Path("baseline.json").read_text())


def test_the_written_baseline_lists_each_finding_once_sorted_with_rule_file_and_object(repo, capsys) -> None:
    document = write_baseline(capsys)
    assert document["version"] == 1
    assert [(e["rule"], e["file"], e["object"]) for e in document["findings"]] == [
        ("no-host-port", "compose.yaml", "ComposeService web")]
    fingerprints = [e["fingerprint"] for e in document["findings"]]
    assert fingerprints == sorted(fingerprints)


def test_a_baselined_finding_stays_suppressed_when_lines_are_inserted_above_it(repo, capsys) -> None:
    write_baseline(capsys)
    (repo / "compose.yaml").write_text("# a header\n\n" + COMPOSE.replace("services:\n", "services:\n  # web tier\n"))
    code, report = check(capsys, ".", "--baseline", "baseline.json")
    assert code == 0
    [finding] = report["findings"]
    assert finding["line"] == 7 and finding["suppressed"] and finding["reason"] == "baseline"
    assert report["summary"]["suppressed"] == 1 and report["summary"]["stale_baseline_entries"] == 0


def test_a_new_finding_of_the_same_rule_in_the_same_object_fails(repo, capsys) -> None:
    write_baseline(capsys)
    (repo / "compose.yaml").write_text(COMPOSE.replace('["8080:80"]', '["8080:80", "9090:90"]'))
    code, report = check(capsys, ".", "--baseline", "baseline.json")
    assert code == 1
    open_ = [f for f in report["findings"] if not f["suppressed"]]
    assert [(f["rule"], f["value"]) for f in open_] == [("no-host-port", "9090:90")]


def test_the_same_violation_in_another_file_is_not_absorbed(repo, capsys) -> None:
    write_baseline(capsys)
    (repo / "other").mkdir()
    (repo / "other" / "compose.yaml").write_text(COMPOSE)
    code, report = check(capsys, ".", "--baseline", "baseline.json")
    assert code == 1
    assert [f["file"] for f in report["findings"] if not f["suppressed"]] == ["other/compose.yaml"]


def test_renaming_the_object_fails_and_leaves_the_old_entry_stale(repo, capsys) -> None:
    write_baseline(capsys)
    (repo / "compose.yaml").write_text(COMPOSE.replace("  web:", "  frontend:"))
    code, report = check(capsys, ".", "--baseline", "baseline.json")
    assert code == 1
    assert [f["object"]["name"] for f in report["findings"] if not f["suppressed"]] == ["frontend"]
    assert report["summary"]["stale_baseline_entries"] == 1
    main(["check", ".", "--baseline", "baseline.json"])
    assert "1 stale baseline entries" in capsys.readouterr().out


def test_rewriting_with_the_old_baseline_keeps_the_entries_still_in_use_and_drops_stale_ones(repo, capsys) -> None:
    (repo / "compose.yaml").write_text(COMPOSE.replace('["8080:80"]', '["8080:80", "9090:90"]'))
    write_baseline_code, _ = check(capsys, ".", "--write-baseline", "old.json")
    assert write_baseline_code == 1
    old = json.loads(Path("old.json").read_text())["findings"]
    assert len(old) == 2
    (repo / "compose.yaml").write_text(COMPOSE)  # 9090 fixed: its entry is stale now
    code, report = check(capsys, ".", "--baseline", "old.json", "--write-baseline", "new.json")
    assert code == 0 and report["summary"]["stale_baseline_entries"] == 1
    new = json.loads(Path("new.json").read_text())["findings"]
    assert [e["fingerprint"] for e in new] == [e["fingerprint"] for e in old if e["fingerprint"] in
                                               {f["fingerprint"] for f in report["findings"]}]
    assert len(new) == 1


def test_findings_an_exemption_suppresses_are_not_written_to_the_baseline(repo, capsys) -> None:
    Path("policy.yaml").write_text("exemptions:\n  - {rule: no-host-port, name: web, reason: edge proxy}\n")
    code, report = check(capsys, ".", "--policy", "policy.yaml", "--write-baseline", "baseline.json")
    assert code == 0 and report["findings"][0]["reason"] == "edge proxy"
    assert json.loads(Path("baseline.json").read_text())["findings"] == []


@pytest.mark.parametrize(("content", "words"), [
    ("{not json", "the baseline is not JSON"),
    ('{"version": 1, "findings": [{"rule": "x"}]}', "findings[0].fingerprint"),
    ('["a", "b"]', "not an admission baseline"),
])
def test_a_bad_baseline_file_exits_2_naming_the_file(repo, capsys, content, words) -> None:
    Path("bad.json").write_text(content)
    code = main(["check", ".", "--baseline", "bad.json"])
    _, err = capsys.readouterr()
    assert code == 2 and "bad.json" in err and words in err


def test_a_missing_baseline_file_exits_2(repo, capsys) -> None:
    code = main(["check", ".", "--baseline", "nope.json"])
    assert code == 2 and "nope.json" in capsys.readouterr().err


def test_refreshing_a_baseline_in_place_never_adds_a_new_finding(repo, capsys) -> None:
    """`--baseline B --write-baseline B` after a new violation: B is written unchanged and the run still fails on it."""
    write_baseline(capsys)
    before = Path("baseline.json").read_bytes()
    (repo / "compose.yaml").write_text(COMPOSE.replace('["8080:80"]', '["8080:80", "9090:90"]'))
    code, report = check(capsys, ".", "--baseline", "baseline.json", "--write-baseline", "baseline.json")
    assert code == 1 and [f["value"] for f in report["findings"] if not f["suppressed"]] == ["9090:90"]
    assert Path("baseline.json").read_bytes() == before
    code, _ = check(capsys, ".", "--baseline", "baseline.json")
    assert code == 1, "the refreshed baseline does not absorb the new violation"


def test_a_refresh_that_drops_an_entry_and_meets_a_new_finding_only_shrinks(repo, capsys) -> None:
    (repo / "compose.yaml").write_text(COMPOSE.replace('["8080:80"]', '["8080:80", "9090:90"]'))
    check(capsys, ".", "--write-baseline", "baseline.json")
    (repo / "compose.yaml").write_text(COMPOSE.replace('["8080:80"]', '["9090:90", "7070:70"]'))  # 8080 fixed, 7070 new
    check(capsys, ".", "--baseline", "baseline.json", "--write-baseline", "baseline.json")
    entries = json.loads(Path("baseline.json").read_text())["findings"]
    code, report = check(capsys, ".", "--baseline", "baseline.json")
    assert len(entries) == 1 and code == 1
    assert [f["value"] for f in report["findings"] if not f["suppressed"]] == ["7070:70"]


@pytest.mark.parametrize("umask", [0o022, 0o077, 0o002])
def test_a_new_baseline_gets_the_mode_a_new_file_gets(repo, capsys, umask) -> None:
    import os

    old = os.umask(umask)
    try:
        check(capsys, ".", "--write-baseline", "baseline.json")
    finally:
        os.umask(old)
    assert Path("baseline.json").stat().st_mode & 0o777 == 0o666 & ~umask


def test_rewriting_a_baseline_keeps_the_files_mode(repo, capsys) -> None:
    import os

    check(capsys, ".", "--write-baseline", "baseline.json")
    os.chmod("baseline.json", 0o640)
    check(capsys, ".", "--baseline", "baseline.json", "--write-baseline", "baseline.json")
    assert Path("baseline.json").stat().st_mode & 0o777 == 0o640


def test_hide_suppressed_leaves_baselined_findings_out_of_the_text_report_and_the_summary_counts_them(repo,
                                                                                                   capsys) -> None:
    write_baseline(capsys)
    (repo / "compose.yaml").write_text(COMPOSE.replace('["8080:80"]', '["8080:80", "9090:90"]'))
    main(["check", ".", "--baseline", "baseline.json"])
    shown = capsys.readouterr().out
    assert main(["check", ".", "--baseline", "baseline.json", "--hide-suppressed"]) == 1
    hidden = capsys.readouterr().out
    assert "(suppressed)" in shown and "8080" in shown
    assert "(suppressed)" not in hidden and "8080" not in hidden and "9090" in hidden
    assert hidden.splitlines()[-1].startswith("1 deny, 0 warn, 1 suppressed (not listed), 0 errors")
    main(["check", ".", "--baseline", "baseline.json", "--hide-suppressed", "--format", "json"])
    assert sum(f["suppressed"] for f in json.loads(capsys.readouterr().out)["findings"]) == 1, "text report only"
