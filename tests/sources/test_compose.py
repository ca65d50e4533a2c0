"""Behaviour of the compose reader: the model it builds, origins, builds, exemptions and what it refuses."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from admission.errors import InputError
from admission.model import Origin
from admission.sources.compose import cpus_value, load_project, looks_like_compose, memory_bytes, parse_port
from admission.sources.compose_interp import TemplateError, parse_dotenv, substitute

REPO = Path(__file__).resolve().parents[2]
SEED = REPO / "examples" / "flask-prod-app"  # the project's copy of the tutorial example, as published
FIXTURES = Path(__file__).resolve().parent / "compose"


def _load(tmp_path: Path, text: str, *, environ: dict[str, str] | None = None, **files: str):
    (tmp_path / "compose.yaml").write_text(text)
    for name, content in files.items():
        target = tmp_path / name.replace("__", "/")
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(content)
    return load_project([str(tmp_path / "compose.yaml")], displays=["compose.yaml"], environ=environ or {})


def _service(result, name: str):
    return next(w for w in result.workloads if w.name == name)


# --- the tutorial file ----------------------------------------------------------------------------

def test_tutorial_service_has_integer_user_issue_public_port_and_limits() -> None:
    path = SEED / "docker-compose.prod.yml"
    result = load_project([str(path)], displays=["docker-compose.prod.yml"], environ={})
    assert [w.name for w in result.workloads] == ["flask-app"]
    workload = result.workloads[0]
    assert (workload.source, workload.kind, workload.namespace, workload.runtime) == ("compose", "ComposeService", None, True)
    assert workload.origin == Origin("docker-compose.prod.yml", 3, "services.flask-app")
    container = workload.containers[0]
    assert container.name == "flask-app"
    assert container.user is not None and container.user.value == "1001"
    assert [(i.message, i.origin.line, i.value) for i in workload.schema_issues] == [
        ("services.flask-app.user must be a string", 5, "1001")]
    [port] = container.host_ports
    assert (port.published, port.host_ip, port.target, port.protocol) == ("5000", None, "5000", "tcp")
    assert port.origin == Origin("docker-compose.prod.yml", 7, "services.flask-app.ports[0]")
    assert port.text == "5000:5000"
    assert {k: v.value for k, v in container.limits.items()} == {"cpu": "0.5", "memory": "512m"}
    assert container.limits["memory"].origin == Origin("docker-compose.prod.yml", 9, "services.flask-app.mem_limit")
    assert memory_bytes(container.limits["memory"].value) == 512 * 1024 * 1024
    assert cpus_value(container.limits["cpu"].value) == 0.5
    assert workload.host_network is None
    assert container.image is not None and container.image.value == "flask-prod-app:1.0-prod"
    assert result.files == ["docker-compose.prod.yml"] and result.problems == []


# --- YAML 1.2 -------------------------------------------------------------------------------------

def test_unquoted_port_pair_is_a_string_not_sexagesimal(tmp_path: Path) -> None:
    result = _load(tmp_path, "services:\n  a:\n    image: x:1\n    ports:\n      - 22:22\n    user: 1000:59\n")
    container = result.workloads[0].containers[0]
    assert [(p.published, p.target) for p in container.host_ports] == [("22", "22")]
    assert container.user is not None and container.user.value == "1000:59"
    assert result.workloads[0].schema_issues == ()


def test_on_and_yes_are_strings_in_compose_files(tmp_path: Path) -> None:
    result = _load(tmp_path, "services:\n  a:\n    image: x:1\n    user: on\n    network_mode: yes\n")
    workload = result.workloads[0]
    assert workload.containers[0].user.value == "on"
    assert workload.schema_issues == ()


def test_anchors_and_merge_keys_carry_their_defining_line(tmp_path: Path) -> None:
    text = "x-limits: &limits\n  mem_limit: 64m\n  cpus: 0.5\nservices:\n  a:\n    <<: *limits\n    image: x:1\n"
    container = _load(tmp_path, text).workloads[0].containers[0]
    assert container.limits["memory"].value == "64m"
    assert container.limits["memory"].origin.line == 2


# --- input errors -----------------------------------------------------------------------------------

def test_services_as_a_list_is_an_input_error_with_location(tmp_path: Path) -> None:
    with pytest.raises(InputError) as caught:
        _load(tmp_path, "version: '3'\nservices:\n  - web\n")
    assert (caught.value.file, caught.value.line, caught.value.path) == ("compose.yaml", 2, "services")
    assert "services must be a mapping" in caught.value.message


def test_unparsable_port_is_an_input_error_at_the_port_item(tmp_path: Path) -> None:
    with pytest.raises(InputError) as caught:
        _load(tmp_path, "services:\n  web:\n    image: x:1\n    ports:\n      - '80:80'\n      - '127.0.1:8080:80'\n")
    assert (caught.value.file, caught.value.line, caught.value.path) == ("compose.yaml", 6, "services.web.ports[1]")
    assert "invalid IP address: 127.0.1" in caught.value.message


def test_missing_required_variable_is_an_input_error_in_composes_words(tmp_path: Path) -> None:
    with pytest.raises(InputError) as caught:
        _load(tmp_path, "services:\n  web:\n    image: x:1\n    user: '${APP_UID:?set APP_UID to a uid}'\n")
    error = caught.value
    assert (error.file, error.line, error.path) == ("compose.yaml", 4, "services.web.user")
    assert error.message == "required variable APP_UID is missing a value: set APP_UID to a uid"


def test_required_variable_in_an_override_names_the_override(tmp_path: Path) -> None:
    (tmp_path / "compose.yaml").write_text("services:\n  web:\n    image: x:1\n")
    (tmp_path / "prod.yaml").write_text("services:\n  web:\n    image: '${IMAGE?}'\n")
    with pytest.raises(InputError) as caught:
        load_project([str(tmp_path / "compose.yaml"), str(tmp_path / "prod.yaml")],
                     displays=["compose.yaml", "deploy/prod.yaml"], environ={})
    assert (caught.value.file, caught.value.line) == ("deploy/prod.yaml", 3)
    assert caught.value.message == "required variable IMAGE is missing a value"


def test_a_file_that_is_not_a_mapping_is_an_input_error(tmp_path: Path) -> None:
    with pytest.raises(InputError) as caught:
        _load(tmp_path, "just a string\n")
    assert caught.value.file == "compose.yaml"


# --- overrides, extends, include: origins and display names ---------------------------------------

def test_overridden_values_carry_the_override_file_and_line() -> None:
    project = FIXTURES / "overrides"
    result = load_project([str(project / "compose.yaml"), str(project / "compose.override.yaml")],
                          displays=["overrides/compose.yaml", "overrides/compose.override.yaml"], environ={})
    web = _service(result, "web")
    container = web.containers[0]
    assert web.origin == Origin("overrides/compose.yaml", 2, "services.web")
    assert container.user.origin == Origin("overrides/compose.override.yaml", 3, "services.web.user")
    assert container.limits["memory"].origin.file == "overrides/compose.override.yaml"
    assert container.limits["cpu"].origin.file == "overrides/compose.yaml"
    by_text = {p.text: p.origin for p in container.host_ports}
    assert by_text["8080:80"].file == "overrides/compose.yaml"  # an identical entry is not appended again
    assert by_text["127.0.0.1:7070:70"] == Origin("overrides/compose.override.yaml", 7, "services.web.ports[2]")
    assert by_text["0.0.0.0:9090:90"].file == "overrides/compose.override.yaml"  # replaces "9090:90" in place
    assert "9090:90" not in by_text
    worker = _service(result, "worker")
    assert worker.host_network is not None
    assert worker.host_network.origin == Origin("overrides/compose.override.yaml", 18, "services.worker.network_mode")
    cache = _service(result, "cache").containers[0]
    assert cache.user is None  # !reset
    assert cache.limits["cpu"].value == "0.5" and cache.limits["cpu"].origin.path == "services.cache.cpus"
    assert result.files == ["overrides/compose.yaml", "overrides/compose.override.yaml"]


def test_paths_in_an_override_in_a_subfolder_resolve_against_the_project_directory() -> None:
    project = FIXTURES / "overrides"
    files = ["compose.yaml", "compose.override.yaml", "sub/more.yaml"]
    result = load_project([str(project / f) for f in files], displays=[f"p/{f}" for f in files], environ={})
    container = _service(result, "extended").containers[0]
    assert container.user.value == "7000" and container.user.origin.file == "p/common/shared.yaml"
    assert container.image_user.value == "7001" and container.image_user.origin.file == "p/app/Dockerfile"
    assert "cache" not in [w.name for w in result.workloads]  # `cache: !reset` in the last file


def test_override_exemptions_are_appended_to_the_base_ones() -> None:
    project = FIXTURES / "overrides"
    result = load_project([str(project / "compose.yaml"), str(project / "compose.override.yaml")],
                          displays=["compose.yaml", "compose.override.yaml"], environ={})
    claims = _service(result, "web").exemption_claims
    assert [(c.rules, c.reason, c.via, c.origin.file, c.origin.line) for c in claims] == [
        (("no-host-port",), "base", "x-admission", "compose.yaml", 14),
        (("resource-limits",), "override", "x-admission", "compose.override.yaml", 13),
    ]
    assert [c.origin.path for c in claims] == ["services.web.x-admission.exempt[0]"] * 2


def test_included_and_extended_files_are_displayed_relative_to_their_referrer() -> None:
    project = FIXTURES / "include"
    result = load_project([str(project / "compose.yaml")], displays=["proj/compose.yaml"], environ={})
    assert result.files == ["proj/.env", "proj/compose.yaml", "proj/sub/.env", "proj/sub/compose.yaml",
                            "proj/other/vars.env", "proj/other/svc.yaml", "proj/pd/.env", "proj/pd/compose.yaml"]
    sub = _service(result, "sub")
    assert sub.origin == Origin("proj/sub/compose.yaml", 2, "services.sub")
    # the including project's variables win over the included project's .env
    assert sub.containers[0].user.value == "from-main"
    assert sub.containers[0].host_ports[0].published == "8181"


def test_env_files_replace_the_project_dotenv_and_the_shell_wins() -> None:
    project = FIXTURES / "envfiles"
    default = load_project([str(project / "compose.yaml")], displays=["compose.yaml"], environ={})
    assert default.workloads[0].containers[0].image.value == "example/app:from-dotenv"
    replaced = load_project([str(project / "compose.yaml")], displays=["compose.yaml"], environ={"TAG": "shell"},
                            env_files=[str(project / "alt.env")])
    container = replaced.workloads[0].containers[0]
    assert container.image.value == "example/app:shell"
    assert container.user.value == "2000"  # from alt.env; .env's 1000 is not read at all
    assert container.host_ports[0].host_ip == "0.0.0.0"  # BIND=127.0.0.1 came only from .env
    assert str(project / "alt.env") in replaced.files and ".env" not in replaced.files


def test_extends_from_a_file_resolves_its_build_context_next_to_that_file() -> None:
    project = FIXTURES / "extends"
    result = load_project([str(project / "compose.yaml")], displays=["compose.yaml"], environ={})
    workload = _service(result, "fromfile")
    container = workload.containers[0]
    assert container.user.value == "4321" and container.user.origin.file == "common/base.yaml"
    assert container.image_user is not None and container.image_user.value == "1234"
    assert container.image_user.origin == Origin("common/app/Dockerfile", 3, container.image_user.origin.path)
    assert [b.value for b in container.base_images] == ["python:3.12-slim"]
    assert workload.host_network is not None and workload.host_network.origin.file == "common/base.yaml"
    assert result.dockerfiles == frozenset({os.path.realpath(project / "common/app/Dockerfile")})
    assert "common/app/Dockerfile" in result.files


# --- builds ---------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def build_result():
    project = FIXTURES / "builds"
    return load_project([str(project / "compose.yaml")], displays=["builds/compose.yaml"], environ={})


def test_build_reads_the_dockerfile_user_and_base_images_with_build_args(build_result) -> None:
    container = _service(build_result, "local").containers[0]
    assert container.image is None
    assert container.image_user is not None and container.image_user.value == "1001"
    assert container.image_user.origin.file == "builds/Dockerfile" and container.image_user.origin.line == 4
    assert [(b.value, b.origin.file, b.origin.line) for b in container.base_images] == [
        ("python:3.12-slim", "builds/Dockerfile", 2)]


def test_build_target_and_list_args_pick_the_stage_and_user(build_result) -> None:
    container = _service(build_result, "named").containers[0]
    assert container.image.value == "registry.example.com/named:1.0"
    assert container.image_user.value == "svc"
    assert container.image_user.origin.file == "builds/app/Containerfile.prod"
    assert [b.value for b in container.base_images] == ["gcr.io/distroless/static:nonroot"]


@pytest.mark.parametrize("name, context", [
    ("remote", "https://github.com/docker/welcome-to-docker.git#main"),
    ("github", "github.com/docker/welcome-to-docker"),
])
def test_remote_build_context_leaves_the_image_user_unknown(build_result, name: str, context: str) -> None:
    container = _service(build_result, name).containers[0]
    assert container.image_user is None
    assert container.image_user_unknown == f"build context '{context}' is remote; the image user cannot be read"


@pytest.mark.parametrize("name, fragment", [
    ("missing", "builds/no-such-dir"),
    ("nodockerfile", "builds/empty-dir/Dockerfile"),
])
def test_unreadable_build_context_leaves_the_image_user_unknown(build_result, name: str, fragment: str) -> None:
    container = _service(build_result, name).containers[0]
    assert container.image_user is None
    assert container.image_user_unknown is not None and fragment in container.image_user_unknown


def test_a_dockerfile_that_does_not_parse_is_a_problem_and_other_services_still_load(build_result) -> None:
    [problem] = build_result.problems
    assert (problem.file, problem.line) == ("builds/Broken.Dockerfile", 2)
    broken = _service(build_result, "broken").containers[0]
    assert broken.image_user is None and "builds/Broken.Dockerfile" in broken.image_user_unknown
    assert len(build_result.workloads) == 8


def test_inline_dockerfile_lines_count_from_the_compose_file(build_result) -> None:
    container = _service(build_result, "inline").containers[0]
    assert container.image_user.value == "4242"
    assert container.image_user.origin.file == "builds/compose.yaml"
    assert container.image_user.origin.line == 34
    assert [(b.value, b.origin.line) for b in container.base_images] == [("alpine:3.19", 33)]


def test_build_dockerfiles_are_listed_as_real_paths(build_result) -> None:
    project = FIXTURES / "builds"
    assert build_result.dockerfiles == frozenset({
        os.path.realpath(project / "Dockerfile"),
        os.path.realpath(project / "app/Containerfile.prod"),
        os.path.realpath(project / "Broken.Dockerfile"),
    })
    assert {"builds/Dockerfile", "builds/app/Containerfile.prod", "builds/Broken.Dockerfile"} <= set(build_result.files)


def test_a_build_arg_without_value_comes_from_the_environment(tmp_path: Path) -> None:
    text = "services:\n  a:\n    build:\n      context: .\n      args: [BASE]\n"
    result = _load(tmp_path, text, environ={"BASE": "alpine:3.20"}, Dockerfile="ARG BASE=alpine:latest\nFROM ${BASE}\n")
    assert [b.value for b in result.workloads[0].containers[0].base_images] == ["alpine:3.20"]


# --- networks -------------------------------------------------------------------------------------

def test_host_network_follows_service_chains_and_ignores_other_modes() -> None:
    result = load_project([str(FIXTURES / "network/compose.yaml")], displays=["compose.yaml"], environ={})
    modes = {w.name: (w.host_network.value if w.host_network else None) for w in result.workloads}
    assert modes == {"edge": "host", "sidecar": "service:edge", "sidecar2": "service:sidecar", "bridged": None,
                     "boxed": None, "attached": None, "follower": None, "plain": None}
    sidecar2 = _service(result, "sidecar2")
    assert sidecar2.host_network.origin == Origin("compose.yaml", 10, "services.sidecar2.network_mode")


def test_network_mode_cycle_is_a_schema_issue_not_a_hang(tmp_path: Path) -> None:
    text = "services:\n  a: {image: 'x:1', network_mode: 'service:b'}\n  b: {image: 'x:1', network_mode: 'service:a'}\n"
    result = _load(tmp_path, text)
    assert all(w.host_network is None for w in result.workloads)
    assert [i.message for i in _service(result, "a").schema_issues] == ["dependency cycle detected: a -> b -> a"]


# --- profiles -------------------------------------------------------------------------------------

@pytest.mark.parametrize("profiles, expected", [
    ((), ["always", "debug", "tools"]),
    (("*",), ["always", "debug", "tools"]),
    (("debug",), ["always", "debug"]),
    (("ops", "other"), ["always", "tools"]),
])
def test_profiles_select_services(profiles: tuple[str, ...], expected: list[str]) -> None:
    result = load_project([str(FIXTURES / "profiles/compose.yaml")], displays=["compose.yaml"], environ={},
                          profiles=profiles)
    assert [w.name for w in result.workloads] == expected


# --- x-admission ----------------------------------------------------------------------------------

def test_x_admission_exemptions_become_claims(tmp_path: Path) -> None:
    text = ("services:\n  a:\n    image: x:1\n    x-admission:\n      exempt:\n"
            "        - rule: no-host-port\n          reason: edge proxy\n          expires: 2027-06-30\n"
            "        - rule: [resource-limits, numeric-user]\n          reason: batch\n")
    claims = _load(tmp_path, text).workloads[0].exemption_claims
    assert [(c.rules, c.reason, c.expires, c.origin.line, c.origin.path) for c in claims] == [
        (("no-host-port",), "edge proxy", "2027-06-30", 6, "services.a.x-admission.exempt[0]"),
        (("resource-limits", "numeric-user"), "batch", None, 9, "services.a.x-admission.exempt[1]"),
    ]


@pytest.mark.parametrize("block, line", [
    ("    x-admission: [no-host-port]\n", 4),
    ("    x-admission:\n      exempt: no-host-port\n", 5),
    ("    x-admission:\n      exempt:\n        - reason: no rule given\n", 6),
    ("    x-admission:\n      exempt:\n        - just-a-string\n", 6),
])
def test_malformed_x_admission_is_a_problem_and_the_claim_is_dropped(tmp_path: Path, block: str, line: int) -> None:
    result = _load(tmp_path, "services:\n  a:\n    image: x:1\n" + block)
    assert result.workloads[0].exemption_claims == ()
    [problem] = result.problems
    assert (problem.file, problem.line) == ("compose.yaml", line)
    assert "x-admission" in problem.message


# --- limits and schema ----------------------------------------------------------------------------

def test_deploy_limits_win_and_keep_their_text_and_origin(tmp_path: Path) -> None:
    text = ("services:\n  a:\n    image: x:1\n    cpu_quota: 50000\n    deploy:\n      resources:\n"
            "        limits:\n          cpus: '0.25'\n          memory: 1.5G\n")
    limits = _load(tmp_path, text).workloads[0].containers[0].limits
    assert {k: (v.value, v.origin.line, v.origin.path) for k, v in limits.items()} == {
        "cpu": ("0.25", 8, "services.a.deploy.resources.limits.cpus"),
        "memory": ("1.5G", 9, "services.a.deploy.resources.limits.memory"),
    }


def test_cpu_quota_alone_is_a_cpu_limit(tmp_path: Path) -> None:
    limits = _load(tmp_path, "services:\n  a:\n    image: x:1\n    cpu_quota: 50000\n").workloads[0].containers[0].limits
    assert limits["cpu"].value == "50000" and limits["cpu"].origin.path == "services.a.cpu_quota"


def test_a_wrongly_typed_limit_is_a_schema_issue_and_no_limit(tmp_path: Path) -> None:
    workload = _load(tmp_path, "services:\n  a:\n    image: x:1\n    mem_limit: true\n    cpus: abc\n").workloads[0]
    assert workload.containers[0].limits == {}
    assert [(i.message, i.origin.line) for i in workload.schema_issues] == [
        ("services.a.mem_limit must be a number or string", 4),
        ('services.a.cpus: parsing "abc": invalid syntax', 5),
    ]


def test_empty_user_means_the_image_user(tmp_path: Path) -> None:
    workload = _load(tmp_path, "services:\n  a:\n    image: x:1\n    user: ''\n").workloads[0]
    assert workload.containers[0].user is None and workload.schema_issues == ()


@pytest.mark.parametrize("text, expected", [
    ("512m", 536870912), ("1.5G", 1610612736), ("50M", 52428800), ("100", 100), ("1 kb", 1024),
    ("2KiB", 2048), ("64b", 64),
])
def test_memory_sizes_read_like_docker_go_units(text: str, expected: int) -> None:
    assert memory_bytes(text) == expected


@pytest.mark.parametrize("text", ["abc", "12xb", "-1m", "1kib2", ""])
def test_bad_memory_sizes_are_refused(text: str) -> None:
    with pytest.raises(ValueError):
        memory_bytes(text)


# --- ports ----------------------------------------------------------------------------------------

_ORIGIN = Origin("c.yaml", 1, "services.a.ports[0]")


@pytest.mark.parametrize("value, expected", [
    ("5000", ("5000", None, None, "tcp")),
    (5000, ("5000", None, None, "tcp")),
    ("8000-8010:8000-8010", ("8000-8010", "8000-8010", None, "tcp")),
    ("127.0.0.1:80:80", ("80", "80", "127.0.0.1", "tcp")),
    ("[::1]:80:80", ("80", "80", "::1", "tcp")),
    ("::1:6000:6000", ("6000", "6000", "::1", "tcp")),
    ("53:53/UDP", ("53", "53", None, "udp")),
    ("127.0.0.1::5001", ("5001", None, "127.0.0.1", "tcp")),
    ("7000-7010:80", ("80", "7000-7010", None, "tcp")),
    ({"target": 80, "published": 8080, "host_ip": "127.0.0.1"}, ("80", "8080", "127.0.0.1", "tcp")),
    ({"target": "443", "published": "8443", "protocol": "udp", "mode": "host", "app_protocol": "h3", "name": "q"},
     ("443", "8443", None, "udp")),
    ({"target": 53}, ("53", None, None, "tcp")),
])
def test_port_forms_compose_accepts(value, expected) -> None:
    port = parse_port(value, origin=_ORIGIN)
    assert (port.target, port.published, port.host_ip, port.protocol) == expected
    assert port.origin == _ORIGIN


def test_long_port_text_reads_like_the_short_form() -> None:
    assert parse_port({"target": 80, "published": "8080", "host_ip": "127.0.0.1"}, origin=_ORIGIN).text == "127.0.0.1:8080:80"


@pytest.mark.parametrize("value", ["127.0.1:8080:80", "abc", "80:80/xyz", "", "65536:80", "localhost:80:80",
                                   "[::1:80:80", "80-79:80", 1.5, True, None, [80], {"published": 80}])
def test_port_forms_compose_refuses_are_input_errors(value) -> None:
    with pytest.raises(InputError) as caught:
        parse_port(value, origin=_ORIGIN)
    assert (caught.value.file, caught.value.line, caught.value.path) == ("c.yaml", 1, "services.a.ports[0]")


# --- interpolation and .env -----------------------------------------------------------------------

_ENV = {"SET": "value", "EMPTY": ""}


@pytest.mark.parametrize("template, expected", [
    ("$SET", "value"), ("${SET}", "value"), ("${UNSET}", ""), ("${UNSET:-d}", "d"), ("${EMPTY:-d}", "d"),
    ("${UNSET-d}", "d"), ("${EMPTY-d}", ""), ("${SET:+alt}", "alt"), ("${EMPTY:+alt}", ""), ("${EMPTY+alt}", "alt"),
    ("${UNSET+alt}", ""), ("$$SET", "$SET"), ("a$$$SET", "a$value"), ("${UNSET:-${EMPTY:-${SET}}}", "value"),
    ("${UNSET:-x}-${SET}", "x-value"), ("${UNSET-x?y}", "x?y"), ("${UNSET:-a}}", "a}"), ("x$", "x$"),
    ("x$1", "x$1"), ("$SET_x", ""), ("${SET?}", "value"),
])
def test_interpolation_forms(template: str, expected: str) -> None:
    assert substitute(template, _ENV.get) == expected


@pytest.mark.parametrize("template, message", [
    ("${UNSET:?need it}", "required variable UNSET is missing a value: need it"),
    ("${EMPTY:?}", "required variable EMPTY is missing a value"),
    ("${UNSET?msg-with-${SET}}", "required variable UNSET is missing a value: msg-with-value"),
    ("${SET:-x}${UNSET?later}", "required variable UNSET is missing a value: later"),
])
def test_required_variables(template: str, message: str) -> None:
    with pytest.raises(TemplateError) as caught:
        substitute(template, _ENV.get)
    assert caught.value.message == message


@pytest.mark.parametrize("template", ["${}", "${9}", "${A:}", "${A/x}", "x${"])
def test_malformed_braces_are_refused(template: str) -> None:
    with pytest.raises(TemplateError):
        substitute(template, _ENV.get)


def test_dotenv_dialect() -> None:
    text = ("# comment\nA=plain # trailing\nB=no#comment\nexport C=exported\nD=\"x ${A} \\n \\\" q\"\n"
            "E='single ${A} \\' x'\nF: yaml style\n H = spaced  \nI=\"multi\nline\"\nJ=$$lit\nK=${SHELL_ONLY}\n"
            "INHERIT\nMISSING\nO=\nP=a=b\n")
    env = parse_dotenv(text, file=".env", lookup={"SHELL_ONLY": "sh", "INHERIT": "inh"}.get)
    assert env == {"A": "plain", "B": "no#comment", "C": "exported", "D": 'x plain \n " q', "E": "single ${A} ' x",
                   "F": "yaml style", "H": "spaced", "I": "multi\nline", "J": "$lit", "K": "sh", "INHERIT": "inh",
                   "O": "", "P": "a=b"}


def test_dotenv_errors_name_the_line() -> None:
    with pytest.raises(InputError) as caught:
        parse_dotenv("A=1\nB='open\n", file="x.env", lookup=lambda _: None)
    assert (caught.value.file, caught.value.line) == ("x.env", 2)


# --- recognition ----------------------------------------------------------------------------------

@pytest.mark.parametrize("doc, expected", [
    ({"services": {}}, True), ({"include": ["a.yaml"]}, True), ({"apiVersion": "v1", "kind": "Pod", "services": 1}, False),
    ({"kind": "Thing", "services": {}}, False), ({"name": "x"}, False), (["services"], False), ("services", False),
])
def test_looks_like_compose(doc, expected: bool) -> None:
    assert looks_like_compose(doc) is expected
