"""`admission-cli serve` for real: uvicorn with TLS on loopback, answering the project's reviews (and the public
corpus's, when it is there); bad starts exit 2; SIGTERM drains and exits 0 without losing a request under load."""

from __future__ import annotations

import json
import signal
import subprocess
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.corpus import corpus, corpus_files
from tests.webhook.conftest import OWNED_REVIEWS, bad_container, pod, review, write_policy
from tests.webhook.served import CLI, Served, make_tls
from tests.webhook.test_corpus import EXPECTED as CORPUS_EXPECTED
from tests.webhook.test_reviews import EXPECTED as OWNED_EXPECTED


@pytest.fixture()
def served(tmp_path: Path) -> Iterator[Served]:
    server = Served(tmp_path / "serve", ["--policy", str(write_policy(tmp_path / "policy"))], tls=make_tls(tmp_path / "tls"),
                    env={"ADMISSION_DRAIN_DELAY": "0.5", "ADMISSION_GRACE": "5"})
    server.start()
    yield server
    server.stop()


def _answers_every_review_over_tls(served: Served, reviews: dict[Path, bool]) -> list[dict]:
    """Send each review (path -> whether it is allowed), check the answer, stop the server; its audit lines."""
    with served.client() as client:
        for path, allowed in reviews.items():
            response = client.post("/validate", content=path.read_bytes(), headers={"Content-Type": "application/json"})
            assert response.status_code == 200, (path.name, response.text)
            sent, got = json.loads(path.read_bytes()), response.json()
            assert got["apiVersion"] == sent["apiVersion"]
            assert got["response"]["uid"] == sent["request"].get("uid", "")
            assert got["response"]["allowed"] is allowed, path.name
        assert client.get("/healthz").json() == {"status": "ok"}
        assert "admission_requests_total" in client.get("/metrics").text
    assert served.terminate() == 0
    audit = served.audit()
    assert len(audit) == len(reviews)
    return audit


def test_serve_answers_every_owned_review_over_tls(served: Served) -> None:
    reviews = {OWNED_REVIEWS / name: answer.allowed for name, answer in OWNED_EXPECTED.items()
               if answer.http == 200 and not name.startswith("demo/")}
    audit = _answers_every_review_over_tls(served, reviews)
    assert {line["uid"] for line in audit} >= {"", "0b6f3a52-7c1e-4f0a-9d2b-1a0c5e7f9001"}


@corpus("admission")
def test_serve_answers_every_corpus_review_over_tls(served: Served) -> None:
    reviews = {path: CORPUS_EXPECTED[path.name] is None for path in corpus_files("admission", (".json",))}
    audit = _answers_every_review_over_tls(served, reviews)
    assert {line["uid"] for line in audit} >= {"", "705ab4f5-6393-11e8-b7cc-42010a800002"}


def test_serve_speaks_tls_only_with_the_given_certificate(served: Served) -> None:
    with httpx.Client(base_url=served.base, verify=True, timeout=5) as untrusting:
        with pytest.raises(httpx.ConnectError):
            untrusting.get("/healthz")  # not a public CA: the certificate is ours, not a default one
    with httpx.Client(base_url=served.base.replace("https", "http"), timeout=5) as plain:
        with pytest.raises(httpx.TransportError):
            plain.get("/healthz")


def test_serve_refuses_to_start_on_a_bad_policy(tmp_path: Path) -> None:
    bad = write_policy(tmp_path, "rules:\n  no-such-rule: deny\n")
    proc = subprocess.run([str(CLI), "serve", "--policy", str(bad), "--port", "0"], capture_output=True, text=True,
                          timeout=60)
    assert proc.returncode == 2
    assert "no-such-rule" in proc.stderr


def test_serve_needs_both_tls_files(tmp_path: Path) -> None:
    tls = make_tls(tmp_path)
    proc = subprocess.run([str(CLI), "serve", "--tls-cert", str(tls.cert), "--port", "0"], capture_output=True,
                          text=True, timeout=60)
    assert proc.returncode == 2 and "go together" in proc.stderr


def test_flags_beat_admission_environment_variables(tmp_path: Path) -> None:
    server = Served(tmp_path / "serve", ["--max-body", "2048"], env={"ADMISSION_MAX_BODY": "9999999",
                                                                     "ADMISSION_POLICY": str(write_policy(tmp_path))})
    server.start()
    try:
        with server.client() as client:
            big = review(pod())
            big["request"]["object"]["metadata"]["annotations"] = {"a": "x" * 3000}
            assert client.post("/validate", json=big).status_code == 413
            assert client.post("/validate", json=review(pod())).status_code == 200  # the env policy is in force
    finally:
        server.stop()


@pytest.mark.parametrize("workers", [1, 2])
def test_sigterm_drains_under_load_without_losing_or_resetting_a_request(tmp_path: Path, workers: int) -> None:
    server = Served(tmp_path / "serve", ["--policy", str(write_policy(tmp_path / "policy")), "--workers", str(workers)],
                    tls=make_tls(tmp_path / "tls"), env={"ADMISSION_DRAIN_DELAY": "1.5", "ADMISSION_GRACE": "10"})
    server.start()
    body = json.dumps(review(pod(containers=[bad_container()]))).encode()
    results: list[str] = []
    lock = threading.Lock()
    stop = threading.Event()
    term_sent = threading.Event()

    def worker() -> None:
        # keep-alive clients, as the API server's: each answer must be whole, or the connection refused outright
        with server.client(timeout=15) as client:
            while not stop.is_set():
                try:
                    response = client.post("/validate", content=body, headers={"Content-Type": "application/json"})
                    outcome = "ok" if response.status_code == 200 and response.json()["response"]["allowed"] is False \
                        else f"bad {response.status_code}"
                except httpx.ConnectError as exc:
                    # after the drain: the socket is closed; the endpoint is long gone. Not a reset in the TLS
                    # handshake: that is a connection the kernel accepted and nobody served
                    outcome = "refused" if "111" in str(exc) or "refused" in str(exc) else f"lost {exc}"
                    time.sleep(0.01)
                except httpx.TransportError as exc:
                    outcome = f"lost {type(exc).__name__}"
                with lock:
                    results.append(outcome if not term_sent.is_set() else f"after-term {outcome}")

    threads = [threading.Thread(target=worker) for _ in range(16)]
    for t in threads:
        t.start()
    time.sleep(1.0)
    readiness_during_drain = []
    server.process.send_signal(signal.SIGTERM)  # type: ignore[union-attr]
    term_sent.set()
    time.sleep(0.5)
    with server.client() as probe:
        readiness_during_drain.append(probe.get("/readyz").status_code)
        readiness_during_drain.append(probe.post("/validate", content=body).status_code)  # a new connection, served
    code = server.process.wait(timeout=30)  # type: ignore[union-attr]
    stop.set()
    for t in threads:
        t.join(timeout=20)
    assert code == 0
    assert readiness_during_drain == [503, 200]
    lost = [r for r in results if "lost" in r or "bad" in r]
    assert not lost, lost[:5]
    after = [r for r in results if r.startswith("after-term")]
    assert "after-term ok" in after  # requests kept being answered during the drain
    assert results.count("ok") > 20


def test_serve_with_two_workers_answers_and_sums_metrics(tmp_path: Path) -> None:
    (tmp_path / "metrics").mkdir()
    (tmp_path / "metrics" / "counter_4242.db").write_bytes(b"left by an earlier run")  # cleared at start
    server = Served(tmp_path / "serve", ["--workers", "2", "--policy", str(write_policy(tmp_path / "policy")),
                                         "--metrics-dir", str(tmp_path / "metrics")], tls=make_tls(tmp_path / "tls"),
                    env={"ADMISSION_DRAIN_DELAY": "0"})
    server.start()
    try:
        with server.client() as client:
            for _ in range(20):
                with server.client() as fresh:  # new connections, so both workers take some
                    assert fresh.post("/validate", json=review(pod())).json()["response"]["allowed"] is True
            metrics = client.get("/metrics").text
        line = next(line for line in metrics.splitlines()
                    if line.startswith('admission_requests_total{dry_run="false",kind="Pod",operation="CREATE",'
                                       'result="allowed",webhook="validate"}'))
        assert float(line.split()[-1]) == 20.0
    finally:
        assert server.terminate() == 0
