"""image-attestation with the real tools: images built by BuildKit with SLSA provenance (v1 and v0.2, mode=min and
mode=max, one and two platforms), indexes signed by cosign, cosign attestations of both predicate types on the index and
on a platform manifest. Each case says what is decided and why; `cosign verify-attestation --key` agrees wherever it
has an opinion (cosign attestations; BuildKit's provenance is unsigned, which cosign does not read)."""

from __future__ import annotations

import asyncio
import itertools
import json
import time
from pathlib import Path
from typing import Any

import pytest

from admission.images.cache import ImageResolver
from admission.images.registry import RegistryClient
from admission.images.verify.remote import Checks, Verifier
from admission.policy.config import Policy, load_policy
from tests.verify.buildkit import BuildKit, scratch_context
from tests.verify.signing import OCI_INDEX, OCI_MANIFEST, Cosign, Key, Registry, push_image

_names = itertools.count()
V1, V02 = "https://slsa.dev/provenance/v1", "https://slsa.dev/provenance/v0.2"
BUILDKIT_V1 = "https://github.com/moby/buildkit/blob/master/docs/attestations/slsa-definitions.md"
BUILDKIT_V02 = "https://mobyproject.org/buildkit@v1"


def _repo(stem: str) -> str:
    return f"prov/{stem}-{next(_names)}"


def policy(tmp_path: Path, host: str, key: Key, *, provenance: str = "required", extra: str = "") -> Policy:
    path = tmp_path / f"policy-{next(_names)}.yaml"
    path.write_text(f"images:\n  allowed_registries: ['{host}']\n  insecure_registries: ['{host}']\n  verify:\n"
                    f"  - images: ['{host}/prov/*']\n    keys: [{key.public}]\n    signature: off\n"
                    f"    provenance: {provenance}\n{extra}")
    return load_policy(str(path))


def ours(policy_: Policy, image: str) -> Checks:
    settings = policy_.images

    async def run() -> Checks:
        client = RegistryClient(settings)
        try:
            return await Verifier(ImageResolver(client, settings=settings)).verify(
                image, settings.verify[0], deadline=time.monotonic() + 60, settings=settings)
        finally:
            await client.aclose()

    return asyncio.run(run())


def attestation(policy_: Policy, image: str) -> Any:  # noqa: ANN401
    checked = ours(policy_, image).attestation
    assert checked is not None
    return checked


def built(buildkit: BuildKit, tmp_path: Path, host: str, stem: str, *, platforms: str = "linux/amd64",
          provenance: str = "mode=max", opts: dict[str, str] | None = None) -> tuple[str, str]:
    """(registry/repo, index digest) of a fresh BuildKit build pushed as :1.0."""
    repo = _repo(stem)
    context = scratch_context(tmp_path / f"ctx-{next(_names)}", text=repo)
    buildkit.push(context, f"{host}/{repo}:1.0", platforms=platforms, provenance=provenance, opts=opts)
    return f"{host}/{repo}", Registry(host).digest(repo, "1.0")


def platforms_of(host: str, repo: str, digest: str) -> dict[str, str]:
    index = json.loads(Registry(host).manifest(repo, digest)[1])
    return {f"{m['platform']['os']}/{m['platform']['architecture']}": m["digest"] for m in index["manifests"]
            if m.get("platform", {}).get("os") != "unknown"}


# --- BuildKit's own provenance ------------------------------------------------------------------------------


@pytest.mark.parametrize(("provenance", "platforms"), [
    ("mode=max", "linux/amd64"), ("mode=min", "linux/amd64"), ("mode=max,version=v0.2", "linux/amd64"),
    ("mode=min,version=v0.2", "linux/amd64,linux/arm64"), ("mode=max", "linux/amd64,linux/arm64")])
def test_buildkit_provenance_counts_once_the_index_is_signed(
        tmp_path: Path, buildkit: BuildKit, cosign: Cosign, keys: dict[str, Key], plain: Any, provenance: str,
        platforms: str) -> None:
    """Unsigned, BuildKit's provenance is a claim anyone who can push can make: "present, unsigned" (required fails,
    warn warns). A valid signature on the index names its attestation manifests by digest: then it counts."""
    name, index = built(buildkit, tmp_path, plain.host, "buildkit", platforms=platforms, provenance=provenance)
    before = attestation(policy(tmp_path, plain.host, keys["release"]), f"{name}:1.0")
    assert before.status == "unsigned", before
    cosign.sign(f"{name}@{index}", keys["release"])
    after = attestation(policy(tmp_path, plain.host, keys["release"]), f"{name}:1.0")
    assert after.status == "verified", after
    version = "SLSA v0.2" if "v0.2" in provenance else "SLSA v1"
    assert f"built by BuildKit ({version})" in after.detail and "provenance signed through the index" in after.detail
    assert f"({len(platforms.split(','))})" in after.detail  # every runnable platform counted


def test_a_signed_platform_manifest_does_not_vouch_for_the_index_that_lists_it(
        tmp_path: Path, buildkit: BuildKit, cosign: Cosign, keys: dict[str, Key], plain: Any) -> None:
    name, index = built(buildkit, tmp_path, plain.host, "platform-signed")
    (platform,) = platforms_of(plain.host, name.split("/", 1)[1], index).values()
    cosign.sign(f"{name}@{platform}", keys["release"])
    check = attestation(policy(tmp_path, plain.host, keys["release"]), f"{name}:1.0")
    assert check.status == "unsigned" and "signature on the index" in check.detail


def _push_attestation(api: Registry, repo: str, statement: dict[str, Any], about: str) -> dict[str, Any]:
    """A hand-written BuildKit-style attestation manifest; returns its index entry."""
    layer = json.dumps(statement).encode()
    empty = b"{}"
    manifest = json.dumps({
        "schemaVersion": 2, "mediaType": OCI_MANIFEST, "artifactType": "application/vnd.docker.attestation.manifest.v1+json",
        "config": {"mediaType": "application/vnd.oci.empty.v1+json", "digest": api.push_blob(repo, empty), "size": 2},
        "layers": [{"mediaType": "application/vnd.in-toto+json", "digest": api.push_blob(repo, layer),
                    "size": len(layer), "annotations": {"in-toto.io/predicate-type": statement["predicateType"]}}],
    }).encode()
    digest = api.push_manifest(repo, f"att-{next(_names)}", manifest, OCI_MANIFEST)
    return {"mediaType": OCI_MANIFEST, "digest": digest, "size": len(manifest),
            "annotations": {"vnd.docker.reference.digest": about, "vnd.docker.reference.type": "attestation-manifest"},
            "platform": {"architecture": "unknown", "os": "unknown"}}


def _statement(subject: str, *, predicate_type: str = V1, source: str = "https://github.com/acme/api") -> dict[str, Any]:
    return {"_type": "https://in-toto.io/Statement/v1", "predicateType": predicate_type,
            "subject": [{"name": "forged", "digest": {"sha256": subject.split(":", 1)[1]}}],
            "predicate": {"buildDefinition": {"buildType": BUILDKIT_V1, "externalParameters": {
                "configSource": {"uri": source, "path": "Dockerfile"}, "request": {"frontend": "dockerfile.v0"}}},
                "runDetails": {"builder": {"id": ""}}}}


def _wrap(api: Registry, repo: str, platform: str, attestation_entry: dict[str, Any], tag: str) -> str:
    _, body, _ = api.manifest(repo, platform)
    index = {"schemaVersion": 2, "mediaType": OCI_INDEX, "manifests": [
        {"mediaType": OCI_MANIFEST, "digest": platform, "size": len(body),
         "platform": {"architecture": "amd64", "os": "linux"}}, attestation_entry]}
    return api.push_manifest(repo, tag, json.dumps(index).encode(), OCI_INDEX)


def test_a_forged_index_around_a_signed_manifest_is_not_trusted(
        tmp_path: Path, buildkit: BuildKit, cosign: Cosign, keys: dict[str, Key], plain: Any) -> None:
    """Anyone who can push can wrap a manifest the release key signed and a hand-written attestation in a new index;
    the release key never signed that index, so its attestation counts for nothing."""
    api = Registry(plain.host)
    name, index = built(buildkit, tmp_path, plain.host, "forged")
    repo = name.split("/", 1)[1]
    (platform,) = platforms_of(plain.host, repo, index).values()
    cosign.sign(f"{name}@{platform}", keys["release"])
    entry = _push_attestation(api, repo, _statement(platform), platform)
    _wrap(api, repo, platform, entry, "forged")
    check = attestation(policy(tmp_path, plain.host, keys["release"]), f"{name}:forged")
    assert check.status == "unsigned", check


def test_provenance_about_another_manifest_is_invalid(
        tmp_path: Path, buildkit: BuildKit, cosign: Cosign, keys: dict[str, Key], plain: Any) -> None:
    api = Registry(plain.host)
    name, index = built(buildkit, tmp_path, plain.host, "other-subject")
    repo = name.split("/", 1)[1]
    (platform,) = platforms_of(plain.host, repo, index).values()
    entry = _push_attestation(api, repo, _statement("sha256:" + "0" * 64), platform)
    wrapped = _wrap(api, repo, platform, entry, "mismatch")
    cosign.sign(f"{name}@{wrapped}", keys["release"])  # even signed: it is not about the manifest it is attached to
    check = attestation(policy(tmp_path, plain.host, keys["release"]), f"{name}:mismatch")
    assert check.status == "invalid" and "not that manifest" in check.detail, check


def test_an_attestation_of_another_predicate_type_is_no_provenance(
        tmp_path: Path, buildkit: BuildKit, cosign: Cosign, keys: dict[str, Key], plain: Any) -> None:
    api = Registry(plain.host)
    name, index = built(buildkit, tmp_path, plain.host, "sbom-only", provenance=None)  # type: ignore[arg-type]
    repo = name.split("/", 1)[1]
    platform = api.digest(repo, "1.0")  # no attestation: BuildKit pushed a plain manifest
    entry = _push_attestation(api, repo, _statement(platform, predicate_type="https://spdx.dev/Document"), platform)
    wrapped = _wrap(api, repo, platform, entry, "sbom")
    cosign.sign(f"{name}@{wrapped}", keys["release"])
    check = attestation(policy(tmp_path, plain.host, keys["release"]), f"{name}:sbom")
    assert check.status == "missing" and "no SLSA provenance" in check.detail, check


@pytest.mark.parametrize(("constraint", "provenance", "opts", "passes"), [
    ("sources: ['https://github.com/acme/*']", "mode=max", {"vcs:source": "https://github.com/acme/api"}, True),
    ("sources: ['https://github.com/other/*']", "mode=max", {"vcs:source": "https://github.com/acme/api"}, False),
    ("sources: ['https://github.com/acme/*']", "mode=max", {}, False),  # a local context names no source
    ("builders: ['https://ci.example/runner']", "mode=max,builder-id=https://ci.example/runner", {}, True),
    ("builders: ['https://ci.example/runner']", "mode=max", {}, False),  # BuildKit names no builder by default
    (f"build_types: ['{BUILDKIT_V02}']", "mode=max,version=v0.2", {}, True),
    (f"build_types: ['{BUILDKIT_V02}']", "mode=max", {}, False),  # v1 spells BuildKit's build type otherwise
])
def test_build_types_builders_and_sources_narrow_what_counts(
        tmp_path: Path, buildkit: BuildKit, cosign: Cosign, keys: dict[str, Key], plain: Any, constraint: str,
        provenance: str, opts: dict[str, str], passes: bool) -> None:
    name, index = built(buildkit, tmp_path, plain.host, "constrained", provenance=provenance, opts=opts)
    cosign.sign(f"{name}@{index}", keys["release"])
    check = attestation(policy(tmp_path, plain.host, keys["release"], extra=f"    {constraint}\n"), f"{name}:1.0")
    assert (check.status == "verified") is passes, check
    if not passes:
        assert check.status == "invalid"
    if opts.get("vcs:source") and passes:
        assert "at https://github.com/acme/api (the build says its source is that)" in check.detail


def test_an_image_with_no_provenance_fails_required_and_image_provenance_still_speaks(
        tmp_path: Path, cosign: Cosign, keys: dict[str, Key], plain: Any, layout: Path,
        capsys: pytest.CaptureFixture[str]) -> None:
    from admission.cli.main import main

    name = push_image(layout, plain.host, _repo("committed"))
    check = attestation(policy(tmp_path, plain.host, keys["release"]), f"{name}:1.0")
    assert check.status == "missing", check
    policy_file = tmp_path / "policy.yaml"
    policy_file.write_text(f"images:\n  allowed_registries: ['{plain.host}']\n  insecure_registries: ['{plain.host}']\n"
                           f"  verify:\n  - images: ['{plain.host}/prov/*']\n    keys: [{keys['release'].public}]\n"
                           "    signature: off\n    provenance: required\n")
    pod = tmp_path / "pod.yaml"
    pod.write_text(f"apiVersion: v1\nkind: Pod\nmetadata: {{name: p, namespace: x}}\nspec:\n  containers:\n"
                   f"  - name: app\n    image: {name}:1.0\n")
    main(["check", "--resolve-images", "--no-cache", "--format", "json", "--policy", str(policy_file), str(pod)])
    rules = {(f["rule"], f["severity"]) for f in json.loads(capsys.readouterr().out)["findings"]}
    assert ("image-attestation", "deny") in rules and ("image-provenance", "warn") in rules


# --- cosign attestations -----------------------------------------------------------------------------------


def _attest(cosign: Cosign, key: Key, ref: str, tmp_path: Path, *, kind: str, bundle: bool = True,
            source: str = "https://github.com/acme/api") -> None:
    predicate = tmp_path / f"predicate-{next(_names)}.json"
    if kind == "slsaprovenance1":
        body: dict[str, Any] = {"buildDefinition": {"buildType": "https://example.com/ci/v1", "externalParameters": {
            "configSource": {"uri": source, "digest": {"sha1": "4f2c1e0aa"}, "path": "Dockerfile"}},
            "resolvedDependencies": []}, "runDetails": {"builder": {"id": "https://ci.example/runner"}}}
    else:
        body = {"builder": {"id": "https://ci.example/runner"}, "buildType": "https://example.com/ci/v0.2",
                "invocation": {"configSource": {"uri": source, "digest": {"sha1": "4f2c1e0aa"},
                                                "entryPoint": "Dockerfile"}}, "materials": []}
    predicate.write_text(json.dumps(body))
    cosign._run("attest", "--key", str(key.private), "--type", kind, "--predicate", str(predicate),
                f"--new-bundle-format={'true' if bundle else 'false'}", "--use-signing-config=false",
                "--tlog-upload=false", "--allow-http-registry", "--allow-insecure-registry", "-y", ref)


def cosign_verifies_attestation(cosign: Cosign, key: Key, ref: str, kind: str) -> bool:
    return cosign._run("verify-attestation", "--key", str(key.public), "--type", kind, "--insecure-ignore-tlog=true",
                       "--allow-http-registry", "--allow-insecure-registry", ref, check=False).returncode == 0


@pytest.mark.parametrize("kind", ["slsaprovenance", "slsaprovenance1"])
@pytest.mark.parametrize("bundle", [True, False], ids=["bundle", "legacy"])
def test_a_cosign_attestation_on_the_index_covers_every_platform(
        tmp_path: Path, buildkit: BuildKit, cosign: Cosign, keys: dict[str, Key], plain: Any, kind: str,
        bundle: bool) -> None:
    name, index = built(buildkit, tmp_path, plain.host, "attested", platforms="linux/amd64,linux/arm64",
                        provenance=None)  # type: ignore[arg-type]
    _attest(cosign, keys["release"], f"{name}@{index}", tmp_path, kind=kind, bundle=bundle)
    assert cosign_verifies_attestation(cosign, keys["release"], f"{name}@{index}", kind)  # given the index digest
    check = attestation(policy(tmp_path, plain.host, keys["release"]), f"{name}:1.0")
    assert check.status == "verified", check
    assert "a cosign attestation on the index" in check.detail and "(2)" in check.detail
    assert "from Dockerfile at https://github.com/acme/api@4f2c1e0aa" in check.detail
    other = attestation(policy(tmp_path, plain.host, keys["other"]), f"{name}:1.0")
    assert other.status == "missing", other
    assert not cosign_verifies_attestation(cosign, keys["other"], f"{name}@{index}", kind)


def test_cosign_attestations_on_platform_manifests_count_only_for_every_platform(
        tmp_path: Path, buildkit: BuildKit, cosign: Cosign, keys: dict[str, Key], plain: Any) -> None:
    name, index = built(buildkit, tmp_path, plain.host, "per-platform", platforms="linux/amd64,linux/arm64",
                        provenance=None)  # type: ignore[arg-type]
    platforms = platforms_of(plain.host, name.split("/", 1)[1], index)
    _attest(cosign, keys["release"], f"{name}@{platforms['linux/amd64']}", tmp_path, kind="slsaprovenance1")
    assert cosign_verifies_attestation(cosign, keys["release"], f"{name}@{platforms['linux/amd64']}", "slsaprovenance1")
    assert not cosign_verifies_attestation(cosign, keys["release"], f"{name}@{platforms['linux/arm64']}",
                                           "slsaprovenance1")
    one = attestation(policy(tmp_path, plain.host, keys["release"]), f"{name}:1.0")
    assert one.status == "missing" and "linux/arm64" in one.detail, one
    _attest(cosign, keys["release"], f"{name}@{platforms['linux/arm64']}", tmp_path, kind="slsaprovenance")
    both = attestation(policy(tmp_path, plain.host, keys["release"]), f"{name}:1.0")
    assert both.status == "verified" and "(a cosign attestation)" in both.detail, both


# --- what it costs, and archives -----------------------------------------------------------------------------


def test_a_cold_check_of_a_signed_index_with_provenance_costs_six_requests_and_a_warm_one_none(
        tmp_path: Path, buildkit: BuildKit, cosign: Cosign, keys: dict[str, Key], plain: Any) -> None:
    name, index = built(buildkit, tmp_path, plain.host, "requests")
    cosign.sign(f"{name}@{index}", keys["release"])
    settings = policy(tmp_path, plain.host, keys["release"], extra="").images
    from dataclasses import replace

    entry = replace(settings.verify[0], signature="required")

    async def run() -> tuple[dict[str, int], dict[str, int], dict[str, int], Checks]:
        client = RegistryClient(settings)
        resolver = ImageResolver(client, settings=settings)
        verifier = Verifier(resolver)
        deadline = time.monotonic() + 60
        try:
            await resolver.config_for(f"{name}:1.0", deadline=deadline)
            resolved = dict(client.counters)
            first = await verifier.verify(f"{name}:1.0", entry, deadline=deadline, settings=settings)
            cold = dict(client.counters)
            await verifier.verify(f"{name}:1.0", entry, deadline=deadline, settings=settings)
            return resolved, cold, dict(client.counters), first
        finally:
            await client.aclose()

    resolved, cold, warm, first = asyncio.run(run())
    assert first.signature is not None and first.signature.status == "verified"
    assert first.attestation is not None and first.attestation.status == "verified"
    added = {k: cold.get(k, 0) - resolved.get(k, 0) for k in cold}
    # part 1's four (the referrers probe, the fallback tag, the bundle manifest and blob), the attestation manifest
    # and the statement; the index itself was read by the resolution and is not fetched again
    assert sum(added.values()) == 6, added
    assert warm == cold


def test_a_buildkit_oci_archive_carries_its_provenance_offline(
        tmp_path: Path, buildkit: BuildKit, keys: dict[str, Key], capsys: pytest.CaptureFixture[str]) -> None:
    from admission.cli.main import main

    archive = tmp_path / "app.oci.tar"
    buildkit.build(scratch_context(tmp_path / "ctx"), output=f"type=oci,dest={archive},name=registry.example.com/team/app:1.0",
                   platforms="linux/amd64,linux/arm64", opts={"vcs:source": "https://github.com/acme/api"})
    policy_file = tmp_path / "policy.yaml"
    policy_file.write_text(f"images:\n  verify:\n  - images: ['registry.example.com/team/*']\n"
                           f"    keys: [{keys['release'].public}]\n    signature: off\n    provenance: warn\n")
    main(["check", "--format", "json", "--policy", str(policy_file), str(archive)])
    findings = [f for f in json.loads(capsys.readouterr().out)["findings"] if f["rule"] == "image-attestation"]
    assert [f["severity"] for f in findings] == ["warn"]
    assert "provenance present, unsigned" in findings[0]["message"]  # the archive carries no signature of the index


def test_offline_a_covered_image_gets_one_provenance_warning(
        tmp_path: Path, keys: dict[str, Key], capsys: pytest.CaptureFixture[str]) -> None:
    from admission.cli.main import main

    policy_file = tmp_path / "policy.yaml"
    policy_file.write_text(f"images:\n  verify:\n  - images: ['registry.example.com/team/*']\n"
                           f"    keys: [{keys['release'].public}]\n    provenance: required\n    on_unavailable: deny\n")
    pod = tmp_path / "pod.yaml"
    pod.write_text("apiVersion: v1\nkind: Pod\nmetadata: {name: p, namespace: x}\nspec:\n  containers:\n"
                   "  - name: app\n    image: registry.example.com/team/api:1.0\n")
    main(["check", "--format", "json", "--policy", str(policy_file), str(pod)])
    findings = {f["rule"]: f for f in json.loads(capsys.readouterr().out)["findings"]
                if f["rule"] in ("image-attestation", "image-signature")}
    assert findings["image-attestation"]["severity"] == "warn"
    assert "provenance not checked offline: pass --resolve-images" in findings["image-attestation"]["message"]
    assert findings["image-signature"]["severity"] == "warn"

