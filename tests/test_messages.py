"""Messages that send users the right way (issue 20, item 7): each says what is wrong where it is wrong.

An unfilled placeholder is a placeholder, not a lower-case rule; a compose build tagged latest says so (check denies it,
pin leaves it alone); `extends` and `build.target` errors name the compose file and line; a random host port names the
container port; a symlink loop is a symlink loop, and a linked folder in a walk is listed like a linked file.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from admission.cli.main import main


def check(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, dict]:
    code = main(["check", "--format", "json", *argv])
    return code, json.loads(capsys.readouterr().out)


def rule(report: dict, rule_id: str) -> list[dict]:
    return [f for f in report["findings"] if f["rule"] == rule_id]


POD = """apiVersion: v1
kind: Pod
metadata: {{name: app}}
spec:
  securityContext: {{runAsNonRoot: true, runAsUser: 10001}}
  containers:
    - name: app
      image: {image}
      resources: {{limits: {{cpu: 100m, memory: 64Mi}}}}
"""


@pytest.mark.parametrize(("image", "named"), [
    ("$IMAGE_URL", "$IMAGE_URL"),
    ("${IMAGE}", "${IMAGE}"),
    ("'<DOCKER_REPO>/app:1.0'", "<DOCKER_REPO>"),
    ("REGION-docker.pkg.dev/PROJECT_ID/app:v1", "REGION, PROJECT_ID"),
    ("registry.example.com/${TEAM}/app:${TAG}", "${TEAM}, ${TAG}"),
])
def test_an_unfilled_placeholder_is_named_as_one_and_still_denied(capsys, tmp_path: Path, image: str, named: str) -> None:
    (tmp_path / "pod.yaml").write_text(POD.format(image=image))
    code, report = check(capsys, str(tmp_path / "pod.yaml"))
    (finding,) = rule(report, "image-tag-pinned")
    assert finding["message"] == (f"container 'app' uses image '{image.strip(chr(39))}', an unfilled placeholder "
                                  f"({named}): this image cannot be pulled as written")
    assert "lowercase" not in finding["message"] and "render the template" in finding["remediation"]
    assert finding["severity"] == "deny" and finding["line"] == 8 and code == 1


@pytest.mark.parametrize("image", ["docker.io/MyOrg/app:1.0", "app:1.0@sha256:abc"])
def test_an_invalid_reference_without_a_placeholder_keeps_its_own_reason(capsys, tmp_path: Path, image: str) -> None:
    (tmp_path / "pod.yaml").write_text(POD.format(image=image))
    _, report = check(capsys, str(tmp_path / "pod.yaml"))
    (finding,) = rule(report, "image-tag-pinned")
    assert "invalid image reference" in finding["message"] and "placeholder" not in finding["message"]


def test_a_placeholder_in_a_dockerfile_from_is_a_placeholder(capsys, tmp_path: Path) -> None:
    (tmp_path / "Dockerfile").write_text("FROM <DOCKER_REPO>/base:1.0\nUSER 10001\n")
    _, report = check(capsys, str(tmp_path / "Dockerfile"))
    (finding,) = rule(report, "image-tag-pinned")
    assert "an unfilled placeholder (<DOCKER_REPO>)" in finding["message"] and finding["line"] == 1


def _built(tmp_path: Path, image: str) -> Path:
    (tmp_path / "app").mkdir(exist_ok=True)
    (tmp_path / "app" / "Dockerfile").write_text("FROM alpine:3.20\nUSER 10001\n")
    (tmp_path / "compose.yaml").write_text(f"services:\n  web:\n    build: app\n    image: {image}\n")
    return tmp_path / "compose.yaml"


@pytest.mark.parametrize(("image", "name"), [("myapp", "myapp"), ("myapp:latest", "myapp"),
                                               ("registry.example.com:5000/team/myapp", "registry.example.com:5000/team/myapp")])
def test_a_build_with_an_untagged_image_is_a_build_tagged_latest(capsys, tmp_path: Path, image: str, name: str) -> None:
    code, report = check(capsys, str(_built(tmp_path, image)))
    (finding,) = rule(report, "image-tag-pinned")
    assert finding["message"] == (f"service 'web' builds '{image}' locally, so the build is tagged latest: "
                                  f"tag it with a version (image: {name}:1.4.0)")
    assert finding["severity"] == "deny" and finding["line"] == 4
    assert code == 1


def test_a_build_tagged_with_a_version_passes_and_a_pulled_untagged_image_keeps_its_message(capsys, tmp_path) -> None:
    _, report = check(capsys, str(_built(tmp_path, "myapp:1.4.0")))
    assert rule(report, "image-tag-pinned") == []
    (tmp_path / "compose.yaml").write_text("services:\n  web:\n    image: myapp\n")
    _, report = check(capsys, str(tmp_path / "compose.yaml"))
    (finding,) = rule(report, "image-tag-pinned")
    assert "with no tag, which means ':latest'" in finding["message"] and "builds" not in finding["message"]


def test_pin_leaves_a_local_build_alone_and_says_it_is_one(capsys, tmp_path: Path, monkeypatch) -> None:
    (tmp_path / ".git").mkdir()
    _built(tmp_path, "myapp")
    monkeypatch.chdir(tmp_path)
    code = main(["pin", "--check", "compose.yaml"])
    out = capsys.readouterr().out
    (line,) = [line for line in out.splitlines() if line.startswith("compose.yaml:4")]
    assert line == ("compose.yaml:4  services.web.image  left alone  myapp: a local build: names the image its service "
                    "builds (build:), not one it pulls; the build is tagged latest: tag it with a version "
                    "(image: myapp:1.4.0)")
    assert (tmp_path / "compose.yaml").read_text().count("image: myapp\n") == 1, "--check writes nothing"
    assert code == 1, "the Dockerfile's alpine:3.20 is unpinned"


def test_a_missing_extends_file_is_named_at_the_line_that_extends_it(capsys, tmp_path: Path, monkeypatch) -> None:
    monkeypatch.chdir(tmp_path)
    (tmp_path / "compose.yaml").write_text("services:\n  web:\n    image: nginx:1.27.1\n    extends:\n"
                                           "      service: base\n      file: common/missing.yaml\n")
    code, report = check(capsys, "compose.yaml")
    (error,) = report["errors"]
    assert (error["file"], error["line"], error["path"]) == ("compose.yaml", 6, "services.web.extends.file")
    assert error["message"] == 'cannot extend service "web": the extended file common/missing.yaml does not exist'
    assert code == 2


def test_an_error_inside_an_extended_file_names_it_and_the_extends_that_reached_it(capsys, tmp_path: Path,
                                                                                   monkeypatch) -> None:
    monkeypatch.chdir(tmp_path)
    (tmp_path / "base.yaml").write_text("services:\n  base:\n    image: [nginx\n")
    (tmp_path / "compose.yaml").write_text("services:\n  web:\n    extends: {file: base.yaml, service: base}\n")
    _, report = check(capsys, "compose.yaml")
    (error,) = report["errors"]
    assert error["file"] == "base.yaml" and error["line"] is not None
    assert error["message"].endswith("(in base.yaml, extended by compose.yaml line 3, services.web.extends)")


@pytest.mark.parametrize(("build", "line", "where"), [
    ("    build:\n      context: .\n      target: prod\n", 5, "Dockerfile"),
    ("    build: {context: ., dockerfile_inline: \"FROM alpine:3.20 AS dev\\n\", target: prod}\n", 3,
     "the service's dockerfile_inline"),
])
def test_a_build_target_that_names_no_stage_is_an_error_on_the_target_line(capsys, tmp_path: Path, build: str,
                                                                           line: int, where: str, monkeypatch) -> None:
    monkeypatch.chdir(tmp_path)
    (tmp_path / "Dockerfile").write_text("FROM alpine:3.20 AS dev\nFROM alpine:3.20 AS test\n")
    (tmp_path / "compose.yaml").write_text("services:\n  web:\n" + build)
    code, report = check(capsys, "compose.yaml")
    (error,) = report["errors"]
    assert (error["file"], error["line"], error["path"]) == ("compose.yaml", line, "services.web.build.target")
    stages = "dev, test" if where == "Dockerfile" else "dev"
    assert error["message"] == f'target stage "prod" could not be found in {where} (its stages: {stages})'
    assert code == 2


def test_a_random_host_port_names_the_container_port(capsys, tmp_path: Path) -> None:
    (tmp_path / "compose.yaml").write_text('services:\n  web:\n    image: nginx:1.27.1\n    ports: ["5000", "8080/udp"]\n')
    _, report = check(capsys, str(tmp_path / "compose.yaml"))
    messages = [f["message"] for f in rule(report, "no-host-port")]
    assert messages == ["service 'web' publishes container port 5000 on a random host port on all host interfaces",
                        "service 'web' publishes container port 8080 on a random host port on all host interfaces"]


def test_a_symlink_loop_named_on_the_command_line_is_a_symlink_loop(capsys, tmp_path: Path) -> None:
    os.symlink("b.yaml", tmp_path / "a.yaml")
    os.symlink("a.yaml", tmp_path / "b.yaml")
    os.symlink("nowhere.yaml", tmp_path / "dangling.yaml")
    code, report = check(capsys, str(tmp_path / "a.yaml"), str(tmp_path / "dangling.yaml"), str(tmp_path / "none.yaml"))
    messages = {Path(e["file"]).name: e["message"] for e in report["errors"]}
    assert messages["a.yaml"].startswith("a symlink loop")
    assert messages["dangling.yaml"] == "a symbolic link to 'nowhere.yaml', which does not exist"
    assert messages["none.yaml"] == "no such file or directory"
    assert code == 2


def test_linked_folders_in_a_walk_are_listed_as_skipped_like_linked_files(capsys, tmp_path: Path) -> None:
    (tmp_path / "real").mkdir()
    (tmp_path / "real" / "compose.yaml").write_text("services:\n  web: {image: 'nginx:1.27.1'}\n")
    os.symlink("real", tmp_path / "linked")
    os.symlink("loop", tmp_path / "loop")
    os.symlink("real/compose.yaml", tmp_path / "compose.yaml")
    os.symlink(str(tmp_path), tmp_path / "real" / "up")  # a link back to the root: never followed
    (tmp_path / "node_modules").mkdir()
    os.symlink("node_modules", tmp_path / "vendor")  # a skipped folder name stays skipped quietly
    code, report = check(capsys, str(tmp_path))
    skipped = {Path(s["file"]).relative_to(tmp_path).as_posix(): s["reason"] for s in report["skipped"]}
    assert skipped == {"linked": "a symbolic link to a folder (walks do not follow links)",
                       "real/up": "a symbolic link to a folder (walks do not follow links)",
                       "loop": "a symbolic link (walks do not follow links)",
                       "compose.yaml": "a symbolic link (walks do not follow links)"}
    assert report["summary"]["objects"] == 1 and report["errors"] == [] and code == 1
