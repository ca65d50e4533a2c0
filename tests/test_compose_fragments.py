"""Compose layers in a walk (issue 20, item 2): a file beside a base in which no service has image, build or extends
only overrides keys. A walk skips it as `compose-fragment`, naming the base and the command that checks them together;
the real Docker Compose binary agrees that it is no project alone and a valid one under `-f`."""

from __future__ import annotations

import json
import textwrap
from pathlib import Path

import pytest

from admission.cli.main import main
from tests.sources.compose_oracle import ORACLE, ORACLE_MISSING, run_oracle

BASE = textwrap.dedent("""\
    services:
      web:
        image: nginx:1.27.1
        user: "101"
        mem_limit: 64m
        cpus: 0.5
        healthcheck: {test: [CMD, "true"]}
        read_only: true
      worker:
        build: worker
        user: "10001"
        mem_limit: 64m
        cpus: 0.5
        healthcheck: {test: [CMD, "true"]}
        read_only: true
""")
LAYER = textwrap.dedent("""\
    # Production overrides: applied with `docker compose -f compose.yaml -f compose.full.yaml`.
    services:
      web:
        environment: {LOG_LEVEL: info}
        ports: ["8080:80"]
      worker:
        command: ["work", "--all"]
""")


def check(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, dict]:
    code = main(["check", "--format", "json", *argv])
    return code, json.loads(capsys.readouterr().out)


@pytest.fixture()
def project(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    root = tmp_path / "deploy"
    (root / "worker").mkdir(parents=True)
    (root / "worker" / "Dockerfile").write_text("FROM alpine:3.20\nUSER 10001\n")
    (root / "compose.yaml").write_text(BASE)
    (root / "compose.full.yaml").write_text(LAYER)
    monkeypatch.chdir(tmp_path)
    return root


def _skipped(report: dict) -> dict[str, str]:
    return {s["file"]: s["reason"] for s in report["skipped"]}


def test_a_layer_beside_its_base_is_skipped_with_the_command_that_checks_them_together(capsys, project) -> None:
    code, report = check(capsys, ".")
    assert _skipped(report) == {"deploy/compose.full.yaml": (
        "compose-fragment: no service has image, build or extends, so it only overrides deploy/compose.yaml beside "
        "it; check them together: admission-cli check deploy/compose.yaml -f deploy/compose.full.yaml")}
    assert {f["file"] for f in report["findings"]} <= {"deploy/compose.yaml", "deploy/worker/Dockerfile"}
    assert not [f for f in report["findings"] if "neither an image nor a build" in f["message"]]
    assert report["errors"] == [] and report["summary"]["files"] == 2 and code == 0
    # the command it gives checks the pair: the layer's port is found, nothing is invented
    code, merged = check(capsys, "deploy/compose.yaml", "-f", "deploy/compose.full.yaml")
    assert [(f["rule"], f["file"], f["line"]) for f in merged["findings"]] == [
        ("no-host-port", "deploy/compose.full.yaml", 5)]
    assert code == 1


@pytest.mark.skipif(not ORACLE.exists(), reason=ORACLE_MISSING)
def test_docker_compose_itself_reads_the_layer_only_on_top_of_its_base(project: Path) -> None:
    alone = run_oracle(["compose.full.yaml"], cwd=project)
    assert alone.returncode != 0 and "has neither an image nor a build context" in alone.stderr
    together = run_oracle(["compose.yaml", "compose.full.yaml"], cwd=project)
    assert together.returncode == 0 and together.services is not None and set(together.services) == {"web", "worker"}


def test_named_on_the_command_line_a_layer_is_read_and_its_findings_stand(capsys, project) -> None:
    code, report = check(capsys, "deploy/compose.full.yaml")
    schema = [f for f in report["findings"] if f["rule"] == "compose-schema"]
    assert {f["object"]["name"] for f in schema} == {"web", "worker"}
    assert all("neither an image nor a build context" in f["message"] for f in schema) and code == 1


def test_pre_commit_passing_only_the_layer_skips_it_and_names_the_base_on_disk(capsys, project) -> None:
    code, report = check(capsys, "--as-walk", "deploy/compose.full.yaml")
    assert _skipped(report)["deploy/compose.full.yaml"].endswith(
        "admission-cli check deploy/compose.yaml -f deploy/compose.full.yaml")
    assert report["findings"] == [] and code == 0


def test_a_file_with_one_complete_service_is_checked_as_before(capsys, project) -> None:
    (project / "compose.full.yaml").write_text(LAYER + "  cache:\n    image: redis:7.4\n")
    _, report = check(capsys, ".")
    assert "deploy/compose.full.yaml" not in _skipped(report)
    assert {f["object"]["name"] for f in report["findings"] if f["file"] == "deploy/compose.full.yaml"} >= {"web", "cache"}


@pytest.mark.parametrize("complete", ["image: nginx:1.27.1", "build: worker", "extends: {file: compose.yaml, service: web}",
                                      "<<: *web"])
def test_image_build_extends_or_a_merge_that_brings_one_make_a_service_complete(capsys, project, complete) -> None:
    anchor = "x-web: &web {image: nginx:1.27.1}\n" if complete.startswith("<<") else ""
    (project / "compose.full.yaml").write_text(anchor + f"services:\n  web:\n    {complete}\n    ports: ['8080:80']\n")
    _, report = check(capsys, ".")
    assert "deploy/compose.full.yaml" not in _skipped(report)
    assert [f for f in report["findings"] if f["rule"] == "no-host-port" and f["file"] == "deploy/compose.full.yaml"]


def test_without_a_base_beside_it_a_partial_file_is_checked_as_before(capsys, tmp_path, monkeypatch) -> None:
    (tmp_path / "docker-compose.prod.yml").write_text(LAYER)
    monkeypatch.chdir(tmp_path)
    _, report = check(capsys, ".")
    assert report["skipped"] == []
    assert {f["object"]["name"] for f in report["findings"] if f["rule"] == "compose-schema"} == {"web", "worker"}


def test_a_base_with_another_name_is_found_by_its_complete_services(capsys, tmp_path, monkeypatch) -> None:
    (tmp_path / "worker").mkdir()
    (tmp_path / "worker" / "Dockerfile").write_text("FROM alpine:3.20\nUSER 10001\n")
    (tmp_path / "docker-compose.base.yml").write_text(BASE)
    (tmp_path / "docker-compose.prod.yml").write_text(LAYER)
    monkeypatch.chdir(tmp_path)
    _, report = check(capsys, ".")
    assert _skipped(report)["docker-compose.prod.yml"].endswith(
        "admission-cli check docker-compose.base.yml -f docker-compose.prod.yml")


def test_a_partial_file_the_base_extends_is_part_of_its_project_not_skipped(capsys, project) -> None:
    (project / "common.yaml").write_text("services:\n  limits:\n    mem_limit: 64m\n    cpus: 0.5\n")
    (project / "compose.yaml").write_text(BASE + "  cache:\n    image: redis:7.4\n    user: '999'\n"
                                          "    extends: {file: common.yaml, service: limits}\n")
    _, report = check(capsys, ".")
    assert "deploy/common.yaml" not in _skipped(report), "read as part of the project that extends it"
    assert "deploy/compose.full.yaml" in _skipped(report)
    assert not [f for f in report["findings"] if f["object"]["name"] == "cache" and f["rule"] == "resource-limits"]
