"""Managed TLS's state machine (admission/webhook/certs.advance) on real certificates, checked with Python's own TLS
verification: the serving certificate renews without a bundle change; a CA rotation keeps every served certificate
verifiable by the bundle the API server has, at every step, and drops the old CA only when every replica serves
the new one."""

from __future__ import annotations

import socket
import ssl
import tempfile
import threading
import time
from dataclasses import replace
from pathlib import Path

import pytest

from admission.webhook.certs import Managed, Material, advance, fingerprint, issue, new_ca

CFG = Managed(name="admission", hosts=("admission.admission-system.svc", "127.0.0.1"), ca_validity=3000,
              cert_validity=1500, propagation=10)
# The story's clock starts in the past, so that what it issues is valid now, when the handshakes check it. Set per
# test: taken at import, it let certificates expire before a long suite reached the handshakes.
T0 = time.time() - 2500


@pytest.fixture(autouse=True)
def _story_starts_now() -> None:
    global T0
    T0 = time.time() - 2500


def _verifies(bundle: tuple[bytes, ...], cert: bytes, key: bytes) -> bool:
    """A real TLS handshake: a server presenting cert/key, a client trusting only `bundle` (as the API server)."""
    with tempfile.TemporaryDirectory() as folder:
        Path(folder, "c.pem").write_bytes(cert)
        Path(folder, "k.pem").write_bytes(key)
        server_ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        server_ctx.load_cert_chain(f"{folder}/c.pem", f"{folder}/k.pem")
    client_ctx = ssl.create_default_context(cadata=b"".join(bundle).decode())
    listener = socket.create_server(("127.0.0.1", 0))
    port = listener.getsockname()[1]

    def serve() -> None:
        conn, _ = listener.accept()
        try:
            with server_ctx.wrap_socket(conn, server_side=True):
                pass
        except (ssl.SSLError, OSError):
            pass

    thread = threading.Thread(target=serve)
    thread.start()
    try:
        with socket.create_connection(("127.0.0.1", port)) as raw, \
                client_ctx.wrap_socket(raw, server_hostname="admission.admission-system.svc"):
            return True
    except ssl.SSLCertVerificationError:
        return False
    finally:
        thread.join()
        listener.close()


def test_first_pass_creates_a_ca_and_a_serving_certificate_the_bundle_verifies() -> None:
    material, why = advance(None, CFG, now=time.time(), reports={})
    assert why.startswith("created")
    assert material.bundle == (material.ca,)
    assert _verifies(material.bundle, material.cert, material.key)


def test_nothing_changes_while_both_certificates_are_fresh() -> None:
    material, _ = advance(None, CFG, now=T0, reports={})
    assert advance(material, CFG, now=T0 + 200, reports={}) == (material, "")


def test_serving_certificate_renews_from_the_same_ca_without_touching_the_bundle() -> None:
    material, _ = advance(None, CFG, now=T0, reports={})
    renewed, why = advance(material, CFG, now=T0 + 1001, reports={})  # 2/3 of 1500 s gone
    assert why == "serving certificate renewed"
    assert renewed.cert != material.cert and renewed.ca == material.ca and renewed.bundle == material.bundle


def test_ca_rotation_keeps_every_served_certificate_trusted_and_drops_the_old_ca_last() -> None:
    material, _ = advance(None, CFG, now=T0, reports={})
    cert, key = issue(material.ca, material.ca_key, CFG.hosts, validity=1500, now=T0 + 1990)  # renewed on time
    material = replace(material, cert=cert, key=key)
    old = fingerprint(material.ca)
    # Phase 1: the next CA joins the bundle; the old certificate is still served and still trusted.
    phase1, why = advance(material, CFG, now=T0 + 2001, reports={})
    assert why.startswith("CA rotation started")
    assert len(phase1.bundle) == 2 and phase1.cert == material.cert
    assert _verifies(phase1.bundle, phase1.cert, phase1.key)
    # Before the propagation delay nothing moves.
    assert advance(phase1, CFG, now=T0 + 2005, reports={})[1] == ""
    # Phase 2: a certificate of the new CA is served; the two-CA bundle trusts it, and the old one too.
    phase2, why = advance(phase1, CFG, now=T0 + 2012, reports={})
    assert why == "serving a certificate of the new CA"
    new = fingerprint(phase2.ca)
    assert new != old and _verifies(phase2.bundle, phase2.cert, phase2.key)
    assert _verifies(phase2.bundle, material.cert, material.key)  # a replica not yet reloaded stays trusted
    # One replica still serving the old CA keeps it in the bundle.
    assert advance(phase2, CFG, now=T0 + 2030, reports={"a": new, "b": old})[1] == ""
    assert advance(phase2, CFG, now=T0 + 2030, reports={})[1] == ""  # nobody reported: wait
    done, why = advance(phase2, CFG, now=T0 + 2030, reports={"a": new, "b": new})
    assert why.startswith("every replica serves the new CA (2)")
    assert done.bundle == (done.ca,) and done.rotation_started is None
    assert _verifies(done.bundle, done.cert, done.key)
    assert not _verifies(done.bundle, material.cert, material.key)


def test_a_certificate_for_other_hosts_is_reissued() -> None:
    material, _ = advance(None, CFG, now=T0, reports={})
    moved = Managed(**{**CFG.__dict__, "hosts": ("admission.other.svc",)})
    renewed, why = advance(material, moved, now=T0 + 1, reports={})
    assert why == "serving certificate renewed" and renewed.ca == material.ca


def test_secret_round_trip_keeps_the_rotation_state() -> None:
    material, _ = advance(None, CFG, now=T0, reports={})
    phase1, _ = advance(material, CFG, now=T0 + 2001, reports={})
    secret = {"data": phase1.data(), "metadata": {"annotations": {
        "admission.policy/ca-rotation-started": str(phase1.rotation_started)}}}
    assert Material.from_secret(secret) == phase1


def test_a_secret_with_a_missing_or_broken_key_reads_as_none() -> None:
    material, _ = advance(None, CFG, now=T0, reports={})
    data = material.data()
    assert Material.from_secret({"data": {k: v for k, v in data.items() if k != "ca.key"}}) is None
    assert Material.from_secret({"data": {**data, "tls.crt": "bm90IGEgY2VydA=="}}) is None


def test_issue_refuses_no_hosts() -> None:
    ca, key = new_ca("x", validity=60)
    with pytest.raises(ValueError, match="at least one host"):
        issue(ca, key, (), validity=30)


def test_serving_certificate_never_outlives_its_ca() -> None:
    from cryptography import x509

    ca, key = new_ca("x", validity=60, now=T0)
    cert, _ = issue(ca, key, ("a.svc",), validity=3600, now=T0)
    assert x509.load_pem_x509_certificate(cert).not_valid_after_utc == \
        x509.load_pem_x509_certificate(ca).not_valid_after_utc


def test_cas_found_in_the_bundle_stay_trusted_for_the_handover_then_leave() -> None:
    earlier, _ = new_ca("self-signed", validity=3000, now=T0)
    cfg = replace(CFG, handover=60)
    material, why = advance(None, cfg, now=T0, reports={}, found=[earlier])
    assert "stay trusted for 60 s" in why
    assert material.trusted == (earlier, material.ca) and material.bundle == (material.ca,)
    assert Material.from_secret({"data": material.data(), "metadata": {"annotations": {
        "admission.policy/inherited-ca-until": str(material.inherited_until)}}}) == material
    assert advance(material, cfg, now=T0 + 59, reports={})[1] == ""
    after, why = advance(material, cfg, now=T0 + 60, reports={})
    assert why == "the previous mode's CAs left the caBundle" and after.trusted == (material.ca,)
