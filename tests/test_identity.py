"""Finding identity (architecture §2): fingerprints that survive edits elsewhere and never collide."""

from __future__ import annotations

import json
import textwrap
from pathlib import Path

import pytest

from admission.cli.main import main
from tests.corpus import corpus, corpus_dir

TESTS = Path(__file__).resolve().parent

POD = textwrap.dedent("""\
    apiVersion: v1
    kind: Pod
    metadata: {name: web, namespace: shop}
    spec:
      containers:
        - name: app
          image: nginx
          ports: [{containerPort: 80, hostPort: 8080}]
          readinessProbe: {tcpSocket: {port: 80}}
          securityContext: {readOnlyRootFilesystem: true}
""")


def check(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, dict]:
    code = main(["check", "--format", "json", *argv])
    out, _ = capsys.readouterr()
    return code, json.loads(out)


def prints(report: dict, **match: str) -> dict[tuple[str, ...], str]:
    return {(f["rule"], f["object"]["name"], f["container"] or "", f["path"]): f["fingerprint"] for f in report["findings"]
            if all(f.get(k) == v for k, v in match.items())}


def make_repo(tmp_path: Path) -> Path:
    repo = tmp_path / "repo"
    (repo / ".git").mkdir(parents=True)
    (repo / "sub").mkdir()
    (repo / "sub" / "pod.yaml").write_text(POD)
    return repo


def test_missing_cpu_and_missing_memory_limits_of_one_container_get_two_fingerprints(tmp_path, capsys) -> None:
    repo = make_repo(tmp_path)
    _, report = check(capsys, str(repo / "sub" / "pod.yaml"))
    limits = [f for f in report["findings"] if f["rule"] == "resource-limits"]
    assert len(limits) == 2 and limits[0]["path"] == limits[1]["path"]
    assert len({f["fingerprint"] for f in limits}) == 2


def test_check_dot_check_sub_and_an_absolute_path_give_the_same_fingerprints(tmp_path, capsys, monkeypatch) -> None:
    repo = make_repo(tmp_path)
    monkeypatch.chdir(repo)
    _, from_root = check(capsys, ".")
    _, from_sub_arg = check(capsys, "sub")
    _, absolute = check(capsys, str(repo / "sub" / "pod.yaml"))
    monkeypatch.chdir(repo / "sub")
    _, inside = check(capsys, ".")
    expected = sorted(f["fingerprint"] for f in from_root["findings"])
    assert len(expected) == 5
    for other in (from_sub_arg, absolute, inside):
        assert sorted(f["fingerprint"] for f in other["findings"]) == expected


def test_inserting_lines_and_containers_moves_no_fingerprint(tmp_path, capsys) -> None:
    repo = make_repo(tmp_path)
    pod = repo / "sub" / "pod.yaml"
    _, before = check(capsys, str(pod))
    moved = POD.replace("spec:\n", "spec:\n  # a comment\n  # and another\n  restartPolicy: Always\n") \
               .replace("  containers:\n", "  containers:\n    - name: first\n      image: busybox:1.36\n"
                                           "      resources: {limits: {cpu: 1, memory: 1Gi}}\n"
                                           "      securityContext: {runAsUser: 1000, readOnlyRootFilesystem: true}\n"
                                           "      readinessProbe: {tcpSocket: {port: 80}}\n")
    pod.write_text(moved)
    _, after = check(capsys, str(pod))
    assert [f["line"] for f in before["findings"]] != [f["line"] for f in after["findings"]]
    assert {f["fingerprint"] for f in after["findings"]} == {f["fingerprint"] for f in before["findings"]}


def test_a_new_first_dockerfile_stage_moves_no_fingerprint(tmp_path, capsys) -> None:
    repo = make_repo(tmp_path)
    dockerfile = repo / "Dockerfile"
    dockerfile.write_text("FROM python:latest\nRUN pip install app\nUSER appuser\n")
    _, before = check(capsys, str(dockerfile))
    dockerfile.write_text("FROM golang:1.22 AS tools\nRUN go install x\n\nFROM python:latest\nRUN pip install app\n"
                          "USER appuser\n")
    _, after = check(capsys, str(dockerfile))
    assert before["findings"][0]["object"]["name"] == "stage 0" and after["findings"][0]["object"]["name"] == "stage 1"
    assert {f["fingerprint"] for f in before["findings"]} <= {f["fingerprint"] for f in after["findings"]}
    assert {f["rule"] for f in before["findings"]} == {"image-tag-pinned", "numeric-user"}


def test_a_host_port_binding_keeps_its_fingerprint_when_another_port_is_listed_before_it(tmp_path, capsys) -> None:
    compose = tmp_path / "compose.yaml"
    compose.write_text('services:\n  web:\n    image: nginx:1.27\n    ports: ["8080:80"]\n')
    _, before = check(capsys, str(compose))
    compose.write_text('services:\n  web:\n    image: nginx:1.27\n    ports: ["9090:90", "8080:80"]\n')
    _, after = check(capsys, str(compose))
    old = {f["fingerprint"] for f in before["findings"] if f["rule"] == "no-host-port"}
    new = {f["path"]: f["fingerprint"] for f in after["findings"] if f["rule"] == "no-host-port"}
    assert new["services.web.ports[1]"] in old and new["services.web.ports[0]"] not in old


def test_the_same_object_twice_in_one_stream_gets_distinct_fingerprints(tmp_path, capsys) -> None:
    twice = tmp_path / "twice.yaml"
    twice.write_text(POD + "---\n" + POD)
    _, report = check(capsys, str(twice))
    assert len(report["findings"]) == 10
    assert len({f["fingerprint"] for f in report["findings"]}) == 10


def assert_distinct(findings: list[dict], at_least: int) -> None:
    assert len(findings) >= at_least
    fingerprints = [f["fingerprint"] for f in findings]
    assert all(isinstance(fp, str) and len(fp) == 32 for fp in fingerprints)
    assert len(set(fingerprints)) == len(fingerprints)


# The project's own fixture trees: per-rule fixtures of every source, compose projects with overrides, extends and
# includes, and manifests whose objects repeat names across files.
@pytest.mark.parametrize(("folder", "at_least"), [("rules", 500), ("sources/compose", 100), ("fixtures/k8s", 20)])
def test_every_pair_of_distinct_findings_in_owned_fixtures_has_distinct_fingerprints(folder, at_least, capsys) -> None:
    _, report = check(capsys, str(TESTS / folder))
    assert_distinct(report["findings"], at_least)


@corpus("compose", "k8s")
@pytest.mark.parametrize("folder", ["compose", "k8s"])
def test_every_pair_of_distinct_findings_in_the_corpus_has_distinct_fingerprints(folder, capsys) -> None:
    _, report = check(capsys, str(corpus_dir(folder)))
    assert_distinct(report["findings"], 100)
