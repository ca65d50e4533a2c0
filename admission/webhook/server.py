"""uvicorn glue for `admission-cli serve`: TLS with hot reload, and a SIGTERM that drains instead of dropping.

On SIGTERM (what the kubelet sends when a pod is deleted): /readyz turns false at once, so the endpoint leaves the
Service; the listening socket stays open and new connections are still served for ADMISSION_DRAIN_DELAY, because
the API server and kube-proxy learn of the endpoint's removal only after a while; answers in that window carry
`Connection: close`, so clients reconnect to another replica instead of reusing this one. Then uvicorn stops
accepting, lets in-flight requests finish within ADMISSION_GRACE, and the process exits 0. A second SIGTERM, or
SIGINT, stops at once as uvicorn does.
"""

from __future__ import annotations

import asyncio
import logging
import signal
import time
from types import FrameType
from typing import Any

import uvicorn
from uvicorn.supervisors import multiprocess

from admission.webhook.reload import LIFECYCLE, ssl_context_factory

__all__ = ["DrainingServer", "config_for", "run_server"]

log = logging.getLogger("admission.webhook")
_SETTLE = 0.5  # seconds between closing the listening socket and closing idle connections


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
        """Stop accepting first; then give connections accepted just before that a moment to send their request,
        which they do at once, before uvicorn closes the connections that have no request in progress (a client
        whose fresh connection is closed before its request arrives has lost that request)."""
        if self._stop_at is not None:
            for server in getattr(self, "servers", []):
                server.close()
            for sock in sockets or []:
                sock.close()
            await asyncio.sleep(min(_SETTLE, self.config.timeout_graceful_shutdown or _SETTLE))
        await super().shutdown(sockets=sockets)

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
    )
    config.admission_drain_delay = settings.drain_delay  # type: ignore[attr-defined]
    return config


def run_server(config: uvicorn.Config, *, drain_delay: float) -> bool:
    """Serve until shut down; False when the server never started (bad TLS files, port in use)."""
    if config.workers > 1:
        sock = config.bind_socket()
        _Multiprocess(config, sockets=[sock]).run()
        return True
    server = DrainingServer(config, drain_delay=drain_delay)
    server.run()
    return server.started
