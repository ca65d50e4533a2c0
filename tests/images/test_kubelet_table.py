"""The kubelet's runAsNonRoot decision table, row by row, against real images in a real registry, through the CLI
with --resolve-images. The rows are ours, read from kubernetes/kubernetes: verifyRunAsNonRoot in
pkg/kubelet/kuberuntime/security_context_others.go (Linux), getImageUser in kuberuntime/helpers.go (no USER is uid 0,
a numeric USER before ':' is a uid, anything else a name) and DetermineEffectiveSecurityContext in
pkg/securitycontext/util.go (container fields override the pod's one by one).

Our verdict equals the kubelet's in rows 2-7 and is stricter in row 1 (the kubelet checks nothing
without runAsNonRoot; we still deny an image that runs as root). Row 8 is unreachable on Linux.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from admission.cli.main import main
from tests.images import oci
from tests.images.registry import Registry

# (row, image user, pod securityContext, container securityContext, kubelet verdict, our verdict, words we must say)
ROWS = [
    ("row1-root-image-no-check", "", {}, {}, "allowed", "deny", "runs as root"),
    ("row1-nonroot-false", "0", {"runAsNonRoot": False}, {}, "allowed", "deny", "runs as root"),
    ("row1-numeric-image", "1000", {}, {}, "allowed", "pass", None),
    # the container's runAsNonRoot: false overrides the pod's true, so the kubelet checks nothing
    ("row1-container-false-over-pod-true", "0", {"runAsNonRoot": True}, {"runAsNonRoot": False}, "allowed", "deny",
     "runs as root"),
    ("row2-runasuser-zero", "1000", {"runAsNonRoot": True}, {"runAsUser": 0}, "error", "deny", "runAsUser is 0"),
    ("row3-runasuser-set-image-ignored", "", {"runAsNonRoot": True}, {"runAsUser": 1000}, "allowed", "pass", None),
    ("row4-named-user", "appuser", {"runAsNonRoot": True}, {}, "error", "deny",
     "container has runAsNonRoot and image has non-numeric user (appuser), cannot verify user is non-root"),
    ("row4-named-user-and-group", "app:app", {"runAsNonRoot": True}, {}, "error", "deny", "non-numeric user (app)"),
    ("row5-no-user-is-root", "", {"runAsNonRoot": True}, {}, "error", "deny", "image will run as root"),
    ("row5-uid-zero", "0:0", {}, {"runAsNonRoot": True}, "error", "deny", "image will run as root"),
    ("row6-uid-above-maxint32", "2147483648", {"runAsNonRoot": True}, {}, "error", "deny", "invalid user id (2147483648)"),
    ("row6-uid-above-uint32", "4294967296", {"runAsNonRoot": True}, {}, "error", "deny", "invalid user id (4294967296)"),
    ("row7-numeric-user", "1000", {"runAsNonRoot": True}, {}, "allowed", "pass", None),
    ("row7-numeric-user-and-group", "65532:65532", {"runAsNonRoot": True}, {}, "allowed", "pass", None),
    ("row7-max-uid", "2147483647", {"runAsNonRoot": True}, {}, "allowed", "pass", None),
]


@pytest.fixture(scope="module")
def pods(registry: Registry, layout: Path, tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """One image per row pushed to the registry, one Pod per row, and a policy that may reach the registry."""
    documents = []
    for row, user, pod_sc, container_sc, *_ in ROWS:
        source = oci.build(layout, row, user=user, history=(f"USER {user}",))
        oci.push(source, registry.host, f"kubelet/{row}:1")
        container = {"name": "app", "image": f"{registry.host}/kubelet/{row}:1",
                     "resources": {"limits": {"cpu": "100m", "memory": "64Mi"}}}
        if container_sc:
            container["securityContext"] = container_sc
        spec = {"containers": [container]}
        if pod_sc:
            spec["securityContext"] = pod_sc
        documents.append({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": row}, "spec": spec})
    work = tmp_path_factory.mktemp("kubelet")
    manifest = work / "pods.json"
    manifest.write_text(json.dumps({"apiVersion": "v1", "kind": "List", "items": documents}, indent=1))
    policy = work / "policy.yaml"
    policy.write_text(f"images:\n  allowed_registries: ['{registry.host}']\n  insecure_registries: ['{registry.host}']\n")
    return manifest, policy


@pytest.fixture(scope="module")
def verdicts(pods: tuple[Path, Path], tmp_path_factory: pytest.TempPathFactory) -> dict[str, list[dict]]:
    manifest, policy = pods
    import contextlib
    import io

    buffer = io.StringIO()
    with contextlib.redirect_stdout(buffer):
        main(["check", "--format", "json", "--resolve-images", "--no-cache", "--policy", str(policy), str(manifest)])
    report = json.loads(buffer.getvalue())
    assert report["errors"] == []
    assert not [f for f in report["findings"] if f["rule"] == "image-config-unavailable"], "every image was resolved"
    out: dict[str, list[dict]] = {row: [] for row, *_ in ROWS}
    for finding in report["findings"]:
        if finding["rule"] == "run-as-non-root":
            out[finding["object"]["name"]].append(finding)
    return out


@pytest.mark.parametrize(("row", "user", "pod_sc", "container_sc", "kubelet", "ours", "words"), ROWS, ids=[r[0] for r in ROWS])
def test_our_verdict_on_each_reachable_linux_row(verdicts, row, user, pod_sc, container_sc, kubelet, ours, words) -> None:
    findings = verdicts[row]
    assert ("deny" if findings else "pass") == ours
    if row.startswith(("row2", "row3", "row4", "row5", "row6", "row7")):
        assert (kubelet == "error") == bool(findings), "rows 2-7: the kubelet's verdict"
    else:
        assert kubelet == "allowed" and (ours == "deny") == (user.split(":")[0] in ("", "0")), "row 1: stricter on root only"
    if words:
        assert words in findings[0]["message"]


def test_named_image_user_with_runasnonroot_is_denied_with_the_kubelets_reason_and_the_fix(verdicts) -> None:
    (finding,) = verdicts["row4-named-user"]
    assert finding["severity"] == "deny" and finding["value"] == "appuser"
    assert "cannot verify user is non-root" in finding["message"]
    assert "runAsUser" in finding["remediation"] and "USER" in finding["remediation"]


def test_the_same_named_image_with_runasuser_1001_passes(registry: Registry, pods, tmp_path: Path, capsys) -> None:
    _, policy = pods
    manifest = tmp_path / "pod.yaml"
    manifest.write_text(
        "apiVersion: v1\nkind: Pod\nmetadata: {name: fixed}\nspec:\n"
        "  securityContext: {runAsNonRoot: true, runAsUser: 1001}\n  containers:\n"
        f"    - name: app\n      image: {registry.host}/kubelet/row4-named-user:1\n"
        "      resources: {limits: {cpu: 100m, memory: 64Mi}}\n"
        "      readinessProbe: {tcpSocket: {port: 8080}}\n"
        "      securityContext: {readOnlyRootFilesystem: true}\n")
    code = main(["check", "--format", "json", "--resolve-images", "--no-cache", "--policy", str(policy), str(manifest)])
    report = json.loads(capsys.readouterr().out)
    assert not [f for f in report["findings"] if f["severity"] == "deny"] and code == 0
    # what remains is the provenance warning: the test image carries no source/revision labels
    assert {f["rule"] for f in report["findings"]} <= {"image-provenance"}


def test_without_resolution_the_named_image_user_is_unknown_and_runasnonroot_passes(pods, capsys) -> None:
    manifest, policy = pods
    code = main(["check", "--format", "json", "--offline", "--policy", str(policy), str(manifest)])
    report = json.loads(capsys.readouterr().out)
    names = {f["object"]["name"] for f in report["findings"] if f["rule"] == "run-as-non-root"}
    assert "row4-named-user" not in names, "the kubelet enforces runAsNonRoot; without the config we cannot know more"
    assert code == 1
