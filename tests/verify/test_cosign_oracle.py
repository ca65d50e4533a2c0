"""image-signature against the real cosign: for every case, `cosign verify --key` on a named digest and our check
agree, and each test says which digest cosign was given. Images live in Debian's docker-registry (no referrers API:
cosign v3 writes the `sha256-<hex>` fallback tag) and in go-containerregistry's registry (referrers API)."""

from __future__ import annotations

import asyncio
import base64
import itertools
import json
import time
from pathlib import Path
from typing import Any

import pytest

from admission.images.cache import DiskCache, ImageResolver
from admission.images.registry import RegistryClient
from admission.images.verify.remote import Verifier
from admission.model import SignatureCheck
from admission.policy.config import Policy, load_policy
from tests.verify.conftest import ReferrersRegistry
from tests.verify.signing import OCI_INDEX, OCI_MANIFEST, Cosign, Key, Registry, push_image, push_index

_names = itertools.count()


def _repo(stem: str) -> str:
    return f"oracle/{stem}-{next(_names)}"


def policy(tmp_path: Path, host: str, *keys: Key) -> Policy:
    lines = ["images:", f"  allowed_registries: ['{host}']", f"  insecure_registries: ['{host}']", "  verify:",
             f"  - images: ['{host}/oracle/*']", "    keys:"]
    lines += [f"    - {key.public}" for key in keys]
    path = tmp_path / f"policy-{next(_names)}.yaml"
    path.write_text("\n".join(lines) + "\n")
    return load_policy(str(path))


def ours(policy_: Policy, image: str, *, resolver: ImageResolver | None = None) -> SignatureCheck:
    settings = policy_.images

    async def run() -> SignatureCheck:
        client = resolver.client if resolver is not None else RegistryClient(settings)
        used = resolver or ImageResolver(client, settings=settings)
        try:
            return await Verifier(used).check(image, settings.verify[0], deadline=time.monotonic() + 30,
                                                     settings=settings)
        finally:
            if resolver is None:
                await client.aclose()

    return asyncio.run(run())


def _host(registry: Any) -> str:  # noqa: ANN401 - either registry fixture
    return registry.host


REGISTRIES = ["plain", "referrers"]


@pytest.fixture(params=REGISTRIES)
def registry(request: pytest.FixtureRequest) -> Any:  # noqa: ANN401
    return request.getfixturevalue(request.param)


# --- one key, one format ----------------------------------------------------------------------------------------


@pytest.mark.parametrize("bundle", [True, False], ids=["bundle", "legacy"])
def test_a_signature_by_the_listed_key_verifies_as_cosign_verify_says(
        tmp_path: Path, cosign: Cosign, keys: dict[str, Key], registry: Any, layout: Path, bundle: bool) -> None:
    name = push_image(layout, _host(registry), _repo("signed"))
    digest = Registry(_host(registry)).digest(name.split("/", 1)[1], "1.0")
    cosign.sign(f"{name}@{digest}", keys["release"], bundle=bundle)
    assert cosign.verify(f"{name}@{digest}", keys["release"])  # cosign given the image's digest
    check = ours(policy(tmp_path, _host(registry), keys["release"]), f"{name}:1.0")
    assert check.status == "verified", check
    assert check.digest == digest and check.tag == "1.0"
    assert check.format == ("cosign bundle v0.3" if bundle else "cosign legacy signature")
    assert check.key == str(keys["release"].public)
    if not bundle:
        assert check.where.startswith("tag sha256-") and check.where.endswith(".sig")
    elif isinstance(registry, ReferrersRegistry):
        assert check.where == "OCI referrers API"
    else:
        assert check.where.startswith("tag sha256-") and not check.where.endswith(".sig")


@pytest.mark.parametrize("bundle", [True, False], ids=["bundle", "legacy"])
def test_a_signature_by_a_key_the_entry_does_not_list_is_not_valid(
        tmp_path: Path, cosign: Cosign, keys: dict[str, Key], plain: Any, layout: Path, bundle: bool) -> None:
    name = push_image(layout, plain.host, _repo("wrong-key"))
    digest = Registry(plain.host).digest(name.split("/", 1)[1], "1.0")
    cosign.sign(f"{name}@{digest}", keys["other"], bundle=bundle)
    assert not cosign.verify(f"{name}@{digest}", keys["release"])  # cosign given the digest and the listed key
    check = ours(policy(tmp_path, plain.host, keys["release"]), f"{name}:1.0")
    assert check.status == "invalid", check
    if bundle:
        assert "key the entry does not list" in check.detail


def test_two_listed_keys_of_which_one_signed_verify(tmp_path: Path, cosign: Cosign, keys: dict[str, Key], plain: Any,
                                                    layout: Path) -> None:
    name = push_image(layout, plain.host, _repo("two-keys"))
    digest = Registry(plain.host).digest(name.split("/", 1)[1], "1.0")
    cosign.sign(f"{name}@{digest}", keys["other"])
    assert cosign.verify(f"{name}@{digest}", keys["other"]) and not cosign.verify(f"{name}@{digest}", keys["release"])
    check = ours(policy(tmp_path, plain.host, keys["release"], keys["other"]), f"{name}:1.0")
    assert check.status == "verified" and check.key == str(keys["other"].public)


def test_an_image_with_no_signature_is_unsigned(tmp_path: Path, cosign: Cosign, keys: dict[str, Key], registry: Any,
                                                layout: Path) -> None:
    name = push_image(layout, _host(registry), _repo("unsigned"))
    digest = Registry(_host(registry)).digest(name.split("/", 1)[1], "1.0")
    assert not cosign.verify(f"{name}@{digest}", keys["release"])
    check = ours(policy(tmp_path, _host(registry), keys["release"]), f"{name}:1.0")
    assert check.status == "unsigned", check
    assert "no cosign signature" in check.detail and ".sig" in check.detail


@pytest.mark.parametrize("bundle", [True, False], ids=["bundle", "legacy"])
def test_a_signature_copied_from_another_image_is_not_valid(
        tmp_path: Path, cosign: Cosign, keys: dict[str, Key], plain: Any, layout: Path, bundle: bool) -> None:
    api = Registry(plain.host)
    source = push_image(layout, plain.host, _repo("original"))
    target = push_image(layout, plain.host, _repo("copy"))
    source_digest = api.digest(source.split("/", 1)[1], "1.0")
    target_digest = api.digest(target.split("/", 1)[1], "1.0")
    cosign.sign(f"{source}@{source_digest}", keys["release"], bundle=bundle)
    suffix = "" if bundle else ".sig"
    api.copy_manifest(source.split("/", 1)[1], source_digest.replace(":", "-") + suffix, target.split("/", 1)[1],
                      target_digest.replace(":", "-") + suffix)
    assert not cosign.verify(f"{target}@{target_digest}", keys["release"])  # cosign given the target's digest
    check = ours(policy(tmp_path, plain.host, keys["release"]), f"{target}:1.0")
    assert check.status == "invalid", check
    assert "copied from another image" in check.detail


# --- multi-platform ------------------------------------------------------------------------------------------


def test_a_signed_index_covers_every_platform(tmp_path: Path, cosign: Cosign, keys: dict[str, Key], registry: Any,
                                              layout: Path) -> None:
    name, platforms = push_index(layout, _host(registry), _repo("index-signed"))
    index = Registry(_host(registry)).digest(name.split("/", 1)[1], "1.0")
    cosign.sign(f"{name}@{index}", keys["release"])
    assert cosign.verify(f"{name}@{index}", keys["release"])  # cosign given the index digest
    check = ours(policy(tmp_path, _host(registry), keys["release"]), f"{name}:1.0")
    assert check.status == "verified" and check.digest == index  # the index digest, not a platform's


def test_every_platform_signed_without_the_index_verifies(tmp_path: Path, cosign: Cosign, keys: dict[str, Key],
                                                          plain: Any, layout: Path) -> None:
    name, platforms = push_index(layout, plain.host, _repo("platforms-signed"))
    index = Registry(plain.host).digest(name.split("/", 1)[1], "1.0")
    for digest in platforms.values():
        cosign.sign(f"{name}@{digest}", keys["release"])
    # cosign given each platform's digest: signed; given the index: not (by design, ours accepts every platform)
    assert all(cosign.verify(f"{name}@{d}", keys["release"]) for d in platforms.values())
    assert not cosign.verify(f"{name}@{index}", keys["release"])
    check = ours(policy(tmp_path, plain.host, keys["release"]), f"{name}:1.0")
    assert check.status == "verified", check
    assert "every runnable platform" in check.detail and "(2)" in check.detail


def test_one_platform_of_two_signed_is_not_valid(tmp_path: Path, cosign: Cosign, keys: dict[str, Key], plain: Any,
                                                 layout: Path) -> None:
    name, platforms = push_index(layout, plain.host, _repo("one-platform"))
    index = Registry(plain.host).digest(name.split("/", 1)[1], "1.0")
    cosign.sign(f"{name}@{platforms['linux/amd64']}", keys["release"])
    # cosign given the amd64 digest: valid; the arm64 digest and the index: not
    assert cosign.verify(f"{name}@{platforms['linux/amd64']}", keys["release"])
    assert not cosign.verify(f"{name}@{platforms['linux/arm64']}", keys["release"])
    assert not cosign.verify(f"{name}@{index}", keys["release"])
    check = ours(policy(tmp_path, plain.host, keys["release"]), f"{name}:1.0")
    assert check.status == "invalid", check
    assert "1 of 2 runnable platforms (linux/arm64 not)" in check.detail


def test_a_reference_pinned_to_a_platform_manifest_needs_that_manifest_signed(
        tmp_path: Path, cosign: Cosign, keys: dict[str, Key], plain: Any, layout: Path) -> None:
    name, platforms = push_index(layout, plain.host, _repo("pinned-platform"))
    index = Registry(plain.host).digest(name.split("/", 1)[1], "1.0")
    cosign.sign(f"{name}@{index}", keys["release"])  # the index only
    pinned = f"{name}@{platforms['linux/arm64']}"
    assert not cosign.verify(pinned, keys["release"])  # cosign given the arm64 digest
    check = ours(policy(tmp_path, plain.host, keys["release"]), pinned)
    assert check.status == "unsigned" and check.digest == platforms["linux/arm64"]


# --- tampering ------------------------------------------------------------------------------------------------


def _bundle_parts(api: Registry, repo: str, digest: str) -> tuple[dict[str, Any], dict[str, Any], dict[str, Any]]:
    _, body, _ = api.manifest(repo, digest.replace(":", "-"))
    index = json.loads(body)
    manifest = json.loads(api.manifest(repo, index["manifests"][0]["digest"])[1])
    bundle = json.loads(api.blob(repo, manifest["layers"][0]["digest"]))
    return index, manifest, bundle


def _repush_bundle(api: Registry, repo: str, digest: str, index: dict[str, Any], manifest: dict[str, Any],
                   bundle: dict[str, Any] | None) -> None:
    """Write back a changed bundle (and/or manifest) under cosign's fallback tag, replacing what cosign wrote."""
    if bundle is not None:
        data = json.dumps(bundle).encode()
        manifest["layers"][0]["digest"] = api.push_blob(repo, data)
        manifest["layers"][0]["size"] = len(data)
    body = json.dumps(manifest).encode()
    manifest_digest = api.push_manifest(repo, "sha256-" + "0" * 8, body, OCI_MANIFEST)  # by a throwaway tag first
    index["manifests"][0].update(digest=manifest_digest, size=len(body))
    api.push_manifest(repo, digest.replace(":", "-"), json.dumps(index).encode(), OCI_INDEX)


def test_a_tampered_bundle_payload_is_not_valid(tmp_path: Path, cosign: Cosign, keys: dict[str, Key], plain: Any,
                                                layout: Path) -> None:
    api = Registry(plain.host)
    name = push_image(layout, plain.host, _repo("tampered-bundle"))
    repo = name.split("/", 1)[1]
    digest = api.digest(repo, "1.0")
    cosign.sign(f"{name}@{digest}", keys["release"])
    index, manifest, bundle = _bundle_parts(api, repo, digest)
    statement = json.loads(base64.b64decode(bundle["dsseEnvelope"]["payload"]))
    statement["predicate"] = {"note": "changed after signing"}
    bundle["dsseEnvelope"]["payload"] = base64.b64encode(json.dumps(statement).encode()).decode()
    _repush_bundle(api, repo, digest, index, manifest, bundle)
    assert not cosign.verify(f"{name}@{digest}", keys["release"])  # cosign given the image digest
    check = ours(policy(tmp_path, plain.host, keys["release"]), f"{name}:1.0")
    assert check.status == "invalid" and "does not verify" in check.detail


def test_a_tampered_legacy_payload_or_signature_annotation_is_not_valid(
        tmp_path: Path, cosign: Cosign, keys: dict[str, Key], plain: Any, layout: Path) -> None:
    api = Registry(plain.host)
    for what in ("payload", "annotation"):
        name = push_image(layout, plain.host, _repo(f"tampered-{what}"))
        repo = name.split("/", 1)[1]
        digest = api.digest(repo, "1.0")
        cosign.sign(f"{name}@{digest}", keys["release"], bundle=False)
        tag = digest.replace(":", "-") + ".sig"
        manifest = json.loads(api.manifest(repo, tag)[1])
        layer = manifest["layers"][0]
        if what == "payload":
            payload = json.loads(api.blob(repo, layer["digest"]))
            payload["optional"] = {"note": "changed after signing"}
            data = json.dumps(payload).encode()
            layer.update(digest=api.push_blob(repo, data), size=len(data))
        else:
            signature = bytearray(base64.b64decode(layer["annotations"]["dev.cosignproject.cosign/signature"]))
            signature[-1] ^= 1
            layer["annotations"]["dev.cosignproject.cosign/signature"] = base64.b64encode(bytes(signature)).decode()
        api.push_manifest(repo, tag, json.dumps(manifest).encode(), OCI_MANIFEST)
        assert not cosign.verify(f"{name}@{digest}", keys["release"]), what  # cosign given the image digest
        check = ours(policy(tmp_path, plain.host, keys["release"]), f"{name}:1.0")
        assert check.status == "invalid", (what, check)


def test_an_unsigned_bundle_annotation_decides_nothing(tmp_path: Path, cosign: Cosign, keys: dict[str, Key],
                                                       plain: Any, layout: Path) -> None:
    """The manifest annotation naming the predicate type is not signed: rewriting it neither hides a signature from
    us nor makes an attestation count; the signed statement decides."""
    api = Registry(plain.host)
    name = push_image(layout, plain.host, _repo("annotation"))
    repo = name.split("/", 1)[1]
    digest = api.digest(repo, "1.0")
    cosign.sign(f"{name}@{digest}", keys["release"])
    index, manifest, _ = _bundle_parts(api, repo, digest)
    manifest["annotations"]["dev.sigstore.bundle.predicateType"] = "https://slsa.dev/provenance/v1"
    _repush_bundle(api, repo, digest, index, manifest, None)
    said = cosign.verify(f"{name}@{digest}", keys["release"])  # cosign given the image digest
    check = ours(policy(tmp_path, plain.host, keys["release"]), f"{name}:1.0")
    assert said is (check.status == "verified"), (said, check)


def test_both_formats_on_one_image_verify(tmp_path: Path, cosign: Cosign, keys: dict[str, Key], registry: Any,
                                          layout: Path) -> None:
    name = push_image(layout, _host(registry), _repo("both"))
    digest = Registry(_host(registry)).digest(name.split("/", 1)[1], "1.0")
    cosign.sign(f"{name}@{digest}", keys["release"], bundle=True)
    cosign.sign(f"{name}@{digest}", keys["release"], bundle=False)
    assert cosign.verify(f"{name}@{digest}", keys["release"])
    assert cosign.verify(f"{name}@{digest}", keys["release"], legacy_only=True)
    check = ours(policy(tmp_path, _host(registry), keys["release"]), f"{name}:1.0")
    assert check.status == "verified" and check.format == "cosign bundle v0.3"


def test_a_legacy_signature_counts_beside_a_bundle_by_another_key(
        tmp_path: Path, cosign: Cosign, keys: dict[str, Key], plain: Any, layout: Path) -> None:
    """By design we read every place cosign writes to: cosign's default verify reads the bundles alone once there are
    any, so it refuses here, and with --new-bundle-format=false (the `.sig` tag) it accepts, as we do."""
    name = push_image(layout, plain.host, _repo("mixed"))
    digest = Registry(plain.host).digest(name.split("/", 1)[1], "1.0")
    cosign.sign(f"{name}@{digest}", keys["other"], bundle=True)
    cosign.sign(f"{name}@{digest}", keys["release"], bundle=False)
    assert not cosign.verify(f"{name}@{digest}", keys["release"])  # cosign given the digest: bundles only
    assert cosign.verify(f"{name}@{digest}", keys["release"], legacy_only=True)  # the .sig tag: valid
    check = ours(policy(tmp_path, plain.host, keys["release"]), f"{name}:1.0")
    assert check.status == "verified" and check.format == "cosign legacy signature"


@pytest.mark.parametrize("kind", ["p384", "rsa", "ed25519"])
@pytest.mark.parametrize("bundle", [True, False], ids=["bundle", "legacy"])
def test_every_key_type_cosign_signs_with_agrees_with_cosign(
        tmp_path: Path, cosign: Cosign, keys: dict[str, Key], plain: Any, layout: Path, kind: str, bundle: bool) -> None:
    """cosign v3.1.3 signs Ed25519 keys with Ed25519ph and its own verify (plain Ed25519) then refuses them: so do we."""
    name = push_image(layout, plain.host, _repo(f"key-{kind}"))
    digest = Registry(plain.host).digest(name.split("/", 1)[1], "1.0")
    cosign.sign(f"{name}@{digest}", keys[kind], bundle=bundle)
    said = cosign.verify(f"{name}@{digest}", keys[kind])  # cosign given the image digest and that key
    check = ours(policy(tmp_path, plain.host, keys[kind]), f"{name}:1.0")
    assert said is (check.status == "verified"), (said, check)
    # cosign v3.1.3 signs with P-384 over SHA-384 and with Ed25519 as Ed25519ph, and its verify refuses both
    assert said is (kind == "rsa")


def test_a_p384_signature_over_sha256_verifies_as_cosign_verify_expects(
        tmp_path: Path, cosign: Cosign, keys: dict[str, Key], plain: Any, layout: Path) -> None:
    """What another signer writes for a P-384 key, the way `cosign verify` checks it (ECDSA over SHA-256)."""
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec

    api = Registry(plain.host)
    name = push_image(layout, plain.host, _repo("p384-sha256"))
    repo = name.split("/", 1)[1]
    digest = api.digest(repo, "1.0")
    payload = json.dumps({"critical": {"identity": {"docker-reference": name}, "image": {"docker-manifest-digest": digest},
                                       "type": "cosign container image signature"}, "optional": None}).encode()
    assert keys["p384"].pem is not None
    key = serialization.load_pem_private_key(keys["p384"].pem.read_bytes(), None)
    assert isinstance(key, ec.EllipticCurvePrivateKey)
    signature = base64.b64encode(key.sign(payload, ec.ECDSA(hashes.SHA256()))).decode()
    config = b"{}"
    manifest = {"schemaVersion": 2, "mediaType": OCI_MANIFEST,
                "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "digest": api.push_blob(repo, config),
                           "size": len(config)},
                "layers": [{"mediaType": "application/vnd.dev.cosign.simplesigning.v1+json",
                            "digest": api.push_blob(repo, payload), "size": len(payload),
                            "annotations": {"dev.cosignproject.cosign/signature": signature}}]}
    api.push_manifest(repo, digest.replace(":", "-") + ".sig", json.dumps(manifest).encode(), OCI_MANIFEST)
    assert cosign.verify(f"{name}@{digest}", keys["p384"])  # cosign given the image digest
    check = ours(policy(tmp_path, plain.host, keys["p384"]), f"{name}:1.0")
    assert check.status == "verified", check


# --- where, and what it costs ----------------------------------------------------------------------------------


def test_on_a_registry_with_referrers_a_signature_is_found_through_the_api_alone(
        tmp_path: Path, cosign: Cosign, keys: dict[str, Key], referrers: Any, layout: Path) -> None:
    api = Registry(referrers.host)
    name = push_image(layout, referrers.host, _repo("referrers-only"))
    repo = name.split("/", 1)[1]
    digest = api.digest(repo, "1.0")
    cosign.sign(f"{name}@{digest}", keys["release"])
    assert not api.has_tag(repo, digest.replace(":", "-"))  # no fallback tag: the referrers API is all there is
    check = ours(policy(tmp_path, referrers.host, keys["release"]), f"{name}:1.0")
    assert check.status == "verified" and check.where == "OCI referrers API"


def test_a_cold_check_of_a_signed_index_costs_four_requests_and_a_warm_one_none(
        tmp_path: Path, cosign: Cosign, keys: dict[str, Key], plain: Any, layout: Path) -> None:
    name, _ = push_index(layout, plain.host, _repo("requests"))
    repo = name.split("/", 1)[1]
    index = Registry(plain.host).digest(repo, "1.0")
    cosign.sign(f"{name}@{index}", keys["release"])
    settings = policy(tmp_path, plain.host, keys["release"]).images

    async def run() -> tuple[dict[str, int], dict[str, int], dict[str, int], str, str]:
        client = RegistryClient(settings)
        resolver = ImageResolver(client, settings=settings)
        finder = Verifier(resolver)
        deadline = time.monotonic() + 30
        try:
            await resolver.config_for(f"{name}:1.0", deadline=deadline)  # the resolution the check follows
            resolved = dict(client.counters)
            first = await finder.check(f"{name}:1.0", settings.verify[0], deadline=deadline)
            cold = dict(client.counters)
            second = await finder.check(f"{name}:1.0", settings.verify[0], deadline=deadline)
            return resolved, cold, dict(client.counters), first.status, second.status
        finally:
            await client.aclose()

    resolved, cold, warm, first, second = asyncio.run(run())
    assert first == second == "verified"
    added = {k: cold.get(k, 0) - resolved.get(k, 0) for k in cold}
    # the referrers API probe (404 here: this registry has none; paid once per registry), the fallback tag's index,
    # the bundle manifest and the bundle blob; the valid bundle decides, so the legacy `.sig` tag is not asked
    assert sum(added.values()) == 4, added
    assert added.get("referrers") == 1 and added.get("signature") == 3, added
    assert warm == cold  # warm: nothing at all


def test_a_burst_of_checks_probes_a_registry_for_the_referrers_api_once(
        tmp_path: Path, cosign: Cosign, keys: dict[str, Key], plain: Any, layout: Path) -> None:
    api = Registry(plain.host)
    names = [push_image(layout, plain.host, _repo("burst")) for _ in range(5)]
    for name in names:
        cosign.sign(f"{name}@{api.digest(name.split('/', 1)[1], '1.0')}", keys["release"])
    settings = policy(tmp_path, plain.host, keys["release"]).images

    async def run() -> tuple[list[str], dict[str, int]]:
        """One run of the five checks with a fresh client and memory, on the disk cache the runs share."""
        client = RegistryClient(settings)
        resolver = ImageResolver(client, settings=settings, disk=DiskCache(tmp_path / "cache"))
        deadline = time.monotonic() + 30
        try:
            checks = await asyncio.gather(*(Verifier(resolver).check(f"{n}:1.0", settings.verify[0], deadline=deadline)
                                            for n in names))
            return [c.status for c in checks], dict(client.counters)
        finally:
            await client.aclose()

    statuses, cold = asyncio.run(run())
    assert statuses == ["verified"] * 5
    assert cold["referrers"] == 1  # the first check's 404 answers the other four, which waited for it
    statuses, warm = asyncio.run(run())  # a later run (a new process in CI) on the same disk cache
    assert statuses == ["verified"] * 5
    assert sum(warm.values()) == 0, warm
