"""A finding once (issue 20, item 4): a Dockerfile that two compose files build gave each of its findings twice, word
for word. Now each is reported once per (file, line, rule, message), naming every compose file and service that builds
it, in text and JSON; and the baseline an earlier release wrote for the same files still matches all of them.

tests/walks/built-twice/baseline-before-issue-20.json was written by `admission-cli check --write-baseline` at the
commit this issue started from (cc21594), before findings were merged: ten entries, two of them `#2` repeats.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from admission.cli.main import main

ROOT = Path(__file__).resolve().parents[1]
FIXTURE = ROOT / "tests" / "walks" / "built-twice"
BEFORE = FIXTURE / "baseline-before-issue-20.json"
SHOWN = "tests/walks/built-twice"


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str]:
    code = main(["check", "--no-config", *argv])
    return code, capsys.readouterr().out


def test_each_dockerfile_finding_is_reported_once_naming_both_builders(capsys, monkeypatch) -> None:
    monkeypatch.chdir(ROOT)
    code, out = run(capsys, "--format", "json", SHOWN)
    report = json.loads(out)
    in_dockerfile = [f for f in report["findings"] if f["file"] == f"{SHOWN}/Dockerfile"]
    assert sorted((f["line"], f["rule"]) for f in in_dockerfile) == [
        (2, "image-tag-pinned"), (2, "run-as-non-root"), (3, "build-context")]
    for finding in in_dockerfile:
        assert [(o["file"], o["kind"], o["name"]) for o in finding["reported_for"]] == [
            (f"{SHOWN}/docker-compose.prod.yml", "ComposeService", "app"),
            (f"{SHOWN}/docker-compose.yml", "ComposeService", "app")]
    assert all("reported_for" not in f for f in report["findings"] if f not in in_dockerfile)
    assert (report["summary"]["deny"], report["summary"]["warn"]) == (4, 3) and code == 1
    _, text = run(capsys, SHOWN)
    built_by = [line for line in text.splitlines() if line.startswith("    built by: ")]
    assert built_by == [f"    built by: service app of {SHOWN}/docker-compose.prod.yml, service app of "
                        f"{SHOWN}/docker-compose.yml"] * 3


def test_a_baseline_written_before_the_merge_still_matches_every_finding(capsys, monkeypatch, tmp_path) -> None:
    monkeypatch.chdir(ROOT)
    before = json.loads(BEFORE.read_text())
    assert len(before["findings"]) == 10, "written when the three Dockerfile findings came twice"
    written = tmp_path / "baseline.json"
    code, out = run(capsys, "--format", "json", "--baseline", str(BEFORE), "--write-baseline", str(written), SHOWN)
    report = json.loads(out)
    assert report["summary"]["stale_baseline_entries"] == 0
    assert all(f["suppressed"] and f["reason"] == "baseline" for f in report["findings"]) and code == 0
    assert json.loads(written.read_text()) == before, "a refresh keeps every entry, the repeats' included"


def test_a_baseline_written_now_keeps_matching_when_one_compose_file_goes(capsys, monkeypatch, tmp_path) -> None:
    tree = tmp_path / "repo" / "app"
    shutil.copytree(FIXTURE, tree)
    (tmp_path / "repo" / ".git").mkdir()
    monkeypatch.chdir(tmp_path / "repo")
    baseline = tmp_path / "baseline.json"
    assert run(capsys, "--write-baseline", str(baseline), "app")[0] == 1
    (tree / "docker-compose.prod.yml").unlink()
    code, out = run(capsys, "--format", "json", "--baseline", str(baseline), "app")
    report = json.loads(out)
    assert all(f["suppressed"] for f in report["findings"]) and code == 0


def test_junit_fails_the_case_of_every_object_the_finding_is_reported_for(capsys, monkeypatch) -> None:
    from junitparser import JUnitXml

    monkeypatch.chdir(ROOT)
    _, out = run(capsys, "--format", "junit", SHOWN)
    failed = {(suite.name, case.name) for suite in JUnitXml.fromstring(out.encode()) for case in suite
              if case.result and case.result[0]._tag == "failure"}
    for compose in ("docker-compose.yml", "docker-compose.prod.yml"):
        assert (f"{SHOWN}/{compose}", "ComposeService app image-tag-pinned") in failed


def test_findings_that_differ_in_message_or_suppression_stay_apart(capsys, tmp_path, monkeypatch) -> None:
    shutil.copytree(FIXTURE, tmp_path / "app")
    monkeypatch.chdir(tmp_path / "app")
    (tmp_path / "app" / "compose.worker.yaml").write_text("services:\n  worker:\n    build: .\n    image: w:1.0\n")
    exempt = ("    x-admission:\n      exempt:\n        - {rule: image-tag-pinned, reason: \"base image pinned by the "
              "release job\"}\n")
    (tmp_path / "app" / "docker-compose.prod.yml").write_text(
        (FIXTURE / "docker-compose.prod.yml").read_text() + exempt)
    _, out = run(capsys, "--format", "json", ".")
    pinned = [f for f in json.loads(out)["findings"] if f["rule"] == "image-tag-pinned"]
    assert sorted((f["container"], f["suppressed"], len(f.get("reported_for", []))) for f in pinned) == [
        ("app", False, 0), ("app", True, 0), ("worker", False, 0)]


def test_repeats_merge_into_their_own_first_when_findings_on_one_line_differ_only_in_suppression() -> None:
    """Findings alike in file, line, rule and message but not in suppression alternate; each merges into the first
    one equal to it in every field the report shows, keeping report order."""
    from dataclasses import replace

    from admission.cli.repeats import merge_repeats
    from admission.findings import Finding, Report

    def finding(name: str, *, suppressed: bool) -> Finding:
        return Finding(rule="image-tag-pinned", severity="deny", message="m", remediation="x", value=None,
                       file="Dockerfile", line=1, path="FROM", source="dockerfile", object_kind="ComposeService",
                       object_name=name, object_namespace=None, container=name, suppressed=suppressed,
                       reason="r" if suppressed else None, fingerprint=name)

    shown, hidden = finding("a", suppressed=False), finding("b", suppressed=True)
    report = Report(findings=[shown, hidden, finding("c", suppressed=False), finding("d", suppressed=True),
                              replace(shown, line=2)])
    assert merge_repeats(report) == 2
    assert [(f.object_name, f.line, [o.name for o in f.also]) for f in report.findings] == [
        ("a", 1, ["c"]), ("b", 1, ["d"]), ("a", 2, [])]
