"""build-context end to end over real folders: what a build sends, what its COPY/ADD take, the bounded walk that
is shared per run, and the messages (architecture §4). Per-rule pass/fail fixtures live in tests/rules/build-context/."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from admission.inputs import walk as inputs
from admission.cli.main import main
from admission.policy import engine
from admission.policy.config import default_policy, parse_policy
from admission.sources import compose
from admission.sources.context import ContextCache

ROOT = Path(__file__).resolve().parents[1]
EXAMPLE = ROOT / "examples" / "flask-prod-app"
LIMITS = 'deploy: {resources: {limits: {cpus: "0.5", memory: 256M}}}'


def write(root: Path, files: dict[str, str]) -> Path:
    for name, text in files.items():
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text, encoding="utf-8")
    return root


def findings(paths: list[str], *, cwd: Path, monkeypatch: pytest.MonkeyPatch, policy: str | None = None) -> list:
    monkeypatch.chdir(cwd)
    collected = inputs.collect(paths, options=inputs.Options(environ={}))
    assert collected.errors == []
    base = default_policy()
    report = engine.evaluate(collected.workloads, parse_policy(policy, file="p", base=base) if policy else base)
    return [f for f in report.findings if f.rule == "build-context"]


def cli_json(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, dict]:
    code = main(["check", "--format", "json", *argv])
    return code, json.loads(capsys.readouterr().out)


def test_the_guides_dockerfile_sends_no_secret_so_the_demo_shows_no_build_context_finding(capsys, monkeypatch) -> None:
    monkeypatch.chdir(EXAMPLE)
    _, report = cli_json(capsys, "docker-compose.prod.yml", "Dockerfile")
    assert [f for f in report["findings"] if f["rule"] == "build-context"] == []
    _, fixed = cli_json(capsys, "fixed")
    assert fixed["findings"] == []


def test_the_guides_dockerignore_would_keep_its_own_env_out(tmp_path, monkeypatch) -> None:
    # the guide's .dockerignore lists `.env` (root only): a root .env passes, a nested one is still sent
    guide = (EXAMPLE / ".dockerignore").read_text(encoding="utf-8")
    dockerfile = (EXAMPLE / "Dockerfile").read_text(encoding="utf-8").replace("COPY --chown=appuser:appuser app.py .",
                                                                                "COPY . .")
    write(tmp_path, {".dockerignore": guide, "Dockerfile": dockerfile, ".env": "X=1\n", "app.py": ""})
    assert findings(["Dockerfile"], cwd=tmp_path, monkeypatch=monkeypatch) == []
    write(tmp_path, {"conf/.env": "X=1\n"})
    [found] = findings(["Dockerfile"], cwd=tmp_path, monkeypatch=monkeypatch)
    assert "conf/.env" in found.message and "**/.env" in found.remediation


def test_finding_names_five_files_the_copy_line_and_the_lines_to_add(tmp_path, monkeypatch) -> None:
    write(tmp_path, {
        "Dockerfile": "FROM alpine:3.20\nWORKDIR /app\nCOPY --chown=1000 .   /app\nUSER 1000\n",
        ".dockerignore": "node_modules\n",
        ".env": "", ".env.production": "", "tls/site.pem": "", "tls/ca.pem": "", "deploy/id_rsa": "",
        ".ssh/known_hosts": "", ".ssh/config": "", "app.py": "",
    })
    [found] = findings(["Dockerfile"], cwd=tmp_path, monkeypatch=monkeypatch)
    assert found.line == 3 and found.file == "Dockerfile" and found.key == "COPY --chown=1000 . /app"
    assert "`COPY --chown=1000 . /app`" in found.message
    assert "6 secret-looking entries" in found.message and "and 1 more" in found.message  # .ssh/ counts once
    assert found.value == ".env, .env.production, .ssh/, deploy/id_rsa, tls/ca.pem"  # shallow first, then by name
    # the root file by name, a nested one under **/, a pattern that caught several names once
    assert found.remediation.startswith("append these lines to .dockerignore (the last matching line wins): "
                                        "`.env`, `.env.production`, `.ssh`, `**/id_rsa`, `**/*.pem`; ")


def test_every_stage_the_final_stage_reaches_is_checked_and_others_are_not(tmp_path, monkeypatch) -> None:
    write(tmp_path, {
        "Dockerfile": ("FROM alpine:3.20 AS base\nCOPY .npmrc /root/\n"
                       "FROM base AS deps\nRUN true\n"
                       "FROM alpine:3.20 AS builder\nCOPY . /src\n"
                       "FROM alpine:3.20 AS unused\nCOPY . /other\n"
                       "FROM deps AS final\nCOPY --from=builder /src/out /app\nUSER 1000\n"),
        ".npmrc": "", ".env": "",
    })
    found = findings(["Dockerfile"], cwd=tmp_path, monkeypatch=monkeypatch)
    assert sorted(f.line for f in found) == [2, 6]
    base, builder = sorted(found, key=lambda f: f.line)
    assert "stage 'base' (which 'deps' is built FROM)" in base.message
    assert "stage 'builder' (which 'final' copies from on line 10)" in builder.message


def test_compose_build_target_decides_which_stages_are_needed(tmp_path, monkeypatch) -> None:
    write(tmp_path, {
        "compose.yaml": f"services:\n  dev:\n    build: {{context: ., target: dev}}\n    user: '1'\n    {LIMITS}\n"
                        f"  prod:\n    build: {{context: ., target: prod}}\n    user: '1'\n    {LIMITS}\n",
        "Dockerfile": "FROM alpine:3.20 AS dev\nCOPY . /src\nFROM alpine:3.20 AS prod\nCOPY app /app\n",
        ".env": "", "app/main.py": "",
    })
    found = findings(["compose.yaml"], cwd=tmp_path, monkeypatch=monkeypatch)
    assert [(f.object_name, f.line, f.file) for f in found] == [("dev", 2, "Dockerfile")]


def test_copy_sources_are_expanded_with_args_and_globs_match_folders(tmp_path, monkeypatch) -> None:
    write(tmp_path, {
        "compose.yaml": f"services:\n  web:\n    build: {{context: ., args: {{SRC: conf}}}}\n    user: '1'\n    {LIMITS}\n",
        "Dockerfile": "FROM alpine:3.20\nARG SRC=none\nCOPY ${SRC}/ /etc/app/\nCOPY co?f* /x/\nCOPY [\"other\", \"/y\"]\n",
        "conf/db.key": "", "other/notes.txt": "",
    })
    found = findings(["compose.yaml"], cwd=tmp_path, monkeypatch=monkeypatch)
    assert [(f.line, f.value) for f in found] == [(3, "conf/db.key"), (4, "conf/db.key")]


def test_add_urls_and_heredocs_read_nothing_from_the_context(tmp_path, monkeypatch) -> None:
    write(tmp_path, {
        "Dockerfile": ("# syntax=docker/dockerfile:1\nFROM alpine:3.20\n"
                       "ADD https://example.invalid/.env /etc/\nCOPY <<EOF /etc/.env\nX=1\nEOF\nUSER 1000\n"),
        ".env": "",
    })
    assert findings(["Dockerfile"], cwd=tmp_path, monkeypatch=monkeypatch) == []


def test_secret_patterns_are_a_policy_parameter(tmp_path, monkeypatch) -> None:
    write(tmp_path, {"Dockerfile": "FROM alpine:3.20\nCOPY . /app\n", "secrets.yml": "", ".env": ""})
    policy = "rules: {build-context: {params: {secret_patterns: [secrets.y*ml]}}}"
    [found] = findings(["Dockerfile"], cwd=tmp_path, monkeypatch=monkeypatch, policy=policy)
    assert found.value == "secrets.yml"


def test_secret_pattern_with_a_slash_inside_is_a_policy_error(tmp_path) -> None:
    from admission.errors import PolicyError

    with pytest.raises(PolicyError, match="base name"):
        parse_policy("rules: {build-context: {params: {secret_patterns: [config/secret.yml]}}}", file="p",
                     base=default_policy())


def test_excluded_folders_are_not_walked_unless_an_exception_reaches_into_them(tmp_path) -> None:
    write(tmp_path, {
        "Dockerfile": "FROM alpine:3.20\nCOPY . /app\n",
        ".dockerignore": "node_modules\nvendor\n!vendor/keep/*.key\n",
        "node_modules/a/.env": "", "vendor/keep/x.key": "", "vendor/drop/y.key": "",
    })
    cache = ContextCache()
    walked = cache.walk(str(tmp_path), str(tmp_path / ".dockerignore"))
    assert "vendor/keep/x.key" in walked.files
    assert not any(f.startswith(("node_modules/", "vendor/drop/")) for f in walked.files)


def test_a_context_is_walked_once_per_run_however_many_services_and_projects_share_it(tmp_path, monkeypatch) -> None:
    def service(name: str, target: str) -> str:
        return f"  {name}:\n    build: {{context: ../app, target: {target}}}\n    user: '1'\n    {LIMITS}\n"

    write(tmp_path, {
        "app/Dockerfile": "FROM alpine:3.20 AS a\nCOPY . /src\nFROM a AS b\nRUN true\n",
        "app/.env": "",
        "one/compose.yaml": "services:\n" + service("x", "a") + service("y", "b"),
        "two/compose.yaml": "services:\n" + service("z", "a"),
    })
    monkeypatch.chdir(tmp_path)
    collected = inputs.collect(["."], options=inputs.Options(environ={}))
    report = engine.evaluate(collected.workloads, default_policy())
    assert sorted(f.object_name for f in report.findings if f.rule == "build-context") == ["x", "y", "z"]
    assert collected.contexts.walked == [os.path.realpath(tmp_path / "app")]


def test_a_dockerfile_without_context_copies_walks_nothing(tmp_path, monkeypatch) -> None:
    write(tmp_path, {"Dockerfile": "FROM alpine:3.20\nCOPY --from=busybox:1.36 /bin/busybox /bin/\n", ".env": ""})
    monkeypatch.chdir(tmp_path)
    collected = inputs.collect(["Dockerfile"], options=inputs.Options(environ={}))
    assert collected.workloads[0].containers[0].build_context is None
    assert collected.contexts.walked == []


def _project(tmp_path: Path, extra: dict[str, str]) -> Path:
    return write(tmp_path, {
        "compose.yaml": f"services:\n  web:\n    build: .\n    user: '1'\n    {LIMITS}\n",
        "Dockerfile": "FROM alpine:3.20\nCOPY . /app\n", **extra,
    })


def _evaluate(tmp_path: Path, cache: ContextCache) -> list:
    path = str(tmp_path / "compose.yaml")
    result = compose.load_project([path], displays=["compose.yaml"], environ={}, contexts=cache)
    return [f for f in engine.evaluate(result.workloads, default_policy()).findings if f.rule == "build-context"]


def test_a_walk_cut_by_the_file_bound_says_so_and_reports_what_it_saw(tmp_path) -> None:
    _project(tmp_path, {".env": "", **{f"src/m{i}.py": "" for i in range(10)}, "src/deep/.env": ""})
    [found] = _evaluate(tmp_path, ContextCache(max_files=5))
    assert "stopped after 5 entries" in found.message and "there may be more" in found.message
    assert found.value == ".env"  # breadth first: the root was seen, the deep file was not


def test_a_walk_cut_by_the_time_bound_with_nothing_seen_says_the_context_was_only_partly_checked(tmp_path) -> None:
    _project(tmp_path, {".env": ""})
    [found] = _evaluate(tmp_path, ContextCache(max_seconds=-1))  # the deadline has passed before the first folder
    assert "only partly checked" in found.message and "stopped after" in found.message
    assert found.key == "context walk" and found.line == 2


def test_an_invalid_dockerignore_is_reported_with_its_line(tmp_path) -> None:
    _project(tmp_path, {".dockerignore": "*.log\n[\n", ".env": ""})
    [found] = _evaluate(tmp_path, ContextCache())
    assert "line 2" in found.message and ".dockerignore" in found.message and found.key == "dockerignore"


def test_remote_and_missing_contexts_are_skipped(tmp_path, monkeypatch) -> None:
    write(tmp_path, {
        "compose.yaml": (f"services:\n  a:\n    build: https://github.com/example/app.git\n    image: a:1\n    {LIMITS}\n"
                         f"  b:\n    build: ./missing\n    image: b:1\n    {LIMITS}\n"),
    })
    assert findings(["compose.yaml"], cwd=tmp_path, monkeypatch=monkeypatch) == []


def test_strict_policy_denies_a_leaked_secret(tmp_path, capsys, monkeypatch) -> None:
    write(tmp_path, {"Dockerfile": "FROM alpine:3.20\nCOPY . /app\n", "id_ed25519": ""})
    monkeypatch.chdir(tmp_path)
    code, report = cli_json(capsys, "--policy", str(ROOT / "policies" / "strict.yaml"), "Dockerfile")
    [found] = [f for f in report["findings"] if f["rule"] == "build-context"]
    assert found["severity"] == "deny" and code == 1


# --- PEM files: public material is not a secret (issue 20, item 5) ------------------------------------------------


def _openssl(*args: str, cwd: Path) -> None:
    import subprocess

    subprocess.run(["openssl", *args], cwd=cwd, check=True, capture_output=True, timeout=60)


@pytest.fixture()
def pem_context(tmp_path: Path) -> Path:
    """A context with PEM files made by openssl: public material under secret-looking names, and private keys."""
    tls = tmp_path / "tls"
    tls.mkdir()
    _openssl("req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes",
             "-keyout", "server-key.pem", "-out", "server.pem", "-subj", "/CN=test", "-days", "1", cwd=tls)
    _openssl("pkey", "-in", "server-key.pem", "-pubout", "-out", "public.key", cwd=tls)
    _openssl("genrsa", "-traditional", "-out", "legacy.pem", "1024", cwd=tls)
    _openssl("dhparam", "-dsaparam", "-out", "dhparam.pem", "1024", cwd=tls)
    cert = (tls / "server.pem").read_text()
    (tls / "chain-with-key.pem").write_text(cert + (tls / "server-key.pem").read_text())
    # A private key past the first 64 KiB is not looked for: the file reads as a certificate bundle.
    (tls / "long-bundle.pem").write_text(cert * (65 * 1024 // len(cert) + 1) + (tls / "server-key.pem").read_text())
    (tls / "empty.pem").write_text("")
    (tmp_path / "notes.txt").write_text("-----BEGIN PRIVATE KEY-----\n")  # not a secret-looking name: never opened
    (tmp_path / "Dockerfile").write_text("FROM alpine:3.20\nCOPY . /srv/\nUSER 1000\n")
    return tmp_path


def test_pem_files_without_a_private_key_are_not_secrets(pem_context: Path, monkeypatch) -> None:
    assert (pem_context / "tls" / "legacy.pem").read_text().startswith("-----BEGIN RSA PRIVATE KEY-----")
    [found] = findings(["Dockerfile"], cwd=pem_context, monkeypatch=monkeypatch)
    named = set(found.value.split(", "))
    assert named == {"tls/chain-with-key.pem", "tls/empty.pem", "tls/legacy.pem", "tls/server-key.pem"}, found.value
    assert "4 secret-looking entries" in found.message
    assert "`**/*.pem`" in found.remediation


def test_only_files_with_secret_looking_names_are_opened_and_each_once(pem_context: Path, monkeypatch) -> None:
    monkeypatch.chdir(pem_context)
    write(pem_context, {"compose.yaml": "services:\n  a: {build: .}\n  b: {build: .}\n"})
    files = sorted(f"tls/{p.name}" for p in (pem_context / "tls").iterdir())
    os.symlink("server.pem", pem_context / "tls" / "link.pem")  # the build sends the link, not the certificate
    collected = inputs.collect(["compose.yaml", "Dockerfile"], options=inputs.Options(environ={}))
    opened = collected.contexts.opened
    assert sorted(opened) == files
    assert "notes.txt" not in opened and "Dockerfile" not in opened
    collected = inputs.collect(["Dockerfile"], options=inputs.Options(environ={}, secret_patterns=()))
    assert collected.contexts.opened == [], "with the rule off (no patterns) nothing is opened"


def test_the_policys_own_patterns_decide_what_is_opened(pem_context: Path, capsys, monkeypatch) -> None:
    monkeypatch.chdir(pem_context)
    write(pem_context, {"tls/site.crt": (pem_context / "tls" / "server.pem").read_text(), "secrets.yml": "a: b\n",
                        "policy.yaml": "rules: {build-context: {params: {secret_patterns: ['*.crt', 'secrets.y*ml']}}}\n"})
    _, report = cli_json(capsys, "--policy", "policy.yaml", "Dockerfile")
    [found] = [f for f in report["findings"] if f["rule"] == "build-context"]
    assert found["value"] == "secrets.yml", "the certificate under *.crt is public; the YAML is not PEM"
