"""Registry credentials from a Docker config file (`auths`, `credsStore`, `credHelpers`), as the docker CLI reads them.

Hand-written because the only readers on PyPI come with docker-py's sync client and its dependencies; the
file format and the credential-helper protocol are small and stable.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import hashlib
import json
import os
import shutil
import signal
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from admission.errors import InputError, RegistryError
from admission.reference import registry_identity

__all__ = ["DOCKER_HUB_SERVER", "Credential", "Credentials", "server_key"]

#: The key docker writes for Docker Hub, and the server URL it gives credential helpers for it.
DOCKER_HUB_SERVER = "https://index.docker.io/v1/"
_HELPER_TIMEOUT = 10.0
_HELPER_CACHE_SECONDS = 300.0  # helpers such as ecr-login are slow and their answers last hours
_HELPER_OUTPUT_CAP = 1 << 20
_TOKEN_USERNAME = "<token>"  # what helpers return as Username when Secret is an identity token


# A config key or server URL as a registry identity ("https://index.docker.io/v1/" -> "docker.io").
server_key = registry_identity


@dataclass(frozen=True, slots=True)
class Credential:
    """What a registry (or its token server) gets. `identity_token` is an OAuth2 refresh token (`identitytoken`)."""

    username: str = ""
    password: str = field(default="", repr=False)
    identity_token: str = field(default="", repr=False)

    def fingerprint(self) -> str:
        """A short, non-reversible identity for cache keys (answers fetched with different credentials differ)."""
        material = f"{self.username}\0{self.password}\0{self.identity_token}".encode()
        return hashlib.sha256(material).hexdigest()[:16]


class Credentials:
    """Looks up the credential for one registry. Order as docker: credHelpers, then credsStore, then auths.

    A helper that says "not found" falls back to the `auths` entry; a helper that is missing or fails is an
    error (RegistryError reason "auth"), because silently pulling anonymously would hide the misconfiguration.
    """

    def __init__(self, auths: Mapping[str, Credential] | None = None, *, helpers: Mapping[str, str] | None = None,
                 store: str | None = None, source: str = "", helper_timeout: float = _HELPER_TIMEOUT) -> None:
        self._auths = {server_key(k): v for k, v in (auths or {}).items()}
        self._helpers = {server_key(k): v for k, v in (helpers or {}).items()}
        self._store = store or None
        self.source = source
        self._helper_timeout = helper_timeout
        self._helper_cache: dict[str, tuple[float, Credential | None]] = {}
        self._locks: dict[str, asyncio.Lock] = {}

    # --- construction -----------------------------------------------------------------------------------

    @classmethod
    def from_config(cls, data: Any, *, source: str = "") -> Credentials:
        """From a parsed config.json (or a Kubernetes .dockerconfigjson); InputError names what is wrong."""
        if not isinstance(data, dict):
            raise InputError("a Docker config must be a JSON object", file=source or None)
        auths: dict[str, Credential] = {}
        raw_auths = data.get("auths") or {}
        if not isinstance(raw_auths, dict):
            raise InputError("`auths` must be an object", file=source or None, path="auths")
        for server, entry in raw_auths.items():
            credential = _entry(entry, file=source, path=f"auths.{server}")
            if credential is not None:
                auths[server] = credential
        helpers = data.get("credHelpers") or {}
        if not isinstance(helpers, dict) or not all(isinstance(v, str) for v in helpers.values()):
            raise InputError("`credHelpers` must map registries to helper names", file=source or None, path="credHelpers")
        store = data.get("credsStore")
        if store is not None and not isinstance(store, str):
            raise InputError("`credsStore` must be a helper name", file=source or None, path="credsStore")
        return cls(auths, helpers=helpers, store=store, source=source)

    @classmethod
    def load(cls, path: str | os.PathLike[str] | None = None, *, environ: Mapping[str, str] | None = None) -> Credentials:
        """An explicit file (--registry-config) must exist; otherwise $DOCKER_CONFIG/config.json or
        ~/.docker/config.json is read when present, and no file means no credentials."""
        env = os.environ if environ is None else environ
        if path is not None:
            file = Path(path)
            if not file.is_file():
                raise InputError("registry config file not found", file=str(path))
        else:
            folder = env.get("DOCKER_CONFIG")
            file = Path(folder) / "config.json" if folder else Path(env.get("HOME", "~")).expanduser() / ".docker" / "config.json"
            if not file.is_file():
                return cls(source=str(file))
        try:
            data = json.loads(file.read_text(encoding="utf-8"))
        except (OSError, UnicodeDecodeError) as exc:
            raise InputError(f"cannot read registry config: {exc}", file=str(file)) from None
        except json.JSONDecodeError as exc:
            raise InputError(f"registry config is not valid JSON: {exc.msg}", file=str(file), line=exc.lineno) from None
        return cls.from_config(data, source=str(file))

    # --- lookup -------------------------------------------------------------------------------------------

    def helper_for(self, registry: str) -> str | None:
        return self._helpers.get(server_key(registry), self._store)

    async def get(self, registry: str) -> Credential | None:
        """The credential for `registry` (host[:port], any docker.io alias), or None for anonymous access."""
        key = server_key(registry)
        helper = self.helper_for(key)
        if helper is not None:
            found = await self._from_helper(helper, key)
            if found is not None:
                return found
        return self._auths.get(key)

    async def _from_helper(self, helper: str, key: str) -> Credential | None:
        lock = self._locks.setdefault(key, asyncio.Lock())
        async with lock:  # one helper process per registry at a time; the rest read the cache
            cached = self._helper_cache.get(key)
            if cached is not None and cached[0] > time.monotonic():
                return cached[1]
            credential = await _run_helper(helper, DOCKER_HUB_SERVER if key == "docker.io" else key,
                                           timeout=self._helper_timeout)
            self._helper_cache[key] = (time.monotonic() + _HELPER_CACHE_SECONDS, credential)
            return credential


def _kill_group(pid: int) -> None:
    try:
        os.killpg(pid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        pass  # already gone


def _entry(entry: Any, *, file: str, path: str) -> Credential | None:
    if not isinstance(entry, dict):
        raise InputError("an `auths` entry must be an object", file=file or None, path=path)
    username = entry.get("username") or ""
    password = entry.get("password") or ""
    identity = entry.get("identitytoken") or ""
    auth = entry.get("auth") or ""
    if not all(isinstance(v, str) for v in (username, password, identity, auth)):
        raise InputError("`auth`, `username`, `password` and `identitytoken` must be strings", file=file or None, path=path)
    if auth:
        try:
            decoded = base64.b64decode(auth, validate=True).decode("utf-8")
        except (binascii.Error, UnicodeDecodeError):
            raise InputError("`auth` is not base64 of user:password", file=file or None, path=f"{path}.auth") from None
        if ":" not in decoded:
            raise InputError("`auth` must decode to user:password", file=file or None, path=f"{path}.auth")
        username, password = decoded.split(":", 1)
    if not (username or password or identity):
        return None  # docker writes `{}` entries when a credsStore holds the secret
    return Credential(username=username, password=password, identity_token=identity)


async def _run_helper(helper: str, server: str, *, timeout: float) -> Credential | None:
    """`docker-credential-<helper> get`: the server URL on stdin, {"Username", "Secret"} JSON on stdout."""
    program = f"docker-credential-{helper}"
    executable = shutil.which(program)
    if executable is None:
        raise RegistryError(f"credential helper {program} (configured for {server}) is not on PATH", reason="auth")
    try:
        # Its own process group, so that ending it also ends what it started (helpers are often shell scripts).
        process = await asyncio.create_subprocess_exec(
            executable, "get", stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE, process_group=0)
    except OSError as exc:
        raise RegistryError(f"credential helper {program} could not start: {exc}", reason="auth") from None
    try:
        stdout, stderr = await asyncio.wait_for(process.communicate(server.encode()), timeout=timeout)
    except TimeoutError:
        raise RegistryError(f"credential helper {program} did not answer within {timeout:.0f} s", reason="auth") from None
    finally:
        # Also on cancellation (the caller's deadline): a helper nobody waits for must not outlive the request.
        if process.returncode is None:
            _kill_group(process.pid)
            await process.wait()  # prompt after SIGKILL; reaps it so no zombie is left
    out = stdout[:_HELPER_OUTPUT_CAP].decode("utf-8", "replace")
    if process.returncode != 0:
        said = (out.strip() or stderr.decode("utf-8", "replace").strip()).splitlines()
        first = said[0][:200] if said else f"exit status {process.returncode}"
        if "credentials not found" in first.lower():
            return None
        raise RegistryError(f"credential helper {program} failed for {server}: {first}", reason="auth")
    try:
        answer = json.loads(out)
    except json.JSONDecodeError:
        raise RegistryError(f"credential helper {program} did not print JSON", reason="auth") from None
    if not isinstance(answer, dict) or not isinstance(answer.get("Secret", ""), str) \
            or not isinstance(answer.get("Username", ""), str):
        raise RegistryError(f"credential helper {program} printed no Username/Secret", reason="auth")
    username, secret = answer.get("Username", ""), answer.get("Secret", "")
    if not secret:
        return None
    if username == _TOKEN_USERNAME:
        return Credential(identity_token=secret)
    return Credential(username=username, password=secret)
