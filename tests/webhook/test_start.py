"""`admission-cli serve` start-up: a bad certificate or key, or a port in use, is one line naming the file or the
port and exit 2; the optional metrics port serves /metrics apart from the webhook's port."""

from __future__ import annotations

import socket
import subprocess
import time
from pathlib import Path

import httpx
import pytest

from tests.images.registry import free_port
from tests.webhook.conftest import pod, review, write_policy
from tests.webhook.served import CLI, Served, make_tls


def _serve(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([str(CLI), "serve", "--host", "127.0.0.1", *args], capture_output=True, text=True,
                          timeout=60)


@pytest.mark.parametrize("case", ["mismatched-key", "not-a-certificate", "not-a-key", "missing-key"])
def test_a_bad_certificate_or_key_is_one_line_naming_the_file_and_exit_2(tmp_path: Path, case: str) -> None:
    one, other = make_tls(tmp_path / "one"), make_tls(tmp_path / "other")
    junk = tmp_path / "junk.pem"
    junk.write_text("not PEM\n")
    cert, key, named, says = {
        "mismatched-key": (one.cert, other.key, other.key, "not the private key of the certificate"),
        "not-a-certificate": (junk, one.key, junk, "not a PEM certificate"),
        "not-a-key": (one.cert, junk, junk, "not a PEM private key"),
        "missing-key": (one.cert, tmp_path / "gone.pem", tmp_path / "gone.pem", "file not found"),
    }[case]
    done = _serve("--port", str(free_port()), "--tls-cert", str(cert), "--tls-key", str(key))
    assert done.returncode == 2
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"admission-cli serve: {named}: ") and says in lines[0]


@pytest.mark.parametrize("flag", ["--port", "--metrics-port"])
def test_a_port_in_use_is_one_line_naming_it_and_exit_2(flag: str) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        args = ["--port", str(port)] if flag == "--port" else ["--port", str(free_port()), flag, str(port)]
        done = _serve(*args)
    assert done.returncode == 2
    name = "port" if flag == "--port" else "metrics port"
    assert done.stderr.strip().splitlines() == [f"admission-cli serve: {name} {port} on 127.0.0.1: already in use"]


@pytest.mark.parametrize("workers", [1, 2])
def test_the_metrics_port_serves_metrics_and_the_webhook_port_does_not(tmp_path: Path, workers: int) -> None:
    metrics_port = free_port()
    server = Served(tmp_path / "serve", ["--policy", str(write_policy(tmp_path / "p")), "--workers", str(workers),
                                         "--metrics-port", str(metrics_port)], tls=make_tls(tmp_path / "tls"),
                    env={"ADMISSION_DRAIN_DELAY": "0"})
    server.start()
    try:
        with server.client() as client:
            assert client.post("/validate", json=review(pod())).status_code == 200
            assert client.get("/metrics").status_code == 404
        scraped = httpx.get(f"http://127.0.0.1:{metrics_port}/metrics", timeout=10).text
    finally:
        assert server.terminate() == 0
    assert ('admission_requests_total{dry_run="false",kind="Pod",operation="CREATE",'
            'result="allowed",webhook="validate"} 1.0') in scraped
    assert "admission_policy_info{" in scraped
    expiry = next(line for line in scraped.splitlines()
                  if line.startswith("admission_tls_certificate_expiry_timestamp_seconds"))
    assert float(expiry.split()[-1]) > time.time()  # trustme's certificate: valid for years
