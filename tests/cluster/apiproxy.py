"""A loopback proxy in front of the real API server, at the seam where an overloaded or compacted API server answers:
it forwards every request (over TLS, with the client's bearer token, or as the admin when the client sends none) and
answers the ones a test names with 410 Expired or 429 Too Many Requests instead, as the API server words them. Every
request is logged with its time and what was answered.

Plain HTTP on 127.0.0.1, so a kubeconfig with `server: http://127.0.0.1:PORT` reaches it.
"""

from __future__ import annotations

import json
import ssl
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import httpx
import yaml

from tests.cluster.controlplane import ControlPlane
from tests.images.loopback import LoopbackServer

# The API server's own words for an expired continue token (staging/src/k8s.io/apiserver/pkg/storage/errors.go).
EXPIRED_MESSAGE = ("The provided continue parameter is too old to display a consistent list result. You can start a "
                   "new list without the continue parameter, or use the continue token in this response to retrieve "
                   "the remainder of the results. Continuing with the provided token results in an inconsistent list "
                   "- objects that were created, modified, or deleted between the time the first chunk was returned "
                   "and now may show up in the list.")


@dataclass(frozen=True, slots=True)
class Seen:
    at: float  # time.monotonic()
    method: str
    path: str
    query: Mapping[str, str]
    status: int
    injected: bool


Match = Callable[[str, str, Mapping[str, str]], bool]  # (method, path, query) -> this fault applies


@dataclass
class Fault:
    match: Match
    status: int
    times: int = 1  # how many matching requests get it
    retry_after: str | None = None
    used: int = 0


def lists(path: str, *, continued: bool | None = None) -> Match:
    """GETs of `path`; `continued` True: only pages after the first, False: only first pages."""
    def match(method: str, got: str, query: Mapping[str, str]) -> bool:
        if method != "GET" or got != path:
            return False
        return continued is None or ("continue" in query) == continued
    return match


@dataclass
class ApiProxy(LoopbackServer):
    plane: ControlPlane
    faults: list[Fault] = field(default_factory=list)
    log: list[Seen] = field(default_factory=list)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def start(self) -> ApiProxy:
        pki = self.plane.root / "pki"
        context = ssl.create_default_context(cafile=str(self.plane.ca_file))
        context.load_cert_chain(str(pki / "admin.crt"), str(pki / "admin.key"))
        self._admin = httpx.Client(base_url=self.plane.url, verify=context, timeout=60)
        self._anonymous = httpx.Client(base_url=self.plane.url, verify=ssl.create_default_context(
            cafile=str(self.plane.ca_file)), timeout=60)
        self._serve(_handler(self))
        return self

    def stop(self) -> None:
        self._shutdown()
        self._admin.close()
        self._anonymous.close()

    def inject(self, match: Match, status: int, *, times: int = 1, retry_after: str | None = None) -> Fault:
        fault = Fault(match, status, times, retry_after)
        with self._lock:
            self.faults.append(fault)
        return fault

    def clear(self) -> None:
        with self._lock:
            self.faults.clear()
            self.log.clear()

    def seen(self, method: str | None = None, path: str | None = None) -> list[Seen]:
        with self._lock:
            return [s for s in self.log if (method is None or s.method == method) and (path is None or s.path == path)]

    def kubeconfig(self, path: Path, *, token: str | None = None, namespace: str = "default") -> Path:
        user = {"token": token} if token else {}
        config = {"apiVersion": "v1", "kind": "Config", "current-context": "proxy",
                  "clusters": [{"name": "proxy", "cluster": {"server": f"http://{self.host}"}}],
                  "users": [{"name": "proxy", "user": user}],
                  "contexts": [{"name": "proxy", "context": {"cluster": "proxy", "user": "proxy",
                                                             "namespace": namespace}}]}
        path.write_text(yaml.safe_dump(config))
        return path

    def _fault_for(self, method: str, path: str, query: Mapping[str, str]) -> Fault | None:
        with self._lock:
            for fault in self.faults:
                if fault.used < fault.times and fault.match(method, path, query):
                    fault.used += 1
                    return fault
        return None

    def _record(self, seen: Seen) -> None:
        with self._lock:
            self.log.append(seen)


def _status_body(status: int, token: str | None) -> bytes:
    if status == 410:
        body = {"kind": "Status", "apiVersion": "v1", "metadata": {"continue": token or ""}, "status": "Failure",
                "message": EXPIRED_MESSAGE, "reason": "Expired", "code": 410}
    else:
        body = {"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure",
                "message": "Too many requests, please try again later.", "reason": "TooManyRequests",
                "details": {"retryAfterSeconds": 1}, "code": status}
    return json.dumps(body).encode()


def _handler(proxy: ApiProxy) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, format: str, *args: object) -> None:  # noqa: A002 - the base class's name
            pass

        def _answer(self, status: int, headers: Mapping[str, str], body: bytes) -> None:
            self.send_response(status)
            for key, value in headers.items():
                self.send_header(key, value)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def _handle(self) -> None:
            started = time.monotonic()
            split = urlsplit(self.path)
            query = {k: v[-1] for k, v in parse_qs(split.query, keep_blank_values=True).items()}
            length = int(self.headers.get("Content-Length") or 0)
            body = self.rfile.read(length) if length else b""
            fault = proxy._fault_for(self.command, split.path, query)
            if fault is not None:
                headers = {"Content-Type": "application/json"}
                if fault.retry_after is not None:
                    headers["Retry-After"] = fault.retry_after
                # An expired token comes back with the API server's "inconsistent continue" token, as the real one
                # does; the client under test restarts instead of using it.
                self._answer(fault.status, headers, _status_body(fault.status, query.get("continue")))
                proxy._record(Seen(started, self.command, split.path, query, fault.status, True))
                return
            forward = {k: v for k, v in self.headers.items()
                       if k.lower() in ("accept", "content-type", "authorization", "user-agent")}
            client = proxy._anonymous if "authorization" in {k.lower() for k in forward} else proxy._admin
            response = client.request(self.command, self.path, headers=forward, content=body)
            headers = {k: v for k, v in response.headers.items()
                       if k.lower() in ("content-type", "retry-after", "warning", "audit-id")}
            self._answer(response.status_code, headers, response.content)
            proxy._record(Seen(started, self.command, split.path, query, response.status_code, False))

        do_GET = do_POST = do_PUT = do_PATCH = do_DELETE = _handle

    return Handler
