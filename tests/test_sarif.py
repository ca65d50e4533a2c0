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
    # The repository root (the checkout's) is the base every location inside it names; the schema above checked
    # originalUriBaseIds and uriBaseId, and these are their values.
    assert run["originalUriBaseIds"] == {"%SRCROOT%": {"uri": f"file://{ROOT}/"}}
    assert host["locations"][0]["physicalLocation"]["artifactLocation"] == {
        "uri": "examples/flask-prod-app/docker-compose.prod.yml", "uriBaseId": "%SRCROOT%"}
    # bad.yaml is outside the repository: an absolute URI, which takes no base.
    notice = run["invocations"][0]["toolExecutionNotifications"][0]
    assert notice["locations"][0]["physicalLocation"]["artifactLocation"] == {"uri": "file://" + str(bad)}


def test_suppressed_findings_carry_a_sarif_suppression_with_the_reason(capsys, tmp_path) -> None:
    compose = tmp_path / "compose.yaml"
    compose.write_text("services:\n  edge:\n    image: traefik:3.1\n    user: '1000'\n    mem_limit: 64m\n    cpus: 1\n"
                       "    ports: ['443:443']\n    x-admission:\n      exempt:\n        - {rule: no-host-port, reason: edge proxy}\n")
    code, sarif = _sarif(capsys, str(compose))
    jsonschema.validate(sarif, SCHEMA)
    (result,) = [r for r in sarif["runs"][0]["results"] if r["ruleId"] == "no-host-port"]
    assert result["suppressions"] == [{"kind": "external", "status": "accepted", "justification": "edge proxy"}]
    assert code == 0


def _repository(root: Path) -> Path:
    """The shape of docker/example-voting-app: services in folders, the compose file at the root."""
    (root / ".git").mkdir(parents=True)
    for name in ("vote", "result"):
        (root / name).mkdir()
        (root / name / "Dockerfile").write_text("FROM python:3.12-slim\nCOPY . /app\nCMD [\"python\", \"app.py\"]\n")
    (root / "compose.yaml").write_text("services:\n  vote:\n    build: ./vote\n    ports: ['5000:80']\n"
                                       "  result:\n    build: ./result\n")
    (root / "my folder").mkdir()
    (root / "my folder" / "pod.yaml").write_text("apiVersion: v1\nkind: Pod\nmetadata: {name: p}\nspec:\n"
                                                 "  containers: [{name: c, image: nginx}]\n")
    return root


def _locations(sarif: dict) -> list[dict]:
    return [loc["physicalLocation"]["artifactLocation"] for r in sarif["runs"][0]["results"] for loc in r["locations"]]


def test_sarif_locations_are_relative_to_the_repository_root_from_whatever_folder_the_run_started(
        capsys, tmp_path, monkeypatch) -> None:
    root = _repository(tmp_path / "repo")
    monkeypatch.chdir(root)
    _, at_root = _sarif(capsys, ".")
    monkeypatch.chdir(root / "result")
    _, from_sub = _sarif(capsys, "..")
    _, named = _sarif(capsys, "../vote/Dockerfile", "../compose.yaml")
    monkeypatch.chdir(tmp_path)
    _, from_outside = _sarif(capsys, "repo")
    for sarif in (at_root, from_sub, named, from_outside):
        jsonschema.validate(sarif, SCHEMA)
        assert sarif["runs"][0]["originalUriBaseIds"] == {"%SRCROOT%": {"uri": f"file://{root}/"}}
        assert all(loc["uriBaseId"] == "%SRCROOT%" and not loc["uri"].startswith((".", "/")) for loc in _locations(sarif))
    uris = {loc["uri"] for loc in _locations(at_root)}
    assert {"compose.yaml", "vote/Dockerfile", "result/Dockerfile", "my%20folder/pod.yaml"} <= uris
    assert {loc["uri"] for loc in _locations(from_sub)} == uris
    assert {loc["uri"] for loc in _locations(from_outside)} == uris
    assert {loc["uri"] for loc in _locations(named)} <= uris


def test_json_and_junit_keep_the_path_as_given_from_a_subfolder(capsys, tmp_path, monkeypatch) -> None:
    """Report version 1 stays: only SARIF, which has a base for its URIs, names files from the root."""
    root = _repository(tmp_path / "repo")
    monkeypatch.chdir(root / "result")
    main(["check", "--format", "json", ".."])
    files = {f["file"] for f in json.loads(capsys.readouterr().out)["findings"]}
    assert "../compose.yaml" in files and "../vote/Dockerfile" in files
    main(["check", "--format", "junit", ".."])
    assert 'classname="../compose.yaml"' in capsys.readouterr().out


def test_sarif_of_stdin_names_stdin(capsys, tmp_path, monkeypatch) -> None:
    import io

    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr("sys.stdin", io.TextIOWrapper(io.BytesIO(
        b"apiVersion: v1\nkind: Pod\nmetadata: {name: p}\nspec:\n  containers: [{name: c, image: nginx}]\n")))
    _, sarif = _sarif(capsys, "-")
    jsonschema.validate(sarif, SCHEMA)
    assert {loc["uri"] for loc in _locations(sarif)} == {"stdin"}
