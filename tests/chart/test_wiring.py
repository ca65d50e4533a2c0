"""The chart's wiring, read from real renders: what the API server sends, where, over what TLS; what the pods
run, mount and probe; what the ServiceAccount may read. Each value set renders once (conftest)."""

from __future__ import annotations

import base64
import datetime
import posixpath

import pytest

from admission.sources.kubernetes import POD_SPEC_PATHS
from tests.chart.conftest import NAMESPACE, VALUE_SETS, Rendered, render

ALL = sorted(VALUE_SETS)


def _mode(label: str) -> str:
    return VALUE_SETS[label].get("tls", {}).get("mode", "managed")  # the chart's default
_GROUP = {"Deployment": "apps", "ReplicaSet": "apps", "StatefulSet": "apps", "DaemonSet": "apps", "Job": "batch",
          "CronJob": "batch"}


def _resources(hook: dict) -> set[tuple[str, str]]:
    out = set()
    for rule in hook["rules"]:
        assert set(rule["operations"]) == {"CREATE", "UPDATE"}
        assert rule["scope"] == "Namespaced"
        for group in rule["apiGroups"]:
            out |= {(group, resource) for resource in rule["resources"]}
    return out


@pytest.mark.parametrize("label", ALL)
def test_namespace_exclusion_holds_the_release_namespace_kube_system_and_kube_node_lease(
        rendered: dict[str, Rendered], label: str) -> None:
    (expression,) = rendered[label].webhook["namespaceSelector"]["matchExpressions"]
    assert expression["key"] == "kubernetes.io/metadata.name" and expression["operator"] == "NotIn"
    assert {NAMESPACE, "kube-system", "kube-node-lease"} <= set(expression["values"])
    cert_manager = {"cert-manager"} if _mode(label) == "certManager" else set()
    assert set(expression["values"]) == {NAMESPACE, "kube-system", "kube-node-lease", *cert_manager,
                                         *VALUE_SETS[label].get("excludedNamespaces", ())}


def test_cert_manager_namespace_is_excluded_only_in_cert_manager_mode_and_follows_its_value() -> None:
    moved = render({"tls": {"mode": "certManager", "certManager": {"namespace": "security"}}})
    (expression,) = moved.webhook["namespaceSelector"]["matchExpressions"]
    assert "security" in expression["values"] and "cert-manager" not in expression["values"]
    assert "security" in moved.notes
    (expression,) = render({"tls": {"mode": "managed"}}).webhook["namespaceSelector"]["matchExpressions"]
    assert "cert-manager" not in expression["values"]


def test_excluded_namespaces_are_added_once_and_follow_the_release_namespace(rendered: dict[str, Rendered]) -> None:
    (expression,) = rendered["everything"].webhook["namespaceSelector"]["matchExpressions"]
    assert expression["values"] == [NAMESPACE, "kube-system", "kube-node-lease", "cert-manager", "monitoring"]
    elsewhere = render({}, name="guard", namespace="platform")
    (expression,) = elsewhere.webhook["namespaceSelector"]["matchExpressions"]
    assert expression["values"][0] == "platform"
    assert elsewhere.deployment["metadata"]["namespace"] == "platform"
    assert elsewhere.deployment["metadata"]["name"] == "guard-admission"


@pytest.mark.parametrize("label", ALL)
def test_rules_cover_pods_ephemeral_containers_and_every_kind_the_server_reads(
        rendered: dict[str, Rendered], label: str) -> None:
    covered = _resources(rendered[label].webhook)
    expected = {(_GROUP.get(kind, ""), kind.lower() + "s") for kind in POD_SPEC_PATHS}
    # and Services, for no-host-port (issue 27)
    assert expected | {("", "pods/ephemeralcontainers"), ("", "services")} == covered
    assert {("", "pods"), ("", "pods/ephemeralcontainers"), ("apps", "deployments"), ("batch", "cronjobs"),
            ("", "replicationcontrollers")} <= covered


def test_webhook_speaks_v1_and_v1beta1_has_no_side_effects_and_matches_equivalent_versions(
        default_render: Rendered) -> None:
    hook = default_render.webhook
    assert hook["admissionReviewVersions"] == ["v1", "v1beta1"]
    assert hook["sideEffects"] == "None"
    assert hook["matchPolicy"] == "Equivalent"
    assert hook["timeoutSeconds"] == 5
    assert hook["failurePolicy"] == "Fail"
    assert hook["clientConfig"]["service"] == {"name": "admission", "namespace": NAMESPACE, "path": "/validate",
                                               "port": 443}
    assert "objectSelector" not in hook


def test_failure_policy_timeout_and_object_selector_follow_the_values(rendered: dict[str, Rendered]) -> None:
    hook = rendered["everything"].webhook
    assert hook["failurePolicy"] == "Ignore" and hook["timeoutSeconds"] == 10
    assert hook["objectSelector"] == VALUE_SETS["everything"]["objectSelector"]


@pytest.mark.parametrize("label", ALL)
def test_server_deadline_stays_under_the_webhook_timeout(rendered: dict[str, Rendered], label: str) -> None:
    r = rendered[label]
    assert 0 < float(r.env()["ADMISSION_DEADLINE"]) < r.webhook["timeoutSeconds"]


def test_a_deadline_at_or_over_the_timeout_fails_the_render() -> None:
    import helm_python

    with pytest.raises(helm_python.HelmError, match="deadlineSeconds .* must be under timeoutSeconds"):
        render({"server": {"deadlineSeconds": 5}, "timeoutSeconds": 5})


def test_service_forwards_to_the_server_port_and_selects_only_webhook_pods(default_render: Rendered) -> None:
    service = default_render.one("Service")
    (port,) = service["spec"]["ports"]
    assert port["port"] == default_render.webhook["clientConfig"]["service"]["port"]
    assert port["targetPort"] == "https"
    labels = default_render.deployment["spec"]["template"]["metadata"]["labels"]
    assert service["spec"]["selector"].items() <= labels.items()
    job_labels = default_render.one("Job")["spec"]["template"]["metadata"]["labels"]
    assert not service["spec"]["selector"].items() <= job_labels.items(), "the hook Job's pod is no endpoint"


# --- TLS -------------------------------------------------------------------------------------------------------


def _cert(pem_b64: str):  # noqa: ANN202
    from cryptography import x509

    return x509.load_pem_x509_certificate(base64.b64decode(pem_b64))


@pytest.mark.parametrize("label", [label for label in ALL if _mode(label) == "selfSigned"])
def test_self_signed_ca_bundle_is_the_ca_that_signed_the_served_certificate(
        rendered: dict[str, Rendered], label: str) -> None:
    from cryptography import x509

    r = rendered[label]
    secret = r.one("Secret")
    volume = next(v for v in r.deployment["spec"]["template"]["spec"]["volumes"] if v["name"] == "tls")
    assert volume["secret"]["secretName"] == secret["metadata"]["name"]
    assert secret["type"] == "kubernetes.io/tls"
    ca, served = _cert(r.webhook["clientConfig"]["caBundle"]), _cert(secret["data"]["tls.crt"])
    assert secret["data"]["ca.crt"] == r.webhook["clientConfig"]["caBundle"]
    served.verify_directly_issued_by(ca)
    assert ca.extensions.get_extension_for_class(x509.BasicConstraints).value.ca
    names = served.extensions.get_extension_for_class(x509.SubjectAlternativeName).value.get_values_for_type(
        x509.DNSName)
    assert f"admission.{NAMESPACE}.svc" in names
    days = VALUE_SETS[label].get("tls", {}).get("selfSigned", {}).get("validityDays", 3650)
    lifetime = served.not_valid_after_utc - served.not_valid_before_utc
    assert abs(lifetime - datetime.timedelta(days=days)) < datetime.timedelta(days=1)
    assert "cert-manager.io/inject-ca-from" not in r.one("ValidatingWebhookConfiguration")["metadata"].get(
        "annotations", {})


def test_self_signed_default_validity_is_ten_years() -> None:
    served = _cert(render({"tls": {"mode": "selfSigned"}}).one("Secret")["data"]["tls.crt"])
    assert (served.not_valid_after_utc - served.not_valid_before_utc).days >= 3649


@pytest.mark.parametrize("label", ["cert-manager", "cert-manager-issuer", "everything"])
def test_cert_manager_injects_the_ca_of_the_certificate_the_pods_serve(rendered: dict[str, Rendered],
                                                                       label: str) -> None:
    r = rendered[label]
    vwc = r.one("ValidatingWebhookConfiguration")
    assert "caBundle" not in r.webhook["clientConfig"]
    namespace, _, name = vwc["metadata"]["annotations"]["cert-manager.io/inject-ca-from"].partition("/")
    assert namespace == NAMESPACE
    certificate = r.one("Certificate", name)
    volume = next(v for v in r.deployment["spec"]["template"]["spec"]["volumes"] if v["name"] == "tls")
    assert certificate["spec"]["secretName"] == volume["secret"]["secretName"]
    assert f"admission.{NAMESPACE}.svc" in certificate["spec"]["dnsNames"]
    assert not r.has("Secret"), "cert-manager writes the Secret; the chart does not"
    issuer = certificate["spec"]["issuerRef"]
    given = VALUE_SETS[label]["tls"].get("certManager", {}).get("issuerRef")
    if given:
        assert issuer == {**given, "group": "cert-manager.io"} and not r.has("Issuer")
    else:  # the chart's own CA chain: selfSigned Issuer -> CA Certificate -> CA Issuer -> serving Certificate
        ca_issuer = r.one("Issuer", issuer["name"])
        ca_certificate = r.one("Certificate", f"{issuer['name']}")
        assert ca_certificate["spec"]["isCA"] is True
        assert ca_issuer["spec"]["ca"]["secretName"] == ca_certificate["spec"]["secretName"]
        assert r.one("Issuer", ca_certificate["spec"]["issuerRef"]["name"])["spec"] == {"selfSigned": {}}


@pytest.mark.parametrize("label", [label for label in ALL if _mode(label) == "managed"])
def test_managed_tls_renders_no_certificate_and_no_ca_bundle(rendered: dict[str, Rendered], label: str) -> None:
    r = rendered[label]
    assert "caBundle" not in r.webhook["clientConfig"], "the server writes it: a GitOps diff stays clean"
    assert not r.has("Secret") and not r.has("Certificate"), "the server owns its Secret; Helm never deletes it"
    env = r.env()
    assert env["ADMISSION_TLS_MANAGED"] == "true"
    assert env["ADMISSION_TLS_WEBHOOK"] == r.one("ValidatingWebhookConfiguration")["metadata"]["name"]
    assert f"admission.{NAMESPACE}.svc" in env["ADMISSION_TLS_HOSTS"].split(",")
    assert float(env["ADMISSION_TLS_CERT_VALIDITY"]) < float(env["ADMISSION_TLS_CA_VALIDITY"])
    assert r.env_from() == {"ADMISSION_POD_NAME": "metadata.name", "ADMISSION_POD_NAMESPACE": "metadata.namespace"}
    assert all(v["name"] != "tls" for v in r.deployment["spec"]["template"]["spec"]["volumes"])
    assert r.deployment["spec"]["template"]["spec"]["automountServiceAccountToken"] is True


def test_managed_tls_grants_name_their_objects_and_create_stays_namespaced(default_render: Rendered) -> None:
    r = default_render
    env = r.env()
    hook_role = r.one("ClusterRole", "admission-webhook-ca")
    (rule,) = hook_role["rules"]
    assert rule["resourceNames"] == [env["ADMISSION_TLS_WEBHOOK"]]
    assert set(rule["verbs"]) == {"get", "list", "watch", "patch"}
    binding = r.one("ClusterRoleBinding", "admission-webhook-ca")
    assert binding["subjects"][0]["name"] == r.one("ServiceAccount")["metadata"]["name"]
    role = r.one("Role", "admission-managed-tls")
    assert role["metadata"]["namespace"] == NAMESPACE
    named = {(res, verb): rule.get("resourceNames") for rule in role["rules"] for res in rule["resources"]
             for verb in rule["verbs"]}
    secret, lease = [env["ADMISSION_TLS_SECRET_NAME"]], [env["ADMISSION_TLS_LEASE"]]
    assert named == {**{("secrets", verb): secret for verb in ("get", "list", "watch", "patch")},
                     ("leases", "get"): lease, ("leases", "patch"): lease,
                     ("secrets", "create"): None, ("leases", "create"): None}
    assert r.one("RoleBinding", "admission-managed-tls")["roleRef"]["name"] == "admission-managed-tls"
    assert not render({"tls": {"mode": "selfSigned"}}).has("Role"), "no grant outside managed mode"


def test_a_certificate_outliving_its_ca_fails_the_render() -> None:
    import helm_python

    with pytest.raises(helm_python.HelmError, match="certValidityDays .* must be under tls.managed.caValidityDays"):
        render({"tls": {"managed": {"caValidityDays": 30, "certValidityDays": 30}}})


# --- the pods ---------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("label", ALL)
def test_probes_use_the_servers_port_over_https(rendered: dict[str, Rendered], label: str) -> None:
    r = rendered[label]
    flags, container = r.flags(), r.server
    (port,) = container["ports"]
    assert int(flags["--port"]) == port["containerPort"] == 8443
    if _mode(label) == "managed":  # the server makes its own certificate
        assert "--tls-cert" not in flags and r.env()["ADMISSION_TLS_MANAGED"] == "true"
    else:
        assert flags["--tls-cert"] and flags["--tls-key"], "the server speaks TLS, as the probes' scheme says"
    for probe, path in (("livenessProbe", "/healthz"), ("readinessProbe", "/readyz"), ("startupProbe", "/healthz")):
        get = container[probe]["httpGet"]
        assert get["path"] == path and get["scheme"] == "HTTPS", probe
        assert get["port"] in (port["name"], port["containerPort"]), probe


@pytest.mark.parametrize("label", ALL)
def test_policy_and_certificates_are_mounted_as_directories_never_sub_path(rendered: dict[str, Rendered],
                                                                            label: str) -> None:
    r = rendered[label]
    mounts = {m["name"]: m for m in r.server["volumeMounts"]}
    volumes = {v["name"]: v for v in r.deployment["spec"]["template"]["spec"]["volumes"]}
    assert all("subPath" not in m and "subPathExpr" not in m for m in r.server["volumeMounts"])
    flags = r.flags()
    policy_dir = posixpath.dirname(flags["--policy"])
    (policy_mount,) = [m for m in mounts.values() if m["mountPath"] == policy_dir]
    config_map = r.one("ConfigMap", volumes[policy_mount["name"]]["configMap"]["name"])
    assert posixpath.basename(flags["--policy"]) in config_map["data"]
    assert "items" not in volumes[policy_mount["name"]]["configMap"]
    for flag in ("--tls-cert", "--tls-key") if _mode(label) != "managed" else ():
        (tls_mount,) = [m for m in mounts.values() if m["mountPath"] == posixpath.dirname(flags[flag])]
        assert "secret" in volumes[tls_mount["name"]]


@pytest.mark.parametrize("label", ALL)
def test_every_container_runs_the_restricted_profile(rendered: dict[str, Rendered], label: str) -> None:
    r = rendered[label]
    for owner in (r.deployment, r.one("Job")):
        pod = owner["spec"]["template"]["spec"]
        assert pod["securityContext"]["runAsNonRoot"] is True
        assert pod["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}
        assert isinstance(pod["securityContext"]["runAsUser"], int) and pod["securityContext"]["runAsUser"] > 0
        assert not pod.get("hostNetwork") and not pod.get("hostPID") and not pod.get("hostIPC")
        for container in pod["containers"] + pod.get("initContainers", []):
            sc = container["securityContext"]
            assert sc["runAsNonRoot"] is True and sc["runAsUser"] == 10001
            assert sc["allowPrivilegeEscalation"] is False
            assert sc["readOnlyRootFilesystem"] is True
            assert sc["capabilities"] == {"drop": ["ALL"]}
            assert sc["seccompProfile"] == {"type": "RuntimeDefault"}
            assert "hostPort" not in str(container.get("ports", ""))
            assert {"cpu", "memory"} <= set(container["resources"]["limits"])
            assert {"cpu", "memory"} <= set(container["resources"]["requests"])
        for volume in pod["volumes"]:
            assert set(volume) - {"name"} <= {"configMap", "secret", "emptyDir", "projected"}, volume


def test_the_writable_directory_is_an_empty_dir(default_render: Rendered) -> None:
    mounts = {m["mountPath"]: m["name"] for m in default_render.server["volumeMounts"]}
    volumes = {v["name"]: v for v in default_render.deployment["spec"]["template"]["spec"]["volumes"]}
    assert "emptyDir" in volumes[mounts["/tmp"]]


def test_termination_grace_is_pre_stop_pause_plus_drain_plus_grace_plus_margin() -> None:
    values = {"shutdown": {"preStopSeconds": 7, "marginSeconds": 4},
              "server": {"drainDelaySeconds": 3, "graceSeconds": 10.5}}
    r = render(values)
    pod = r.deployment["spec"]["template"]["spec"]
    assert pod["terminationGracePeriodSeconds"] == 25  # 7 + 3 + 10.5 + 4, rounded up
    assert r.server["lifecycle"]["preStop"] == {"exec": {"command": ["sleep", "7"]}}
    assert r.env()["ADMISSION_DRAIN_DELAY"] == "3" and r.env()["ADMISSION_GRACE"] == "10.5"


def test_default_shutdown_budget_covers_the_servers_defaults(default_render: Rendered) -> None:
    from admission.webhook.settings import Settings

    defaults = Settings()
    pod = default_render.deployment["spec"]["template"]["spec"]
    pause = int(default_render.server["lifecycle"]["preStop"]["exec"]["command"][1])
    assert pod["terminationGracePeriodSeconds"] > pause + defaults.drain_delay + defaults.grace
    assert float(default_render.env()["ADMISSION_DRAIN_DELAY"]) == defaults.drain_delay
    assert float(default_render.env()["ADMISSION_GRACE"]) == defaults.grace


def test_image_is_the_pinned_app_version_with_an_optional_digest(rendered: dict[str, Rendered]) -> None:
    import yaml

    from tests.chart.conftest import CHART

    app_version = yaml.safe_load((CHART / "Chart.yaml").read_text())["appVersion"]
    assert rendered["defaults"].server["image"] == f"registry.example.com/admission:{app_version}"
    assert rendered["everything"].server["image"] == f"registry.example.com/admission:{app_version}@sha256:{'ab' * 32}"
    assert rendered["everything"].one("Job")["spec"]["template"]["spec"]["containers"][0]["image"] == \
        rendered["everything"].server["image"]


@pytest.mark.parametrize("tag", ["latest", "LATEST"])
def test_latest_is_refused(tag: str) -> None:
    import helm_python

    with pytest.raises(helm_python.HelmError):
        render({"image": {"tag": tag}})


def test_two_replicas_spread_across_nodes_with_a_disruption_budget(rendered: dict[str, Rendered]) -> None:
    r = rendered["defaults"]
    spec = r.deployment["spec"]
    assert spec["replicas"] == 2
    assert spec["strategy"]["rollingUpdate"]["maxUnavailable"] == 0
    (spread,) = spec["template"]["spec"]["topologySpreadConstraints"]
    assert spread["topologyKey"] == "kubernetes.io/hostname" and spread["maxSkew"] == 1
    assert spread["labelSelector"]["matchLabels"].items() <= spec["template"]["metadata"]["labels"].items()
    pdb = r.one("PodDisruptionBudget")
    assert pdb["spec"]["minAvailable"] == 1
    assert pdb["spec"]["selector"]["matchLabels"] == spec["selector"]["matchLabels"]
    assert rendered["replicas-3"].deployment["spec"]["replicas"] == 3
    assert rendered["everything"].deployment["spec"]["template"]["spec"]["topologySpreadConstraints"][0][
        "whenUnsatisfiable"] == "DoNotSchedule"


def test_autoscaling_replaces_the_fixed_replica_count(rendered: dict[str, Rendered]) -> None:
    r = rendered["everything"]
    assert "replicas" not in r.deployment["spec"]
    hpa = r.one("HorizontalPodAutoscaler")
    assert hpa["spec"]["scaleTargetRef"] == {"apiVersion": "apps/v1", "kind": "Deployment",
                                             "name": r.deployment["metadata"]["name"]}
    assert (hpa["spec"]["minReplicas"], hpa["spec"]["maxReplicas"]) == (3, 6)
    assert not rendered["defaults"].has("HorizontalPodAutoscaler")


def test_scheduling_values_reach_the_webhook_pods(rendered: dict[str, Rendered]) -> None:
    values = VALUE_SETS["everything"]
    pod = rendered["everything"].deployment["spec"]["template"]
    assert pod["spec"]["priorityClassName"] == values["priorityClassName"]
    assert pod["spec"]["tolerations"] == values["tolerations"]
    assert pod["spec"]["nodeSelector"] == values["nodeSelector"]
    assert pod["spec"]["affinity"] == values["affinity"]
    assert pod["spec"]["imagePullSecrets"] == [{"name": "pull-secret"}]
    assert pod["metadata"]["annotations"] == values["podAnnotations"]
    assert pod["metadata"]["labels"]["team"] == "platform"
    assert "priorityClassName" not in rendered["defaults"].deployment["spec"]["template"]["spec"]


def test_server_settings_reach_the_container_as_admission_variables(rendered: dict[str, Rendered]) -> None:
    env = rendered["everything"].env()
    assert env["ADMISSION_DEADLINE"] == "4.5" and env["ADMISSION_WORKERS"] == "2"
    assert env["ADMISSION_LOG_LEVEL"] == "debug" and env["ADMISSION_TIMEOUT_MARGIN"] == "0.5"
    assert env["ADMISSION_METRICS_DIR"].startswith("/tmp/"), "multi-worker metrics go to the writable emptyDir"
    assert "ADMISSION_METRICS_DIR" not in rendered["defaults"].env()


# --- reads and RBAC ---------------------------------------------------------------------------------------------


def _rbac(r: Rendered) -> set[tuple[str, str]]:
    """The cluster reads' grants (the ClusterRole named as the release; managed TLS has its own, tested apart)."""
    name = r.deployment["metadata"]["name"]
    if not [o for o in r.all("ClusterRole") if o["metadata"]["name"] == name]:
        return set()
    return {(resource, verb) for rule in r.one("ClusterRole", name)["rules"] for resource in rule["resources"]
            for verb in rule["verbs"]}


SERVICE_ACCOUNT_READS = {("serviceaccounts", "get")}  # a pod template's ServiceAccount (service-account-token)
OWNER_READS = {(kind, "get") for kind in ("replicasets", "deployments", "statefulsets", "daemonsets", "jobs",
                                          "cronjobs", "replicationcontrollers")}
# a manual run of a CronJob borrows when its requester may patch the CronJob: asked with a SubjectAccessReview
ACCESS_REVIEWS = {("subjectaccessreviews", "create")}


def test_limit_range_and_owner_reads_are_on_by_default_with_exactly_their_permissions(default_render: Rendered) -> None:
    r = default_render
    assert r.env()["ADMISSION_LIMITRANGE_READS"] == "true" and r.env()["ADMISSION_PULL_SECRETS"] == "false"
    assert r.env()["ADMISSION_OWNER_READS"] == "true" and r.env()["ADMISSION_SERVICE_ACCOUNT_READS"] == "true"
    assert _rbac(r) == {("limitranges", "get"), ("limitranges", "list"), ("limitranges", "watch")} | OWNER_READS \
        | ACCESS_REVIEWS | SERVICE_ACCOUNT_READS
    binding = r.one("ClusterRoleBinding", r.deployment["metadata"]["name"])
    assert binding["subjects"] == [{"kind": "ServiceAccount", "name": r.one("ServiceAccount")["metadata"]["name"],
                                    "namespace": NAMESPACE}]
    assert binding["roleRef"]["name"] == r.deployment["metadata"]["name"]
    assert r.deployment["spec"]["template"]["spec"]["serviceAccountName"] == r.one("ServiceAccount")["metadata"]["name"]
    assert r.deployment["spec"]["template"]["spec"]["automountServiceAccountToken"] is True


def test_pull_secret_mode_adds_secret_and_service_account_reads_and_static_credentials(
        rendered: dict[str, Rendered]) -> None:
    r = rendered["pull-secrets"]
    assert r.env()["ADMISSION_PULL_SECRETS"] == "true"
    assert _rbac(r) - _rbac(rendered["defaults"]) == {("secrets", "get")}
    assert ("serviceaccounts", "get") in _rbac(r)  # the pull secrets' reads need it too
    assert ("serviceaccounts", "get") in _rbac(render({"clusterReads": {"pullSecrets": True,
                                                                        "serviceAccounts": False}}))
    assert not any(verb in ("list", "watch") for resource, verb in _rbac(r) if resource == "secrets")
    mounts = {m["mountPath"]: m["name"] for m in r.server["volumeMounts"]}
    config = r.env()["ADMISSION_DOCKER_CONFIG"]
    volume = next(v for v in r.deployment["spec"]["template"]["spec"]["volumes"]
                  if v["name"] == mounts[posixpath.dirname(config)])
    assert volume["secret"]["secretName"] == "registry-credentials"
    assert volume["secret"]["items"] == [{"key": ".dockerconfigjson", "path": posixpath.basename(config)}]


def test_service_account_reads_are_a_get_and_their_toggle_removes_it() -> None:
    off = render({"clusterReads": {"serviceAccounts": False}})
    assert off.env()["ADMISSION_SERVICE_ACCOUNT_READS"] == "false"
    assert not _rbac(off) & SERVICE_ACCOUNT_READS
    assert not any(resource == "serviceaccounts" and verb in ("list", "watch") for resource, verb in _rbac(render({})))


def test_owner_reads_are_gets_and_access_reviews_only_and_their_toggle_removes_them() -> None:
    off = render({"clusterReads": {"owners": False}})
    assert off.env()["ADMISSION_OWNER_READS"] == "false"
    assert _rbac(off) == {("limitranges", "get"), ("limitranges", "list"), ("limitranges", "watch")} \
        | SERVICE_ACCOUNT_READS
    rules = render({}).one("ClusterRole", "admission")["rules"]
    groups = {rule["apiGroups"][0] for rule in rules if {(res, "get") for res in rule["resources"]} <= OWNER_READS}
    assert groups == {"apps", "batch", ""}
    (review,) = [rule for rule in rules if "subjectaccessreviews" in rule["resources"]]
    assert review == {"apiGroups": ["authorization.k8s.io"], "resources": ["subjectaccessreviews"], "verbs": ["create"]}


def test_with_no_cluster_read_there_is_no_token_and_no_rbac(rendered: dict[str, Rendered]) -> None:
    r = render({**VALUE_SETS["reads-off"], "tls": {"mode": "selfSigned"}})
    assert _rbac(r) == set() and not r.has("ClusterRoleBinding")
    assert r.deployment["spec"]["template"]["spec"]["automountServiceAccountToken"] is False
    assert r.one("ServiceAccount")["automountServiceAccountToken"] is False
    assert r.one("Job")["spec"]["template"]["spec"]["automountServiceAccountToken"] is False


# --- the policy -------------------------------------------------------------------------------------------------

TRICKY_POLICY = ("# a comment: kept\nenforcement: warn\nrules:\n  numeric-user: off\n  healthcheck: 'no'\n"
                 "exemptions:\n  - rule: no-host-port\n    namespace: edge\n    reason: \"quoted {{ not a template }} é\"\n"
                 "    expires: 2030-01-01\n\n   \n")


def test_the_policy_value_is_written_verbatim_into_both_config_maps() -> None:
    r = render({"policy": TRICKY_POLICY})
    policy_map = r.one("ConfigMap", "admission-policy")
    assert policy_map["data"] == {"policy.yaml": TRICKY_POLICY}
    assert r.one("ConfigMap", "admission-policy-check")["data"] == {"policy.yaml": TRICKY_POLICY}


def test_the_policy_value_must_be_a_string() -> None:
    import helm_python

    with pytest.raises(helm_python.HelmError, match="policy"):
        render({"policy": {"enforcement": "warn"}})


def test_the_policy_check_hook_runs_before_install_and_upgrade_in_the_release_namespace(
        default_render: Rendered) -> None:
    r = default_render
    job, config_map = r.one("Job"), r.one("ConfigMap", "admission-policy-check")
    for obj in (job, config_map):
        assert obj["metadata"]["annotations"]["helm.sh/hook"] == "pre-install,pre-upgrade"
        assert obj["metadata"]["namespace"] == NAMESPACE
    assert int(config_map["metadata"]["annotations"]["helm.sh/hook-weight"]) < int(
        job["metadata"]["annotations"]["helm.sh/hook-weight"]), "the ConfigMap exists before the Job starts"
    pod = job["spec"]["template"]["spec"]
    assert pod["restartPolicy"] == "Never" and job["spec"]["backoffLimit"] == 0
    (container,) = pod["containers"]
    assert container["args"][0] == "check-policy"
    (mount,) = container["volumeMounts"]
    assert posixpath.dirname(container["args"][1]) == mount["mountPath"]
    (volume,) = pod["volumes"]
    assert volume["configMap"]["name"] == config_map["metadata"]["name"]
    assert posixpath.basename(container["args"][1]) in config_map["data"]
    (expression,) = r.webhook["namespaceSelector"]["matchExpressions"]
    assert job["metadata"]["namespace"] in expression["values"], "the webhook never sees the hook's pod"
    assert not render({"policyCheck": {"enabled": False}}).has("Job")


# --- optional pieces --------------------------------------------------------------------------------------------


def test_network_policy_lets_anyone_reach_the_webhook_port_and_the_pod_reach_dns_registries_and_api(
        rendered: dict[str, Rendered]) -> None:
    r = rendered["network-policy"]
    policy = r.one("NetworkPolicy")["spec"]
    assert policy["podSelector"]["matchLabels"] == r.deployment["spec"]["selector"]["matchLabels"]
    assert set(policy["policyTypes"]) == {"Ingress", "Egress"}
    (ingress,) = policy["ingress"]
    assert "from" not in ingress, "the API server is not a pod: the webhook port is open to any source"
    assert ingress["ports"] == [{"port": "https", "protocol": "TCP"}]
    egress_ports = [{(p["port"], p["protocol"]) for p in rule["ports"]} for rule in policy["egress"]]
    assert {(53, "UDP"), (53, "TCP")} in egress_ports
    assert {(443, "TCP")} in egress_ports, "registries"
    assert {(443, "TCP"), (6443, "TCP")} in egress_ports, "the API server, for the LimitRange reads"
    off = rendered["reads-off"].one("NetworkPolicy")["spec"]
    assert len(off["egress"]) == len(policy["egress"]) - 1, "no API server egress without cluster reads"
    limited = rendered["everything"].one("NetworkPolicy")["spec"]
    assert all(rule.get("to") == [{"ipBlock": {"cidr": "10.0.0.0/8"}}] for rule in limited["egress"][1:])
    assert not rendered["defaults"].has("NetworkPolicy")


def test_service_monitor_needs_the_api_or_force(rendered: dict[str, Rendered]) -> None:
    assert not render({"serviceMonitor": {"enabled": True}}).has("ServiceMonitor"), "offline: no capabilities"
    assert "serviceMonitor.force" in render({"serviceMonitor": {"enabled": True}}).notes
    r = rendered["service-monitor"]
    monitor = r.one("ServiceMonitor")
    assert monitor["metadata"]["labels"]["release"] == "prometheus"
    assert monitor["spec"]["selector"]["matchLabels"].items() <= r.one("Service")["metadata"]["labels"].items()
    (endpoint,) = monitor["spec"]["endpoints"]
    assert endpoint["port"] == r.one("Service")["spec"]["ports"][0]["name"]
    assert endpoint["scheme"] == "https" and endpoint["path"] == "/metrics"
    # The bundle of the Secret the server writes (managed, the default): it trusts the served certificate
    # through a CA rotation too.
    assert endpoint["tlsConfig"]["ca"]["secret"] == {"name": r.env()["ADMISSION_TLS_SECRET_NAME"], "key": "ca-bundle.crt"}
    selfsigned = render({**VALUE_SETS["service-monitor"], "tls": {"mode": "selfSigned"}})
    assert selfsigned.one("ServiceMonitor")["spec"]["endpoints"][0]["tlsConfig"]["ca"]["secret"] == {
        "name": selfsigned.one("Secret")["metadata"]["name"], "key": "ca.crt"}


def test_notes_say_what_is_excluded_and_how_to_try_it(rendered: dict[str, Rendered]) -> None:
    notes = rendered["everything"].notes
    assert f"namespaces {NAMESPACE}, kube-system, kube-node-lease, cert-manager, monitoring" in notes
    assert "kubectl run admission-demo --image=nginx" in notes
    assert "cert-manager" in notes and "Ignore" in notes
    assert "ignoreDifferences" in rendered["defaults"].notes and "/webhooks/0/clientConfig/caBundle" in \
        rendered["defaults"].notes
    assert "helm template" in rendered["self-signed"].notes
    assert "WARNING: one replica" not in rendered["defaults"].notes
    single = render({"replicas": 1}).notes
    assert "WARNING: one replica" in single and "blocks node drains" in single
