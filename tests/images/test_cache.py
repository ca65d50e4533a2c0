"""The image-config cache: dedup, TTLs, negative results, LRU bounds, the on-disk cache, and what each costs.

Request counts are read from the real registry's access log (architecture §6); the stand-in client below is only
used where the registry cannot produce the situation on demand (a slow call, a failure that later heals).
"""

from __future__ import annotations

import asyncio
import json
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from admission.errors import RegistryError
from admission import reference
from admission.images.cache import _FORMAT as FORMAT  # the on-disk layout version in force
from admission.images.cache import DiskCache, ImageResolver, MemoryCache, default_cache_dir, passwd_uid
from admission.images.enrich import resolve_sync
from admission.model import ImageConfig
from admission.images.settings import ImagesSettings
from admission.sources import kubernetes
from tests.images import oci
from tests.images.registry import Registry

PASSWD = "root:x:0:0:root:/root:/bin/sh\nappuser:x:1001:1001::/home/appuser:/bin/sh\n"
D1 = "sha256:" + "1" * 64
D2 = "sha256:" + "2" * 64
D3 = "sha256:" + "3" * 64
#: A tag never seen: HEAD it, GET its manifest by digest, GET the config blob.
COLD = Counter({"HEAD manifest": 1, "GET manifest": 1, "GET blob": 1})



@pytest.fixture(autouse=True)
def _no_docker_login(monkeypatch: pytest.MonkeyPatch, tmp_path_factory: pytest.TempPathFactory) -> None:
    """resolve_sync reads the docker CLI's config like docker does; this machine's must not change a test."""
    monkeypatch.setenv("DOCKER_CONFIG", str(tmp_path_factory.mktemp("docker-config")))

# --- a stand-in at the client seam ------------------------------------------------------------------------


@dataclass
class FakeFetched:
    config: ImageConfig
    manifest_digest: str
    index_digest: str | None = None
    layers: tuple[str, ...] = ()


@dataclass
class FakeClient:
    """Answers from `tags` (name:tag -> digest) and `configs` (digest -> user); counts calls and concurrency."""

    tags: dict[str, str] = field(default_factory=dict)
    configs: dict[str, str] = field(default_factory=dict)
    index: dict[str, str] = field(default_factory=dict)  # index digest -> platform manifest digest
    fail: dict[str, RegistryError] = field(default_factory=dict)  # name:tag -> error raised once each call
    delay: float = 0.0
    passwd: bytes | None = None
    calls: Counter[str] = field(default_factory=Counter)
    active: int = 0
    peak: int = 0

    async def _enter(self, what: str, ref: reference.Reference) -> None:
        self.calls[what] += 1
        self.active += 1
        self.peak = max(self.peak, self.active)
        try:
            await asyncio.sleep(self.delay)
        finally:
            self.active -= 1
        error = self.fail.get(f"{ref.name}:{ref.tag}")
        if error is not None:
            raise error

    def _digest_of(self, ref: reference.Reference) -> str:
        digest = self.tags.get(f"{ref.name}:{ref.tag}")
        if digest is None:
            raise RegistryError(f"{ref}: manifest unknown", reason="not-found")
        return digest

    async def admit(self, ref: reference.Reference, *, deadline: float, settings: ImagesSettings | None = None) -> None:
        pass  # the gates are the real client's (tests/images/test_gates.py); nothing here is refused

    async def resolve_digest(self, ref: reference.Reference, *, deadline: float,
                             settings: ImagesSettings | None = None) -> str:
        await self._enter("head", ref)
        return self._digest_of(ref)

    async def fetch(self, ref: reference.Reference, *, deadline: float, digest: str | None = None,
                    settings: ImagesSettings | None = None) -> FakeFetched:
        await self._enter("fetch", ref)
        top = digest or ref.digest or self._digest_of(ref)
        manifest = self.index.get(top, top)
        if manifest not in self.configs:
            raise RegistryError(f"{ref}: manifest unknown", reason="not-found")
        config = ImageConfig(reference=str(ref), digest=manifest, user=self.configs[manifest])
        return FakeFetched(config, manifest, top if top != manifest else None)

    async def read_file_from_layers(self, ref: reference.Reference, fetched: object, path: str, *, deadline: float,
                                    max_bytes: int, settings: ImagesSettings | None = None) -> bytes | None:
        await self._enter("layers", ref)
        return self.passwd


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def soon(seconds: float = 10.0) -> float:
    return time.monotonic() + seconds


def run(coro):
    return asyncio.run(coro)


SETTINGS = ImagesSettings(tag_ttl=300)


# --- stand-in tests: what the real registry cannot be made to do on demand ------------------------------


def test_lookups_on_one_registry_never_exceed_its_concurrency_limit() -> None:
    client = FakeClient(tags={f"reg.example/app{i}:1": D1 for i in range(30)}, configs={D1: "1000"}, delay=0.02)
    resolver = ImageResolver(client, settings=SETTINGS, per_registry=4)

    async def go() -> None:
        await asyncio.gather(*(resolver.config_for(f"reg.example/app{i}:1", deadline=soon()) for i in range(30)))

    run(go())
    assert client.calls["fetch"] == 30
    assert client.peak == 4


def test_other_registries_are_not_held_up_by_a_busy_one() -> None:
    tags = {f"a.example/app{i}:1": D1 for i in range(8)} | {f"b.example/app{i}:1": D1 for i in range(8)}
    client = FakeClient(tags=tags, configs={D1: "1000"}, delay=0.02)
    resolver = ImageResolver(client, settings=SETTINGS, per_registry=4)

    async def go() -> None:
        await asyncio.gather(*(resolver.config_for(name, deadline=soon()) for name in tags))

    run(go())
    assert client.peak == 8  # 4 per registry, two registries


def test_answers_fetched_with_one_credential_are_not_served_to_another() -> None:
    client = FakeClient(tags={"reg.example/app:1": D1}, configs={D1: "1000"})
    resolver = ImageResolver(client, settings=SETTINGS)

    async def go() -> None:
        await resolver.config_for("reg.example/app:1", deadline=soon(), cred_key="team-a")
        await resolver.config_for("reg.example/app:1", deadline=soon(), cred_key="team-a")
        await resolver.config_for("reg.example/app:1", deadline=soon(), cred_key="team-b")

    run(go())
    assert client.calls["fetch"] == 2
    assert resolver.stats["hit"] == 1


def test_a_timeout_is_not_cached_as_a_failure() -> None:
    client = FakeClient(tags={"reg.example/app:1": D1}, configs={D1: "1000"},
                        fail={"reg.example/app:1": RegistryError("slow", reason="timeout")})
    resolver = ImageResolver(client, settings=SETTINGS)

    async def go() -> ImageConfig:
        with pytest.raises(RegistryError) as caught:
            await resolver.config_for("reg.example/app:1", deadline=soon())
        assert caught.value.reason == "timeout"
        client.fail.clear()
        return await resolver.config_for("reg.example/app:1", deadline=soon())

    assert run(go()).user == "1000"
    assert client.calls == Counter({"head": 2, "fetch": 1})  # the failed HEAD was asked again


def test_a_policy_refusal_is_cached_longer_than_a_registry_failure() -> None:
    clock = Clock()
    client = FakeClient(fail={"reg.example/blocked:1": RegistryError("refused", reason="blocked"),
                              "reg.example/broken:1": RegistryError("HTTP 500", reason="error")})
    resolver = ImageResolver(client, settings=SETTINGS, clock=clock, negative_ttl=30, blocked_ttl=300)

    async def ask(image: str) -> str:
        try:
            await resolver.config_for(image, deadline=soon())
        except RegistryError as exc:
            return exc.reason
        return "ok"

    async def go() -> list[tuple[str, str]]:
        out = [(await ask("reg.example/blocked:1"), await ask("reg.example/broken:1"))]
        clock.now += 31
        out.append((await ask("reg.example/blocked:1"), await ask("reg.example/broken:1")))
        clock.now += 300
        out.append((await ask("reg.example/blocked:1"), await ask("reg.example/broken:1")))
        return out

    assert run(go()) == [("blocked", "error")] * 3
    # broken: asked at t=0, t=31, t=331; blocked: at t=0 and t=331 only
    assert client.calls == Counter({"head": 5})


def test_a_caller_whose_deadline_passes_does_not_cancel_the_lookup_others_wait_for() -> None:
    client = FakeClient(tags={"reg.example/app:1": D1}, configs={D1: "1000"}, delay=0.3)
    resolver = ImageResolver(client, settings=SETTINGS)

    async def go() -> tuple[str, str]:
        hasty = asyncio.ensure_future(resolver.config_for("reg.example/app:1", deadline=soon(0.05)))
        patient = asyncio.ensure_future(resolver.config_for("reg.example/app:1", deadline=soon(5)))
        outcome = await asyncio.gather(hasty, patient, return_exceptions=True)
        first = outcome[0].reason if isinstance(outcome[0], RegistryError) else "ok"
        second = outcome[1].user if isinstance(outcome[1], ImageConfig) else repr(outcome[1])
        return first, second

    assert run(go()) == ("timeout", "1000")
    # The first lookup ran under the hasty caller's deadline; the patient one tried again under its own.
    assert client.calls == Counter({"head": 2, "fetch": 1})


def test_an_invalid_reference_fails_without_a_registry_call() -> None:
    client = FakeClient()
    resolver = ImageResolver(client, settings=SETTINGS)
    with pytest.raises(RegistryError) as caught:
        run(resolver.config_for("Not A Reference", deadline=soon()))
    assert caught.value.reason == "error"
    assert "invalid image reference" in str(caught.value)
    assert sum(client.calls.values()) == 0


def test_a_reference_without_tag_is_looked_up_as_latest() -> None:
    client = FakeClient(tags={"reg.example/app:latest": D1}, configs={D1: "0"})
    resolver = ImageResolver(client, settings=SETTINGS)
    config = run(resolver.config_for("reg.example/app", deadline=soon()))
    assert (config.user, config.reference) == ("0", "reg.example/app")


def test_a_pin_by_the_platform_manifest_digest_reuses_the_config_reached_through_its_index() -> None:
    client = FakeClient(tags={"reg.example/app:1": D2}, index={D2: D3}, configs={D3: "1000"})
    resolver = ImageResolver(client, settings=SETTINGS)

    async def go() -> ImageConfig:
        await resolver.config_for("reg.example/app:1", deadline=soon())
        return await resolver.config_for(f"reg.example/app@{D3}", deadline=soon())

    assert run(go()).user == "1000"
    assert client.calls["fetch"] == 1


def test_a_digest_cached_for_one_repository_is_fetched_again_for_another() -> None:
    client = FakeClient(configs={D1: "1000"})
    resolver = ImageResolver(client, settings=SETTINGS)

    async def go() -> None:
        await resolver.config_for(f"reg.example/one@{D1}", deadline=soon())
        await resolver.config_for(f"reg.example/two@{D1}", deadline=soon())

    run(go())
    assert client.calls["fetch"] == 2


def test_a_corrupt_disk_cache_file_is_ignored_and_replaced(tmp_path: Path) -> None:
    client = FakeClient(configs={D1: "1000"})
    image = f"reg.example/app@{D1}"
    run(ImageResolver(client, settings=SETTINGS, disk=DiskCache(tmp_path)).config_for(image, deadline=soon()))
    files = list((tmp_path / FORMAT / "configs").glob("*.json"))
    assert len(files) == 1
    for garbage in (b"{not json", b'{"key": "someone else"}', b"\xff\xfe", b""):
        files[0].write_bytes(garbage)
        config = run(ImageResolver(client, settings=SETTINGS, disk=DiskCache(tmp_path)).config_for(image, deadline=soon()))
        assert config.user == "1000"
        assert json.loads(files[0].read_text())["config"]["user"] == "1000"
    assert client.calls["fetch"] == 5


def test_a_config_file_with_the_wrong_shape_is_ignored(tmp_path: Path) -> None:
    client = FakeClient(configs={D1: "1000"})
    image = f"reg.example/app@{D1}"
    run(ImageResolver(client, settings=SETTINGS, disk=DiskCache(tmp_path)).config_for(image, deadline=soon()))
    path = next((tmp_path / FORMAT / "configs").glob("*.json"))
    body = json.loads(path.read_text())
    body["config"]["env"] = "PATH=/bin"  # a string where a list belongs
    path.write_text(json.dumps(body))
    run(ImageResolver(client, settings=SETTINGS, disk=DiskCache(tmp_path)).config_for(image, deadline=soon()))
    assert client.calls["fetch"] == 2


def test_an_unwritable_cache_folder_only_disables_the_disk_cache(tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("not a folder")
    client = FakeClient(configs={D1: "1000"})
    resolver = ImageResolver(client, settings=SETTINGS, disk=DiskCache(blocker))
    assert run(resolver.config_for(f"reg.example/app@{D1}", deadline=soon())).user == "1000"


def test_the_cache_folder_follows_xdg_cache_home(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    assert default_cache_dir() == tmp_path / "admission"
    monkeypatch.setenv("XDG_CACHE_HOME", "relative/path")  # the XDG spec says to ignore relative paths
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    assert default_cache_dir() == tmp_path / "home" / ".cache" / "admission"
    monkeypatch.delenv("XDG_CACHE_HOME")
    assert default_cache_dir() == tmp_path / "home" / ".cache" / "admission"


def test_a_failed_passwd_read_keeps_the_config_and_is_tried_again_later() -> None:
    client = FakeClient(configs={D1: "appuser"}, passwd=PASSWD.encode())
    settings = ImagesSettings(resolve_user_names=True)
    resolver = ImageResolver(client, settings=settings)
    original = client.read_file_from_layers
    attempts = Counter[str]()

    async def flaky(*args, **kwargs):
        attempts["n"] += 1
        if attempts["n"] == 1:
            raise RegistryError("layer blob unreachable", reason="error")
        return await original(*args, **kwargs)

    client.read_file_from_layers = flaky  # type: ignore[method-assign]

    async def go() -> tuple[int | None, int | None]:
        first = await resolver.config_for(f"reg.example/app@{D1}", deadline=soon())
        second = await resolver.config_for(f"reg.example/app@{D1}", deadline=soon())
        return first.user_uid, second.user_uid

    assert run(go()) == (None, 1001)
    assert attempts["n"] == 2


def test_layers_over_the_passwd_budget_are_not_downloaded_again() -> None:
    client = FakeClient(configs={D1: "appuser"})

    async def too_large(*args, **kwargs):
        client.calls["layers"] += 1
        raise RegistryError("layers exceed the budget for reading /etc/passwd", reason="too-large")

    client.read_file_from_layers = too_large  # type: ignore[method-assign]
    resolver = ImageResolver(client, settings=ImagesSettings(resolve_user_names=True))

    async def go() -> list[int | None]:
        return [(await resolver.config_for(f"reg.example/app@{D1}", deadline=soon())).user_uid for _ in range(3)]

    assert run(go()) == [None, None, None]
    assert client.calls == Counter({"fetch": 1, "layers": 1})


def test_an_unexpected_client_failure_is_cached_like_a_registry_error() -> None:
    # The real client turns its own failures into RegistryError; this is the resolver's guard for any other.
    class Broken(FakeClient):
        async def fetch(self, ref, *, deadline, digest=None, settings=None):  # type: ignore[no-untyped-def]
            self.calls["fetch"] += 1
            raise RecursionError("maximum recursion depth exceeded")

    client = Broken(tags={"reg.example/app:1": D1})
    resolver = ImageResolver(client, settings=SETTINGS)

    async def go() -> list[str]:
        reasons = []
        for _ in range(2):
            with pytest.raises(RegistryError) as caught:
                await resolver.config_for("reg.example/app:1", deadline=soon())
            reasons.append(f"{caught.value.reason}: {caught.value}")
        return reasons

    assert run(go()) == ["error: RecursionError: maximum recursion depth exceeded"] * 2
    assert client.calls == Counter({"head": 1, "fetch": 1})


@pytest.mark.parametrize("layer", [b"\x28\xb5\x2f\xfd" + bytes(64), b"this is not a tar archive" * 40],
                         ids=["zstd", "not-a-tar"])
def test_a_layer_that_can_never_be_read_is_not_downloaded_again(layer: bytes) -> None:
    from admission.images.registry import RegistryClient
    from tests.images import faults as F

    server = F.Faults().start()
    try:
        image = F.serve_image(server, user="appuser", layers=[layer])
        settings = ImagesSettings(allowed_registries=(server.host,), insecure_registries=(server.host,),
                                  resolve_user_names=True)
        resolver = ImageResolver(RegistryClient(settings), settings=settings)
        name = f"{server.host}/{image.repo}@{image.manifest_digest}"
        configs = run(resolve_with(resolver, [name, name]))
    finally:
        server.stop()
    assert [(c.user, c.user_uid) for c in configs] == [("appuser", None)] * 2
    assert len(server.requests(image.layer_paths[0])) == 1 and resolver.stats["passwd_error"] == 1


def test_passwd_lookup_takes_the_first_matching_line_and_refuses_non_numeric_uids() -> None:
    data = b"root:x:0:0::/:/bin/sh\napp:x:1001:1001::/:/bin/sh\napp:x:2002:2002::/:/bin/sh\nodd:x:abc:1::/:\n"
    assert passwd_uid(data, "app") == 1001
    assert passwd_uid(data, "odd") is None
    assert passwd_uid(data, "missing") is None
    assert passwd_uid(None, "app") is None


def test_memory_lru_evicts_the_least_recently_used_entry_first() -> None:
    cache = MemoryCache(max_entries=2)
    from admission.images.cache import CachedConfig

    for name in ("a", "b"):
        cache.configs.put(name, CachedConfig(ImageConfig(reference=name, digest=None, user="1")))
    assert cache.configs.get("a") is not None  # a is now the most recent
    cache.configs.put("c", CachedConfig(ImageConfig(reference="c", digest=None, user="1")))
    assert ("a" in cache.configs, "b" in cache.configs, "c" in cache.configs) == (True, False, True)


def test_memory_lru_keeps_its_byte_budget_and_skips_a_value_larger_than_it() -> None:
    from admission.images.cache import CachedConfig, config_size

    def big(name: str, size: int) -> CachedConfig:
        return CachedConfig(ImageConfig(reference=name, digest=None, user="1", labels={"x": "y" * size}))

    one = config_size(big("a", 10_000).config)
    cache = MemoryCache(max_bytes=2 * one + 10)
    for name in ("a", "b", "c"):
        cache.configs.put(name, big(name, 10_000))
    assert ("a" in cache.configs, "b" in cache.configs, "c" in cache.configs) == (False, True, True)
    assert cache.configs.bytes <= cache.configs.max_bytes
    cache.configs.put("huge", big("huge", 100_000))
    assert "huge" not in cache.configs and len(cache.configs) == 2


# --- against the real registry and the real client -------------------------------------------------------


@dataclass(frozen=True)
class Pushed:
    host: str
    plain: str  # user "1000", no /etc/passwd
    named: str  # user "appuser", /etc/passwd in a layer
    big: tuple[str, str, str]  # the same image (a ~20 KB label) in three repositories


@pytest.fixture(scope="module")
def pushed(registry: Registry, layout: Path) -> Pushed:
    plain = oci.build(layout, "cachetest-plain", user="1000")
    named = oci.build(layout, "cachetest-named", user="appuser", files={"/etc/passwd": PASSWD})
    big = oci.build(layout, "cachetest-big", user="1000", labels={"blob": "x" * 20_000})
    oci.push(plain, registry.host, "cachetest/plain:1")
    oci.push(named, registry.host, "cachetest/named:1")
    for i in range(3):
        oci.push(big, registry.host, f"cachetest/big{i}:1")
    h = registry.host
    return Pushed(h, f"{h}/cachetest/plain:1", f"{h}/cachetest/named:1", tuple(f"{h}/cachetest/big{i}:1" for i in range(3)))  # type: ignore[arg-type]


def settled(registry: Registry) -> int:
    """registry.mark() once the access log has caught up: it is written after each response is sent."""
    count = registry.mark()
    while True:
        time.sleep(0.05)
        now = registry.mark()
        if now == count:
            return count
        count = now


def settings_for(registry: Registry, **changes: object) -> ImagesSettings:
    return ImagesSettings(allowed_registries=(registry.host,), insecure_registries=(registry.host,), **changes)  # type: ignore[arg-type]


def real_client(settings: ImagesSettings):
    from admission.images.registry import RegistryClient

    return RegistryClient(settings)


def cost(entries: list[tuple[str, str, int]], repo: str | None = None) -> Counter[str]:
    """Requests by kind: HEAD/GET manifest, GET blob (per repository when `repo` is given)."""
    out: Counter[str] = Counter()
    for method, path, _status in entries:
        if repo is not None and not path.startswith(f"/v2/{repo}/"):
            continue
        if "/manifests/" in path:
            out[f"{method} manifest"] += 1
        elif "/blobs/" in path:
            out[f"{method} blob"] += 1
        else:
            out[f"{method} other"] += 1
    return out


async def resolve_with(resolver: ImageResolver, images: list[str]) -> list[ImageConfig]:
    try:
        return [await resolver.config_for(image, deadline=soon()) for image in images]
    finally:
        await resolver.client.aclose()  # type: ignore[attr-defined]


def deployment(image: str, count: int) -> str:
    containers = "".join(f"      - name: c{i}\n        image: {image}\n" for i in range(count))
    return (f"apiVersion: apps/v1\nkind: Deployment\nmetadata: {{name: wide}}\nspec:\n  template:\n    spec:\n"
            f"      containers:\n{containers}")


def test_twenty_containers_on_one_image_cost_one_manifest_and_one_config_then_nothing_with_a_warm_disk_cache(
        registry: Registry, pushed: Pushed, tmp_path: Path) -> None:
    workloads = kubernetes.load_text(deployment(pushed.plain, 20), file="wide.yaml").workloads
    settings = settings_for(registry)
    mark = settled(registry)
    cold = resolve_sync(workloads, settings=settings, cache_dir=str(tmp_path), no_cache=False, registry_config=None)
    spent = cost(registry.since(mark), "cachetest/plain")
    configs = [c.image_config for c in cold[0].containers]
    assert [c.user if c else None for c in configs] == ["1000"] * 20
    assert configs[0] is not None and configs[0].config_digest
    # One HEAD resolves the tag, one GET fetches its manifest by digest, one GET the config blob.
    assert spent == COLD
    assert registry.since(mark)[-1][1].endswith(configs[0].config_digest)

    mark = settled(registry)
    warm = resolve_sync(workloads, settings=settings, cache_dir=str(tmp_path), no_cache=False, registry_config=None)
    assert cost(registry.since(mark)) == Counter()
    assert [c.image_config for c in warm[0].containers] == configs


def test_no_cache_means_nothing_is_written_or_read_on_disk(registry: Registry, pushed: Pushed, tmp_path: Path,
                                                           monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    workloads = kubernetes.load_text(deployment(pushed.plain, 1), file="one.yaml").workloads
    for _ in range(2):
        mark = settled(registry)
        resolve_sync(workloads, settings=settings_for(registry), cache_dir=None, no_cache=True, registry_config=None)
        assert cost(registry.since(mark), "cachetest/plain") == COLD
    assert not any(tmp_path.iterdir())


def test_without_cache_dir_the_xdg_cache_folder_is_used(registry: Registry, pushed: Pushed, tmp_path: Path,
                                                        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    workloads = kubernetes.load_text(deployment(pushed.plain, 1), file="one.yaml").workloads
    resolve_sync(workloads, settings=settings_for(registry), cache_dir=None, no_cache=False, registry_config=None)
    assert list((tmp_path / "admission" / FORMAT / "configs").glob("*.json"))
    assert list((tmp_path / "admission" / FORMAT / "tags").glob("*.json"))


def test_a_hundred_concurrent_lookups_of_an_unseen_image_cost_one_resolution_and_one_config_fetch(
        registry: Registry, pushed: Pushed) -> None:
    resolver = ImageResolver(real_client(settings_for(registry)), settings=settings_for(registry))

    async def go() -> list[ImageConfig]:
        try:
            return await asyncio.gather(*(resolver.config_for(pushed.plain, deadline=soon()) for _ in range(100)))
        finally:
            await resolver.client.aclose()  # type: ignore[attr-defined]

    mark = settled(registry)
    configs = run(go())
    assert {c.user for c in configs} == {"1000"}
    assert cost(registry.since(mark), "cachetest/plain") == COLD
    assert (resolver.stats["miss"], resolver.stats["dedup"]) == (1, 99)


def test_an_expired_tag_costs_a_head_but_no_config_fetch_when_the_digest_is_unchanged(
        registry: Registry, pushed: Pushed) -> None:
    clock = Clock()
    settings = settings_for(registry, tag_ttl=300)
    resolver = ImageResolver(real_client(settings), settings=settings, clock=clock)

    async def go() -> list[Counter[str]]:
        spent = []
        try:
            for step in (0, 299, 2):  # t=0 cold, t=299 within the TTL, t=301 expired
                clock.now += step
                mark = settled(registry)
                assert (await resolver.config_for(pushed.plain, deadline=soon())).user == "1000"
                spent.append(cost(registry.since(mark), "cachetest/plain"))
        finally:
            await resolver.client.aclose()  # type: ignore[attr-defined]
        return spent

    assert run(go()) == [COLD, Counter(), Counter({"HEAD manifest": 1})]


def test_a_warm_disk_cache_with_an_expired_tag_costs_one_head(registry: Registry, pushed: Pushed,
                                                              tmp_path: Path) -> None:
    settings = settings_for(registry, tag_ttl=60)
    wall = Clock()

    def resolver() -> ImageResolver:
        return ImageResolver(real_client(settings), settings=settings, disk=DiskCache(tmp_path), wall=wall)

    run(resolve_with(resolver(), [pushed.plain]))
    wall.now += 30
    mark = settled(registry)
    run(resolve_with(resolver(), [pushed.plain]))
    assert cost(registry.since(mark)) == Counter()
    wall.now += 31
    mark = settled(registry)
    run(resolve_with(resolver(), [pushed.plain]))
    assert cost(registry.since(mark), "cachetest/plain") == Counter({"HEAD manifest": 1})


def test_a_missing_image_is_asked_once_within_the_negative_ttl(registry: Registry, pushed: Pushed) -> None:
    clock = Clock()
    settings = settings_for(registry)
    resolver = ImageResolver(real_client(settings), settings=settings, clock=clock, negative_ttl=30)
    missing = f"{pushed.host}/cachetest/missing:1"

    async def ask() -> str:
        try:
            await resolver.config_for(missing, deadline=soon())
        except RegistryError as exc:
            return exc.reason
        return "ok"

    async def go() -> list[tuple[str, Counter[str]]]:
        out = []
        try:
            for step in (0, 29, 2):
                clock.now += step
                mark = settled(registry)
                out.append((await ask(), cost(registry.since(mark), "cachetest/missing")))
        finally:
            await resolver.client.aclose()  # type: ignore[attr-defined]
        return out

    answers = run(go())
    assert [reason for reason, _ in answers] == ["not-found"] * 3
    asked = [sum(spent.values()) for _, spent in answers]
    assert asked[0] >= 1 and asked[1] == 0 and asked[2] == asked[0]


def test_the_lru_evicts_by_entries(registry: Registry, pushed: Pushed) -> None:
    settings = settings_for(registry, tag_ttl=3600)
    resolver = ImageResolver(real_client(settings), settings=settings, memory=MemoryCache(max_entries=2))
    a, b, c = pushed.big

    async def go() -> Counter[str]:
        try:
            for image in (a, b, a, c):  # a is used again before c arrives, so b is the oldest
                await resolver.config_for(image, deadline=soon())
            mark = settled(registry)
            await resolver.config_for(a, deadline=soon())
            assert cost(registry.since(mark)) == Counter()
            mark = settled(registry)
            await resolver.config_for(b, deadline=soon())
            return cost(registry.since(mark), "cachetest/big1")
        finally:
            await resolver.client.aclose()  # type: ignore[attr-defined]

    # The tag is still known (tags have their own LRU), so only the config is fetched again, by digest.
    assert run(go()) == Counter({"GET manifest": 1, "GET blob": 1})


def test_the_lru_evicts_by_bytes(registry: Registry, pushed: Pushed) -> None:
    settings = settings_for(registry, tag_ttl=3600)
    memory = MemoryCache(max_entries=100, max_bytes=50_000)  # each config carries a 20 KB label: two fit
    resolver = ImageResolver(real_client(settings), settings=settings, memory=memory)
    a, b, c = pushed.big

    async def go() -> tuple[int, Counter[str], Counter[str]]:
        try:
            for image in (a, b, c):
                await resolver.config_for(image, deadline=soon())
            kept = len(memory.configs)
            mark = settled(registry)
            await resolver.config_for(c, deadline=soon())
            newest = cost(registry.since(mark))
            mark = settled(registry)
            await resolver.config_for(a, deadline=soon())
            return kept, newest, cost(registry.since(mark), "cachetest/big0")
        finally:
            await resolver.client.aclose()  # type: ignore[attr-defined]

    kept, newest, oldest = run(go())
    assert kept == 2 and memory.configs.bytes <= 50_000
    assert newest == Counter()
    assert oldest == Counter({"GET manifest": 1, "GET blob": 1})  # the tag is still known: no HEAD


def test_a_named_user_gets_its_uid_from_etc_passwd_in_a_layer_once_per_digest(
        registry: Registry, pushed: Pushed, tmp_path: Path) -> None:
    settings = settings_for(registry, resolve_user_names=True)

    def resolver() -> ImageResolver:
        return ImageResolver(real_client(settings), settings=settings, disk=DiskCache(tmp_path))

    mark = settled(registry)
    (config,) = run(resolve_with(resolver(), [pushed.named]))
    spent = cost(registry.since(mark), "cachetest/named")
    assert (config.user, config.user_uid) == ("appuser", 1001)
    # HEAD + manifest + config + the one layer (umoci insert made a single layer holding /etc/passwd)
    assert spent == COLD + Counter({"GET blob": 1})
    mark = settled(registry)
    (again,) = run(resolve_with(resolver(), [pushed.named]))
    assert again.user_uid == 1001 and cost(registry.since(mark)) == Counter()


def test_without_resolve_user_names_no_layer_is_read(registry: Registry, pushed: Pushed) -> None:
    settings = settings_for(registry)
    mark = settled(registry)
    (config,) = run(resolve_with(ImageResolver(real_client(settings), settings=settings), [pushed.named]))
    assert (config.user, config.user_uid) == ("appuser", None)
    assert cost(registry.since(mark), "cachetest/named") == COLD
