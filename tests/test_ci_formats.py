"""CI formats (architecture §2), each read back as its consumer reads it: JUnit with junitparser, GitHub workflow commands
with the runner's unescaping rules, GitLab Code Quality as the JSON array GitLab expects."""

from __future__ import annotations

import json
import re
import textwrap
from pathlib import Path

import junitparser
import pytest

from admission.cli.main import main

COMPOSE = textwrap.dedent("""\
    services:
      web:
        image: nginx
        ports: ["8080:80"]
        user: "10001"
        deploy: {resources: {limits: {cpus: "0.5", memory: 256M}}}
        healthcheck: {test: ["CMD", "true"]}
        read_only: true
      quiet:
        image: nginx:1.27
        user: "app"
        deploy: {resources: {limits: {cpus: "0.5", memory: 256M}}}
        healthcheck: {test: ["CMD", "true"]}
        read_only: true
      edge:
        image: nginx:1.27
        user: "10001"
        ports: ["443:443"]
        deploy: {resources: {limits: {cpus: "0.5", memory: 256M}}}
        healthcheck: {test: ["CMD", "true"]}
        read_only: true
        x-admission:
          exempt: [{rule: no-host-port, reason: "edge proxy, by design"}]
""")
POD = textwrap.dedent("""\
    apiVersion: v1
    kind: Pod
    metadata: {name: web, namespace: shop}
    spec:
      securityContext: {runAsNonRoot: true}
      containers:
        - name: app
          image: nginx:1.27
          resources: {limits: {cpu: 1, memory: 1Gi}}
          readinessProbe: {httpGet: {path: /, port: 80}}
          securityContext: {readOnlyRootFilesystem: true}
""")


@pytest.fixture()
def repo(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    (tmp_path / ".git").mkdir()
    (tmp_path / "app").mkdir()
    (tmp_path / "app" / "compose.yaml").write_text(COMPOSE)
    (tmp_path / "k8s").mkdir()
    (tmp_path / "k8s" / "pod.yaml").write_text(POD)
    monkeypatch.chdir(tmp_path)
    return tmp_path


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str]:
    code = main(["check", *argv])
    return code, capsys.readouterr().out


def test_junit_has_a_suite_per_file_and_a_case_per_object_and_rule(repo, capsys) -> None:
    code, out = run(capsys, ".", "--format", "junit")
    assert code == 1
    xml = junitparser.JUnitXml.fromstring(out)
    suites = {suite.name: list(suite) for suite in xml}
    assert set(suites) == {"app/compose.yaml", "k8s/pod.yaml"}
    compose_cases = {case.name: case for case in suites["app/compose.yaml"]}
    assert all(case.classname == "app/compose.yaml" for case in compose_cases.values())
    assert {"ComposeService web image-tag-pinned", "ComposeService web no-host-port",
            "ComposeService quiet numeric-user", "ComposeService edge no-host-port"} <= set(compose_cases)
    pinned = compose_cases["ComposeService web image-tag-pinned"]
    [failure] = pinned.result
    assert isinstance(failure, junitparser.Failure)
    assert "app/compose.yaml:3" in failure.text and "fix:" in failure.text
    edge = compose_cases["ComposeService edge no-host-port"]
    assert isinstance(edge.result[0], junitparser.Skipped) and "edge proxy, by design" in edge.result[0].message
    warn_only = compose_cases["ComposeService quiet numeric-user"]
    assert warn_only.is_passed and "app/compose.yaml:11" in (warn_only.system_out or "")
    assert compose_cases["ComposeService quiet no-host-port"].is_passed
    pod_cases = {case.name for case in suites["k8s/pod.yaml"]}
    assert "Pod shop/web run-as-non-root" in pod_cases and "Pod shop/web compose-schema" not in pod_cases


def test_junit_case_names_are_unique_per_classname_as_gitlab_requires(repo, capsys) -> None:
    (repo / "k8s" / "pod.yaml").write_text(POD + "---\n" + POD + "---\n" + POD.replace("shop", "other"))
    _, out = run(capsys, ".", "--format", "junit")
    keys = [(case.classname, case.name) for suite in junitparser.JUnitXml.fromstring(out) for case in suite]
    assert len(keys) == len(set(keys))


def test_junit_fails_warn_findings_with_fail_on_warn_and_reports_input_errors(repo, capsys) -> None:
    (repo / "k8s" / "broken.yaml").write_text("apiVersion: v1\nkind: Pod\nmetadata: {name: x\n")
    code, out = run(capsys, ".", "--format", "junit", "--fail-on", "warn")
    assert code == 2
    xml = junitparser.JUnitXml.fromstring(out)
    cases = {(case.classname, case.name): case for suite in xml for case in suite}
    assert isinstance(cases[("app/compose.yaml", "ComposeService quiet numeric-user")].result[0], junitparser.Failure)
    [error] = cases[("k8s/broken.yaml", "input error 1")].result
    assert isinstance(error, junitparser.Error) and "k8s/broken.yaml:" in error.message


def _unescape_data(text: str) -> str:
    return text.replace("%0D", "\r").replace("%0A", "\n").replace("%25", "%")


def _unescape_property(text: str) -> str:
    return _unescape_data(text.replace("%3A", ":").replace("%2C", ","))


COMMAND = re.compile(r"^::(error|warning) (?P<props>[^:]*)::(?P<data>.*)$")


def parse_github(out: str) -> list[tuple[str, dict[str, str], str]]:
    commands = []
    for line in out.splitlines():
        match = COMMAND.match(line)
        if match:
            props = dict(p.split("=", 1) for p in match["props"].split(","))
            commands.append((match[1], {k: _unescape_property(v) for k, v in props.items()}, _unescape_data(match["data"])))
    return commands


def test_github_annotations_are_escaped_as_the_runner_unescapes_them(tmp_path, capsys, monkeypatch) -> None:
    (tmp_path / ".git").mkdir()
    odd = tmp_path / "we,ird:dir"
    odd.mkdir()
    (odd / "compose.yaml").write_text('services:\n  web:\n    image: "nginx:100%"\n')
    monkeypatch.chdir(tmp_path)
    code, out = run(capsys, ".", "--format", "github")
    assert code == 1
    commands = parse_github(out)
    pinned = next(c for c in commands if c[1]["title"] == "image-tag-pinned")
    assert pinned[0] == "error" and pinned[1]["file"] == "we,ird:dir/compose.yaml" and pinned[1]["line"] == "3"
    assert "nginx:100%" in pinned[2] and "\nfix: " in pinned[2]
    for line in out.splitlines():
        assert "\r" not in line
        if line.startswith("::"):
            props = line.split("::")[1].split(" ", 1)[1]
            for value in re.findall(r"=([^,]*)", props):
                assert ":" not in value and not re.search(r"%(?!25|0A|0D|3A|2C)", value)


def test_github_output_names_warnings_skips_suppressed_findings_and_is_never_coloured(repo, capsys, monkeypatch) -> None:
    monkeypatch.setattr("sys.stdout.isatty", lambda: True, raising=False)
    _, out = run(capsys, ".", "--format", "github")
    assert "\x1b[" not in out
    commands = parse_github(out)
    assert ("warning", "numeric-user") in {(c[0], c[1]["title"]) for c in commands}
    assert not any("edge" in c[2] and c[1]["title"] == "no-host-port" for c in commands)  # suppressed
    assert out.splitlines()[-1].startswith("2 deny, 1 warn, 1 suppressed")


def test_github_summary_says_how_many_annotations_there_are_when_the_runner_would_cut_them(tmp_path, capsys,
                                                                                            monkeypatch) -> None:
    services = "".join(f"  s{i}:\n    image: nginx\n" for i in range(12))
    (tmp_path / "compose.yaml").write_text("services:\n" + services)
    monkeypatch.chdir(tmp_path)
    _, out = run(capsys, ".", "--format", "github")
    total = len(parse_github(out))
    assert total > 10 and f"{total} annotations in all" in out.splitlines()[-1]


def test_gitlab_code_quality_is_an_array_with_unique_fingerprints_and_mapped_severities(repo, capsys) -> None:
    _, out = run(capsys, ".", "--format", "gitlab")
    issues = json.loads(out)
    assert isinstance(issues, list) and len(issues) == 3  # the suppressed edge port is left out
    for issue in issues:
        assert set(issue) == {"description", "check_name", "fingerprint", "severity", "location"}
        assert isinstance(issue["location"]["lines"]["begin"], int) and issue["location"]["lines"]["begin"] >= 1
    assert len({i["fingerprint"] for i in issues}) == len(issues)
    severities = {(i["check_name"], i["severity"]) for i in issues}
    assert ("image-tag-pinned", "major") in severities and ("numeric-user", "minor") in severities
    assert {i["location"]["path"] for i in issues} == {"app/compose.yaml"}


def test_gitlab_fingerprints_are_stable_when_lines_move(repo, capsys) -> None:
    _, before = run(capsys, ".", "--format", "gitlab")
    (repo / "app" / "compose.yaml").write_text("# moved\n\n\n" + COMPOSE)
    _, after = run(capsys, ".", "--format", "gitlab")
    assert {i["fingerprint"] for i in json.loads(before)} == {i["fingerprint"] for i in json.loads(after)}
    assert [i["location"]["lines"]["begin"] for i in json.loads(before)] != \
           [i["location"]["lines"]["begin"] for i in json.loads(after)]


def test_gitlab_reports_input_errors_as_blockers(repo, capsys) -> None:
    (repo / "k8s" / "broken.yaml").write_text("apiVersion: v1\nkind: Pod\nmetadata: {name: x\n")
    code, out = run(capsys, ".", "--format", "gitlab")
    assert code == 2
    blockers = [i for i in json.loads(out) if i["severity"] == "blocker"]
    assert [b["location"]["path"] for b in blockers] == ["k8s/broken.yaml"]


@pytest.mark.parametrize("fmt", ["json", "sarif", "junit", "github", "gitlab"])
def test_output_writes_the_format_to_a_file_and_the_text_report_to_stdout(repo, capsys, fmt) -> None:
    code, out = run(capsys, ".", "--format", fmt, "--output", "report.out")
    assert code == 1
    assert out.splitlines()[-1].startswith("2 deny, 1 warn, 1 suppressed") and "  deny  image-tag-pinned  " in out
    written = Path("report.out").read_text()
    if fmt in ("json", "sarif", "gitlab"):
        json.loads(written)
    elif fmt == "junit":
        junitparser.JUnitXml.fromstring(written)
    else:
        assert written.startswith("::")


def test_sarif_results_carry_the_fingerprint(repo, capsys) -> None:
    _, out = run(capsys, ".", "--format", "sarif")
    _, json_out = run(capsys, ".", "--format", "json")
    sarif = {r["partialFingerprints"]["admission/v1"] for r in json.loads(out)["runs"][0]["results"]}
    assert sarif == {f["fingerprint"] for f in json.loads(json_out)["findings"]}


def test_an_unwritable_output_file_exits_2(repo, capsys) -> None:
    code = main(["check", ".", "--format", "json", "--output", str(repo / "missing" / "dir" / "r.json")])
    assert code == 2 and "cannot write" in capsys.readouterr().err


def test_json_report_has_one_finding_per_line_for_diffs_and_grep(repo, capsys) -> None:
    _, out = run(capsys, ".", "--format", "json")
    report = json.loads(out)
    lines = [line for line in out.splitlines() if line.lstrip().startswith('{"rule": ')]
    assert len(lines) == len(report["findings"]) == 4
    assert [json.loads(line.strip().rstrip(",")) for line in lines] == report["findings"]


def test_junit_escapes_markup_quotes_and_control_characters(tmp_path, capsys, monkeypatch) -> None:
    (tmp_path / "pod.yaml").write_text(
        'apiVersion: v1\nkind: Pod\nmetadata: {name: "we<ird&\\"name>"}\n'
        'spec:\n  containers:\n    - {name: "app\\u0007x", image: nginx}\n')
    monkeypatch.chdir(tmp_path)
    code, out = run(capsys, ".", "--format", "junit")
    assert code == 1
    cases = {case.name: case for suite in junitparser.JUnitXml.fromstring(out) for case in suite}
    pinned = cases['Pod default/we<ird&"name> image-tag-pinned']
    assert isinstance(pinned.result[0], junitparser.Failure)
    assert "app\ufffdx" in pinned.result[0].text and "\x07" not in out


def test_a_finding_written_field_by_field_is_the_encoders_json_byte_for_byte() -> None:
    """report.finding_line is the JSON report's fast path; it must write what json's encoder writes of finding_json,
    for every value a finding can hold: None, quotes, backslashes, newlines, control and non-ASCII characters."""
    from admission.cli.report import _ENCODE, finding_json, finding_line
    from admission.findings import Finding, Reported

    tricky = ['plain', 'a "quoted" \\ path', 'line\nbreak\ttab\x00\x1f', 'ünïcødé ✓ 名前', '\u2028\ud7ff', '']
    for i, text in enumerate(tricky):
        for optional in (None, text):
            f = Finding(rule="no-secret-in-env", severity="warn" if i % 2 else "deny", message=text, remediation=text,
                        value=optional, file=text or "-", line=None if i % 3 == 0 else i * 7, path=text,
                        source="kubernetes", object_kind="Pod", object_name=text, object_namespace=optional,
                        container=optional, suppressed=bool(i % 2), reason=optional, key=text,
                        fingerprint=optional, would_deny=not i % 2)
            assert finding_line(f) == _ENCODE(finding_json(f))
    merged = Finding(rule="r", severity="deny", message="m", remediation="x", value=None, file="f", line=1, path="p",
                     source="compose", object_kind="ComposeService", object_name="a", object_namespace=None,
                     container="a", also=(Reported("g", "ComposeService", "b", None, "b", "0" * 32),))
    assert finding_line(merged) == _ENCODE(finding_json(merged)) and '"reported_for"' in finding_line(merged)


def _json_report_as_laid_out(report: object) -> str:
    """The JSON report's layout (one entry per line, two-space keys) built from the encoder's own dicts, whole."""
    from admission import __version__
    from admission.cli import report as r

    encode = json.JSONEncoder(ensure_ascii=False, separators=(", ", ": ")).encode

    def entries(key: str, items: list[object]) -> str:
        body = ",\n".join(f"    {encode(i)}" for i in items)
        return f'  "{key}": [\n{body}\n  ]' if items else f'  "{key}": []'

    parts = ['  "version": 1', f'  "tool": {encode({"name": "admission", "version": __version__})}',
             f'  "summary": {encode(r.summary(report))}',  # type: ignore[arg-type]
             entries("findings", [r.finding_json(f) for f in r.sorted_findings(report.findings)]),  # type: ignore[attr-defined]
             entries("errors", [r.problem_json(p) for p in report.errors]),  # type: ignore[attr-defined]
             entries("skipped", [{"file": f, "reason": why} for f, why in report.skipped])]  # type: ignore[attr-defined]
    if report.verified:  # type: ignore[attr-defined]
        parts.append(entries("verified", [r.verified_json(v) for v in r.sorted_verified(report.verified)]))  # type: ignore[attr-defined]
    return "{\n" + ",\n".join(parts) + "\n}\n"


@pytest.mark.parametrize("count", [0, 1, 1024, 1025, 2500])
def test_the_json_report_written_in_pieces_is_the_whole_document_byte_for_byte(count: int) -> None:
    """The CLI and the audit write the JSON report as it is made, in batches of entries; whatever the number of
    findings (none, one, a batch exactly, one past it, several), the bytes are the document laid out whole."""
    import io

    from admission.cli import report
    from admission.findings import Finding, Problem, Report, Verified

    findings = [Finding(rule="image-tag-pinned" if i % 3 else "healthcheck", severity="deny" if i % 2 else "warn",
                        message=f"uses 'nginx:{i}' ✗ \"quoted\"", remediation="pin it", value=None if i % 5 else "x",
                        file=f"k8s/{i % 7}.yaml", line=i % 11 or None, path="spec.containers[0].image",
                        source="kubernetes", object_kind="Pod", object_name=f"web-{i}", object_namespace="team",
                        container="web", key="image", fingerprint=f"{i:032x}") for i in range(count)]
    verified = [Verified(rule="image-signature", message="signed by key k", value="sha256:ab", file="k8s/0.yaml",
                         line=3, path="spec.containers[0].image", object_kind="Pod", object_name="web",
                         object_namespace="team", container="web")] if count == 1 else []
    sample = Report(findings=findings, errors=[Problem("cannot list deployments.apps: 403", "namespace/team")],
                    skipped=[("README.md", "not compose or Kubernetes")], verified=verified, objects=count, files=7)
    expected = _json_report_as_laid_out(sample)
    out = io.StringIO()
    report.write_json(sample, out)
    assert out.getvalue() == expected == report.render_json(sample)
    assert len(json.loads(expected)["findings"]) == count
