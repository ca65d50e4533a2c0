"""Cosign's signature formats, read and checked without any I/O: what a signature manifest and its blobs say, and
whether one of the policy's keys signed this very digest.

Two formats, as cosign v3 and v2 write them (architecture §6: cosign is the oracle for every verdict):
- **bundle** (cosign v3, `--new-bundle-format`, the default): a manifest with `artifactType`
  application/vnd.dev.sigstore.bundle.v0.3+json, an empty config and one layer holding a Sigstore bundle; its
  `subject` is the signed manifest. The bundle's DSSE envelope (no keyid) carries an in-toto Statement v1 naming
  the digest, predicateType https://sigstore.dev/cosign/sign/v1 for a signature; a key-based bundle names its key
  by `verificationMaterial.publicKey.hint`. The signature covers DSSE's pre-authentication encoding.
- **legacy** (cosign v2, and v3 with `--new-bundle-format=false`): the tag `sha256-<hex>.sig`, whose layers are
  simple-signing payloads (`critical.image.docker-manifest-digest`) with the signature, base64, in the layer
  annotation `dev.cosignproject.cosign/signature`.

Nothing unsigned is trusted: manifest annotations (`dev.sigstore.bundle.predicateType`) and the bundle's key hint
only choose what to look at first; the verdict comes from the signed payload. Reasons are our own words, never a
registry's, so that an answer a requester reads names no address.
"""

from __future__ import annotations

import base64
import binascii
import json
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal

from admission.keys import PublicKey

BUNDLE_TYPES = frozenset(("application/vnd.dev.sigstore.bundle.v0.3+json",
                          "application/vnd.dev.sigstore.bundle+json;version=0.3"))
BUNDLE_ARTIFACT = "application/vnd.dev.sigstore.bundle.v0.3+json"
EMPTY_CONFIG = "application/vnd.oci.empty.v1+json"
SIMPLE_SIGNING = "application/vnd.dev.cosign.simplesigning.v1+json"
SIGNATURE_ANNOTATION = "dev.cosignproject.cosign/signature"
SIGN_PREDICATE = "https://sigstore.dev/cosign/sign/v1"
IN_TOTO = "application/vnd.in-toto+json"
STATEMENT_TYPES = frozenset(("https://in-toto.io/Statement/v1", "https://in-toto.io/Statement/v0.1"))
LEGACY_TYPE = "cosign container image signature"
BUNDLE_CAP = 1 << 20  # a key-based bundle is under 2 KiB; an attestation with a large predicate stays far below this
PAYLOAD_CAP = 1 << 20

DSSE_ENVELOPE = "application/vnd.dsse.envelope.v1+json"
SLSA_PREDICATES = frozenset(("https://slsa.dev/provenance/v1", "https://slsa.dev/provenance/v0.2"))

Format = Literal["bundle", "legacy", "dsse"]
FORMAT_NAMES = {"bundle": "cosign bundle v0.3", "legacy": "cosign legacy signature", "dsse": "cosign legacy attestation"}


@dataclass(frozen=True, slots=True)
class Envelope:
    """One signed object as found: the bytes a signature covers, the payload inside, and where it was."""

    format: Format
    where: str  # "OCI referrers API", "tag sha256-….sig", "OCI layout", ...
    signed: bytes  # what the signature covers (DSSE PAE for a bundle, the payload itself for legacy)
    payload: bytes  # the statement (bundle) or the simple-signing document (legacy)
    signatures: tuple[bytes, ...]
    hint: str | None = None  # the key hint a bundle names
    problem: str | None = None  # why it could not be read at all (then nothing else is set)


@dataclass(frozen=True, slots=True)
class Checked:
    """One envelope against one digest and the entry's keys."""

    valid: bool
    reason: str  # why not, in our words ("" when valid)
    envelope: Envelope
    key: PublicKey | None = None
    predicate_type: str | None = None
    statement: Mapping[str, Any] | None = None  # a valid bundle's in-toto statement (attestations read its predicate)
    relevant: bool = True  # False: a bundle of another predicate type (an attestation when signatures are wanted)


def unreadable(format_: Format, where: str, problem: str) -> Envelope:
    return Envelope(format_, where, b"", b"", (), problem=problem)


def pae(payload_type: str, payload: bytes) -> bytes:
    """DSSE v1 pre-authentication encoding: what a DSSE signature covers."""
    kind = payload_type.encode()
    return b"DSSEv1 %d %s %d %s" % (len(kind), kind, len(payload), payload)


def _b64(text: object) -> bytes | None:
    if not isinstance(text, str):
        return None
    try:
        return base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError):
        return None


def bundle(blob: bytes, *, where: str) -> Envelope:
    """A Sigstore bundle (v0.3, DSSE) as cosign v3 stores it in a layer."""
    try:
        document = json.loads(blob)
    except (ValueError, RecursionError):
        return unreadable("bundle", where, "a signature bundle that is not JSON")
    if not isinstance(document, dict):
        return unreadable("bundle", where, "a signature bundle that is not a JSON object")
    envelope = document.get("dsseEnvelope")
    if not isinstance(envelope, dict):
        kind = "a message signature" if "messageSignature" in document else "no DSSE envelope"
        return unreadable("bundle", where, f"a bundle with {kind}, which cosign does not write for images")
    payload = _b64(envelope.get("payload"))
    payload_type = envelope.get("payloadType")
    signatures = tuple(sig for sig in (_b64(s.get("sig")) for s in envelope.get("signatures") or ()
                                       if isinstance(s, dict)) if sig)
    if payload is None or not isinstance(payload_type, str) or not signatures:
        return unreadable("bundle", where, "a DSSE envelope without a payload, payload type or signature")
    if payload_type != IN_TOTO:
        return unreadable("bundle", where, f"a DSSE envelope of type {payload_type[:80]!r}, not an in-toto statement")
    material = document.get("verificationMaterial")
    key = material.get("publicKey") if isinstance(material, dict) else None
    hint = key.get("hint") if isinstance(key, dict) and isinstance(key.get("hint"), str) else None
    return Envelope("bundle", where, pae(payload_type, payload), payload, signatures, hint)


def dsse(blob: bytes, *, where: str) -> Envelope:
    """One layer of a cosign `.att` manifest (cosign v2, and v3 with --new-bundle-format=false): a DSSE envelope."""
    try:
        envelope = json.loads(blob)
    except (ValueError, RecursionError):
        return unreadable("dsse", where, "an attestation envelope that is not JSON")
    if not isinstance(envelope, dict):
        return unreadable("dsse", where, "an attestation envelope that is not a JSON object")
    payload = _b64(envelope.get("payload"))
    payload_type = envelope.get("payloadType")
    signatures = tuple(sig for sig in (_b64(s.get("sig")) for s in envelope.get("signatures") or ()
                                       if isinstance(s, dict)) if sig)
    if payload is None or payload_type != IN_TOTO or not signatures:
        return unreadable("dsse", where, "an attestation envelope without an in-toto payload or a signature")
    return Envelope("dsse", where, pae(payload_type, payload), payload, signatures)


def attestation_layers(manifest: Mapping[str, Any]) -> list[str]:
    """The digests of the DSSE envelope layers of a cosign `.att` manifest."""
    return [layer["digest"] for layer in manifest.get("layers") or ()
            if isinstance(layer, dict) and layer.get("mediaType") == DSSE_ENVELOPE and isinstance(layer.get("digest"), str)]


def legacy(payload: bytes, signature: object, *, where: str) -> Envelope:
    """One layer of a cosign `.sig` manifest: its payload blob and its signature annotation."""
    raw = _b64(signature)
    if raw is None:
        return unreadable("legacy", where, f"a signature layer whose {SIGNATURE_ANNOTATION} annotation is not base64")
    return Envelope("legacy", where, payload, payload, (raw,))


def legacy_layers(manifest: Mapping[str, Any]) -> list[tuple[str, object]]:
    """(payload blob digest, signature annotation) of each simple-signing layer of a `.sig` manifest."""
    out = []
    for layer in manifest.get("layers") or ():
        if not isinstance(layer, dict) or layer.get("mediaType") != SIMPLE_SIGNING:
            continue
        annotations = layer.get("annotations") if isinstance(layer.get("annotations"), dict) else {}
        if isinstance(layer.get("digest"), str):
            out.append((layer["digest"], annotations.get(SIGNATURE_ANNOTATION)))
    return out


def bundle_layer(manifest: Mapping[str, Any]) -> str | None:
    """The digest of the bundle layer of a cosign v3 signature (or attestation) manifest, or None."""
    for layer in manifest.get("layers") or ():
        if isinstance(layer, dict) and layer.get("mediaType") in BUNDLE_TYPES and isinstance(layer.get("digest"), str):
            return layer["digest"]
    return None


def is_bundle_manifest(descriptor: Mapping[str, Any]) -> bool:
    """A referrers or tag-index entry that may hold a bundle. Its artifactType says so, or it has none worth trusting:
    go-containerregistry's registry reports the config's media type (the empty config) instead of the manifest's
    artifactType, so an entry with cosign's bundle annotation or an empty-config type is read too."""
    artifact = descriptor.get("artifactType")
    annotations = descriptor.get("annotations")
    if isinstance(annotations, dict) and "dev.sigstore.bundle.content" in annotations:
        return True
    return artifact in BUNDLE_TYPES or artifact in (None, "", EMPTY_CONFIG)


def _signer(envelope: Envelope, keys: Sequence[PublicKey]) -> PublicKey | None:
    """The key whose signature the envelope carries; the hinted key is tried first, every key after it."""
    ordered = sorted(keys, key=lambda k: k.hint != envelope.hint)
    for signature in envelope.signatures:
        for key in ordered:
            if key.verify(signature, envelope.signed):
                return key
    return None


def _short(digest: str) -> str:
    algorithm, _, hexdigest = digest.partition(":")
    return f"{algorithm}:{hexdigest[:12]}…" if hexdigest else digest


def _statement(payload: bytes) -> tuple[Mapping[str, Any] | None, str]:
    try:
        statement = json.loads(payload)
    except (ValueError, RecursionError):
        return None, "its signed statement is not JSON"
    if not isinstance(statement, dict) or statement.get("_type") not in STATEMENT_TYPES:
        return None, "its signed payload is not an in-toto statement"
    return statement, ""


def statement_subjects(statement: Mapping[str, Any]) -> list[str]:
    """The `sha256:<hex>` digests an in-toto statement names as its subjects."""
    out = []
    for subject in statement.get("subject") or ():
        digests = subject.get("digest") if isinstance(subject, dict) else None
        if isinstance(digests, dict):
            out += [f"{algorithm}:{value}" for algorithm, value in digests.items()
                    if isinstance(algorithm, str) and isinstance(value, str)]
    return out


def check(envelope: Envelope, *, digest: str, keys: Sequence[PublicKey],
          predicate: str | None = SIGN_PREDICATE) -> Checked:
    """Whether `envelope` is a valid signature of `digest` by one of `keys`. For a bundle, `predicate` is the
    predicateType the signed statement must have (cosign's signature predicate; None accepts any, for attestations).
    A bundle of another predicate type is not relevant: an attestation neither signs an image nor spoils its
    signature (which type it claims is read before its signature is checked, for that choice only)."""
    if envelope.problem:
        return Checked(False, envelope.problem, envelope)
    statement: Mapping[str, Any] | None = None
    predicate_type: str | None = None
    if envelope.format in ("bundle", "dsse"):
        statement, problem = _statement(envelope.payload)
        if statement is None:
            return Checked(False, problem, envelope)
        claimed = statement.get("predicateType")
        predicate_type = claimed if isinstance(claimed, str) else None
        if predicate is not None and predicate_type != predicate:
            return Checked(False, f"a bundle of another kind ({str(predicate_type)[:100]})", envelope,
                           predicate_type=predicate_type, relevant=False)
    key = _signer(envelope, keys)
    if key is None:
        known = {k.hint for k in keys}
        if envelope.hint and envelope.hint not in known:
            return Checked(False, f"signed by a key the entry does not list (key hint {envelope.hint})", envelope,
                           predicate_type=predicate_type)
        return Checked(False, "its signature does not verify with the entry's keys: the payload or signature was "
                              "changed, or another key signed it", envelope, predicate_type=predicate_type)
    if envelope.format == "legacy":
        try:
            document = json.loads(envelope.payload)
            critical = document["critical"]
            named = critical["image"]["docker-manifest-digest"]
            kind = critical["type"]
        except (ValueError, RecursionError, KeyError, TypeError):
            return Checked(False, "its signed payload is not a cosign simple-signing document", envelope, key)
        if kind != LEGACY_TYPE:
            return Checked(False, f"its signed payload is a {str(kind)[:60]!r}, not an image signature", envelope, key)
        if named != digest:
            return Checked(False, f"it signs {_short(str(named))}, not {_short(digest)}: a signature copied from "
                                  "another image", envelope, key)
        return Checked(True, "", envelope, key)
    assert statement is not None
    subjects = statement_subjects(statement)
    if digest not in subjects:
        named = ", ".join(_short(s) for s in subjects[:3]) or "nothing"
        return Checked(False, f"its statement names {named}, not {_short(digest)}: copied from another image",
                       envelope, key, predicate_type)
    return Checked(True, "", envelope, key, predicate_type, statement)


def first_valid(envelopes: Iterable[Envelope], *, digest: str, keys: Sequence[PublicKey],
                predicate: str | None = SIGN_PREDICATE) -> tuple[Checked | None, list[Checked]]:
    """(the first valid check, every check) over `envelopes`."""
    checks = [check(e, digest=digest, keys=keys, predicate=predicate) for e in envelopes]
    return next((c for c in checks if c.valid), None), checks
