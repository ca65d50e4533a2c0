"""`make demo-webhook`: run `admission-cli serve` on loopback with a throwaway self-signed certificate, send the two
AdmissionReviews beside this file (allowed.json: a compliant Deployment; denied.json: the same Deployment running
nginx:latest as root without limits), print both answers and their audit lines, and stop the server with SIGTERM,
as the kubelet would."""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import ssl
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[1]
REVIEWS = (HERE / "allowed.json", HERE / "denied.json")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def main() -> int:
    work = Path(tempfile.mkdtemp(prefix="admission-demo-"))
    cert, key = work / "tls.crt", work / "tls.key"
    print("$ openssl req -x509 -newkey rsa:2048 -nodes -days 1 -subj /CN=admission-demo "
          "-addext subjectAltName=IP:127.0.0.1 -keyout tls.key -out tls.crt")
    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1", "-subj",
                    "/CN=admission-demo", "-addext", "subjectAltName=IP:127.0.0.1", "-keyout", str(key),
                    "-out", str(cert)], check=True, capture_output=True)
    port = free_port()
    cli = Path(sys.executable).parent / "admission-cli"
    args = [str(cli), "serve", "--host", "127.0.0.1", "--port", str(port), "--tls-cert", str(cert), "--tls-key",
            str(key), "--policy", str(HERE / "policy.yaml"), "--drain-delay", "0.5"]
    print(f"$ admission-cli serve --host 127.0.0.1 --port {port} --tls-cert tls.crt --tls-key tls.key "
          "--policy examples/webhook-demo/policy.yaml --drain-delay 0.5")
    audit_path = work / "audit.log"
    env = {k: v for k, v in os.environ.items() if not k.startswith("ADMISSION_")}
    with open(audit_path, "wb") as audit, open(work / "server.log", "wb") as log:
        server = subprocess.Popen(args, stdout=audit, stderr=log, env=env, cwd=ROOT)
    context = ssl.create_default_context(cafile=str(cert))
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                with urllib.request.urlopen(f"https://127.0.0.1:{port}/readyz", context=context, timeout=2) as r:
                    if r.status == 200:
                        break
            except OSError:
                if server.poll() is not None or time.monotonic() > deadline:
                    print((work / "server.log").read_text(), file=sys.stderr)
                    return 1
                time.sleep(0.1)
        for path in REVIEWS:
            body = path.read_bytes()
            print(f"\n$ curl --cacert tls.crt -H 'Content-Type: application/json' "
                  f"--data @{path.relative_to(ROOT)} 'https://127.0.0.1:{port}/validate?timeout=10s'")
            request = urllib.request.Request(f"https://127.0.0.1:{port}/validate?timeout=10s", data=body,
                                             headers={"Content-Type": "application/json"})
            with urllib.request.urlopen(request, context=context, timeout=10) as response:
                print(json.dumps(json.loads(response.read()), indent=2))
    finally:
        server.send_signal(signal.SIGTERM)
        code = server.wait(timeout=30)
    print(f"\n$ kill -TERM <serve>   # readiness goes false, then it drains and exits {code}")
    print("\naudit lines (serve's stdout, one JSON line per decision):")
    for line in audit_path.read_text().splitlines():
        if line.startswith("{"):
            print(line)
    shutil.rmtree(work, ignore_errors=True)
    return 0 if code == 0 else 1


if __name__ == "__main__":
    raise SystemExit(main())
