"""Digest mutation on the real control plane: the chart installed with `mutation.enabled`, `admission-cli serve` behind
the real kube-apiserver, kube-controller-manager creating the Pods, images on Debian's docker-registry. What is stored
is read back with kubectl; which digest a tag names, with `skopeo inspect --raw`; what each webhook did, from the
server's audit lines (`webhook: mutate` for the mutating one)."""

from __future__ import annotations

import json
import os
import re
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from admission.webhook.mutate import ANNOTATION
from tests.chart.conftest import ROOT
from tests.cluster.auditkit import container, namespace, pod, stored, workload
from tests.cluster.controlplane import ControlPlane
from tests.cluster.injector import injector
from tests.cluster.release import Release, installed
from tests.images import oci
from tests.images.conftest import layout, registry  # noqa: F401 (fixtures)
from tests.images.faults import Faults, hang
from tests.images.registry import Registry
from tests.pin import images as fixed

pytestmark = pytest.mark.controlplane

NS = "mutation"
SHOWN = "registry.example.com"  # the registry as the README shows it
README = ROOT / "README.md"


@pytest.fixture(scope="module")
def hanging() -> Iterator[Faults]:
    faults = Faults().start()
    faults.route("/v2/", hang())
    yield faults
    faults.stop()


def policy_text(hosts: list[str], extra: str = "") -> str:
    listed = ", ".join(hosts)
    # tag_ttl 1: a re-pushed tag is seen a second later (the default trusts a tag's digest for 5 minutes)
    return f"images:\n  allowed_registries: [{listed}]\n  insecure_registries: [{listed}]\n  tag_ttl: 1\n{extra}"


@pytest.fixture(scope="module")
def release(controllers: ControlPlane, tmp_path_factory: pytest.TempPathFactory, registry: Registry,  # noqa: F811
            hanging: Faults) -> Iterator[Release]:
    namespace(controllers, NS)
    values = {"policy": policy_text([registry.host, hanging.host]), "mutation": {"enabled": True}}
    yield from installed(controllers, tmp_path_factory.mktemp("release"), values)


def push(registry: Registry, layout: Path, ref: str, *, user: str = "10001", label: str = "") -> str:  # noqa: F811
    """`registry/ref` built with umoci (`label` makes another image under the same name); its digest."""
    tag = "cluster-" + re.sub(r"[^a-z0-9]+", "-", ref + label)
    oci.push(oci.build(layout, tag, user=user, labels={"build": label} if label else None), registry.host, ref)
    return fixed.skopeo_digest(f"{registry.host}/{ref}")


def mutations(release: Release, name: str, since: int = 0) -> list[dict[str, Any]]:
    return [a for a in release.audit_since(since) if a.get("webhook") == "mutate" and a["name"].startswith(name)]


def validations(release: Release, name: str, since: int = 0) -> list[dict[str, Any]]:
    return [a for a in release.audit_since(since) if a.get("webhook") is None and a["name"].startswith(name)]


def pods(plane: ControlPlane, app: str) -> list[dict[str, Any]]:
    listed = json.loads(plane.kubectl("get", "pods", "-n", NS, "-l", f"app={app}", "-o", "json").stdout)["items"]
    return sorted(listed, key=lambda p: p["metadata"]["creationTimestamp"] + p["metadata"]["name"])


def wait_pods(plane: ControlPlane, app: str, count: int, timeout: float = 60) -> list[dict[str, Any]]:
    deadline = time.monotonic() + timeout
    while len(found := pods(plane, app)) < count:
        assert time.monotonic() < deadline, f"{len(found)} of {count} Pods of {app}"
        time.sleep(0.3)
    return found


def images_of(item: dict[str, Any], field: str = "containers") -> list[str]:
    return [c["image"] for c in item["spec"].get(field, [])]


def test_a_deployments_pods_run_the_index_digest_its_tag_named_and_the_deployment_stays_as_applied(
        controllers: ControlPlane, release: Release, registry: Registry, tmp_path: Path) -> None:  # noqa: F811
    """Two platforms behind `shop/api:1.4.0` (fixed digests, so the README's excerpt is exact): the Pods name the
    index, not either platform's manifest; the Deployment is as applied, so a second apply changes nothing."""
    folder = tmp_path / "fixed"
    fixed.image(folder, "api-amd64", release="shop api 1.4.0", architecture="amd64", user="10001")
    fixed.image(folder, "api-arm64", release="shop api 1.4.0", architecture="arm64", user="10001")
    built = fixed.index(folder, "api", [("api-amd64", "amd64"), ("api-arm64", "arm64")])
    image = f"{registry.host}/shop/api:1.4.0"
    fixed.push(folder, "api", image)
    index = fixed.skopeo_digest(image)
    assert index == built["index"] and index not in (built["amd64"], built["arm64"])
    assert fixed.skopeo_platform_digest(image, {"architecture": "arm64"}) == built["arm64"]
    deployment = workload("Deployment", "api", NS, container("api", image), replicas=2)
    mark = release.mark()
    controllers.apply([deployment])
    created = wait_pods(controllers, "api", 2)
    for item in created:
        assert images_of(item) == [f"{image}@{index}"]
        assert json.loads(item["metadata"]["annotations"][ANNOTATION]) == {"api": image}
    assert images_of(stored(controllers, "deployment", "api", NS)["spec"]["template"]) == [image]
    again = controllers.apply([deployment])
    assert again.stdout.strip() == "deployment.apps/api unchanged", again.stdout
    lines = mutations(release, "api-", mark)
    assert len(lines) == 2 and all(a["kind"] == "Pod" and a["result"] == "mutated" for a in lines), lines
    assert all(a["pinned"] == [{"container": "api", "from": image, "to": f"{image}@{index}"}] for a in lines)
    assert not [a for a in mutations(release, "api", mark) if a["kind"] in ("Deployment", "ReplicaSet")], \
        "templates are not sent to /mutate (mutation.templates is off)"
    judged = release.wait_for_audit(lambda a: a.get("webhook") is None and a["kind"] == "Pod"
                                    and a["name"].startswith("api-"), since=mark)
    assert judged and all(a["allowed"] for a in judged)
    # the validating webhook knows what its own process pinned (the annotation is never its evidence)
    assert all(a["mutated"] == [{"container": "api", "from": image, "to": f"{image}@{index}"}] for a in judged)
    readme_excerpt(controllers, registry)


def readme_excerpt(plane: ControlPlane, registry: Registry) -> None:  # noqa: F811
    """The README's webhook section shows `kubectl get pod -o yaml` of such a Pod: its first lines down to the
    annotation, and its spec down to the pinned image; as this run printed them (the registry shown as SHOWN)."""
    out = plane.kubectl("get", "pod", "-n", NS, "-l", "app=api", "-o", "yaml").stdout.replace(registry.host, SHOWN)
    lines = out.splitlines()
    annotation = next(i for i, line in enumerate(lines) if ANNOTATION in line)
    spec = lines.index("  spec:")
    excerpt = [*lines[:annotation + 1], "    ...", *lines[spec:spec + 3], "    ..."]
    assert lines[spec + 2].startswith("    - image: ") and "@sha256:" in lines[spec + 2], lines[spec:spec + 3]
    real = "$ kubectl get pod -l app=api -o yaml\n" + "\n".join(excerpt) + "\n"
    text = README.read_text(encoding="utf-8")
    shown = text[text.index("<!-- mutation:begin -->"):text.index("<!-- mutation:end -->")]
    shown = shown.split("```text\n", 1)[1].split("```", 1)[0]
    if os.environ.get("ADMISSION_WRITE_DOCS") == "1":
        README.write_text(text.replace(shown, real), encoding="utf-8")
        return
    assert real == shown, f"the README's `kubectl get pod -o yaml` excerpt is stale; a real run prints:\n{real}"


def test_a_repush_reaches_new_pods_only_and_a_root_image_repushed_is_denied_at_the_next_scale_up(
        controllers: ControlPlane, release: Release, registry: Registry, layout: Path) -> None:  # noqa: F811
    first = push(registry, layout, "team/moving:1.0", label="first")
    image = f"{registry.host}/team/moving:1.0"
    # the user is left to the image, so its config decides run-as-non-root
    image_user = {"runAsNonRoot": True, "allowPrivilegeEscalation": False, "capabilities": {"drop": ["ALL"]}}
    controllers.apply([workload("Deployment", "moving", NS, container("app", image, securityContext=image_user),
                                replicas=1)])
    (old,) = wait_pods(controllers, "moving", 1)
    assert images_of(old) == [f"{image}@{first}"]

    second = push(registry, layout, "team/moving:1.0", label="second")
    assert second != first
    time.sleep(1.5)  # images.tag_ttl: 1
    controllers.kubectl("scale", "deployment", "moving", "-n", NS, "--replicas=2")
    now = wait_pods(controllers, "moving", 2)
    assert sorted(images_of(p)[0] for p in now) == sorted([f"{image}@{first}", f"{image}@{second}"])
    assert [images_of(p) for p in now if p["metadata"]["name"] == old["metadata"]["name"]] == [[f"{image}@{first}"]]

    root = push(registry, layout, "team/moving:1.0", user="0", label="root")
    time.sleep(1.5)
    mark = release.mark()
    controllers.kubectl("scale", "deployment", "moving", "-n", NS, "--replicas=3")
    denied = release.wait_for_audit(lambda a: a.get("webhook") is None and a["name"].startswith("moving-")
                                    and a["kind"] == "Pod" and not a["allowed"], since=mark, timeout=60)
    assert denied, release.audit_since(mark)
    assert {r["rule"] for r in denied[0]["rules"]} >= {"run-as-non-root"}
    pinned = [a for a in mutations(release, "moving-", mark) if a["pinned"]]
    assert pinned and pinned[0]["pinned"][0]["to"] == f"{image}@{root}", "judged on the digest that would run"
    time.sleep(1)
    assert sorted(images_of(p)[0] for p in pods(controllers, "moving")) == \
        sorted([f"{image}@{first}", f"{image}@{second}"]), "the root image never got a Pod; the others are untouched"
    controllers.kubectl("scale", "deployment", "moving", "-n", NS, "--replicas=2")  # the ReplicaSet stops retrying


def test_a_hanging_registry_admits_the_pod_unmutated_inside_the_deadline_then_on_error_decides(
        control_plane: ControlPlane, release: Release, hanging: Faults) -> None:
    image = f"{hanging.host}/slow/app:1.0"
    mark = release.mark()
    started = time.monotonic()
    run = control_plane.apply([pod("slow", NS, container(image=image))], check=False)
    elapsed = time.monotonic() - started
    assert run.returncode == 0, run.stderr  # images.on_error: warn (the default) admits it with a warning
    assert "Warning: [image-config-unavailable]" in run.stderr, run.stderr
    assert images_of(stored(control_plane, "pod", "slow", NS)) == [image]
    (line,) = mutations(release, "slow", mark)
    assert line["result"] == "unchanged" and line["left"][0]["result"] == "unresolved"
    assert line["left"][0]["reason"].startswith("timeout: ")
    assert line["duration_ms"] < line["deadline_ms"] + 250
    timeout = release.mutating["webhooks"][0]["timeoutSeconds"]  # type: ignore[index]
    assert elapsed < 2 * timeout, f"kubectl apply took {elapsed:.1f} s"
    assert "failed calling webhook" not in run.stderr


def test_kubectl_debug_pins_the_ephemeral_container_it_adds(
        control_plane: ControlPlane, release: Release, registry: Registry, layout: Path) -> None:  # noqa: F811
    tools = push(registry, layout, "team/tools:1.0")
    app = push(registry, layout, "team/app:1.0")
    control_plane.apply([pod("debug-me", NS, container(image=f"{registry.host}/team/app@{app}"))])
    mark = release.mark()
    run = control_plane.kubectl("debug", "debug-me", "-n", NS, f"--image={registry.host}/team/tools:1.0",
                                "--attach=false", "--container=debugger", "--profile=restricted", check=False)
    assert run.returncode == 0, run.stderr
    stored_pod = stored(control_plane, "pod", "debug-me", NS)
    assert images_of(stored_pod, "ephemeralContainers") == [f"{registry.host}/team/tools:1.0@{tools}"]
    assert ANNOTATION not in (stored_pod["metadata"].get("annotations") or {}), "metadata changes are dropped there"
    (line,) = mutations(release, "debug-me", mark)
    assert line["subResource"] == "ephemeralcontainers" and line["pinned"][0]["container"] == "debugger"


def test_a_reinvocation_after_a_sidecar_injector_pins_the_sidecar_and_a_pinned_pod_passes_unchanged(
        control_plane: ControlPlane, release: Release, registry: Registry, layout: Path,  # noqa: F811
        tmp_path: Path) -> None:
    app = push(registry, layout, "team/app:1.0")
    proxy = push(registry, layout, "team/proxy:2.0")
    sidecar = container("proxy", f"{registry.host}/team/proxy:2.0")
    mark = release.mark()
    with injector(control_plane, tmp_path, namespace=NS, sidecar=sidecar):
        labels = {"app": "injected", "inject": "yes"}
        deadline = time.monotonic() + 30  # the injector's configuration reaches the API server's informer
        while True:
            run = control_plane.apply([pod("injected", NS, container(image=f"{registry.host}/team/app:1.0"),
                                           labels=labels)], check=False)
            assert run.returncode == 0, run.stderr
            item = stored(control_plane, "pod", "injected", NS)
            if len(item["spec"]["containers"]) == 2 or time.monotonic() > deadline:
                break
            control_plane.kubectl("delete", "pod", "injected", "-n", NS, "--wait=true")
    assert images_of(item) == [f"{registry.host}/team/app:1.0@{app}", f"{registry.host}/team/proxy:2.0@{proxy}"]
    assert json.loads(item["metadata"]["annotations"][ANNOTATION]) == {
        "app": f"{registry.host}/team/app:1.0", "proxy": f"{registry.host}/team/proxy:2.0"}
    calls = mutations(release, "injected", mark)[-2:]
    assert [c["pinned"][0]["container"] for c in calls] == ["app", "proxy"], calls  # reinvoked once, after it
    assert calls[1]["left"] == [{"container": "app", "image": f"{registry.host}/team/app:1.0@{app}",
                                 "result": "already-pinned"}]

    mark = release.mark()
    already = pod("pinned", NS, container(image=f"{registry.host}/team/app:1.0@{app}"))
    control_plane.apply([already])
    (line,) = mutations(release, "pinned", mark)
    assert line["result"] == "unchanged" and line["pinned"] == [] and line["left"][0]["result"] == "already-pinned"
    item = stored(control_plane, "pod", "pinned", NS)
    assert images_of(item) == [f"{registry.host}/team/app:1.0@{app}"]
    assert ANNOTATION not in (item["metadata"].get("annotations") or {})


@pytest.mark.parametrize("written", ["{host}/team/app:latest", "{host}/team/app", "nginx:latest", "nginx"])
def test_latest_and_untagged_are_never_pinned_and_stay_denied(
        control_plane: ControlPlane, release: Release, registry: Registry, layout: Path,  # noqa: F811
        written: str) -> None:
    push(registry, layout, "team/app:latest")  # a lookup would succeed: it is not made
    image = written.format(host=registry.host)
    name = "refused-" + re.sub(r"[^a-z0-9]+", "-", written.split("}")[-1]).strip("-")
    mark = release.mark()
    run = control_plane.apply([pod(name, NS, container(image=image))], check=False)
    assert run.returncode == 1 and "[image-tag-pinned]" in run.stderr, run.stderr
    (line,) = mutations(release, name, mark)
    # refused before any lookup (tests/webhook/test_mutate.py counts the registry's requests for that)
    assert line["pinned"] == [] and line["left"][0]["result"] == "skipped"
    assert "image-tag-pinned refuses it" in line["left"][0]["reason"]


def test_a_tag_that_names_no_version_is_not_pinned_and_is_denied_with_the_no_version_message(
        control_plane: ControlPlane, release: Release, registry: Registry, layout: Path) -> None:  # noqa: F811
    """`app:nightly` is in the registry, so a lookup would pin it and the digest would make it pass: /mutate leaves it
    as written (image-tag-pinned refuses it for its tag, require_version) and the validating webhook denies it."""
    push(registry, layout, "team/app:nightly")
    image = f"{registry.host}/team/app:nightly"
    mark = release.mark()
    run = control_plane.apply([pod("nightly", NS, container(image=image))], check=False)
    assert run.returncode == 1 and "[image-tag-pinned]" in run.stderr, run.stderr
    assert f"uses image '{image}': tag 'nightly' names no version" in run.stderr, run.stderr
    (line,) = mutations(release, "nightly", mark)
    assert line["result"] == "unchanged" and line["pinned"] == [], line
    assert line["left"][0]["result"] == "skipped" and line["left"][0]["image"] == image
    assert "image-tag-pinned refuses it (no version)" in line["left"][0]["reason"]
    (judged,) = validations(release, "nightly", mark)
    assert judged["allowed"] is False and "mutated" not in judged
    assert {r["rule"] for r in judged["rules"] if r["severity"] == "deny"} == {"image-tag-pinned"}
    assert control_plane.kubectl("get", "pod", "nightly", "-n", NS, check=False).returncode != 0, "never stored"


def set_policy(release: Release, text: str) -> None:
    """What a ConfigMap update does to the mounted policy: the file changes, the server reloads it."""
    path = release.pod.root / "volumes" / "policy" / "policy.yaml"
    before = release.pod.log().count("policy reloaded from")
    tmp = path.with_suffix(".tmp")
    tmp.write_text(text)
    os.replace(tmp, path)
    deadline = time.monotonic() + 15
    while release.pod.log().count("policy reloaded from") <= before:
        assert time.monotonic() < deadline, release.pod.log()[-2000:]
        time.sleep(0.1)


def test_under_require_digest_a_good_tag_is_pinned_and_admitted(
        control_plane: ControlPlane, release: Release, registry: Registry, hanging: Faults,  # noqa: F811
        layout: Path) -> None:  # noqa: F811
    app = push(registry, layout, "team/app:1.0")
    original = (release.pod.root / "volumes" / "policy" / "policy.yaml").read_text()
    set_policy(release, policy_text([registry.host, hanging.host],
                                    "rules:\n  image-tag-pinned:\n    params: {require_digest: true}\n"))
    try:
        run = control_plane.apply([pod("strict", NS, container(image=f"{registry.host}/team/app:1.0"))], check=False)
        latest = control_plane.apply([pod("strict-latest", NS, container(image=f"{registry.host}/team/app:latest"))],
                                     check=False)
    finally:
        set_policy(release, original)
    assert run.returncode == 0, run.stderr
    assert images_of(stored(control_plane, "pod", "strict", NS)) == [f"{registry.host}/team/app:1.0@{app}"]
    assert latest.returncode == 1 and "[image-tag-pinned]" in latest.stderr


def test_with_the_server_down_ignore_admits_unpinned_and_fail_refuses(
        control_plane: ControlPlane, release: Release, registry: Registry) -> None:  # noqa: F811
    """Last in this module: it stops the server. The validating webhook is set to Ignore, so that what happens is
    the mutating webhook's failurePolicy alone."""
    assert release.mutating is not None and release.mutating["webhooks"][0]["failurePolicy"] == "Ignore"
    release.set_webhook(failurePolicy="Ignore")
    release.stop_server()
    image = f"{registry.host}/team/app:1.0"

    def create(name: str) -> Any:
        return control_plane.apply([pod(name, NS, container(image=image))], check=False)

    deadline = time.monotonic() + 30  # the API server's informer takes the Ignore of the validating one a moment later
    while (admitted := create("while-down")).returncode != 0 and time.monotonic() < deadline:
        time.sleep(0.2)
    assert admitted.returncode == 0, admitted.stderr
    assert images_of(stored(control_plane, "pod", "while-down", NS)) == [image], "admitted as written"
    release.set_mutating_webhook(failurePolicy="Fail")
    deadline = time.monotonic() + 30
    while (refused := create("while-down-fail")).returncode == 0 and time.monotonic() < deadline:
        control_plane.kubectl("delete", "pod", "while-down-fail", "-n", NS, "--wait=true")
        time.sleep(0.2)
    assert refused.returncode == 1
    assert re.search(r'Internal error occurred: failed calling webhook "mutate\.admission\.policy"', refused.stderr), \
        refused.stderr
