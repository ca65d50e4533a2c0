"""Registry authentication: the /v2/ challenge, Basic, and Bearer tokens from the realm a registry names.

A request to the registry API goes through `Authenticator.request`: it pings once per scheme://host (the challenge is
kept: what a server asks for, not what we may do), adds Basic credentials or a token, and starts over once from the
challenge a 401 carries (a revoked token, or an open /v2/ in front of a closed repository). Tokens are kept until
their `expires_in`, keyed by realm, service, scope, credential and the gates' fingerprint, so a token obtained under
one policy's gates never serves another's. Hand-written for the reasons remote.py gives.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import json
import re
import time
import urllib.parse
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any, Literal

import httpx

from admission.errors import RegistryError
from admission.images.credentials import Credential, Credentials
from admission.images.registry.manifest import json_object
from admission.images.registry.transport import (
    ERROR_BODY_CAP,
    Answer,
    Endpoint,
    Kind,
    Transport,
    display,
    prune,
    same_origin,
    url_key,
)

__all__ = ["Authenticator", "parse_challenge", "status_error"]

_TOKEN_CAP = 1 << 20
_DEFAULT_TOKEN_SECONDS = 60  # the distribution token spec's default for a missing expires_in
_PARAM = re.compile(r'\s*([A-Za-z0-9_.-]+)\s*=\s*("(?:[^"\\]|\\.)*"|[^,\s]*)\s*(?:,|$)')
_TOKEN = re.compile(r"[\x21-\x7e]+")  # visible ASCII: what can follow "Bearer " in a header (RFC 6750 is stricter)


@dataclass(frozen=True, slots=True)
class Challenge:
    scheme: Literal["none", "basic", "bearer"]
    realm: str = ""
    service: str = ""


class Authenticator:
    """The auth state of one registry client: challenges per scheme://host, tokens, and who waits for which."""

    def __init__(self, transport: Transport, credentials: Credentials) -> None:
        self._transport = transport
        self._credentials = credentials
        self._challenges: dict[str, Challenge] = {}
        self._tokens: dict[tuple[str, str, str, str, str], tuple[float, str]] = {}  # realm first
        self._locks: dict[object, list[Any]] = {}  # key -> [lock, holders and waiters]

    async def request(self, endpoint: Endpoint, repo: str, method: str, path: str, *, kind: Kind,
                      accept: str | None, cap: int, deadline: float, subject: str,
                      cap_words: str | None = None) -> Answer:
        """A request to the registry API with whatever auth it asks for; one re-auth on a 401."""
        headers = {"Accept": accept} if accept else {}
        for attempt in range(2):
            authorization = await self._authorization(endpoint, repo, deadline)
            answer = await self._transport.follow(method, endpoint.url(path), kind=kind, headers=headers,
                                                  authorization=authorization, cap=cap, deadline=deadline,
                                                  what=endpoint.what, listed=endpoint.listed, gates=endpoint.gates,
                                                  origin=endpoint, cap_words=cap_words)
            if answer.status == 401 and not same_origin(answer.url, endpoint.url("/")):
                raise foreign_challenge(answer, endpoint, subject)
            if answer.status != 401 or attempt == 1:
                break
            # A cached token may have been revoked, or /v2/ was open while this repository is not: start over
            # from the challenge this 401 carries.
            challenge = challenge_from(answer, endpoint)
            if challenge is None:
                break
            self._challenges[_endpoint_id(endpoint)] = challenge
            self._tokens = {k: v for k, v in self._tokens.items() if k[0] != challenge.realm}
        if 200 <= answer.status < 300:
            return answer
        raise status_error(answer, endpoint.what, subject)

    async def _authorization(self, endpoint: Endpoint, repo: str, deadline: float) -> str | None:
        challenge = await self._ping(endpoint, deadline)
        if challenge.scheme == "none":
            return None
        credential = await self._credentials.get(endpoint.key)
        if challenge.scheme == "basic":
            if credential is None or not (credential.username or credential.password):
                raise RegistryError(f"{endpoint.what} asks for a user name and password (Basic auth) and no "
                                    f"credentials are configured for {endpoint.key}", reason="auth")
            raw = f"{credential.username}:{credential.password}".encode()
            return "Basic " + base64.b64encode(raw).decode()
        return "Bearer " + await self._token(endpoint, challenge, f"repository:{repo}:pull", credential, deadline)

    async def _ping(self, endpoint: Endpoint, deadline: float) -> Challenge:
        ident = _endpoint_id(endpoint)
        cached = self._challenges.get(ident)
        if cached is not None:
            return cached
        async with self._exclusive(("ping", ident)):  # concurrent first fetches share one ping
            cached = self._challenges.get(ident)
            if cached is not None:
                return cached
            answer = await self._transport.follow("GET", endpoint.url("/v2/"), kind="ping", headers={},
                                                  authorization=None, cap=ERROR_BODY_CAP, deadline=deadline,
                                                  what=endpoint.what, listed=endpoint.listed, gates=endpoint.gates,
                                                  origin=endpoint, truncate=True)
            challenge: Challenge | None
            if 200 <= answer.status < 300:
                challenge = Challenge("none")
            elif answer.status == 401 and not same_origin(answer.url, endpoint.url("/")):
                raise foreign_challenge(answer, endpoint, "the registry API check (GET /v2/)")
            elif answer.status == 401:
                challenge = challenge_from(answer, endpoint)
            else:
                raise status_error(answer, endpoint.what, "the registry API check (GET /v2/)")
            if challenge is None:
                raise RegistryError(f"{endpoint.what} answered 401 without a WWW-Authenticate challenge",
                                    reason="auth")
            self._challenges[ident] = challenge
            return challenge

    async def _token(self, endpoint: Endpoint, challenge: Challenge, scope: str, credential: Credential | None,
                     deadline: float) -> str:
        gates = endpoint.gates
        # The gates are in the key: whether the realm may be asked is theirs to say, and a token in hand skips asking.
        key = (challenge.realm, challenge.service, scope, credential.fingerprint() if credential else "",
               gates.fingerprint)
        cached = self._tokens.get(key)
        if cached is not None and cached[0] > time.monotonic():
            return cached[1]
        async with self._exclusive(("token", key)):
            cached = self._tokens.get(key)
            if cached is not None and cached[0] > time.monotonic():
                return cached[1]
            realm = httpx.URL(challenge.realm)
            realm_key = url_key(realm)
            what = f"token realm {challenge.realm} (named by {endpoint.what})"
            if realm.scheme == "http" and endpoint.scheme != "http" and realm_key not in gates.insecure:
                # An HTTPS registry's realm is plain HTTP only when images.insecure_registries lists it, with or
                # without credentials: an anonymous token from a realm anyone on the path can answer decides
                # what we are served. (A plain-HTTP registry was already accepted as plain HTTP.)
                carries = f"would receive the credentials for {endpoint.key}" if credential is not None \
                    else f"would hand out the tokens for {endpoint.key}"
                raise RegistryError(f"{what} refused: it is plain HTTP and {carries}; list {realm_key} in "
                                    "images.insecure_registries to allow it", reason="blocked")
            params = {"scope": scope, **({"service": challenge.service} if challenge.service else {})}
            content: bytes | None = None
            authorization = None
            method = "GET"
            headers: dict[str, str] = {}
            if credential is not None and credential.identity_token:
                # Docker's OAuth2 refresh-token grant: what `identitytoken` in a config means.
                method = "POST"
                form = {**params, "grant_type": "refresh_token", "refresh_token": credential.identity_token,
                        "client_id": "admission"}
                content = urllib.parse.urlencode(form).encode()
                headers["Content-Type"] = "application/x-www-form-urlencoded"
                url = realm
            else:
                url = realm.copy_merge_params(params)
                if credential is not None:
                    raw = f"{credential.username}:{credential.password}".encode()
                    authorization = "Basic " + base64.b64encode(raw).decode()
            answer = await self._transport.follow(method, url, kind="token", headers=headers,
                                                  authorization=authorization, cap=_TOKEN_CAP, deadline=deadline,
                                                  what=what, listed=realm_key in gates.allowed, gates=gates,
                                                  origin=None, content=content)
            if answer.status in (401, 403):
                who = "the configured credentials" if credential else "anonymous access"
                raise RegistryError(f"{what} refused {who} for {scope} ({answer.status})", reason="auth")
            if not 200 <= answer.status < 300:
                raise status_error(answer, what, f"a token for {scope}")
            document = json_object(answer.body, what)
            token = document.get("token") or document.get("access_token")
            if not isinstance(token, str) or not token:
                raise RegistryError(f"{what} answered without a token", reason="auth")
            if not _TOKEN.fullmatch(token):
                # It goes into a header: CR/LF would inject headers, and httpx refuses non-ASCII with a crash.
                raise RegistryError(f"{what} answered an unusable token (not visible ASCII)", reason="auth")
            expires_in = document.get("expires_in")
            seconds = expires_in if isinstance(expires_in, int) and expires_in > 0 else _DEFAULT_TOKEN_SECONDS
            # Renew a little early so that a token does not expire between our check and the registry's.
            prune(self._tokens)
            self._tokens[key] = (time.monotonic() + seconds * 0.9, token)
            return token


    @contextlib.asynccontextmanager
    async def _exclusive(self, key: object) -> AsyncIterator[None]:
        """One holder per key; the entry goes when nobody waits, so keys from user input do not pile up."""
        entry = self._locks.get(key)
        if entry is None:
            entry = self._locks[key] = [asyncio.Lock(), 0]
        entry[1] += 1
        try:
            async with entry[0]:
                yield
        finally:
            entry[1] -= 1
            if entry[1] == 0:
                self._locks.pop(key, None)



def parse_challenge(header: str) -> tuple[str, dict[str, str]] | None:
    """`Bearer realm="...",service="..."` -> ("bearer", {...}); None when it cannot be read."""
    scheme, _, rest = header.strip().partition(" ")
    if not re.fullmatch(r"[A-Za-z][A-Za-z0-9!#$%&'*+.^_`|~-]*", scheme):
        return None
    params: dict[str, str] = {}
    position = 0
    rest = rest.strip()
    while position < len(rest):
        match = _PARAM.match(rest, position)
        if match is None or match.end() == position:
            return None
        value = match.group(2)
        if value.startswith('"'):
            value = re.sub(r"\\(.)", r"\1", value[1:-1])
        params[match.group(1).lower()] = value
        position = match.end()
    return scheme.lower(), params


def challenge_from(answer: Answer, endpoint: Endpoint) -> Challenge | None:
    headers = answer.headers.get_list("www-authenticate")
    if not headers:
        return None
    for header in headers:
        parsed = parse_challenge(header)
        if parsed is None:
            continue
        scheme, params = parsed
        if scheme == "bearer":
            realm = params.get("realm", "")
            try:
                url = httpx.URL(realm)
            except (httpx.InvalidURL, ValueError):
                url = None
            if url is None or url.scheme not in ("http", "https") or not url.host:
                continue
            return Challenge("bearer", realm=realm, service=params.get("service", ""))
        if scheme == "basic":
            return Challenge("basic")
    shown = "; ".join(headers)[:200]
    raise RegistryError(f"{endpoint.what} sent an unusable WWW-Authenticate challenge: {shown!r}", reason="auth")


def status_error(answer: Answer, what: str, subject: str) -> RegistryError:
    detail = _error_detail(answer.body)
    status = answer.status
    said = f" ({detail})" if detail else ""
    if status in (401, 403):
        return RegistryError(f"{what} refused access to {subject}: {status}{said}; it does not exist or needs "
                             "credentials", reason="auth")
    if status == 404:
        return RegistryError(f"{what} has no {subject}{said}", reason="not-found")
    if status == 429:
        return RegistryError(f"{what} is rate limiting us (429) for {subject}{said}", reason="error")
    return RegistryError(f"{what} answered {status} for {subject}{said}", reason="error")


def _error_detail(body: bytes) -> str:
    try:
        document = json.loads(body)
    except (ValueError, UnicodeDecodeError, RecursionError):  # RecursionError: "[[[[..." nests past the C stack
        return ""
    errors = document.get("errors") if isinstance(document, dict) else None
    if isinstance(errors, list) and errors and isinstance(errors[0], dict):
        code, message = errors[0].get("code"), errors[0].get("message")
        return ": ".join(str(p) for p in (code, message) if p)[:200]
    return ""


def foreign_challenge(answer: Answer, endpoint: Endpoint, subject: str) -> RegistryError:
    """A 401 from a host the registry redirected us to: its challenge is not the registry's, and following it
    would send the registry's credentials to that host's realm."""
    return RegistryError(f"{endpoint.what} redirected {subject} to {display(answer.url)}, which answered 401; "
                         "the registry's credentials are not sent to another host", reason="auth")


def _endpoint_id(endpoint: Endpoint) -> str:
    return f"{endpoint.scheme}://{endpoint.host}"

