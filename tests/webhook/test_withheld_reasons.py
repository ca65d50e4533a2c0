"""Why an image lookup failed never reaches the requester (issue 22, item 1): not in the deny message, not in a
warning, whichever rule says it. Anyone who can create Pods could otherwise map registry names to the addresses
they resolve to. The audit line, the metrics and the server log keep the precise reason, and so does the CLI,
whose user is the one who asked.

The reasons are real: the SSRF guard refusing loopback, private and link-local addresses (refused before any
connection), a name that does not resolve, a registry on loopback that answers 500 or 401 (the fault server), and
`images.restrict_to_allowed`."""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

import pytest

from admission.cli.main import main
from admission.policy import catalog
from admission.webhook.settings import Settings
from tests.images.faults import Faults, respond
from tests.webhook.conftest import good_container, pod, review, rules_in, running, write_policy

pytestmark = pytest.mark.anyio

# container name -> image; each lookup fails with a reason that names an address or a host
ADDRESSED = {
    "c-lo": "localhost:5000/team/app:1.0",  # localhost resolves to 127.0.0.1, which is loopback
    "c-ten": "10.1.2.3/team/app:1.0",
    "c-meta": "169.254.169.254/team/app:1.0",
    "c-dns": "no-such-registry.invalid/team/app:1.0",
}
# What no answer may contain: the addresses, the hosts, and the words of the precise reasons.
WITHHELD = ("127.0.0.1", "10.1.2.3", "169.254.169.254", "localhost", "no-such-registry", "resolves", "resolve ",
            "loopback", "private", "link-local", "blocked", "restrict_to_allowed", "allowed_registries", "answered",
            "500", "401",
            "Unauthorized", "Internal Server Error")
# The rules that read an image config, each enabled alone (build-context reads build contexts, never in a cluster).
CONFIG_RULES = ("run-as-non-root", "numeric-user", "image-size", "healthcheck", "image-provenance",
                "image-config-unavailable")
# Those that say something of a container whose image config is missing (the others say nothing without one).
SPEAK_WITHOUT_CONFIG = {"run-as-non-root", "healthcheck", "image-config-unavailable"}


def user_from_image(name: str, image: str) -> dict[str, Any]:
    """A container that leaves its user (and health check) to its image: only the config could tell."""
    container = good_container(name, image)
    container["securityContext"] = {}
    del container["livenessProbe"], container["readinessProbe"]
    return container


def only(rule: str, faults: Faults, *, restrict: bool = False) -> str:
    rules = "\n".join(f"  {r}: {'deny' if r == rule else 'off'}" for r, spec in catalog.all_rules().items()
                      if not spec.severity_fixed)  # those take their severity from `images`, never `rules:`
    on_error = "deny" if rule == "image-config-unavailable" else "warn"
    return (f"rules:\n{rules}\nimages:\n  resolve: auto\n  on_error: {on_error}\n  restrict_to_allowed: "
            f"{'true' if restrict else 'false'}\n  allowed_registries: [{faults.host}]\n"
            f"  insecure_registries: [{faults.host}]\n")


def leaked(answer: dict[str, Any], faults: Faults) -> list[str]:
    said = json.dumps({k: v for k, v in answer.items() if k != "uid"})  # a random uid may hold "401"
    return [word for word in (*WITHHELD, faults.host) if word in said]


@pytest.mark.parametrize("restrict", [False, True], ids=["address-guard", "restrict-to-allowed"])
@pytest.mark.parametrize("rule", CONFIG_RULES)
async def test_no_rule_carries_a_lookups_precise_reason_to_the_requester(
        tmp_path: Path, faults: Faults, rule: str, restrict: bool, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, "admission.webhook")
    faults.route("/v2/", respond(200))
    faults.route("/v2/status/app/manifests/1.0", respond(500, b"Internal Server Error"))
    faults.route("/v2/auth/app/manifests/1.0", respond(401, b'{"errors":[{"code":"UNAUTHORIZED"}]}'))
    images = {**ADDRESSED, "status": f"{faults.host}/status/app:1.0", "auth": f"{faults.host}/auth/app:1.0"}
    policy = write_policy(tmp_path / "p", only(rule, faults, restrict=restrict))
    async with running(Settings(policy=str(policy), deadline=5.0)) as hook:
        got = await hook.answer(review(pod(containers=[user_from_image(n, i) for n, i in images.items()])))
        metrics = (await hook.client.get("/metrics")).text
    assert leaked(got, faults) == [], json.dumps(got, indent=1)
    said = " ".join([got.get("status", {}).get("message", ""), *got.get("warnings", [])])
    assert (f"[{rule}]" in said) is (rule in SPEAK_WITHOUT_CONFIG)
    assert ({r["rule"] for r in hook.audit()[-1]["rules"]} - {"image-config-unavailable"}) == \
        ({rule} & SPEAK_WITHOUT_CONFIG - {"image-config-unavailable"})
    # The audit line has each precise reason, the metrics count them, the server log says them.
    audited = {entry["container"]: entry for entry in hook.audit()[-1]["images"]}
    assert set(audited) == set(images)
    if restrict:
        assert {e["reason"] for n, e in audited.items() if n not in ("status", "auth")} == {"not-allowed"}
    else:
        assert {n: audited[n]["reason"] for n in ADDRESSED} == {"c-lo": "address-guard", "c-ten": "address-guard",
                                                                "c-meta": "address-guard", "c-dns": "dns"}
        assert "resolves to 127.0.0.1" in audited["c-lo"]["detail"]
        assert "10.1.2.3" in audited["c-ten"]["detail"] and "169.254.169.254" in audited["c-meta"]["detail"]
    assert audited["status"]["reason"] == "error" and "500" in audited["status"]["detail"]
    assert audited["auth"]["reason"] == "auth"
    assert 'admission_image_failures_total{reason="auth"} 1.0' in metrics
    logged = [r.getMessage() for r in caplog.records if r.getMessage().startswith("image config of ")]
    assert any("10.1.2.3" in line for line in logged) and any("500" in line for line in logged)


async def test_run_as_non_root_says_the_config_is_unavailable_without_the_reason(tmp_path: Path, faults: Faults) -> None:
    """The case the issue found: kubectl run showed `... unavailable: blocked: registry localhost:5000 refused:
    localhost resolves to 127.0.0.1, which is loopback`."""
    policy = write_policy(tmp_path / "p", only("run-as-non-root", faults))
    async with running(Settings(policy=str(policy), deadline=5.0)) as hook:
        got = await hook.answer(review(pod(containers=[user_from_image("app", ADDRESSED["c-lo"])])))
    message = got["status"]["message"]
    assert "container 'app' sets neither runAsUser nor runAsNonRoot, and its image user is unknown (its image config " \
           "is unavailable: the lookup failed (the webhook's audit log says why))" in message
    assert leaked(got, faults) == []


async def test_an_image_outside_allowed_registries_is_said_to_be_not_allowed_in_every_rule(
        tmp_path: Path, faults: Faults) -> None:
    policy = write_policy(tmp_path / "p", only("run-as-non-root", faults, restrict=True))
    async with running(Settings(policy=str(policy), deadline=5.0)) as hook:
        got = await hook.answer(review(pod(containers=[user_from_image("app", ADDRESSED["c-ten"])])))
    assert "(its image config is unavailable: not allowed by policy)" in got["status"]["message"]
    assert "[image-config-unavailable] container 'app' uses an image whose registry is not allowed by policy" \
        in got["warnings"]


def test_the_cli_keeps_the_precise_reasons(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    manifest = tmp_path / "pod.yaml"
    manifest.write_text(json.dumps(pod(containers=[user_from_image(n, i) for n, i in ADDRESSED.items()])))
    policy = write_policy(tmp_path / "p", "images: {resolve: auto, on_error: warn}\n")
    main(["check", "--format", "json", "--resolve-images", "--no-cache", "--policy", str(policy), str(manifest)])
    findings = json.loads(capsys.readouterr().out)["findings"]
    said = " ".join(f["message"] for f in findings)
    assert "localhost resolves to 127.0.0.1" in said and "10.1.2.3" in said and "169.254.169.254" in said
    root = [f["message"] for f in findings if f["rule"] == "run-as-non-root" and f["container"] == "c-ten"]
    assert root and "blocked: " in root[0] and "10.1.2.3" in root[0]
