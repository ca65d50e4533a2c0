"""image-provenance: builder history formats (transcribed and live-built), the label check, and the image fixtures."""

from __future__ import annotations

import json
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from admission.findings import Violation
from admission.model import Container, HistoryEntry, ImageConfig, Located, Origin, Workload
from admission.policy.rules import users
from admission.policy.rules.provenance import (
    MAX_HISTORY_FINDINGS,
    REVISION_LABEL,
    SOURCE_LABEL,
    image_provenance,
    recognise,
)
from admission.sources import archive
from tests.images import oci
from tests.images.history import make_fixtures

HISTORY = Path(__file__).resolve().parent / "history"
RULES = Path(__file__).resolve().parents[1] / "rules"
LABELS = {SOURCE_LABEL: "https://github.com/example/app", REVISION_LABEL: "0" * 40}


def _transcripts() -> list[Path]:
    return sorted(HISTORY.glob("*.json"))


def _entry(raw: dict[str, Any]) -> HistoryEntry:
    return HistoryEntry(created_by=raw.get("created_by", ""), comment=raw.get("comment", ""),
                        author=raw.get("author", ""), created=raw.get("created", ""),
                        empty_layer=bool(raw.get("empty_layer", False)))


def _image(history: list[HistoryEntry] | tuple[HistoryEntry, ...], *, labels: dict[str, str] | None = None,
           name: str = "example.com/app:1") -> Workload:
    config = ImageConfig(reference=name, digest=None, user="1001", history=tuple(history),
                         labels=LABELS if labels is None else labels)
    origin = Origin("app.tar", None, "blobs/sha256/abc")
    return Workload(source="image", kind="Image", name=name, namespace=None, origin=origin, runtime=False,
                    containers=(Container(name=name, origin=origin, image_config=config),))


def _history_findings(workload: Workload) -> list[Violation]:
    return [v for v in image_provenance(workload, {}) if "history[" in v.message]


# ---------------------------------------------------------------- transcribed builder formats


@pytest.mark.parametrize("path", _transcripts(), ids=lambda p: p.stem)
def test_transcribed_history_is_judged_as_its_builder_writes_it(path: Path) -> None:
    data = json.loads(path.read_text(encoding="utf-8"))
    labels = data.get("labels", {})
    names = [recognise(_entry(raw), labels) for raw in data["history"]]
    if data["verdict"] == "pass":
        assert None not in names, f"false positive on {data['builder']}: entries {[i for i, n in enumerate(names) if n is None]}"
        assert data["builder"] in names, f"{path.name}: no entry recognised as {data['builder']}: {names}"
    else:
        assert None in names, f"{path.name}: a hand-made step went unnoticed"


def test_every_transcript_has_a_source_note() -> None:
    sources = (HISTORY / "SOURCES.md").read_text(encoding="utf-8")
    missing = [p.name for p in _transcripts() if f"`{p.name}`" not in sources]
    assert not missing, f"add these to SOURCES.md: {missing}"


def test_docker_commit_finding_says_what_was_seen_and_keeps_the_commit_message() -> None:
    data = json.loads((HISTORY / "docker-commit.json").read_text(encoding="utf-8"))
    [finding] = _history_findings(_image([_entry(h) for h in data["history"]]))
    assert finding.value == "bash"
    assert "history[2] (step 3 of 3)" in finding.message
    assert "bare container command" in finding.message and "I did all these things" in finding.message
    assert "docker commit" in finding.message and "Dockerfile" in finding.remediation


def test_empty_created_by_with_a_wall_clock_time_is_flagged_but_a_reproducible_epoch_is_not() -> None:
    committed = _entry({"created": "2023-05-09T14:02:11.120841Z"})
    crane = _entry({"created": "0001-01-01T00:00:00Z"})
    [finding] = _history_findings(_image([crane, committed]))
    assert finding.value is None and "no created_by and a wall-clock timestamp" in finding.message
    assert "history[1] (step 2 of 2)" in finding.message


def test_docker_import_is_named_as_such() -> None:
    [finding] = _history_findings(_image([_entry({"created": "2024-12-09T14:10:14Z", "comment": "Imported from -"})]))
    assert "`docker import`" in finding.message and "Imported from -" in finding.message


def test_the_shell_buildah_commit_records_is_explained_as_buildah_commit() -> None:
    workload = _image([_entry({"created_by": "/bin/sh", "created": "2026-01-01T00:00:00Z"})],
                      labels={**LABELS, "io.buildah.version": "1.28.2"})
    [finding] = _history_findings(workload)
    assert "buildah commit" in finding.message and finding.value == "/bin/sh"


def test_a_shell_command_without_the_dash_c_form_is_not_a_dockerfile_step() -> None:
    for created_by in ("/bin/bash", "sh", "python3 app.py", "/bin/sh -x"):
        assert recognise(_entry({"created_by": created_by, "created": "2024-01-01T00:00:00Z"}), {}) is None, created_by
    for created_by in ("/bin/sh -c apt-get update", "/bin/bash -euxo pipefail -c make", "|2 A=1 B=two /bin/sh -c make",
                       "/bin/sh -c #(nop)  USER 1001"):
        assert recognise(_entry({"created_by": created_by}), {}) is not None, created_by


def test_long_created_by_is_truncated_in_the_value() -> None:
    long_cmd = "python3 -m http.server " + "x" * 300
    [finding] = _history_findings(_image([_entry({"created_by": long_cmd, "created": "2024-01-01T00:00:00Z"})]))
    assert finding.value is not None and len(finding.value) == 120 and finding.value.endswith("…")


def test_many_hand_made_steps_are_capped_and_the_rest_counted() -> None:
    entries = [_entry({"created_by": f"bash step{i}", "created": "2024-01-01T00:00:00Z"}) for i in range(MAX_HISTORY_FINDINGS + 3)]
    findings = _history_findings(_image(entries))
    assert len(findings) == MAX_HISTORY_FINDINGS
    assert "3 more unrecognised history entries" in findings[-1].message
    assert all("more unrecognised" not in f.message for f in findings[:-1])


# ---------------------------------------------------------------- labels


def test_missing_source_and_revision_labels_are_one_finding_naming_both() -> None:
    buildkit = _entry({"created_by": "COPY . /app # buildkit", "comment": "buildkit.dockerfile.v0"})
    [finding] = list(image_provenance(_image([buildkit], labels={}), {}))
    assert finding.value == f"{SOURCE_LABEL}, {REVISION_LABEL}"
    assert "--label" in finding.remediation and "LABEL" in finding.remediation


def test_only_the_missing_label_is_named() -> None:
    [finding] = list(image_provenance(_image([], labels={SOURCE_LABEL: "https://github.com/o/r", REVISION_LABEL: " "}), {}))
    assert finding.value == REVISION_LABEL and SOURCE_LABEL not in finding.message


def test_a_labelled_image_built_by_a_builder_has_no_finding() -> None:
    buildkit = _entry({"created_by": "COPY . /app # buildkit", "comment": "buildkit.dockerfile.v0"})
    assert list(image_provenance(_image([buildkit]), {})) == []


# ---------------------------------------------------------------- where findings point


def test_kubernetes_findings_point_at_the_image_field_and_name_the_container() -> None:
    image_origin = Origin("deploy.yaml", 12, "spec.template.spec.containers[0].image")
    config = ImageConfig(reference="registry.example.com/app:1", digest="sha256:" + "a" * 64, user="1001",
                         history=(_entry({"created_by": "/bin/bash", "created": "2024-01-01T00:00:00Z"}),), labels=LABELS)
    container = Container(name="app", origin=Origin("deploy.yaml", 10, "spec.template.spec.containers[0]"),
                          image=Located("registry.example.com/app:1", image_origin), image_config=config)
    workload = Workload(source="kubernetes", kind="Deployment", name="web", namespace="default",
                        origin=Origin("deploy.yaml", 1, ""), containers=(container,))
    [finding] = list(image_provenance(workload, {}))
    assert finding.origin == image_origin and finding.container == "app"
    assert "container 'app' (image registry.example.com/app:1)" in finding.message


def test_unresolved_kubernetes_images_are_not_checked() -> None:
    container = Container(name="app", origin=Origin("d.yaml", 1, "x"), image=Located("nginx:1", Origin("d.yaml", 2, "y")))
    workload = Workload(source="kubernetes", kind="Pod", name="p", namespace="default", origin=Origin("d.yaml", 1, ""),
                        containers=(container,))
    assert list(image_provenance(workload, {})) == []


# ---------------------------------------------------------------- live builds: no false positives on real builders


@pytest.fixture(scope="module")
def tools() -> None:
    if not oci.have_tools():
        pytest.fail("umoci and skopeo are required; `make test` installs them")


def test_umoci_built_image_passes_and_a_committed_step_on_it_is_flagged(tools: None, tmp_path: Path) -> None:
    layout = tmp_path / "layout"
    oci.build(layout, "clean", user="1001", labels=LABELS, files={"/etc/motd": "hi\n"})
    oci.build(layout, "dirty", user="1001", labels=LABELS, history=("umoci config", "/bin/bash"))
    oci.copy(f"oci:{layout}:clean", f"docker-archive:{tmp_path / 'clean.tar'}:example.com/clean:1")
    [clean] = archive.load(str(tmp_path / "clean.tar"), display="clean.tar")
    assert [h.created_by for h in clean.containers[0].image_config.history] == ["umoci insert", "umoci config"]
    assert list(image_provenance(clean, {})) == []
    dirty = {w.name: w for w in archive.load(str(layout), display="layout")}["layout:dirty"]
    [finding] = list(image_provenance(dirty, {}))
    assert finding.value == "/bin/bash" and finding.origin == dirty.origin


def _buildah(store: Path, *args: str) -> str:
    cmd = ["buildah", "--root", str(store / "root"), "--runroot", str(store / "run"), "--storage-driver", "vfs", *args]
    proc = subprocess.run(cmd, check=False, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, f"{' '.join(cmd)}: {proc.stderr}"
    return proc.stdout.strip()


def _shell_rootfs(context: Path) -> None:
    """/bin/sh and the libraries it links, so a FROM scratch Dockerfile can RUN without any registry."""
    for path in ("/bin/sh", "/lib/x86_64-linux-gnu/libc.so.6", "/lib64/ld-linux-x86-64.so.2"):
        target = context / "rootfs" / path.lstrip("/")
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(path, target)


def test_buildah_bud_passes_and_buildah_commit_is_flagged(tmp_path: Path) -> None:
    if shutil.which("buildah") is None:
        pytest.fail("buildah is required (Debian package); `make test` installs it")
    if not Path("/lib64/ld-linux-x86-64.so.2").exists():
        pytest.skip("the RUN step copies the host's x86-64 /bin/sh and its loader")
    store, context = tmp_path / "store", tmp_path / "ctx"
    _shell_rootfs(context)
    (context / "Dockerfile").write_text(
        "FROM scratch\nCOPY rootfs/ /\nARG VERSION=1.0\nRUN echo \"v=$VERSION\" > /version\n"
        f"LABEL {SOURCE_LABEL}=https://github.com/example/app {REVISION_LABEL}=abc123\nUSER 1001\n")
    _buildah(store, "bud", "--isolation", "chroot", "-t", "localhost/bud:1", str(context))
    _buildah(store, "push", "localhost/bud:1", f"oci-archive:{tmp_path / 'bud.tar'}:example.com/bud:1")
    [bud] = archive.load(str(tmp_path / "bud.tar"), display="bud.tar")
    created_by = [h.created_by for h in bud.containers[0].image_config.history]
    assert any(c.startswith("|1 VERSION=1.0 /bin/sh -c ") for c in created_by), created_by
    assert list(image_provenance(bud, {})) == []

    working = _buildah(store, "from", "localhost/bud:1")
    _buildah(store, "copy", working, str(context / "Dockerfile"), "/Dockerfile")
    _buildah(store, "commit", "-q", working, "localhost/committed:1")
    _buildah(store, "push", "localhost/committed:1", f"oci-archive:{tmp_path / 'c.tar'}:example.com/committed:1")
    [committed] = archive.load(str(tmp_path / "c.tar"), display="c.tar")
    [finding] = list(image_provenance(committed, {}))
    assert "buildah commit" in finding.message


# ---------------------------------------------------------------- the committed fixtures


def _fixture_dirs() -> dict[Path, dict[str, bytes]]:
    return make_fixtures.fixtures()


def test_committed_fixtures_are_what_make_fixtures_writes() -> None:
    for folder, files in _fixture_dirs().items():
        on_disk = {str(p.relative_to(folder)): p.read_bytes() for p in folder.rglob("*") if p.is_file()}
        assert on_disk == files, f"{folder} is stale: run python tests/images/history/make_fixtures.py"


def _rule_findings(rule_id: str, workload: Workload) -> Iterator[Violation]:
    rule = {"image-provenance": image_provenance, "run-as-non-root": users.run_as_non_root,
            "numeric-user": users.numeric_user}[rule_id]
    return rule(workload, {})


@pytest.mark.parametrize("folder", sorted(_fixture_dirs()), ids=lambda p: f"{p.parent.name}/{p.name}")
def test_image_fixture_passes_or_fails_its_rule_as_its_expect_file_says(folder: Path) -> None:
    workloads = archive.load(str(folder), display=folder.name)
    expect = folder / "expect.txt"
    expected = {line.split(":", 1)[1].strip() for line in expect.read_text().splitlines()} if expect.exists() else set()
    failing = {w.name for w in workloads if list(_rule_findings(folder.parent.name, w))}
    assert failing == expected
    for workload in workloads:
        for finding in _rule_findings(folder.parent.name, workload):
            assert finding.origin.path.startswith("blobs/sha256/") and finding.origin.line is None
