"""Kustomize patches in a walk (issue 20, item 3), against the real kustomize as the oracle for which files are patches.

For each tree under tests/kustomize/, every YAML file is taken away in turn from a copy and every kustomization (not a
Component) is built: kustomize's own error says whether it was a patch ("trouble configuring builtin Patch...
Transformer") or a resource ("accumulating resources"). The walk must skip exactly the patches as `kustomize-patch`
and read every resource.
"""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

import pytest

from admission.cli.main import main
from admission.inputs import walk as inputs
from admission.inputs.kustomize import KUSTOMIZATION_NAMES
from tests.supply.tools import tool_path

TREES = Path(__file__).parent / "kustomize"


def _trees() -> list[str]:
    return sorted(p.name for p in TREES.iterdir() if p.is_dir())


def _kustomize(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run([str(tool_path("kustomize")), *args], cwd=cwd, capture_output=True, text=True, timeout=120)


def _builds(root: Path) -> list[str]:
    """The folders kustomize can build: every kustomization but Components."""
    out = []
    for path in sorted(root.rglob("*")):
        if path.name in KUSTOMIZATION_NAMES and "kind: Component" not in path.read_text():
            out.append(path.parent.relative_to(root).as_posix())
    return out


def _oracle(tree: Path, work: Path) -> tuple[set[str], set[str]]:
    """(patches, resources) of a tree, as kustomize reads it: what each build says when a file is missing."""
    builds = _builds(tree)
    for build in builds:
        result = _kustomize("build", build, cwd=tree)
        assert result.returncode == 0, f"the fixture itself must build: {build}: {result.stderr}"
    patches, resources = set(), set()
    candidates = sorted(p.relative_to(tree).as_posix() for p in tree.rglob("*")
                        if p.is_file() and p.suffix in (".yaml", ".yml") and p.name not in KUSTOMIZATION_NAMES)
    for rel in candidates:
        copy = work / rel.replace("/", "_")
        shutil.copytree(tree, copy)
        (copy / rel).unlink()
        for build in builds:
            errors = _kustomize("build", build, cwd=copy).stderr
            if "trouble configuring builtin Patch" in errors:
                patches.add(rel)
            elif "accumulating resources" in errors:
                resources.add(rel)
        shutil.rmtree(copy)
    return patches, resources


@pytest.mark.parametrize("name", _trees())
def test_the_walk_skips_exactly_the_patches_kustomize_applies_and_reads_every_resource(
        name: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    tree = TREES / name
    patches, resources = _oracle(tree, tmp_path)
    assert patches and resources, "each tree has both"
    monkeypatch.chdir(tree)
    collected = inputs.collect(["."], options=inputs.Options(environ={}))
    skipped = {file: reason for file, reason in collected.skipped_reasons}
    assert {f for f, r in skipped.items() if r.startswith("kustomize-patch: ")} == patches
    assert not resources & set(skipped), "no resource is skipped"
    assert resources <= collected.files, "every resource is read"
    assert collected.errors == []


def test_patches_no_longer_give_false_verdicts_or_input_errors(capsys, monkeypatch) -> None:
    monkeypatch.chdir(TREES / "overlays")
    code = main(["check", "--format", "json", "prod"])
    report = json.loads(capsys.readouterr().out)
    assert report["errors"] == [], "patches/replicas.yaml alone was '`template` is required' (exit 2)"
    assert not [f for f in report["findings"] if f["file"] in ("prod/memory.yaml", "prod/patches/env.yaml")]
    reasons = {s["file"]: s["reason"] for s in report["skipped"]}
    assert reasons["prod/memory.yaml"] == ("kustomize-patch: a patch that prod/kustomization.yaml applies, not a whole "
                                           "object; check what kustomize builds: kubectl kustomize prod | "
                                           "admission-cli check -")
    assert {f["file"] for f in report["findings"]} == {"prod/debug-pod.yaml", "prod/not-listed.yaml"}
    assert code == 1


def test_the_command_in_the_hint_checks_what_kustomize_builds(capsys, monkeypatch) -> None:
    built = _kustomize("build", "prod", cwd=TREES / "overlays")
    assert built.returncode == 0
    monkeypatch.setattr("sys.stdin", _Stdin(built.stdout.encode()))
    code = main(["check", "--format", "json", "-"])
    report = json.loads(capsys.readouterr().out)
    by_object = {(f["object"]["name"], f["rule"]) for f in report["findings"]}
    # the patched Deployment has both limits (cpu from the base, memory from the patch): no resource-limits finding
    assert not [k for k in by_object if k[0] == "web"]
    assert ("debug", "run-as-non-root") in by_object and report["errors"] == [] and code == 1


def test_a_component_patch_names_the_component(capsys, monkeypatch) -> None:
    monkeypatch.chdir(TREES / "components")
    main(["check", "--format", "json", "."])
    reasons = {s["file"]: s["reason"] for s in json.loads(capsys.readouterr().out)["skipped"]}
    assert reasons["hardening/security.yaml"].startswith(
        "kustomize-patch: a patch of the Component hardening/kustomization.yml, not a whole object")


def test_pre_commit_passing_a_changed_patch_finds_its_kustomization_above_it(capsys, monkeypatch) -> None:
    monkeypatch.chdir(TREES / "nested")
    code = main(["check", "--format", "json", "--no-config", "--as-walk", "deploy/patches/prod/eu/limits.yaml",
                 "deploy/resources/cronjob.yaml"])
    report = json.loads(capsys.readouterr().out)
    reasons = {s["file"]: s["reason"] for s in report["skipped"]}
    assert reasons["deploy/patches/prod/eu/limits.yaml"].startswith("kustomize-patch: a patch that "
                                                                    "deploy/kustomization.yaml applies")
    assert {f["file"] for f in report["findings"]} == {"deploy/resources/cronjob.yaml"} and code == 1


def test_a_file_named_on_the_command_line_is_read_even_when_it_is_a_patch(capsys, monkeypatch) -> None:
    monkeypatch.chdir(TREES / "overlays")
    code = main(["check", "--format", "json", "prod/memory.yaml"])
    report = json.loads(capsys.readouterr().out)
    assert report["skipped"] == [] and {f["rule"] for f in report["findings"]} >= {"resource-limits"} and code == 1


class _Stdin:
    def __init__(self, data: bytes) -> None:
        import io

        self.buffer = io.BytesIO(data)
