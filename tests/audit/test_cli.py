"""`admission-cli audit` before it reaches a cluster: the extra it needs, the configuration it needs, its flags."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from admission.audit import inventory
from admission.audit.images import variants
from admission.model import Container, ImageConfig, Located, Origin, Workload

ROOT = Path(__file__).resolve().parents[2]
_RUN = "import sys\n{prelude}\nfrom admission.cli.main import main\nsys.exit(main({argv!r}))"


def _cli(argv: list[str], *, prelude: str = "", env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-c", _RUN.format(prelude=prelude, argv=argv)], capture_output=True,
                          text=True, cwd=ROOT, timeout=120, env={**os.environ, **(env or {})})


def test_without_the_kubernetes_client_the_audit_names_the_extra_to_install() -> None:
    # None in sys.modules makes `import kubernetes` fail as it does where the server extra is not installed.
    run = _cli(["audit", "-A"], prelude="sys.modules['kubernetes'] = None")
    assert run.returncode == 2
    assert "pip install 'admission[server]'" in run.stderr and "kubernetes" in run.stderr


def test_without_a_kubeconfig_or_a_service_account_the_audit_says_so(tmp_path: Path) -> None:
    run = _cli(["audit", "-A"], env={"KUBECONFIG": str(tmp_path / "none"), "HOME": str(tmp_path),
                                      "KUBERNETES_SERVICE_HOST": ""})
    assert run.returncode == 2
    assert "no usable cluster configuration" in run.stderr


@pytest.mark.parametrize("argv", [["audit", "-n", "a", "-A"], ["audit", "--qps", "0"], ["audit", "--burst", "-1"],
                                  ["audit", "--report-api", "wgpolicyk8s.io/v1beta1"], ["audit", "--format", "github"]])
def test_contradictory_or_impossible_flags_are_usage_errors(argv: list[str]) -> None:
    run = _cli(argv)
    assert run.returncode == 2 and "usage: admission-cli audit" in run.stderr


def test_a_bad_policy_file_stops_the_audit_before_any_cluster_call(tmp_path: Path) -> None:
    policy = tmp_path / "policy.yaml"
    policy.write_text("rules:\n  no-such-rule: deny\n")
    run = _cli(["audit", "-A", "--policy", str(policy)], env={"KUBECONFIG": str(tmp_path / "none")})
    assert run.returncode == 2 and "policy error" in run.stderr and "no-such-rule" in run.stderr


def _workload() -> Workload:
    origin = Origin("namespace/team", None, "spec")
    return Workload(source="kubernetes", kind="Deployment", name="web", namespace="team", origin=origin,
                    containers=(Container(name="app", origin=origin, image=Located("reg/app:1", origin)),
                                Container(name="side", origin=origin, image=Located("reg/side:2", origin))))


def _config(reference: str, user: str) -> ImageConfig:
    return ImageConfig(reference=reference, digest=reference.partition("@")[2] or None, user=user)


def test_a_container_whose_pods_run_two_digests_is_judged_once_per_digest() -> None:
    results = {"reg/app@sha256:1": _config("reg/app@sha256:1", "10001"), "reg/app@sha256:2": _config("reg/app@sha256:2", ""),
               "reg/side:2": "not-found: no such manifest"}
    judged = variants(_workload(), {"app": ["reg/app@sha256:1", "reg/app@sha256:2"]}, results)
    assert [w.containers[0].image_config.user for w in judged] == ["10001", ""]  # type: ignore[union-attr]
    assert all(w.containers[1].image_config_error == "not-found: no such manifest" for w in judged)
    assert all(w.containers[0].image.value == "reg/app:1" for w in judged), "the spec's reference stays what tag rules read"  # type: ignore[union-attr]
    (single,) = variants(_workload(), {}, {"reg/app:1": _config("reg/app:1", "10001"), "reg/side:2": _config("reg/side:2", "1")})
    assert single.containers[0].image_config.reference == "reg/app:1"  # type: ignore[union-attr]


def test_the_context_chooses_the_cluster_and_the_namespace_and_an_unanswering_server_stops_the_audit(
        tmp_path: Path) -> None:
    """Nothing listens on the chosen context's port: the audit says so, once per kind, without waiting on each."""
    import yaml

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        closed = s.getsockname()[1]
    config = {"apiVersion": "v1", "kind": "Config", "current-context": "a",
              "clusters": [{"name": "a", "cluster": {"server": "http://192.0.2.1:6443"}},
                           {"name": "b", "cluster": {"server": f"http://127.0.0.1:{closed}"}}],
              "users": [{"name": "u", "user": {}}],
              "contexts": [{"name": "a", "context": {"cluster": "a", "user": "u", "namespace": "ns-a"}},
                           {"name": "b", "context": {"cluster": "b", "user": "u", "namespace": "ns-b"}}]}
    kubeconfig = tmp_path / "kubeconfig"
    kubeconfig.write_text(yaml.safe_dump(config))
    began = time.monotonic()
    run = _cli(["audit", "--kubeconfig", str(kubeconfig), "--context", "b", "--format", "json", "--offline"])
    assert run.returncode == 2
    errors = [e["message"] for e in json.loads(run.stdout)["errors"]]
    assert len(errors) == len(inventory.LISTED) == 9 and all(e.startswith("cannot list ") for e in errors)
    assert all("the API server did not answer" in e and "/namespaces/ns-b/" in e and f"port={closed}" in e
               for e in errors), errors[0]
    assert "namespace ns-b" in run.stderr
    assert time.monotonic() - began < 20, "one kind's retries, not nine"
