"""The registry client against real registries on loopback (docker-registry plain, htpasswd, TLS, Bearer tokens
from tests/images/tokenserver.py) with images built by umoci and pushed by skopeo, and against
tests/images/faults.py for what real registries rarely do (500s, hangs, wrong digests, endless bodies,
redirects and challenges that point at metadata addresses).

Names never resolve through real DNS here: a fake resolver maps them, and the SSRF tests run over a
transport that refuses anything but loopback, so a guard bug fails the test instead of sending traffic.
"""

from __future__ import annotations

import hashlib
import ipaddress
import json
import subprocess
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest

from admission.errors import RegistryError
from admission.images.credentials import Credential, Credentials
from admission.reference import parse_normalized_named
from admission.images.registry import (
    RegistryClient,
    Timeouts,
    parse_challenge,
    pick_platform,
    registry_key,
)
from admission.images.settings import ImagesSettings
from tests.images import faults as F
from tests.images import oci
from tests.images.conftest import IDENTITY_TOKEN, REGISTRY_PASSWORD, REGISTRY_USER, TLSRegistry
from tests.images.registry import Registry
from tests.images.tokenserver import TokenServer

pytestmark = pytest.mark.anyio

SLACK = 0.5  # seconds a failing fetch may overrun its deadline (event-loop scheduling, thread hand-offs)


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


# --- helpers ---------------------------------------------------------------------------------------------------


def trusted(*hosts: str, **overrides: Any) -> ImagesSettings:
    """Settings that list loopback test registries (they are on 127.0.0.1, so the guard needs them listed)."""
    return ImagesSettings(allowed_registries=hosts, insecure_registries=hosts, **overrides)


def soon(seconds: float = 10.0) -> float:
    return time.monotonic() + seconds


class LoopbackOnly(httpx.AsyncBaseTransport):
    """A real transport that refuses to dial anything but loopback and records every address it was asked for."""

    def __init__(self, **kwargs: Any) -> None:
        self.inner = httpx.AsyncHTTPTransport(**kwargs)
        self.dialled: list[str] = []

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        self.dialled.append(request.url.host)
        try:
            loopback = ipaddress.ip_address(request.url.host).is_loopback
        except ValueError:
            loopback = False  # the client must dial the address it checked, never a name
        if not loopback:
            raise httpx.ConnectError(f"test transport refuses {request.url.host}")
        return await self.inner.handle_async_request(request)

    async def aclose(self) -> None:
        await self.inner.aclose()


def fake_dns(table: dict[str, list[str]], calls: list[str] | None = None) -> Callable[[str, int], Awaitable[list[str]]]:
    async def resolve(host: str, port: int) -> list[str]:
        if calls is not None:
            calls.append(host)
        if host not in table:
            raise OSError(f"fake DNS has no {host}")
        return table[host]
    return resolve


@asynccontextmanager
async def client(settings: ImagesSettings, **kwargs: Any) -> AsyncIterator[RegistryClient]:
    kwargs.setdefault("resolver", fake_dns({}))
    registry_client = RegistryClient(settings, **kwargs)
    try:
        yield registry_client
    finally:
        await registry_client.aclose()


async def fails_in_time(action: Callable[[float], Awaitable[object]], seconds: float = 3.0) -> RegistryError:
    """Run `action(deadline)`; it must raise RegistryError before deadline + SLACK."""
    started = time.monotonic()
    with pytest.raises(RegistryError) as caught:
        await action(started + seconds)
    assert time.monotonic() - started < seconds + SLACK
    return caught.value


def paths(entries: list[tuple[str, str, int]]) -> list[tuple[str, str, int]]:
    """Access-log entries with digests shortened to their kind, to compare request shapes."""
    out = []
    for method, path, status in entries:
        parts = path.split("/")
        if len(parts) >= 2 and parts[-1].startswith("sha256:"):
            parts[-1] = "<digest>"
        out.append((method, "/".join(parts), status))
    return out


def umoci(*args: str) -> None:
    subprocess.run(["umoci", *args], check=True, capture_output=True, timeout=120)


@dataclass(frozen=True)
class Images:
    layout: Path


@pytest.fixture(scope="session")
def images(tmp_path_factory: pytest.TempPathFactory, registry: Registry) -> Images:
    """The test images, built once and pushed to the plain registry in every format the client reads."""
    layout = tmp_path_factory.mktemp("registry-client") / "layout"
    app = oci.build(layout, "app", user="1000", labels={"org.opencontainers.image.source": "https://example.test/app"},
                    env=["MODE=prod"], exposed_ports=["8080/tcp"], history=["RUN build.sh # buildkit"])
    oci.push(app, registry.host, "oci/app:1")
    oci.push(app, registry.host, "oci/app:2")
    oci.push(app, registry.host, "docker/app:1", v2s2=True)
    oci.build(layout, "amd", user="1000", architecture="amd64")
    oci.build(layout, "arm", user="2000", architecture="arm64")
    oci.add_index(layout, "multi", {"arm": ("linux", "arm64"), "amd": ("linux", "amd64")})
    oci.copy(f"oci:{layout}:multi", f"docker://{registry.host}/multi:oci", all_images=True)
    oci.copy(f"oci:{layout}:multi", f"docker://{registry.host}/multi:docker", all_images=True, v2s2=True)
    layered = oci.build(layout, "layered", files={"/etc/passwd": "root:x:0:0::/root:/bin/sh\n"})
    umoci("insert", "--image", f"{layout}:layered", str(_file(layout, "passwd-top", "app:x:1000:1000::/:/bin/sh\n")),
          "/etc/passwd")
    umoci("insert", "--image", f"{layout}:layered", str(_file(layout, "motd", "hello\n")), "/etc/motd")
    oci.push(layered, registry.host, "layers/app:1")
    deleted = oci.build(layout, "deleted", files={"/etc/passwd": "root:x:0:0::/root:/bin/sh\n"})
    umoci("insert", "--image", f"{layout}:deleted", "--whiteout", "/etc/passwd")
    oci.push(deleted, registry.host, "layers/deleted:1")
    return Images(layout)


def _file(layout: Path, name: str, content: str) -> Path:
    path = layout.parent / name
    path.write_text(content)
    return path


# --- pure parts ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize(("text", "key"), [("nginx:1", "docker.io"), ("index.docker.io/library/nginx:1", "docker.io"),
                                           ("Registry.Example:5000/app:1", "registry.example:5000")])
def test_registry_key_folds_hub_aliases_and_case(text: str, key: str) -> None:
    assert registry_key(parse_normalized_named(text)) == key


def test_challenge_parameters_are_read_with_quoted_commas() -> None:
    assert parse_challenge('Bearer realm="https://auth.example/token",service="reg",scope="repository:a/b:pull,push"') \
        == ("bearer", {"realm": "https://auth.example/token", "service": "reg", "scope": "repository:a/b:pull,push"})
    assert parse_challenge("Bearer realm=\"x\" garbage ===") is None


def _index(*platforms: tuple[str, str, str]) -> dict[str, Any]:
    return {"manifests": [{"digest": "sha256:" + f"{n:064x}", "size": 100,
                           "platform": {"os": o, "architecture": a, **({"variant": v} if v else {})}}
                          for n, (o, a, v) in enumerate(platforms, 1)]}


def test_platform_pick_without_variant_prefers_the_default_variant() -> None:
    index = _index(("unknown", "unknown", ""), ("linux", "arm", "v6"), ("linux", "arm", "v7"), ("linux", "arm64", "v8"))
    assert pick_platform(index, "linux/arm")["platform"]["variant"] == "v7"
    assert pick_platform(index, "linux/arm/v6")["platform"]["variant"] == "v6"
    assert pick_platform(index, "linux/arm64")["platform"]["architecture"] == "arm64"


def test_platform_missing_from_index_names_what_it_has() -> None:
    with pytest.raises(RegistryError) as caught:
        pick_platform(_index(("linux", "arm64", ""), ("unknown", "unknown", "")), "linux/amd64", subject="app:1")
    assert caught.value.reason == "not-found"
    assert str(caught.value) == "app:1 has no image for linux/amd64 (it has linux/arm64/v8)"


# --- the plain registry: request shapes and formats ------------------------------------------------------------


async def test_cold_fetch_of_tagged_image_is_ping_head_manifest_and_config(registry: Registry, images: Images) -> None:
    mark = registry.mark()
    async with client(trusted(registry.host)) as c:
        fetched = await c.fetch(parse_normalized_named(f"{registry.host}/oci/app:1"), deadline=soon())
        counters = dict(c.counters)
    assert paths(registry.since(mark)) == [("GET", "/v2/", 200), ("HEAD", "/v2/oci/app/manifests/1", 200),
                                           ("GET", "/v2/oci/app/manifests/<digest>", 200),
                                           ("GET", "/v2/oci/app/blobs/<digest>", 200)]
    assert counters == {"ping": 1, "head": 1, "manifest": 1, "config": 1}
    config = fetched.config
    assert (config.user, config.env, config.exposed_ports) == ("1000", ("MODE=prod",), ("8080/tcp",))
    assert config.labels["org.opencontainers.image.source"] == "https://example.test/app"
    assert [h.created_by for h in config.history] == ["RUN build.sh # buildkit"]
    assert config.digest == fetched.manifest_digest and fetched.index_digest is None
    assert config.config_digest is not None and config.config_digest.startswith("sha256:")


async def test_second_fetch_from_same_registry_does_not_ping_again(registry: Registry, images: Images) -> None:
    async with client(trusted(registry.host)) as c:
        await c.fetch(parse_normalized_named(f"{registry.host}/oci/app:1"), deadline=soon())
        mark = registry.mark()
        await c.fetch(parse_normalized_named(f"{registry.host}/oci/app:2"), deadline=soon())
    assert [m for m, p, s in registry.since(mark)] == ["HEAD", "GET", "GET"]


async def test_resolve_digest_sends_only_a_head(registry: Registry, images: Images) -> None:
    async with client(trusted(registry.host)) as c:
        digest = await c.resolve_digest(parse_normalized_named(f"{registry.host}/oci/app:1"), deadline=soon())
        fetched = await c.fetch(parse_normalized_named(f"{registry.host}/oci/app:1"), deadline=soon())
        assert c.counters["head"] == 2 and c.counters["manifest"] == 1
    assert digest == fetched.manifest_digest


async def test_fetch_by_digest_needs_no_head(registry: Registry, images: Images) -> None:
    async with client(trusted(registry.host)) as c:
        digest = await c.resolve_digest(parse_normalized_named(f"{registry.host}/oci/app:1"), deadline=soon())
        mark = registry.mark()
        by_ref = await c.fetch(parse_normalized_named(f"{registry.host}/oci/app@{digest}"), deadline=soon())
        by_cached_tag = await c.fetch(parse_normalized_named(f"{registry.host}/oci/app:1"), deadline=soon(),
                                      digest=digest)
    assert [m for m, p, s in registry.since(mark)] == ["GET", "GET", "GET", "GET"]
    assert by_ref.manifest_digest == by_cached_tag.manifest_digest == digest


async def test_docker_schema2_image_reads_like_oci(registry: Registry, images: Images) -> None:
    async with client(trusted(registry.host)) as c:
        fetched = await c.fetch(parse_normalized_named(f"{registry.host}/docker/app:1"), deadline=soon())
    async with httpx.AsyncClient() as plain:
        head = await plain.head(f"http://{registry.host}/v2/docker/app/manifests/1",
                                headers={"Accept": "application/vnd.docker.distribution.manifest.v2+json"})
    assert head.headers["content-type"] == "application/vnd.docker.distribution.manifest.v2+json"
    assert fetched.config.user == "1000" and fetched.config.exposed_ports == ("8080/tcp",)


@pytest.mark.parametrize("tag", ["oci", "docker"])
@pytest.mark.parametrize(("platform", "user", "arch"), [("linux/amd64", "1000", "amd64"), ("linux/arm64", "2000", "arm64")])
async def test_index_fetch_picks_the_configured_platform(registry: Registry, images: Images, tag: str, platform: str,
                                                         user: str, arch: str) -> None:
    mark = registry.mark()
    async with client(trusted(registry.host, platform=platform)) as c:
        fetched = await c.fetch(parse_normalized_named(f"{registry.host}/multi:{tag}"), deadline=soon())
    assert (fetched.config.user, fetched.config.architecture) == (user, arch)
    assert fetched.index_digest is not None and fetched.index_digest != fetched.manifest_digest
    assert paths(registry.since(mark)) == [("GET", "/v2/", 200), ("HEAD", "/v2/multi/manifests/" + tag, 200),
                                           ("GET", "/v2/multi/manifests/<digest>", 200),
                                           ("GET", "/v2/multi/manifests/<digest>", 200),
                                           ("GET", "/v2/multi/blobs/<digest>", 200)]


async def test_index_without_the_platform_is_not_found(registry: Registry, images: Images) -> None:
    async with client(trusted(registry.host, platform="linux/s390x")) as c:
        error = await fails_in_time(lambda d: c.fetch(parse_normalized_named(f"{registry.host}/multi:oci"), deadline=d))
    assert error.reason == "not-found" and "linux/s390x" in str(error) and "linux/arm64" in str(error)


async def test_unknown_tag_is_not_found(registry: Registry, images: Images) -> None:
    async with client(trusted(registry.host)) as c:
        error = await fails_in_time(lambda d: c.fetch(parse_normalized_named(f"{registry.host}/oci/app:nope"),
                                                      deadline=d))
    assert error.reason == "not-found" and "oci/app:nope" in str(error)


async def test_loopback_registry_not_listed_is_blocked_before_any_request(registry: Registry, images: Images) -> None:
    mark = registry.mark()
    async with client(ImagesSettings(insecure_registries=(registry.host,))) as c:
        error = await fails_in_time(lambda d: c.fetch(parse_normalized_named(f"{registry.host}/oci/app:1"), deadline=d))
        assert sum(c.counters.values()) == 0
    assert error.reason == "blocked"
    assert str(error) == (f"registry {registry.host} refused: 127.0.0.1 is loopback and {registry.host} is not in "
                          "images.allowed_registries")
    assert registry.since(mark) == []


async def test_plain_http_only_for_insecure_registries(registry: Registry, images: Images) -> None:
    mark = registry.mark()
    async with client(ImagesSettings(allowed_registries=(registry.host,))) as c:
        error = await fails_in_time(lambda d: c.fetch(parse_normalized_named(f"{registry.host}/oci/app:1"), deadline=d))
    assert error.reason == "error" and "connection failed" in str(error)
    assert all(status == 400 for _m, _p, status in registry.since(mark))  # a TLS hello is no HTTP request


async def test_restrict_to_allowed_refuses_unlisted_registry_without_resolving() -> None:
    calls: list[str] = []
    transport = LoopbackOnly()
    settings = ImagesSettings(allowed_registries=("registry.example",), restrict_to_allowed=True)
    async with client(settings, resolver=fake_dns({"other.example": ["8.8.8.8"]}, calls), transport=transport) as c:
        error = await fails_in_time(lambda d: c.fetch(parse_normalized_named("other.example/app:1"), deadline=d))
    assert error.reason == "blocked" and "images.restrict_to_allowed" in str(error)
    assert calls == [] and transport.dialled == []


async def test_docker_hub_is_reached_as_registry_1_and_guarded() -> None:
    calls: list[str] = []
    transport = LoopbackOnly()
    async with client(ImagesSettings(), resolver=fake_dns({"registry-1.docker.io": ["10.1.2.3"]}, calls),
                      transport=transport) as c:
        error = await fails_in_time(lambda d: c.fetch(parse_normalized_named("nginx:1.25"), deadline=d))
    assert calls == ["registry-1.docker.io"] and transport.dialled == []
    assert str(error) == ("registry docker.io refused: registry-1.docker.io resolves to 10.1.2.3, which is private "
                          "and docker.io is not in images.allowed_registries")


@pytest.mark.parametrize(("reference", "dns", "because"), [
    ("evil.test/app:1", {"evil.test": ["169.254.169.254"]}, "evil.test resolves to 169.254.169.254, which is link-local"),
    ("[::ffff:a9fe:a9fe]:5000/app:1", {}, "::ffff:a9fe:a9fe is the IPv4-mapped form of 169.254.169.254"),
    ("100.100.100.200/app:1", {}, "100.100.100.200 is in 100.64.0.0/10"),
])
async def test_registry_host_on_a_metadata_address_is_blocked_before_connecting(
        reference: str, dns: dict[str, list[str]], because: str) -> None:
    transport = LoopbackOnly()
    async with client(ImagesSettings(), resolver=fake_dns(dns), transport=transport) as c:
        error = await fails_in_time(lambda d: c.fetch(parse_normalized_named(reference), deadline=d))
    assert error.reason == "blocked" and because in str(error)
    assert transport.dialled == []


# --- layers: /etc/passwd for resolve_user_names ---------------------------------------------------------------------


async def test_file_is_read_from_the_topmost_layer_that_has_it(registry: Registry, images: Images) -> None:
    ref = parse_normalized_named(f"{registry.host}/layers/app:1")
    async with client(trusted(registry.host)) as c:
        fetched = await c.fetch(ref, deadline=soon())
        assert len(fetched.layers) == 3
        passwd = await c.read_file_from_layers(ref, fetched, "/etc/passwd", deadline=soon(), max_bytes=1 << 20)
        assert c.counters["blob"] == 2  # motd's layer, then the one with the newer passwd; the oldest is never read
        assert await c.read_file_from_layers(ref, fetched, "/etc/group", deadline=soon(), max_bytes=1 << 20) is None
    assert passwd == b"app:x:1000:1000::/:/bin/sh\n"


async def test_whiteout_hides_the_file_of_lower_layers(registry: Registry, images: Images) -> None:
    ref = parse_normalized_named(f"{registry.host}/layers/deleted:1")
    async with client(trusted(registry.host)) as c:
        fetched = await c.fetch(ref, deadline=soon())
        assert await c.read_file_from_layers(ref, fetched, "/etc/passwd", deadline=soon(), max_bytes=1 << 20) is None
        assert c.counters["blob"] == 1


async def test_layer_reading_stops_at_the_byte_budget(registry: Registry, images: Images) -> None:
    ref = parse_normalized_named(f"{registry.host}/layers/app:1")
    async with client(trusted(registry.host)) as c:
        fetched = await c.fetch(ref, deadline=soon())
        error = await fails_in_time(lambda d: c.read_file_from_layers(ref, fetched, "/etc/passwd", deadline=d,
                                                                      max_bytes=16))
    assert error.reason == "too-large" and "16-byte budget" in str(error)


# --- mirrors ----------------------------------------------------------------------------------------------------


async def test_mirror_is_asked_before_the_origin(registry: Registry, mirror_registry: Registry, images: Images) -> None:
    oci.push(f"oci:{images.layout}:app", mirror_registry.host, "mirrored/app:1")
    origin_mark, mirror_mark = registry.mark(), mirror_registry.mark()
    settings = trusted(registry.host, mirror_registry.host, mirrors={registry.host: (mirror_registry.host,)})
    async with client(settings) as c:
        fetched = await c.fetch(parse_normalized_named(f"{registry.host}/mirrored/app:1"), deadline=soon())
    assert fetched.config.user == "1000"
    assert registry.since(origin_mark) == []
    assert len(mirror_registry.since(mirror_mark)) == 4


async def test_failing_mirrors_fall_through_to_the_origin(registry: Registry, mirror_registry: Registry,
                                                          images: Images, faults: F.Faults) -> None:
    faults.route("/v2/", F.respond(503))
    settings = trusted(registry.host, mirror_registry.host, faults.host,
                       mirrors={registry.host: (faults.host, mirror_registry.host)})
    async with client(settings) as c:
        fetched = await c.fetch(parse_normalized_named(f"{registry.host}/oci/app:1"), deadline=soon())
    assert fetched.config.user == "1000"
    assert len(faults.requests("/v2/")) == 2  # the 503 mirror was retried once, then skipped
    assert any(path.endswith("/manifests/1") and status == 404 for _m, path, status in mirror_registry.requests())


async def test_unlisted_mirror_is_skipped_under_restrict_to_allowed(registry: Registry, images: Images,
                                                                    faults: F.Faults) -> None:
    settings = ImagesSettings(allowed_registries=(registry.host,), insecure_registries=(registry.host, faults.host),
                              restrict_to_allowed=True, mirrors={registry.host: (faults.host,)})
    async with client(settings) as c:
        fetched = await c.fetch(parse_normalized_named(f"{registry.host}/oci/app:1"), deadline=soon())
    assert fetched.config.user == "1000" and faults.log == []


# --- auth: htpasswd, tokens ---------------------------------------------------------------------------------------


@pytest.fixture(scope="session")
def pushed_auth(images: Images, htpasswd_registry: Registry, token_registry: Registry) -> None:
    creds = f"{REGISTRY_USER}:{REGISTRY_PASSWORD}"
    for reg in (htpasswd_registry, token_registry):
        oci.push(f"oci:{images.layout}:app", reg.host, "team/app:1", creds=creds)
        oci.push(f"oci:{images.layout}:app", reg.host, "team/app:2", creds=creds)
    oci.push(f"oci:{images.layout}:app", token_registry.host, "private/app:1", creds=creds)


def user_creds(*hosts: str, **fields: str) -> Credentials:
    entry = fields or {"username": REGISTRY_USER, "password": REGISTRY_PASSWORD}
    return Credentials.from_config({"auths": {h: entry for h in hosts}})


async def test_basic_auth_registry_gets_the_configured_user(htpasswd_registry: Registry, pushed_auth: None) -> None:
    host = htpasswd_registry.host
    mark = htpasswd_registry.mark()
    async with client(trusted(host), credentials=user_creds(host)) as c:
        fetched = await c.fetch(parse_normalized_named(f"{host}/team/app:1"), deadline=soon())
        assert dict(c.counters) == {"ping": 1, "head": 1, "manifest": 1, "config": 1}
    assert fetched.config.user == "1000"
    assert [s for _m, _p, s in htpasswd_registry.since(mark)] == [401, 200, 200, 200]


async def test_basic_auth_registry_without_credentials_is_an_auth_error(htpasswd_registry: Registry,
                                                                        pushed_auth: None) -> None:
    host = htpasswd_registry.host
    async with client(trusted(host), credentials=user_creds("elsewhere.example")) as c:
        error = await fails_in_time(lambda d: c.fetch(parse_normalized_named(f"{host}/team/app:1"), deadline=d))
        assert dict(c.counters) == {"ping": 1}
    assert error.reason == "auth" and "no credentials are configured" in str(error)


async def test_wrong_password_is_an_auth_error(htpasswd_registry: Registry, pushed_auth: None) -> None:
    host = htpasswd_registry.host
    async with client(trusted(host), credentials=user_creds(host, username=REGISTRY_USER, password="wrong")) as c:
        error = await fails_in_time(lambda d: c.fetch(parse_normalized_named(f"{host}/team/app:1"), deadline=d))
    assert error.reason == "auth" and "401" in str(error)


async def test_token_registry_anonymous_pull_costs_one_token(token_registry: Registry, token_server: TokenServer,
                                                             pushed_auth: None) -> None:
    host = token_registry.host
    mark, tokens = token_registry.mark(), len(token_server.requests)
    async with client(trusted(host, token_server.host)) as c:
        fetched = await c.fetch(parse_normalized_named(f"{host}/team/app:1"), deadline=soon())
        await c.fetch(parse_normalized_named(f"{host}/team/app:2"), deadline=soon())
        assert c.counters["token"] == 1 and c.counters["ping"] == 1
    assert fetched.config.user == "1000"
    asked = token_server.requests[tokens:]
    assert [(r.scope, r.service, r.authorization) for r in asked] == [("repository:team/app:pull", "test-registry", None)]
    assert [(m, s) for m, _p, s in token_registry.since(mark)] == [("GET", 401), ("HEAD", 200), ("GET", 200),
                                                                  ("GET", 200), ("HEAD", 200), ("GET", 200),
                                                                  ("GET", 200)]


async def test_token_is_requested_again_after_it_expires(token_registry: Registry, token_server: TokenServer,
                                                         pushed_auth: None, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(token_server, "expires_in", 1)
    host = token_registry.host
    async with client(trusted(host, token_server.host)) as c:
        await c.fetch(parse_normalized_named(f"{host}/team/app:1"), deadline=soon())
        await c.fetch(parse_normalized_named(f"{host}/team/app:1"), deadline=soon())
        assert c.counters["token"] == 1
        time.sleep(1.0)  # noqa: ASYNC251 - let the one-second token lapse
        await c.fetch(parse_normalized_named(f"{host}/team/app:1"), deadline=soon())
        assert c.counters["token"] == 2


async def test_private_repository_needs_credentials_sent_to_the_realm(token_registry: Registry,
                                                                      token_server: TokenServer,
                                                                      pushed_auth: None) -> None:
    host = token_registry.host
    ref = parse_normalized_named(f"{host}/private/app:1")
    async with client(trusted(host, token_server.host)) as c:
        error = await fails_in_time(lambda d: c.fetch(ref, deadline=d))
    assert error.reason == "auth"
    async with client(trusted(host, token_server.host), credentials=user_creds(host)) as c:
        fetched = await c.fetch(ref, deadline=soon())
    assert fetched.config.user == "1000"
    assert (token_server.requests[-1].authorization or "").startswith("Basic ")


async def test_identity_token_uses_the_refresh_token_grant(token_registry: Registry, token_server: TokenServer,
                                                           pushed_auth: None) -> None:
    host = token_registry.host
    creds = Credentials({host: Credential(identity_token=IDENTITY_TOKEN)})
    async with client(trusted(host, token_server.host), credentials=creds) as c:
        fetched = await c.fetch(parse_normalized_named(f"{host}/private/app:1"), deadline=soon())
    assert fetched.config.user == "1000"
    last = token_server.requests[-1]
    assert (last.method, last.grant_type, last.authorization) == ("POST", "refresh_token", None)


async def test_token_realm_must_be_listed_when_it_is_on_loopback(token_registry: Registry, token_server: TokenServer,
                                                                 pushed_auth: None) -> None:
    tokens = len(token_server.requests)
    async with client(trusted(token_registry.host)) as c:
        error = await fails_in_time(lambda d: c.fetch(parse_normalized_named(f"{token_registry.host}/team/app:1"),
                                                      deadline=d))
    assert error.reason == "blocked" and str(error).startswith(f"token realm {token_server.realm}")
    assert len(token_server.requests) == tokens


# --- TLS ----------------------------------------------------------------------------------------------------------


@pytest.fixture(scope="session")
def pushed_tls(images: Images, tls_registry: TLSRegistry) -> None:
    oci.push(f"oci:{images.layout}:app", tls_registry.registry.host, "tls/app:1")


async def test_tls_registry_is_verified_with_the_given_ca(tls_registry: TLSRegistry, pushed_tls: None) -> None:
    host = tls_registry.registry.host
    async with client(ImagesSettings(allowed_registries=(host,)), verify=str(tls_registry.ca_file)) as c:
        fetched = await c.fetch(parse_normalized_named(f"{host}/tls/app:1"), deadline=soon())
    assert fetched.config.user == "1000"
    async with client(ImagesSettings(allowed_registries=(host,))) as c:
        error = await fails_in_time(lambda d: c.fetch(parse_normalized_named(f"{host}/tls/app:1"), deadline=d))
    assert error.reason == "error" and "CERTIFICATE_VERIFY_FAILED" in str(error)


async def test_tls_checks_the_host_name_while_dialling_the_checked_address(tls_registry: TLSRegistry,
                                                                          pushed_tls: None) -> None:
    port = tls_registry.registry.port
    dns = fake_dns({"registry.test": ["127.0.0.1"], "impostor.test": ["127.0.0.1"]})
    settings = ImagesSettings(allowed_registries=(f"registry.test:{port}", f"impostor.test:{port}"))
    async with client(settings, resolver=dns, verify=str(tls_registry.ca_file)) as c:
        fetched = await c.fetch(parse_normalized_named(f"registry.test:{port}/tls/app:1"), deadline=soon())
        assert fetched.config.user == "1000"
        error = await fails_in_time(lambda d: c.fetch(parse_normalized_named(f"impostor.test:{port}/tls/app:1"),
                                                      deadline=d))
    assert error.reason == "error" and "impostor.test" in str(error)


# --- faults ---------------------------------------------------------------------------------------------------------


def ref_at(faults: F.Faults, image: F.ServedImage) -> Any:
    return parse_normalized_named(f"{faults.host}/{image.repo}:{image.tag}")


async def test_5xx_is_retried_once_then_an_error(faults: F.Faults) -> None:
    image = F.serve_image(faults)
    faults.route(image.tag_path, F.respond(500))
    async with client(trusted(faults.host)) as c:
        error = await fails_in_time(lambda d: c.fetch(ref_at(faults, image), deadline=d))
        assert c.counters["head"] == 2
    assert error.reason == "error" and "answered 500" in str(error)
    assert [r.method for r in faults.requests(image.tag_path)] == ["HEAD", "HEAD"]


async def test_a_5xx_then_success_is_a_success(faults: F.Faults) -> None:
    image = F.serve_image(faults)
    faults.route(image.config_path, F.sequence(F.respond(502), F.respond(200, image.config)))
    async with client(trusted(faults.host)) as c:
        fetched = await c.fetch(ref_at(faults, image), deadline=soon())
    assert fetched.config.user == "1000" and len(faults.requests(image.config_path)) == 2


async def test_dropped_connection_is_retried(faults: F.Faults) -> None:
    image = F.serve_image(faults)
    faults.route(image.manifest_path, F.sequence(F.drop(), F.respond(200, image.manifest)))
    async with client(trusted(faults.host)) as c:
        fetched = await c.fetch(ref_at(faults, image), deadline=soon())
    assert fetched.manifest_digest == image.manifest_digest and len(faults.requests(image.manifest_path)) == 2


async def test_no_retry_when_it_would_not_fit_the_deadline(faults: F.Faults) -> None:
    image = F.serve_image(faults)
    faults.route(image.tag_path, F.respond(500))
    async with client(trusted(faults.host)) as c:
        await c.resolve_digest(ref_at(faults, F.serve_image(faults, tag="warm")), deadline=soon())  # ping done
        error = await fails_in_time(lambda d: c.fetch(ref_at(faults, image), deadline=d), seconds=0.15)
    assert error.reason == "error" and len(faults.requests(image.tag_path)) == 1


async def test_hanging_registry_times_out_at_the_deadline(faults: F.Faults) -> None:
    image = F.serve_image(faults)
    faults.route(image.manifest_path, F.hang())
    async with client(trusted(faults.host), timeouts=Timeouts(connect=2.0, read=30.0)) as c:
        error = await fails_in_time(lambda d: c.fetch(ref_at(faults, image), deadline=d), seconds=1.0)
    assert error.reason == "timeout"


async def test_hanging_registry_times_out_at_the_read_timeout(faults: F.Faults) -> None:
    image = F.serve_image(faults)
    faults.route(image.config_path, F.hang())
    async with client(trusted(faults.host), timeouts=Timeouts(connect=1.0, read=0.3)) as c:
        error = await fails_in_time(lambda d: c.fetch(ref_at(faults, image), deadline=d), seconds=5.0)
        assert c.counters["config"] == 1  # a read timeout is not retried: the retry would hang as well
    assert error.reason == "timeout" and "did not answer in time" in str(error)


async def test_manifest_whose_bytes_do_not_match_its_digest_is_refused(faults: F.Faults) -> None:
    image = F.serve_image(faults)
    tampered = image.manifest.replace(b'"layers": []', b'"layers": [] ')
    faults.route(image.manifest_path, F.respond(200, tampered, {"Content-Type": "application/vnd.oci.image.manifest.v1+json"}))
    async with client(trusted(faults.host)) as c:
        error = await fails_in_time(lambda d: c.fetch(ref_at(faults, image), deadline=d))
    assert error.reason == "digest-mismatch" and image.manifest_digest in str(error)


async def test_config_whose_bytes_do_not_match_its_digest_is_refused(faults: F.Faults) -> None:
    image = F.serve_image(faults)
    faults.route(image.config_path, F.respond(200, image.config.replace(b'"1000"', b'"0"')))
    async with client(trusted(faults.host)) as c:
        error = await fails_in_time(lambda d: c.fetch(ref_at(faults, image), deadline=d))
    assert error.reason == "digest-mismatch" and image.config_digest in str(error)


async def test_head_without_digest_falls_back_to_one_get(faults: F.Faults) -> None:
    image = F.serve_image(faults, digest_on_head=False)
    async with client(trusted(faults.host)) as c:
        fetched = await c.fetch(ref_at(faults, image), deadline=soon())
        assert dict(c.counters) == {"ping": 1, "head": 1, "manifest": 1, "config": 1}
    assert fetched.manifest_digest == image.manifest_digest
    assert [r.method for r in faults.requests(image.tag_path)] == ["HEAD", "GET"]


async def test_endless_config_body_is_cut_at_the_cap(faults: F.Faults) -> None:
    image = F.serve_image(faults, config_size=300)
    faults.route(image.config_path, F.endless())
    async with client(trusted(faults.host)) as c:
        error = await fails_in_time(lambda d: c.fetch(ref_at(faults, image), deadline=d), seconds=5.0)
    assert error.reason == "too-large" and "8 MiB" in str(error)
    faults.stop()
    assert faults.sent(image.config_path) < 32 << 20


async def test_declared_huge_manifest_is_refused_without_reading_it(faults: F.Faults) -> None:
    image = F.serve_image(faults)
    faults.route(image.manifest_path, F.endless(declared_length=1 << 30))
    async with client(trusted(faults.host)) as c:
        error = await fails_in_time(lambda d: c.fetch(ref_at(faults, image), deadline=d))
    assert error.reason == "too-large" and "4 MiB" in str(error)


async def test_config_descriptor_over_the_cap_is_refused_before_the_download(faults: F.Faults) -> None:
    image = F.serve_image(faults, config_size=9 << 20)
    async with client(trusted(faults.host)) as c:
        error = await fails_in_time(lambda d: c.fetch(ref_at(faults, image), deadline=d))
    assert error.reason == "too-large" and faults.requests(image.config_path) == []


async def test_garbage_challenge_is_an_auth_error(faults: F.Faults) -> None:
    image = F.serve_image(faults)
    faults.route("/v2/", F.challenge("Bearer !!! = = garbage"))
    async with client(trusted(faults.host)) as c:
        error = await fails_in_time(lambda d: c.fetch(ref_at(faults, image), deadline=d))
    assert error.reason == "auth" and "unusable WWW-Authenticate" in str(error)


METADATA_TARGETS = [
    ("http://169.254.169.254/latest", "169.254.169.254 is link-local"),
    ("http://100.100.100.200/latest", "100.100.100.200 is in 100.64.0.0/10"),
    ("http://[64:ff9b::a9fe:a9fe]/latest", "64:ff9b::a9fe:a9fe is the NAT64 form of 169.254.169.254"),
    ("http://metadata.test/latest", "metadata.test resolves to 169.254.169.254"),
    ("http://mixed.test/latest", "mixed.test resolves to 10.0.0.7, which is private"),
]
METADATA_DNS = {"metadata.test": ["169.254.169.254"], "mixed.test": ["8.8.8.8", "10.0.0.7"]}


@pytest.mark.parametrize(("target", "because"), METADATA_TARGETS)
async def test_token_realm_on_a_metadata_address_is_blocked_before_connecting(faults: F.Faults, target: str,
                                                                              because: str) -> None:
    image = F.serve_image(faults)
    faults.route("/v2/", F.challenge(f'Bearer realm="{target}",service="svc"'))
    transport = LoopbackOnly()
    async with client(trusted(faults.host), resolver=fake_dns(METADATA_DNS), transport=transport,
                      credentials=user_creds(faults.host)) as c:
        error = await fails_in_time(lambda d: c.fetch(ref_at(faults, image), deadline=d))
        assert c.counters["token"] == 0
    assert error.reason == "blocked" and because in str(error) and str(error).startswith(f"token realm {target}")
    assert set(transport.dialled) == {"127.0.0.1"}


@pytest.mark.parametrize(("target", "because"), METADATA_TARGETS)
async def test_redirect_to_a_metadata_address_is_blocked_before_connecting(faults: F.Faults, target: str,
                                                                           because: str) -> None:
    image = F.serve_image(faults)
    faults.route(image.config_path, F.redirect(target))
    transport = LoopbackOnly()
    async with client(trusted(faults.host), resolver=fake_dns(METADATA_DNS), transport=transport) as c:
        error = await fails_in_time(lambda d: c.fetch(ref_at(faults, image), deadline=d))
    assert error.reason == "blocked" and because in str(error) and "redirect from registry" in str(error)
    assert set(transport.dialled) == {"127.0.0.1"}


async def test_redirect_to_an_unlisted_loopback_host_is_blocked(faults: F.Faults) -> None:
    image = F.serve_image(faults)
    storage = F.Faults().start()
    try:
        faults.route(image.config_path, F.redirect(f"http://storage.test:{storage.port}/blob"))
        async with client(trusted(faults.host), resolver=fake_dns({"storage.test": ["127.0.0.1"]})) as c:
            error = await fails_in_time(lambda d: c.fetch(ref_at(faults, image), deadline=d))
    finally:
        storage.stop()
    assert error.reason == "blocked" and f"storage.test:{storage.port} is not in images.allowed_registries" in str(error)
    assert storage.log == []


async def test_blob_redirect_is_followed_without_the_registry_credentials(faults: F.Faults) -> None:
    storage = F.Faults().start()
    try:
        image = F.serve_image(faults, wrap=lambda b: F.require_basic(REGISTRY_USER, REGISTRY_PASSWORD, b))
        storage.route("/blob", F.respond(200, image.config))
        faults.route(image.config_path, F.require_basic(REGISTRY_USER, REGISTRY_PASSWORD,
                                                        F.redirect(f"http://storage.test:{storage.port}/blob")))
        settings = trusted(faults.host, f"storage.test:{storage.port}")
        async with client(settings, resolver=fake_dns({"storage.test": ["127.0.0.1"]}),
                          credentials=user_creds(faults.host)) as c:
            fetched = await c.fetch(ref_at(faults, image), deadline=soon())
    finally:
        storage.stop()
    assert fetched.config.user == "1000"
    assert all("Authorization" in r.headers for r in faults.log if r.path != "/v2/")
    [blob] = storage.log
    assert "Authorization" not in blob.headers and blob.headers["Host"] == f"storage.test:{storage.port}"


async def test_plain_http_realm_does_not_get_credentials_of_an_https_registry(tls_registry: TLSRegistry,
                                                                             pushed_tls: None) -> None:
    # The TLS registry runs without auth, so the transport answers its /v2/ with a challenge naming a plain-HTTP
    # realm; credentials for an HTTPS registry must not travel there unless the realm is an insecure registry.
    faults = F.Faults().start()
    try:
        host = tls_registry.registry.host
        ca = str(tls_registry.ca_file)
        import ssl as _ssl

        context = _ssl.create_default_context(cafile=ca)
        transport = _RewriteFirstPing(faults, LoopbackOnly(verify=context))
        async with client(ImagesSettings(allowed_registries=(host, faults.host)), transport=transport,
                          credentials=user_creds(host)) as c:
            error = await fails_in_time(lambda d: c.fetch(parse_normalized_named(f"{host}/tls/app:1"), deadline=d))
    finally:
        faults.stop()
    assert error.reason == "blocked" and "plain HTTP" in str(error) and "insecure_registries" in str(error)
    assert faults.requests("/token") == []


class _RewriteFirstPing(httpx.AsyncBaseTransport):
    """Answers the HTTPS registry's /v2/ with a Bearer challenge naming a plain-HTTP realm on `faults`."""

    def __init__(self, faults: F.Faults, inner: httpx.AsyncBaseTransport) -> None:
        self.faults, self.inner = faults, inner

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        if request.url.path == "/v2/":
            challenge = f'Bearer realm="http://{self.faults.host}/token",service="s"'
            return httpx.Response(401, headers={"WWW-Authenticate": challenge}, stream=httpx.ByteStream(b""))
        return await self.inner.handle_async_request(request)

    async def aclose(self) -> None:
        await self.inner.aclose()


# --- review 2: credentials and challenges stay with their host, policy holds through mirrors, bounded reads -------


TOKEN_JSON = {"Content-Type": "application/json"}


@pytest.mark.parametrize("status", [302, 307])
async def test_a_refresh_token_request_is_not_redirected_to_another_host(faults: F.Faults, status: int) -> None:
    image = F.serve_image(faults)
    elsewhere = F.Faults().start()
    try:
        faults.route("/v2/", F.challenge(f'Bearer realm="http://{faults.host}/token",service="s"'))
        faults.route("/token", F.redirect(f"http://{elsewhere.host}/steal", status))
        elsewhere.route("/steal", F.respond(200, b'{"token": "t"}', TOKEN_JSON))
        creds = Credentials({faults.host: Credential(identity_token="SECRET-REFRESH")})
        async with client(trusted(faults.host, elsewhere.host), credentials=creds) as c:
            error = await fails_in_time(lambda d: c.fetch(ref_at(faults, image), deadline=d))
    finally:
        elsewhere.stop()
    assert error.reason == "blocked" and elsewhere.host in str(error)
    assert elsewhere.log == []


async def test_a_refresh_token_request_may_be_redirected_on_its_own_host(faults: F.Faults) -> None:
    image = F.serve_image(faults)
    faults.route("/v2/", F.challenge(f'Bearer realm="http://{faults.host}/token",service="s"'))
    faults.route("/token", F.redirect("/oauth2/token", 307))
    faults.route("/oauth2/token", F.respond(200, b'{"token": "t"}', TOKEN_JSON))
    creds = Credentials({faults.host: Credential(identity_token="SECRET-REFRESH")})
    async with client(trusted(faults.host), credentials=creds) as c:
        fetched = await c.fetch(ref_at(faults, image), deadline=soon())
    assert fetched.config.user == "1000"
    assert [r.method for r in faults.requests("/oauth2/token")] == ["POST"]


async def test_a_challenge_from_a_blob_redirect_target_never_gets_the_registry_credentials(faults: F.Faults) -> None:
    cdn = F.Faults().start()
    try:
        image = F.serve_image(faults, wrap=lambda b: F.require_basic(REGISTRY_USER, REGISTRY_PASSWORD, b))
        faults.route(image.config_path, F.require_basic(REGISTRY_USER, REGISTRY_PASSWORD,
                                                        F.redirect(f"http://{cdn.host}/blob")))
        cdn.route("/blob", F.challenge(f'Bearer realm="http://{cdn.host}/token",service="cdn"'))
        cdn.route("/token", F.respond(200, b'{"token": "t"}', TOKEN_JSON))
        async with client(trusted(faults.host, cdn.host), credentials=user_creds(faults.host)) as c:
            error = await fails_in_time(lambda d: c.fetch(ref_at(faults, image), deadline=d))
            # The registry's own challenge is still the one in use: once storage answers, Basic auth works.
            cdn.route("/blob", F.respond(200, image.config))
            fetched = await c.fetch(ref_at(faults, image), deadline=soon())
    finally:
        cdn.stop()
    assert error.reason == "auth" and cdn.host in str(error)
    assert cdn.requests("/token") == [] and all("Authorization" not in r.headers for r in cdn.log)
    assert fetched.config.user == "1000"
    assert all(r.headers.get("Authorization", "").startswith("Basic ") for r in faults.log if r.path != "/v2/")


async def test_restrict_to_allowed_refuses_an_unlisted_registry_even_through_a_listed_mirror(
        registry: Registry, mirror_registry: Registry, images: Images) -> None:
    oci.push(f"oci:{images.layout}:app", mirror_registry.host, "mirrored/app:1")
    mark = mirror_registry.mark()
    settings = ImagesSettings(allowed_registries=(mirror_registry.host,),
                              insecure_registries=(registry.host, mirror_registry.host), restrict_to_allowed=True,
                              mirrors={registry.host: (mirror_registry.host,)})
    async with client(settings) as c:
        error = await fails_in_time(lambda d: c.fetch(parse_normalized_named(f"{registry.host}/mirrored/app:1"),
                                                      deadline=d))
        assert sum(c.counters.values()) == 0
    assert error.reason == "blocked" and f"{registry.host} is not in images.allowed_registries" in str(error)
    assert mirror_registry.since(mark) == []


def gzip_tar(name: str, size: int) -> bytes:
    """A gzip layer with one member `name` of `size` zero bytes, built in a stream (a few KB per 100 MB)."""
    import tarfile
    import zlib

    z = zlib.compressobj(9, zlib.DEFLATED, 31)
    info = tarfile.TarInfo(name)
    info.size = size
    out = [z.compress(info.tobuf(format=tarfile.GNU_FORMAT))]
    chunk = bytes(1 << 20)
    for _ in range(size >> 20):
        out.append(z.compress(chunk))
    out.append(z.compress(bytes(size % (1 << 20))))
    out.append(z.compress(bytes(-size % 512 + 1024)) + z.flush())
    return b"".join(out)


async def test_a_layer_file_that_inflates_past_the_file_cap_is_refused_without_reading_it(faults: F.Faults) -> None:
    from admission.images.cache import PASSWD_LAYER_BUDGET

    image = F.serve_image(faults, user="app", layers=[gzip_tar("etc/passwd", 48 << 20)])
    ref = ref_at(faults, image)
    async with client(trusted(faults.host)) as c:
        fetched = await c.fetch(ref, deadline=soon())
        error = await fails_in_time(lambda d: c.read_file_from_layers(ref, fetched, "/etc/passwd", deadline=d,
                                                                      max_bytes=PASSWD_LAYER_BUDGET))
    assert error.reason == "too-large" and "etc/passwd" in str(error) and "1 MiB" in str(error)


async def test_a_large_file_below_the_one_looked_for_is_skipped(faults: F.Faults) -> None:
    import gzip
    import io
    import tarfile

    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w") as archive:
        for name, data in (("usr/lib/big", bytes(3 << 20)), ("etc/passwd", b"app:x:1234:1234::/:/bin/sh\n")):
            info = tarfile.TarInfo(name)
            info.size = len(data)
            archive.addfile(info, io.BytesIO(data))
    image = F.serve_image(faults, user="app", layers=[gzip.compress(buffer.getvalue())])
    ref = ref_at(faults, image)
    async with client(trusted(faults.host)) as c:
        fetched = await c.fetch(ref, deadline=soon())
        passwd = await c.read_file_from_layers(ref, fetched, "/etc/passwd", deadline=soon(), max_bytes=1 << 20)
    assert passwd == b"app:x:1234:1234::/:/bin/sh\n"


def _gone(pid: int) -> bool:
    """The process has exited (a zombie waiting for init counts: it runs no more)."""
    try:
        with open(f"/proc/{pid}/stat") as stat:
            return stat.read().rsplit(")", 1)[1].split()[0] == "Z"
    except FileNotFoundError:
        return True


async def test_a_credential_helper_still_running_at_the_deadline_is_killed_with_its_children(
        faults: F.Faults, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import asyncio
    import os
    import stat

    pids = tmp_path / "pids"
    program = tmp_path / "docker-credential-slow"
    program.write_text("#!/usr/bin/env python3\nimport os, subprocess, sys, time\n"
                       'child = subprocess.Popen(["sleep", "30"])\n'
                       f"open({str(pids)!r} + '.tmp', 'w').write(f'{{os.getpid()}} {{child.pid}}')\n"
                       f"os.rename({str(pids)!r} + '.tmp', {str(pids)!r})\ntime.sleep(30)\n")
    program.chmod(program.stat().st_mode | stat.S_IEXEC)
    monkeypatch.setenv("PATH", f"{tmp_path}{os.pathsep}{os.environ['PATH']}")
    image = F.serve_image(faults, wrap=lambda b: F.require_basic(REGISTRY_USER, REGISTRY_PASSWORD, b))
    async with client(trusted(faults.host), credentials=Credentials(helpers={faults.host: "slow"})) as c:
        fetch = asyncio.ensure_future(c.fetch(ref_at(faults, image), deadline=soon(60)))
        for _ in range(500):  # the helper is a Python program: wait until it has started its child
            if pids.exists() or fetch.done():
                break
            await asyncio.sleep(0.02)
        fetch.cancel()  # what a caller's deadline does
        with pytest.raises(asyncio.CancelledError):
            await fetch
    started = [int(pid) for pid in pids.read_text().split()]
    for _ in range(250):
        if all(_gone(pid) for pid in started):
            break
        await asyncio.sleep(0.02)
    assert len(started) == 2 and all(_gone(pid) for pid in started)


async def test_an_endpoint_that_breaks_the_parser_falls_through_to_the_origin(faults: F.Faults) -> None:
    image = F.serve_image(faults, repo="library/nginx", tag="1")
    mirror = F.Faults().start()
    try:
        deep = b"[" * 100_000
        digest = F.digest_of(deep)
        mirror.route("/v2/", F.respond(200, b"{}"))
        for path in ("/v2/library/nginx/manifests/1", f"/v2/library/nginx/manifests/{digest}"):
            mirror.route(path, F.respond(200, deep, {"Docker-Content-Digest": digest}))
        settings = trusted(faults.host, mirror.host, mirrors={faults.host: (mirror.host, "http://127.0.0.1:port")})
        async with client(settings) as c:
            fetched = await c.fetch(ref_at(faults, image), deadline=soon())
    finally:
        mirror.stop()
    assert fetched.config.user == "1000" and mirror.requests("/v2/library/nginx/manifests/1") != []


@pytest.mark.parametrize("token", ["a\r\nX-Injected: 1", "t\u00e9st", "two words"])
async def test_a_token_that_cannot_be_a_header_is_an_auth_error(faults: F.Faults, token: str) -> None:
    image = F.serve_image(faults)
    faults.route("/v2/", F.challenge(f'Bearer realm="http://{faults.host}/token",service="s"'))
    faults.route("/token", F.respond(200, json.dumps({"token": token}).encode(), TOKEN_JSON))
    async with client(trusted(faults.host)) as c:
        error = await fails_in_time(lambda d: c.fetch(ref_at(faults, image), deadline=d))
    assert error.reason == "auth" and "unusable token" in str(error)
    assert faults.requests(image.tag_path) == []


@pytest.mark.parametrize(("entries", "platform", "wanted"), [
    ((("linux", "arm", ""), ("linux", "arm64", "")), "linux/arm/v7", 1),  # arm without a variant is v7
    ((("linux", "arm", "v6"), ("linux", "arm", "")), "linux/arm", 2),
    ((("linux", "armel", ""), ("linux", "arm", "v7")), "linux/arm", 2),  # armel is v6: not the default
    ((("linux", "armel", ""), ("linux", "arm", "v7")), "linux/arm/v6", 1),
    ((("linux", "armhf", ""), ("linux", "arm", "v6")), "linux/arm/v7", 1),
    ((("linux", "arm", "v6"),), "linux/arm", 1),  # a v7 machine runs v6 images, as containerd's matcher allows
])
def test_arm_variants_are_read_as_containerd_reads_them(entries: tuple[tuple[str, str, str], ...], platform: str,
                                                        wanted: int) -> None:
    assert pick_platform(_index(*entries), platform)["digest"] == "sha256:" + f"{wanted:064x}"


def test_an_arm_v6_machine_does_not_take_a_v7_image() -> None:
    with pytest.raises(RegistryError) as caught:
        pick_platform(_index(("linux", "arm", ""), ("linux", "armhf", "")), "linux/arm/v6", subject="app:1")
    assert caught.value.reason == "not-found" and "linux/arm/v7" in str(caught.value)


async def test_an_anonymous_plain_http_realm_of_an_https_registry_is_refused(tls_registry: TLSRegistry,
                                                                              pushed_tls: None) -> None:
    faults = F.Faults().start()
    try:
        host = tls_registry.registry.host
        import ssl as _ssl

        transport = _RewriteFirstPing(faults, LoopbackOnly(verify=_ssl.create_default_context(
            cafile=str(tls_registry.ca_file))))
        async with client(ImagesSettings(allowed_registries=(host, faults.host)), transport=transport) as c:
            error = await fails_in_time(lambda d: c.fetch(parse_normalized_named(f"{host}/tls/app:1"), deadline=d))
    finally:
        faults.stop()
    assert error.reason == "blocked" and "plain HTTP" in str(error) and "insecure_registries" in str(error)
    assert faults.requests("/token") == []
