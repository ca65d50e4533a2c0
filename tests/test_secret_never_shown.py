"""no-secret-in-env names a variable and where it is set, never its value: a planted value must appear in no report
format of the CLI (stdout and `--output`), in no webhook answer and in no audit line, while the finding itself is
there (so the test fails if the rule stops reporting as well as if it starts leaking). tests/images/test_secret_env.py
does the same with a secret in a registry image's config."""

from __future__ import annotations

import contextlib
import io
import json
import textwrap
from pathlib import Path

import pytest

from admission.cli.main import FORMATS, main
from admission.webhook.settings import Settings
from tests.webhook.conftest import good_container, pod, review, running, write_policy

PLANTED = "PLANTED-s3cr3t-7f3a9c"  # a value no message, path or key could contain by chance

COMPOSE = textwrap.dedent(f"""\
    services:
      api:
        image: registry.example.com/api:3.2
        build: .
        environment:
          DB_PASSWORD: {PLANTED}
    """)
COMPOSE_LIST = textwrap.dedent(f"""\
    services:
      worker:
        image: registry.example.com/worker:3.2
        environment:
          - GITHUB_TOKEN={PLANTED}
    """)
DOCKERFILE = f"FROM registry.example.com/base:1.0\nARG NPM_TOKEN={PLANTED}\nENV APP_SECRET=\"{PLANTED}\"\nUSER 1000\n"
MANIFEST = textwrap.dedent(f"""\
    apiVersion: v1
    kind: Pod
    metadata: {{name: web}}
    spec:
      containers:
        - name: app
          image: registry.example.com/web:2.1
          env:
            - {{name: AWS_SECRET_ACCESS_KEY, value: "{PLANTED}"}}
    """)
NAMES = ("DB_PASSWORD", "GITHUB_TOKEN", "NPM_TOKEN", "APP_SECRET", "AWS_SECRET_ACCESS_KEY")


@pytest.fixture()
def project(tmp_path: Path) -> Path:
    root = tmp_path / "repo"
    (root / ".git").mkdir(parents=True)  # a repository root, as SARIF and GitLab name files from it
    (root / "compose.yaml").write_text(COMPOSE)
    (root / "worker").mkdir()
    (root / "worker" / "compose.yaml").write_text(COMPOSE_LIST)
    (root / "Dockerfile").write_text(DOCKERFILE)
    (root / "pod.yaml").write_text(MANIFEST)
    return root


def _run(args: list[str]) -> tuple[int, str]:
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        code = main(args)
    return code, out.getvalue()


@pytest.mark.parametrize("fmt", FORMATS)
def test_no_cli_format_shows_the_secret_but_each_names_the_variable(project: Path, fmt: str, monkeypatch) -> None:
    monkeypatch.chdir(project)
    written = project.parent / f"report.{fmt}"
    paths = ["compose.yaml", "worker/compose.yaml", "Dockerfile", "pod.yaml"]
    code, stdout = _run(["check", *paths, "--format", fmt, "--output", str(written), "--fail-on", "warn"])
    assert code == 1
    for where, text in (("stdout (text)", stdout), (f"--output ({fmt})", written.read_text())):
        assert PLANTED not in text, f"the secret value is shown in {where}"
        for name in NAMES:
            assert name in text, f"{where} does not name {name}"


def test_the_json_report_gives_the_finding_a_null_value(project: Path, monkeypatch) -> None:
    monkeypatch.chdir(project)
    _, stdout = _run(["check", "compose.yaml", "pod.yaml", "--format", "json"])
    found = [f for f in json.loads(stdout)["findings"] if f["rule"] == "no-secret-in-env"]
    assert {f["path"] for f in found} >= {"services.api.environment.DB_PASSWORD",
                                          "spec.containers[0].env[0].value"}
    assert all(f["value"] is None and f["severity"] == "warn" for f in found)


def test_the_strict_policy_denies_it_and_still_shows_nothing(project: Path, monkeypatch) -> None:
    monkeypatch.chdir(project)
    strict = Path(__file__).resolve().parents[1] / "policies" / "strict.yaml"
    code, stdout = _run(["check", "pod.yaml", "--policy", str(strict)])
    assert code == 1 and "deny  no-secret-in-env" in stdout and PLANTED not in stdout


@pytest.mark.anyio
@pytest.mark.parametrize("policy_text", ["images: {resolve: false}\n",
                                         "images: {resolve: false}\nrules:\n  no-secret-in-env: {severity: deny}\n",
                                         ("images: {resolve: false}\nenforcement: warn\n"
                                          "rules:\n  no-secret-in-env: {severity: deny}\n")])
async def test_no_webhook_answer_or_audit_line_shows_the_secret(tmp_path: Path, policy_text: str) -> None:
    container = good_container()
    container["env"] = [{"name": "DB_PASSWORD", "value": PLANTED}, {"name": "API_TOKEN", "value": PLANTED}]
    policy = write_policy(tmp_path / "p", policy_text)
    async with running(Settings(policy=str(policy))) as hook:
        response = await hook.post(review(pod(containers=[container])))
        audit = hook.audit()
    body = response.text
    assert response.status_code == 200 and PLANTED not in body
    assert PLANTED not in json.dumps(audit)
    answer = response.json()["response"]
    said = " ".join(answer.get("warnings") or []) + (answer.get("status") or {}).get("message", "")
    assert "no-secret-in-env" in said and "DB_PASSWORD" in said
    assert answer["allowed"] is ("rules:" not in policy_text or "enforcement: warn" in policy_text)


def _cli_names(obj: dict, folder: Path, policy: Path) -> set[tuple[str | None, str]]:
    target = folder / "object.json"
    target.write_text(json.dumps(obj))
    _, stdout = _run(["check", str(target), "--format", "json", "--policy", str(policy)])
    names = set()
    for f in json.loads(stdout)["findings"]:
        if f["rule"] == "no-secret-in-env":
            names.update((f["container"], n) for n in NAMES_IN_FIXTURES if f" {n} " in f["message"])
    return names


NAMES_IN_FIXTURES = ("DB_PASSWORD", "GITHUB_TOKEN", "AWS_SECRET_ACCESS_KEY", "stripe_api_key", "ADMIN_PASSWD",
                     "API_TOKEN", "DB_PASSWORD_FILE", "EMPTY_SECRET", "TOKEN_TTL", "TOKENIZERS_PARALLELISM")


@pytest.mark.anyio
async def test_the_webhook_warns_on_the_same_variables_as_the_cli_for_every_fixture_object(tmp_path: Path) -> None:
    import anyio
    import yaml

    fixtures = Path(__file__).resolve().parent / "rules" / "no-secret-in-env"
    objects = [doc for name in ("fail__k8s-env.yaml", "pass__k8s-env.yaml")
               for doc in yaml.safe_load_all((fixtures / name).read_text()) if doc]
    policy = write_policy(tmp_path / "p")
    compared = 0
    async with running(Settings(policy=str(policy))) as hook:
        for obj in objects:
            cli = await anyio.to_thread.run_sync(_cli_names, obj, tmp_path, policy)
            answer = await hook.answer(review(obj))
            hook_names = {(c, n) for w in answer.get("warnings") or [] if w.startswith("[no-secret-in-env]")
                          for n in NAMES_IN_FIXTURES if f" {n} " in w
                          for c in [w.split("'")[1] if "'" in w else None]}
            assert hook_names == cli, obj["metadata"]["name"]
            compared += bool(cli)
    assert compared == 2  # web and debug fail; the pass fixture's pod has nothing to say


def test_an_image_archive_config_env_is_reported_without_its_value(tmp_path: Path) -> None:
    from tests.images import oci

    if not oci.have_tools():
        pytest.fail("umoci and skopeo are required; `make test` installs them")
    oci.build(tmp_path / "layout", "app", user="10001", env=(f"API_TOKEN={PLANTED}", "TOKEN_FILE=/run/secrets/t"))
    archive = tmp_path / "app.tar"
    oci.copy(f"oci:{tmp_path / 'layout'}:app", f"docker-archive:{archive}:app:1")
    for target in (str(tmp_path / "layout"), str(archive)):
        _, stdout = _run(["check", target, "--format", "json"])
        found = [f for f in json.loads(stdout)["findings"] if f["rule"] == "no-secret-in-env"]
        assert [f["value"] for f in found] == [None] and "API_TOKEN" in found[0]["message"], target
        assert PLANTED not in stdout
