"""POST /mutate against a real docker-registry on loopback (and the fault server for a registry that hangs): what is
pinned, to which digest (the one `skopeo inspect --raw` names: an index's own), what is left as written and why, the
JSONPatch applied as the API server applies it (jsonpatch, RFC 6902), and what the validating webhook of the same
process then judges and records."""

from __future__ import annotations

import asyncio
import copy
import json
from pathlib import Path
from typing import Any

import jsonpatch
import pytest

from admission.policy import engine
from admission.policy.config import load_policy
from admission.webhook import review as reviews
from admission.webhook.mutate import ANNOTATION
from admission.webhook.settings import Settings
from tests.images import oci
from tests.images.faults import Faults, hang
from tests.images.registry import Registry
from tests.pin.images import skopeo_digest, skopeo_platform_digest
from tests.webhook.conftest import deployment, good_container, pod, review, rules_in, running

pytestmark = pytest.mark.anyio

_PUSHED: dict[tuple[str, str], str] = {}


def pushed(registry: Registry, layout: Path, ref: str, *, user: str = "10001", label: str = "") -> str:
    """`<registry>/<ref>` (built once per session; `label` makes another image under the same name)."""
    if (ref, label) not in _PUSHED:
        tag = "mut-" + ref.replace("/", "-").replace(":", "-") + label
        oci.push(oci.build(layout, tag, user=user, labels={"n": label} if label else None), registry.host, ref)
        _PUSHED[(ref, label)] = f"{registry.host}/{ref}"
    return _PUSHED[(ref, label)]


def policy_file(folder: Path, host: str, extra: str = "") -> Path:
    path = folder / "policy.yaml"
    path.write_text(f"images:\n  resolve: auto\n  on_error: deny\n  allowed_registries: [{host}]\n"
                    f"  insecure_registries: [{host}]\n{extra}")
    return path


def applied(obj: dict[str, Any], answer: dict[str, Any]) -> dict[str, Any]:
    """The object as the API server stores it after the answer's patch."""
    return jsonpatch.apply_patch(obj, answer.get("ops", []))


def mutate_lines(hook: Any) -> list[dict[str, Any]]:
    return [line for line in hook.audit() if line.get("webhook") == "mutate"]


async def test_a_pod_is_pinned_to_the_digest_its_tag_names_with_the_originals_in_an_annotation(
        tmp_path: Path, registry: Registry, layout: Path) -> None:
    image = pushed(registry, layout, "mutate/app:1.0")
    helper = pushed(registry, layout, "mutate/helper:2.1")
    digest = skopeo_digest(f"{registry.host}/mutate/app:1.0")
    obj = pod("web", containers=[good_container("app", image)],
              initContainers=[good_container("init", helper)])
    async with running(Settings(policy=str(policy_file(tmp_path, registry.host)))) as hook:
        answer = await hook.mutate(review(obj))
        metrics = (await hook.client.get("/metrics")).text
    assert answer["allowed"] is True
    stored = applied(obj, answer)
    assert stored["spec"]["containers"][0]["image"] == f"{image}@{digest}"
    assert stored["spec"]["initContainers"][0]["image"].startswith(f"{helper}@sha256:")
    assert json.loads(stored["metadata"]["annotations"][ANNOTATION]) == {"app": image, "init": helper}
    assert {op["path"] for op in answer["ops"]} == {"/spec/containers/0/image", "/spec/initContainers/0/image",
                                                    "/metadata/annotations"}
    (line,) = mutate_lines(hook)
    assert line["result"] == "mutated" and line["kind"] == "Pod" and line["name"] == "web"
    assert {"container": "app", "from": image, "to": f"{image}@{digest}"} in line["pinned"]
    assert 'admission_mutations_total{result="mutated"} 2.0' in metrics
    assert 'admission_request_duration_seconds_count{kind="Pod",operation="CREATE",webhook="mutate"} 1.0' in metrics
    assert ('admission_requests_total{dry_run="false",kind="Pod",operation="CREATE",result="mutated",'
            'webhook="mutate"} 1.0') in metrics


async def test_running_twice_changes_nothing_and_a_pinned_pod_gets_no_patch(
        tmp_path: Path, registry: Registry, layout: Path) -> None:
    image = pushed(registry, layout, "mutate/app:1.0")
    obj = pod("twice", containers=[good_container("app", image)])
    async with running(Settings(policy=str(policy_file(tmp_path, registry.host)))) as hook:
        first = await hook.mutate(review(obj))
        once = applied(obj, first)
        again = await hook.mutate(review(once))
        metrics = (await hook.client.get("/metrics")).text
    assert "patch" not in again and "patchType" not in again and again["allowed"] is True
    assert mutate_lines(hook)[-1]["result"] == "unchanged"
    assert mutate_lines(hook)[-1]["left"] == [{"container": "app", "image": once["spec"]["containers"][0]["image"],
                                               "result": "already-pinned"}]
    assert 'admission_mutations_total{result="already-pinned"} 1.0' in metrics


async def test_a_reinvocation_after_a_sidecar_injector_pins_the_sidecar_and_keeps_the_first_entries(
        tmp_path: Path, registry: Registry, layout: Path) -> None:
    image = pushed(registry, layout, "mutate/app:1.0")
    sidecar = pushed(registry, layout, "mutate/proxy:3.2")
    obj = pod("injected", containers=[good_container("app", image)])
    async with running(Settings(policy=str(policy_file(tmp_path, registry.host)))) as hook:
        first = applied(obj, await hook.mutate(review(obj)))
        injected = copy.deepcopy(first)
        injected["spec"]["containers"].append(good_container("proxy", sidecar))  # what an injector adds after us
        second = await hook.mutate(review(injected))
    stored = applied(injected, second)
    assert [op["path"] for op in second["ops"]] == ["/spec/containers/1/image",
                                                    f"/metadata/annotations/{ANNOTATION.replace('/', '~1')}"]
    assert stored["spec"]["containers"][0]["image"] == first["spec"]["containers"][0]["image"]
    assert stored["spec"]["containers"][1]["image"].startswith(f"{sidecar}@sha256:")
    assert json.loads(stored["metadata"]["annotations"][ANNOTATION]) == {"app": image, "proxy": sidecar}


async def test_a_forged_annotation_entry_is_replaced_for_the_container_pinned_now(
        tmp_path: Path, registry: Registry, layout: Path) -> None:
    image = pushed(registry, layout, "mutate/app:1.0")
    obj = pod("forged", containers=[good_container("app", image)])
    obj["metadata"]["annotations"] = {ANNOTATION: json.dumps({"app": "evil/app:9", "gone": "x:1"}), "team": "a"}
    async with running(Settings(policy=str(policy_file(tmp_path, registry.host)))) as hook:
        stored = applied(obj, await hook.mutate(review(obj)))
    assert json.loads(stored["metadata"]["annotations"][ANNOTATION]) == {"app": image}
    assert stored["metadata"]["annotations"]["team"] == "a"


@pytest.mark.parametrize("ref, extra, verdict", [
    ("mutate/app:latest", "", "denied"),
    ("mutate/app", "", "denied"),
    ("mutate/app:nightly", "rules:\n  image-tag-pinned:\n    params: {disallowed_tags: [latest, nightly]}\n", "denied"),
    ("mutate/app:nightly", "", "denied"),
    ("mutate/app:nightly", "rules:\n  image-tag-pinned: {severity: off}\n", "no finding"),
    ("mutate/app:latest", "rules:\n  image-tag-pinned: {severity: off}\n", "no finding"),
    ("mutate/app:latest", "enforcement: warn\n", "would deny"),
], ids=["latest", "untagged", "disallowed-nightly", "no-version-nightly", "no-version-rule-off", "rule-off", "warn-mode"])
async def test_a_tag_image_tag_pinned_refuses_is_never_pinned_or_looked_up(
        tmp_path: Path, registry: Registry, layout: Path, ref: str, extra: str, verdict: str) -> None:
    """Whatever the rule's severity or the enforcement: the reference reaches the validating webhook as written."""
    pushed(registry, layout, "mutate/app:latest")
    pushed(registry, layout, "mutate/app:nightly")
    image = f"{registry.host}/{ref}"
    obj = pod("refused", containers=[good_container("app", image)])
    async with running(Settings(policy=str(policy_file(tmp_path, registry.host, extra)))) as hook:
        mark = registry.mark()
        answer = await hook.mutate(review(obj))
        asked = [r for r in registry.since(mark) if r[1].startswith("/v2/mutate/app/")]
        validated = await hook.answer(review(obj))
    assert "patch" not in answer
    assert asked == [], "a refused tag is not looked up"
    (line,) = mutate_lines(hook)
    assert line["result"] == "unchanged" and line["left"][0]["result"] == "skipped"
    assert "image-tag-pinned refuses it" in line["left"][0]["reason"]
    said = validated.get("status", {}).get("message", "") + " ".join(validated.get("warnings", []))
    expected = {"denied": (False, "[image-tag-pinned]"), "would deny": (True, "[would deny] [image-tag-pinned]"),
                "no finding": (True, None)}[verdict]
    assert validated["allowed"] is expected[0]
    assert (expected[1] in said) if expected[1] else "image-tag-pinned" not in said, said


@pytest.mark.parametrize("image", ["app:1.0", "app:latest", "app", "app:Latest", "app:nightly", "app:3", "app:alpine",
                                   "app:nightly@sha256:" + "a" * 64,
                                   "app:1.0@sha256:" + "a" * 64, "registry.example:5000/app",
                                   "registry.example:5000/app:v2", "App:1"])
@pytest.mark.parametrize("params", [{}, {"disallowed_tags": ["latest", "nightly"]}, {"disallowed_tags": []},
                                    {"require_version": False}, {"disallowed_tags": [], "require_version": False}])
def test_mutation_refuses_exactly_the_tags_the_rule_denies_without_require_digest(image: str, params: dict[str, Any],
                                                                               tmp_path: Path) -> None:
    """One decision point: what image-tag-pinned denies (require_digest off) is what /mutate leaves as written."""
    from admission.webhook.mutate import judge

    text = "rules:\n  image-tag-pinned:\n    params: " + json.dumps({**params, "require_digest": False}) + "\n"
    policy = load_policy(str(policy_file(tmp_path, "registry.example", text)))
    planned = reviews.plan(reviews.parse(json.dumps(review(pod(containers=[good_container("app", image)]))).encode())
                           .request)
    assert isinstance(planned, reviews.Plan)
    denied = any(f.rule == "image-tag-pinned" for f in engine.evaluate(planned.workloads, policy).findings)
    verdict = judge(image, params=policy.setting("image-tag-pinned").params, skip=frozenset())
    assert (verdict is not None and verdict[0] == "skipped") == denied, (verdict, denied)


async def test_under_require_digest_a_good_tag_is_pinned_and_then_admitted(
        tmp_path: Path, registry: Registry, layout: Path) -> None:
    image = pushed(registry, layout, "mutate/app:1.0")
    obj = pod("strict", containers=[good_container("app", image)])
    extra = "rules:\n  image-tag-pinned:\n    params: {require_digest: true}\n"
    async with running(Settings(policy=str(policy_file(tmp_path, registry.host, extra)))) as hook:
        unpinned = await hook.answer(review(obj))
        stored = applied(obj, await hook.mutate(review(obj)))
        admitted = await hook.answer(review(stored))
    assert unpinned["allowed"] is False and "image-tag-pinned" in rules_in(unpinned["status"]["message"])
    assert admitted["allowed"] is True, admitted


async def test_the_validating_webhook_judges_the_pinned_digest_without_asking_the_tag_again_and_says_it_was_mutated(
        tmp_path: Path, registry: Registry, layout: Path) -> None:
    image = pushed(registry, layout, "mutate/once:1.0")
    obj = pod("once", containers=[good_container("app", image)])
    async with running(Settings(policy=str(policy_file(tmp_path, registry.host)))) as hook:
        mark = registry.mark()
        # five Pods of one ReplicaSet at once: one lookup of the tag
        answers = await asyncio.gather(*(hook.mutate(review(obj)) for _ in range(5)))
        stored = applied(obj, answers[0])
        verdict = await hook.answer(review(stored))
    heads = [r for r in registry.since(mark) if r[0] == "HEAD" and r[1] == "/v2/mutate/once/manifests/1.0"]
    tag_gets = [r for r in registry.since(mark) if r[0] == "GET" and r[1] == "/v2/mutate/once/manifests/1.0"]
    assert len(heads) == 1 and not tag_gets, registry.since(mark)
    assert verdict["allowed"] is True
    (line,) = [a for a in hook.audit() if a.get("webhook") is None and a["name"] == "once"]
    assert line["mutated"] == [{"container": "app", "from": image, "to": stored["spec"]["containers"][0]["image"]}]


async def test_the_validating_webhook_never_takes_the_annotation_for_evidence(
        tmp_path: Path, registry: Registry, layout: Path) -> None:
    image = pushed(registry, layout, "mutate/app:1.0")
    digest = skopeo_digest(f"{registry.host}/mutate/app:1.0")
    obj = pod("claims", containers=[good_container("app", f"{image}@{digest}")])
    obj["metadata"]["annotations"] = {ANNOTATION: json.dumps({"app": image})}
    async with running(Settings(policy=str(policy_file(tmp_path, registry.host)))) as hook:
        await hook.answer(review(obj))
    (line,) = hook.audit()
    assert "mutated" not in line


async def test_a_two_platform_image_is_pinned_to_its_index_not_a_platforms_manifest(
        tmp_path: Path, registry: Registry, layout: Path) -> None:
    multi = layout.parent / "multi-layout"
    oci.build(multi, "amd64", user="10001", architecture="amd64")
    oci.build(multi, "arm64", user="10001", architecture="arm64")
    oci.add_index(multi, "both", {"amd64": ("linux", "amd64"), "arm64": ("linux", "arm64")})
    oci.copy(f"oci:{multi}:both", f"docker://{registry.host}/mutate/multi:1.0", all_images=True)
    image = f"{registry.host}/mutate/multi:1.0"
    index = skopeo_digest(image)
    platforms = {skopeo_platform_digest(image, {"architecture": a}) for a in ("amd64", "arm64")}
    assert index not in platforms and len(platforms) == 2
    obj = pod("multi", containers=[good_container("app", image)])
    async with running(Settings(policy=str(policy_file(tmp_path, registry.host)))) as hook:
        stored = applied(obj, await hook.mutate(review(obj)))
        verdict = await hook.answer(review(stored))
    assert stored["spec"]["containers"][0]["image"] == f"{image}@{index}"
    assert verdict["allowed"] is True


async def test_only_the_ephemeral_containers_an_update_adds_are_pinned_and_no_annotation_is_written(
        tmp_path: Path, registry: Registry, layout: Path) -> None:
    image = pushed(registry, layout, "mutate/app:1.0")
    tools = pushed(registry, layout, "mutate/tools:1.0")
    old = pod("debugged", containers=[good_container("app", image)])
    old["spec"]["ephemeralContainers"] = [{"name": "first", "image": tools}]  # admitted before: never changed
    new = copy.deepcopy(old)
    new["spec"]["ephemeralContainers"].append({"name": "second", "image": tools})
    async with running(Settings(policy=str(policy_file(tmp_path, registry.host)))) as hook:
        answer = await hook.mutate(review(new, operation="UPDATE", old=old, sub="ephemeralcontainers"))
    assert [op["path"] for op in answer["ops"]] == ["/spec/ephemeralContainers/1/image"]
    (line,) = mutate_lines(hook)
    assert line["pinned"][0]["container"] == "second" and line["pinned"][0]["from"] == tools


async def test_pod_templates_are_left_alone_unless_templates_are_on_and_never_when_a_controller_owns_them(
        tmp_path: Path, registry: Registry, layout: Path) -> None:
    image = pushed(registry, layout, "mutate/app:1.0")
    web = deployment("web", containers=[good_container("app", image)])
    owned = {**deployment("web-5d8f", containers=[good_container("app", image)]), "kind": "ReplicaSet"}
    owned["metadata"]["ownerReferences"] = [{"apiVersion": "apps/v1", "kind": "Deployment", "name": "web",
                                             "uid": "1", "controller": True}]
    policy = str(policy_file(tmp_path, registry.host))
    async with running(Settings(policy=policy)) as hook:
        off = await hook.mutate(review(web))
    assert "patch" not in off and "ADMISSION_MUTATION_TEMPLATES is off" in mutate_lines(hook)[0]["skipped"]
    async with running(Settings(policy=policy, mutation_templates=True)) as hook:
        on = await hook.mutate(review(web))
        stored = applied(web, on)
        rescaled = copy.deepcopy(stored)
        rescaled["spec"]["replicas"] = 5
        scaled = await hook.mutate(review(rescaled, operation="UPDATE", old=stored))
        replicaset = await hook.mutate(review(owned))
    template = stored["spec"]["template"]
    assert template["spec"]["containers"][0]["image"].startswith(f"{image}@sha256:")
    assert json.loads(template["metadata"]["annotations"][ANNOTATION]) == {"app": image}
    assert "patch" not in scaled and mutate_lines(hook)[1]["skipped"] == "the pod template is unchanged"
    assert "patch" not in replicaset and "owned by a controller" in mutate_lines(hook)[2]["skipped"]


async def test_a_manual_run_of_a_cronjob_is_never_mutated_so_it_still_equals_its_template(
        tmp_path: Path, registry: Registry, layout: Path) -> None:
    image = pushed(registry, layout, "mutate/app:1.0")
    job = {"apiVersion": "batch/v1", "kind": "Job",
           "metadata": {"name": "nightly-manual", "namespace": "default", "ownerReferences": [
               {"apiVersion": "batch/v1", "kind": "CronJob", "name": "nightly", "uid": "u1"}]},
           "spec": {"template": {"spec": {"restartPolicy": "Never", "containers": [good_container("app", image)]}}}}
    async with running(Settings(policy=str(policy_file(tmp_path, registry.host)), mutation_templates=True)) as hook:
        answer = await hook.mutate(review(job))
    assert "patch" not in answer and "owned by a controller" in mutate_lines(hook)[0]["skipped"]


async def test_skipped_registries_refused_registries_and_resolution_off_leave_references_as_written(
        tmp_path: Path, registry: Registry, layout: Path) -> None:
    image = pushed(registry, layout, "mutate/app:1.0")
    obj = pod("left", containers=[good_container("app", image), good_container("other", "elsewhere.example/x:1")])
    restricted = policy_file(tmp_path, registry.host, "")
    restricted.write_text(restricted.read_text().replace("images:\n", "images:\n  restrict_to_allowed: true\n"))
    async with running(Settings(policy=str(restricted), mutation_skip_registries=f" {registry.host} ")) as hook:
        answer = await hook.mutate(review(obj))
        metrics = (await hook.client.get("/metrics")).text
    assert "patch" not in answer
    (line,) = mutate_lines(hook)
    reasons = {entry["container"]: (entry["result"], entry["reason"]) for entry in line["left"]}
    assert reasons["app"] == ("skipped", "its registry is in ADMISSION_MUTATION_SKIP_REGISTRIES")
    assert reasons["other"][0] == "skipped" and "restrict_to_allowed" in reasons["other"][1]
    assert 'admission_mutations_total{result="skipped"} 2.0' in metrics
    off = tmp_path / "off"
    off.mkdir()
    (off / "policy.yaml").write_text("images: {resolve: false}\n")
    async with running(Settings(policy=str(off / "policy.yaml"))) as hook:
        answer = await hook.mutate(review(obj))
    assert "patch" not in answer and "images.resolve: false" in mutate_lines(hook)[0]["left"][0]["reason"]


async def test_a_hanging_registry_is_answered_unmutated_inside_the_deadline(tmp_path: Path) -> None:
    faults = Faults().start()
    try:
        faults.route("/v2/", hang())
        obj = pod("slow", containers=[good_container("app", f"{faults.host}/slow/app:1.0")])
        async with running(Settings(policy=str(policy_file(tmp_path, faults.host)), deadline=0.5)) as hook:
            started = asyncio.get_running_loop().time()
            answer = await hook.mutate(review(obj))
            took = asyncio.get_running_loop().time() - started
            metrics = (await hook.client.get("/metrics")).text
    finally:
        faults.stop()
    assert answer["allowed"] is True and "patch" not in answer
    assert took < 0.5 + 0.3, took  # the deadline, and scheduling on a loaded machine
    (line,) = mutate_lines(hook)
    assert line["left"][0]["result"] == "unresolved" and line["left"][0]["reason"].startswith("timeout: ")
    assert 'admission_mutations_total{result="unresolved"} 1.0' in metrics
    assert "admission_image_deadline_misses_total 1.0" in metrics


async def test_what_is_not_mutated_is_allowed_at_once_and_a_bad_envelope_is_400(tmp_path: Path) -> None:
    async with running(Settings(policy=str(policy_file(tmp_path, "registry.example")))) as hook:
        update = await hook.mutate(review(pod("p"), operation="UPDATE", old=pod("p")))
        configmap = await hook.mutate(review({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "c"}}))
        bad = await hook.client.post("/mutate", content=b"{}", headers={"Content-Type": "application/json"})
    assert update["allowed"] is configmap["allowed"] is True and "patch" not in update and "patch" not in configmap
    assert [line.get("skipped") for line in mutate_lines(hook)][:2] == [
        "a Pod UPDATE is not mutated (only CREATE and ephemeral containers)", "kind ConfigMap carries no pod spec"]
    assert bad.status_code == 400 and bad.json()["error"] == "the body is not an AdmissionReview"
