"""Roll-out with `enforcement: warn` against the real API server: what kubectl shows (would-deny lines first), the
audit line, and the metrics an operator reads before switching to deny. The roll-out transcript of docs/rollout.md is
this run."""

from __future__ import annotations

import json
import os
import re
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.chart.conftest import ROOT
from tests.cluster.controlplane import ControlPlane
from tests.cluster.release import Release, installed

pytestmark = pytest.mark.controlplane

NS = "rollout"
LEGACY = {"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "legacy", "namespace": NS},
          "spec": {"replicas": 1, "selector": {"matchLabels": {"app": "legacy"}},
                   "template": {"metadata": {"labels": {"app": "legacy"}},
                                "spec": {"containers": [{"name": "web", "image": "nginx"}]}}}}


@pytest.fixture(scope="module")
def release(control_plane: ControlPlane, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Release]:
    control_plane.kubectl("create", "namespace", NS, check=False)
    control_plane.ensure_default_service_accounts(NS)
    values = {"policy": "enforcement: warn\nimages:\n  resolve: false\n"}
    yield from installed(control_plane, tmp_path_factory.mktemp("rollout"), values)


def test_warn_mode_admits_and_kubectl_shows_what_deny_would_refuse_first(
        control_plane: ControlPlane, release: Release) -> None:
    mark = release.mark()
    run = control_plane.apply([LEGACY])
    warnings = [line for line in run.stderr.splitlines() if line.startswith("Warning: ")]
    would = [w for w in warnings if w.startswith("Warning: [would deny] ")]
    assert {re.match(r"Warning: \[would deny\] \[([a-z-]+)\]", w).group(1) for w in would} == {
        "run-as-non-root", "image-tag-pinned", "resource-limits"}
    assert warnings[: len(would)] == would and warnings[len(would):], "plain warnings come after them"
    assert all(w.startswith(("Warning: [healthcheck] ", "Warning: [read-only-root-filesystem] "))
               for w in warnings[len(would):])
    assert "deployment.apps/legacy created" in run.stdout

    (line,) = [a for a in release.audit_since(mark) if a["name"] == "legacy"]
    assert line["allowed"] and line["enforcement"] == "warn" and line["would_deny"] is True
    assert {r["rule"] for r in line["rules"] if r.get("would_deny")} == {
        "run-as-non-root", "image-tag-pinned", "resource-limits"}

    with release.pod.client() as client:
        metrics = client.get("/metrics").text
    counted = {m.group(1) for m in re.finditer(
        r'^admission_findings_total\{action="would-deny",rule="([a-z-]+)",severity="deny"\} ', metrics, re.M)}
    assert counted == {"run-as-non-root", "image-tag-pinned", "resource-limits"}

    page = (ROOT / "docs" / "rollout.md").read_text()
    block = page[page.index("<!-- rollout-warn:begin -->"):page.index("<!-- rollout-warn:end -->")]
    transcript = block.split("```text\n", 1)[1].split("```", 1)[0]
    shown = f"$ kubectl apply -f legacy.yaml\n{run.stderr}{run.stdout}"
    assert transcript == shown, f"docs/rollout.md's roll-out transcript differs from the real run; it should read:\n{shown}"


def test_the_audit_lines_tell_which_objects_deny_would_refuse(release: Release) -> None:
    """What docs/rollout.md tells an operator to run on the webhook's log, run on the real log."""
    lines = [json.loads(raw) for raw in release.audit_log.read_text().splitlines()
             if raw.startswith("{") and '"would_deny":true' in raw]
    assert {(a["kind"], a["namespace"], a["name"]) for a in lines} >= {("Deployment", NS, "legacy")}


def test_the_audit_step_of_the_roll_out_is_a_real_run(control_plane: ControlPlane, release: Release,
                                                      tmp_path: Path) -> None:
    """`admission-cli audit` on what already runs, with the policy the webhook serves, as docs/rollout.md shows it."""
    import subprocess
    import sys

    control_plane.apply([LEGACY])  # idempotent: the first test created it
    policy = tmp_path / "policy.yaml"
    policy.write_text(release.rendered.one("ConfigMap", "admission-policy")["data"]["policy.yaml"])
    cli = str(Path(sys.executable).parent / "admission-cli")
    run = subprocess.run([cli, "audit", "-n", NS, "--policy", str(policy)], capture_output=True, text=True,
                         timeout=120, env={"PATH": "/usr/bin:/bin", "NO_COLOR": "1", "HOME": str(tmp_path),
                                           "KUBECONFIG": str(control_plane.admin_kubeconfig),
                                           # the code under test when a checkout is run without installing it
                                           **{k: v for k, v in os.environ.items() if k == "PYTHONPATH"}})
    assert run.returncode == 0, run.stderr  # enforcement: warn: nothing at deny, what deny would refuse is marked
    assert "warn (would deny)  run-as-non-root  Deployment rollout/legacy" in run.stdout
    page = (ROOT / "docs" / "rollout.md").read_text()
    block = page[page.index("<!-- rollout-audit:begin -->"):page.index("<!-- rollout-audit:end -->")]
    transcript = block.split("```text\n", 1)[1].split("```", 1)[0]
    shown = f"$ admission-cli audit -n {NS} --policy policy.yaml\n{run.stdout}"
    assert transcript == shown, f"docs/rollout.md's audit transcript differs from the real run; it should read:\n{shown}"
