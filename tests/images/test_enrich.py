"""Enrichment: which containers get an image config, and that every failure becomes a recorded reason."""

from __future__ import annotations

import asyncio
import socket
import threading
import time
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path

import pytest

from admission.errors import InputError, RegistryError
from admission.images.cache import ImageResolver
from admission.images.enrich import enrich, offline, resolve_sync
from admission.model import Container, ImageConfig, Located, Origin, Workload
from admission.images.settings import ImagesSettings
from admission.sources import dockerfile, kubernetes
from admission.sources.compose import load_project
from tests.images import oci
from tests.images.registry import Registry
from tests.images.test_cache import D1, D2, FakeClient, settled

SETTINGS = ImagesSettings()


def soon(seconds: float = 10.0) -> float:
    return time.monotonic() + seconds


def k8s(text: str) -> list[Workload]:
    return kubernetes.load_text(text, file="pod.yaml").workloads


def pod(*images: str, run_as_user: int | None = None) -> str:
    sc = f"    securityContext: {{runAsUser: {run_as_user}}}\n" if run_as_user is not None else ""
    body = "".join(f"  - name: c{i}\n    image: {image}\n{sc}" for i, image in enumerate(images))
    return f"apiVersion: v1\nkind: Pod\nmetadata: {{name: p}}\nspec:\n  containers:\n{body}"


def compose(tmp_path: Path, text: str, files: dict[str, str] | None = None) -> list[Workload]:
    for name, content in (files or {}).items():
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_text(content)
    (tmp_path / "compose.yaml").write_text(text)
    return load_project([str(tmp_path / "compose.yaml")], displays=["compose.yaml"], environ={}).workloads


def enriched(workloads: list[Workload], client: FakeClient, **kwargs: object) -> list[Workload]:
    resolver = ImageResolver(client, settings=SETTINGS)
    return asyncio.run(enrich(workloads, resolver, deadline=soon(), **kwargs))  # type: ignore[arg-type]


def only(workloads: list[Workload]) -> Container:
    (workload,) = workloads
    (container,) = workload.containers
    return container



@pytest.fixture(autouse=True)
def _no_docker_login(monkeypatch: pytest.MonkeyPatch, tmp_path_factory: pytest.TempPathFactory) -> None:
    """resolve_sync reads the docker CLI's config like docker does; this machine's must not change a test."""
    monkeypatch.setenv("DOCKER_CONFIG", str(tmp_path_factory.mktemp("docker-config")))

# --- which containers are resolved ------------------------------------------------------------------------


def test_kubernetes_containers_get_their_image_config_even_when_run_as_user_is_set() -> None:
    client = FakeClient(tags={"reg.example/app:1": D1}, configs={D1: "1000"})
    container = only(enriched(k8s(pod("reg.example/app:1", run_as_user=1000)), client))
    assert container.image_config is not None and container.image_config.user == "1000"
    assert container.image_config.reference == "reg.example/app:1"
    assert container.image_config_error is None


def test_identical_references_are_looked_up_once() -> None:
    client = FakeClient(tags={"reg.example/app:1": D1, "reg.example/other:2": D2}, configs={D1: "1000", D2: "2000"})
    workloads = k8s(pod("reg.example/app:1", "reg.example/other:2", "reg.example/app:1") + "---\n"
                    + pod("reg.example/app:1").replace("name: p", "name: q"))
    out = enriched(workloads, client)
    assert [c.image_config.user for w in out for c in w.containers] == ["1000", "2000", "1000", "1000"]  # type: ignore[union-attr]
    assert client.calls["fetch"] == 2


def test_a_compose_image_service_is_resolved(tmp_path: Path) -> None:
    client = FakeClient(tags={"reg.example/app:1": D1}, configs={D1: "1000"})
    container = only(enriched(compose(tmp_path, "services:\n  web:\n    image: reg.example/app:1\n"), client))
    assert container.image_config is not None and container.image_config.user == "1000"


def test_a_compose_build_with_a_readable_dockerfile_is_not_resolved_by_its_image_name(tmp_path: Path) -> None:
    client = FakeClient(tags={"reg.example/app:1": D1}, configs={D1: "0"})
    workloads = compose(tmp_path, "services:\n  web:\n    image: reg.example/app:1\n    build: .\n",
                        {"Dockerfile": "FROM reg.example/base:1\nUSER 1000\n"})
    container = only(enriched(workloads, client))
    assert (container.image_config, container.image_config_error, container.base_config) == (None, None, None)
    assert sum(client.calls.values()) == 0


def test_a_build_without_user_gets_the_config_of_the_base_image_it_inherits_the_user_from(tmp_path: Path) -> None:
    client = FakeClient(tags={"reg.example/base:1": D1}, configs={D1: "999"})
    workloads = compose(tmp_path, "services:\n  web:\n    image: reg.example/app:1\n    build: .\n",
                        {"Dockerfile": "FROM reg.example/base:1\nRUN true\n"})
    container = only(enriched(workloads, client))
    assert container.base_config is not None and container.base_config.user == "999"
    assert container.base_config.reference == "reg.example/base:1"
    assert container.image_config is None  # the built image is described by its Dockerfile, not looked up


def test_a_compose_user_makes_the_base_image_irrelevant(tmp_path: Path) -> None:
    client = FakeClient(tags={"reg.example/base:1": D1}, configs={D1: "999"})
    workloads = compose(tmp_path, "services:\n  web:\n    build: .\n    user: '1000'\n",
                        {"Dockerfile": "FROM reg.example/base:1\n"})
    container = only(enriched(workloads, client))
    assert (container.base_config, container.base_config_error) == (None, None)
    assert sum(client.calls.values()) == 0


def test_a_dockerfile_resolves_only_the_base_that_gives_its_user() -> None:
    text = "FROM reg.example/tools:1 AS tools\nFROM reg.example/base:1\nCOPY --from=tools /x /x\n"
    client = FakeClient(tags={"reg.example/base:1": D1, "reg.example/tools:1": D2}, configs={D1: "999", D2: "0"})
    container = only(enriched(dockerfile.load(text, file="Dockerfile"), client))
    assert container.base_config is not None and container.base_config.user == "999"
    assert client.calls["fetch"] == 1


def test_a_dockerfile_that_sets_a_user_resolves_nothing() -> None:
    client = FakeClient(tags={"reg.example/base:1": D1}, configs={D1: "0"})
    container = only(enriched(dockerfile.load("FROM reg.example/base:1\nUSER 1000\n", file="Dockerfile"), client))
    assert (container.base_config, container.base_config_error) == (None, None)
    assert sum(client.calls.values()) == 0


def test_image_workloads_keep_the_config_they_came_with() -> None:
    config = ImageConfig(reference="app.tar", digest=None, user="0")
    origin = Origin("app.tar", None, "")
    workload = Workload(source="image", kind="Image", name="app.tar", namespace=None, origin=origin,
                        containers=(Container(name="app", origin=origin, image=Located("reg.example/app:1", origin),
                                              image_config=config),), runtime=False)
    client = FakeClient(tags={"reg.example/app:1": D1}, configs={D1: "1000"})
    assert enriched([workload], client) == [workload]
    assert sum(client.calls.values()) == 0


def test_a_registry_config_that_does_not_exist_is_an_input_error(tmp_path: Path) -> None:
    with pytest.raises(InputError):
        resolve_sync(k8s(pod("reg.example/app:1")), settings=SETTINGS, cache_dir=None, no_cache=True,
                     registry_config=str(tmp_path / "missing.json"))


def test_offline_changes_nothing() -> None:
    workloads = k8s(pod("reg.example/app:1"))
    assert offline(workloads) == workloads


# --- failures become reasons --------------------------------------------------------------------------------


def test_registry_errors_become_the_reason_and_the_rest_of_the_workload_is_kept() -> None:
    client = FakeClient(fail={"reg.example/app:1": RegistryError("reg.example/app:1: unauthorized", reason="auth")})
    workloads = k8s(pod("reg.example/app:1"))
    out = enriched(workloads, client)
    container = only(out)
    assert container.image_config_error == "auth: reg.example/app:1: unauthorized"
    assert replace(container, image_config_error=None) == workloads[0].containers[0]
    assert replace(out[0], containers=workloads[0].containers) == workloads[0]


def test_an_unexpected_exception_becomes_an_error_reason() -> None:
    class Broken(FakeClient):
        async def fetch(self, ref, *, deadline, digest=None, settings=None):
            raise KeyError("mediaType")

    container = only(enriched(k8s(pod("reg.example/app:1")), Broken(tags={"reg.example/app:1": D1})))
    assert container.image_config_error == "error: KeyError: 'mediaType'"


def test_a_base_image_failure_is_recorded_as_the_base_config_error() -> None:
    client = FakeClient()
    container = only(enriched(dockerfile.load("FROM reg.example/base:1\n", file="Dockerfile"), client))
    assert container.base_config is None
    assert container.base_config_error is not None and container.base_config_error.startswith("not-found: ")


def test_what_is_not_done_by_the_deadline_is_a_timeout() -> None:
    class Slow(FakeClient):
        async def fetch(self, ref, *, deadline, digest=None, settings=None):
            if ref.path == "slow":
                await asyncio.sleep(60)
            return await super().fetch(ref, deadline=deadline, digest=digest, settings=settings)

    client = Slow(tags={"reg.example/slow:1": D1, "reg.example/fast:1": D2}, configs={D1: "1", D2: "2"})
    workloads = k8s(pod("reg.example/slow:1", "reg.example/fast:1"))
    resolver = ImageResolver(client, settings=SETTINGS)
    started = time.monotonic()
    out = asyncio.run(enrich(workloads, resolver, deadline=soon(0.3)))
    slow, fast = out[0].containers
    assert slow.image_config is None and slow.image_config_error is not None
    assert slow.image_config_error.startswith("timeout: ")
    assert fast.image_config is not None and fast.image_config.user == "2"
    assert time.monotonic() - started < 30  # it did not wait for the hanging lookup


def test_a_deadline_already_past_resolves_nothing_and_says_so() -> None:
    client = FakeClient(tags={"reg.example/app:1": D1}, configs={D1: "1"})
    resolver = ImageResolver(client, settings=SETTINGS)
    out = asyncio.run(enrich(k8s(pod("reg.example/app:1")), resolver, deadline=time.monotonic() - 1))
    assert only(out).image_config_error is not None and only(out).image_config_error.startswith("timeout: ")


# --- against the real registry -----------------------------------------------------------------------------


@pytest.fixture()
def silent_port() -> Iterator[int]:
    """A loopback port that accepts connections (the kernel's backlog) and never answers."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen(16)
        yield s.getsockname()[1]


def test_blocked_missing_and_silent_registries_each_become_their_reason(registry: Registry, layout: Path,
                                                                       silent_port: int, tmp_path: Path) -> None:
    oci.push(oci.build(layout, "enrichtest-ok", user="1000"), registry.host, "enrichtest/ok:1")
    silent = f"127.0.0.1:{silent_port}"
    settings = ImagesSettings(allowed_registries=(registry.host, silent), insecure_registries=(registry.host, silent))
    images = [f"{registry.host}/enrichtest/ok:1", "127.0.0.2:5000/unlisted/app:1",
              f"{registry.host}/enrichtest/missing:1", f"{silent}/hangs/app:1"]
    workloads = k8s(pod(*images))
    mark = settled(registry)
    out = resolve_sync(workloads, settings=settings, cache_dir=None, no_cache=True, registry_config=None,
                       deadline_s=1.5)
    ok, blocked, missing, hangs = out[0].containers
    assert ok.image_config is not None and ok.image_config.user == "1000" and ok.image_config_error is None
    assert blocked.image_config_error is not None and blocked.image_config_error.startswith("blocked: ")
    assert missing.image_config_error is not None and missing.image_config_error.startswith("not-found: ")
    assert hangs.image_config_error is not None and hangs.image_config_error.startswith("timeout: ")
    for before, after in zip(workloads[0].containers, out[0].containers):
        assert replace(after, image_config=None, image_config_error=None) == before
    assert not any("unlisted" in path for _, path, _ in registry.since(mark))


def test_a_name_lookup_still_running_at_the_deadline_does_not_hold_up_resolve_sync(
        monkeypatch: pytest.MonkeyPatch) -> None:
    # getaddrinfo cannot be interrupted, and no loopback server makes it hang: the seam is socket.getaddrinfo,
    # which the event loop runs in its executor. It blocks far past the deadline.
    real = socket.getaddrinfo
    release = threading.Event()

    def stuck(host: object, *args: object, **kwargs: object) -> object:
        if host == "stuck-dns.test":
            release.wait(20)
            raise socket.gaierror(socket.EAI_AGAIN, "temporary failure in name resolution")
        return real(host, *args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(socket, "getaddrinfo", stuck)
    started = time.monotonic()
    try:
        out = resolve_sync(k8s(pod("stuck-dns.test/app:1")), settings=SETTINGS, cache_dir=None, no_cache=True,
                           registry_config=None, deadline_s=0.5)
        elapsed = time.monotonic() - started
    finally:
        release.set()
    assert only(out).image_config_error is not None and only(out).image_config_error.startswith("timeout: ")
    assert elapsed < 10  # the deadline plus start-up, not the 20 s the lookup is stuck for
