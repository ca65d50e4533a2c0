"""The chart rendered by the real Helm library (helm-python-sdk), once per value set for the whole session.

Offline rendering has no cluster: `lookup` finds nothing (so self-signed certificates are new on every render)
and `.Capabilities` knows no CRDs (so the ServiceMonitor needs `serviceMonitor.force`).
"""

from __future__ import annotations

import copy
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
CHART = ROOT / "charts" / "admission"
RELEASE = "admission"
NAMESPACE = "admission-system"

# An ECDSA P-256 public key made for these tests (openssl ecparam -name prime256v1; the private half is not kept).
TEST_PUBLIC_KEY = """-----BEGIN PUBLIC KEY-----
MFkwEwYHKoZIzj0CAQYIKoZIzj0DAQcDQgAE+ptab9w4CGf7z2FcyBdulzd26DKQ
yaEUniKju4IuNiU9jZUUzM0InSGIzZbbgPdWoLDIcbVtppp1gUw1YS4fsw==
-----END PUBLIC KEY-----
"""

# The value sets every structural test runs over (the issue's list, plus the reads off and the rest of the knobs).
VALUE_SETS: dict[str, dict[str, Any]] = {
    "defaults": {},
    "cert-manager": {"tls": {"mode": "certManager"}},
    "cert-manager-issuer": {"tls": {"mode": "certManager",
                                    "certManager": {"issuerRef": {"name": "corp-ca", "kind": "ClusterIssuer"}}}},
    "self-signed": {"tls": {"mode": "selfSigned", "selfSigned": {"validityDays": 825}}},
    "managed": {"tls": {"mode": "managed", "managed": {"caValidityDays": 3650, "certValidityDays": 30,
                                                       "propagationSeconds": 120}}, "replicas": 3},
    "replicas-3": {"replicas": 3},
    "network-policy": {"networkPolicy": {"enabled": True}},
    "pull-secrets": {"clusterReads": {"pullSecrets": True}, "registryCredentialsSecret": "registry-credentials"},
    "service-monitor": {"serviceMonitor": {"enabled": True, "force": True, "labels": {"release": "prometheus"}}},
    "reads-off": {"clusterReads": {"limitRanges": False, "pullSecrets": False, "owners": False,
                                   "serviceAccounts": False},
                  "networkPolicy": {"enabled": True}},
    "audit": {"audit": {"enabled": True, "installReportCRDs": True}},
    "audit-openreports": {"audit": {"enabled": True, "installReportCRDs": True, "reportApi": "openreports.io/v1alpha1",
                                    "schedule": "@daily", "qps": 5.5, "chunkSize": 200},
                          "registryCredentialsSecret": "registry-credentials", "imagePullSecrets": ["pull-secret"]},
    # A release key for images.verify, inline (a ConfigMap the server and the policy-check hook mount) and as an
    # existing Secret; the policy names it relative to itself.
    "verify-keys": {"verifyKeys": {"keys": {"release.pub": TEST_PUBLIC_KEY}},
                    "policy": "images:\n  verify:\n  - images: ['registry.example.com/team/*']\n"
                              "    keys: [../keys/release.pub]\n"},
    "verify-secret": {"verifyKeys": {"existingSecret": "release-keys"}},
    # POST /mutate registered (issue 26): with each certificate mode, templates on, its own failurePolicy.
    "mutation": {"mutation": {"enabled": True}},
    "mutation-self-signed": {"mutation": {"enabled": True, "templates": True, "failurePolicy": "Fail",
                                          "skip_registries": ["docker.io", "registry.internal:5000"]},
                             "tls": {"mode": "selfSigned"}, "excludedNamespaces": ["monitoring"]},
    "mutation-cert-manager": {"mutation": {"enabled": True}, "tls": {"mode": "certManager"}, "timeoutSeconds": 8,
                              "objectSelector": {"matchLabels": {"admission.policy/checked": "true"}}},
    "everything": {
        "image": {"digest": "sha256:" + "ab" * 32},
        "imagePullSecrets": ["pull-secret"],
        "failurePolicy": "Ignore", "timeoutSeconds": 10, "excludedNamespaces": ["monitoring", "kube-system"],
        "objectSelector": {"matchExpressions": [{"key": "admission.policy/skip", "operator": "DoesNotExist"}]},
        "server": {"deadlineSeconds": 4.5, "workers": 2, "logLevel": "debug",
                   "extraEnv": [{"name": "ADMISSION_TIMEOUT_MARGIN", "value": "0.5"}]},
        "clusterReads": {"pullSecrets": True},
        "priorityClassName": "system-cluster-critical",
        "tolerations": [{"key": "node-role.kubernetes.io/control-plane", "operator": "Exists", "effect": "NoSchedule"}],
        "nodeSelector": {"kubernetes.io/os": "linux"},
        "affinity": {"nodeAffinity": {"preferredDuringSchedulingIgnoredDuringExecution": [
            {"weight": 1, "preference": {"matchExpressions": [
                {"key": "node-role.kubernetes.io/infra", "operator": "Exists"}]}}]}},
        "spreadWhenUnsatisfiable": "DoNotSchedule",
        "podAnnotations": {"example.com/team": "platform"}, "podLabels": {"team": "platform"},
        "autoscaling": {"enabled": True, "minReplicas": 3, "maxReplicas": 6},
        "networkPolicy": {"enabled": True, "egressTo": [{"ipBlock": {"cidr": "10.0.0.0/8"}}]},
        "serviceMonitor": {"enabled": True, "force": True},
        "serviceAccount": {"annotations": {"example.com/role": "admission"}},
        "tls": {"mode": "certManager"},
    },
}


@dataclass
class Rendered:
    """One render: the files Helm produced and the objects in them (NOTES.txt kept apart)."""

    values: dict[str, Any]
    files: dict[str, str]
    objects: list[dict[str, Any]] = field(default_factory=list)

    def __post_init__(self) -> None:
        for name, text in sorted(self.files.items()):
            if name.endswith(".yaml"):
                self.objects += [d for d in yaml.safe_load_all(text) if d]

    @property
    def notes(self) -> str:
        return next(text for name, text in self.files.items() if name.endswith("NOTES.txt"))

    @property
    def stream(self) -> str:
        """The manifests as `helm template` prints them: one multi-document YAML stream."""
        return "".join(f"---\n# Source: {name}\n{text}\n" for name, text in sorted(self.files.items())
                       if name.endswith(".yaml") and text.strip())

    def all(self, kind: str) -> list[dict[str, Any]]:
        return [o for o in self.objects if o["kind"] == kind]

    def one(self, kind: str, name: str | None = None) -> dict[str, Any]:
        found = [o for o in self.all(kind) if name is None or o["metadata"]["name"] == name]
        assert len(found) == 1, f"expected one {kind} {name or ''}, found {[o['metadata']['name'] for o in found]}"
        return found[0]

    def has(self, kind: str) -> bool:
        return bool(self.all(kind))

    @property
    def deployment(self) -> dict[str, Any]:
        return self.one("Deployment")

    @property
    def server(self) -> dict[str, Any]:
        return self.deployment["spec"]["template"]["spec"]["containers"][0]

    @property
    def webhook(self) -> dict[str, Any]:
        (hook,) = self.one("ValidatingWebhookConfiguration")["webhooks"]
        return hook

    @property
    def mutating(self) -> dict[str, Any]:
        (hook,) = self.one("MutatingWebhookConfiguration")["webhooks"]
        return hook

    def env(self) -> dict[str, str]:
        """Literal values (the downward API's pod name and namespace have none: see `env_from`)."""
        return {e["name"]: e["value"] for e in self.server.get("env", []) if "value" in e}

    def env_from(self) -> dict[str, str]:
        """Variables the downward API sets: name -> fieldPath."""
        return {e["name"]: e["valueFrom"]["fieldRef"]["fieldPath"] for e in self.server.get("env", [])
                if "fieldRef" in e.get("valueFrom", {})}

    def flags(self) -> dict[str, str]:
        """`--name=value` arguments of the server container."""
        out = {}
        for arg in self.server["args"][1:]:
            name, _, value = arg.partition("=")
            out[name] = value
        return out


def render(values: dict[str, Any] | None = None, *, name: str = RELEASE, namespace: str = NAMESPACE) -> Rendered:
    import helm_python

    values = copy.deepcopy(values or {})
    files = helm_python.Chart.load(str(CHART)).render(values, name=name, namespace=namespace, is_install=True)
    return Rendered(values, files)


@pytest.fixture(scope="session")
def rendered() -> dict[str, Rendered]:
    return {label: render(values) for label, values in VALUE_SETS.items()}


@pytest.fixture(scope="session")
def default_render(rendered: dict[str, Rendered]) -> Rendered:
    return rendered["defaults"]


def chart_values() -> dict[str, Any]:
    return yaml.safe_load((CHART / "values.yaml").read_text())
