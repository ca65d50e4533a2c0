"""The repository config, `.admission.yaml`, and `--exclude` (docs/decisions.md "Walks"): patterns relative to the
repository root whatever PATH is walked, excluded files listed with their pattern, a strict file, policy overlays that
stack under --policy and flags, and this repository's own `check .` passing."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from admission.cli.main import main

ROOT = Path(__file__).resolve().parents[1]
# Passes every rule as it is; ROOT_POD runs as root (run-as-non-root, a deny by default).
APP = textwrap.dedent("""\
    apiVersion: v1
    kind: Pod
    metadata: {name: NAME}
    spec:
      securityContext: {runAsNonRoot: true, runAsUser: 10001}
      containers:
        - name: app
          image: example.org/app:1.0.0
          resources: {limits: {cpu: 500m, memory: 256Mi}}
          livenessProbe: {httpGet: {path: /, port: 8080}}
          securityContext: {readOnlyRootFilesystem: true}
""")
ROOT_POD = APP.replace("runAsNonRoot: true, runAsUser: 10001", "runAsUser: 0")


def repository(root: Path, files: dict[str, str]) -> Path:
    (root / ".git").mkdir(parents=True)
    for name, text in files.items():
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    return root


def pod(name: str, *, as_root: bool = False) -> str:
    return (ROOT_POD if as_root else APP).replace("NAME", name)


def check(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, dict]:
    code = main(["check", "--format", "json", *argv])
    out, _ = capsys.readouterr()
    return code, json.loads(out)


def denied(report: dict) -> set[str]:
    return {f["object"]["name"] for f in report["findings"] if f["severity"] == "deny" and not f["suppressed"]}


def test_patterns_are_relative_to_the_repository_root_when_a_subfolder_is_walked(tmp_path, capsys, monkeypatch) -> None:
    repository(tmp_path, {".admission.yaml": "exclude:\n  - /sub/generated/\n  - '*.rendered.yaml'\n",
                          "sub/app/pod.yaml": pod("kept", as_root=True),
                          "sub/generated/pod.yaml": pod("generated", as_root=True),
                          "sub/app/pod.rendered.yaml": pod("rendered", as_root=True)})
    monkeypatch.chdir(tmp_path)
    code, report = check(capsys, "sub/")
    assert code == 1 and denied(report) == {"kept"}
    assert {s["file"]: s["reason"] for s in report["skipped"]} == {
        "sub/generated/pod.yaml": "excluded by /sub/generated/ (.admission.yaml:2)",
        "sub/app/pod.rendered.yaml": "excluded by *.rendered.yaml (.admission.yaml:3)"}
    assert report["summary"]["config"] == ".admission.yaml" and report["summary"]["excluded_files"] == 2
    monkeypatch.chdir(tmp_path / "sub")
    code, report = check(capsys, ".")
    assert denied(report) == {"kept"} and report["summary"]["config"] == "../.admission.yaml"


def test_the_text_summary_names_the_config_and_counts_what_each_pattern_excluded(tmp_path, capsys, monkeypatch) -> None:
    repository(tmp_path, {".admission.yaml": "exclude: [/fixtures/]\n", "fixtures/a.yaml": pod("a", as_root=True),
                          "fixtures/deep/b.yaml": pod("b", as_root=True), "k8s/app.yaml": pod("app")})
    monkeypatch.chdir(tmp_path)
    assert main(["check", "."]) == 0
    summary = capsys.readouterr().out.splitlines()[-1]
    assert summary.endswith("; config .admission.yaml; excluded 2 files: 2 by /fixtures/ (.admission.yaml:1)")


def test_no_config_ignores_the_file_and_its_excludes(tmp_path, capsys, monkeypatch) -> None:
    repository(tmp_path, {".admission.yaml": "exclude: [/fixtures/]\npolicy: {rules: {run-as-non-root: off}}\n",
                          "fixtures/bad.yaml": pod("bad", as_root=True)})
    monkeypatch.chdir(tmp_path)
    assert check(capsys, ".")[0] == 0
    code, report = check(capsys, "--no-config", ".")
    assert code == 1 and denied(report) == {"bad"}
    assert report["skipped"] == [{"file": ".admission.yaml", "reason": "admission-cli's repository config"}]
    assert report["summary"]["config"] is None


def test_a_path_named_on_the_command_line_is_checked_even_inside_an_excluded_folder(tmp_path, capsys,
                                                                                   monkeypatch) -> None:
    repository(tmp_path, {".admission.yaml": "exclude: [/fixtures/]\n", "fixtures/bad.yaml": pod("bad", as_root=True)})
    monkeypatch.chdir(tmp_path)
    assert denied(check(capsys, "fixtures/bad.yaml")[1]) == {"bad"}
    assert denied(check(capsys, "fixtures")[1]) == {"bad"}


def test_as_walk_leaves_out_named_files_an_exclude_covers_as_a_walk_from_the_root_would(tmp_path, capsys,
                                                                                     monkeypatch) -> None:
    repository(tmp_path, {".admission.yaml": "exclude: [/fixtures/]\n", "fixtures/bad.yaml": pod("bad", as_root=True),
                          "k8s/app.yaml": pod("app")})
    monkeypatch.chdir(tmp_path)
    code, report = check(capsys, "--as-walk", "fixtures/bad.yaml", "k8s/app.yaml")
    assert code == 0 and report["skipped"] == [{"file": "fixtures/bad.yaml",
                                                "reason": "excluded by /fixtures/ (.admission.yaml:1)"}]


# A Dockerfile whose every line is a finding: root (no USER), `latest` base, a secret copied into the image.
BAD_DOCKERFILE = "FROM python:latest\nCOPY . /app\n"
VOTE = {"compose.yaml": "services:\n  vote:\n    build: ./vote\n    mem_limit: 64m\n    cpus: 1\n"
                        "    healthcheck: {disable: true}\n    read_only: true\n",
        "vote/Dockerfile": BAD_DOCKERFILE, "vote/.env": "TOKEN=x\n"}


def _from_dockerfile(report: dict) -> list[dict]:
    return [f for f in report["findings"] if f["file"].endswith("Dockerfile")]


@pytest.mark.parametrize("argv", [
    ("--exclude", "**/Dockerfile", "."),  # a walk: the Dockerfile is met and left out
    ("--exclude", "**/Dockerfile", "compose.yaml"),  # the compose file named: its build would read the Dockerfile
    ("--exclude", "/vote/", "."),  # the build context's folder
    ("--exclude", "/vote/", "compose.yaml"),
])
def test_an_excluded_dockerfile_is_not_read_through_the_compose_service_that_builds_it(tmp_path, capsys, monkeypatch,
                                                                                      argv) -> None:
    monkeypatch.chdir(repository(tmp_path, VOTE))
    code, everything = check(capsys, ".")
    assert {f["rule"] for f in _from_dockerfile(everything)} >= {"image-tag-pinned", "build-context"}
    code, report = check(capsys, *argv)
    assert code == 1 and _from_dockerfile(report) == []
    assert {f["rule"] for f in report["findings"]} == {"run-as-non-root"}, "no base image, context or healthcheck read"
    (finding,) = report["findings"]
    # Judged as a service whose build context is not available: the user is unknown, and the message says why.
    assert "image user is unknown" in finding["message"] and "excluded by" in finding["message"]
    assert "so it is not read" in finding["message"]
    assert report["summary"]["excluded_files"] == len([s for s in report["skipped"] if "excluded by" in s["reason"]])
    assert "vote/Dockerfile" in {s["file"] for s in report["skipped"]}, "listed as excluded, once"
    assert len([s for s in report["skipped"] if s["file"] == "vote/Dockerfile"]) == 1


def test_the_repository_configs_exclude_leaves_a_built_dockerfile_unread_unless_it_is_named(tmp_path, capsys,
                                                                                          monkeypatch) -> None:
    monkeypatch.chdir(repository(tmp_path, {**VOTE, ".admission.yaml": "exclude: [/vote/Dockerfile]\n"}))
    code, report = check(capsys, "compose.yaml")
    assert _from_dockerfile(report) == [] and report["skipped"] == [
        {"file": "vote/Dockerfile", "reason": "excluded by /vote/Dockerfile (.admission.yaml:1)"}]
    code, report = check(capsys, "compose.yaml", "vote/Dockerfile")  # named: always read, as any named PATH
    assert {f["rule"] for f in _from_dockerfile(report)} >= {"image-tag-pinned"} and report["skipped"] == []


def test_as_walk_excludes_a_built_dockerfile_as_a_walk_does(tmp_path, capsys, monkeypatch) -> None:
    monkeypatch.chdir(repository(tmp_path, VOTE))
    code, report = check(capsys, "--as-walk", "--exclude", "**/Dockerfile", "compose.yaml", "vote/Dockerfile")
    assert _from_dockerfile(report) == [] and [s["file"] for s in report["skipped"]] == ["vote/Dockerfile"]


def test_exclude_flags_come_after_the_files_patterns_and_can_re_include(tmp_path, capsys, monkeypatch) -> None:
    repository(tmp_path, {".admission.yaml": "exclude: ['/fixtures/*']\n", "fixtures/keep.yaml": pod("keep", as_root=True),
                          "fixtures/drop.yaml": pod("drop", as_root=True), "build/out.yaml": pod("out", as_root=True)})
    monkeypatch.chdir(tmp_path)
    code, report = check(capsys, ".", "--exclude", "!/fixtures/keep.yaml", "--exclude", "build/")
    assert denied(report) == {"keep"}
    assert {s["file"]: s["reason"] for s in report["skipped"]} == {
        "fixtures/drop.yaml": "excluded by /fixtures/* (.admission.yaml:1)",
        "build/out.yaml": "excluded by build/ (--exclude)", ".admission.yaml": "admission-cli's repository config"}


def test_an_exclude_without_a_config_file_is_relative_to_the_repository_root(tmp_path, capsys, monkeypatch) -> None:
    repository(tmp_path, {"a/gen/gen.yaml": pod("gen", as_root=True), "a/app.yaml": pod("app", as_root=True)})
    monkeypatch.chdir(tmp_path / "a")
    code, report = check(capsys, ".", "--exclude", "/a/gen/")
    assert denied(report) == {"app"} and report["summary"]["config"] is None


@pytest.mark.parametrize(("config", "message"), [
    ("exclude: [build/]\nexcludes: [dist/]\n", ".admission.yaml:2: unknown key 'excludes' (allowed: exclude, policy)"),
    ("exclude: tests/\n", ".admission.yaml:1: `exclude` must be a list of patterns, not a string"),
    ("exclude:\n  - ok/\n  - 'a[b'\n", ".admission.yaml:3: exclude[1]: pattern 'a[b' has a `[` without its `]`"),
    ("exclude:\n  - 7\n", ".admission.yaml:2: exclude[0] must be a string pattern, not an integer"),
    ("policy: strict.yaml\n", ".admission.yaml:1: `policy` must be a mapping"),
    ("exclude: []\nexclude: [x]\n", ".admission.yaml:2"),
    ("- /tests/\n", ".admission.yaml:1: must be a mapping with `exclude:` and `policy:`, not a list"),
])
def test_the_config_file_is_strict_and_every_error_names_file_and_line(tmp_path, capsys, monkeypatch, config,
                                                                       message) -> None:
    repository(tmp_path, {".admission.yaml": config, "k8s/app.yaml": pod("app")})
    monkeypatch.chdir(tmp_path)
    assert main(["check", "."]) == 2
    err = capsys.readouterr().err
    assert err.startswith("admission-cli: ") and message in err


def test_a_bad_key_in_the_policy_overlay_names_the_config_file_and_line(tmp_path, capsys, monkeypatch) -> None:
    repository(tmp_path, {".admission.yaml": "exclude: []\npolicy:\n  rules:\n    no-such-rule: off\n",
                          "k8s/app.yaml": pod("app")})
    monkeypatch.chdir(tmp_path)
    assert main(["check", "."]) == 2
    assert "policy error: .admission.yaml:4: unknown rule 'no-such-rule'" in capsys.readouterr().err


def test_paths_in_two_repositories_with_their_own_config_are_refused_unless_no_config(tmp_path, capsys) -> None:
    for name in ("one", "two"):
        repository(tmp_path / name, {".admission.yaml": "exclude: []\n", "app.yaml": pod(name)})
    assert main(["check", str(tmp_path / "one"), str(tmp_path / "two")]) == 2
    assert "2 repositories with their own .admission.yaml" in capsys.readouterr().err
    assert main(["check", "--no-config", str(tmp_path / "one"), str(tmp_path / "two")]) == 0


@pytest.mark.parametrize(("pattern", "path", "folder", "excluded"), [
    ("*.tmp", "a/b/x.tmp", False, True),  # no slash: at any depth
    ("/x.tmp", "a/x.tmp", False, False),  # a leading slash anchors at the root
    ("a/x.tmp", "b/a/x.tmp", False, False),  # and so does one in the middle
    ("build/", "src/build", False, False),  # a trailing slash: folders only
    ("build/", "src/build", True, True),
    ("**/gen", "gen", True, True),  # ** spans zero or more folders
    ("a/**/b", "a/b", False, True),
    ("a/**/b", "a/x/y/b", False, True),
    ("docs/**", "docs", True, False),  # everything inside docs, not docs itself
    ("docs/**", "docs/x/y.md", False, True),
    ("a?c", "a/c", False, False),  # ? and * stay within one folder
    ("[!a]x.yaml", "bx.yaml", False, True),
    ("\\!x", "!x", False, True),  # an escaped ! is a name, not a re-include
])
def test_exclude_patterns_follow_gitignore(pattern, path, folder, excluded) -> None:
    from admission.inputs.excludes import Excludes, compile_pattern

    excludes = Excludes([compile_pattern(pattern, origin="test")], root="/repo")
    assert (excludes.match(f"/repo/{path}", folder=folder) is not None) is excluded


DIFFERENTIAL_PATTERNS = ("*.tmp", "/x.tmp", "a/x.tmp", "build/", "**/gen", "a/**/b", "docs/**", "a?c", "[!a]x.yaml",
                         "\\!x", "gen", "/gen/", "a/*", "*/b", "tests/rules/", "**/*.yaml", "a/**", "x[ab].y",
                         "foo bar\\ ", "?", "**", "!keep.tmp", "!/gen/keep")
DIFFERENTIAL_FILES = ("a/b/x.tmp", "x.tmp", "a/x.tmp", "b/a/x.tmp", "src/build/o.o", "build/o", "gen/x", "gen/keep",
                      "a/gen/x", "a/b", "a/x/y/b", "docs/x/y.md", "docs/r.md", "a/c", "abc", "bx.yaml", "ax.yaml", "!x",
                      "a/b/c", "c/b/x", "tests/rules/x.yaml", "q/w.yaml", "xa.y", "foo bar ", "z", "keep.tmp",
                      "d/keep.tmp")


def test_exclude_patterns_agree_with_pathspec_on_every_pair_except_where_git_keeps_a_folder_excluded() -> None:
    """pathspec's GitIgnoreSpec is the oracle, on each pattern and each pair of patterns over every file. It differs
    from git in one place, and there we follow git: a file inside an excluded folder cannot be re-included."""
    import itertools

    import pathspec

    from admission.inputs.excludes import Excludes, compile_pattern

    differ = []
    for patterns in [[p] for p in DIFFERENTIAL_PATTERNS] + [list(c) for c in itertools.combinations(DIFFERENTIAL_PATTERNS, 2)]:
        spec = pathspec.GitIgnoreSpec.from_lines(patterns)
        ours = Excludes([compile_pattern(p, origin="t") for p in patterns], root="/repo")
        for path in DIFFERENTIAL_FILES:
            excluded = ours.match_with_parents(f"/repo/{path}") is not None
            if excluded != spec.match_file(path):
                differ.append((tuple(patterns), path, excluded))
    # E.g. `?` excludes the folder d, so git never looks inside it for `!keep.tmp`; pathspec re-includes the file.
    assert (("?", "!keep.tmp"), "d/keep.tmp", True) in differ and (("gen", "!/gen/keep"), "gen/keep", True) in differ
    for patterns, path, excluded in differ:
        folders = Excludes([compile_pattern(p, origin="t") for p in patterns], root="/repo")
        parents = ["/".join(path.split("/")[:depth]) for depth in range(1, path.count("/") + 1)]
        assert excluded and any(folders.match(f"/repo/{parent}", folder=True) for parent in parents), (patterns, path)


class _Resolutions:
    """Stands in for image resolution: records whether a run resolved, and resolves nothing."""

    def __init__(self) -> None:
        self.calls = 0

    def __call__(self, workloads: list, **_: object) -> list:
        self.calls += 1
        return workloads


OVERLAY = "policy:\n  rules:\n    run-as-non-root: warn\n  images: {resolve: true}\n"


def test_overlays_stack_built_in_then_the_config_file_then_policy_then_flags(tmp_path, capsys, monkeypatch) -> None:
    repository(tmp_path, {".admission.yaml": OVERLAY, "k8s/app.yaml": pod("root", as_root=True),
                          "offline.yaml": "images: {resolve: false}\n"})
    resolutions = _Resolutions()
    monkeypatch.setattr("admission.images.enrich.resolve_sync", resolutions)
    monkeypatch.chdir(tmp_path)

    def severities(*argv: str) -> dict[str, str]:
        _, report = check(capsys, "k8s", *argv)
        return {f["rule"]: f["severity"] for f in report["findings"] if f["object"]["name"] == "root"}

    assert severities() == {"run-as-non-root": "warn"} and resolutions.calls == 1  # the file over the built-in
    assert severities("--offline") == {"run-as-non-root": "warn"} and resolutions.calls == 1  # a flag over the file
    assert severities("--policy", "offline.yaml") == {"run-as-non-root": "warn"}  # --policy keeps what it leaves alone
    assert resolutions.calls == 1  # and beats the file where it speaks: resolve false
    assert severities("--policy", "offline.yaml", "--resolve-images") and resolutions.calls == 2  # a flag over --policy
    assert severities("--no-config") == {"run-as-non-root": "deny"}


def test_policy_beats_the_config_file_on_the_rule_both_set(tmp_path, capsys, monkeypatch) -> None:
    repository(tmp_path, {".admission.yaml": "policy:\n  rules:\n    run-as-non-root: warn\n",
                          "k8s/root.yaml": pod("root", as_root=True), "deny.yaml": "rules:\n  run-as-non-root: deny\n"})
    monkeypatch.chdir(tmp_path)
    assert check(capsys, "k8s")[0] == 0
    code, report = check(capsys, "k8s", "--policy", "deny.yaml")
    assert code == 1 and denied(report) == {"root"}


def test_this_repository_passes_its_own_check_with_its_config() -> None:
    """`admission-cli check .` at the repository root, as CI and the pre-commit hook run it."""
    proc = subprocess.run([sys.executable, "-m", "admission", "check", ".", "--format", "json"], cwd=ROOT,
                          capture_output=True, text=True, timeout=300, env={**os.environ, "PYTHONPATH": str(ROOT)})
    report = json.loads(proc.stdout)
    assert proc.returncode == 0, (report["errors"], [f for f in report["findings"] if not f["suppressed"]][:20])
    assert report["summary"]["config"] == ".admission.yaml"
    excluded = {s["file"] for s in report["skipped"] if s["reason"].startswith("excluded by ")}
    assert "examples/flask-prod-app/Dockerfile" in excluded
    assert not {f for f in excluded if f.startswith("examples/flask-prod-app/fixed/")}  # the fixed example is checked


def test_a_bad_exclude_flag_is_a_usage_error_naming_the_pattern(tmp_path, capsys, monkeypatch) -> None:
    repository(tmp_path, {"k8s/app.yaml": pod("app")})
    monkeypatch.chdir(tmp_path)
    assert main(["check", ".", "--exclude", "k8s/[ab"]) == 2
    assert "--exclude: pattern 'k8s/[ab' has a `[` without its `]`" in capsys.readouterr().err
