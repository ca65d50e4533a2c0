"""TLS certificate hot reload through a Secret-style `..data` symlink swap, on the real server: new connections
get the rotated certificate without a restart; a key that does not match keeps the old pair and is counted."""

from __future__ import annotations

import os
import socket
import ssl
import time
from pathlib import Path

import pytest

from tests.webhook.conftest import pod, review, write_policy
from tests.webhook.served import Served, make_tls


def _publish(mount: Path, version: int, cert: bytes, key: bytes) -> None:
    target = mount / f"..2026_01_01_00_00_{version:02d}.000000001"
    target.mkdir()
    (target / "tls.crt").write_bytes(cert)
    (target / "tls.key").write_bytes(key)
    tmp = mount / "..data_tmp"
    os.symlink(target.name, tmp)
    os.replace(tmp, mount / "..data")
    for name in ("tls.crt", "tls.key"):
        if not (mount / name).is_symlink():
            os.symlink(f"..data/{name}", mount / name)


def _served_cert(port: int, ca_file: Path) -> bytes:
    context = ssl.create_default_context(cafile=str(ca_file))
    with socket.create_connection(("127.0.0.1", port), timeout=5) as raw:
        with context.wrap_socket(raw, server_hostname="127.0.0.1") as tls:
            return tls.getpeercert(binary_form=True) or b""


def test_a_rotated_certificate_is_served_to_new_connections_and_a_bad_pair_is_refused(tmp_path: Path) -> None:
    import trustme

    ca = trustme.CA()
    first, second, third = (make_tls(tmp_path / name, ca) for name in ("one", "two", "three"))
    mount = tmp_path / "secret"
    mount.mkdir()
    _publish(mount, 1, first.cert.read_bytes(), first.key.read_bytes())
    server = Served(tmp_path / "serve", ["--policy", str(write_policy(tmp_path / "p")),
                                         "--tls-cert", str(mount / "tls.crt"), "--tls-key", str(mount / "tls.key")],
                    env={"ADMISSION_WATCH_INTERVAL": "0.05", "ADMISSION_DRAIN_DELAY": "0"})
    server.tls = None  # the files are given in args; the client trusts the CA
    server.start(wait=False)
    try:
        deadline = time.monotonic() + 20
        original = b""
        while time.monotonic() < deadline and not original:
            try:
                original = _served_cert(server.port, first.ca_file)
            except OSError:
                time.sleep(0.05)
        assert original, server.err.read_text()
        # A keep-alive connection opened before the rotation keeps working after it.
        context = ssl.create_default_context(cafile=str(first.ca_file))
        import httpx

        with httpx.Client(base_url=f"https://127.0.0.1:{server.port}", verify=context, timeout=10) as client:
            assert client.post("/validate", json=review(pod())).status_code == 200
            _publish(mount, 2, second.cert.read_bytes(), second.key.read_bytes())
            rotated = original
            deadline = time.monotonic() + 10
            while rotated == original and time.monotonic() < deadline:
                time.sleep(0.05)
                rotated = _served_cert(server.port, first.ca_file)
            assert rotated != original, "new connections still get the old certificate"
            assert client.post("/validate", json=review(pod())).status_code == 200

            # The cert of one pair with the key of another: refused, the second pair stays in service.
            _publish(mount, 3, third.cert.read_bytes(), second.key.read_bytes())
            deadline = time.monotonic() + 10
            metrics = ""
            while 'admission_certificate_reloads_total{result="failure"} 1.0' not in metrics and time.monotonic() < deadline:
                time.sleep(0.05)
                metrics = client.get("/metrics").text
            assert 'admission_certificate_reloads_total{result="failure"} 1.0' in metrics
            assert 'admission_certificate_reloads_total{result="success"} 1.0' in metrics
            assert _served_cert(server.port, first.ca_file) == rotated
    finally:
        server.stop()


@pytest.mark.parametrize("interval", ["0.05"])
def test_a_policy_configmap_swap_applies_on_the_real_server(tmp_path: Path, interval: str) -> None:
    mount = tmp_path / "config"
    mount.mkdir()
    target = mount / "..v1"
    target.mkdir()
    (target / "policy.yaml").write_text("images: {resolve: false}\n")
    os.symlink("..v1", mount / "..data")
    os.symlink("..data/policy.yaml", mount / "policy.yaml")
    server = Served(tmp_path / "serve", ["--policy", str(mount / "policy.yaml")], tls=make_tls(tmp_path / "tls"),
                    env={"ADMISSION_WATCH_INTERVAL": interval, "ADMISSION_DRAIN_DELAY": "0"})
    server.start()
    body = review(pod(containers=[{"name": "app", "image": "nginx:latest", "securityContext": {"runAsUser": 10001},
                                   "resources": {"limits": {"cpu": "1", "memory": "1Gi"}}}]))
    try:
        with server.client() as client:
            assert client.post("/validate", json=body).json()["response"]["allowed"] is False
            (mount / "..v2").mkdir()
            (mount / "..v2" / "policy.yaml").write_text("images: {resolve: false}\nenforcement: warn\n")
            os.symlink("..v2", mount / "..tmp")
            os.replace(mount / "..tmp", mount / "..data")
            deadline = time.monotonic() + 10
            answer = client.post("/validate", json=body).json()["response"]
            while answer["allowed"] is False and time.monotonic() < deadline:
                time.sleep(0.05)
                answer = client.post("/validate", json=body).json()["response"]
        assert answer["allowed"] is True and answer["warnings"]
    finally:
        server.stop()
    assert "policy reloaded" in server.err.read_text()


def test_a_pair_swapped_while_the_server_starts_is_loaded_whole_and_the_newer_one_follows(tmp_path: Path) -> None:
    """uvicorn reads the certificate and the key by two paths; managed TLS swaps a `current` symlink. Caught between
    the two reads, the start must not fail on a mismatch: the load is retried, and the watcher takes the pair that
    was written meanwhile (the race that failed a CI run's managed-TLS tests)."""
    import trustme
    from types import SimpleNamespace

    from admission.webhook import reload

    ca = trustme.CA()
    old, new = ca.issue_cert("127.0.0.1"), ca.issue_cert("127.0.0.1")
    for name, leaf in (("old", old), ("new", new)):
        (tmp_path / name).mkdir()
        (tmp_path / name / "tls.crt").write_bytes(leaf.cert_chain_pems[0].bytes())
        (tmp_path / name / "tls.key").write_bytes(leaf.private_key_pem.bytes())
    (tmp_path / "torn").mkdir()  # the moment of the swap: one file of each pair
    (tmp_path / "torn" / "tls.crt").write_bytes(old.cert_chain_pems[0].bytes())
    (tmp_path / "torn" / "tls.key").write_bytes(new.private_key_pem.bytes())
    (tmp_path / "current").symlink_to("torn")
    config = SimpleNamespace(ssl_certfile=str(tmp_path / "current" / "tls.crt"),
                             ssl_keyfile=str(tmp_path / "current" / "tls.key"))
    attempts = []

    def factory() -> ssl.SSLContext:
        attempts.append(os.readlink(tmp_path / "current"))
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        try:
            context.load_cert_chain(config.ssl_certfile, config.ssl_keyfile)
        finally:  # the writer finishes its swap, to the old pair and then quickly to the new one
            target = {"torn": "old", "old": "new"}.get(attempts[-1], "new")
            (tmp_path / "next").symlink_to(target)
            os.replace(tmp_path / "next", tmp_path / "current")
        return context

    others = reload._CONTEXTS[:]  # contexts other tests of this process registered are not this test's
    reload._CONTEXTS.clear()
    try:
        reload.ssl_context_factory(config, factory)
        assert attempts == ["torn", "old"]  # a mismatch, then the old pair loaded whole
        assert reload.check_certificates() == [True], "the pair written during the start is loaded next"
        assert reload.check_certificates() == [], "and then nothing changed"
    finally:
        reload._CONTEXTS[:] = others
