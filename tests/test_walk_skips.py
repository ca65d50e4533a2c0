"""Walking a real repository (architecture §2): files that are not ours are skipped with a reason, never an error;
what is recognisably compose or Kubernetes still fails loudly. `--as-walk` treats named files the same way."""

from __future__ import annotations

import json
import textwrap
from pathlib import Path

import pytest

from admission.cli.main import main

TSCONFIG = textwrap.dedent("""\
    {
      // TypeScript allows comments here
      "compilerOptions": {"strict": true, /* and here */ "target": "es2022",},
    }
""")
VSCODE = '{\n  // editor settings\n  "editor.formatOnSave": true,\n}\n'
TEMPLATE = "metadata:\n  name: {{ .Values.name }}\n  labels: {{ toYaml .Values.labels | nindent 4 }}\n"
GOOD_COMPOSE = textwrap.dedent("""\
    services:
      api:
        build: .
        user: "10001"
        deploy: {resources: {limits: {cpus: "1", memory: 512M}}}
        healthcheck: {test: ["CMD", "true"]}
        read_only: true
""")
GOOD_DOCKERFILE = "FROM python:3.12.4-slim\nRUN useradd -u 10001 app\nUSER 10001\n"
GOOD_DEPLOYMENT = textwrap.dedent("""\
    apiVersion: apps/v1
    kind: Deployment
    metadata: {name: web}
    spec:
      template:
        spec:
          securityContext: {runAsNonRoot: true, runAsUser: 10001}
          containers:
            - name: web
              image: nginx:1.27.1
              resources: {limits: {cpu: 500m, memory: 256Mi}}
""")


def check(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, dict]:
    code = main(["check", "--format", "json", *argv])
    out, _ = capsys.readouterr()
    return code, json.loads(out)


def skipped(report: dict) -> dict[str, str]:
    return {s["file"]: s["reason"] for s in report["skipped"]}


def write(root: Path, files: dict[str, str]) -> None:
    for name, text in files.items():
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)


def test_jsonc_editor_settings_and_foreign_templates_are_skipped_with_reasons(tmp_path, capsys, monkeypatch) -> None:
    write(tmp_path, {"web/tsconfig.json": TSCONFIG, ".vscode/settings.json": VSCODE, "deploy/values.tpl.yaml": TEMPLATE,
                     "web/package.json": '{"name": "web", "private": true}\n', "README.md": "# hi\n"})
    monkeypatch.chdir(tmp_path)
    code, report = check(capsys, ".")
    assert code == 0 and report["errors"] == []
    reasons = skipped(report)
    assert reasons["web/tsconfig.json"].startswith("not compose or Kubernetes, and not valid YAML/JSON")
    assert reasons[".vscode/settings.json"].startswith("not compose or Kubernetes, and not valid YAML/JSON")
    assert "not valid YAML/JSON" in reasons["deploy/values.tpl.yaml"]
    assert reasons["web/package.json"] == "not compose or Kubernetes: no top-level apiVersion and kind, no services"
    assert reasons["README.md"].startswith("not a compose file")
    assert report["summary"]["skipped_files"] == len(report["skipped"]) == 5


def test_a_broken_compose_file_in_a_walk_still_exits_2_naming_file_and_line(tmp_path, capsys) -> None:
    write(tmp_path, {"web/tsconfig.json": TSCONFIG, "app/compose.yaml": "services:\n  web:\n    image: [nginx\n"})
    code, report = check(capsys, str(tmp_path))
    assert code == 2
    [error] = report["errors"]
    assert error["file"].endswith("app/compose.yaml") and error["line"] in (3, 4)  # 4: the end of the stream
    assert any(s["file"].endswith("tsconfig.json") for s in report["skipped"])


def test_a_broken_file_with_a_compose_name_is_an_error_even_without_services(tmp_path, capsys) -> None:
    write(tmp_path, {"docker-compose.prod.yml": "version: '3'\n  bad: [indent\n"})
    code, report = check(capsys, str(tmp_path))
    assert code == 2 and report["errors"][0]["file"].endswith("docker-compose.prod.yml")


def test_a_broken_manifest_in_a_walk_still_exits_2(tmp_path, capsys) -> None:
    write(tmp_path, {"k8s/deploy.yaml": "apiVersion: apps/v1\nkind: Deployment\nmetadata: {name: web\n",
                     ".vscode/settings.json": VSCODE})
    code, report = check(capsys, str(tmp_path))
    assert code == 2
    assert [e["file"].rsplit("/", 2)[-2:] for e in report["errors"]] == [["k8s", "deploy.yaml"]]
    assert report["errors"][0]["line"] is not None


def test_helm_templates_and_lone_overrides_are_listed_with_their_reasons(tmp_path, capsys, monkeypatch) -> None:
    write(tmp_path, {"chart/Chart.yaml": "apiVersion: v2\nname: c\nversion: 1.0.0\n",
                     "chart/templates/deployment.yaml": "apiVersion: apps/v1\nkind: Deployment\n{{ .Values.x }}\n",
                     "lone/compose.override.yaml": "services:\n  web: {ports: ['80:80']}\n"})
    monkeypatch.chdir(tmp_path)
    code, report = check(capsys, ".")
    assert code == 0
    reasons = skipped(report)
    assert reasons["chart/templates/deployment.yaml"].startswith("a Helm template")
    assert reasons["lone/compose.override.yaml"] == "a compose override without its base file in the same folder"


def monorepo(root: Path) -> None:
    """A tree shaped like a real multi-project repository."""
    write(root, {
        "package.json": '{"private": true, "workspaces": ["apps/*"]}\n',
        ".vscode/settings.json": VSCODE, ".vscode/extensions.json": '{\n  // recommended\n  "recommendations": []\n}\n',
        "apps/web/package.json": '{"name": "web"}\n', "apps/web/tsconfig.json": TSCONFIG,
        "apps/web/tsconfig.build.json": '{"extends": "./tsconfig.json", // build\n}\n',
        "apps/web/.eslintrc.json": '{\n  /* lint */\n  "root": true\n}\n',
        "apps/web/compose.yaml": GOOD_COMPOSE, "apps/web/Dockerfile": GOOD_DOCKERFILE,
        "apps/web/compose.override.yaml": "services:\n  api:\n    ports: ['127.0.0.1:3000:3000']\n",
        "apps/api/docker-compose.yml": GOOD_COMPOSE.replace("api:", "worker:"), "apps/api/Dockerfile": GOOD_DOCKERFILE,
        "apps/api/docker-compose.override.yml": "services:\n  worker:\n    environment: [DEBUG=1]\n",
        "apps/api/openapi.yaml": "openapi: 3.0.0\ninfo: {title: api, version: '1'}\npaths: {}\n",
        "charts/web/Chart.yaml": "apiVersion: v2\nname: web\nversion: 0.1.0\n",
        "charts/web/values.yaml": "image:\n  repository: web\n  tag: 1.0.0\n",
        "charts/web/templates/deployment.yaml": "apiVersion: apps/v1\nkind: Deployment\nmetadata:\n"
                                                "  name: {{ include \"web.fullname\" . }}\n",
        "charts/web/templates/_helpers.tpl": '{{- define "web.fullname" -}}web{{- end }}\n',
        "k8s/deployment.yaml": GOOD_DEPLOYMENT,
        "k8s/kustomization.yaml": "resources: [deployment.yaml]\n",
        ".github/workflows/ci.yml": "on: [push]\njobs:\n  t:\n    runs-on: ubuntu-latest\n    steps: [{run: make}]\n",
        ".gitlab-ci.yml": "services:\n  - postgres:16\ninclude:\n  - local: ci/base.yml\n",
        "docs/mkdocs.yml": "site_name: x\nnav: [{Home: index.md}]\n",
        "infra/ansible/site.yml": "- hosts: all\n  tasks:\n    - name: x\n      debug: {msg: '{{ greeting }}'}\n",
        "infra/templates/job.yaml.j2": "apiVersion: batch/v1\nkind: Job\n",
        "infra/stack.tpl.yaml": "name: {{ project }}\n",
    })


def test_a_real_multi_project_repository_never_exits_2(tmp_path, capsys, monkeypatch) -> None:
    monorepo(tmp_path)
    monkeypatch.chdir(tmp_path)
    code, report = check(capsys, ".")
    assert code in (0, 1), report["errors"]
    assert report["errors"] == []
    services = {f["object"]["name"] for f in report["findings"]}
    assert "api" not in services and "worker" not in services  # both projects pass with their overrides merged
    assert report["summary"]["objects"] == 3  # api, worker, web Deployment; Dockerfiles under their services
    reasons = skipped(report)
    assert {"apps/web/tsconfig.json", ".vscode/settings.json", "charts/web/templates/deployment.yaml",
            ".gitlab-ci.yml", "apps/api/openapi.yaml"} <= set(reasons)


def test_as_walk_skips_named_files_that_are_not_inputs_and_merges_a_named_override(tmp_path, capsys,
                                                                                 monkeypatch) -> None:
    monorepo(tmp_path)
    (tmp_path / "apps/web/compose.override.yaml").write_text("services:\n  api:\n    ports: ['3000:3000']\n")
    monkeypatch.chdir(tmp_path)
    code, report = check(capsys, "--as-walk", "apps/web/tsconfig.json", "apps/web/compose.override.yaml",
                         "charts/web/templates/deployment.yaml", ".vscode/settings.json", "README.missing.md")
    assert code == 2 and [e["file"] for e in report["errors"]] == ["README.missing.md"]  # a named file that is gone
    code, report = check(capsys, "--as-walk", "apps/web/tsconfig.json", "apps/web/compose.override.yaml",
                         "charts/web/templates/deployment.yaml", ".vscode/settings.json")
    assert code == 1 and report["errors"] == []
    [finding] = report["findings"]
    assert (finding["rule"], finding["file"], finding["object"]["name"]) == (
        "no-host-port", "apps/web/compose.override.yaml", "api")
    reasons = skipped(report)
    assert reasons["charts/web/templates/deployment.yaml"].startswith("a Helm template")
    assert set(reasons) == {"apps/web/tsconfig.json", "charts/web/templates/deployment.yaml", ".vscode/settings.json"}


def test_as_walk_checks_a_named_base_file_with_its_override(tmp_path, capsys, monkeypatch) -> None:
    write(tmp_path, {"compose.yaml": GOOD_COMPOSE, "Dockerfile": GOOD_DOCKERFILE,
                     "compose.override.yaml": "services:\n  api:\n    ports: ['8080:80']\n"})
    monkeypatch.chdir(tmp_path)
    code, report = check(capsys, "--as-walk", "compose.yaml")
    assert code == 1 and [f["file"] for f in report["findings"]] == ["compose.override.yaml"]


def test_as_walk_cannot_take_an_explicit_override(tmp_path, capsys) -> None:
    write(tmp_path, {"compose.yaml": GOOD_COMPOSE})
    assert main(["check", "--as-walk", str(tmp_path / "compose.yaml"), "-f", str(tmp_path / "compose.yaml")]) == 2


def test_a_walk_skips_a_virtualenv_whatever_its_name(tmp_path, capsys) -> None:
    write(tmp_path, {".venv-bench/pyvenv.cfg": "home = /usr/bin\n",
                     ".venv-bench/lib/python3.11/site-packages/kubernetes/test/bad.yaml":
                         "apiVersion: v1\nkind: Pod\nmetadata: {name: x\n",
                     "k8s/deployment.yaml": GOOD_DEPLOYMENT})
    code, report = check(capsys, str(tmp_path))
    assert report["errors"] == [] and code in (0, 1)
    assert report["summary"]["objects"] == 1
    assert not any(".venv-bench" in s["file"] for s in report["skipped"])


WALKS = Path(__file__).parent / "walks"  # small copies, in our own words, of shapes real repositories hold


def test_a_helm_values_schema_naming_apiversion_and_kind_as_properties_is_skipped_not_an_error(capsys) -> None:
    code, report = check(capsys, "--no-config", str(WALKS / "chart"))
    assert code == 0 and report["errors"] == []
    reasons = {Path(file).name: reason for file, reason in skipped(report).items()}
    assert reasons["values.schema.json"] == "not compose or Kubernetes: no top-level apiVersion and kind, no services"
    assert reasons["values.yaml"] == reasons["values.schema.json"]


def test_a_template_that_does_not_parse_is_skipped_as_a_template_naming_its_first_placeholder(capsys) -> None:
    code, report = check(capsys, "--no-config", str(WALKS / "templated"))
    assert code == 0 and report["errors"] == [] and report["findings"] == []
    reasons = {Path(file).name: reason for file, reason in skipped(report).items()}
    assert reasons["tablet-statefulset-template.yaml"].startswith(
        "template: `{{` on line 5, and not valid YAML/JSON: YAML syntax error")
    assert reasons["plugin.yaml"].startswith("template: `{{` on line 6, and not valid YAML/JSON")  # a krew manifest
    assert reasons["Dockerfile.template"].startswith("template: `{{` on line 2, and not a valid Dockerfile")


def test_a_template_that_parses_is_skipped_when_a_placeholder_names_the_object_its_image_or_a_key(capsys) -> None:
    code, report = check(capsys, "--no-config", str(WALKS / "templated"))
    reasons = {Path(file).name: reason for file, reason in skipped(report).items()}
    assert reasons["tablet-pod-template.yaml"] == "template: `{{` in metadata.name 'tablet-{{uid}}' (line 5)"
    assert reasons["agent-daemonset-template.yaml"] == (
        "template: `{{` in an image 'example.org/metrics-agent:{{AGENT_VERSION}}' (line 14)")
    assert reasons["worker-template.yaml"] == "template: `{{` in a mapping key 'tier-{{TIER}}' (line 6)"
    assert report["summary"]["objects"] == 0 and report["summary"]["files"] == 0


def test_a_placeholder_in_a_comment_or_an_annotation_never_exempts_a_manifest_from_the_check(capsys) -> None:
    code, report = check(capsys, "--no-config", str(WALKS / "annotated"))
    assert code == 1 and report["errors"] == [] and report["skipped"] == []
    found = {(Path(f["file"]).name, f["object"]["kind"], f["object"]["name"], f["rule"], f["line"])
             for f in report["findings"] if f["severity"] == "deny"}
    assert found == {("deployment.yaml", "Deployment", "billing", "run-as-non-root", 22),  # runAsUser: 0
                     ("Dockerfile", "Dockerfile", "stage 0", "run-as-non-root", 1)}  # `--format '{{…}}'` in a RUN
    assert report["summary"]["files"] == 3  # alerts.yaml (a PrometheusRule with `{{ $labels }}`) is read too


def test_a_file_named_on_the_command_line_is_read_even_when_it_is_a_template(capsys) -> None:
    templated = WALKS / "templated"
    code, report = check(capsys, "--no-config", str(templated / "tablet-statefulset-template.yaml"))
    assert code == 2 and report["errors"][0]["line"] == 15
    code, report = check(capsys, "--no-config", str(templated / "tablet-pod-template.yaml"))
    assert code == 1 and {f["object"]["name"] for f in report["findings"]} == {"tablet-{{uid}}"}


def test_a_broken_manifest_with_a_placeholder_only_in_a_comment_still_exits_2(tmp_path, capsys) -> None:
    write(tmp_path, {"k8s/deploy.yaml": "# image: {{ .Values.image }}\napiVersion: apps/v1\nkind: Deployment\n"
                                        "metadata: {name: web  # {{ name }}\n"})
    code, report = check(capsys, str(tmp_path))
    assert code == 2 and [e["file"].rsplit("/", 1)[-1] for e in report["errors"]] == ["deploy.yaml"]


def test_json_is_kubernetes_by_its_top_level_shape_in_a_walk(tmp_path, capsys) -> None:
    pod = {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "api"},
           "spec": {"containers": [{"name": "api", "image": "example.org/api:1.0.0"}]}}
    write(tmp_path, {"pod.json": json.dumps(pod, indent=2),
                     "list.json": json.dumps({"apiVersion": "v1", "kind": "List", "items": [pod | {"metadata": {"name": "db"}}]}),
                     "openapi.json": json.dumps({"components": {"schemas": {"Obj": {"properties": {
                         "apiVersion": {"type": "string"}, "kind": {"type": "string"}}}}}})})
    code, report = check(capsys, str(tmp_path))
    assert report["errors"] == [] and code == 1
    assert {(Path(f["file"]).name, f["object"]["name"]) for f in report["findings"]} == {("pod.json", "api"),
                                                                                        ("list.json", "db")}
    assert [Path(file).name for file in skipped(report)] == ["openapi.json"]


def test_compose_templates_are_skipped_and_a_compose_file_with_a_placeholder_in_a_command_is_checked(tmp_path,
                                                                                                     capsys) -> None:
    write(tmp_path, {"roles/web/docker-compose.yml": "services:\n  web:\n    image: \"{{ registry }}/web:1.0\"\n",
                     "roles/db/compose.yaml": "services:\n  db: {{ db_service | to_yaml }}\n",
                     "app/compose.yaml": "services:\n  app:\n    image: example.org/app:1.0.0\n    ports: ['80:80']\n"
                                         "    command: [\"sh\", \"-c\", \"echo '{{ not a template }}'\"]\n"})
    code, report = check(capsys, str(tmp_path))
    assert report["errors"] == [] and code == 1
    reasons = {"/".join(Path(file).parts[-3:]): reason for file, reason in skipped(report).items()}
    assert reasons["roles/web/docker-compose.yml"] == "template: `{{` in an image '{{ registry }}/web:1.0' (line 3)"
    assert reasons["roles/db/compose.yaml"].startswith("template: `{{` on line 2")
    assert {f["object"]["name"] for f in report["findings"] if f["rule"] == "no-host-port"} == {"app"}
