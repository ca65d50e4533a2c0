"""A Dockerfile (or a compose build) whose final stage sets no USER runs as its base image's user (issue 20, item 1).

Every sentence must be true: FROM scratch is root, known; a base image resolved with --resolve-images is judged by its
config's User exactly as a Kubernetes container with that image and no securityContext is judged (the kubelet's table,
tests/images/test_kubelet_table.py); a base not resolved, unavailable, or named by a build arg with no value is
"unknown", never "runs as root". The verdict stays a deny until something establishes a non-root user, as a Pod that
establishes nothing is denied offline. Real images: umoci builds them, skopeo pushes them to a loopback registry.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from admission.cli.main import main
from tests.images import oci
from tests.images.registry import Registry

# image config User -> (what a Pod with that image and no securityContext gets, words its finding says)
USERS = {
    "": ("deny", "runs as root"),
    "0": ("deny", "runs as root"),
    "0:0": ("deny", "runs as root"),
    "root": ("deny", "runs as root"),
    "65532": ("pass", None),  # gcr.io/distroless/static-debian12:nonroot
    "101": ("pass", None),  # nginxinc/nginx-unprivileged
    "65532:65532": ("pass", None),
    "2147483647": ("pass", None),
    "2147483648": ("deny", "invalid user id (2147483648)"),
    "appuser": ("pass", None),  # a name passes; numeric-user warns
}


def _tag(user: str) -> str:
    return "u-" + (user.replace(":", "-") or "none")


@pytest.fixture(scope="module")
def bases(registry: Registry, layout: Path) -> dict[str, str]:
    refs = {}
    for user in USERS:
        oci.push(oci.build(layout, f"base-{_tag(user)}", user=user, history=(f"USER {user}",)), registry.host,
                 f"bases/{_tag(user)}:1.0")
        refs[user] = f"{registry.host}/bases/{_tag(user)}:1.0"
    return refs


def _check(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, dict]:
    code = main(["check", "--format", "json", "--no-cache", *argv])
    return code, json.loads(capsys.readouterr().out)


def _project(root: Path, bases: dict[str, str]) -> None:
    """For each base: a Pod with that image and nothing else, a Dockerfile FROM it, and a compose service building it."""
    pods, services = [], []
    for user, image in bases.items():
        name = _tag(user)
        pods.append({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": name}, "spec": {"containers": [
            {"name": "app", "image": image, "resources": {"limits": {"cpu": "100m", "memory": "64Mi"}},
             "readinessProbe": {"tcpSocket": {"port": 8080}}}]}})
        folder = root / name
        folder.mkdir()
        (folder / "Dockerfile").write_text(f"FROM {image} AS base\nFROM base\nCOPY app /app\n")
        (folder / "app").write_text("")
        services.append(f"  {name}:\n    build: {name}\n    image: app-{name}:1.0\n    mem_limit: 64m\n    cpus: 1\n"
                        "    healthcheck: {test: [CMD, 'true']}\n")
    (root / "pods.json").write_text(json.dumps({"apiVersion": "v1", "kind": "List", "items": pods}))
    (root / "compose.yaml").write_text("services:\n" + "".join(services))


def test_a_resolved_base_decides_as_the_same_image_in_a_pod_without_security_context(
        capsys, tmp_path: Path, bases: dict[str, str], policy: Path) -> None:
    _project(tmp_path, bases)
    code, report = _check(capsys, "--resolve-images", "--policy", str(policy), str(tmp_path / "pods.json"),
                          str(tmp_path / "compose.yaml"), *(str(tmp_path / _tag(u) / "Dockerfile") for u in USERS))
    assert report["errors"] == [] and not [f for f in report["findings"] if f["rule"] == "image-config-unavailable"]
    denied: dict[tuple[str, str], list[dict]] = {}
    for finding in report["findings"]:
        if finding["rule"] == "run-as-non-root":
            name = finding["object"]["name"] if finding["source"] != "dockerfile" else Path(finding["file"]).parent.name
            denied.setdefault((finding["source"], name), []).append(finding)
    for user, (verdict, words) in USERS.items():
        name = _tag(user)
        for source in ("kubernetes", "compose", "dockerfile"):
            found = denied.get((source, name), [])
            assert ("deny" if found else "pass") == verdict, (user, source, found)
            if words:
                assert words in found[0]["message"], (user, source, found[0]["message"])
                assert "unknown" not in found[0]["message"]
    named = {(f["source"], f["value"]) for f in report["findings"] if f["rule"] == "numeric-user"}
    assert {("kubernetes", "appuser"), ("compose", "appuser"), ("dockerfile", "appuser")} <= named
    assert code == 1


def test_distroless_nonroot_style_bases_pass_once_resolved_and_are_unknown_offline(
        capsys, tmp_path: Path, bases: dict[str, str], policy: Path) -> None:
    dockerfile = tmp_path / "Dockerfile"
    dockerfile.write_text(f"FROM {bases['65532']}\nCOPY app /app\n")
    code, report = _check(capsys, str(dockerfile))
    (finding,) = [f for f in report["findings"] if f["rule"] == "run-as-non-root"]
    assert finding["message"] == (f"the final stage ('stage 0'): no USER in this Dockerfile, and the user of its base "
                                  f"image {bases['65532']} is not known offline")
    assert finding["remediation"].endswith("or pass --resolve-images to read it") and "USER 10001" in finding["remediation"]
    assert "root" not in finding["message"] and finding["severity"] == "deny" and code == 1
    code, report = _check(capsys, "--resolve-images", "--policy", str(policy), str(dockerfile))
    assert [f for f in report["findings"] if f["rule"] in ("run-as-non-root", "numeric-user")] == [] and code == 0


def test_an_unavailable_base_config_is_unknown_on_the_line_that_says_unavailable(
        capsys, tmp_path: Path, registry: Registry, policy: Path) -> None:
    dockerfile = tmp_path / "Dockerfile"
    dockerfile.write_text(f"FROM {registry.host}/bases/absent:1.0\nCOPY app /app\n")
    code, report = _check(capsys, "--resolve-images", "--policy", str(policy), str(dockerfile))
    by_line: dict[int, list[dict]] = {}
    for finding in report["findings"]:
        by_line.setdefault(finding["line"], []).append(finding)
    rules = {f["rule"]: f for f in by_line[1]}
    assert set(rules) >= {"image-config-unavailable", "run-as-non-root"}
    assert "unknown: its config is unavailable (not-found" in rules["run-as-non-root"]["message"]
    assert not [f for f in by_line[1] if "runs as root" in f["message"]], "one line never says unknown and root"
    assert rules["run-as-non-root"]["severity"] == "deny" and code == 1


def test_a_compose_service_built_from_such_a_dockerfile_says_the_same(
        capsys, tmp_path: Path, bases: dict[str, str], policy: Path) -> None:
    (tmp_path / "Dockerfile").write_text(f"FROM {bases['101']}\n")
    (tmp_path / "compose.yaml").write_text("services:\n  web:\n    build: .\n    image: web:1.0\n    mem_limit: 64m\n"
                                           "    cpus: 1\n    healthcheck: {test: [CMD, 'true']}\n")
    _, report = _check(capsys, str(tmp_path / "compose.yaml"))
    (finding,) = [f for f in report["findings"] if f["rule"] == "run-as-non-root"]
    assert finding["message"] == (f"service 'web': no USER in its build Dockerfile, and the user of its base image "
                                  f"{bases['101']} is not known offline")
    assert (Path(finding["file"]).name, finding["line"]) == ("Dockerfile", 1)
    assert 'user: "10001"' in finding["remediation"] and "--resolve-images" in finding["remediation"]
    code, report = _check(capsys, "--resolve-images", "--policy", str(policy), str(tmp_path / "compose.yaml"))
    assert not [f for f in report["findings"] if f["rule"] == "run-as-non-root"] and code == 0


# --- offline: what is known without a registry -------------------------------------------------------------------


def _run_as_non_root(workloads: list) -> list:
    from admission.policy import engine
    from admission.policy.config import default_policy

    return [f for f in engine.evaluate(workloads, default_policy()).findings if f.rule == "run-as-non-root"]


@pytest.mark.parametrize("text", [
    "FROM scratch\nCOPY app /app\n",
    "FROM scratch AS base\nCOPY app /app\nFROM base AS final\n",
    "FROM golang:1.23 AS build\nRUN go build -o /app .\nFROM scratch\nCOPY --from=build /app /app\n",
])
def test_from_scratch_without_user_runs_as_root_and_says_so(text: str) -> None:
    from admission.sources import dockerfile

    (finding,) = _run_as_non_root(dockerfile.load(text, file="Dockerfile"))
    assert "runs as root: no USER instruction, and the image is built FROM scratch" in finding.message
    assert "unknown" not in finding.message and "--resolve-images" not in finding.remediation


def test_a_base_through_stages_is_the_one_named_and_never_called_root() -> None:
    from admission.sources import dockerfile

    text = "FROM python:3.12-slim AS base\nRUN pip install app\nFROM base\nCMD [\"app\"]\n"
    (finding,) = _run_as_non_root(dockerfile.load(text, file="Dockerfile"))
    assert finding.message == ("the final stage ('stage 1'): no USER in this Dockerfile, and the user of its base "
                               "image python:3.12-slim is not known offline")
    assert finding.line == 3 and finding.severity == "deny"


def test_from_a_build_arg_with_no_value_is_unknown_and_says_how_to_give_it() -> None:
    from admission.sources import dockerfile

    text = "ARG BASE_IMAGE\nFROM ${BASE_IMAGE}\nCOPY app /app\n"
    (finding,) = _run_as_non_root(dockerfile.load(text, file="Dockerfile"))
    assert finding.message == ("the final stage ('stage 0'): no USER in this Dockerfile, and its base image "
                               "${BASE_IMAGE} is set by build arg BASE_IMAGE with no value, so its user is unknown")
    assert "--build-arg BASE_IMAGE=<image> with --resolve-images" in finding.remediation and finding.line == 2
    (scratch,) = _run_as_non_root(dockerfile.load(text, file="Dockerfile", build_args={"BASE_IMAGE": "scratch"}))
    assert "runs as root" in scratch.message, "given scratch, the user is known"


def test_a_compose_build_whose_build_args_leave_the_base_unset_is_unknown(tmp_path: Path) -> None:
    from admission.sources import compose

    (tmp_path / "Dockerfile").write_text("ARG BASE_IMAGE\nFROM ${BASE_IMAGE}\n")
    (tmp_path / "compose.yaml").write_text("services:\n  web:\n    build: .\n")
    result = compose.load_project([str(tmp_path / "compose.yaml")], displays=["compose.yaml"], environ={})
    (finding,) = _run_as_non_root(result.workloads)
    assert finding.message.startswith("service 'web': no USER in its build Dockerfile, and its base image ${BASE_IMAGE}")
    assert "set it in the service's build.args with --resolve-images" in finding.remediation
    (tmp_path / "compose.yaml").write_text("services:\n  web:\n    build:\n      context: .\n"
                                           "      args: {BASE_IMAGE: 'python:3.12-slim'}\n")
    result = compose.load_project([str(tmp_path / "compose.yaml")], displays=["compose.yaml"], environ={})
    (finding,) = _run_as_non_root(result.workloads)
    assert "the user of its base image python:3.12-slim is not known offline" in finding.message


def test_a_compose_user_still_decides_before_any_dockerfile(tmp_path: Path) -> None:
    from admission.sources import compose

    (tmp_path / "Dockerfile").write_text("FROM python:3.12-slim\n")
    (tmp_path / "compose.yaml").write_text("services:\n  web:\n    build: .\n    user: '10001'\n")
    result = compose.load_project([str(tmp_path / "compose.yaml")], displays=["compose.yaml"], environ={})
    assert _run_as_non_root(result.workloads) == []
