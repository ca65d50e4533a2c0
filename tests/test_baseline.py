"""Baselines (DESIGN §2): adopt on a repository with findings; new findings still fail; the baseline only shrinks."""

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
