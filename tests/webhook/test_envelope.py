"""Bad bodies: HTTP 400 with a JSON error for what is not an AdmissionReview, 413 over the cap. Only the envelope
is an HTTP error; an object inside a valid envelope that cannot be read is a 200 refusal (test_validate)."""

from __future__ import annotations

import copy
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from admission.webhook.settings import Settings
from tests.webhook.conftest import pod, review, running, write_policy

pytestmark = pytest.mark.anyio


def _settings(tmp_path: Path, **kwargs: Any) -> Settings:
    return Settings(policy=str(write_policy(tmp_path / "p")), **kwargs)


@pytest.mark.parametrize("raw", [b"", b"{", b"not json", b"\xff\xfe", b'{"apiVersion": "admission.k8s.io/v1",}'],
                         ids=["empty", "truncated", "text", "binary", "trailing-comma"])
async def test_a_body_that_is_not_json_is_400(tmp_path: Path, raw: bytes) -> None:
    async with running(_settings(tmp_path)) as hook:
        response = await hook.post(None, raw=raw)
    assert response.status_code == 400
    assert response.headers["content-type"] == "application/json"
    assert response.json()["error"] == "the body is not JSON"


@pytest.mark.parametrize("body", [
    [], "review", 42, None, {},
    {"apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview"},  # no request
    {"apiVersion": "admission.k8s.io/v2", "kind": "AdmissionReview", "request": {"operation": "CREATE"}},
    {"apiVersion": "admission.k8s.io/v1", "kind": "Pod", "request": {"operation": "CREATE"}},
    {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "x"}, "spec": {}},  # a bare object
    {"apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview", "request": {"uid": "x"}},  # no operation
], ids=["list", "string", "number", "null", "empty-object", "no-request", "unknown-version", "wrong-kind", "bare-pod",
        "no-operation"])
async def test_a_body_that_is_not_an_admission_review_is_400(tmp_path: Path, body: Any) -> None:
    async with running(_settings(tmp_path)) as hook:
        response = await hook.post(body)
    assert response.status_code == 400
    error = response.json()
    assert error["error"].startswith("the body is not an AdmissionReview")


# (path into the review, a value of the wrong type): one at every level of the envelope
WRONG_TYPES = [
    (("apiVersion",), 1),
    (("kind",), ["AdmissionReview"]),
    (("request",), "CREATE"),
    (("request", "uid"), 123),
    (("request", "operation"), True),
    (("request", "kind"), "Pod"),
    (("request", "kind", "kind"), 7),
    (("request", "kind", "group"), 1),
    (("request", "resource"), []),
    (("request", "resource", "resource"), {"a": 1}),
    (("request", "subResource"), 1),
    (("request", "name"), ["web"]),
    (("request", "namespace"), 5),
    (("request", "userInfo"), "alice"),
    (("request", "userInfo", "username"), 1),
    (("request", "userInfo", "groups"), "system:masters"),
    (("request", "userInfo", "groups", 0), 1),
    (("request", "userInfo", "extra"), ["x"]),
    (("request", "object"), "a pod"),
    (("request", "oldObject"), 3),
    (("request", "dryRun"), "true"),
    (("request", "options"), "opts"),
]


def _set(body: dict[str, Any], path: tuple[Any, ...], value: Any) -> dict[str, Any]:
    out = copy.deepcopy(body)
    node: Any = out
    for step in path[:-1]:
        if isinstance(node, dict) and node.get(step) is None:
            node[step] = {} if not isinstance(path[path.index(step) + 1], int) else [None]
        node = node[step]
    node[path[-1]] = value
    return out


@pytest.mark.parametrize(("path", "value"), WRONG_TYPES, ids=[".".join(map(str, p)) for p, _ in WRONG_TYPES])
async def test_a_wrong_typed_envelope_field_is_400_naming_it(tmp_path: Path, path: tuple[Any, ...], value: Any) -> None:
    base = review(pod(), operation="UPDATE", old=pod())
    base["request"]["resource"] = {"group": "", "version": "v1", "resource": "pods"}
    base["request"]["userInfo"]["extra"] = {"k": ["v"]}
    async with running(_settings(tmp_path)) as hook:
        response = await hook.post(_set(base, path, value))
    assert response.status_code == 400, response.text
    details = " ".join(response.json()["details"])
    assert ".".join(str(p) for p in path if not isinstance(p, int)) in details


async def test_over_the_body_cap_is_413_by_content_length(tmp_path: Path) -> None:
    body = review(pod())
    body["request"]["object"]["metadata"]["annotations"] = {"big": "x" * 5000}
    async with running(_settings(tmp_path, max_body=4096)) as hook:
        response = await hook.post(body)
        small = await hook.post(review(pod()))
    assert response.status_code == 413
    assert "4096" in response.json()["error"]
    assert small.status_code == 200


async def test_over_the_body_cap_is_413_when_streamed_without_a_length(tmp_path: Path) -> None:
    async def chunks() -> AsyncIterator[bytes]:
        for _ in range(10):
            yield b" " * 1000  # JSON whitespace: only the size makes it wrong

    async with running(_settings(tmp_path, max_body=4096)) as hook:
        response = await hook.client.post("/validate", content=chunks())
    assert response.status_code == 413


async def test_the_default_cap_takes_an_update_with_two_large_objects(tmp_path: Path) -> None:
    big = pod()
    big["metadata"]["annotations"] = {"kubectl.kubernetes.io/last-applied-configuration": "x" * (3 << 20)}
    async with running(_settings(tmp_path)) as hook:
        response = await hook.post(review(big, operation="UPDATE", old=big))
    assert response.status_code == 200 and response.json()["response"]["allowed"] is True


async def test_refused_envelopes_leave_a_rate_limited_audit_line_with_the_uid_when_it_was_read(
        tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    wrong = {"apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview",
             "request": {"uid": "7f0c-uid", "operation": 5}}
    async with running(_settings(tmp_path, max_body=4096)) as hook:
        await hook.post(wrong)
        await hook.post(None, raw=b"x" * 5000)
        for _ in range(60):
            await hook.post(None, raw=b"nope")
        metrics = (await hook.client.get("/metrics")).text
    lines = hook.audit()
    assert lines[0]["uid"] == "7f0c-uid" and lines[0]["result"] == "bad_request" and lines[0]["code"] == 400
    assert lines[0]["details"] == ["request.operation: Input should be a valid string"]
    assert lines[1]["uid"] == "" and lines[1]["result"] == "too_large" and lines[1]["code"] == 413
    assert len(lines) < 40  # a burst of 20, then 5 a second: a flood of junk is not a flood of lines
    assert 'admission_envelope_refusals_total{result="bad_request"} 61.0' in metrics
    assert 'admission_envelope_refusals_total{result="too_large"} 1.0' in metrics
    refusals = [r for r in caplog.records if r.getMessage().startswith("refused a request")]
    assert 2 <= len(refusals) < 40 and "uid=7f0c-uid" in refusals[0].getMessage()


async def test_get_on_validate_is_not_allowed(tmp_path: Path) -> None:
    async with running(_settings(tmp_path)) as hook:
        response = await hook.client.get("/validate")
    assert response.status_code == 405
