"""Policy files the webhook and `check-policy` refuse or warn about: empty ones (a 0-byte reload must not fall back
to the built-in default), expired and cluster-wide exemptions."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from admission.errors import PolicyError
from admission.policy.config import load_policy
from admission.webhook.metrics import Metrics
from admission.webhook.reload import PolicyHolder
from tests.webhook.served import CLI

STRICT = "rules: {healthcheck: deny}\nimages: {resolve: false}\n"


@pytest.mark.parametrize("text", ["", "# nothing but a comment\n", "---\n"])
def test_an_empty_or_comment_only_policy_file_is_refused_naming_the_file(tmp_path: Path, text: str) -> None:
    path = tmp_path / "policy.yaml"
    path.write_text(text)
    with pytest.raises(PolicyError, match=f"{path}: the policy file is empty"):
        load_policy(str(path))
    checked = subprocess.run([str(CLI), "check-policy", str(path)], capture_output=True, text=True)
    assert checked.returncode == 2 and str(path) in checked.stderr and "write {}" in checked.stderr


def test_a_policy_of_braces_means_the_built_in_default(tmp_path: Path) -> None:
    path = tmp_path / "policy.yaml"
    path.write_text("{}\n")
    assert load_policy(str(path)).rules == load_policy(None).rules


def test_serve_refuses_to_start_on_an_empty_policy_file_with_exit_2_naming_it(tmp_path: Path) -> None:
    path = tmp_path / "policy.yaml"
    path.write_text("")
    started = subprocess.run([str(CLI), "serve", "--port", "0", "--policy", str(path)], capture_output=True,
                             text=True, timeout=60)
    assert started.returncode == 2
    assert started.stderr.strip().splitlines()[-1].endswith(f"{path}: the policy file is empty (or only comments); "
                                                            "write {} to use the built-in defaults")


def test_a_reload_to_an_empty_file_keeps_the_stricter_policy_and_marks_it_stale(tmp_path: Path) -> None:
    path = tmp_path / "policy.yaml"
    path.write_text(STRICT)
    metrics = Metrics()
    holder = PolicyHolder(str(path), metrics=metrics, initial=load_policy(str(path)))
    path.write_text("")
    assert holder.check() is False
    assert holder.policy is not None and holder.policy.rules["healthcheck"].severity == "deny"
    assert holder.stale
    path.write_text(STRICT + "# touched\n")
    assert holder.check() is True and not holder.stale


def _check_policy(path: Path, *flags: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([str(CLI), "check-policy", *flags, str(path)], capture_output=True, text=True)


def test_check_policy_warns_of_expired_and_cluster_wide_exemptions_and_strict_makes_them_errors(tmp_path: Path) -> None:
    path = tmp_path / "policy.yaml"
    path.write_text("exemptions:\n"
                    "  - {rule: healthcheck, reason: legacy, namespace: legacy, expires: 2020-01-31}\n"
                    "  - {rule: run-as-non-root, reason: vendor image}\n"
                    "  - {rule: image-tag-pinned, reason: pinned by digest elsewhere, namespace: tools}\n")
    warned = _check_policy(path)
    assert warned.returncode == 0
    lines = [line for line in warned.stderr.splitlines() if "warning:" in line]
    assert lines == [
        f"admission-cli check-policy: warning: {path}:2: exemption for rule healthcheck expired on 2020-01-31; "
        "remove it or renew its date",
        f"admission-cli check-policy: warning: {path}:3: exemption for rule run-as-non-root names no namespace and "
        "no name: it applies cluster-wide",
    ]
    strict = _check_policy(path, "--strict")
    assert strict.returncode == 2 and strict.stderr.count("error:") == 2
    path.write_text("exemptions:\n  - {rule: image-tag-pinned, reason: pinned, namespace: tools}\n")
    assert _check_policy(path, "--strict").returncode == 0
