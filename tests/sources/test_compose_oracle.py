"""Differential tests: what we read from compose projects equals what the real Docker Compose normalises.

Per service we compare image, user, published ports (host_ip, published, target, protocol), cpu and
memory limits, host networking, and what least-privilege and healthcheck read (privileged, pid/ipc host,
cap_add/cap_drop, security_opt, mounts with their host paths, healthcheck) with
`docker-compose ... config --format json`.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from admission.errors import InputError
from admission.sources.compose import load_project
from tests.corpus import corpus, corpus_dir, corpus_files, corpus_params
from tests.sources.compose_oracle import ORACLE, ORACLE_MISSING, normalise, run_oracle

pytestmark = pytest.mark.skipif(not ORACLE.exists(), reason=ORACLE_MISSING)

FIXTURES = Path(__file__).resolve().parent / "compose"

# Variables a corpus file needs before the oracle accepts it (beyond a clean environment).
CORPUS_ENV: Mapping[str, Mapping[str, str]] = {
    "plex__compose.yaml": {"PLEX_MEDIA_PATH": "/srv/media"},
}

# Corpus files the oracle rejects, what we must do instead, and why.
REJECTED: Mapping[str, tuple[str, str]] = {
    "edge__compose-go-test__merge_mem_test__TestMemLimitMixed_0.yaml":
        ("schema", "a merge fragment: the service has neither an image nor a build context"),
    "edge__compose-go-test__merge_mem_test__TestMemLimitMixed_1.yaml":
        ("schema", "a merge fragment: the service has neither an image nor a build context"),
    "edge__compose-go__full-example.yaml":
        ("schema", "service foo declares mutually exclusive `network_mode` and `networks`"),
    "edge__compose-go__loader_testdata_compose-include.yaml":
        ("input", "the included file subdir/compose-test-extends-imported.yaml was not copied"),
    "edge__compose-go__schema_using-variables.yaml":
        ("input", "with ${VARIABLE} unset the port entry is empty, which does not parse"),
    "edge__docker-compose__TestPublishLocalInclude.yaml":
        ("input", "the included common.yaml was not copied"),
    "edge__docker-compose__TestPublishWithExtends.yaml":
        ("input", "the extended common.yaml was not copied"),
    "edge__issue-docker-compose-8453__user-int.yaml":
        ("schema", "services.testcase.user must be a string (an integer user)"),
}


def _corpus_files() -> list[str]:
    return [p.name for p in corpus_files("compose", (".yaml", ".yml"))]


def _assert_same(project: Path, files: Sequence[str], *, environ: Mapping[str, str] | None = None,
                 env_files: Sequence[str] | None = None, profiles: Sequence[str] = ("*",)) -> None:
    oracle = run_oracle(files, cwd=project, environ=environ, env_files=env_files, profiles=profiles)
    assert oracle.services is not None, f"the oracle rejects {files}: {oracle.stderr}"
    result = load_project([str(project / f) for f in files], displays=list(files), environ=dict(environ or {}),
                          env_files=None if env_files is None else [str(project / f) for f in env_files],
                          profiles=profiles)
    ours = {w.name: normalise(w) for w in result.workloads}
    assert sorted(ours) == sorted(oracle.services)
    for name, expected in oracle.services.items():
        assert ours[name] == expected, f"service {name}"
    issues = [i.message for w in result.workloads for i in w.schema_issues]
    assert issues == [], "the oracle accepts this project, so there must be no compose-schema issue"


# The public corpus (tests/corpus.py; skipped without it). Its quirks are also in the owned fixture projects and
# snippets below: CPU and memory forms, user forms and port ranges (quirks/), includes and extends of missing files,
# a port from an unset variable, a service with neither image nor build, network_mode with networks, an integer user.
@corpus("compose")
@pytest.mark.parametrize("name", corpus_params("compose", _corpus_files()))
def test_corpus_file_reads_as_docker_compose_reads_it(name: str) -> None:
    folder = corpus_dir("compose")
    oracle = run_oracle([name], cwd=folder, environ=CORPUS_ENV.get(name))
    if oracle.services is None:
        assert name in REJECTED, f"the oracle rejects {name} ({oracle.stderr.strip()}); add it to REJECTED"
        expected, why = REJECTED[name]
        if expected == "input":
            with pytest.raises(InputError):
                load_project([str(folder / name)], displays=[name], environ=dict(CORPUS_ENV.get(name, {})))
        else:
            result = load_project([str(folder / name)], displays=[name], environ=dict(CORPUS_ENV.get(name, {})))
            assert [i for w in result.workloads for i in w.schema_issues], why
        return
    assert name not in REJECTED, f"the oracle now accepts {name}; drop it from REJECTED"
    _assert_same(folder, [name], environ=CORPUS_ENV.get(name))


@corpus("compose")
def test_the_corpus_is_present() -> None:
    assert len(_corpus_files()) >= 60


@dataclass(frozen=True)
class Case:
    id: str
    project: str
    files: tuple[str, ...] = ("compose.yaml",)
    environ: Mapping[str, str] = field(default_factory=dict)
    env_files: tuple[str, ...] | None = None
    profiles: tuple[str, ...] = ("*",)


CASES = [
    Case("override-ports-user-limits-network-reset-override", "overrides", ("compose.yaml", "compose.override.yaml")),
    Case("second-override-from-a-subfolder-resets", "overrides", ("compose.yaml", "compose.override.yaml", "sub/more.yaml")),
    Case("extends-same-file-and-file", "extends"),
    Case("extends-with-shell-variable", "extends", environ={"APP_USER": "5555"}),
    Case("include-with-own-env", "include"),
    Case("include-shell-variable-wins", "include", environ={"SHARED": "from-shell", "SUB_PORT": "9191"}),
    Case("dotenv", "envfiles"),
    Case("env-file-replaces-dotenv", "envfiles", env_files=("alt.env",)),
    Case("later-env-file-wins", "envfiles", env_files=("alt.env", "extra.env")),
    Case("shell-wins-over-env-file", "envfiles", environ={"TAG": "from-shell", "PORT": "7777"}, env_files=("alt.env",)),
    Case("shell-wins-over-dotenv", "envfiles", environ={"APP_UID": "3000", "BIND": ""}),
    Case("every-interpolation-form", "interpolation"),
    Case("profiles-all", "profiles"),
    Case("profiles-one", "profiles", profiles=("debug",)),
    Case("profiles-second-of-two", "profiles", profiles=("ops",)),
    Case("network-modes", "network"),
    Case("ports-short-and-long", "ports"),
    Case("cpu-memory-user-forms-and-port-ranges", "quirks"),
    Case("builds-local-remote-missing-inline", "builds"),
    Case("multi-document-file", "multidoc"),
    Case("privileges-mounts-health-every-syntax", "privileges"),
    Case("privileges-mounts-health-merged-with-override", "privileges", ("compose.yaml", "compose.override.yaml")),
    Case("privileges-shell-variables-win", "privileges", environ={"RUN_DIR": "/run", "SOCK": "podman/podman.sock",
                                                                 "CAPS": "cap_sys_module"}),
]


@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
def test_fixture_project_reads_as_docker_compose_reads_it(case: Case) -> None:
    _assert_same(FIXTURES / case.project, case.files, environ=case.environ, env_files=case.env_files,
                 profiles=case.profiles)


# Values Compose rejects but the rules can still read: our schema issue must say what Compose says.
SCHEMA_SNIPPETS = {
    "integer-user": ("services:\n  app:\n    image: x:1\n    user: 1001\n", "services.app.user must be a string"),
    "undefined-network": ("services:\n  app:\n    image: x:1\n    networks: [nope]\n",
                          'service "app" refers to undefined network nope'),
    "network-mode-with-networks": ("services:\n  app:\n    image: x:1\n    network_mode: host\n    networks: [default]\n",
                                   "service app declares mutually exclusive `network_mode` and `networks`"),
    "boolean-mem-limit": ("services:\n  app:\n    image: x:1\n    mem_limit: true\n",
                          "services.app.mem_limit must be a number or string"),
    "boolean-cpus": ("services:\n  app:\n    image: x:1\n    cpus: true\n", "services.app.cpus must be a number or string"),
    "integer-deploy-memory": ("services:\n  app:\n    image: x:1\n    deploy: {resources: {limits: {memory: 100}}}\n",
                              "services.app.deploy.resources.limits.memory must be a string"),
    "integer-network-mode": ("services:\n  app:\n    image: x:1\n    network_mode: 3\n",
                             "services.app.network_mode must be a string"),
    "no-image-no-build": ("services:\n  app:\n    user: '1000'\n",
                          'service "app" has neither an image nor a build context specified'),
    "distinct-cpus": ("services:\n  app:\n    image: x:1\n    cpus: 1\n    deploy: {resources: {limits: {cpus: '2'}}}\n",
                      "services.app: can't set distinct values on 'cpus' and 'deploy.resources.limits.cpus'"),
    "distinct-memory": ("services:\n  app:\n    image: x:1\n    mem_limit: 1g\n    deploy: {resources: {limits: {memory: 2g}}}\n",
                        "services.app: can't set distinct values on 'mem_limit' and 'deploy.resources.limits.memory'"),
    "network-mode-cycle": ("services:\n  a: {image: 'x:1', network_mode: 'service:b'}\n  b: {image: 'x:1', network_mode: 'service:a'}\n",
                           "dependency cycle detected: a -> b -> a"),
    "network-mode-undefined-service": ("services:\n  a: {image: 'x:1', network_mode: 'service:zz'}\n",
                                       'service "a" depends on undefined service "zz"'),
    "integer-privileged": ("services:\n  app:\n    image: x:1\n    privileged: 1\n",
                           "services.app.privileged must be a boolean or string"),
    "integer-pid": ("services:\n  app:\n    image: x:1\n    pid: 1\n", "services.app.pid must be a null or string"),
    "list-ipc": ("services:\n  app:\n    image: x:1\n    ipc: [host]\n", "services.app.ipc must be a string"),
    "cap-add-string": ("services:\n  app:\n    image: x:1\n    cap_add: SYS_ADMIN\n", "services.app.cap_add must be a array"),
    "cap-drop-integer-item": ("services:\n  app:\n    image: x:1\n    cap_drop: [1]\n",
                              "services.app.cap_drop.[0]: unexpected type int"),
    "security-opt-string": ("services:\n  app:\n    image: x:1\n    security_opt: seccomp:unconfined\n",
                            "services.app.security_opt must be a array"),
    "security-opt-integer-item": ("services:\n  app:\n    image: x:1\n    security_opt: [1]\n",
                                  "services.app.security_opt.0 must be a string"),
    "healthcheck-string": ("services:\n  app:\n    image: x:1\n    healthcheck: curl\n",
                           "services.app.healthcheck must be a mapping"),
    "healthcheck-test-integer": ("services:\n  app:\n    image: x:1\n    healthcheck: {test: 1}\n",
                                 "services.app.healthcheck.test must be a string"),
    "healthcheck-test-unknown-type": ("services:\n  app:\n    image: x:1\n    healthcheck: {test: [FOO, x]}\n",
                                      'healthcheck.test must start either by "CMD", "CMD-SHELL" or "NONE"'),
}


@pytest.mark.parametrize("snippet", sorted(SCHEMA_SNIPPETS))
def test_schema_issue_says_what_docker_compose_says(snippet: str, tmp_path: Path) -> None:
    text, message = SCHEMA_SNIPPETS[snippet]
    (tmp_path / "compose.yaml").write_text(text)
    oracle = run_oracle(["compose.yaml"], cwd=tmp_path)
    assert oracle.services is None and message in oracle.stderr, oracle.stderr
    result = load_project([str(tmp_path / "compose.yaml")], displays=["compose.yaml"], environ={})
    assert message in [i.message for w in result.workloads for i in w.schema_issues]


# Inputs Compose cannot read at all, and neither can the rules: an InputError, never a traceback.
INPUT_SNIPPETS = {
    "services-as-list": "services:\n  - app\n",
    "service-not-a-mapping": "services:\n  app: 3\n",
    "top-level-list": "- services\n",
    "port-bad-ip": "services:\n  app:\n    image: x:1\n    ports: ['127.0.1:8080:80']\n",
    "port-bad-container-port": "services:\n  app:\n    image: x:1\n    ports: ['abc']\n",
    "port-bad-protocol": "services:\n  app:\n    image: x:1\n    ports: ['80:80/xyz']\n",
    "port-empty": "services:\n  app:\n    image: x:1\n    ports: ['']\n",
    "port-mismatched-ranges": "services:\n  app:\n    image: x:1\n    ports: ['8000-8001:9000-9002']\n",
    "port-float": "services:\n  app:\n    image: x:1\n    ports: [1.5]\n",
    "port-long-without-target": "services:\n  app:\n    image: x:1\n    ports: [{published: 80}]\n",
    "port-long-bad-host-ip": "services:\n  app:\n    image: x:1\n    ports: [{target: 80, host_ip: localhost}]\n",
    "ports-not-a-list": "services:\n  app:\n    image: x:1\n    ports: '80:80'\n",
    "missing-required-variable": "services:\n  app:\n    image: '${NEEDED:?set NEEDED}'\n",
    "bad-interpolation": "services:\n  app:\n    image: 'x${}'\n",
    "empty-file": "",
    "services-null": "services:\n",
    "extends-cycle": "services:\n  a: {image: 'x:1', extends: a}\n",
    "include-cycle": "include: [compose.yaml]\nservices:\n  a: {image: 'x:1'}\n",
    "privileged-not-a-boolean": "services:\n  app:\n    image: x:1\n    privileged: 'maybe'\n",
    "volumes-not-a-list": "services:\n  app:\n    image: x:1\n    volumes: /a:/b\n",
    "volume-integer": "services:\n  app:\n    image: x:1\n    volumes: [1]\n",
    "volume-empty": "services:\n  app:\n    image: x:1\n    volumes: ['']\n",
    "volume-empty-section": "services:\n  app:\n    image: x:1\n    volumes: [':/b']\n",
    "volume-too-many-colons": "services:\n  app:\n    image: x:1\n    volumes: ['/a:/b:ro:extra']\n",
    "volume-long-without-type": "services:\n  app:\n    image: x:1\n    volumes: [{source: /a, target: /b}]\n",
    "volume-long-bad-type": "services:\n  app:\n    image: x:1\n    volumes: [{type: weird, source: /a, target: /b}]\n",
    "volume-bind-without-source": "services:\n  app:\n    image: x:1\n    volumes: [{type: bind, target: /x}]\n",
    "volume-without-target": "services:\n  app:\n    image: x:1\n    volumes: [{type: bind, source: /a}]\n",
    "healthcheck-disable-not-a-boolean": "services:\n  app:\n    image: x:1\n    healthcheck: {disable: 'maybe'}\n",
    "include-missing-file": "include: [missing.yaml]\nservices:\n  a: {image: 'x:1'}\n",
    "port-from-unset-variable": "services:\n  app:\n    image: x:1\n    ports: ['${PORT}']\n",
}


@pytest.mark.parametrize("snippet", sorted(INPUT_SNIPPETS))
def test_unreadable_input_is_an_input_error_as_docker_compose_rejects_it(snippet: str, tmp_path: Path) -> None:
    (tmp_path / "compose.yaml").write_text(INPUT_SNIPPETS[snippet])
    oracle = run_oracle(["compose.yaml"], cwd=tmp_path)
    assert oracle.services is None, "the oracle accepts this; it is not an input error"
    with pytest.raises(InputError) as caught:
        load_project([str(tmp_path / "compose.yaml")], displays=["compose.yaml"], environ={})
    assert caught.value.file == "compose.yaml"


def test_extending_a_missing_file_is_an_input_error_as_docker_compose_rejects_it(tmp_path: Path) -> None:
    (tmp_path / "compose.yaml").write_text("services:\n  a:\n    extends: {file: missing.yaml, service: base}\n")
    oracle = run_oracle(["compose.yaml"], cwd=tmp_path)
    assert oracle.services is None and "missing.yaml: no such file" in oracle.stderr
    with pytest.raises(InputError) as caught:
        load_project([str(tmp_path / "compose.yaml")], displays=["compose.yaml"], environ={})
    assert "missing.yaml" in f"{caught.value.file} {caught.value.message}"
