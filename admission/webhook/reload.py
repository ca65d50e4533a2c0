"""Hot reload of the policy file and the TLS certificate, and the process's shutdown state.

Both are mounted from a ConfigMap or Secret, whose updates swap a `..data` symlink in the mounted *directory*
(and `subPath` mounts never update at all). So each file is re-read through its path every `watch_interval`
and compared with what was last loaded, which follows the symlink swap whatever the kernel's inotify would
report for it. A policy is a few KiB and a certificate less: reading both once a second costs nothing.

- A valid policy change is applied at once: one reference swap, so a request sees the old policy or the new
  one, never a mix. An invalid one keeps the old policy, is logged (once per content) and counted.
- A changed certificate and key are loaded into the live SSLContext: new TLS handshakes get them, open
  connections keep theirs. A pair that does not load (the key of another cert) keeps the old one.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import os
import ssl
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from admission.errors import PolicyError
from admission.policy.config import Policy, load_policy

__all__ = ["LIFECYCLE", "PolicyHolder", "register_tls", "ssl_context_factory", "watch_certificates"]

log = logging.getLogger("admission.webhook")


@dataclass
class Lifecycle:
    """Per process: set by the SIGTERM handler (serve.py); /readyz turns false and answers close connections."""

    draining: bool = False
    closing: bool = False  # after the drain delay: every answer closes its connection (server.py)


LIFECYCLE = Lifecycle()


def _digest(path: str) -> str | None:
    try:
        with open(path, "rb") as f:
            return hashlib.sha256(f.read(16 << 20)).hexdigest()
    except OSError:
        return None


def _policy_digest(path: str, key_files: tuple[str, ...]) -> str | None:
    """The policy file's digest, folded with those of the key files it names (a rotated key mounted from a ConfigMap
    or Secret reloads the policy like an edit of the file itself); None when the policy file cannot be read."""
    digest = _digest(path)
    if digest is None or not key_files:
        return digest
    keys = "\0".join(f"{name}={_digest(name)}" for name in key_files)
    return hashlib.sha256(f"{digest}\0{keys}".encode()).hexdigest()


class PolicyHolder:
    """The current policy. `policy` is replaced as a whole; readers take one reference per request."""

    def __init__(self, path: str | None, *, metrics: Any, initial: Policy) -> None:
        self.path = path
        self.metrics = metrics
        self.policy: Policy | None = initial
        self._loaded = _policy_digest(path, initial.key_files) if path else None
        self._rejected: str | None = None
        self.generation = 0
        self.loaded_at = time.time()  # wall clock of the last good load, for admission_policy_last_reload_*

    @property
    def stale(self) -> bool:
        """The newest file was rejected (or cannot be read): what is served is older than what is mounted."""
        return self._rejected is not None

    @property
    def digest(self) -> str:
        """The served policy file's sha256 (first 16 hex digits), or "default" for the built-in policy alone."""
        return self._loaded[:16] if self._loaded else "default"

    def check(self, on_change: Callable[[Policy], None] | None = None) -> bool | None:
        """Reload when the file's content changed: True applied, False rejected (old kept), None unchanged."""
        if not self.path:
            return None
        digest = _policy_digest(self.path, self.policy.key_files if self.policy is not None else ())
        if digest is None:
            if self._rejected != "missing":
                self._rejected = "missing"
                self.metrics.policy_reloads.labels("failure").inc()
                log.error("policy reload: %s cannot be read; keeping the policy loaded before", self.path)
            return False
        if digest == self._loaded or digest == self._rejected:
            return None
        try:
            new = load_policy(self.path)
        except PolicyError as exc:
            self._rejected = digest
            self.metrics.policy_reloads.labels("failure").inc()
            log.error("policy reload rejected, keeping the policy loaded before: %s", exc)
            return False
        if on_change is not None:
            on_change(new)  # the images gates first, then the rules: both are in place before the next request
        self.policy = new
        # what was loaded, with the key files the new policy names (the digest above folded in the old one's)
        self._loaded, self._rejected = _policy_digest(self.path, new.key_files), None
        self.loaded_at = time.time()
        self.generation += 1
        self.metrics.policy_reloads.labels("success").inc()
        log.info("policy reloaded from %s", self.path)
        return True

    async def watch(self, interval: float, *, on_change: Callable[[Policy], None] | None = None) -> None:
        while True:
            await asyncio.sleep(interval)
            try:
                self.check(on_change)
                # workers > 1 with a metrics port: the parent serves the workers' files, so their gauges are kept
                # current here rather than at scrape time
                self.metrics.refresh()
            except Exception:  # noqa: BLE001 - the watcher must outlive any one bad reload
                log.exception("policy reload failed")


# --- TLS ---------------------------------------------------------------------------------------------------


@dataclass
class _TLS:
    context: ssl.SSLContext
    certfile: str
    keyfile: str | None
    loaded: str | None = None
    rejected: str | None = None
    password: Any = field(default=None, repr=False)


_CONTEXTS: list[_TLS] = []


def _pair_digest(certfile: str, keyfile: str | None) -> str | None:
    cert = _digest(certfile)
    key = _digest(keyfile) if keyfile else ""
    return None if cert is None or key is None else f"{cert}:{key}"


def register_tls(context: ssl.SSLContext, certfile: str, keyfile: str | None, *, loaded: str | None = None) -> None:
    """Watch `certfile`/`keyfile` for this context (serve.py registers the context uvicorn serves with). `loaded`:
    the digest of the pair as it was before the context read it (default: as it is now)."""
    digest = loaded if loaded is not None else _pair_digest(certfile, keyfile)
    _CONTEXTS.append(_TLS(context, certfile, keyfile, loaded=digest))


_START_ATTEMPTS = 20


def ssl_context_factory(config: Any, default_factory: Callable[[], ssl.SSLContext]) -> ssl.SSLContext:
    """uvicorn's `ssl_context_factory`: its own context (ALPN and all), registered for hot reload in this process.

    uvicorn reads the certificate and the key by two paths, so a managed pair (webhook/certs.py swaps a `current`
    symlink) replaced in between is a mismatch, or a file already gone: the load is tried again. A pair the
    operator got wrong was refused before (serve.py's check_tls). The digest is taken before the load, so a pair
    swapped during it differs from what was loaded and the watcher loads it."""
    for attempt in range(_START_ATTEMPTS):
        before = _pair_digest(config.ssl_certfile, config.ssl_keyfile)
        try:
            context = default_factory()
        except (ssl.SSLError, OSError):
            if attempt == _START_ATTEMPTS - 1:
                raise
            time.sleep(0.05)
            continue
        register_tls(context, config.ssl_certfile, config.ssl_keyfile, loaded=before or "")
        return context
    raise AssertionError("unreachable")


def _load_checked(tls: _TLS) -> None:
    """Load the pair into the live context only after a scratch context accepted it: a failed load_cert_chain
    leaves a context with the new certificate and the old key, which fails every handshake. Both files are
    copied first, so the pair checked is the pair loaded even if the mount changes in between."""
    with open(tls.certfile, "rb") as f:
        cert = f.read(16 << 20)
    key = b""
    if tls.keyfile:
        with open(tls.keyfile, "rb") as f:
            key = f.read(16 << 20)
    with tempfile.TemporaryDirectory(prefix="admission-tls-") as folder:
        cert_path = os.path.join(folder, "tls.crt")
        key_path = os.path.join(folder, "tls.key") if tls.keyfile else None
        for path, data in ((cert_path, cert), (key_path, key)):
            if path:
                fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
                with os.fdopen(fd, "wb") as out:
                    out.write(data)
        ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER).load_cert_chain(cert_path, key_path)
        tls.context.load_cert_chain(cert_path, key_path)


def check_certificates(metrics: Any = None) -> list[bool]:
    """Reload every registered certificate whose files changed; one result per reload attempted."""
    results = []
    for tls in _CONTEXTS:
        digest = _pair_digest(tls.certfile, tls.keyfile)
        if digest is None or digest == tls.loaded or digest == tls.rejected:
            continue
        try:
            _load_checked(tls)
        except (OSError, ssl.SSLError, ValueError) as exc:
            tls.rejected = digest
            results.append(False)
            if metrics is not None:
                metrics.cert_reloads.labels("failure").inc()
            log.error("TLS certificate reload rejected, keeping the one loaded before: %s", exc)
            continue
        tls.loaded, tls.rejected = digest, None
        results.append(True)
        if metrics is not None:
            metrics.cert_reloads.labels("success").inc()
        log.info("TLS certificate reloaded from %s", tls.certfile)
    return results


async def watch_certificates(interval: float, *, metrics: Any = None) -> None:
    while True:
        await asyncio.sleep(interval)
        try:
            check_certificates(metrics)
        except Exception:  # noqa: BLE001
            log.exception("certificate reload failed")
