"""Managed TLS (`tls.mode: managed`): the server makes its own CA and serving certificate, keeps them in a Secret,
and keeps the caBundle of its ValidatingWebhookConfiguration (and MutatingWebhookConfiguration, when mutation is on)
in step, as Gatekeeper's cert-controller and Kyverno do.

The Lease logic is hand-written against coordination.k8s.io/v1 (about forty lines): the kubernetes client's
`leaderelection` replaces the Lease (the `update` verb, where a merge patch with the read resourceVersion gives the
same optimistic concurrency with only `patch`), blocks a thread per candidate and has no release on shutdown.

One replica, the Lease holder, writes; every replica reads the Secret through an API watch (no volume) and serves it:

- The CA is long-lived; the serving certificate is renewed from it, so the bundle does not change then.
- A CA rotation adds the next CA to the bundle (phase 1); after the propagation delay it serves a certificate of
  the next CA (phase 2); the old CA leaves the bundle once every replica reports, on the Secret, that it serves a
  certificate of the new one (each replica checks with a TLS handshake to itself, so a report is what it serves).
- The bundle is patched into the webhook configurations whenever it differs, and the writer watches them,
  so a caBundle dropped by `helm upgrade` (3-way merge) or a GitOps sync is restored within a second or two.
- CAs already in that caBundle when the writer first creates its Secret (the chart's selfSigned or cert-manager CA,
  on a switch to managed) stay in the bundle for the handover time, so the pods still serving them stay trusted
  while the rollout replaces them.
"""

from __future__ import annotations

import base64
import datetime as dt
import hashlib
import json
import logging
import os
import socket
import ssl
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

__all__ = ["CertManager", "Managed", "Material", "advance", "issue", "new_ca", "served_ca"]

log = logging.getLogger("admission.webhook.certs")

# On the Secret: one annotation per replica, "<sha256 of the CA that signed what it serves> <unix seconds>".
REPORT_PREFIX = "admission.policy/serves-ca."
# On the Secret: when the current CA rotation started (phase 1: next CA in the bundle, old one still serving).
ROTATION = "admission.policy/ca-rotation-started"
# On the Secret: until when the CAs found in the caBundle at creation (inherited-ca.crt) stay trusted.
INHERITED_UNTIL = "admission.policy/inherited-ca-until"
_BACKDATE = 60.0  # seconds a certificate's notBefore lies in the past: clocks of the API server and ours differ


# --- certificates (pure) -------------------------------------------------------------------------------------


def _pem(cert: x509.Certificate) -> bytes:
    return cert.public_bytes(serialization.Encoding.PEM)


def _key_pem(key: ec.EllipticCurvePrivateKey) -> bytes:
    return key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                             serialization.NoEncryption())


def _when(seconds: float) -> dt.datetime:
    return dt.datetime.fromtimestamp(seconds, tz=dt.UTC)


def new_ca(name: str, *, validity: float, now: float | None = None) -> tuple[bytes, bytes]:
    """A self-signed CA certificate and its key (PEM), valid `validity` seconds from `now`."""
    now = time.time() if now is None else now
    key = ec.generate_private_key(ec.SECP256R1())
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, f"{name}-ca {int(now)}")])
    cert = (x509.CertificateBuilder().subject_name(subject).issuer_name(subject).public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(_when(now - _BACKDATE)).not_valid_after(_when(now + validity))
            .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
            .add_extension(x509.KeyUsage(digital_signature=True, key_cert_sign=True, crl_sign=True,
                                         content_commitment=False, key_encipherment=False, data_encipherment=False,
                                         key_agreement=False, encipher_only=False, decipher_only=False), critical=True)
            .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
            .sign(key, hashes.SHA256()))
    return _pem(cert), _key_pem(key)


def issue(ca_pem: bytes, ca_key_pem: bytes, hosts: Sequence[str], *, validity: float,
          now: float | None = None) -> tuple[bytes, bytes]:
    """A serving certificate for `hosts` (DNS names or IP addresses) signed by the CA, never outliving it."""
    import ipaddress

    if not hosts:
        raise ValueError("a serving certificate needs at least one host name")
    now = time.time() if now is None else now
    ca = x509.load_pem_x509_certificate(ca_pem)
    ca_key = serialization.load_pem_private_key(ca_key_pem, password=None)
    if not isinstance(ca_key, ec.EllipticCurvePrivateKey):
        raise TypeError(f"the CA key is a {type(ca_key).__name__}, not the EC key this module makes")
    key = ec.generate_private_key(ec.SECP256R1())
    names: list[x509.GeneralName] = []
    for host in hosts:
        try:
            names.append(x509.IPAddress(ipaddress.ip_address(host)))
        except ValueError:
            names.append(x509.DNSName(host))
    end = min(now + validity, ca.not_valid_after_utc.timestamp())
    cert = (x509.CertificateBuilder()
            .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, hosts[0])]))
            .issuer_name(ca.subject).public_key(key.public_key()).serial_number(x509.random_serial_number())
            .not_valid_before(_when(now - _BACKDATE)).not_valid_after(_when(end))
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .add_extension(x509.SubjectAlternativeName(names), critical=False)
            .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
            .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()), critical=False)
            .sign(ca_key, hashes.SHA256()))
    return _pem(cert), _key_pem(key)


def fingerprint(pem: bytes) -> str:
    """sha256 of the first certificate's DER, hex."""
    return hashlib.sha256(x509.load_pem_x509_certificate(pem).public_bytes(serialization.Encoding.DER)).hexdigest()


def split(bundle: bytes) -> list[bytes]:
    """The PEM certificates of a bundle, each as its own PEM."""
    return [_pem(c) for c in x509.load_pem_x509_certificates(bundle)] if bundle.strip() else []


def _issued_by(cert_pem: bytes, ca_pem: bytes) -> bool:
    try:
        x509.load_pem_x509_certificate(cert_pem).verify_directly_issued_by(x509.load_pem_x509_certificate(ca_pem))
    except (InvalidSignature, ValueError, TypeError):  # another issuer's name, key type or signature
        return False
    return True


def served_ca(leaf_der: bytes, bundle: Sequence[bytes]) -> str | None:
    """The fingerprint of the bundle's CA that issued a served leaf, or None when none of them did."""
    leaf = _pem(x509.load_der_x509_certificate(leaf_der))
    return next((fingerprint(ca) for ca in bundle if _issued_by(leaf, ca)), None)


@dataclass(frozen=True)
class Material:
    """What the Secret holds: the signing CA, the serving pair, the bundle the API server trusts and, in phase 1 of
    a rotation, the next CA."""

    ca: bytes
    ca_key: bytes
    cert: bytes
    key: bytes
    bundle: tuple[bytes, ...]
    next_ca: bytes = b""
    next_key: bytes = b""
    rotation_started: float | None = None
    inherited: tuple[bytes, ...] = ()  # CAs of the previous TLS mode, trusted until inherited_until
    inherited_until: float | None = None

    @property
    def trusted(self) -> tuple[bytes, ...]:
        """What the webhook configuration's caBundle holds."""
        return (*self.inherited, *self.bundle)

    def data(self) -> dict[str, str]:
        keys = {"ca.crt": self.ca, "ca.key": self.ca_key, "tls.crt": self.cert, "tls.key": self.key,
                "ca-bundle.crt": b"".join(self.trusted)}
        if self.next_ca:
            keys.update({"next-ca.crt": self.next_ca, "next-ca.key": self.next_key})
        if self.inherited:
            keys["inherited-ca.crt"] = b"".join(self.inherited)
        return {k: base64.b64encode(v).decode() for k, v in keys.items()}

    @classmethod
    def from_secret(cls, secret: dict[str, Any]) -> Material | None:
        """The Secret's material, or None when a key is missing or does not parse (the writer then starts over)."""
        raw = secret.get("data") or {}
        try:
            got = {k: base64.b64decode(v) for k, v in raw.items()}
            inherited = tuple(split(got.get("inherited-ca.crt", b"")))
            # ca-bundle.crt is the whole trusted bundle (what a ServiceMonitor reads); ours is the rest of it.
            material = cls(ca=got["ca.crt"], ca_key=got["ca.key"], cert=got["tls.crt"], key=got["tls.key"],
                           bundle=tuple(c for c in split(got["ca-bundle.crt"]) if c not in inherited),
                           next_ca=got.get("next-ca.crt", b""), next_key=got.get("next-ca.key", b""),
                           inherited=inherited)
            x509.load_pem_x509_certificate(material.ca)
            x509.load_pem_x509_certificate(material.cert)
        except (KeyError, ValueError, TypeError):
            return None
        annotations = (secret.get("metadata") or {}).get("annotations") or {}
        started, until = annotations.get(ROTATION), annotations.get(INHERITED_UNTIL)
        try:
            material = replace(material, rotation_started=float(started) if started else None)
            return replace(material, inherited_until=float(until) if until else None)
        except ValueError:
            return material


@dataclass(frozen=True)
class Managed:
    """The managed-mode settings the state machine needs."""

    name: str  # the CA's common name prefix (the release)
    hosts: tuple[str, ...]
    ca_validity: float
    cert_validity: float
    propagation: float  # seconds between a bundle change and serving a certificate that needs it
    handover: float = 600.0  # seconds the CAs found in the caBundle at creation stay trusted
    renew_fraction: float = 1 / 3  # renew a certificate when less than this part of its lifetime is left


def _due(pem: bytes, now: float, fraction: float) -> bool:
    cert = x509.load_pem_x509_certificate(pem)
    start, end = cert.not_valid_before_utc.timestamp() + _BACKDATE, cert.not_valid_after_utc.timestamp()
    return now >= end - (end - start) * fraction


def _hosts(pem: bytes) -> set[str]:
    try:
        names = x509.load_pem_x509_certificate(pem).extensions.get_extension_for_class(x509.SubjectAlternativeName)
    except x509.ExtensionNotFound:
        return set()
    return {str(v) for v in names.value.get_values_for_type(x509.DNSName)} | \
        {str(v) for v in names.value.get_values_for_type(x509.IPAddress)}


def advance(current: Material | None, cfg: Managed, *, now: float, reports: dict[str, str],
            found: Sequence[bytes] = ()) -> tuple[Material, str]:
    """The writer's next state and why ("" when nothing changes). `reports`: pod -> fingerprint of the CA that
    signed what it serves, fresh reports only, the writer's own included. `found`: the CAs in the webhook
    configuration's caBundle now (kept for the handover when the Secret is created)."""
    if current is None:
        ca, ca_key = new_ca(cfg.name, validity=cfg.ca_validity, now=now)
        cert, key = issue(ca, ca_key, cfg.hosts, validity=cfg.cert_validity, now=now)
        inherited = tuple(dict.fromkeys(found))
        why = "created a CA and a serving certificate"
        if inherited:
            why += f"; the {len(inherited)} CA(s) already in the caBundle stay trusted for {cfg.handover:.0f} s"
        return Material(ca, ca_key, cert, key, (ca,), inherited=inherited,
                        inherited_until=now + cfg.handover if inherited else None), why
    if current.inherited and now >= (current.inherited_until or 0):
        return replace(current, inherited=(), inherited_until=None), "the previous mode's CAs left the caBundle"
    if current.next_ca:  # phase 1: the next CA is in the bundle
        if now - (current.rotation_started or 0) < cfg.propagation:
            return current, ""
        cert, key = issue(current.next_ca, current.next_key, cfg.hosts, validity=cfg.cert_validity, now=now)
        return replace(current, ca=current.next_ca, ca_key=current.next_key, cert=cert, key=key, next_ca=b"",
                       next_key=b"", rotation_started=now), "serving a certificate of the new CA"
    if len(current.bundle) > 1:  # phase 2: serving the new CA, the old one still trusted
        new = fingerprint(current.ca)
        waited = now - (current.rotation_started or 0) >= cfg.propagation
        if waited and reports and all(fp == new for fp in reports.values()):
            return replace(current, bundle=(current.ca,), rotation_started=None), \
                f"every replica serves the new CA ({len(reports)}): old CA removed from the bundle"
        return current, ""
    if _due(current.ca, now, cfg.renew_fraction):
        ca, ca_key = new_ca(cfg.name, validity=cfg.ca_validity, now=now)
        return replace(current, next_ca=ca, next_key=ca_key, bundle=(*current.bundle, ca), rotation_started=now), \
            "CA rotation started: the next CA joins the bundle"
    if _due(current.cert, now, cfg.renew_fraction) or _hosts(current.cert) != set(cfg.hosts) \
            or not _issued_by(current.cert, current.ca):
        cert, key = issue(current.ca, current.ca_key, cfg.hosts, validity=cfg.cert_validity, now=now)
        return replace(current, cert=cert, key=key), "serving certificate renewed"
    return current, ""


# --- the API --------------------------------------------------------------------------------------------------


class Conflict(Exception):
    """Someone else changed the object since we read it (409), or created it first."""


def _micro(seconds: float) -> str:
    return _when(seconds).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


@dataclass
class _Api:
    """The few calls the manager makes, returning plain dicts (the kubernetes client's ApiClient: auth, TLS,
    token refresh as configured)."""

    api_client: Any
    namespace: str

    def __post_init__(self) -> None:
        from kubernetes import client

        self.core = client.CoreV1Api(self.api_client)
        self.leases = client.CoordinationV1Api(self.api_client)
        self.hooks = client.AdmissionregistrationV1Api(self.api_client)

    def _call(self, method: Callable[..., Any], *args: Any, **kwargs: Any) -> dict[str, Any] | None:
        from kubernetes.client.exceptions import ApiException

        try:
            response = method(*args, _preload_content=False, _request_timeout=10, **kwargs)
        except ApiException as exc:
            if exc.status == 404:
                return None
            if exc.status == 409:
                raise Conflict(str(exc.reason)) from None
            raise
        return json.loads(response.data)

    def get(self, kind: str, name: str) -> dict[str, Any] | None:
        if kind == "secret":
            return self._call(self.core.read_namespaced_secret, name, self.namespace)
        if kind == "lease":
            return self._call(self.leases.read_namespaced_lease, name, self.namespace)
        if kind == "mutating":
            return self._call(self.hooks.read_mutating_webhook_configuration, name)
        return self._call(self.hooks.read_validating_webhook_configuration, name)

    def create(self, kind: str, body: dict[str, Any]) -> dict[str, Any]:
        method = self.core.create_namespaced_secret if kind == "secret" else self.leases.create_namespaced_lease
        found = self._call(method, self.namespace, body)
        assert found is not None
        return found

    def patch(self, kind: str, name: str, body: Any, *,
              content_type: str = "application/merge-patch+json") -> dict[str, Any] | None:
        if kind == "secret":
            return self._call(self.core.patch_namespaced_secret, name, self.namespace, body, _content_type=content_type)
        if kind == "lease":
            return self._call(self.leases.patch_namespaced_lease, name, self.namespace, body,
                              _content_type=content_type)
        if kind == "mutating":
            return self._call(self.hooks.patch_mutating_webhook_configuration, name, body, _content_type=content_type)
        return self._call(self.hooks.patch_validating_webhook_configuration, name, body, _content_type=content_type)

    def watch(self, kind: str, name: str, stop: threading.Event) -> Iterator[dict[str, Any]]:
        """The object now (or {} when absent), then each version of it, until `stop` or the watch ends."""
        from kubernetes.watch.watch import iter_resp_lines

        lister = (self.core.list_namespaced_secret, (self.namespace,)) if kind == "secret" else \
            (self.hooks.list_mutating_webhook_configuration, ()) if kind == "mutating" else \
            (self.hooks.list_validating_webhook_configuration, ())
        selector = f"metadata.name={name}"
        listed = self._call(lister[0], *lister[1], field_selector=selector)
        assert listed is not None
        items = listed.get("items") or []
        yield items[0] if items else {}
        response = lister[0](*lister[1], field_selector=selector, watch=True, timeout_seconds=300,
                             resource_version=listed["metadata"]["resourceVersion"], _preload_content=False,
                             _request_timeout=(10, 330))
        try:
            for line in iter_resp_lines(response):
                if stop.is_set():
                    return
                event = json.loads(line)
                if event.get("type") == "ERROR":
                    return  # 410 Gone and the like: the caller lists again
                yield event["object"] if event.get("type") != "DELETED" else {}
        finally:
            response.release_conn()


# --- the manager ----------------------------------------------------------------------------------------------


@dataclass
class CertManager:
    """Runs in the serving process's main process (one Lease candidate per pod, whatever the worker count) on a
    few threads; writes the serving pair into `folder`, whose `current` symlink the workers' TLS reload follows."""

    api: _Api
    cfg: Managed
    secret: str
    lease: str
    webhook: str
    identity: str
    folder: Path
    probe: tuple[str, int]  # where this pod serves: the report is what a TLS handshake there presents
    interval: float = 1.0
    lease_duration: float = 15.0
    report_interval: float = 30.0
    mutating: str | None = None  # the MutatingWebhookConfiguration kept in step too (ADMISSION_TLS_MUTATING_WEBHOOK)
    _stop: threading.Event = field(default_factory=threading.Event)
    _wake: threading.Event = field(default_factory=threading.Event)
    _secret: dict[str, Any] | None = None
    _hooks: dict[str, dict[str, Any] | None] = field(default_factory=dict)  # "webhook"/"mutating" -> latest seen
    _leader: bool = False
    _lease_seen: tuple[str, str, float] = ("", "", 0.0)
    _renewed: float = 0.0
    _written: bytes = b""
    _reported: tuple[str, float] = ("", 0.0)
    _threads: list[threading.Thread] = field(default_factory=list)

    @property
    def cert_file(self) -> Path:
        return self.folder / "current" / "tls.crt"

    @property
    def key_file(self) -> Path:
        return self.folder / "current" / "tls.key"

    @property
    def held(self) -> Path:
        """Exists once a certificate from the Secret is being served: readiness waits for it."""
        return self.folder / "held"

    def prepare(self) -> None:
        """A throwaway self-signed pair so the server can start listening; /readyz stays false until `held`."""
        ca, ca_key = new_ca(self.cfg.name + "-placeholder", validity=3600)
        cert, key = issue(ca, ca_key, self.cfg.hosts, validity=3600)
        self.held.unlink(missing_ok=True)
        self._install(cert, key)

    def start(self) -> None:
        follows = [(self._loop, "certs"), (lambda: self._follow("secret", self.secret), "certs-secret")]
        follows += [(lambda kind=kind, name=name: self._follow(kind, name), f"certs-{kind}")
                    for kind, name in self._configurations()]
        for target, name in follows:
            thread = threading.Thread(target=target, name=name, daemon=True)
            thread.start()
            self._threads.append(thread)

    def stop(self) -> None:
        """Stop, and give the Lease up so another replica takes over at once instead of after its duration."""
        self._stop.set()
        self._wake.set()
        for thread in self._threads[:1]:
            thread.join(timeout=5)
        if self._leader:
            try:
                self.api.patch("lease", self.lease, {"spec": {"holderIdentity": None, "leaseDurationSeconds": 1}})
            except Exception:  # noqa: BLE001 - best effort at shutdown; the Lease expires anyway
                log.warning("could not release the Lease %s", self.lease)

    # -- threads ----------------------------------------------------------------------------------------------

    def _follow(self, kind: str, name: str) -> None:
        """Keep the latest version of an object from an API watch; wake the loop on each change."""
        while not self._stop.is_set():
            try:
                for obj in self.api.watch(kind, name, self._stop):
                    if kind == "secret":
                        self._secret = obj or None
                    else:
                        self._hooks[kind] = obj or None
                    self._wake.set()
            except Exception as exc:  # noqa: BLE001 - the API may be briefly away: list and watch again
                log.warning("watching %s %s: %s", kind, name, exc)
            self._stop.wait(self.interval)

    def _loop(self) -> None:
        while not self._stop.is_set():
            try:
                self.tick()
            except Exception:  # the next tick retries; the certificate being served stays as it is
                log.exception("managed TLS")
            self._wake.wait(self.interval)
            self._wake.clear()

    # -- one pass ---------------------------------------------------------------------------------------------

    def tick(self, now: float | None = None) -> None:
        now = time.time() if now is None else now
        self._leader = self._hold_lease(now)
        secret = self._secret if self._secret is not None else self.api.get("secret", self.secret)
        if self._leader:
            secret = self._write(secret, now)
        material = Material.from_secret(secret) if secret else None
        if material is None:
            return
        self._serve(material)
        self._report(material, now)
        if self._leader:
            self._patch_bundle(material)

    def _hold_lease(self, now: float) -> bool:
        """Hold or take the Lease. Expiry is judged on our own clock, from when we last saw the record change
        (as client-go does), so clock skew between replicas does not matter."""
        lease = self.api.get("lease", self.lease)
        duration = int(self.lease_duration)
        if lease is None:
            try:
                self.api.create("lease", {"apiVersion": "coordination.k8s.io/v1", "kind": "Lease",
                                          "metadata": {"name": self.lease, "namespace": self.api.namespace},
                                          "spec": {"holderIdentity": self.identity, "leaseDurationSeconds": duration,
                                                   "acquireTime": _micro(now), "renewTime": _micro(now),
                                                   "leaseTransitions": 0}})
            except Conflict:
                return False
            self._renewed = time.monotonic()
            log.info("managed TLS: %s holds the Lease %s (created)", self.identity, self.lease)
            return True
        spec = lease.get("spec") or {}
        holder, renewed = spec.get("holderIdentity") or "", spec.get("renewTime") or ""
        seen_holder, seen_renew, seen_at = self._lease_seen
        if (holder, renewed) != (seen_holder, seen_renew):
            self._lease_seen = (holder, renewed, time.monotonic())
            seen_at = time.monotonic()
        mine = holder == self.identity
        expired = not holder or time.monotonic() - seen_at > (spec.get("leaseDurationSeconds") or duration)
        if not mine and not expired:
            return False
        if mine and time.monotonic() - self._renewed < self.lease_duration / 3:
            return True
        update: dict[str, Any] = {"metadata": {"resourceVersion": lease["metadata"]["resourceVersion"]},
                                  "spec": {"holderIdentity": self.identity, "leaseDurationSeconds": duration,
                                           "renewTime": _micro(now)}}
        if not mine:
            update["spec"]["acquireTime"] = _micro(now)
            update["spec"]["leaseTransitions"] = int(spec.get("leaseTransitions") or 0) + 1
        try:
            self.api.patch("lease", self.lease, update)
        except Conflict:
            return False
        self._renewed = time.monotonic()
        if not mine:
            log.info("managed TLS: %s holds the Lease %s (taken over from %r)", self.identity, self.lease, holder)
        return True

    def _reports(self, secret: dict[str, Any], now: float) -> dict[str, str]:
        fresh: dict[str, str] = {}
        for key, value in ((secret.get("metadata") or {}).get("annotations") or {}).items():
            if key.startswith(REPORT_PREFIX):
                fp, _, at = str(value).partition(" ")
                try:
                    if now - float(at) <= 3 * self.report_interval:
                        fresh[key[len(REPORT_PREFIX):]] = fp
                except ValueError:
                    continue
        return fresh

    def _write(self, secret: dict[str, Any] | None, now: float) -> dict[str, Any] | None:
        current = Material.from_secret(secret) if secret else None
        found: list[bytes] = []
        if current is None:
            for kind, name in self._configurations():
                for webhook in (self._hook(kind, name) or {}).get("webhooks") or []:
                    try:
                        found += split(base64.b64decode((webhook.get("clientConfig") or {}).get("caBundle") or ""))
                    except ValueError:
                        continue  # not a bundle of certificates: nothing to keep trusting
            found = list(dict.fromkeys(found))  # one CA in both configurations is one CA
        new, why = advance(current, self.cfg, now=now, reports=self._reports(secret or {}, now), found=found)
        if not why:
            return secret
        annotations: dict[str, Any] = {ROTATION: str(new.rotation_started) if new.rotation_started else None,
                                       INHERITED_UNTIL: str(new.inherited_until) if new.inherited_until else None}
        try:
            if secret is None:
                annotations = {k: v for k, v in annotations.items() if v is not None}
                written = self.api.create("secret", {
                    "apiVersion": "v1", "kind": "Secret", "type": "kubernetes.io/tls",
                    "metadata": {"name": self.secret, "namespace": self.api.namespace, "annotations": annotations,
                                 "labels": {"app.kubernetes.io/managed-by": "admission-cli"}},
                    "data": new.data()})
            else:
                # A merge patch carrying the resourceVersion we read: refused (409) if another writer got there first.
                data: dict[str, Any] = dict(new.data())
                for stale in set(secret.get("data") or {}) - set(data):
                    data[stale] = None
                written = self.api.patch("secret", self.secret, {
                    "metadata": {"resourceVersion": secret["metadata"]["resourceVersion"],
                                 "annotations": annotations}, "data": data})
        except Conflict:
            self._secret = None  # read it again next time
            return None
        log.info("managed TLS: %s", why)
        self._secret = written
        return written

    def _install(self, cert: bytes, key: bytes) -> None:
        """Swap `current` to a new folder holding both files: a reader never sees one file of each pair."""
        stamp = hashlib.sha256(cert).hexdigest()[:16]
        target = self.folder / f"pair-{stamp}"
        target.mkdir(parents=True, exist_ok=True)
        for name, content in (("tls.key", key), ("tls.crt", cert)):
            tmp = target / f".{name}.tmp"
            tmp.write_bytes(content)
            os.chmod(tmp, 0o600)
            os.replace(tmp, target / name)
        link = self.folder / ".current.tmp"
        link.unlink(missing_ok=True)
        link.symlink_to(target.name)
        os.replace(link, self.folder / "current")
        for old in self.folder.glob("pair-*"):
            if old != target:
                for f in old.iterdir():
                    f.unlink()
                old.rmdir()

    def _serve(self, material: Material) -> None:
        if material.cert + material.key == self._written:
            return
        self._install(material.cert, material.key)
        self._written = material.cert + material.key
        log.info("managed TLS: serving the certificate from Secret %s (CA %s)", self.secret,
                 fingerprint(material.ca)[:12])

    def _served_leaf(self) -> bytes | None:
        context = ssl.create_default_context()
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
        try:
            with socket.create_connection(self.probe, timeout=2) as raw, \
                    context.wrap_socket(raw, server_hostname=self.cfg.hosts[0]) as tls:
                return tls.getpeercert(binary_form=True)
        except OSError:
            return None

    def _report(self, material: Material, now: float) -> None:
        """Say on the Secret which CA signed the certificate this pod presents (asked of the server itself, so the
        workers' reload is included), when it changes and every report_interval."""
        leaf = self._served_leaf()
        fp = served_ca(leaf, material.bundle) if leaf else None
        if fp is None:
            return
        if leaf == x509.load_pem_x509_certificate(material.cert).public_bytes(serialization.Encoding.DER) \
                and not self.held.exists():
            self.held.touch()  # readiness: the Secret's certificate is what a handshake gets, in every worker
            log.info("managed TLS: the server presents the Secret's certificate; ready")
        last_fp, last_at = self._reported
        if fp == last_fp and now - last_at < self.report_interval:
            return
        value = f"{fp} {now:.0f}"
        try:
            written = self.api.patch("secret", self.secret,
                                     {"metadata": {"annotations": {REPORT_PREFIX + self.identity: value}}})
        except Conflict:
            return
        self._reported = (fp, now)
        if written is not None and self._leader:
            self._secret = written

    def _configurations(self) -> list[tuple[str, str]]:
        """(kind, name) of the webhook configurations whose caBundle is kept: the validating one, and the mutating one."""
        return [("webhook", self.webhook)] + ([("mutating", self.mutating)] if self.mutating else [])

    def _hook(self, kind: str, name: str) -> dict[str, Any] | None:
        seen = self._hooks.get(kind)
        return seen if seen is not None else self.api.get(kind, name)

    def _patch_bundle(self, material: Material) -> None:
        bundle = base64.b64encode(b"".join(material.trusted)).decode()
        for kind, name in self._configurations():
            hook = self._hook(kind, name)
            if hook is None:
                continue  # not registered yet (the chart applies it with the rest); the watch wakes us when it is
            drifted = [w["name"] for w in hook.get("webhooks") or []
                       if (w.get("clientConfig") or {}).get("caBundle") != bundle]
            if not drifted:
                continue
            patched = self.api.patch(kind, name,
                                     {"webhooks": [{"name": n, "clientConfig": {"caBundle": bundle}} for n in drifted]},
                                     content_type="application/strategic-merge-patch+json")
            if patched is not None:
                self._hooks[kind] = patched
            log.info("managed TLS: caBundle of %sWebhookConfiguration %s set (%d CA%s)",
                     "Mutating" if kind == "mutating" else "Validating", name, len(material.trusted),
                     "" if len(material.trusted) == 1 else "s")


def connect(settings: Any) -> CertManager:
    """The manager for `serve`'s settings (ADMISSION_TLS_* and the pod's identity); raises ValueError when one is
    missing, naming it."""
    import tempfile

    from kubernetes import client, config

    missing = [n for n, v in (("ADMISSION_TLS_SECRET_NAME", settings.tls_secret_name),
                              ("ADMISSION_TLS_WEBHOOK", settings.tls_webhook),
                              ("ADMISSION_TLS_HOSTS", settings.tls_hosts),
                              ("ADMISSION_POD_NAME", settings.pod_name),
                              ("ADMISSION_POD_NAMESPACE", settings.pod_namespace)) if not v]
    if missing:
        raise ValueError(f"managed TLS needs {', '.join(missing)}")
    configuration = client.Configuration()
    try:
        config.load_incluster_config(client_configuration=configuration)
    except config.ConfigException:
        try:
            config.load_kube_config(config_file=settings.kubeconfig, client_configuration=configuration)
        except (config.ConfigException, OSError, TypeError) as exc:
            raise ValueError("managed TLS needs the API server (no service account token, no kubeconfig): "
                             f"{exc}") from None
    hosts = tuple(h.strip() for h in settings.tls_hosts.split(",") if h.strip())
    folder = Path(tempfile.mkdtemp(prefix="admission-tls-"))
    probe_host = "127.0.0.1" if settings.host in ("0.0.0.0", "", "::") else settings.host
    return CertManager(
        api=_Api(client.ApiClient(configuration), settings.pod_namespace),
        cfg=Managed(name=settings.tls_webhook, hosts=hosts, ca_validity=settings.tls_ca_validity,
                    cert_validity=settings.tls_cert_validity, propagation=settings.tls_propagation_delay,
                    handover=settings.tls_handover),
        secret=settings.tls_secret_name, lease=settings.tls_lease or settings.tls_secret_name, webhook=settings.tls_webhook,
        mutating=settings.tls_mutating_webhook,
        identity=settings.pod_name, folder=folder, probe=(probe_host, settings.port),
        interval=settings.watch_interval, report_interval=settings.tls_report_interval)
