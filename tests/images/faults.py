"""A small misbehaving HTTP server on loopback: each path answers as a test tells it to (500s, hangs, wrong bodies,
endless bodies, redirects, odd challenges), and every request is logged with its headers.

It also serves a minimal registry API for one image (`serve_image`), so faults can be placed at any step.
"""

from __future__ import annotations

import hashlib
import json
import socket
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from tests.images.loopback import LoopbackServer

Behaviour = Callable[[BaseHTTPRequestHandler, "Faults"], None]
_ENDLESS_LIMIT = 64 << 20  # an "endless" body stops here anyway, so a client bug cannot make the test run forever
_HANG_LIMIT = 30.0


@dataclass(frozen=True, slots=True)
class Logged:
    method: str
    path: str
    headers: Mapping[str, str]


@dataclass
class Faults(LoopbackServer):
    """`route(path, behaviour)`; unknown paths answer 404 with a registry-style error body."""

    routes: dict[str, Behaviour] = field(default_factory=dict)
    log: list[Logged] = field(default_factory=list)
    sent_bytes: dict[str, int] = field(default_factory=dict)
    stopping: threading.Event = field(default_factory=threading.Event)
    _server: ThreadingHTTPServer | None = None

    def start(self) -> Faults:
        self._serve(_handler(self))
        return self

    def sent(self, path: str, *, timeout: float = 5.0) -> int:
        """Bytes an endless body sent on `path`, once its handler thread has recorded them (it may still be
        winding down after the client hung up)."""
        deadline = time.monotonic() + timeout
        while path not in self.sent_bytes and time.monotonic() < deadline:
            time.sleep(0.01)
        return self.sent_bytes[path]

    def stop(self) -> None:
        self.stopping.set()  # releases hanging handlers
        self._shutdown()

    def route(self, path: str, behaviour: Behaviour) -> None:
        self.routes[path] = behaviour

    def requests(self, path: str | None = None) -> list[Logged]:
        return [r for r in self.log if path is None or r.path == path]


# --- behaviours -----------------------------------------------------------------------------------------------


def respond(status: int, body: bytes = b"", headers: Mapping[str, str] | None = None) -> Behaviour:
    def run(handler: BaseHTTPRequestHandler, faults: Faults) -> None:
        handler.send_response(status)
        for key, value in (headers or {}).items():
            handler.send_header(key, value)
        handler.send_header("Content-Length", str(len(body)))
        handler.end_headers()
        if handler.command != "HEAD":
            handler.wfile.write(body)
    return run


def sequence(*behaviours: Behaviour) -> Behaviour:
    """The first request gets the first behaviour, and so on; the last one repeats."""
    calls = {"n": 0}

    def run(handler: BaseHTTPRequestHandler, faults: Faults) -> None:
        index = min(calls["n"], len(behaviours) - 1)
        calls["n"] += 1
        behaviours[index](handler, faults)
    return run


def hang() -> Behaviour:
    """Accept the request and never answer (until the server stops)."""
    def run(handler: BaseHTTPRequestHandler, faults: Faults) -> None:
        faults.stopping.wait(_HANG_LIMIT)
        handler.close_connection = True
    return run


def drop() -> Behaviour:
    """Close the connection without an answer (a crashed backend)."""
    def run(handler: BaseHTTPRequestHandler, faults: Faults) -> None:
        handler.close_connection = True
        try:
            handler.connection.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass
    return run


def endless(*, declared_length: int | None = None) -> Behaviour:
    """200 with a body that goes on until the client hangs up (bounded by _ENDLESS_LIMIT)."""
    def run(handler: BaseHTTPRequestHandler, faults: Faults) -> None:
        handler.send_response(200)
        handler.send_header("Content-Type", "application/octet-stream")
        if declared_length is not None:
            handler.send_header("Content-Length", str(declared_length))
        handler.end_headers()
        chunk = b"x" * 65536
        sent = 0
        try:
            while sent < _ENDLESS_LIMIT and not faults.stopping.is_set():
                handler.wfile.write(chunk)
                sent += len(chunk)
        except OSError:
            pass
        finally:
            faults.sent_bytes[handler.path] = sent
            handler.close_connection = True
    return run


def redirect(location: str, status: int = 307) -> Behaviour:
    return respond(status, headers={"Location": location})


def challenge(www_authenticate: str) -> Behaviour:
    body = json.dumps({"errors": [{"code": "UNAUTHORIZED", "message": "authentication required"}]}).encode()
    return respond(401, body, {"WWW-Authenticate": www_authenticate, "Content-Type": "application/json"})


def require_basic(user: str, password: str, then: Behaviour) -> Behaviour:
    """`then` for requests with these Basic credentials; a Basic challenge otherwise."""
    import base64

    expected = "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()

    def run(handler: BaseHTTPRequestHandler, faults: Faults) -> None:
        if handler.headers.get("Authorization") == expected:
            then(handler, faults)
        else:
            challenge('Basic realm="faults"')(handler, faults)
    return run


# --- a one-image registry -----------------------------------------------------------------------------------


def digest_of(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


@dataclass(frozen=True, slots=True)
class ServedImage:
    repo: str
    tag: str
    manifest: bytes
    manifest_digest: str
    config: bytes
    config_digest: str
    layers: tuple[str, ...] = ()  # layer digests, bottom first

    @property
    def layer_paths(self) -> tuple[str, ...]:
        return tuple(f"/v2/{self.repo}/blobs/{digest}" for digest in self.layers)

    @property
    def manifest_path(self) -> str:
        return f"/v2/{self.repo}/manifests/{self.manifest_digest}"

    @property
    def tag_path(self) -> str:
        return f"/v2/{self.repo}/manifests/{self.tag}"

    @property
    def config_path(self) -> str:
        return f"/v2/{self.repo}/blobs/{self.config_digest}"


def serve_image(faults: Faults, repo: str = "app", tag: str = "1", *, user: str = "1000",
                config_size: int | None = None, digest_on_head: bool = True,
                wrap: Callable[[Behaviour], Behaviour] | None = None, layers: Sequence[bytes] = ()) -> ServedImage:
    """Routes for /v2/, the tag, the manifest by digest and the config blob of an OCI image.

    `config_size` overrides the descriptor's size (to lie about it); `wrap` wraps every route (e.g. auth);
    `layers` are served as they are (bottom first), whatever they hold: a crafted tar, a bomb, not a tar at all.
    """
    config = json.dumps({"architecture": "amd64", "os": "linux", "config": {"User": user},
                         "rootfs": {"type": "layers", "diff_ids": []},
                         "history": [{"created_by": "faults"}]}).encode()
    config_digest = digest_of(config)
    manifest = json.dumps({"schemaVersion": 2, "mediaType": "application/vnd.oci.image.manifest.v1+json",
                           "config": {"mediaType": "application/vnd.oci.image.config.v1+json",
                                      "digest": config_digest, "size": config_size or len(config)},
                           "layers": [{"mediaType": "application/vnd.oci.image.layer.v1.tar+gzip",
                                       "digest": digest_of(layer), "size": len(layer)} for layer in layers]}).encode()
    manifest_digest = digest_of(manifest)
    image = ServedImage(repo, tag, manifest, manifest_digest, config, config_digest,
                        tuple(digest_of(layer) for layer in layers))
    oci = "application/vnd.oci.image.manifest.v1+json"
    tag_headers = {"Content-Type": oci, **({"Docker-Content-Digest": manifest_digest} if digest_on_head else {})}
    wrap = wrap or (lambda b: b)
    faults.route("/v2/", wrap(respond(200, b"{}", {"Content-Type": "application/json"})))
    faults.route(image.tag_path, wrap(respond(200, manifest, tag_headers)))
    faults.route(image.manifest_path, wrap(respond(200, manifest, {"Content-Type": oci,
                                                                    "Docker-Content-Digest": manifest_digest})))
    faults.route(image.config_path, wrap(respond(200, config, {"Content-Type": "application/octet-stream"})))
    for layer, path in zip(layers, image.layer_paths):
        faults.route(path, wrap(respond(200, layer, {"Content-Type": "application/octet-stream"})))
    return image


def _handler(faults: Faults) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, format: str, *args: Any) -> None:
            pass

        def _dispatch(self) -> None:
            path = self.path.split("?", 1)[0]
            faults.log.append(Logged(self.command, self.path, dict(self.headers.items())))
            length = int(self.headers.get("Content-Length") or 0)
            if length:
                self.rfile.read(length)
            behaviour = faults.routes.get(path)
            if behaviour is None:
                body = json.dumps({"errors": [{"code": "NAME_UNKNOWN", "message": "no such route"}]}).encode()
                respond(404, body, {"Content-Type": "application/json"})(self, faults)
                return
            behaviour(self, faults)

        do_GET = do_HEAD = do_POST = _dispatch

    return Handler
