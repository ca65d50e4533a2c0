"""`admission-cli check` with `images.verify`: the same answer offline, resolved, and from an archive that carries its
signatures; policy errors; caches that never hold a verdict. Real cosign, real registries (tests/verify/conftest.py)."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path
from typing import Any

import pytest

from admission.cli.main import main
from tests.images import oci
from tests.verify.signing import Cosign, Key, Registry, push_image, push_index

POD = """apiVersion: v1
kind: Pod
metadata: {{name: {name}, namespace: shop}}
spec:
  securityContext: {{runAsNonRoot: true, runAsUser: 1000}}
  containers:
  - name: app
    image: {image}
    resources: {{limits: {{cpu: 100m, memory: 64Mi}}}}
"""


def write_policy(path: Path, host: str, key: Key, *, signature: str = "required", on_unavailable: str = "deny",
                 extra: str = "") -> Path:
    path.write_text(f"images:\n  allowed_registries: ['{host}']\n  insecure_registries: ['{host}']\n  verify:\n"
                    f"  - images: ['{host}/team/*']\n    keys: [{key.public}]\n    signature: {signature}\n"
                    f"    on_unavailable: {on_unavailable}\n{extra}")
    return path


def check(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, dict[str, Any]]:
    code = main(["check", "--format", "json", *argv])
    return code, json.loads(capsys.readouterr().out)


def signature_findings(report: dict[str, Any]) -> list[dict[str, Any]]:
    return [f for f in report["findings"] if f["rule"] == "image-signature"]


@pytest.fixture(scope="module")
def signed(cosign: Cosign, keys: dict[str, Key], plain: Any, layout: Path) -> dict[str, str]:
    """team/signed:1.0 signed by `release`, team/unsigned:1.0 not signed, team/multi:1.0 an index signed."""
    api = Registry(plain.host)
    out = {"signed": push_image(layout, plain.host, "team/signed"), "unsigned": push_image(layout, plain.host,
                                                                                          "team/unsigned")}
    out["signed-digest"] = api.digest("team/signed", "1.0")
    cosign.sign(f"{out['signed']}@{out['signed-digest']}", keys["release"])
    out["multi"], _ = push_index(layout, plain.host, "team/multi")
    cosign.sign(f"{out['multi']}@{api.digest('team/multi', '1.0')}", keys["release"])
    return out


def test_offline_each_covered_image_gets_one_warning_whatever_on_unavailable_says(
        capsys: pytest.CaptureFixture[str], tmp_path: Path, keys: dict[str, Key], plain: Any, signed: dict[str, str]) -> None:
    policy = write_policy(tmp_path / "policy.yaml", plain.host, keys["release"], on_unavailable="deny")
    pod = tmp_path / "pod.yaml"
    pod.write_text(POD.format(name="web", image=f"{signed['unsigned']}:1.0"))
    code, report = check(capsys, "--policy", str(policy), str(pod))
    (finding,) = signature_findings(report)
    assert finding["severity"] == "warn" and "not checked offline: pass --resolve-images" in finding["message"]
    assert code == 0  # an offline pre-commit run sharing the webhook's policy does not fail


def test_resolved_a_signed_image_is_verified_and_an_unsigned_one_denied(
        capsys: pytest.CaptureFixture[str], tmp_path: Path, keys: dict[str, Key], plain: Any, signed: dict[str, str]) -> None:
    policy = write_policy(tmp_path / "policy.yaml", plain.host, keys["release"])
    good, bad = tmp_path / "good.yaml", tmp_path / "bad.yaml"
    good.write_text(POD.format(name="good", image=f"{signed['signed']}:1.0"))
    bad.write_text(POD.format(name="bad", image=f"{signed['unsigned']}:1.0"))
    code, report = check(capsys, "--resolve-images", "--no-cache", "--policy", str(policy), str(good))
    assert code == 0 and signature_findings(report) == []
    (proof,) = report["verified"]
    assert proof["rule"] == "image-signature" and signed["signed-digest"][:19] in proof["message"]
    assert "verified for tag 1.0 at admission, not at pull" in proof["message"]
    code, report = check(capsys, "--resolve-images", "--no-cache", "--policy", str(policy), str(bad))
    (finding,) = signature_findings(report)
    assert code == 1 and finding["severity"] == "deny" and "no cosign signature" in finding["message"]
    assert finding["line"] == 8 and finding["path"].endswith("image")


def test_signature_warn_is_a_warning_and_an_exemption_suppresses_with_its_reason(
        capsys: pytest.CaptureFixture[str], tmp_path: Path, keys: dict[str, Key], plain: Any, signed: dict[str, str]) -> None:
    pod = tmp_path / "pod.yaml"
    pod.write_text(POD.format(name="legacy-app", image=f"{signed['unsigned']}:1.0"))
    warn = write_policy(tmp_path / "warn.yaml", plain.host, keys["release"], signature="warn")
    code, report = check(capsys, "--resolve-images", "--no-cache", "--policy", str(warn), str(pod))
    assert code == 0 and [f["severity"] for f in signature_findings(report)] == ["warn"]
    exempt = write_policy(tmp_path / "exempt.yaml", plain.host, keys["release"],
                          extra="exemptions:\n- {rule: image-signature, name: legacy-app, reason: 'signed from 2027'}\n")
    code, report = check(capsys, "--resolve-images", "--no-cache", "--policy", str(exempt), str(pod))
    (finding,) = signature_findings(report)
    assert code == 0 and finding["suppressed"] and finding["reason"] == "signed from 2027"


def test_compose_images_and_dockerfile_bases_are_verified_but_not_what_a_service_builds(
        capsys: pytest.CaptureFixture[str], tmp_path: Path, keys: dict[str, Key], plain: Any, signed: dict[str, str]) -> None:
    policy = write_policy(tmp_path / "policy.yaml", plain.host, keys["release"])
    (tmp_path / "app").mkdir()
    (tmp_path / "app" / "Dockerfile").write_text(f"FROM {signed['unsigned']}:1.0\nUSER 1000\n")
    compose = tmp_path / "compose.yaml"
    compose.write_text(f"services:\n  db:\n    image: {signed['signed']}:1.0\n    user: '1000'\n"
                       f"  api:\n    build: ./app\n    image: {plain.host}/team/api:2.0\n")
    code, report = check(capsys, "--resolve-images", "--no-cache", "--policy", str(policy), str(compose))
    findings = {(f["object"]["name"], f["value"]) for f in signature_findings(report)}
    assert findings == {("api", f"{signed['unsigned']}:1.0")}  # the FROM, not the image the build produces
    assert [v["object"]["name"] for v in report["verified"]] == ["db"]
    dockerfile = tmp_path / "Dockerfile"
    dockerfile.write_text(f"FROM {signed['multi']}:1.0\nUSER 1000\n")
    code, report = check(capsys, "--resolve-images", "--no-cache", "--policy", str(policy), str(dockerfile))
    assert signature_findings(report) == [] and len(report["verified"]) == 1


def test_a_cosign_save_layout_is_verified_offline(capsys: pytest.CaptureFixture[str], tmp_path: Path, cosign: Cosign,
                                                  keys: dict[str, Key], plain: Any, layout: Path) -> None:
    api = Registry(plain.host)
    for bundle in (False, True):
        name = push_image(layout, plain.host, f"team/saved-{'bundle' if bundle else 'legacy'}")
        digest = api.digest(name.split("/", 1)[1], "1.0")
        cosign.sign(f"{name}@{digest}", keys["release"], bundle=bundle)
        saved = tmp_path / f"saved-{bundle}"
        cosign.save(f"{name}@{digest}", saved)
        policy = write_policy(tmp_path / "policy.yaml", plain.host, keys["release"])
        code, report = check(capsys, "--offline", "--policy", str(policy), str(saved))
        assert code == 0 and signature_findings(report) == [], report
        (proof,) = report["verified"]
        assert "OCI layout" in proof["message"]
        if not bundle:  # the legacy payload names the repository; a layout of v3 bundles names none
            assert proof["value"] == f"{name}@{digest}"
        other = write_policy(tmp_path / "other.yaml", plain.host, keys["other"])
        code, report = check(capsys, "--offline", "--policy", str(other), str(saved))
        (finding,) = signature_findings(report)
        assert code == 1 and finding["severity"] == "deny" and "not" in finding["message"]


def test_archives_that_dropped_their_signatures_say_so(capsys: pytest.CaptureFixture[str], tmp_path: Path,
                                                       cosign: Cosign, keys: dict[str, Key], plain: Any,
                                                       signed: dict[str, str]) -> None:
    policy = write_policy(tmp_path / "policy.yaml", plain.host, keys["release"])
    copied = tmp_path / "copied.tar"
    oci.copy(f"docker://{signed['signed']}:1.0", f"oci-archive:{copied}:{signed['signed']}:1.0")
    code, report = check(capsys, "--policy", str(policy), str(copied))
    (finding,) = signature_findings(report)
    assert code == 1 and "skopeo copy` drop signatures" in finding["message"]
    assert "cosign save --dir" in finding["message"]


@pytest.mark.parametrize(("entry", "said"), [
    ("  - images: ['x/*']\n    identities: [{issuer: https://token.actions.githubusercontent.com}]\n",
     "images.verify[0].identities: keyless verification (identities, issuers) is not supported yet"),
    ("  - images: ['x/*']\n    keys: [missing.pub]\n", "images.verify[0].keys[0]: cannot read key file 'missing.pub'"),
    ("  - images: ['x/*']\n    keys: [bad.pub]\n", "images.verify[0].keys[0]: bad.pub is not a PEM public key"),
    ("  - images: ['x/*']\n    keys: [private.pem]\n", "is a private key; give the public key"),
    ("  - images: ['x/app:1.0']\n    keys: [good.pub]\n", "must be registry/repository (a glob), without a tag"),
    ("  - images: ['x/*']\n    keys: [good.pub]\n    signature: maybe\n", "signature must be required, warn or off"),
    ("  - images: ['x/*']\n", "images.verify[0].keys is required"),
])
def test_a_bad_verify_entry_is_a_policy_error_naming_file_line_and_key(
        capsys: pytest.CaptureFixture[str], tmp_path: Path, keys: dict[str, Key], entry: str, said: str) -> None:
    (tmp_path / "bad.pub").write_text("-----BEGIN PUBLIC KEY-----\nnot base64 at all\n-----END PUBLIC KEY-----\n")
    (tmp_path / "good.pub").write_bytes(keys["release"].public.read_bytes())
    subprocess.run(["openssl", "genrsa", "-out", str(tmp_path / "private.pem"), "2048"], check=True, capture_output=True)
    policy = tmp_path / "policy.yaml"
    policy.write_text("images:\n  verify:\n" + entry)
    pod = tmp_path / "pod.yaml"
    pod.write_text(POD.format(name="web", image="x/app:1.0"))
    assert main(["check", "--policy", str(policy), str(pod)]) == 2
    err = capsys.readouterr().err
    assert said in err and f"{policy}:" in err


def test_rules_cannot_set_the_severity_of_image_signature(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    policy = tmp_path / "policy.yaml"
    policy.write_text("rules:\n  image-signature: off\n")
    pod = tmp_path / "pod.yaml"
    pod.write_text(POD.format(name="web", image="x/app:1.0"))
    assert main(["check", "--policy", str(policy), str(pod)]) == 2
    assert "takes its severity from images.verify" in capsys.readouterr().err


def test_a_cached_answer_never_decides_a_signature(capsys: pytest.CaptureFixture[str], tmp_path: Path, cosign: Cosign,
                                                   keys: dict[str, Key], plain: Any, layout: Path) -> None:
    """Objects cached on disk are hashed again when read, and every check verifies again: a cache edited between
    runs holds no trust. "No signature" is kept for images.tag_ttl only (a declared exception: signing after a push)."""
    api = Registry(plain.host)
    name = push_image(layout, plain.host, "team/cached")
    digest = api.digest("team/cached", "1.0")
    cache = tmp_path / "cache"
    pod = tmp_path / "pod.yaml"
    pod.write_text(POD.format(name="web", image=f"{name}:1.0"))
    policy = write_policy(tmp_path / "policy.yaml", plain.host, keys["release"])
    run = ("--resolve-images", "--cache-dir", str(cache), "--policy", str(policy), str(pod))
    assert check(capsys, *run)[0] == 1  # unsigned, and "no signature" is now cached
    cosign.sign(f"{name}@{digest}", keys["release"])
    code, report = check(capsys, *run)
    assert code == 1 and "no cosign signature" in signature_findings(report)[0]["message"]  # within tag_ttl
    fresh = write_policy(tmp_path / "fresh.yaml", plain.host, keys["release"], extra="  tag_ttl: 0\n")
    assert check(capsys, "--resolve-images", "--cache-dir", str(cache), "--policy", str(fresh), str(pod))[0] == 0
    # Edit every cached object: the reads hash them again and go back to the registry; the verdict holds.
    objects = list((cache / "v3" / "objects").glob("*.json"))
    assert objects
    for path in objects:
        entry = json.loads(path.read_text())
        entry["data"] = "e30="  # "{}"
        path.write_text(json.dumps(entry))
    code, report = check(capsys, "--resolve-images", "--cache-dir", str(cache), "--policy", str(fresh), str(pod))
    assert code == 0 and len(report["verified"]) == 1
    other = write_policy(tmp_path / "other.yaml", plain.host, keys["other"], extra="  tag_ttl: 0\n")
    assert check(capsys, "--resolve-images", "--cache-dir", str(cache), "--policy", str(other), str(pod))[0] == 1


@pytest.mark.parametrize("command", [["check-policy", "{policy}"], ["serve", "--policy", "{policy}", "--port", "0"]],
                         ids=["check-policy", "serve"])
def test_a_keyless_entry_is_refused_by_check_policy_and_at_start(tmp_path: Path, command: list[str]) -> None:
    import sys

    policy = tmp_path / "policy.yaml"
    policy.write_text("images:\n  verify:\n  - images: [x/*]\n"
                      "    identities: [{issuer: https://token.actions.githubusercontent.com}]\n")
    cli = Path(sys.executable).parent / "admission-cli"
    run = subprocess.run([str(cli), *(part.format(policy=policy) for part in command)], capture_output=True, text=True,
                         timeout=60)
    assert run.returncode == 2
    assert "keyless verification (identities, issuers) is not supported yet" in run.stderr
    assert f"{policy}:4" in run.stderr
