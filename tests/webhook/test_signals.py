"""What the webhook tells operators: why an image lookup failed (audit line and counters; the answer says only
"unavailable" or "not allowed by policy"), which policy is serving, the standard and bounded metrics."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from admission.webhook.metrics import Metrics
from admission.webhook.settings import Settings
from tests.images.faults import Faults, respond
from tests.webhook.conftest import good_container, pod, review, running, write_policy

pytestmark = pytest.mark.anyio


def _policy(tmp_path: Path, text: str) -> Settings:
    return Settings(policy=str(write_policy(tmp_path / "p", text)), deadline=5.0)


async def test_a_failed_lookup_says_only_unavailable_and_audits_the_precise_reason(
        tmp_path: Path, faults: Faults) -> None:
    faults.route("/v2/", respond(200))  # the registry answers, and has no such image
    images = {"guarded": "10.0.0.12:5000/team/app:1", "unresolved": "registry.invalid/team/app:1",
              "missing": f"{faults.host}/team/" + "a-long-repository-name/" * 4 + "app:1"}
    text = f"images: {{resolve: auto, on_error: warn, insecure_registries: [{faults.host}], " \
           f"allowed_registries: [{faults.host}]}}\n"
    async with running(_policy(tmp_path, text)) as hook:
        got = await hook.answer(review(pod(containers=[good_container(name, image)
                                                       for name, image in images.items()])))
        metrics = (await hook.client.get("/metrics")).text
    lines = [w for w in got["warnings"] if w.startswith("[image-config-unavailable]")]
    assert len(lines) == 3 and all(len(w) < 120 for w in lines)
    assert {w for w in lines} == {f"[image-config-unavailable] container '{name}' uses an image whose config is "
                                  "unavailable" for name in images}
    said = " ".join(got["warnings"])
    assert not any(word in said for word in ("private", "cannot resolve", "404", "blocked", "allowed_registries",
                                             "10.0.0.12", "registry.invalid", "resolves"))
    audited = {entry["container"]: entry for entry in hook.audit()[-1]["images"]}
    assert {name: audited[name]["reason"] for name in images} == \
        {"guarded": "address-guard", "unresolved": "dns", "missing": "not-found"}
    assert audited["guarded"]["image"] == images["guarded"] and "is private" in audited["guarded"]["detail"]
    for reason in ("address-guard", "dns", "not-found"):
        assert f'admission_image_failures_total{{reason="{reason}"}} 1.0' in metrics
    assert 'admission_registry_dns_failures_total{registry="registry.invalid"} 1.0' in metrics


async def test_an_image_outside_allowed_registries_is_not_allowed_by_policy(tmp_path: Path) -> None:
    text = "images: {resolve: auto, on_error: deny, restrict_to_allowed: true, allowed_registries: [ours.example]}\n"
    async with running(_policy(tmp_path, text)) as hook:
        got = await hook.answer(review(pod(containers=[good_container(image="docker.io/library/nginx:1.27")])))
    assert got["allowed"] is False
    assert "[image-config-unavailable] container 'app' uses an image whose registry is not allowed by policy; fix: " \
           "use an image from a registry the policy allows (ask the cluster's operators which)" in got["status"]["message"]
    assert hook.audit()[-1]["images"][0]["reason"] == "not-allowed"


def _value(metrics: str, series: str) -> float:
    match = re.search(rf"^{re.escape(series)} (\S+)$", metrics, re.MULTILINE)
    assert match, f"{series} not in /metrics"
    return float(match.group(1))


async def test_metrics_say_which_policy_serves_and_flag_a_rejected_newer_file(tmp_path: Path) -> None:
    settings = _policy(tmp_path, "images: {resolve: false}\n")
    async with running(settings) as hook:
        first = (await hook.client.get("/metrics")).text
        Path(settings.policy or "").write_text("rules: {nope: deny}\n")
        hook.state.holder.check()
        stale = (await hook.client.get("/metrics")).text
    served = re.search(r'^admission_policy_info\{hash="([0-9a-f]{16})"\} 1.0$', first, re.MULTILINE)
    assert served is not None and f'admission_policy_info{{hash="{served.group(1)}"}} 1.0' in stale
    assert _value(first, "admission_policy_stale") == 0.0 and _value(stale, "admission_policy_stale") == 1.0
    assert _value(stale, "admission_policy_last_reload_timestamp_seconds") == \
        _value(first, "admission_policy_last_reload_timestamp_seconds") > 1.7e9


async def test_metrics_have_the_standard_series_bounded_labels_and_no_created_series(tmp_path: Path) -> None:
    async with running(_policy(tmp_path, "images: {resolve: false}\n")) as hook:
        await hook.answer(review(pod()))
        dry = review(pod())
        dry["request"]["dryRun"] = True
        await hook.answer(dry)
        odd = review(pod())
        odd["request"]["kind"] = {"group": "example.com", "version": "v1", "kind": "Widget"}
        await hook.answer(odd)
        metrics = (await hook.client.get("/metrics")).text
    assert "_created" not in metrics
    assert re.search(r'^admission_build_info\{python="[\d.]+",version="[^"]+"\} 1.0$', metrics, re.MULTILINE)
    assert "process_cpu_seconds_total" in metrics and "python_info{" in metrics
    assert ('admission_requests_total{dry_run="true",kind="Pod",operation="CREATE",'
            'result="allowed",webhook="validate"} 1.0') in metrics
    assert ('admission_requests_total{dry_run="false",kind="Pod",operation="CREATE",'
            'result="allowed",webhook="validate"} 1.0') in metrics
    assert ('admission_requests_total{dry_run="false",kind="other",operation="CREATE",'
            'result="skipped",webhook="validate"} 1.0') in metrics
    assert 'admission_request_duration_seconds_count{kind="Pod",operation="CREATE",webhook="validate"} 2.0' in metrics
    assert "Widget" not in metrics


def test_the_registry_label_counts_registries_past_the_cap_as_other() -> None:
    metrics = Metrics(registry_labels=2)
    assert [metrics.registry_label(r) for r in ("a.example", "b.example", "c.example", "a.example")] == \
        ["a.example", "b.example", "other", "a.example"]
