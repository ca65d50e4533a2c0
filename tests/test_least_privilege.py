"""least-privilege beyond the fixtures: its parameters are validated strictly, the runtime-socket message says why
the socket is root on the host, finding keys are stable, and `explain` documents it."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from admission.cli.main import main
from admission.errors import PolicyError
from admission.policy import engine
from admission.policy.config import default_policy, parse_policy
from admission.sources.compose import load_project


@pytest.mark.parametrize(("params", "complaint"), [
    ("{profile: strict}", "'strict' is not a profile (baseline or restricted)"),
    ("{profile: 1}", "must be str"),
    ("{allowed_capabilities: [ALL]}", "ALL is never allowed"),
    ("{allowed_capabilities: [CAP_NET_ADMIN]}", "without the CAP_ prefix"),
    ("{allowed_capabilities: [net_admin]}", "did you mean NET_ADMIN?"),
    ("{allowed_capabilities: [NOT_A_CAP]}", "is not a Linux capability name"),
    ("{allowed_capabilities: NET_ADMIN}", "must be a list"),
    ("{allowed: [NET_ADMIN]}", "unknown parameter 'allowed'"),
])
def test_a_bad_least_privilege_parameter_is_a_policy_error_that_names_it(params: str, complaint: str) -> None:
    with pytest.raises(PolicyError) as caught:
        parse_policy(f"rules:\n  least-privilege: {{params: {params}}}\n", file="p.yaml", base=default_policy())
    assert complaint in str(caught.value) and "p.yaml:2" in str(caught.value)


def test_the_strict_policy_uses_the_restricted_profile_and_denies_missing_health_checks() -> None:
    strict = Path(__file__).resolve().parents[1] / "policies" / "strict.yaml"
    policy = parse_policy(strict.read_text(), file=str(strict), base=default_policy())
    assert policy.rules["least-privilege"].params["profile"] == "restricted"
    assert policy.rules["least-privilege"].severity == "deny" and policy.rules["healthcheck"].severity == "deny"


def test_a_compose_service_mounting_the_docker_socket_is_denied_as_root_on_the_host(tmp_path, capsys) -> None:
    compose = tmp_path / "compose.yaml"
    compose.write_text("services:\n  agent:\n    image: registry.example.com/agent:1.0\n"
                       "    volumes: ['/var/run/docker.sock:/var/run/docker.sock']\n")
    code = main(["check", "--format", "json", str(compose)])
    report = json.loads(capsys.readouterr().out)
    [finding] = [f for f in report["findings"] if f["rule"] == "least-privilege"]
    assert code == 1 and finding["severity"] == "deny" and finding["line"] == 4
    assert "Docker socket /var/run/docker.sock" in finding["message"] and "root on the host" in finding["message"]
    assert "privileged container" in finding["message"] and finding["container"] == "agent"
    assert finding["path"] == "services.agent.volumes[0]"


def test_finding_keys_name_the_field_and_value_not_the_position(tmp_path) -> None:
    compose = tmp_path / "compose.yaml"
    compose.write_text("services:\n  a:\n    image: registry.example.com/a:1.0\n    privileged: true\n"
                       "    cap_add: [cap_sys_admin]\n    security_opt: ['seccomp=unconfined']\n"
                       "    volumes: ['./data:/data', '/var/run/containerd/containerd.sock:/c.sock']\n")
    result = load_project([str(compose)], displays=["compose.yaml"], environ={})
    found = engine.evaluate(result.workloads, default_policy()).findings
    assert sorted(f.key for f in found if f.rule == "least-privilege") == [
        "cap_add SYS_ADMIN", "privileged", "security_opt seccomp:unconfined", "volumes /run/containerd/containerd.sock"]


@pytest.mark.parametrize("rule", ["least-privilege", "healthcheck"])
def test_explain_prints_why_fix_example_and_the_parameters(rule: str, capsys) -> None:
    assert main(["explain", rule]) == 0
    out = capsys.readouterr().out
    assert "Why:" in out and "Fix:" in out and "Example:" in out
    if rule == "least-privilege":
        assert "profile (default 'baseline')" in out and "allowed_capabilities" in out


# --- compose's host (issue 27) ----------------------------------------------------------------------

def _compose_findings(tmp_path: Path, service: str, policy: str = "") -> list:
    compose = tmp_path / "compose.yaml"
    compose.write_text("services:\n  a:\n    image: registry.example.com/a:1.0\n" + service)
    result = load_project([str(compose)], displays=["compose.yaml"], environ={})
    base = default_policy()
    policy_obj = parse_policy(policy, file="p.yaml", base=base) if policy else base
    return [f for f in engine.evaluate(result.workloads, policy_obj).findings if f.rule == "least-privilege"]


@pytest.mark.parametrize("policy", ["", "rules:\n  least-privilege: {params: {profile: restricted}}\n"])
def test_userns_and_cgroup_host_are_warnings_whatever_the_rule_severity(tmp_path, policy) -> None:
    found = _compose_findings(tmp_path, "    userns_mode: host\n    cgroup: host\n    security_opt: [no-new-privileges]\n"
                                        "    cap_drop: [ALL]\n", policy)
    assert [(f.key, f.severity) for f in found] == [("userns_mode host", "warn"), ("cgroup host", "warn")]
    assert "hostUsers: true" in found[0].message and "userns-remap" in found[0].message
    assert "cgroup v1" in found[1].message


def test_a_relative_bind_is_the_projects_own_files_wherever_the_project_is(tmp_path) -> None:
    """A project checked out under /root (or /etc, /usr) binds its own files: the resolved path decides nothing. A
    relative path that climbs out of the project is judged where it lands."""
    from admission.model import HostMount, Origin, Workload
    from admission.policy.rules.privilege import least_privilege

    here = Origin("compose.yaml", 5, "services.a.volumes[0]")
    own = HostMount("/data", "bind", "/root/project/data", here, relative=True)
    out = HostMount("/e", "bind", "/etc", here, relative=False)
    workload = Workload("compose", "ComposeService", "a", None, here, (), volumes=(own, out))
    assert [v.key for v in least_privilege(workload, {})] == ["volumes /etc"]
    compose = tmp_path / "compose.yaml"
    compose.write_text("services:\n  a:\n    image: x:1\n    volumes: ['./data:/d', '~/c:/c', '../x:/x', "
                       f"'{'../' * 40}etc:/e']\n")
    [workload] = load_project([str(compose)], displays=["compose.yaml"], environ={}).workloads
    assert [(m.name, m.relative) for m in workload.volumes] == [("/d", True), ("/c", True), ("/x", False), ("/e", False)]
    assert workload.volumes[3].path == "/etc"


def test_a_host_system_path_finding_says_what_it_exposes_and_that_read_only_does_not_help(tmp_path) -> None:
    [etc, localtime] = _compose_findings(tmp_path, "    volumes: ['/etc/ssh:/ssh:ro', '/etc/localtime:/etc/localtime']\n")
    assert etc.severity == "deny" and etc.key == "volumes /etc/ssh" and etc.value == "/etc/ssh"
    assert "inside the host's /etc" in etc.message and "read-only does not help" in etc.message
    assert "passes read-only (/etc/localtime:/etc/localtime:ro)" in localtime.message
    assert "relative path" in etc.remediation


def test_gpus_cdi_devices_and_reservations_pass_but_host_devices_are_denied(tmp_path) -> None:
    found = _compose_findings(tmp_path, "    gpus: all\n    devices: [nvidia.com/gpu=all, /dev/snd]\n"
                                        "    deploy: {resources: {reservations: {devices: [{capabilities: [gpu]}]}}}\n")
    assert [f.key for f in found] == ["devices /dev/snd"]
