"""admission-cli check/rules/explain end to end: inputs, walking, exit codes, reports (architecture §2)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from admission.cli.main import main

ROOT = Path(__file__).resolve().parents[1]
EXAMPLE = ROOT / "examples" / "flask-prod-app"


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def run_json(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, dict]:
    code, out, _ = run(capsys, "check", "--format", "json", *argv)
    return code, json.loads(out)


def by_rule(report: dict, rule: str) -> list[dict]:
    return [f for f in report["findings"] if f["rule"] == rule]


def test_tutorial_example_gives_the_three_findings_the_article_gets_wrong(capsys, monkeypatch) -> None:
    monkeypatch.chdir(EXAMPLE)
    code, report = run_json(capsys, "docker-compose.prod.yml", "Dockerfile")
    assert code == 1
    schema = by_rule(report, "compose-schema")
    assert [(f["file"], f["line"], f["path"]) for f in schema] == [("docker-compose.prod.yml", 5, "services.flask-app.user")]
    assert "must be a string" in schema[0]["message"]
    numeric = by_rule(report, "numeric-user")
    assert [(f["file"], f["line"], f["value"]) for f in numeric] == [("Dockerfile", 21, "appuser")]
    assert numeric[0]["object"] == {"kind": "Dockerfile", "name": "stage 1", "namespace": None}
    assert report["summary"]["errors"] == 0 and report["summary"]["files"] == 2 and report["summary"]["objects"] == 2


def test_json_finding_has_exactly_the_contract_fields_and_values(capsys, monkeypatch) -> None:
    monkeypatch.chdir(EXAMPLE)
    _, report = run_json(capsys, "docker-compose.prod.yml")
    assert report["version"] == 1 and report["tool"]["name"] == "admission"
    assert set(report["summary"]) == {"files", "objects", "deny", "warn", "would_deny", "suppressed", "errors",
                                      "skipped_files", "stale_baseline_entries", "excluded_files", "config"}
    found = by_rule(report, "no-host-port")
    assert len(found) == 1 and len(found[0].pop("fingerprint")) == 32
    assert found == [{
        "rule": "no-host-port", "severity": "deny", "suppressed": False, "reason": None,
        "message": "service 'flask-app' publishes port 5000 on all host interfaces",
        "remediation": "publish through a load balancer or reverse proxy, or bind to 127.0.0.1: \"127.0.0.1:5000:5000\"",
        "value": "5000:5000", "file": "docker-compose.prod.yml", "line": 7, "path": "services.flask-app.ports[0]",
        "source": "compose", "object": {"kind": "ComposeService", "name": "flask-app", "namespace": None},
        "container": "flask-app", "would_deny": False}]


def test_warn_enforcement_marks_what_deny_would_refuse_and_keeps_warn_rules_plain(capsys, monkeypatch, tmp_path) -> None:
    policy = tmp_path / "rollout.yaml"
    policy.write_text("enforcement: warn\n")
    monkeypatch.chdir(EXAMPLE)
    code, report = run_json(capsys, "--policy", str(policy), "docker-compose.prod.yml", "Dockerfile")
    assert code == 0 and report["summary"]["deny"] == 0
    (port,) = by_rule(report, "no-host-port")
    assert port["severity"] == "warn" and port["would_deny"] is True
    (named,) = by_rule(report, "numeric-user")  # a warn-level rule: nothing to refuse when deny is switched on
    assert named["severity"] == "warn" and named["would_deny"] is False
    assert report["summary"]["would_deny"] == sum(1 for f in report["findings"] if f["would_deny"]) >= 2
    _, plain = run_json(capsys, "docker-compose.prod.yml", "Dockerfile")
    assert plain["summary"]["would_deny"] == 0 and plain["summary"]["deny"] == report["summary"]["would_deny"]


def test_fixed_example_passes_every_rule(capsys) -> None:
    code, report = run_json(capsys, str(EXAMPLE / "fixed"))
    assert report["findings"] == [] and report["errors"] == []
    assert code == 0
    # compose service + Deployment + its ClusterIP Service (an object since issue 27); the Dockerfile is reported
    # under the service that builds it
    assert report["summary"]["objects"] == 3


def test_text_output_has_one_line_per_finding_with_the_fix_below_and_no_colour_off_a_tty(capsys, monkeypatch) -> None:
    monkeypatch.chdir(EXAMPLE)
    code, out, _ = run(capsys, "check", "docker-compose.prod.yml")
    assert code == 1 and "\x1b[" not in out
    lines = out.splitlines()
    hit = next(i for i, line in enumerate(lines) if "no-host-port" in line)
    assert lines[hit].startswith("docker-compose.prod.yml:7  deny  no-host-port  ComposeService flask-app  ")
    assert lines[hit + 1].startswith("    fix: ")
    assert lines[-1].startswith("2 deny, 1 warn, 0 suppressed, 0 errors")  # the warning: read-only-root-filesystem


def test_fail_on_warn_makes_warnings_fail(capsys, tmp_path) -> None:
    (tmp_path / "named.Dockerfile").write_text("FROM python:3.12-slim\nUSER app\n")
    assert run(capsys, "check", str(tmp_path / "named.Dockerfile"))[0] == 0
    assert run(capsys, "check", "--fail-on", "warn", str(tmp_path / "named.Dockerfile"))[0] == 1


def test_an_unreadable_file_exits_2_and_still_reports_the_other_files(capsys, tmp_path) -> None:
    bad = tmp_path / "broken.yaml"
    bad.write_text("apiVersion: v1\nkind: Pod\nmetadata: {name: x\n")
    code, report = run_json(capsys, str(bad), str(EXAMPLE / "docker-compose.prod.yml"))
    assert code == 2
    assert [e["file"] for e in report["errors"]] == [str(bad)] and report["errors"][0]["line"]
    assert by_rule(report, "no-host-port"), "the good file's findings are still reported"


@pytest.mark.parametrize(("content", "expect"), [
    (b"apiVersion: v1\nkind: Pod\nmetadata: {name: x\n", "YAML syntax error"),
    (b"a: &a [x,x,x,x,x,x,x,x,x]\nb: &b [*a,*a,*a,*a,*a,*a,*a,*a,*a]\nc: &c [*b,*b,*b,*b,*b,*b,*b,*b,*b]\n"
     b"d: &d [*c,*c,*c,*c,*c,*c,*c,*c,*c]\ne: &e [*d,*d,*d,*d,*d,*d,*d,*d,*d]\nf: &f [*e,*e,*e,*e,*e,*e,*e,*e,*e]\n"
     b"g: &g [*f,*f,*f,*f,*f,*f,*f,*f,*f]\nkind: Pod\napiVersion: v1\n", "alias"),
    (b"apiVersion: v1\nkind: Pod\nspec: " + b"[" * 300 + b"]" * 300 + b"\n", "nesting"),
    (b"apiVersion: v1\nkind: Pod\nmetadata: {name: caf\xe9}\n", "UTF-8"),
    (b"apiVersion: v1\nkind: Pod\n\x00\n", "NUL"),
    (b"", "no YAML document"),
    (b"---\n---\n", "no YAML document"),
    (b"just some words\n", "not a recognised input"),
])
def test_bad_input_is_an_error_naming_the_file_and_line_never_a_traceback(capsys, tmp_path, content, expect) -> None:
    path = tmp_path / "input.yaml"
    path.write_bytes(content)
    code, out, err = run(capsys, "check", "--format", "json", str(path))
    assert code == 2 and "Traceback" not in out + err
    report = json.loads(out)
    assert len(report["errors"]) == 1
    error = report["errors"][0]
    assert error["file"] == str(path) and expect in error["message"]
    if content.strip(b"-\n ") and expect not in ("not a recognised input",):
        assert error["line"], "errors from a text source name the line"


def test_a_text_input_over_the_64_mib_cap_is_an_input_error(capsys, tmp_path) -> None:
    path = tmp_path / "huge.yaml"
    with open(path, "wb") as fh:
        fh.write(b"apiVersion: v1\nkind: List\nitems: []\n# ")
        fh.seek(64 * 1024 * 1024 + 10)
        fh.write(b"\n")
    code, report = run_json(capsys, str(path))
    assert code == 2 and "cap" in report["errors"][0]["message"]


@pytest.mark.parametrize(("manifest", "path"), [
    ("spec:\n  containers: {app: {image: x}}\n", "spec.containers"),
    ("spec:\n  containers:\n    - name: a\n      image: nginx:1\n      resources: [cpu]\n", "spec.containers[0].resources"),
    ("spec:\n  containers:\n    - name: a\n      image: nginx:1\n      securityContext: {runAsUser: abc}\n",
     "spec.containers[0].securityContext.runAsUser"),
    ("metadata: {name: nospec}\n", "spec"),
])
def test_objects_of_the_wrong_shape_are_input_errors_with_file_line_and_path(capsys, tmp_path, manifest, path) -> None:
    file = tmp_path / "pod.yaml"
    file.write_text("apiVersion: v1\nkind: Pod\n" + manifest)
    code, report = run_json(capsys, str(file))
    assert code == 2
    (error,) = report["errors"]
    assert error["file"] == str(file) and error["line"] and error["path"] == path


def test_stdin_is_read_for_dash_as_helm_template_output_would_be(tmp_path) -> None:
    manifest = "---\n# Source: chart/templates/svc.yaml\napiVersion: v1\nkind: Service\nmetadata: {name: s}\n---\n" \
               "apiVersion: v1\nkind: Pod\nmetadata: {name: p}\nspec:\n  containers:\n    - {name: a, image: nginx}\n"
    proc = subprocess.run([sys.executable, "-m", "admission", "check", "--format", "json", "-"], input=manifest.encode(),
                          capture_output=True, cwd=tmp_path, env={**os.environ, "PYTHONPATH": str(ROOT)})
    report = json.loads(proc.stdout)
    assert proc.returncode == 1 and report["summary"]["objects"] == 2  # the Pod and the Service (issue 27)
    assert {f["file"] for f in report["findings"]} == {"-"}


def test_empty_stdin_is_an_input_error(tmp_path) -> None:
    proc = subprocess.run([sys.executable, "-m", "admission", "check", "-"], input=b"", capture_output=True,
                          env={**os.environ, "PYTHONPATH": str(ROOT)})
    assert proc.returncode == 2 and b"no YAML document" in proc.stdout


def test_override_flag_needs_exactly_one_compose_path(capsys) -> None:
    compose = str(EXAMPLE / "docker-compose.prod.yml")
    assert run(capsys, "check", compose, compose, "-f", compose)[0] == 2
    assert run(capsys, "check", str(EXAMPLE / "Dockerfile"), "-f", compose)[0] == 2


def test_resolution_flags_are_mutually_exclusive(capsys) -> None:
    with pytest.raises(SystemExit) as info:
        main(["check", "--offline", "--resolve-images", str(EXAMPLE / "Dockerfile")])
    assert info.value.code == 2


def test_a_bad_policy_file_exits_2_naming_the_key(capsys, tmp_path) -> None:
    policy = tmp_path / "p.yaml"
    policy.write_text("rules:\n  no-such-rule: {severity: deny}\n")
    code, _, err = run(capsys, "check", "--policy", str(policy), str(EXAMPLE / "Dockerfile"))
    assert code == 2 and "no-such-rule" in err and f"{policy}:2" in err


def _write(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)


def test_directory_walk_recognises_by_content_skips_what_it_must_and_merges_overrides(capsys, tmp_path) -> None:
    _write(tmp_path / "app" / "compose.yaml", "services:\n  web:\n    build: .\n    ports: ['8080:80']\n")
    _write(tmp_path / "app" / "compose.override.yaml", "services:\n  web:\n    user: root\n")
    _write(tmp_path / "app" / "Dockerfile", "FROM nginx\n")
    _write(tmp_path / "app" / "tools.Dockerfile", "FROM alpine:3.20\nUSER 1000\n")
    _write(tmp_path / "k8s" / "pod.yml", "apiVersion: v1\nkind: Pod\nmetadata: {name: p}\nspec:\n  containers: [{name: a, image: nginx}]\n")
    _write(tmp_path / "k8s" / "empty.yaml", "")
    _write(tmp_path / "chart" / "Chart.yaml", "apiVersion: v2\nname: c\nversion: 0.1.0\n")
    _write(tmp_path / "chart" / "templates" / "deploy.yaml", "{{- if .Values.x }}\nkind: {{ .Values.kind }}\n{{- end }}\n")
    _write(tmp_path / "node_modules" / "pkg" / "pod.yaml", "not: [valid\n")
    _write(tmp_path / ".git" / "config.yaml", "not: [valid\n")
    _write(tmp_path / "README.md", "# hi\n")
    _write(tmp_path / "other.dockerignore", "*\n")
    code, report = run_json(capsys, str(tmp_path))
    assert report["errors"] == [], report["errors"]
    assert code == 1
    objects = {(f["object"]["kind"], f["object"]["name"]) for f in report["findings"]}
    assert ("ComposeService", "web") in objects and ("Pod", "p") in objects
    assert not any(f["object"]["kind"] == "Dockerfile" and f["object"]["name"] == "stage 0" and f["file"].endswith("app/Dockerfile")
                   for f in report["findings"]), "the Dockerfile a service builds is reported under that service only"
    web = [f for f in report["findings"] if f["object"]["name"] == "web"]
    assert any(f["rule"] == "run-as-non-root" and f["file"].endswith("compose.override.yaml") for f in web), \
        "the override is merged onto its base and named as the file the value came from"
    assert any(f["rule"] == "image-tag-pinned" and f["file"].endswith(os.path.join("app", "Dockerfile")) for f in web)
    # compose.yaml + override + Dockerfile + tools.Dockerfile + pod.yml + Chart.yaml
    assert report["summary"]["objects"] == 3  # web, tools.Dockerfile, Pod p
    assert report["summary"]["skipped_files"] >= 4  # templates/deploy.yaml, empty.yaml, README.md, other.dockerignore


def test_a_broken_yaml_file_in_a_walk_is_an_input_error(capsys, tmp_path) -> None:
    _write(tmp_path / "deploy" / "bad.yaml", "apiVersion: v1\nkind: [Pod\n")
    code, report = run_json(capsys, str(tmp_path))
    assert code == 2 and report["errors"][0]["file"].endswith("bad.yaml")


def test_a_walk_does_not_follow_symlinks(capsys, tmp_path) -> None:
    outside = tmp_path / "outside"
    _write(outside / "pod.yaml", "apiVersion: v1\nkind: Pod\nmetadata: {name: p}\nspec:\n  containers: [{name: a, image: nginx}]\n")
    (tmp_path / "repo").mkdir()
    os.symlink(outside, tmp_path / "repo" / "link")
    os.symlink(outside / "pod.yaml", tmp_path / "repo" / "pod.yaml")
    _, report = run_json(capsys, str(tmp_path / "repo"))
    assert report["summary"]["objects"] == 0


def test_namespace_flag_fills_objects_without_one(capsys, tmp_path) -> None:
    file = tmp_path / "pod.yaml"
    file.write_text("apiVersion: v1\nkind: Pod\nmetadata: {name: p}\nspec:\n  containers: [{name: a, image: nginx}]\n")
    _, report = run_json(capsys, "--namespace", "team-a", str(file))
    assert {f["object"]["namespace"] for f in report["findings"]} == {"team-a"}
    _, report = run_json(capsys, str(file))
    assert {f["object"]["namespace"] for f in report["findings"]} == {"default"}


def test_rules_lists_the_catalogue_and_explain_prints_why_fix_example(capsys) -> None:
    code, out, _ = run(capsys, "rules")
    assert code == 0 and "run-as-non-root" in out and "compose-schema" in out
    code, out, _ = run(capsys, "explain", "no-host-port")
    assert code == 0 and "Why:" in out and "Fix:" in out and "Example:" in out and "allowed_host_ips" in out
    assert run(capsys, "explain", "nope")[0] == 2


def test_a_compose_file_on_stdin_uses_the_working_directory_as_project_directory(tmp_path) -> None:
    (tmp_path / ".env").write_text("TAG=1.27.1\n")
    compose = ("services:\n  web:\n    image: nginx:${TAG}\n    user: '101'\n    mem_limit: 64m\n    cpus: 0.5\n"
               "    healthcheck: {test: [CMD, 'true']}\n    read_only: true\n")
    proc = subprocess.run([sys.executable, "-m", "admission", "check", "--format", "json", "-"], input=compose.encode(),
                          capture_output=True, cwd=tmp_path, env={**os.environ, "PYTHONPATH": str(ROOT)})
    report = json.loads(proc.stdout)
    assert report["errors"] == [] and report["findings"] == [] and proc.returncode == 0
    assert report["summary"]["objects"] == 1


def test_a_dockerfile_on_stdin_is_recognised_by_content() -> None:
    proc = subprocess.run([sys.executable, "-m", "admission", "check", "--format", "json", "-"],
                          input=b"FROM alpine:3.20\nUSER root\n", capture_output=True, env={**os.environ, "PYTHONPATH": str(ROOT)})
    report = json.loads(proc.stdout)
    assert report["errors"] == [] and {f["rule"] for f in report["findings"]} == {"run-as-non-root"}
    assert report["findings"][0]["object"]["kind"] == "Dockerfile"


def test_stdin_over_the_cap_is_an_input_error_not_a_memory_blow_up() -> None:
    big = b"# " + b"a" * (64 * 1024 * 1024) + b"\n"
    proc = subprocess.run([sys.executable, "-m", "admission", "check", "--format", "json", "-"], input=big,
                          capture_output=True, env={**os.environ, "PYTHONPATH": str(ROOT)})
    report = json.loads(proc.stdout)
    assert proc.returncode == 2 and "64 MiB cap" in report["errors"][0]["message"]


def test_a_walk_skips_source_files_named_like_dockerfiles_and_ci_files_shaped_unlike_compose(capsys, tmp_path) -> None:
    _write(tmp_path / "pkg" / "dockerfile.py", "import os\n")
    _write(tmp_path / ".gitlab-ci.yml", "include:\n  - template: Security/SAST.gitlab-ci.yml\nservices: [docker:dind]\n")
    _write(tmp_path / "ci" / "other.yml", "services:\n  - postgres:16\nscript: [make]\n")
    code, report = run_json(capsys, str(tmp_path))
    assert code == 0 and report["errors"] == [] and report["summary"]["skipped_files"] == 3
    assert report["summary"]["files"] == 0


def test_files_a_compose_project_includes_or_extends_are_not_checked_again_alone(capsys, tmp_path) -> None:
    _write(tmp_path / "compose.yaml", "include: [sub/inc.yaml]\nservices:\n  a:\n    extends: {file: base.yaml, service: b}\n"
                                      "    image: nginx:1.27.1\n")
    _write(tmp_path / "base.yaml", "services:\n  b:\n    user: '1000'\n    mem_limit: 64m\n    cpus: 1\n")
    _write(tmp_path / "sub" / "inc.yaml", "services:\n  i:\n    image: nginx:1.27.1\n    network_mode: host\n")
    _, report = run_json(capsys, str(tmp_path))
    assert report["summary"]["objects"] == 2
    assert [f["object"]["name"] for f in report["findings"] if f["rule"] == "no-host-port"] == ["i"]
    assert not [f for f in report["findings"] if f["rule"] == "compose-schema"], "base.yaml alone has no image; it is a fragment"


def test_a_compose_host_network_finding_names_the_service_so_container_exemptions_match(capsys, tmp_path) -> None:
    _write(tmp_path / "compose.yaml", "services:\n  h2:\n    image: busybox:1.36\n    user: '1000'\n    network_mode: host\n"
                                      "    mem_limit: 1g\n    cpus: 1\n    healthcheck: {test: [CMD, 'true']}\n    read_only: true\n")
    _write(tmp_path / "p.yaml", "exemptions:\n  - {rule: no-host-port, container: 'h*', reason: node agent}\n")
    code, report = run_json(capsys, "--policy", str(tmp_path / "p.yaml"), str(tmp_path / "compose.yaml"))
    (hit,) = report["findings"]
    assert hit["container"] == "h2" and hit["suppressed"] and hit["reason"] == "node agent" and code == 0


def test_an_infinite_compose_size_is_a_schema_finding_not_an_internal_error(capsys, tmp_path) -> None:
    _write(tmp_path / "compose.yaml", "services:\n  a:\n    image: nginx:1\n    user: '1'\n    cpus: 1\n    mem_limit: 1e400g\n")
    _, report = run_json(capsys, str(tmp_path / "compose.yaml"))
    assert report["errors"] == []
    (schema,) = [f for f in report["findings"] if f["rule"] == "compose-schema"]
    assert schema["line"] == 6 and "invalid size" in schema["message"]


def test_a_crafted_archive_is_an_input_error_and_hides_no_other_file(capsys, tmp_path) -> None:
    import io
    import tarfile

    archive_path = tmp_path / "evil.tar"
    with tarfile.open(archive_path, "w") as tar:
        data = b"[" * 200_000
        info = tarfile.TarInfo("manifest.json")
        info.size = len(data)
        tar.addfile(info, io.BytesIO(data))
    code, report = run_json(capsys, str(archive_path), str(EXAMPLE / "docker-compose.prod.yml"))
    assert code == 2 and report["errors"][0]["file"] == str(archive_path)
    assert by_rule(report, "no-host-port"), "the other file's findings are still reported"


def test_text_output_is_coloured_only_when_asked_for_a_tty(monkeypatch) -> None:
    from admission.cli import report
    from admission.inputs import walk as inputs
    from admission.policy import engine
    from admission.policy.config import default_policy

    collected = inputs.collect([str(EXAMPLE / "docker-compose.prod.yml")], options=inputs.Options(environ={}))
    result = engine.evaluate(collected.workloads, default_policy())
    assert "\x1b[31mdeny\x1b[0m" in report.render_text(result, colour=True)
    assert "\x1b[" not in report.render_text(result, colour=False)


@pytest.mark.parametrize("fmt", ["json", "text", "junit"])
def test_a_reader_that_stops_early_does_not_turn_a_deny_into_a_pass(tmp_path: Path, fmt: str) -> None:
    """`admission-cli check ... | head`: the pipe closes while the report is being written; the exit status is still
    the verdict's (1 for a deny), not 0, and nothing is printed about the broken pipe."""
    compose = tmp_path / "docker-compose.yml"
    compose.write_text("services:\n" + "".join(f"  s{i}:\n    image: nginx\n" for i in range(400)))
    proc = subprocess.Popen([sys.executable, "-m", "admission", "check", "--no-config", "--format", fmt, str(compose)],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, cwd=tmp_path,
                            env={**os.environ, "PYTHONPATH": str(ROOT)})
    assert proc.stdout is not None and proc.stderr is not None
    assert proc.stdout.read(100)
    proc.stdout.close()  # far less than the report, which is larger than a pipe's buffer
    err = proc.stderr.read().decode()
    assert proc.wait(timeout=60) == 1, err
    assert "BrokenPipe" not in err and "Traceback" not in err
