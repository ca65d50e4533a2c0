"""What a long answer keeps (issue 22, items 2 and 3): a cut deny message names every rule it cut and their keys,
and never cuts that list; warnings of one rule and one image are one line naming the containers, inside the API
server's limits (4 KiB of warnings in all, 256 characters each)."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from admission.webhook.settings import Settings
from tests.images.faults import Faults
from tests.webhook.conftest import good_container, pod, review, rules_in, running, write_policy

pytestmark = pytest.mark.anyio


def settings(tmp_path: Path, policy: str = "images: {resolve: false}\n") -> Settings:
    return Settings(policy=str(write_policy(tmp_path / "p", policy)), deadline=5.0)


def cut_list(message: str) -> dict[str, tuple[int, str]]:
    """`… and N more: [rule] n: keys, [rule] n; ...` as {rule: (n, keys)}."""
    match = re.search(r" … and (\d+) more: (.*); `admission-cli check` on the manifest lists each$", message)
    assert match, message
    listed = re.findall(r"\[([a-z-]+)\] (\d+)(?:: ((?:(?!, \[).)*))?", match.group(2))
    assert sum(int(n) for _, n, _ in listed) == int(match.group(1))
    return {rule: (int(n), keys) for rule, n, keys in listed}


async def test_a_cut_deny_message_names_the_keys_of_what_it_cut(tmp_path: Path) -> None:
    containers = [{"name": f"worker-{i:02d}", "image": f"registry.example.com/team/service-{i}:latest",
                   "securityContext": {"runAsUser": 0}, "ports": [{"containerPort": 80 + i, "hostPort": 80 + i}]}
                  for i in range(12)]
    async with running(settings(tmp_path)) as hook:
        got = await hook.answer(review(pod(containers=containers)))
    message = got["status"]["message"]
    assert len(message) <= 1024
    cut = cut_list(message)
    assert "resource-limits" in cut
    assert cut["resource-limits"][1] == "cpu, memory"  # limits.cpu and limits.memory, their prefix said once
    assert {"run-as-non-root", "image-tag-pinned", "resource-limits", "no-host-port"} <= rules_in(message) | set(cut)


@pytest.mark.parametrize("volumes", [0, 80], ids=["few-keys", "keys-past-the-room"])
async def test_when_the_first_finding_alone_is_over_the_cap_the_list_of_cut_rules_is_whole(
        tmp_path: Path, volumes: int) -> None:
    long_image = "registry.example.com/" + "/".join(f"segment-{i:03d}" for i in range(90)) + ":latest"
    containers = [{"name": "app", "image": long_image, "securityContext": {"runAsUser": 0, "privileged": True},
                   "ports": [{"containerPort": 80, "hostPort": 80}]}]
    # hostPath volumes: one least-privilege finding each, whose keys alone would not fit in the kibibyte
    spec = {"volumes": [{"name": f"v{i}", "hostPath": {"path": f"/var/lib/some-rather-long-folder-name/{i:03d}"}}
                        for i in range(volumes)]}
    policy = "images: {resolve: false}\nrules:\n  run-as-non-root: off\n  healthcheck: deny\n  numeric-user: deny\n"
    async with running(settings(tmp_path, policy)) as hook:
        got = await hook.answer(review(pod(containers=containers, **spec)))
    message = got["status"]["message"]
    assert len(long_image) > 1024 and len(message) <= 1024
    assert message.startswith("Pod default/web denied by the admission policy: [image-tag-pinned] ")
    shown = message.split(" … and ")[0]
    assert shown.endswith("…")  # the first entry was cut, at a word, with an ellipsis
    cut = cut_list(message)  # the list survives whole, after the clipped first entry
    denying = {r["rule"] for r in hook.audit()[-1]["rules"] if r["severity"] == "deny"}
    assert len(denying) >= 5 and set(cut) == denying - {"image-tag-pinned"}
    if volumes:
        assert cut["least-privilege"][0] > volumes


async def test_warnings_of_one_image_shared_by_many_containers_are_one_line(tmp_path: Path, faults: Faults) -> None:
    shared = f"{faults.host}/team/missing:1"
    containers = [good_container(f"c{i:02d}", shared) for i in range(44)]
    containers += [good_container("other", f"{faults.host}/team/also-missing:2")]
    policy = (f"images: {{resolve: auto, on_error: warn, allowed_registries: [{faults.host}], "
              f"insecure_registries: [{faults.host}]}}\n")
    async with running(settings(tmp_path, policy)) as hook:
        got = await hook.answer(review(pod(containers=containers)))
    lines = [w for w in got["warnings"] if w.startswith("[image-config-unavailable]")]
    assert len(lines) == 2
    merged = re.fullmatch(r"\[image-config-unavailable\] 44 containers: c00, c01(?:, c\d\d)* and (\d+) more use an "
                          r"image whose config is unavailable", lines[0])
    assert merged, lines[0]
    shown = lines[0].count(", ") + 1
    assert shown + int(merged.group(1)) == 44
    assert lines[1] == "[image-config-unavailable] container 'other' uses an image whose config is unavailable"
    # the audit line still has every container, with the precise reason
    assert len(hook.audit()[-1]["images"]) == 45


async def test_warnings_stay_inside_the_api_servers_limits_and_count_what_they_drop(tmp_path: Path) -> None:
    policy = "images: {resolve: false}\nrules: {image-tag-pinned: warn, resource-limits: warn, no-host-port: warn}\n"
    containers = [{**good_container(f"container-with-a-long-name-{i:03d}", f"registry.example.com/team/app-{i}"),
                   "resources": {}, "ports": [{"containerPort": 1000 + i, "hostPort": 1000 + i}]} for i in range(60)]
    async with running(settings(tmp_path, policy)) as hook:
        got = await hook.answer(review(pod(containers=containers)))
    warnings = got["warnings"]
    assert all(len(w) <= 256 for w in warnings) and sum(len(w) for w in warnings) <= 4096
    last = re.fullmatch(r"\[admission\] … and (\d+) more warnings; the webhook's audit log names their rules",
                        warnings[-1])
    assert last, warnings[-1]
    # every line is shown or counted: 60 unpinned images, 60 host ports, and the 60 containers without a cpu limit
    # and without a memory limit, which are one line each
    assert int(last.group(1)) + len(warnings) - 1 == 60 + 60 + 2
