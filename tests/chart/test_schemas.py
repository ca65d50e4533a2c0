"""The chart against real schemas: `helm lint --strict` (the Helm library) and every core object against the
Kubernetes OpenAPI schemas of 1.28, 1.30 and 1.33 (kubernetes-validate, strict: unknown fields fail).
kubernetes-validate has no CRD schemas, so cert-manager's and prometheus-operator's objects are checked for the
fields their CRDs require here."""

from __future__ import annotations

import json
import re
from typing import Any

import pytest

from tests.chart.conftest import CHART, NAMESPACE, VALUE_SETS, Rendered

KUBE_VERSIONS = ("1.28.0", "1.30.0", "1.33.0")
CRD_GROUPS = ("cert-manager.io/", "monitoring.coreos.com/")


@pytest.fixture(scope="module")
def core_objects(rendered: dict[str, Rendered]) -> dict[str, tuple[str, dict[str, Any]]]:
    """Every distinct core object over all value sets: canonical JSON -> (where it came from, object)."""
    out: dict[str, tuple[str, dict[str, Any]]] = {}
    for label, r in rendered.items():
        for obj in r.objects:
            if not obj["apiVersion"].startswith(CRD_GROUPS):
                out.setdefault(json.dumps(obj, sort_keys=True), (f"{label}: {obj['kind']} {obj['metadata']['name']}",
                                                                 obj))
    return out


@pytest.mark.parametrize("kube_version", KUBE_VERSIONS)
def test_every_core_object_validates_strictly_against_the_kubernetes_schema(
        core_objects: dict[str, tuple[str, dict[str, Any]]], kube_version: str) -> None:
    import kubernetes_validate

    kinds = set()
    for where, obj in core_objects.values():
        try:
            kubernetes_validate.validate(obj, kube_version, strict=True)
        except kubernetes_validate.ValidationError as exc:
            pytest.fail(f"{where} does not validate for {kube_version}: {exc.message} at {list(exc.path)}")
        kinds.add(obj["kind"])
    assert kinds >= {"Deployment", "Service", "ServiceAccount", "ConfigMap", "Secret", "ValidatingWebhookConfiguration",
                     "PodDisruptionBudget", "ClusterRole", "ClusterRoleBinding", "NetworkPolicy", "Job",
                     "HorizontalPodAutoscaler"}


def test_the_schema_check_catches_a_field_kubernetes_does_not_have(rendered: dict[str, Rendered]) -> None:
    """strict=True really refuses unknown fields, so the test above would see a typo."""
    import copy

    import kubernetes_validate

    deployment = copy.deepcopy(rendered["defaults"].deployment)
    deployment["spec"]["template"]["spec"]["containers"][0]["lifecycle"]["preStop"] = {"sleep": {"seconds": 5}}
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(deployment, "1.28.0", strict=True)  # the sleep action is not in 1.28
    deployment["spec"]["template"]["spec"]["containers"][0]["imagePullPolicie"] = "Always"
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(deployment, "1.33.0", strict=True)


_DURATION = re.compile(r"^(\d+(\.\d+)?(ns|us|µs|ms|s|m|h))+$")


def _check_certificate(cert: dict[str, Any]) -> None:
    spec = cert["spec"]
    assert cert["apiVersion"] == "cert-manager.io/v1"
    assert {"secretName", "issuerRef"} <= set(spec), "required by the Certificate CRD"
    assert spec["issuerRef"]["name"] and spec["issuerRef"].get("kind", "Issuer") in ("Issuer", "ClusterIssuer")
    assert spec.get("dnsNames") or spec.get("commonName"), "a Certificate names at least one identity"
    for field in ("duration", "renewBefore"):
        if field in spec:
            assert _DURATION.match(spec[field]), field
    if "duration" in spec and "renewBefore" in spec:
        hours = lambda d: float(d[:-1]) if d.endswith("h") else None  # noqa: E731
        if hours(spec["duration"]) and hours(spec["renewBefore"]):
            assert hours(spec["renewBefore"]) < hours(spec["duration"])
    assert set(spec.get("usages", [])) <= {"server auth", "client auth", "digital signature", "key encipherment",
                                          "cert sign", "crl sign"}
    if "privateKey" in spec:
        assert spec["privateKey"]["algorithm"] in ("RSA", "ECDSA", "Ed25519")
        assert spec["privateKey"].get("rotationPolicy", "Always") in ("Never", "Always")


def _check_issuer(issuer: dict[str, Any]) -> None:
    assert issuer["apiVersion"] == "cert-manager.io/v1"
    kinds = set(issuer["spec"]) & {"selfSigned", "ca", "acme", "vault", "venafi"}
    assert len(kinds) == 1, "an Issuer has exactly one issuer type"
    if "ca" in kinds:
        assert issuer["spec"]["ca"]["secretName"]


def _check_service_monitor(monitor: dict[str, Any]) -> None:
    assert monitor["apiVersion"] == "monitoring.coreos.com/v1"
    spec = monitor["spec"]
    assert "selector" in spec, "required by the ServiceMonitor CRD"
    for endpoint in spec["endpoints"]:
        assert set(endpoint) <= {"port", "scheme", "path", "interval", "tlsConfig", "scrapeTimeout",
                                 "relabelings", "metricRelabelings", "honorLabels"}
        assert endpoint["scheme"] in ("http", "https") and _DURATION.match(endpoint["interval"])
        tls = endpoint.get("tlsConfig", {})
        assert set(tls) <= {"ca", "serverName", "insecureSkipVerify", "cert", "keySecret"}
        if "ca" in tls:
            assert set(tls["ca"]["secret"]) == {"name", "key"}


@pytest.mark.parametrize("label", sorted(VALUE_SETS))
def test_custom_resources_have_the_fields_their_crds_require(rendered: dict[str, Rendered], label: str) -> None:
    checks = {"Certificate": _check_certificate, "Issuer": _check_issuer, "ServiceMonitor": _check_service_monitor}
    for obj in rendered[label].objects:
        if obj["apiVersion"].startswith(CRD_GROUPS):
            assert obj["metadata"]["name"] and obj["metadata"]["namespace"] == NAMESPACE
            checks[obj["kind"]](obj)


@pytest.mark.parametrize("kube_version", KUBE_VERSIONS)
@pytest.mark.parametrize("label", ["defaults", "cert-manager", "pull-secrets", "everything"])
def test_helm_lint_strict_is_clean(label: str, kube_version: str) -> None:
    import helm_python

    result = helm_python.lint(str(CHART), VALUE_SETS[label], strict=True, kube_version=kube_version,
                              namespace=NAMESPACE)
    assert result["errors"] == []
    # Severity 1 is INFO (only "icon is recommended"); 2 WARNING and 3 ERROR fail `helm lint --strict`.
    assert [m for m in result["messages"] if m["severity"] >= 2] == []


def test_helm_lint_reports_a_value_the_schema_does_not_know() -> None:
    import helm_python

    result = helm_python.lint(str(CHART), {"replica": 3}, strict=True, kube_version="1.30.0")
    assert any("replica" in m["error"] and m["severity"] == 3 for m in result["messages"])
