"""image-signature on the real control plane: the chart's webhook (its policy and its verify keys mounted as rendered)
admits a Pod whose image cosign signed and denies an unsigned one with the message a person reads in kubectl; a
registry that hangs on its signatures is answered inside timeoutSeconds by `on_unavailable`; and `admission-cli audit`
reports both Pods, judged by the digests they run."""

from __future__ import annotations

import json
import os
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.cluster.auditkit import audit, container, namespace, pod
from tests.cluster.controlplane import ControlPlane
from tests.cluster.release import Release, installed
from tests.images.faults import Faults, hang, serve_image
from tests.verify.buildkit import BuildKit, scratch_context
from tests.verify.conftest import buildkit, cosign, keys, layout, plain  # noqa: F401 (fixtures)
from tests.pin import images as fixed
from tests.verify.signing import Cosign, Key, Registry, push_image
from tests.verify.test_docs import DOC, SHOWN_HOST, blocks

pytestmark = pytest.mark.controlplane

NS = "signatures"
BEFORE = "signatures-before"  # excluded from the webhook: Pods there stand for what ran before the policy


@pytest.fixture(scope="module")
def hanging() -> Iterator[Faults]:
    """A registry that serves an image and hangs when asked for its signatures."""
    faults = Faults().start()
    image = serve_image(faults, "team/slow", "1.0")
    tag = image.manifest_digest.replace(":", "-")
    for path in (f"/v2/team/slow/referrers/{image.manifest_digest}", f"/v2/team/slow/manifests/{tag}",
                 f"/v2/team/slow/manifests/{tag}.sig"):
        faults.route(path, hang())
    yield faults
    faults.stop()


@pytest.fixture(scope="module")
def images(cosign: Cosign, keys: dict[str, Key], plain: Any, layout: Path) -> dict[str, str]:  # noqa: F811
    api = Registry(plain.host)
    signed = push_image(layout, plain.host, "team/cluster-signed")
    unsigned = push_image(layout, plain.host, "team/cluster-unsigned")
    digest = api.digest("team/cluster-signed", "1.0")
    cosign.sign(f"{signed}@{digest}", keys["release"])
    return {"signed": f"{signed}:1.0", "signed@": f"{signed}@{digest}", "unsigned": f"{unsigned}:1.0",
            "unsigned@": f"{unsigned}@{api.digest('team/cluster-unsigned', '1.0')}"}


def verify_policy(hosts: list[str]) -> str:
    listed = ", ".join(f"'{h}'" for h in hosts)
    entries = "".join(f"  - images: ['{h}/built/*']\n    keys: [../keys/release.pub]\n    signature: off\n"
                      "    provenance: required\n"
                      f"    sources: ['https://github.com/acme/*']\n"
                      f"  - images: ['{h}/team/*', '{h}/shop/*']\n    keys: [../keys/release.pub]\n"
                      "    on_unavailable: deny\n" for h in hosts)
    return f"images:\n  allowed_registries: [{listed}]\n  insecure_registries: [{listed}]\n  verify:\n{entries}"


@pytest.fixture(scope="module")
def release(control_plane: ControlPlane, tmp_path_factory: pytest.TempPathFactory, keys: dict[str, Key],  # noqa: F811
            plain: Any, hanging: Faults) -> Iterator[Release]:  # noqa: F811
    namespace(control_plane, NS, "shop", BEFORE)
    values = {"policy": verify_policy([plain.host, hanging.host]), "excludedNamespaces": [BEFORE],
              "verifyKeys": {"keys": {"release.pub": keys["release"].public.read_text()}}}
    yield from installed(control_plane, tmp_path_factory.mktemp("release"), values)


def test_a_signed_image_is_admitted_and_an_unsigned_one_denied_through_kubectl(
        control_plane: ControlPlane, release: Release, images: dict[str, str]) -> None:
    admitted = control_plane.apply([pod("signed", NS, container(image=images["signed"]))], check=False)
    assert admitted.returncode == 0, admitted.stderr
    denied = control_plane.apply([pod("unsigned", NS, container(image=images["unsigned"]))], check=False)
    assert denied.returncode == 1
    assert 'admission webhook "validate.admission.policy" denied the request' in denied.stderr
    assert f"[image-signature] container 'app': image '{images['unsigned']}': no cosign signature on sha256:" \
        in denied.stderr, denied.stderr
    verified = release.wait_for_audit(lambda line: line.get("name") == "signed" and line.get("signatures"))
    assert verified[-1]["signatures"][0]["status"] == "verified"


def test_a_registry_that_hangs_on_signatures_is_answered_inside_timeout_seconds(
        control_plane: ControlPlane, release: Release, hanging: Faults) -> None:
    webhook = release.rendered.webhook
    started = time.monotonic()
    run = control_plane.apply([pod("slow", NS, container(image=f"{hanging.host}/team/slow:1.0"))], check=False)
    elapsed = time.monotonic() - started
    assert run.returncode == 1 and "[image-signature]" in run.stderr, run.stderr
    assert "signatures could not be checked" in run.stderr and "failed calling webhook" not in run.stderr
    assert "timeout" not in run.stderr.lower()  # the precise error is in the audit line, not the answer
    assert elapsed < webhook["timeoutSeconds"], f"kubectl apply took {elapsed:.1f} s"
    line = release.wait_for_audit(lambda entry: entry.get("name") == "slow" and entry.get("signatures"))[-1]
    assert line["signatures"][0]["status"] == "unavailable" and "timeout" in line["signatures"][0]["error"]


def running(plane: ControlPlane, name: str, namespace: str, ref: str) -> None:
    """What a kubelet writes once the container started (`ref`: name@digest as imageID): no kubelet runs here."""
    status = {"status": {"phase": "Running", "containerStatuses": [{
        "name": "app", "image": ref.split("@")[0], "imageID": ref, "ready": True, "restartCount": 0,
        "started": True, "state": {"running": {"startedAt": "2026-01-01T00:00:00Z"}}}]}}
    plane.kubectl("patch", "pod", name, "-n", namespace, "--subresource=status", "--type=merge", "-p",
                  json.dumps(status))


def audits(plane: ControlPlane, tmp_path: Path, keys: dict[str, Key], host: str) -> dict[str, dict[str, Any]]:  # noqa: F811
    """`admission-cli audit` of NS and BEFORE with the webhook's policy and key, on the running digests."""
    keys_dir = tmp_path / "keys"
    keys_dir.mkdir(exist_ok=True)
    (keys_dir / "release.pub").write_bytes(keys["release"].public.read_bytes())
    policy = tmp_path / "policy" / "policy.yaml"
    policy.parent.mkdir(exist_ok=True)
    policy.write_text(verify_policy([host]))
    return {space: audit(plane.admin_kubeconfig, "-n", space, "--policy", str(policy), "--format", "json",
                         offline=False).json() for space in (NS, BEFORE)}


def test_the_audit_reports_both_judged_by_the_digests_they_run(
        control_plane: ControlPlane, release: Release, images: dict[str, str], keys: dict[str, Key],  # noqa: F811
        plain: Any, tmp_path: Path) -> None:  # noqa: F811
    # The unsigned Pod runs in a namespace the webhook is not sent (the release's excludedNamespaces): what ran before.
    control_plane.apply([pod("signed", NS, container(image=images["signed"])),
                         pod("ran-before", BEFORE, container(image=images["unsigned"]))])
    running(control_plane, "signed", NS, images["signed@"])
    running(control_plane, "ran-before", BEFORE, images["unsigned@"])
    reports = audits(control_plane, tmp_path, keys, plain.host)
    findings = [f for f in reports[BEFORE]["findings"] if f["rule"] == "image-signature"]
    assert [(f["object"]["name"], f["severity"]) for f in findings] == [("ran-before", "deny")], findings
    assert "no cosign signature" in findings[0]["message"]
    assert not [f for f in reports[NS]["findings"] if f["rule"] == "image-signature"]
    assert [v["object"]["name"] for v in reports[NS]["verified"]] == ["signed"]
    assert images["signed@"].split("@")[1][:19] in reports[NS]["verified"][0]["message"]


def test_the_verify_pages_kubectl_run_is_what_kubectl_prints(
        control_plane: ControlPlane, release: Release, cosign: Cosign, keys: dict[str, Key], plain: Any,  # noqa: F811
        tmp_path: Path) -> None:
    """docs/verify.md's admission run, replayed: its Pods (the page's files), its images (fixed digests), the api image
    signed by the release key; kubectl's words as the page shows them (the registry shown as 127.0.0.1:5000)."""
    text = DOC.read_text(encoding="utf-8")
    folder = tmp_path / "layout"
    api = fixed.image(folder, "api", release="shop api 1.4", user="10001")
    fixed.push(folder, "api", f"{plain.host}/shop/api:1.4.0")
    fixed.image(folder, "worker", release="shop worker 2.0", user="10001")
    fixed.push(folder, "worker", f"{plain.host}/shop/worker:2.0.1")
    cosign.sign(f"{plain.host}/shop/api@{api}", keys["release"])
    for name, body in blocks(text, "file").items():
        (tmp_path / name).write_text(body.replace(SHOWN_HOST, plain.host))
    (transcript,) = blocks(text, "kubectl").values()
    shown = []
    for command in [line[2:] for line in transcript.splitlines() if line.startswith("$ ")]:
        args = command.split()[1:]
        run = control_plane.kubectl(*args[:-1], str(tmp_path / args[-1]), check=False)
        # kubectl prints the API server's warnings as they arrive, before the result: stderr first, as a terminal shows
        said = (run.stderr + run.stdout).replace(str(tmp_path) + "/", "").replace(plain.host, SHOWN_HOST)
        shown += [f"$ {command}", said.rstrip("\n")]
    real = "\n".join(shown) + "\n"
    if os.environ.get("ADMISSION_WRITE_DOCS") == "1":
        DOC.write_text(text.replace(transcript, real), encoding="utf-8")
        return
    assert real == transcript, f"docs/verify.md's kubectl run is stale; a real run prints:\n{real}"


@pytest.fixture(scope="module")
def built(buildkit: BuildKit, cosign: Cosign, keys: dict[str, Key], plain: Any,  # noqa: F811
          tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    """built/api: built by BuildKit with provenance, its index signed; built/worker: the same build, index unsigned."""
    out = {}
    for name, sign in (("api", True), ("worker", False)):
        context = scratch_context(tmp_path_factory.mktemp(f"ctx-{name}"), text=name)
        buildkit.push(context, f"{plain.host}/built/{name}:1.0", platforms="linux/amd64,linux/arm64",
                      opts={"vcs:source": "https://github.com/acme/shop", "vcs:revision": "4f2c1e0aa"})
        digest = Registry(plain.host).digest(f"built/{name}", "1.0")
        if sign:
            cosign.sign(f"{plain.host}/built/{name}@{digest}", keys["release"])
        out[name], out[f"{name}@"] = f"{plain.host}/built/{name}:1.0", f"{plain.host}/built/{name}@{digest}"
    return out


def test_provenance_admits_a_signed_buildkit_build_and_denies_an_unsigned_one(
        control_plane: ControlPlane, release: Release, built: dict[str, str], keys: dict[str, Key],  # noqa: F811
        plain: Any, tmp_path: Path) -> None:  # noqa: F811
    admitted = control_plane.apply([pod("built-api", NS, container(image=built["api"]))], check=False)
    assert admitted.returncode == 0, admitted.stderr
    denied = control_plane.apply([pod("built-worker", NS, container(image=built["worker"]))], check=False)
    assert denied.returncode == 1
    assert (f"[image-attestation] container 'app': image '{built['worker']}': linux/amd64 of sha256:" in denied.stderr
            and "provenance present, unsigned" in denied.stderr), denied.stderr
    line = release.wait_for_audit(lambda entry: entry.get("name") == "built-api" and entry.get("signatures"))[-1]
    (proven,) = [e for e in line["signatures"] if "provenance" in e]
    assert proven["provenance"] == "verified" and "built by BuildKit (SLSA v1)" in proven["detail"]
    # the audit, on the digest that runs: the denied build ran before the policy (an excluded namespace)
    control_plane.apply([pod("built-worker", BEFORE, container(image=built["worker"]))])
    running(control_plane, "built-api", NS, built["api@"])
    running(control_plane, "built-worker", BEFORE, built["worker@"])
    reports = audits(control_plane, tmp_path, keys, plain.host)
    assert [f["object"]["name"] for f in reports[BEFORE]["findings"] if f["rule"] == "image-attestation"] == \
        ["built-worker"]
    assert "built-api" in {v["object"]["name"] for v in reports[NS]["verified"] if v["rule"] == "image-attestation"}
