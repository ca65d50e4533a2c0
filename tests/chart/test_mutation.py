"""The chart's mutating webhook (`mutation.enabled`), read from real renders: off by default; when on, sent what the
server pins and nothing else, with the validating webhook's exclusions, timeout and certificates, its own failurePolicy,
reinvocation after other mutating webhooks, and what the server needs to keep its caBundle (managed)."""

from __future__ import annotations

import pytest

from admission.webhook.mutate import skip_set
from tests.chart.conftest import NAMESPACE, VALUE_SETS, Rendered, render

MUTATING = sorted(label for label, values in VALUE_SETS.items() if values.get("mutation", {}).get("enabled"))
OFF = sorted(set(VALUE_SETS) - set(MUTATING))


def _mode(label: str) -> str:
    return VALUE_SETS[label].get("tls", {}).get("mode", "managed")


def _rules(hook: dict) -> set[tuple[str, str, str]]:
    return {(group, resource, operation) for rule in hook["rules"] for group in rule["apiGroups"]
            for resource in rule["resources"] for operation in rule["operations"]}


@pytest.mark.parametrize("label", OFF)
def test_without_mutation_enabled_nothing_of_it_is_rendered(rendered: dict[str, Rendered], label: str) -> None:
    r = rendered[label]
    assert not r.has("MutatingWebhookConfiguration")
    assert not [name for name in r.env() if name.startswith("ADMISSION_MUTATION_") or name.endswith("MUTATING_WEBHOOK")]
    assert not [rule for role in r.all("ClusterRole") for rule in role["rules"]
                if "mutatingwebhookconfigurations" in rule["resources"]]


@pytest.mark.parametrize("label", MUTATING)
def test_the_mutating_webhook_shares_the_validating_ones_exclusions_timeout_and_service(
        rendered: dict[str, Rendered], label: str) -> None:
    r = rendered[label]
    hook, validating = r.mutating, r.webhook
    assert hook["name"] == "mutate.admission.policy"
    for key in ("namespaceSelector", "timeoutSeconds", "admissionReviewVersions", "matchPolicy", "sideEffects"):
        assert hook[key] == validating[key], key
    assert hook.get("objectSelector") == validating.get("objectSelector")
    assert hook["clientConfig"]["service"] == {**validating["clientConfig"]["service"], "path": "/mutate"}
    assert hook["sideEffects"] == "None" and hook["reinvocationPolicy"] == "IfNeeded"
    assert hook["failurePolicy"] == VALUE_SETS[label]["mutation"].get("failurePolicy", "Ignore")
    assert r.one("MutatingWebhookConfiguration")["metadata"]["name"] == \
        r.one("ValidatingWebhookConfiguration")["metadata"]["name"]


def test_pods_are_sent_on_create_and_ephemeral_containers_on_update_and_templates_only_when_asked(
        rendered: dict[str, Rendered]) -> None:
    assert _rules(rendered["mutation"].mutating) == {("", "pods", "CREATE"), ("", "pods/ephemeralcontainers", "UPDATE")}
    with_templates = _rules(rendered["mutation-self-signed"].mutating)
    assert with_templates - _rules(rendered["mutation"].mutating) == {
        ("", "podtemplates", "CREATE"), ("", "podtemplates", "UPDATE"), ("", "replicationcontrollers", "CREATE"),
        ("", "replicationcontrollers", "UPDATE"), *{("apps", k, op) for k in ("deployments", "replicasets",
                                                                              "statefulsets", "daemonsets")
                                                    for op in ("CREATE", "UPDATE")},
        ("batch", "jobs", "CREATE"), ("batch", "cronjobs", "CREATE"), ("batch", "cronjobs", "UPDATE")}
    # a Job's template cannot change once created: an UPDATE is never sent, so never pinned
    assert ("batch", "jobs", "UPDATE") not in with_templates


@pytest.mark.parametrize("label", MUTATING)
def test_the_server_is_told_what_the_chart_sends_it_and_which_registries_to_skip(
        rendered: dict[str, Rendered], label: str) -> None:
    from admission.webhook.settings import Settings

    r, values = rendered[label], VALUE_SETS[label]["mutation"]
    env = r.env()
    assert env["ADMISSION_MUTATION_TEMPLATES"] == str(values.get("templates", False)).lower()
    skip = values.get("skip_registries", [])
    assert env.get("ADMISSION_MUTATION_SKIP_REGISTRIES", "") == ",".join(skip)
    settings = Settings(**{k.removeprefix("ADMISSION_").lower(): v for k, v in env.items()
                           if k.startswith("ADMISSION_MUTATION_")})
    assert settings.mutation_templates is values.get("templates", False)
    assert skip_set(settings.mutation_skip_registries) == {s.lower() for s in skip}


@pytest.mark.parametrize("label", MUTATING)
def test_the_mutating_webhook_gets_the_validating_ones_certificate_handling(
        rendered: dict[str, Rendered], label: str) -> None:
    r = rendered[label]
    mutating, validating = r.one("MutatingWebhookConfiguration"), r.one("ValidatingWebhookConfiguration")
    assert mutating["metadata"].get("annotations") == validating["metadata"].get("annotations")
    assert r.mutating["clientConfig"].get("caBundle") == r.webhook["clientConfig"].get("caBundle")
    if _mode(label) == "selfSigned":
        assert r.mutating["clientConfig"]["caBundle"] == r.one("Secret")["data"]["ca.crt"]
    elif _mode(label) == "certManager":
        assert mutating["metadata"]["annotations"]["cert-manager.io/inject-ca-from"] == f"{NAMESPACE}/admission-serving"
    else:
        assert "caBundle" not in r.mutating["clientConfig"], "the server writes it"
        assert r.env()["ADMISSION_TLS_MUTATING_WEBHOOK"] == mutating["metadata"]["name"]
        (rule,) = r.one("ClusterRole", "admission-webhook-ca")["rules"]
        assert set(rule["resources"]) == {"validatingwebhookconfigurations", "mutatingwebhookconfigurations"}
        assert rule["resourceNames"] == [mutating["metadata"]["name"]]


def test_notes_say_whether_and_what_the_webhook_pins(rendered: dict[str, Rendered]) -> None:
    assert "mutation:       off (mutation.enabled)" in rendered["defaults"].notes
    assert "pins Pods' image tags to digests (failurePolicy Ignore)" in rendered["mutation"].notes
    assert "and MutatingWebhookConfiguration (ignoreDifferences)" in rendered["mutation"].notes
    assert "pins Pods' and pod templates' image tags to digests (failurePolicy Fail)" in \
        rendered["mutation-self-signed"].notes


@pytest.mark.parametrize(("values", "where"), [
    ({"mutation": {"enabled": "yes"}}, "enabled"),
    ({"mutation": {"failurePolicy": "ignore"}}, "failurePolicy"),
    ({"mutation": {"skipRegistries": ["docker.io"]}}, "skipRegistries"),
    ({"mutation": {"skip_registries": ["a.example,b.example"]}}, "skip_registries"),
])
def test_the_schema_refuses_unknown_and_mistyped_mutation_values(values: dict, where: str) -> None:
    import helm_python

    with pytest.raises(helm_python.HelmValuesError, match=where):
        render(values)
