"""uids and gids outside what the API server accepts (0..2147483647 for runAsUser, runAsGroup, fsGroup and
supplementalGroups entries, pod or container level) are objects that cannot be interpreted: an input error naming
file, line and field in the CLI (exit 2), and in the webhook an answer with allowed false and code 400 (architecture §3).
Before, the CLI said "must be an integer, not a number" for 9223372036854775808 and the webhook allowed it."""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

import pytest

from admission.cli.main import main
from admission.sources import kubernetes
from admission.webhook.settings import Settings
from tests.webhook.conftest import good_container, pod, review, running, write_policy

OUT_OF_RANGE = [9223372036854775808, 2147483648, -1, -9223372036854775809]
POD = """\
apiVersion: v1
kind: Pod
metadata: {name: web}
spec:
  securityContext:
    runAsNonRoot: true
    runAsUser: 10001
  containers:
    - name: app
      image: registry.example.com/app:1.2.3
"""
# (where the field goes in the pod above, its path, its line)
FIELDS = [
    ("    runAsUser: {v}\n", "spec.securityContext.runAsUser", 7),
    ("    runAsGroup: {v}\n", "spec.securityContext.runAsGroup", 8),
    ("    fsGroup: {v}\n", "spec.securityContext.fsGroup", 8),
    ("    supplementalGroups: [1000, {v}]\n", "spec.securityContext.supplementalGroups[1]", 8),
]


def _manifest(field: str, value: int) -> str:
    if field.strip().startswith("runAsUser"):
        return POD.replace("runAsUser: 10001", f"runAsUser: {value}")
    head, _, tail = POD.partition("    runAsUser: 10001\n")
    return head + "    runAsUser: 10001\n" + field.format(v=value) + tail


@pytest.mark.parametrize("value", OUT_OF_RANGE)
@pytest.mark.parametrize(("field", "path", "line"), FIELDS, ids=[f[1].rsplit(".", 1)[1] for f in FIELDS])
def test_an_id_out_of_range_makes_the_object_a_problem_that_says_the_range(field, path, line, value) -> None:
    result = kubernetes.load_text(_manifest(field, value), file="pod.yaml")
    assert result.workloads == []
    [problem] = result.problems
    assert (problem.file, problem.line, problem.path) == ("pod.yaml", line, path)
    assert "must be between 0 and 2147483647" in problem.message
    if abs(value) < 2**63:
        assert problem.message.endswith(f"not {value}")


def test_the_edges_of_the_range_are_accepted() -> None:
    for value in (0, 2147483647):
        text = _manifest("    runAsGroup: {v}\n", value).replace("runAsUser: 10001", f"runAsUser: {value}")
        result = kubernetes.load_text(text, file="pod.yaml")
        assert result.problems == []
        assert result.workloads[0].containers[0].run_as_user.value == value  # type: ignore[union-attr]


def test_a_container_level_run_as_user_or_group_out_of_range_is_refused_too() -> None:
    for key in ("runAsUser", "runAsGroup"):
        text = POD.replace("      image: registry.example.com/app:1.2.3\n",
                           f"      image: registry.example.com/app:1.2.3\n      securityContext: {{{key}: -5}}\n")
        [problem] = kubernetes.load_text(text, file="pod.yaml").problems
        assert (problem.line, problem.path) == (11, f"spec.containers[0].securityContext.{key}")
        assert problem.message == f"`{key}` must be between 0 and 2147483647, not -5"


def test_a_number_that_is_not_an_integer_is_still_a_type_error() -> None:
    [problem] = kubernetes.load_text(POD.replace("runAsUser: 10001", "runAsUser: 1.5"), file="pod.yaml").problems
    assert problem.message == "`runAsUser` must be an integer, not a number"


@pytest.mark.parametrize("value", [9223372036854775808, -1])
def test_the_cli_exits_2_with_the_range_in_every_error(tmp_path: Path, capsys, value: int) -> None:
    path = tmp_path / "pod.yaml"
    path.write_text(POD.replace("runAsUser: 10001", f"runAsUser: {value}"))
    code = main(["check", "--format", "json", str(path)])
    report = json.loads(capsys.readouterr().out)
    assert code == 2
    [error] = report["errors"]
    assert (error["file"], error["line"], error["path"]) == (str(path), 7, "spec.securityContext.runAsUser")
    assert error["message"].startswith("`runAsUser` must be between 0 and 2147483647")


# ------------------------------------------------------------------ the webhook, through the real app

@pytest.fixture()
def anyio_backend() -> str:
    return "asyncio"


def _settings(tmp_path: Path, policy: str = "images: {resolve: false}\n") -> Settings:
    return Settings(policy=str(write_policy(tmp_path / "p", policy)))


def _with(obj: dict[str, Any], level: str, key: str, value: Any) -> dict[str, Any]:
    out = copy.deepcopy(obj)
    target = out["spec"] if level == "pod" else out["spec"]["containers"][0]
    target.setdefault("securityContext", {})[key] = value
    return out


@pytest.mark.anyio
@pytest.mark.parametrize("value", [9223372036854775808, 2147483648, -1])
@pytest.mark.parametrize(("level", "key", "path"), [
    ("pod", "runAsUser", "spec.securityContext.runAsUser"),
    ("container", "runAsUser", "spec.containers[0].securityContext.runAsUser"),
    ("container", "runAsGroup", "spec.containers[0].securityContext.runAsGroup"),
    ("pod", "fsGroup", "spec.securityContext.fsGroup"),
])
async def test_the_webhook_refuses_an_id_out_of_range_with_code_400_naming_the_field(tmp_path: Path, value: int,
                                                                                     level: str, key: str,
                                                                                     path: str) -> None:
    async with running(_settings(tmp_path)) as hook:
        got = await hook.answer(review(_with(pod(), level, key, value)))
    assert got["allowed"] is False and got["status"]["code"] == 400
    assert got["status"]["message"] == (f"the object cannot be interpreted: {path}: `{key}` must be between 0 and "
                                        f"2147483647, not {value}")


@pytest.mark.anyio
async def test_the_webhook_refuses_a_supplemental_group_out_of_range_even_under_warn(tmp_path: Path) -> None:
    obj = _with(pod(), "pod", "supplementalGroups", [1000, -3])
    async with running(_settings(tmp_path, "enforcement: warn\nimages: {resolve: false}\n")) as hook:
        got = await hook.answer(review(obj))
    assert got["allowed"] is False and got["status"]["code"] == 400
    assert got["status"]["message"] == ("the object cannot be interpreted: spec.securityContext.supplementalGroups[1]: "
                                        "`supplementalGroups[1]` must be between 0 and 2147483647, not -3")


@pytest.mark.anyio
async def test_the_webhook_still_allows_the_largest_uid(tmp_path: Path) -> None:
    container = good_container()
    container["securityContext"]["runAsUser"] = 2147483647
    async with running(_settings(tmp_path)) as hook:
        got = await hook.answer(review(pod(containers=[container])))
    assert got["allowed"] is True
