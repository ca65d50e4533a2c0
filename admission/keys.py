"""Public keys as cosign uses them: parse a PEM key, name it as cosign's bundles do, verify a signature with it.

`cryptography` is imported lazily: only a policy with `images.verify` entries needs it, and the one-file `check`
start-up must not pay for it. Neither sigstore-python (it cannot read key-based bundles) nor securesystemslib (it
rejects cosign's keyid-less DSSE envelopes) verifies what cosign writes, so the signature checks are here.

Signatures are checked as `cosign verify --key` checks them (cosign v3.1.3 is the oracle, architecture §6):
- ECDSA: DER signatures over SHA-256, whatever the curve. cosign signs with a P-384 key over SHA-384 and with an
  Ed25519 key as Ed25519ph, and its own `verify` refuses both; we refuse them alike (tests/verify/).
- RSA: PKCS#1 v1.5 with SHA-256.
- Ed25519: plain Ed25519.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from typing import Any

__all__ = ["PublicKey", "load_key"]


@dataclass(frozen=True, slots=True)
class PublicKey:
    """A verification key from the policy: where it was written, its PEM, cosign's hint and its type."""

    label: str  # as the policy names it: "keys/release.pub", or "images.verify[0].keys[1] (inline)"
    pem: bytes
    hint: str  # base64(sha256(SubjectPublicKeyInfo DER)): what a cosign bundle's verificationMaterial.publicKey names
    kind: str  # ecdsa-p256, ecdsa-p384, ecdsa-p521, ed25519, rsa-2048, ...
    path: str = ""  # the file it was read from ("" inline): the webhook reloads the policy when it changes

    def verify(self, signature: bytes, data: bytes) -> bool:
        """True when `signature` is this key's signature over `data`, as cosign makes it for this key type."""
        return _verify(self.pem, signature, data)


def load_key(pem: bytes, *, label: str, path: str = "") -> PublicKey:
    """A PublicKey from PEM; ValueError says why it is not one cosign could have signed with."""
    import base64
    import hashlib  # here: the one-file check loads no hashlib (tests/test_boundaries.py)

    from cryptography.hazmat.primitives import serialization

    key = _parsed(pem)
    der = key.public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
    return PublicKey(label=label, pem=pem, hint=base64.b64encode(hashlib.sha256(der).digest()).decode(),
                     kind=_kind(key), path=path)


@functools.lru_cache(maxsize=64)
def _parsed(pem: bytes) -> Any:  # noqa: ANN401 - a cryptography public key
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa

    if b"PRIVATE KEY" in pem:
        raise ValueError("is a private key; give the public key (cosign public-key, or the .pub file)")
    try:
        key = serialization.load_pem_public_key(pem)
    except ValueError as exc:
        raise ValueError(f"is not a PEM public key ({exc})") from None
    except TypeError as exc:  # pragma: no cover - cryptography's own type errors for odd inputs
        raise ValueError(f"is not a PEM public key ({exc})") from None
    if isinstance(key, ec.EllipticCurvePublicKey):
        if key.curve.name not in _EC_CURVES:
            raise ValueError(f"is an ECDSA key on {key.curve.name}; cosign signs with P-256, P-384 or P-521")
        return key
    if isinstance(key, rsa.RSAPublicKey):
        if key.key_size < 2048:
            raise ValueError(f"is an RSA key of {key.key_size} bits; at least 2048 are needed")
        return key
    if isinstance(key, ed25519.Ed25519PublicKey):
        return key
    raise ValueError(f"is a {type(key).__name__}; cosign signs with ECDSA, Ed25519 or RSA keys")


_EC_CURVES = ("secp256r1", "secp384r1", "secp521r1")


def _kind(key: Any) -> str:  # noqa: ANN401
    from cryptography.hazmat.primitives.asymmetric import ec, rsa

    if isinstance(key, ec.EllipticCurvePublicKey):
        return {"secp256r1": "ecdsa-p256", "secp384r1": "ecdsa-p384", "secp521r1": "ecdsa-p521"}[key.curve.name]
    if isinstance(key, rsa.RSAPublicKey):
        return f"rsa-{key.key_size}"
    return "ed25519"


def _verify(pem: bytes, signature: bytes, data: bytes) -> bool:
    from cryptography.exceptions import InvalidSignature
    from cryptography.hazmat.primitives import hashes
    from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa

    key = _parsed(pem)
    try:
        if isinstance(key, ec.EllipticCurvePublicKey):
            key.verify(signature, data, ec.ECDSA(hashes.SHA256()))
        elif isinstance(key, rsa.RSAPublicKey):
            key.verify(signature, data, padding.PKCS1v15(), hashes.SHA256())
        else:
            key.verify(signature, data)
    except (InvalidSignature, ValueError):
        return False
    return True
