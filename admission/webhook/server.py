"""uvicorn glue for `admission-cli serve`: TLS with hot reload, and a SIGTERM that drains instead of dropping.

On SIGTERM (what the kubelet sends when a pod is deleted): /readyz turns false at once, so the endpoint leaves the
Service; the listening socket stays open and connections, new and kept-alive, are served as before for
ADMISSION_DRAIN_DELAY, because the API server and kube-proxy learn of the endpoint's removal only after a while
(answering with `Connection: close` there made every request pay a new TLS handshake: 5x less throughput).
Then no accepted connection is reset: the listener stops being watched, the connections the kernel has already
accepted into its backlog are taken and served (closing the listener with them in it would reset them), and only
then is it closed; from then on every answer carries `Connection: close`, so each connection closes after its
in-flight or next request, and connections still idle after a moment are closed by uvicorn. In-flight requests get
ADMISSION_GRACE, and the process exits 0. A second SIGTERM, or SIGINT, stops at once as uvicorn does.

`CoalescingHttpToolsProtocol` is hand-written glue: uvicorn writes an answer's status line and headers, then its
body, as two transport writes, and over TLS each is a record and a system call; measured, joining them is about a
tenth of a decision's CPU (issue 22).
"""

from __future__ import annotations

import asyncio
import errno
import logging
import signal
import socket
import ssl
import time
from types import FrameType
from typing import Any

import uvicorn
from uvicorn.supervisors import multiprocess

from admission.webhook.reload import LIFECYCLE, ssl_context_factory

__all__ = ["CoalescingHttpToolsProtocol", "DrainingServer", "config_for", "run_server"]

log = logging.getLogger("admission.webhook")
_OTHER_WORKERS = 0.3  # seconds for the other workers to close the shared listener too
_SETTLE = 1.0  # at most this many seconds for kept-alive connections to send their next request before uvicorn
# closes the idle ones (a busy client sends within milliseconds, gets `Connection: close` and goes elsewhere)


class CoalescedWrites:
    """A transport whose writes of one event-loop turn go out as one write (at the end of the turn, or on close)."""

    __slots__ = ("_transport", "_loop", "_pending")

    def __init__(self, transport: Any, loop: asyncio.AbstractEventLoop) -> None:  # noqa: ANN401
        self._transport = transport
        self._loop = loop
        self._pending: list[bytes] = []

    def write(self, data: bytes) -> None:
        if not self._pending:
            self._loop.call_soon(self.flush)
        self._pending.append(data)

    def writelines(self, lines: Any) -> None:  # noqa: ANN401
        for data in lines:
            self.write(data)

    def flush(self) -> None:
        pending, self._pending = self._pending, []
        if pending and not self._transport.is_closing():
            self._transport.write(pending[0] if len(pending) == 1 else b"".join(pending))

    def get_write_buffer_size(self) -> int:
        return self._transport.get_write_buffer_size() + sum(len(data) for data in self._pending)

    def write_eof(self) -> None:
        self.flush()
        self._transport.write_eof()

    def close(self) -> None:
        self.flush()
        self._transport.close()

    def abort(self) -> None:
        self._pending = []
        self._transport.abort()

    def __getattr__(self, name: str) -> Any:  # noqa: ANN401 - everything else is the transport's own
        return getattr(self._transport, name)


try:
    from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol
except ImportError:  # pragma: no cover - httptools comes with uvicorn[standard], the server extra
    HttpToolsProtocol = None  # type: ignore[assignment,misc]

if HttpToolsProtocol is not None:
    class CoalescingHttpToolsProtocol(HttpToolsProtocol):  # type: ignore[misc,valid-type]
        """uvicorn's httptools protocol, writing through CoalescedWrites."""

        def connection_made(self, transport: Any) -> None:  # type: ignore[override]  # noqa: ANN401
            super().connection_made(CoalescedWrites(transport, self.loop))
else:  # pragma: no cover
    CoalescingHttpToolsProtocol = None  # type: ignore[assignment,misc]


class DrainingServer(uvicorn.Server):
    def __init__(self, config: uvicorn.Config, *, drain_delay: float) -> None:
        super().__init__(config)
        self.drain_delay = drain_delay
        self._stop_at: float | None = None

    def handle_exit(self, sig: int, frame: FrameType | None) -> None:
        if sig == signal.SIGTERM and self._stop_at is None and not self.should_exit:
            # Not recorded in _captured_signals: uvicorn would re-raise it after shutdown, and exit by signal.
            LIFECYCLE.draining = True
            self._stop_at = time.monotonic() + self.drain_delay
            log.info("SIGTERM: readiness is false; serving new connections for %.1f s more, then in-flight requests "
                     "get up to %.1f s", self.drain_delay, self.config.timeout_graceful_shutdown or 0.0)
            return
        if sig == signal.SIGTERM:
            self.should_exit = True
            return
        super().handle_exit(sig, frame)

    async def shutdown(self, sockets: list[Any] | None = None) -> None:
        """After the drain delay: answers close their connection, the backlog is served, then uvicorn's own
        shutdown (idle connections closed, in-flight requests given the grace period)."""
        if self._stop_at is not None:
            # The listener first, then `Connection: close`: clients told to reconnect while the listener is still
            # open would be mid-handshake when it closes, and those half-open connections are reset.
            await self._take_backlog()
            if self.config.workers > 1:
                # The other workers close their copies of the shared listener within a tick of ours (uvicorn checks
                # every 0.1 s); until they have, a client sent elsewhere by `Connection: close` would reconnect here
                await asyncio.sleep(_OTHER_WORKERS)
            LIFECYCLE.closing = True
            for sock in sockets or []:
                sock.close()
            settle = min(_SETTLE, self.config.timeout_graceful_shutdown or _SETTLE)
            until = time.monotonic() + settle
            while self.server_state.connections and time.monotonic() < until:
                await asyncio.sleep(0.02)
        await super().shutdown(sockets=sockets)

    async def _take_backlog(self) -> None:
        """Stop watching each listening socket, accept what the kernel already accepted for us, serve it as
        asyncio would have, and close the listener. asyncio's Server keeps the protocol factory and TLS context
        of create_server privately; there is no public way to hand it an accepted socket of its own."""
        loop = asyncio.get_running_loop()
        taken: list[Any] = []
        for server in getattr(self, "servers", []):
            factory = getattr(server, "_protocol_factory", None)
            for sock in list(getattr(server, "_sockets", None) or ()):
                loop.remove_reader(sock.fileno())
                while factory is not None:
                    try:
                        conn, _ = sock.accept()
                    except (BlockingIOError, InterruptedError):
                        break
                    except OSError:
                        break
                    conn.setblocking(False)
                    taken.append(loop.create_task(loop.connect_accepted_socket(
                        factory, conn, ssl=getattr(server, "_ssl_context", None),
                        ssl_handshake_timeout=getattr(server, "_ssl_handshake_timeout", None) if
                        getattr(server, "_ssl_context", None) else None)))
            server.close()
        if taken:
            log.info("shutdown: serving %d connections taken from the listen backlog", len(taken))
            await asyncio.gather(*taken, return_exceptions=True)

    async def on_tick(self, counter: int) -> bool:
        if self._stop_at is not None and time.monotonic() >= self._stop_at:
            self.should_exit = True
        return await super().on_tick(counter)


class _Process(multiprocess.Process):
    """A worker of `--workers N` that drains like the single-process server."""


    @property
    def server(self) -> uvicorn.Server:  # type: ignore[override]
        if self._server is None:
            self._server = DrainingServer(self.config, drain_delay=self.config.admission_drain_delay)  # type: ignore[attr-defined]
        return self._server


class _Multiprocess(multiprocess.Multiprocess):
    def init_processes(self) -> None:
        for _ in range(self.processes_num):
            process = _Process(self.config, self.sockets)
            process.start()
            self.processes.append(process)

    def terminate_all(self) -> None:
        """The workers hold copies of the listening socket of their own and keep accepting through the drain delay;
        the supervisor's copy would keep the socket listening after the last worker closed its own, and the
        connections the kernel queued there then were reset at exit (16 with 16 clients). So it is closed first."""
        for sock in self.sockets:
            sock.close()
        super().terminate_all()

    def restart_all(self) -> None:  # pragma: no cover - as uvicorn's, with our Process
        for idx, process in enumerate(self.processes):
            process.terminate()
            process.join()
            new_process = _Process(self.config, self.sockets)
            new_process.start()
            self.processes[idx] = new_process


def config_for(app: Any, settings: Any, *, factory: bool = False) -> uvicorn.Config:
    tls = bool(settings.tls_cert)
    config = uvicorn.Config(
        app, host=settings.host, port=settings.port, factory=factory, workers=settings.workers,
        ssl_certfile=settings.tls_cert if tls else None, ssl_keyfile=settings.tls_key if tls else None,
        ssl_context_factory=ssl_context_factory if tls else None,
        log_level=settings.log_level, access_log=False, lifespan="on", server_header=False,
        timeout_graceful_shutdown=settings.grace, timeout_keep_alive=30,
        http=CoalescingHttpToolsProtocol or "auto",
    )
    config.admission_drain_delay = settings.drain_delay  # type: ignore[attr-defined]
    return config


class StartError(Exception):
    """Why the server cannot start, in one line naming the file or the port."""


def check_tls(certfile: str, keyfile: str) -> None:
    """The pair uvicorn will load, loaded first here, so that a bad one is a line naming the file (StartError)."""
    for path in (certfile, keyfile):
        try:
            with open(path, "rb"):
                pass
        except OSError as exc:
            raise StartError(f"{path}: cannot be read: {exc.strerror}") from None
    try:
        ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER).load_verify_locations(cafile=certfile)
    except (ssl.SSLError, ValueError) as exc:
        raise StartError(f"{certfile}: not a PEM certificate ({_ssl_reason(exc)})") from None
    try:
        ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER).load_cert_chain(certfile, keyfile)
    except ssl.SSLError as exc:
        if "KEY_VALUES_MISMATCH" in str(exc) or "values mismatch" in str(exc):
            raise StartError(f"{keyfile}: not the private key of the certificate {certfile}") from None
        raise StartError(f"{keyfile}: not a PEM private key (for the certificate {certfile})") from None


def _ssl_reason(exc: Exception) -> str:
    return getattr(exc, "reason", None) or str(exc)


def bind(host: str, port: int, *, what: str) -> socket.socket:
    """The listening socket as uvicorn binds it (SO_REUSEADDR, inheritable for workers), or StartError."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host, port))
    except OSError as exc:
        sock.close()
        why = "already in use" if exc.errno == errno.EADDRINUSE else exc.strerror
        raise StartError(f"{what} {port} on {host}: {why}") from None
    sock.set_inheritable(True)
    return sock


def run_server(config: uvicorn.Config, *, drain_delay: float, sockets: list[socket.socket] | None = None) -> bool:
    """Serve until shut down; False when the server never started."""
    if config.workers > 1:
        _Multiprocess(config, sockets=sockets or [config.bind_socket()]).run()
        return True
    server = DrainingServer(config, drain_delay=drain_delay)
    server.run(sockets=sockets)
    return server.started
