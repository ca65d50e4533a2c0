"""The policy file: overlay on the default, strict validation, exemptions and enforcement (architecture §5)."""

from __future__ import annotations

import json
import re
from dataclasses import replace
from datetime import date
from pathlib import Path
from typing import Any

import pytest

from admission.errors import PolicyError
from admission.model import Container, ExemptionClaim, Located, Origin, Port, Workload
from admission.policy import catalog, engine
from admission.policy.config import (KEYS, ImagesSettings, Key, Stated, default_policy, load_policy, merge_policy,
                                     parse_policy)
from admission.yamlload import load_documents
from tests.chart.conftest import TEST_PUBLIC_KEY

ROOT = Path(__file__).resolve().parents[1]
O = Origin("f.yaml", 3, "spec")


def _overlay(text: str):
    return parse_policy(text, file="p.yaml", base=default_policy())


def _host_port_pod(*, name: str = "edge-7d4b9-x2x", namespace: str | None = "ingress-nginx",
                   claims: tuple[ExemptionClaim, ...] = ()) -> Workload:
    port = Port(target="443", published="443", host_ip=None, protocol="TCP", text="443", origin=O)
    container = Container(name="proxy", origin=O, image=Located("nginx:1.27.1", O), run_as_user=Located(101, O),
                          limits={"cpu": Located("1", O), "memory": Located("1Gi", O)}, host_ports=(port,))
    return Workload(source="kubernetes", kind="Pod", name=name, namespace=namespace, origin=O, containers=(container,),
                    exemption_claims=claims)


def test_default_policy_lists_exactly_the_rules_that_exist() -> None:
    assert set(default_policy().rules) == {r.id for r in catalog.all_rules().values() if not r.severity_fixed}


def test_overlay_keeps_rules_you_omit_and_takes_settings_of_rules_you_name() -> None:
    policy = _overlay("rules:\n  numeric-user: {severity: deny}\n")
    assert policy.rules["numeric-user"].severity == "deny"
    assert policy.rules["no-host-port"].params["allowed_host_ips"] == ("127.0.0.1", "::1")


def test_overlay_of_params_keeps_the_params_you_omit() -> None:
    policy = _overlay("rules:\n  image-tag-pinned: {params: {require_digest: true}}\n")
    params = policy.rules["image-tag-pinned"].params
    assert params["require_digest"] is True and params["disallowed_tags"] == ("latest",)


@pytest.mark.parametrize("text", ["rules:\n  numeric-user: {severity: off}\n", "rules:\n  numeric-user: false\n",
                                  "rules:\n  numeric-user: {severity: false}\n"])
def test_severity_off_and_yaml_false_disable_a_rule(text: str) -> None:
    assert _overlay(text).rules["numeric-user"].severity == "off"


@pytest.mark.parametrize(("text", "named"), [
    ("bogus: 1\n", "'bogus'"),
    ("rules:\n  no-such-rule: {severity: deny}\n", "'no-such-rule'"),
    ("rules:\n  resource-limits: {params: {requires: [cpu]}}\n", "'requires'"),
    ("rules:\n  resource-limits: {severity: block}\n", "'block'"),
    ("rules:\n  resource-limits: {severity: block}\n", "p.yaml:2: rules.resource-limits.severity must be"),
    ("rules:\n  numeric-user: block\n", "p.yaml:2: rules.numeric-user must be deny, warn or off"),
    ("images: {on_error: off}\n", "images.on_error must be deny or warn"),
    ("rules:\n  run-as-non-root: {severity: deny, note: x}\n", "'note'"),
    ("exemptions:\n  - rule: no-host-port\n", "reason is required"),
    ("exemptions:\n  - {rule: nope, reason: r}\n", "'nope'"),
    ("exemptions:\n  - {rule: '*', reason: r, expires: 30/06/2027}\n", "expires"),
    ("exemptions:\n  - {rule: '*', reason: r, team: x}\n", "'team'"),
    ("images: {resolve: sometimes}\n", "images.resolve"),
    ("images: {registry: x}\n", "'registry'"),
    ("enforcement: audit\n", "p.yaml:1: enforcement must be deny or warn, not 'audit'"),
])
def test_a_bad_policy_is_a_policy_error_that_names_the_key_and_line(text: str, named: str) -> None:
    with pytest.raises(PolicyError) as info:
        _overlay(text)
    assert named in str(info.value)
    assert "p.yaml:" in str(info.value)


def test_policy_files_are_yaml_1_2_so_on_is_a_string_not_true() -> None:
    with pytest.raises(PolicyError, match="must be true or false"):
        _overlay("exemptions_from_annotations: on\n")


def test_strict_policy_denies_everything_and_requires_digests() -> None:
    strict = load_policy(str(ROOT / "policies" / "strict.yaml"))
    assert {s.severity for s in strict.rules.values()} == {"deny"}
    assert strict.rules["image-tag-pinned"].params["require_digest"] is True
    assert strict.images.on_error == "deny"


def test_a_missing_policy_file_is_a_policy_error(tmp_path: Path) -> None:
    with pytest.raises(PolicyError, match="cannot read"):
        load_policy(str(tmp_path / "absent.yaml"))


def test_exemptions_are_added_to_the_defaults_and_match_by_globs() -> None:
    policy = _overlay("exemptions:\n  - {rule: no-host-port, namespace: 'ingress-*', name: 'edge-*', reason: edge proxy}\n")
    findings = engine.evaluate([_host_port_pod()], policy).findings
    hits = [f for f in findings if f.rule == "no-host-port"]
    assert len(hits) == 1 and hits[0].suppressed and hits[0].reason == "edge proxy"


def test_an_exemption_with_a_namespace_never_matches_an_object_without_one() -> None:
    policy = _overlay("exemptions:\n  - {rule: '*', namespace: '*', reason: all namespaces}\n")
    findings = engine.evaluate([_host_port_pod(namespace=None)], policy).findings
    assert any(f.rule == "no-host-port" and not f.suppressed for f in findings)


def test_an_exemption_with_a_kind_matches_the_objects_own_kind_only() -> None:
    policy = _overlay("exemptions:\n  - {rule: no-host-port, kind: Deployment, reason: r}\n")
    findings = engine.evaluate([_host_port_pod()], policy).findings
    assert [f.suppressed for f in findings if f.rule == "no-host-port"] == [False]


def test_an_exemption_for_another_container_does_not_suppress() -> None:
    policy = _overlay("exemptions:\n  - {rule: no-host-port, container: sidecar, reason: r}\n")
    findings = engine.evaluate([_host_port_pod()], policy).findings
    assert [f.suppressed for f in findings if f.rule == "no-host-port"] == [False]


def test_an_expired_exemption_is_not_honoured_and_says_so() -> None:
    policy = _overlay("exemptions:\n  - {rule: no-host-port, reason: migration, expires: 2026-01-31}\n")
    findings = engine.evaluate([_host_port_pod()], policy, today=date(2026, 2, 1)).findings
    hit = next(f for f in findings if f.rule == "no-host-port")
    assert not hit.suppressed and hit.reason == "expired 2026-01-31: migration"
    still = engine.evaluate([_host_port_pod()], policy, today=date(2026, 1, 31)).findings
    assert next(f for f in still if f.rule == "no-host-port").suppressed, "expiry is inclusive"


def test_enforcement_warn_turns_every_deny_into_a_warning() -> None:
    report = engine.evaluate([_host_port_pod()], _overlay("enforcement: warn\n"))
    assert report.findings and {f.severity for f in report.findings} == {"warn"}


def test_severity_off_removes_the_rules_findings() -> None:
    report = engine.evaluate([_host_port_pod()], _overlay("rules:\n  no-host-port: off\n"))
    assert not [f for f in report.findings if f.rule == "no-host-port"]


def _claim(rules: tuple[str, ...], reason: str | None, expires: str | None = None, via: str = "annotation") -> ExemptionClaim:
    return ExemptionClaim(rules=rules, reason=reason, expires=expires, via=via, origin=Origin("pod.yaml", 5, "metadata.annotations"))  # type: ignore[arg-type]


def test_annotation_exemptions_are_ignored_unless_the_policy_allows_them() -> None:
    pod = _host_port_pod(claims=(_claim(("no-host-port",), "needs the node port"),))
    off = engine.evaluate([pod], default_policy())
    assert [f.suppressed for f in off.findings if f.rule == "no-host-port"] == [False]
    assert off.errors == []
    on = engine.evaluate([pod], _overlay("exemptions_from_annotations: true\n"))
    hit = next(f for f in on.findings if f.rule == "no-host-port")
    assert hit.suppressed and "needs the node port" in (hit.reason or "")


@pytest.mark.parametrize(("claim", "error"), [
    (_claim(("no-host-port",), None), "no reason"),
    (_claim(("no-such-rule",), "r"), "unknown rule"),
    (_claim(("no-host-port",), "r", expires="next week"), "not a date"),
])
def test_a_bad_inline_exemption_is_dropped_reported_and_hides_nothing(claim: ExemptionClaim, error: str) -> None:
    pod = _host_port_pod(claims=(claim,))
    report = engine.evaluate([pod], _overlay("exemptions_from_annotations: true\n"))
    assert [f.suppressed for f in report.findings if f.rule == "no-host-port"] == [False]
    assert len(report.errors) == 1 and error in report.errors[0].message
    assert report.errors[0].file == "pod.yaml" and report.errors[0].line == 5


def test_x_admission_exemptions_are_always_honoured() -> None:
    pod = _host_port_pod(claims=(_claim(("no-host-port",), "edge", via="x-admission"),))
    report = engine.evaluate([pod], default_policy())
    assert next(f for f in report.findings if f.rule == "no-host-port").suppressed


def _unresolved_pod(error: str = "timeout: no answer within the deadline") -> Workload:
    container = Container(name="app", origin=O, image=Located("registry.example.com/app:1.2", O),
                          run_as_user=Located(1001, O), limits={"cpu": Located("1", O), "memory": Located("1Gi", O)},
                          image_config_error=error)
    return Workload(source="kubernetes", kind="Pod", name="p", namespace="default", origin=O, containers=(container,))


def test_image_config_unavailable_takes_its_severity_from_images_on_error() -> None:
    default = engine.evaluate([_unresolved_pod()], default_policy())
    (hit,) = [f for f in default.findings if f.rule == "image-config-unavailable"]
    assert hit.severity == "warn" and "timeout" in hit.message and "registry.example.com/app:1.2" in hit.message
    strict = engine.evaluate([_unresolved_pod()], load_policy(str(ROOT / "policies" / "strict.yaml")))
    assert [f.severity for f in strict.findings if f.rule == "image-config-unavailable"] == ["deny"]


def test_image_config_unavailable_cannot_be_set_under_rules() -> None:
    with pytest.raises(PolicyError, match="images.on_error"):
        _overlay("rules:\n  image-config-unavailable: {severity: deny}\n")


def test_without_resolution_there_is_no_image_config_unavailable_finding() -> None:
    report = engine.evaluate([_host_port_pod()], default_policy())
    assert not [f for f in report.findings if f.rule == "image-config-unavailable"]


@pytest.mark.parametrize(("param", "value", "complaint"), [
    ("allowed_host_ips", "localhost", "not an IP address"), ("allowed_host_ports", 99999, "not a port"),
    ("allowed_host_ports", "80-x", "not a port")])
def test_host_allow_lists_that_could_never_match_are_policy_errors(param: str, value: object, complaint: str) -> None:
    with pytest.raises(PolicyError, match=complaint):
        _overlay(f"rules:\n  no-host-port: {{params: {{{param}: [{value!r}]}}}}\n")


def test_allowed_host_ports_take_ranges_and_every_published_port_must_be_allowed() -> None:
    from admission.policy.rules.hostports import port_allowed

    port = Port(target="8000-8002", published="8000-8002", host_ip=None, protocol="tcp", text="8000-8002:8000-8002", origin=O)
    assert port_allowed(port, allowed_ips=(), allowed_ports=("8000-8010",))
    assert not port_allowed(port, allowed_ips=(), allowed_ports=(8000, 8001))


def test_registry_names_in_the_images_settings_fold_docker_hub_aliases() -> None:
    policy = _overlay("images:\n  allowed_registries: [Registry-1.Docker.IO, 'Reg.Example.com:5000']\n"
                      "  mirrors: {index.docker.io: [mirror.example.com]}\n")
    assert policy.images.allowed_registries == ("docker.io", "reg.example.com:5000")
    assert policy.images.mirrors == {"docker.io": ("mirror.example.com",)}


def test_a_root_uid_from_passwd_is_never_offered_as_the_fix() -> None:
    from admission.model import ImageConfig

    config = ImageConfig(reference="x:1", digest=None, user="toor", user_uid=0)
    container = Container(name="app", origin=O, image=Located("x:1", O), image_config=config,
                          limits={"cpu": Located("1", O), "memory": Located("1Gi", O)})
    pod = Workload(source="kubernetes", kind="Pod", name="p", namespace="d", origin=O, containers=(container,))
    (warning,) = [f for f in engine.evaluate([pod], default_policy()).findings if f.rule == "numeric-user"]
    assert "runAsUser: 0" not in warning.remediation and "10001" in warning.remediation


# A valid value for every key of the policy key table. A key added to the table fails the tests below until it has
# one here, and until the loader does something with it.
SAMPLES: dict[str, Any] = {
    "enforcement": "warn",
    "rules": {"image-size": "deny"},
    "rules.<rule-id>": "off",
    "rules.<rule-id>.severity": "deny",
    "rules.<rule-id>.params": {"max_mib": 100},
    "exemptions": [{"rule": "*", "reason": "legacy"}],
    "exemptions[].rule": "image-size",
    "exemptions[].namespace": "team-*",
    "exemptions[].name": "web-*",
    "exemptions[].kind": "Deployment",
    "exemptions[].container": "app",
    "exemptions[].reason": "legacy",
    "exemptions[].expires": "2027-06-30",
    "exemptions[].manual_runs": True,
    "exemptions_from_annotations": True,
    "owners": {"controllers": ["system:serviceaccount:ci:deployer"]},
    "owners.controllers": ["system:kube-controller-manager"],
    "images": {"tag_ttl": 60},
    "images.resolve": True,
    "images.on_error": "deny",
    "images.platform": "linux/arm64",
    "images.allowed_registries": ["reg.example.com"],
    "images.restrict_to_allowed": True,
    "images.insecure_registries": ["reg.example.com:5000"],
    "images.mirrors": {"docker.io": ["mirror.example.com"]},
    "images.mirrors.<registry>": ["mirror.example.com"],
    "images.tag_ttl": 60,
    "images.resolve_user_names": True,
    "images.verify": [{"images": ["reg.example.com/team/*"], "keys": [TEST_PUBLIC_KEY]}],
    "images.verify[].images": ["reg.example.com/*"],
    "images.verify[].keys": [TEST_PUBLIC_KEY],
    "images.verify[].signature": "warn",
    "images.verify[].on_unavailable": "warn",
    "images.verify[].provenance": "required",
    "images.verify[].build_types": ["https://mobyproject.org/buildkit@v1"],
    "images.verify[].builders": ["https://ci.example/runner"],
    "images.verify[].sources": ["https://github.com/acme/*"],
}
PLACEHOLDERS = {"<rule-id>": "image-size", "<registry>": "docker.io"}


def _document(parts: list[str], value: Any, parent: str = "") -> Any:
    """A policy document that sets the key `parts` (a table path, split) to `value`, with its required siblings."""
    if not parts:
        return value
    head, rest = parts[0], parts[1:]
    path = f"{parent}.{head}" if parent else head
    if head.endswith("[]"):
        item = {key.name: SAMPLES[key.path] for key in KEYS if key.parent == path and key.required}
        item.update(_document(rest, value, path))
        return {head.removesuffix("[]"): [item]}
    return {PLACEHOLDERS.get(head, head): _document(rest, value, path)}


@pytest.mark.parametrize("key", KEYS, ids=lambda key: key.path)
def test_every_key_in_the_table_is_accepted_and_changes_the_policy(key: Key) -> None:
    document = _document(key.path.split("."), SAMPLES[key.path])
    policy = parse_policy(json.dumps(document), file="p.yaml", base=default_policy())  # JSON is YAML 1.2
    assert replace(policy, source="default.yaml") != default_policy(), f"{key.path} was accepted but ignored"


UNKNOWN_AT_EACH_LEVEL = {  # level -> (policy text, line of the unknown name, what the message says)
    "": ("enforcement: warn\nbogus: 1\n", 2, "unknown key 'bogus' in the policy"),
    "rules": ("rules:\n  numeric-user: warn\n  bogus: warn\n", 3, "unknown rule 'bogus'"),
    "rules.<rule-id>": ("rules:\n  image-size:\n    severity: warn\n    bogus: 1\n", 4,
                        "unknown key 'bogus' in rules.image-size"),
    "rules.<rule-id>.params": ("rules:\n  image-size:\n    params:\n      max_mib: 10\n      bogus: 1\n", 5,
                               "unknown parameter 'bogus' for rule image-size"),
    "exemptions[]": ("exemptions:\n  - rule: '*'\n    reason: r\n    bogus: 1\n", 4,
                     "unknown key 'bogus' in exemptions[0]"),
    "images": ("images:\n  tag_ttl: 60\n  bogus: 1\n", 3, "unknown key 'bogus' in images"),
    "owners": ("owners:\n  controllers: []\n  bogus: 1\n", 3, "unknown key 'bogus' in owners"),
    "images.verify[]": ("images:\n  verify:\n  - images: [x/*]\n    keys: [" + json.dumps(TEST_PUBLIC_KEY) + "]\n"
                        "    bogus: 1\n", 5, "unknown key 'bogus' in images.verify[0]"),
}


@pytest.mark.parametrize("level", UNKNOWN_AT_EACH_LEVEL)
def test_an_unknown_key_at_any_level_is_refused_naming_the_key_and_its_line(level: str) -> None:
    text, line, message = UNKNOWN_AT_EACH_LEVEL[level]
    with pytest.raises(PolicyError, match="^" + re.escape(f"p.yaml:{line}: {message}")):
        _overlay(text)


def test_every_level_that_names_keys_is_covered_by_the_unknown_key_cases() -> None:
    named = {key.parent for key in KEYS if key.name != "<registry>"}  # any registry name is a valid mirrors key
    assert named | {key.path for key in KEYS if key.kind == "params"} == set(UNKNOWN_AT_EACH_LEVEL)


def test_the_unknown_key_message_lists_the_keys_the_table_allows_there() -> None:
    with pytest.raises(PolicyError) as info:
        _overlay("images:\n  bogus: 1\n")
    allowed = sorted(key.name for key in KEYS if key.parent == "images")
    assert f"(allowed: {', '.join(allowed)})" in str(info.value)


def test_the_key_tables_defaults_are_the_built_in_policys_values() -> None:
    policy = default_policy()
    actual = {"enforcement": policy.enforcement, "exemptions": policy.exemptions,
              "exemptions_from_annotations": policy.exemptions_from_annotations,
              "owners.controllers": policy.controllers,
              **{f"images.{name}": getattr(policy.images, name) for name in ImagesSettings.__dataclass_fields__}}
    assert {key.path: key.default for key in KEYS if not isinstance(key.default, Stated)} == actual
    assert ImagesSettings() == policy.images, "a policy that never names images gets the same settings"


def test_yaml_one_is_not_true_for_a_key_that_takes_true_or_false() -> None:
    with pytest.raises(PolicyError, match=r"p\.yaml:1: images\.resolve must be auto, true or false, not 1"):
        _overlay("images: {resolve: 1}\n")


def test_a_policy_embedded_in_another_yaml_file_is_merged_with_that_files_lines() -> None:
    text = "version: 1\npolicy:\n  enforcement: warn\n  images:\n    tag_ttl: 60\n    registry: x\n"
    (document,) = load_documents(text, file="repo.yaml", dialect="1.2")
    with pytest.raises(PolicyError, match=r"^repo\.yaml:6: unknown key 'registry' in images"):
        merge_policy(document.value["policy"], file="repo.yaml", base=default_policy())
    del document.value["policy"]["images"]["registry"]
    merged = merge_policy(document.value["policy"], file="repo.yaml", base=default_policy())
    assert merged == parse_policy("enforcement: warn\nimages: {tag_ttl: 60}\n", file="repo.yaml", base=default_policy())


def test_a_plain_mapping_overlays_like_the_same_policy_read_from_yaml() -> None:
    merged = merge_policy({"rules": {"numeric-user": "off"}, "exemptions": [{"rule": "*", "reason": "r"}]},
                          file="p.yaml", base=default_policy())
    assert merged.rules["numeric-user"].severity == "off" and merged.exemptions[-1].reason == "r"
