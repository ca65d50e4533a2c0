"""A second mutating webhook for the control-plane tests: a sidecar injector, as Istio's or Linkerd's is, that adds a
container to the Pods it is sent. It is the reason `reinvocationPolicy: IfNeeded` exists: the API server calls the
admission webhook again after it, so the sidecar's image is pinned too. A real HTTPS server on loopback (trustme
certificate), registered through the real API server; its name sorts after the chart's, so it runs after it."""

from __future__ import annotations

import base64
import json
import ssl
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import trustme

from tests.cluster.controlplane import ControlPlane

NAME = "zz-sidecar-injector"  # after the chart's configuration name: mutating webhooks run in name order


def _handler(sidecar: dict[str, Any]) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:  # http.server's name
            review = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
            request = review["request"]
            containers = request["object"]["spec"]["containers"]
            response: dict[str, Any] = {"uid": request["uid"], "allowed": True}
            if all(c["name"] != sidecar["name"] for c in containers):
                patch = [{"op": "add", "path": "/spec/containers/-", "value": sidecar}]
                response.update(patchType="JSONPatch", patch=base64.b64encode(json.dumps(patch).encode()).decode())
            body = json.dumps({"apiVersion": review["apiVersion"], "kind": "AdmissionReview",
                               "response": response}).encode()
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, format: str, *args: Any) -> None:  # quiet
            pass

    return Handler


@contextmanager
def injector(plane: ControlPlane, root: Path, *, namespace: str, sidecar: dict[str, Any]) -> Iterator[None]:
    """Registered for Pods labelled `inject: "yes"` in `namespace` while the block runs."""
    ca = trustme.CA()
    leaf = ca.issue_cert("127.0.0.1")
    cert, key = root / "injector.crt", root / "injector.key"
    leaf.cert_chain_pems[0].write_to_path(str(cert))
    leaf.private_key_pem.write_to_path(str(key))
    server = ThreadingHTTPServer(("127.0.0.1", 0), _handler(sidecar))
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(str(cert), str(key))
    server.socket = context.wrap_socket(server.socket, server_side=True)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    configuration = {
        "apiVersion": "admissionregistration.k8s.io/v1", "kind": "MutatingWebhookConfiguration",
        "metadata": {"name": NAME},
        "webhooks": [{"name": "inject.sidecar.test", "admissionReviewVersions": ["v1"], "sideEffects": "None",
                      "failurePolicy": "Fail", "reinvocationPolicy": "Never", "timeoutSeconds": 5,
                      "clientConfig": {"url": f"https://127.0.0.1:{server.server_address[1]}/inject",
                                       "caBundle": base64.b64encode(ca.cert_pem.bytes()).decode()},
                      "rules": [{"apiGroups": [""], "apiVersions": ["v1"], "operations": ["CREATE"],
                                 "resources": ["pods"], "scope": "Namespaced"}],
                      "namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": namespace}},
                      "objectSelector": {"matchLabels": {"inject": "yes"}}}]}
    plane.apply([configuration])
    try:
        yield
    finally:
        plane.kubectl("delete", "mutatingwebhookconfiguration", NAME, "--ignore-not-found", "--wait=true")
        server.shutdown()
