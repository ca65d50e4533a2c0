"""Issue 27's compose checks next to compose-lint, the peer compose users compare us with, run for real (0.36.2, the
bench extra that `make test` installs) on our own fixtures. Per service and per check, the two verdicts agree except
where this file names a policy difference and why: a new difference, in either direction, fails until it is named.

Checks compared (ours -> compose-lint's):
- host paths and devices (least-privilege findings on `volumes`, `devices`, `device_cgroup_rules`) -> CL-0001 (a
  runtime socket or a folder holding one), CL-0013 (sensitive host path), CL-0016 (dangerous device), CL-0025
  (writable host path);
- no-secret-in-env -> CL-0020 (credential-shaped env key with a literal value);
- read-only-root-filesystem -> CL-0007 (writable root filesystem).
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
COMPOSE_LINT = Path(sys.executable).with_name("compose-lint")
RULES = ROOT / "tests" / "rules"

PEER = {"CL-0001": "host", "CL-0013": "host", "CL-0016": "host", "CL-0025": "host", "CL-0020": "secret",
        "CL-0007": "read-only"}
OURS = {"no-secret-in-env": "secret", "read-only-root-filesystem": "read-only"}
HOST_FIELDS = (".volumes[", ".devices[", ".device_cgroup_rules[")

FIXTURES = [
    "least-privilege/fail__compose-host-paths.yaml",
    "least-privilege/pass__compose-host-paths.yaml",
    "least-privilege/fail__compose-privileges.yaml",
    "no-secret-in-env/fail__compose-environment/compose.yaml",
    "no-secret-in-env/pass__compose-environment/compose.yaml",
    "read-only-root-filesystem/fail__compose-writable-root.yaml",
    "read-only-root-filesystem/pass__compose-read-only.yaml",
]

# (fixture, service, check): (who reports it, why the other does not). Each is a policy difference, not a bug.
DIFFERENCES: dict[tuple[str, str, str], tuple[str, str]] = {
    ("least-privilege/fail__compose-host-paths.yaml", "kubelet", "host"):
        ("ours", "/var/lib/kubelet holds every Pod's volumes and tokens; compose-lint's list has no kubelet paths"),
    ("least-privilege/fail__compose-host-paths.yaml", "usr-lib", "host"):
        ("ours", "/lib/modules is inside /lib*, the host's libraries and kernel modules; compose-lint lists no /lib"),
    ("least-privilege/fail__compose-host-paths.yaml", "named-rbind", "host"):
        ("ours", "a local volume with o: bind is a bind mount as Compose creates it; compose-lint reads only the "
                 "service's volumes"),
    ("least-privilege/pass__compose-host-paths.yaml", "app", "host"):
        ("compose-lint", "/etc/ssl/certs read-only is public CA material, which we let through read-only (like the "
                         "time zone files); compose-lint reports any path under /etc"),
    ("no-secret-in-env/fail__compose-environment/compose.yaml", "built", "secret"):
        ("ours", "the ENV and ARG defaults of the service's build Dockerfile stay in the image; compose-lint reads no "
                 "Dockerfile"),
    ("no-secret-in-env/fail__compose-environment/compose.yaml", "inline", "secret"):
        ("ours", "the same, in the service's dockerfile_inline"),
    ("no-secret-in-env/pass__compose-environment/compose.yaml", "api", "secret"):
        ("compose-lint", "it reads env_file (secrets.env, where a secret belongs: usually untracked) and takes "
                         "`$$HOME` for a literal; we read the compose file's own text, where `$$HOME` is the "
                         "container's $HOME, a reference"),
}


def _ours(path: Path) -> set[tuple[str, str]]:
    run = subprocess.run([sys.executable, "-m", "admission", "check", "--no-config", "--format", "json", str(path)],
                         cwd=ROOT, capture_output=True, text=True, check=False)
    assert run.returncode in (0, 1), run.stderr
    found = set()
    for finding in json.loads(run.stdout)["findings"]:
        service = finding["object"]["name"]
        if finding["rule"] in OURS:
            found.add((service, OURS[finding["rule"]]))
        elif finding["rule"] == "least-privilege" and any(f in (finding["path"] or "") for f in HOST_FIELDS):
            found.add((service, "host"))
    return found


def _peer(path: Path) -> set[tuple[str, str]]:
    run = subprocess.run([str(COMPOSE_LINT), "check", "--format", "json", str(path)], cwd=path.parent,
                         capture_output=True, text=True, check=False)
    assert run.stdout, run.stderr
    return {(f["service"], PEER[f["rule_id"]]) for f in json.loads(run.stdout)["findings"] if f["rule_id"] in PEER}


@pytest.mark.skipif(not COMPOSE_LINT.exists(), reason="compose-lint is not installed (the bench extra; make test has it)")
@pytest.mark.parametrize("fixture", FIXTURES)
def test_compose_lint_and_we_differ_only_where_a_policy_difference_is_named(fixture: str) -> None:
    ours, peer = _ours(RULES / fixture), _peer(RULES / fixture)
    found = {(fixture, service, check): ("ours", "") for service, check in ours - peer}
    found |= {(fixture, service, check): ("compose-lint", "") for service, check in peer - ours}
    named = {key: who for key, (who, _) in DIFFERENCES.items() if key[0] == fixture}
    assert {key: who for key, (who, _) in found.items()} == named
    assert ours & peer or not (ours | peer), "the two tools share no verdict on this fixture: the mapping is wrong"
