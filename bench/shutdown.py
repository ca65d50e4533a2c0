"""SIGTERM under load (issue 15): 16 keep-alive clients post AdmissionReviews over TLS, SIGTERM midway; how many
accepted connections were reset, and the throughput before SIGTERM, during the drain delay and after it.

A client counts `reset` when a request it sent on an open connection got no answer (the connection was closed or
reset under it) or when a connection the kernel had accepted was reset in its TLS handshake, `refused` when a new
connection was refused (the listener is closed: that client would go to another replica), `ok` for a whole
answer. Run once per worker count; figures are per run (the machine is shared).

    python bench/shutdown.py [--workers 1] [--connections 16] [--drain 3] [--out bench/results/shutdown.json]
"""

from __future__ import annotations

import argparse
import json
import signal
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

import httpx  # noqa: E402

import webhook as bench  # noqa: E402  (bench/webhook.py: the servers, certificates and the request body)


def run(workers: int, connections: int, drain: float, before: float) -> dict[str, Any]:
    work = Path(tempfile.mkdtemp(prefix="admission-bench-shutdown-"))
    tls = bench.make_tls(work)
    policy = work / "policy.yaml"
    policy.write_text("images: {resolve: false}\n")
    server = bench.ours(tls, policy, work, workers=workers, tag=f"shutdown-{workers}w",
                        env={"ADMISSION_DRAIN_DELAY": str(drain), "ADMISSION_GRACE": "10"})
    body = bench.review_template().replace(f"{bench.MARK}UID{bench.MARK}", "u").replace(
        f"{bench.MARK}NAME{bench.MARK}", "shop").replace(f"{bench.MARK}TAG0{bench.MARK}", "1.0.0").replace(
        f"{bench.MARK}TAG1{bench.MARK}", "1.0.0").replace(f"{bench.MARK}TAG2{bench.MARK}", "1.0.0").encode()
    events: list[tuple[float, str]] = []
    lock = threading.Lock()
    stop = threading.Event()

    def client() -> None:
        with httpx.Client(base_url=f"https://127.0.0.1:{server.port}", verify=False, timeout=15,
                          limits=httpx.Limits(max_connections=1)) as http:
            while not stop.is_set():
                try:
                    response = http.post("/validate", content=body, headers={"Content-Type": "application/json"})
                    outcome = "ok" if response.status_code == 200 else f"http {response.status_code}"
                except httpx.ConnectError as exc:
                    # refused: no listener; anything else (a reset or EOF in the TLS handshake) means the kernel had
                    # accepted the connection into the backlog and it was then reset
                    refused = "Connection refused" in str(exc) or "Errno 111" in str(exc)
                    outcome = "refused" if refused else f"reset in handshake: {str(exc)[:60]}"
                    time.sleep(0.01)
                except httpx.TransportError as exc:
                    outcome = f"reset {type(exc).__name__}"
                with lock:
                    events.append((time.monotonic(), outcome))

    threads = [threading.Thread(target=client, daemon=True) for _ in range(connections)]
    for t in threads:
        t.start()
    time.sleep(1.0 + before)
    term = time.monotonic()
    server.proc.send_signal(signal.SIGTERM)  # with --workers N the supervisor forwards it to each worker
    code = server.proc.wait(timeout=60)
    ended = time.monotonic()
    time.sleep(0.5)
    stop.set()
    for t in threads:
        t.join(timeout=20)
    server.out.close()

    def rate(start: float, end: float) -> float:
        return round(sum(1 for at, o in events if start <= at < end and o == "ok") / max(end - start, 1e-9), 1)

    outcomes: dict[str, int] = {}
    for at, outcome in events:
        if at >= term:
            outcomes[outcome] = outcomes.get(outcome, 0) + 1
    return {"workers": workers, "connections": connections, "drain_delay_s": drain, "exit_code": code,
            "rps_before_sigterm": rate(term - before, term), "rps_during_drain": rate(term, term + drain),
            "rps_drain_to_exit": rate(term + drain, ended), "seconds_to_exit": round(ended - term, 2),
            "after_sigterm": outcomes,
            "resets": sum(n for o, n in outcomes.items() if o.startswith("reset")),
            "non_200": sum(n for o, n in outcomes.items() if o.startswith("http"))}


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--workers", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--connections", type=int, default=16)
    parser.add_argument("--drain", type=float, default=3.0)
    parser.add_argument("--out", default=str(Path(__file__).resolve().parent / "results" / "shutdown.json"))
    args = parser.parse_args()
    results = [run(w, args.connections, args.drain, before=3.0) for w in args.workers]
    Path(args.out).write_text(json.dumps(results, indent=2) + "\n")
    print(json.dumps(results, indent=2))
    return 0 if all(r["resets"] == 0 and r["exit_code"] == 0 for r in results) else 1


if __name__ == "__main__":
    raise SystemExit(main())
