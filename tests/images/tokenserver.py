"""A test-only Docker token server: it signs real ES256 JWTs that docker-registry's `auth.token` verifies.

docker/distribution 2.8 checks the token header's `x5c` chain against `rootcertbundle`, then the issuer,
the audience (the `service`), expiry and the `access` claim. So the signing key gets a self-signed X.509
certificate with no extended key usage (Go's verifier then accepts it for any purpose), the bundle holds
that certificate, and every token carries it as its one-element `x5c`.
"""

from __future__ import annotations

import base64
import datetime as dt
import json
import secrets
import time
import urllib.parse
from collections.abc import Mapping
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import jwt
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from tests.images.loopback import LoopbackServer

SERVICE = "test-registry"
ISSUER = "test-token-issuer"


@dataclass(frozen=True, slots=True)
class TokenRequest:
    """What one request to the token endpoint asked for (tests read these)."""

    method: str
    scope: str
    service: str
    authorization: str | None
    grant_type: str | None


@dataclass
class TokenServer(LoopbackServer):
    """Start with `start()`; `realm` is the URL to configure; `registry_auth()` is the registry's `auth:` block.

    `users` maps user -> password (HTTP Basic, or the `password` grant); `refresh_tokens` maps an identity
    token -> user (the `refresh_token` grant Docker uses for `identitytoken`). Anonymous callers get `pull`
    only when `anonymous_pull` is true and the repository is not under `private_prefix`; users get every
    action they ask for.
    """

    root: Path
    users: Mapping[str, str] = field(default_factory=dict)
    refresh_tokens: Mapping[str, str] = field(default_factory=dict)
    anonymous_pull: bool = True
    private_prefix: str = "private/"  # repositories anonymous callers never get
    expires_in: int = 300
    requests: list[TokenRequest] = field(default_factory=list)
    _server: ThreadingHTTPServer | None = None

    def __post_init__(self) -> None:
        self.root.mkdir(parents=True, exist_ok=True)
        self._key = ec.generate_private_key(ec.SECP256R1())
        name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "test token signer")])
        now = dt.datetime.now(dt.UTC)
        cert = (
            x509.CertificateBuilder()
            .subject_name(name)
            .issuer_name(name)
            .public_key(self._key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - dt.timedelta(days=1))
            .not_valid_after(now + dt.timedelta(days=30))
            .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
            .sign(self._key, hashes.SHA256())
        )
        self._x5c = [base64.b64encode(cert.public_bytes(serialization.Encoding.DER)).decode()]
        self.bundle = self.root / "token-bundle.pem"
        self.bundle.write_bytes(cert.public_bytes(serialization.Encoding.PEM))

    @property
    def realm(self) -> str:
        return f"http://{self.host}/token"

    def registry_auth(self) -> dict[str, Any]:
        return {"token": {"realm": self.realm, "service": SERVICE, "issuer": ISSUER, "rootcertbundle": str(self.bundle)}}

    def issue(self, *, subject: str, access: list[dict[str, Any]]) -> str:
        now = int(time.time())
        claims = {"iss": ISSUER, "sub": subject, "aud": SERVICE, "exp": now + self.expires_in, "nbf": now - 5,
                  "iat": now, "jti": secrets.token_hex(8), "access": access}
        return jwt.encode(claims, self._key, algorithm="ES256", headers={"x5c": self._x5c})

    def start(self) -> TokenServer:
        self._serve(_handler(self))
        return self

    def stop(self) -> None:
        self._shutdown()

    # --- the grant decision -------------------------------------------------------------------------------

    def _subject(self, authorization: str | None, form: Mapping[str, str]) -> str | None | bool:
        """The authenticated user, None for anonymous, False for bad credentials."""
        grant = form.get("grant_type")
        if grant == "refresh_token":
            return self.refresh_tokens.get(form.get("refresh_token", ""), False)
        if grant == "password":
            user = form.get("username", "")
            return user if user in self.users and self.users[user] == form.get("password") else False
        if authorization is None:
            return None
        scheme, _, value = authorization.partition(" ")
        if scheme.lower() != "basic":
            return False
        try:
            user, _, password = base64.b64decode(value).decode().partition(":")
        except ValueError:
            return False
        return user if user in self.users and self.users[user] == password else False

    def _access(self, subject: str | None, scopes: list[str]) -> list[dict[str, Any]]:
        access = []
        for scope in scopes:
            kind, _, rest = scope.partition(":")
            name, _, actions = rest.rpartition(":")
            wanted = [a for a in actions.split(",") if a]
            anonymous_ok = self.anonymous_pull and not name.startswith(self.private_prefix)
            granted = wanted if subject else [a for a in wanted if a == "pull" and anonymous_ok]
            if kind == "repository" and granted:
                access.append({"type": kind, "name": name, "actions": granted})
        return access


def _handler(server: TokenServer) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def log_message(self, format: str, *args: Any) -> None:
            pass

        def _answer(self, form: Mapping[str, str], scopes: list[str]) -> None:
            authorization = self.headers.get("Authorization")
            server.requests.append(TokenRequest(self.command, " ".join(scopes), form.get("service", ""),
                                                authorization, form.get("grant_type")))
            subject = server._subject(authorization, form)
            if subject is False:
                self._send(401, {"errors": [{"code": "UNAUTHORIZED", "message": "bad credentials"}]})
                return
            token = server.issue(subject=subject or "", access=server._access(subject, scopes))
            self._send(200, {"token": token, "access_token": token, "expires_in": server.expires_in,
                             "issued_at": dt.datetime.now(dt.UTC).isoformat()})

        def _send(self, status: int, body: Mapping[str, Any]) -> None:
            data = json.dumps(body).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def do_GET(self) -> None:
            query = urllib.parse.parse_qs(urllib.parse.urlsplit(self.path).query)
            form = {k: v[0] for k, v in query.items()}
            self._answer(form, [s for value in query.get("scope", []) for s in value.split(" ") if s])

        def do_POST(self) -> None:
            length = int(self.headers.get("Content-Length") or 0)
            parsed = urllib.parse.parse_qs(self.rfile.read(length).decode())
            form = {k: v[0] for k, v in parsed.items()}
            scopes = [s for value in parsed.get("scope", []) for s in value.split(" ") if s]
            self._answer(form, scopes)

    return Handler
