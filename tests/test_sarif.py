"""SARIF 2.1.0 output validates against the official OASIS schema (tests/sarif/SOURCE.md)."""

from __future__ import annotations

import json
from pathlib import Path

import jsonschema

from admission.cli.main import main
from admission.policy import catalog

ROOT = Path(__file__).resolve().parents[1]
SCHEMA = json.loads((Path(__file__).parent / "sarif" / "sarif-schema-2.1.0.json").read_text())


def _sarif(capsys, *paths: str) -> tuple[int, dict]:
    code = main(["check", "--format", "sarif", *paths])
    return code, json.loads(capsys.readouterr().out)


def test_sarif_validates_against_the_official_schema_and_lists_every_rule(capsys, tmp_path) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text("apiVersion: v1\nkind: [\n")
    example = ROOT / "examples" / "flask-prod-app"
    code, sarif = _sarif(capsys, str(example / "docker-compose.prod.yml"), str(example / "Dockerfile"), str(bad))
    jsonschema.validate(sarif, SCHEMA)
    assert code == 2
    run = sarif["runs"][0]
    rules = run["tool"]["driver"]["rules"]
    assert [r["id"] for r in rules] == list(catalog.all_rules())
    assert all(r["help"]["text"] and r["shortDescription"]["text"] for r in rules)
    results = run["results"]
    host = next(r for r in results if r["ruleId"] == "no-host-port")
    assert host["level"] == "error"
    assert host["locations"][0]["physicalLocation"]["region"]["startLine"] == 7
    assert rules[host["ruleIndex"]]["id"] == "no-host-port"
    assert any(r["ruleId"] == "numeric-user" and r["level"] == "warning" for r in results)
    assert run["invocations"][0]["executionSuccessful"] is False
    assert run["invocations"][0]["toolExecutionNotifications"][0]["locations"][0]["physicalLocation"]["artifactLocation"]["uri"] == "file://" + str(bad)


def test_suppressed_findings_carry_a_sarif_suppression_with_the_reason(capsys, tmp_path) -> None:
    compose = tmp_path / "compose.yaml"
    compose.write_text("services:\n  edge:\n    image: traefik:3.1\n    user: '1000'\n    mem_limit: 64m\n    cpus: 1\n"
                       "    ports: ['443:443']\n    x-admission:\n      exempt:\n        - {rule: no-host-port, reason: edge proxy}\n")
    code, sarif = _sarif(capsys, str(compose))
    jsonschema.validate(sarif, SCHEMA)
    (result,) = [r for r in sarif["runs"][0]["results"] if r["ruleId"] == "no-host-port"]
    assert result["suppressions"] == [{"kind": "external", "status": "accepted", "justification": "edge proxy"}]
    assert code == 0
