"""One discovery test for every per-rule fixture under tests/rules/<rule-id>/.

A fixture is a file or a folder named `pass__*` or `fail__*`. Expectations are per object, written as
comments in the fixture (in a folder: in its compose/manifest file, or in `expect.txt` for an OCI layout):
    # expect: <object> [<container>] [line=N] [file=NAME]
In a `fail__` fixture every listed object must have findings of the rule at exactly the listed lines,
and every object not listed must have none. A `pass__` fixture must produce no finding of the rule
(suppressed findings are allowed: they are visible, not failures).
An optional `# policy: {...}` line overlays that YAML on the default policy.
"""

from __future__ import annotations

import os
import re
from collections import defaultdict
from pathlib import Path

import pytest

from admission.images.verify.offline import verify_carried
from admission.inputs import walk as inputs
from admission.policy import catalog, engine
from admission.policy.config import default_policy, parse_policy

HERE = Path(__file__).parent
_EXPECT = re.compile(r"^#\s*expect:\s*(.+?)\s*$", re.M)
_POLICY = re.compile(r"^#\s*policy:\s*(.+?)\s*$", re.M)


def _fixtures() -> list[tuple[str, Path]]:
    found = []
    for rule_dir in sorted(p for p in HERE.iterdir() if p.is_dir() and not p.name.startswith("__")):
        for entry in sorted(rule_dir.iterdir()):
            if entry.name.startswith(("pass__", "fail__")):
                found.append((rule_dir.name, entry))
    return found


def _comments(entry: Path) -> str:
    files = [entry] if entry.is_file() else sorted(p for p in entry.rglob("*") if p.is_file())
    # JSON cannot hold comments: image fixtures (OCI layouts) keep their expectations in expect.txt
    return "\n".join(p.read_text(encoding="utf-8") for p in files
                     if p.suffix in (".yaml", ".yml", "") and "blobs" not in p.parts or "Dockerfile" in p.name
                     or p.name == "expect.txt")


def _parse_expect(text: str) -> dict[tuple[str, str | None], dict[str, object]]:
    """'web line=3 file=Dockerfile' / 'pod app line=9' / 'stage 1 line=4' -> {(object, container): {...}}."""
    expected: dict[tuple[str, str | None], dict[str, object]] = {}
    for raw in _EXPECT.findall(text):
        words = raw.split()
        keys = dict(w.split("=", 1) for w in words if "=" in w)
        names = [w for w in words if "=" not in w]
        if names[:1] == ["stage"] and len(names) >= 2 and names[1].isdigit():
            names = [f"stage {names[1]}", *names[2:]]
        obj, container = names[0], (names[1] if len(names) > 1 else None)
        entry = expected.setdefault((obj, container), {"lines": set(), "file": None})
        if "line" in keys:
            entry["lines"].add(int(keys["line"]))  # type: ignore[union-attr]
        if "file" in keys:
            entry["file"] = keys["file"]
    return expected


def test_every_rule_has_pass_and_fail_fixtures() -> None:
    by_rule = defaultdict(set)
    for rule_id, entry in _fixtures():
        by_rule[rule_id].add(entry.name.split("__", 1)[0])
    for rule_id in catalog.all_rules():
        if rule_id == "image-config-unavailable":
            continue  # needs a registry; its fixtures live with the registry tests
        assert by_rule.get(rule_id) == {"pass", "fail"}, f"{rule_id} needs pass__ and fail__ fixtures"
    assert set(by_rule) <= set(catalog.all_rules()), "a fixture folder names no rule"


@pytest.mark.parametrize(("rule_id", "entry"), _fixtures(), ids=lambda v: v if isinstance(v, str) else v.name)
def test_rule_fixture(rule_id: str, entry: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    text = _comments(entry)
    policy = default_policy()
    policy_line = _POLICY.search(text)
    if policy_line:
        policy = parse_policy(policy_line.group(1), file=str(entry), base=policy)
    monkeypatch.chdir(entry.parent)
    collected = inputs.collect([entry.name], options=inputs.Options(environ={}))
    assert collected.errors == [], f"fixture could not be read: {collected.errors}"
    assert collected.workloads, "fixture produced no objects"
    workloads = collected.workloads
    if policy.images.verify:  # as `check` does: archives are verified by the signatures they carry, offline
        workloads = verify_carried(workloads, policy.images.verify)
    report = engine.evaluate(workloads, policy)
    found: dict[tuple[str, str | None], list] = defaultdict(list)
    for f in report.findings:
        if f.rule == rule_id and not f.suppressed:
            found[(f.object_name, f.container)].append(f)

    if entry.name.startswith("pass__"):
        assert not found, "unexpected findings: " + "; ".join(f"{f.file}:{f.line} {f.message}" for fs in found.values() for f in fs)
        return

    expected = _parse_expect(text)
    assert expected, "a fail__ fixture must say which objects fail (# expect: ...)"
    for (obj, container), want in expected.items():
        got = [f for (o, c), fs in found.items() for f in fs if o == obj and (container is None or c == container)]
        assert got, f"expected {rule_id} on {obj}{'/' + container if container else ''}; found only {sorted(found)}"
        if want["lines"]:
            assert {f.line for f in got} == want["lines"], f"{obj}: lines {[(f.line, f.message) for f in got]}"
        if want["file"]:
            assert {os.path.basename(f.file) for f in got} == {want["file"]}, [f.file for f in got]
        for f in got:
            assert f.message and f.remediation, "every finding says what and how to fix"
            assert f.path, "every finding has a field path"
    listed = {obj for obj, _ in expected}
    unlisted = [f for (o, _), fs in found.items() for f in fs if o not in listed]
    assert not unlisted, "findings on objects the fixture says pass: " + "; ".join(f"{f.object_name}: {f.message}" for f in unlisted)
