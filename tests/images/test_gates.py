"""Caches never change a verdict (architecture §5): every registry gate applies before a cached answer is used.

The matrix changes one gate between a first run ("before", which warms the caches) and a second ("after"),
and checks the second run's verdict against a cold run under the "after" policy, while the registries'
access logs show that the second run asked nothing of a registry the "after" gates forbid. Temperatures:
- cold: `--no-cache`, nothing cached;
- warm memory: one long-lived client and resolver across both runs, with the policy's `images` settings
  passed per call, as the webhook keeps them across a policy reload (enrich + engine);
- warm disk: `admission-cli check --resolve-images --cache-dir` twice on one folder, as CI keeps it.

Everything runs against real registries on loopback (an origin and a second one acting as its mirror).
The one stand-in is the DNS answer for a name, which loopback cannot make public (last test).
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml

from admission.cli.main import main
from admission.errors import RegistryError
from admission.images.cache import _FORMAT as FORMAT  # the on-disk layout version in force
from admission.images.cache import DiskCache, ImageResolver
from admission.images.enrich import enrich
from admission.images.registry import RegistryClient
from admission.model import Workload
from admission.policy import engine
from admission.images.settings import ImagesSettings
from admission.policy.config import Policy, load_policy
from admission.sources import kubernetes
from tests.images import oci
from tests.images.registry import Registry
from tests.images.test_cache import COLD, cost, settled

APP, MOVED = "gates/app:1", "gates/moved:1"


@pytest.fixture(autouse=True)
def _no_docker_login(monkeypatch: pytest.MonkeyPatch, tmp_path_factory: pytest.TempPathFactory) -> None:
    """The CLI reads the docker CLI's config like docker does; this machine's must not change a test."""
    monkeypatch.setenv("DOCKER_CONFIG", str(tmp_path_factory.mktemp("docker-config")))


@dataclass(frozen=True)
class Hosts:
    origin: str  # the registry the references name
    mirror: str  # a second registry, the origin's mirror when the policy says so


@pytest.fixture(scope="module")
def hosts(registry: Registry, mirror_registry: Registry, layout: Path) -> Hosts:
    """APP on both registries (a mirror mirrors); MOVED differs: user "appuser" on the origin, "1000" on the mirror."""
    named = oci.build(layout, "gates-named", user="appuser")
    numeric = oci.build(layout, "gates-numeric", user="1000")
    oci.push(named, registry.host, APP)
    oci.push(named, mirror_registry.host, APP)
    oci.push(named, registry.host, MOVED)
    oci.push(numeric, mirror_registry.host, MOVED)
    return Hosts(registry.host, mirror_registry.host)


# --- the matrix ------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Case:
    """One gate change. `before`/`after`: `images` settings with the hosts as "R" (origin) and "M" (mirror)."""

    name: str
    image: str
    before: Mapping[str, Any]
    after: Mapping[str, Any]
    expect: str  # the cold verdict after: the reason the config is unavailable, or "resolved"
    untouched: tuple[str, ...]  # registries ("R", "M") the run under `after` must send nothing to


CASES = (
    Case("removed-from-allowed_registries", APP,
         before={"allowed_registries": ["R"], "insecure_registries": ["R"]},
         after={"insecure_registries": ["R"]},
         expect="blocked", untouched=("R",)),
    Case("restrict_to_allowed-turned-on", APP,
         # The origin is unlisted (loopback: refused) and served through its listed mirror, until
         # restrict_to_allowed says the image's own registry must be listed, whichever endpoint answers.
         before={"allowed_registries": ["M"], "insecure_registries": ["R", "M"], "mirrors": {"R": ["M"]}},
         after={"allowed_registries": ["M"], "insecure_registries": ["R", "M"], "mirrors": {"R": ["M"]},
                "restrict_to_allowed": True},
         expect="blocked", untouched=("R", "M")),
    Case("removed-from-insecure_registries", APP,
         # The registry speaks plain HTTP only: without the setting the client tries HTTPS, which fails.
         before={"allowed_registries": ["R"], "insecure_registries": ["R"]},
         after={"allowed_registries": ["R"]},
         expect="error", untouched=("R",)),
    Case("mirror-removed-leaving-a-refused-origin", APP,
         before={"allowed_registries": ["M"], "insecure_registries": ["R", "M"], "mirrors": {"R": ["M"]}},
         after={"allowed_registries": ["M"], "insecure_registries": ["R", "M"]},
         expect="blocked", untouched=("R", "M")),
    Case("mirror-added-in-front-of-a-refused-origin", APP,
         # Before, the refusal is what gets cached (in memory): it must not outlive the gates that made it.
         before={"allowed_registries": ["M"], "insecure_registries": ["R", "M"]},
         after={"allowed_registries": ["M"], "insecure_registries": ["R", "M"], "mirrors": {"R": ["M"]}},
         expect="resolved", untouched=("R",)),
    Case("mirror-added-that-answers-differently", MOVED,
         # The kubelet would pull the mirror's image, so the mirror's config decides, not the origin's cached one.
         before={"allowed_registries": ["R", "M"], "insecure_registries": ["R", "M"]},
         after={"allowed_registries": ["R", "M"], "insecure_registries": ["R", "M"], "mirrors": {"R": ["M"]}},
         expect="resolved", untouched=()),
)


@dataclass(frozen=True)
class Verdict:
    denied: bool
    findings: tuple[tuple[str, str, str], ...]  # (rule, severity, why an image config is unavailable), sorted

    @property
    def outcome(self) -> str:
        reasons = [why for rule, _severity, why in self.findings if rule == "image-config-unavailable"]
        return reasons[0] if reasons else "resolved"


def _verdict(denied: bool, findings: Iterable[tuple[str, str, str]]) -> Verdict:
    def why(rule: str, message: str) -> str:
        # The reason word only: the rest of a connection error's text is the TLS library's.
        return message.split(" is unavailable: ", 1)[1].split(":", 1)[0] if rule == "image-config-unavailable" else ""

    return Verdict(denied, tuple(sorted((rule, severity, why(rule, message)) for rule, severity, message in findings)))


def _images(spec: Mapping[str, Any], hosts: Hosts) -> dict[str, Any]:
    name = {"R": hosts.origin, "M": hosts.mirror}
    out: dict[str, Any] = {"on_error": "deny"}
    for key, value in spec.items():
        if key == "mirrors":
            out[key] = {name[k]: [name[m] for m in v] for k, v in value.items()}
        elif isinstance(value, list):
            out[key] = [name[v] for v in value]
        else:
            out[key] = value
    return out


class Run:
    """The pod, the two policies of a case, and the ways to check the pod under them."""

    def __init__(self, case: Case, hosts: Hosts, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
        self.capsys = capsys
        self.pod = tmp_path / "pod.yaml"
        self.pod.write_text(f"apiVersion: v1\nkind: Pod\nmetadata: {{name: p}}\nspec:\n  containers:\n"
                            f"    - name: app\n      image: {hosts.origin}/{case.image}\n"
                            "      resources: {limits: {cpu: 100m, memory: 64Mi}}\n")
        self.policies: dict[str, Path] = {}
        for label in ("before", "after"):
            path = tmp_path / f"{label}.yaml"
            path.write_text(yaml.safe_dump({"images": _images(getattr(case, label), hosts)}))
            self.policies[label] = path
        self.cache = tmp_path / "cache"

    def cli(self, label: str, *, cache: bool) -> Verdict:
        where = ["--cache-dir", str(self.cache)] if cache else ["--no-cache"]
        code = main(["check", "--format", "json", "--resolve-images", "--policy", str(self.policies[label]), *where,
                     str(self.pod)])
        report = json.loads(self.capsys.readouterr().out)
        assert code in (0, 1) and report["errors"] == []
        return _verdict(code == 1, ((f["rule"], f["severity"], f["message"]) for f in report["findings"]))

    def policy(self, label: str) -> Policy:
        return load_policy(str(self.policies[label]))

    def workloads(self) -> list[Workload]:
        return kubernetes.load_text(self.pod.read_text(), file="pod.yaml").workloads


def _engine(workloads: list[Workload], policy: Policy) -> Verdict:
    report = engine.evaluate(workloads, policy)
    unsuppressed = [f for f in report.findings if not f.suppressed]
    return _verdict(report.count("deny") > 0, ((f.rule, f.severity, f.message) for f in unsuppressed))


def soon(seconds: float = 20.0) -> float:
    return time.monotonic() + seconds


@pytest.fixture()
def registries(registry: Registry, mirror_registry: Registry) -> dict[str, Registry]:
    return {"R": registry, "M": mirror_registry}


def _marks(registries: Mapping[str, Registry]) -> dict[str, int]:
    return {label: settled(reg) for label, reg in registries.items()}


def _asked(registries: Mapping[str, Registry], marks: Mapping[str, int], labels: Iterable[str]) -> dict[str, list]:
    """The requests the registries named by `labels` logged since `marks` (empty lists when none)."""
    return {label: registries[label].since(marks[label]) for label in labels}


@pytest.mark.parametrize("case", CASES, ids=[c.name for c in CASES])
def test_a_cold_lookup_under_the_changed_gates_asks_no_registry_they_forbid(
        case: Case, hosts: Hosts, registries: dict[str, Registry], tmp_path: Path,
        capsys: pytest.CaptureFixture[str]) -> None:
    run = Run(case, hosts, tmp_path, capsys)
    before = run.cli("before", cache=False)
    marks = _marks(registries)
    after = run.cli("after", cache=False)
    assert _asked(registries, marks, case.untouched) == {label: [] for label in case.untouched}
    assert after.outcome == case.expect
    assert after != before, "the gate change decides the verdict, so a stale cache would show"
    assert after.denied == (case.expect != "resolved")


@pytest.mark.parametrize("case", CASES, ids=[c.name for c in CASES])
def test_a_warm_disk_cache_gives_the_cold_verdict_after_a_gate_change(
        case: Case, hosts: Hosts, registries: dict[str, Registry], tmp_path: Path,
        capsys: pytest.CaptureFixture[str]) -> None:
    run = Run(case, hosts, tmp_path, capsys)
    before = run.cli("before", cache=True)
    marks = _marks(registries)
    warm = run.cli("after", cache=True)
    assert _asked(registries, marks, case.untouched) == {label: [] for label in case.untouched}
    cold = run.cli("after", cache=False)
    assert warm == cold and cold.outcome == case.expect
    assert before != cold
    assert run.cli("before", cache=True) == before, "the answers cached under the first gates are still theirs"


@pytest.mark.parametrize("case", CASES, ids=[c.name for c in CASES])
def test_a_warm_memory_cache_shared_across_a_policy_reload_gives_the_cold_verdict(
        case: Case, hosts: Hosts, registries: dict[str, Registry], tmp_path: Path,
        capsys: pytest.CaptureFixture[str]) -> None:
    run = Run(case, hosts, tmp_path, capsys)
    old, new = run.policy("before"), run.policy("after")
    workloads = run.workloads()

    async def reload() -> tuple[Verdict, Verdict, dict[str, list]]:
        # One client and one resolver for the process, as the webhook keeps them; each request passes the
        # `images` settings of the policy in force.
        client = RegistryClient(old.images)
        resolver = ImageResolver(client, settings=old.images)
        try:
            first = _engine(await enrich(workloads, resolver, deadline=soon(), settings=old.images), old)
            marks = _marks(registries)
            second = _engine(await enrich(workloads, resolver, deadline=soon(), settings=new.images), new)
            return first, second, _asked(registries, marks, case.untouched)
        finally:
            await resolver.cancel_pending()
            await client.aclose()

    before, warm, asked = asyncio.run(reload())
    assert asked == {label: [] for label in case.untouched}
    cold = run.cli("after", cache=False)
    assert warm == cold and cold.outcome == case.expect
    assert before != cold


# --- in-flight lookups -----------------------------------------------------------------------------------


def _settings(hosts: Hosts, **spec: Any) -> ImagesSettings:
    images = _images(spec, hosts)
    images.pop("on_error")
    images = {k: tuple(v) if isinstance(v, list) else v for k, v in images.items()}
    if "mirrors" in images:
        images["mirrors"] = {k: tuple(v) for k, v in images["mirrors"].items()}
    return ImagesSettings(**images)


def test_concurrent_lookups_under_the_same_gates_share_one_fetch(hosts: Hosts, registry: Registry) -> None:
    """The control for the next test: joining is what happens when nothing tells the lookups apart."""
    settings = _settings(hosts, allowed_registries=["R", "M"], insecure_registries=["R", "M"])
    resolver = ImageResolver(RegistryClient(settings), settings=settings)

    async def go() -> list[str]:
        try:
            found = await asyncio.gather(*(resolver.config_for(f"{hosts.origin}/{MOVED}", deadline=soon(),
                                                               settings=settings) for _ in range(2)))
            return [config.user for config in found]
        finally:
            await resolver.client.aclose()  # type: ignore[attr-defined]

    assert asyncio.run(go()) == ["appuser", "appuser"]
    assert (resolver.stats["miss"], resolver.stats["dedup"]) == (1, 1)


def test_a_lookup_in_flight_under_other_gates_is_not_joined(hosts: Hosts, registry: Registry,
                                                             mirror_registry: Registry) -> None:
    plain = _settings(hosts, allowed_registries=["R", "M"], insecure_registries=["R", "M"])
    mirrored = _settings(hosts, allowed_registries=["R", "M"], insecure_registries=["R", "M"], mirrors={"R": ["M"]})
    resolver = ImageResolver(RegistryClient(plain), settings=plain)
    image = f"{hosts.origin}/{MOVED}"

    async def go() -> list[str]:
        try:
            # gather starts the first lookup (its task is in flight) before the second one looks for it.
            found = await asyncio.gather(resolver.config_for(image, deadline=soon(), settings=plain),
                                         resolver.config_for(image, deadline=soon(), settings=mirrored))
            return [config.user for config in found]
        finally:
            await resolver.client.aclose()  # type: ignore[attr-defined]

    marks = {"R": settled(registry), "M": settled(mirror_registry)}
    assert asyncio.run(go()) == ["appuser", "1000"], "each answer comes from its own gates' route"
    assert (resolver.stats["miss"], resolver.stats["dedup"]) == (2, 0)
    assert cost(registry.since(marks["R"]), "gates/moved") == COLD
    assert cost(mirror_registry.since(marks["M"]), "gates/moved") == COLD


def test_a_lookup_in_flight_while_a_registry_was_allowed_does_not_answer_a_caller_it_is_refused_to(
        hosts: Hosts, registry: Registry) -> None:
    allowed = _settings(hosts, allowed_registries=["R"], insecure_registries=["R"])
    refused = _settings(hosts, insecure_registries=["R"])
    resolver = ImageResolver(RegistryClient(allowed), settings=allowed)
    image = f"{hosts.origin}/{APP}"

    async def go() -> list[str]:
        try:
            found = await asyncio.gather(resolver.config_for(image, deadline=soon(), settings=allowed),
                                         resolver.config_for(image, deadline=soon(), settings=refused),
                                         return_exceptions=True)
            return [r.reason if isinstance(r, RegistryError) else r.user for r in found]  # type: ignore[union-attr]
        finally:
            await resolver.client.aclose()  # type: ignore[attr-defined]

    mark = settled(registry)
    assert asyncio.run(go()) == ["appuser", "blocked"]
    assert (resolver.stats["miss"], resolver.stats["dedup"], resolver.stats["refused"]) == (1, 0, 1)
    assert cost(registry.since(mark), "gates/app") == COLD, "one lookup's requests: the refused caller sent none"


# --- the address check depends on DNS, so it is re-run before a cached answer is used --------------------


class _Network(httpx.AsyncBaseTransport):
    """Stands in for the internet: connections to `public` (a public address the fake DNS hands out) reach
    the loopback registry instead. The only fake here: loopback cannot be given a public address."""

    def __init__(self, public: str) -> None:
        self._public = public
        self._inner = httpx.AsyncHTTPTransport()

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        if request.url.host == self._public:
            request.url = request.url.copy_with(host="127.0.0.1")
        return await self._inner.handle_async_request(request)

    async def aclose(self) -> None:
        await self._inner.aclose()


def test_a_cached_answer_is_not_used_once_its_unlisted_registry_resolves_to_a_private_address(
        registry: Registry, hosts: Hosts, tmp_path: Path) -> None:
    public = "8.8.8.8"  # a global address (documentation ranges are not, and the check knows it)
    name = f"registry.gates.test:{registry.port}"
    dns: dict[str, list[str]] = {}
    settings = ImagesSettings(insecure_registries=(name,))  # unlisted: contacted only while every address is public

    async def resolve(host: str, _port: int) -> list[str]:
        return list(dns[host])

    async def lookup() -> str:
        # A new client each time, like a CLI run: nothing but the disk cache carries over.
        client = RegistryClient(settings, resolver=resolve, transport=_Network(public))
        resolver = ImageResolver(client, settings=settings, disk=DiskCache(tmp_path))
        try:
            return (await resolver.config_for(f"{name}/{APP}", deadline=soon())).user
        except RegistryError as exc:
            return exc.reason
        finally:
            await client.aclose()

    dns["registry.gates.test"] = [public]
    assert asyncio.run(lookup()) == "appuser"
    assert list((tmp_path / FORMAT / "configs").glob("*.json")), "the answer is on disk"
    dns["registry.gates.test"] = [public, "169.254.169.254"]  # rebinding: one private answer among public ones
    mark = settled(registry)
    assert asyncio.run(lookup()) == "blocked"
    assert registry.since(mark) == []
    dns["registry.gates.test"] = [public]
    assert asyncio.run(lookup()) == "appuser", "the answer was kept, only refused while the gates refuse it"
    assert registry.since(mark) == []
