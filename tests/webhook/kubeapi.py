"""A loopback HTTP server that answers as the Kubernetes API server does, with its real JSON shapes (LimitRangeList,
Secret, ServiceAccount, Status for 403 and 404, a watch stream of JSON lines), for the webhook's cluster reads.
No real API server runs on these machines; the `kubernetes` client talks to this one through a kubeconfig."""

from __future__ import annotations

import json
import queue
import threading
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlparse

from tests.images.loopback import LoopbackServer

TOKEN = "webhook-test-token"


def status(code: int, reason: str, message: str, details: dict[str, Any] | None = None) -> dict[str, Any]:
    return {"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure", "message": message,
            "reason": reason, "details": details or {}, "code": code}


def forbidden(resource: str, namespace: str | None = None, verb: str = "list") -> dict[str, Any]:
    where = f' in the namespace "{namespace}"' if namespace else " at the cluster scope"
    return status(403, "Forbidden", f'{resource} is forbidden: User "system:serviceaccount:admission:admission" '
                                    f'cannot {verb} resource "{resource}" in API group ""{where}', {"kind": resource})


def not_found(resource: str, name: str) -> dict[str, Any]:
    return status(404, "NotFound", f'{resource} "{name}" not found', {"name": name, "kind": resource})


def limit_range(namespace: str, name: str, default: dict[str, str], version: str = "1001") -> dict[str, Any]:
    return {"metadata": {"name": name, "namespace": namespace, "uid": f"uid-{namespace}-{name}",
                         "resourceVersion": version, "creationTimestamp": "2026-01-01T00:00:00Z"},
            "spec": {"limits": [{"type": "Container", "default": default,
                                 "defaultRequest": {k: "50m" if k == "cpu" else "64Mi" for k in default}},
                                {"type": "Pod", "max": {"cpu": "4", "memory": "8Gi"}}]}}


def docker_secret(namespace: str, name: str, registry: str, user: str, password: str) -> dict[str, Any]:
    import base64

    auth = base64.b64encode(f"{user}:{password}".encode()).decode()
    config = {"auths": {registry: {"username": user, "password": password, "auth": auth}}}
    return {"kind": "Secret", "apiVersion": "v1", "type": "kubernetes.io/dockerconfigjson",
            "metadata": {"name": name, "namespace": namespace, "uid": f"uid-{name}", "resourceVersion": "77"},
            "data": {".dockerconfigjson": base64.b64encode(json.dumps(config).encode()).decode()}}


def service_account(namespace: str, name: str, pull_secrets: list[str]) -> dict[str, Any]:
    return {"kind": "ServiceAccount", "apiVersion": "v1",
            "metadata": {"name": name, "namespace": namespace, "uid": f"uid-sa-{name}", "resourceVersion": "5"},
            "imagePullSecrets": [{"name": s} for s in pull_secrets]}


@dataclass
class KubeAPI(LoopbackServer):
    """Objects by (resource, namespace, name); per-namespace LimitRange lists; optional answers that override."""

    limitranges: dict[str, list[dict[str, Any]]] = field(default_factory=dict)
    objects: dict[tuple[str, str, str], dict[str, Any]] = field(default_factory=dict)
    overrides: dict[str, tuple[int, dict[str, Any]]] = field(default_factory=dict)  # path -> (status, body)
    watch_events: queue.Queue[dict[str, Any] | None] = field(default_factory=queue.Queue)
    log: list[tuple[str, str]] = field(default_factory=list)  # (path with query, Authorization)
    stopping: threading.Event = field(default_factory=threading.Event)

    def start(self) -> KubeAPI:
        self._serve(_handler(self))
        return self

    def stop(self) -> None:
        self.stopping.set()
        self.watch_events.put(None)
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
            query = parse_qs(url.query)
            if url.path in api.overrides:
                self._send(*api.overrides[url.path])
                return
            parts = url.path.strip("/").split("/")
            if url.path == "/api/v1/limitranges":
                if query.get("watch", [""])[0] in ("true", "1", "True"):
                    self._watch()
                    return
                items = [item for ns in sorted(api.limitranges) for item in api.limitranges[ns]]
                self._send(200, {"kind": "LimitRangeList", "apiVersion": "v1", "metadata": {"resourceVersion": "1000"},
                                 "items": items})
                return
            if len(parts) == 5 and parts[:3] == ["api", "v1", "namespaces"] and parts[4] == "limitranges":
                self._send(200, {"kind": "LimitRangeList", "apiVersion": "v1", "metadata": {"resourceVersion": "1000"},
                                 "items": api.limitranges.get(parts[3], [])})
                return
            if len(parts) == 6 and parts[:3] == ["api", "v1", "namespaces"]:
                key = (parts[4], parts[3], parts[5])
                found = api.objects.get(key)
                if found is None:
                    self._send(404, not_found(parts[4], parts[5]))
                else:
                    self._send(200, found)
                return
            self._send(404, status(404, "NotFound", "the server could not find the requested resource"))

        def _watch(self) -> None:
            # A watch answers 200 at once and then writes one JSON event per line, chunked, as the API server does.
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Transfer-Encoding", "chunked")
            self.end_headers()
            while not api.stopping.is_set():
                try:
                    event = api.watch_events.get(timeout=0.1)
                except queue.Empty:
                    continue
                if event is None:
                    break
                line = json.dumps(event).encode() + b"\n"
                try:
                    self.wfile.write(f"{len(line):x}\r\n".encode() + line + b"\r\n")
                    self.wfile.flush()
                except OSError:
                    return
            try:
                self.wfile.write(b"0\r\n\r\n")
            except OSError:
                pass
            self.close_connection = True

    return Handler
