"""Self-compliance: what the project ships passes its own policy with no deny and no warn finding. Each rendered
value set goes through `admission-cli check --offline -` as `helm template ... | admission-cli check -` would, and
so do the Dockerfile and examples/webhook-local/."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from tests.chart.conftest import NAMESPACE, ROOT, VALUE_SETS, Rendered

CLI = Path(sys.executable).parent / "admission-cli"


def _check(*argv: str, stdin: str | None = None, cwd: Path = ROOT) -> dict[str, Any]:
    run = subprocess.run([str(CLI), "check", "--offline", "--format", "json", "--fail-on", "warn", *argv],
                         input=stdin, capture_output=True, text=True, cwd=cwd, timeout=120)
    report = json.loads(run.stdout)
    problems = [(f["rule"], f["object"]["name"], f.get("container"), f["message"]) for f in report["findings"]
                if not f["suppressed"]]
    assert problems == [] and report["errors"] == [], (problems, report["errors"])
    assert report["summary"]["deny"] == report["summary"]["warn"] == report["summary"]["suppressed"] == 0
    assert run.returncode == 0, run.stderr
    return report


@pytest.mark.parametrize("label", sorted(VALUE_SETS))
def test_rendered_chart_has_no_deny_or_warn_finding(rendered: dict[str, Rendered], label: str) -> None:
    report = _check("-", "--namespace", NAMESPACE, stdin=rendered[label].stream)
    audit = 1 if rendered[label].has("CronJob") else 0
    services = len(rendered[label].all("Service"))  # objects since issue 27 (no-host-port): ClusterIP, they pass
    assert report["summary"]["objects"] == 2 + audit + services, \
        "the Deployment, the policy-check Job (and the audit CronJob), and the Services"


def test_chart_and_compose_example_pass_the_restricted_least_privilege_profile(rendered: dict[str, Rendered],
                                                                      tmp_path: Path) -> None:
    policy = tmp_path / "restricted.yaml"
    policy.write_text("rules:\n  least-privilege: {severity: deny, params: {profile: restricted}}\n")
    for label in ("defaults", "everything"):
        _check("-", "--policy", str(policy), stdin=rendered[label].stream)
    _check("examples/webhook-local/", "--policy", str(policy))  # compose: cap_drop ALL, no-new-privileges


def test_strict_policy_passes_when_the_image_is_pinned_by_digest(rendered: dict[str, Rendered],
                                                               tmp_path: Path) -> None:
    """policies/strict.yaml denies every finding and requires digests: the chart's digest value satisfies it. The
    webhook reads the API (LimitRanges, owners, ServiceAccounts), so it keeps its token and is exempted by name from
    service-account-token, as the rule's docs tell anyone whose Pods call the API; everything else mounts none."""
    policy = tmp_path / "strict.yaml"
    policy.write_text((ROOT / "policies" / "strict.yaml").read_text() + (
        "exemptions:\n"
        "  - {rule: service-account-token, kind: Deployment, name: admission, reason: the webhook reads the API}\n"))
    run = subprocess.run([str(CLI), "check", "--offline", "--format", "json", "--fail-on", "warn", "-",
                          "--policy", str(policy)], input=rendered["everything"].stream, capture_output=True,
                         text=True, cwd=ROOT, timeout=120)
    report = json.loads(run.stdout)
    assert run.returncode == 0 and report["errors"] == [], (run.stderr, report["errors"])
    assert [(f["rule"], f["object"]["kind"], f["object"]["name"], f["suppressed"]) for f in report["findings"]] == [
        ("service-account-token", "Deployment", "admission", True)]


def test_dockerfile_has_no_deny_or_warn_finding() -> None:
    report = _check("Dockerfile")
    assert report["summary"]["objects"] == 1


def test_webhook_local_example_has_no_deny_or_warn_finding() -> None:
    report = _check("examples/webhook-local/")
    assert report["summary"]["objects"] == 1
    assert report["summary"]["files"] >= 2, "the compose file and the Dockerfile it builds"


def test_webhook_local_example_is_accepted_by_real_compose_and_publishes_on_loopback_only() -> None:
    compose = Path(sys.executable).parent / "docker-compose"
    run = subprocess.run([str(compose), "-f", "compose.yaml", "config", "--format", "json"], capture_output=True,
                         text=True, cwd=ROOT / "examples" / "webhook-local", timeout=60)
    assert run.returncode == 0, run.stderr
    (service,) = json.loads(run.stdout)["services"].values()
    assert [(p["host_ip"], p["published"], p["target"]) for p in service["ports"]] == [("127.0.0.1", "8443", 8443)]
    assert service["read_only"] is True and service["cap_drop"] == ["ALL"]
    assert service["user"] == "10001:10001"
    (volume,) = service["volumes"]
    assert Path(volume["source"]).is_dir(), "the policy is mounted as a folder, so edits are reloaded"
    policy = Path(volume["source"]) / "policy.yaml"
    command = service["command"]
    assert command[command.index("--policy") + 1] == volume["target"] + "/policy.yaml"
    check = subprocess.run([str(CLI), "check-policy", str(policy)], capture_output=True, text=True, timeout=60)
    assert check.returncode == 0, check.stderr
