"""A loopback HTTP server that answers as the Kubernetes API server does, with its real JSON shapes (LimitRangeList,
Status), for faults a real API server will not produce on demand (a 500 on the cluster-wide LimitRange list). What
a real API server does produce is tested against one, in tests/cluster/."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

from tests.images.loopback import LoopbackServer

TOKEN = "webhook-test-token"


def status(code: int, reason: str, message: str, details: dict[str, Any] | None = None) -> dict[str, Any]:
    return {"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure", "message": message,
            "reason": reason, "details": details or {}, "code": code}


def limit_range(namespace: str, name: str, default: dict[str, str], version: str = "1001") -> dict[str, Any]:
    return {"metadata": {"name": name, "namespace": namespace, "uid": f"uid-{namespace}-{name}",
                         "resourceVersion": version, "creationTimestamp": "2026-01-01T00:00:00Z"},
            "spec": {"limits": [{"type": "Container", "default": default,
                                 "defaultRequest": {k: "50m" if k == "cpu" else "64Mi" for k in default}},
                                {"type": "Pod", "max": {"cpu": "4", "memory": "8Gi"}}]}}


@dataclass
class KubeAPI(LoopbackServer):
    """Per-namespace LimitRange lists, and answers that override a path."""

    limitranges: dict[str, list[dict[str, Any]]] = field(default_factory=dict)
    overrides: dict[str, tuple[int, dict[str, Any]]] = field(default_factory=dict)  # path -> (status, body)
    log: list[tuple[str, str]] = field(default_factory=list)  # (path with query, Authorization)

    def start(self) -> KubeAPI:
        self._serve(_handler(self))
        return self

    def stop(self) -> None:
        self._shutdown()

    def kubeconfig(self, folder: Path) -> Path:
        path = folder / "kubeconfig"
        path.write_text(json.dumps({
            "apiVersion": "v1", "kind": "Config", "current-context": "test",
            "clusters": [{"name": "loopback", "cluster": {"server": f"http://{self.host}"}}],
            "users": [{"name": "webhook", "user": {"token": TOKEN}}],
            "contexts": [{"name": "test", "context": {"cluster": "loopback", "user": "webhook"}}],
        }))
        return path

    def paths(self) -> list[str]:
        return [p for p, _ in self.log]


def _handler(api: KubeAPI) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, *args: Any) -> None:
            pass

        def _send(self, code: int, body: dict[str, Any]) -> None:
            data = json.dumps(body).encode()
            self.send_response(code)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def do_GET(self) -> None:  # noqa: N802 - the http.server API
            api.log.append((self.path, self.headers.get("Authorization", "")))
            if self.headers.get("Authorization") != f"Bearer {TOKEN}":
                self._send(401, status(401, "Unauthorized", "Unauthorized"))
                return
            url = urlparse(self.path)
            if url.path in api.overrides:
                self._send(*api.overrides[url.path])
                return
            parts = url.path.strip("/").split("/")
            if len(parts) == 5 and parts[:3] == ["api", "v1", "namespaces"] and parts[4] == "limitranges":
                self._send(200, {"kind": "LimitRangeList", "apiVersion": "v1", "metadata": {"resourceVersion": "1000"},
                                 "items": api.limitranges.get(parts[3], [])})
                return
            self._send(404, status(404, "NotFound", "the server could not find the requested resource"))

    return Handler
