"""Kubernetes manifests -> Workloads: kinds, streams, kubelet securityContext merge, shapes, lines, the corpus."""

from __future__ import annotations

import json
import textwrap
from pathlib import Path

import pytest
import yaml

from admission.errors import InputError
from admission.model import Origin, Workload
from admission import yamlload
from admission.sources.kubernetes import (
    POD_SPEC_PATHS,
    KubeResult,
    is_kubernetes,
    load_text,
    workloads_from_object,
)
from admission.yamlload import load_documents
from tests.corpus import corpus, corpus_dir, corpus_files, corpus_params

HERE = Path(__file__).resolve().parent
FIXTURES = HERE / "k8s"
OWNED = HERE.parent / "fixtures" / "k8s"  # shared with tests/test_k8s_verdicts.py


def load(text: str, *, file: str = "m.yaml", namespace: str = "default") -> KubeResult:
    return load_text(textwrap.dedent(text).lstrip("\n"), file=file, namespace=namespace)


def only(text: str, **kwargs: str) -> Workload:
    result = load(text, **kwargs)
    assert result.problems == []
    assert len(result.workloads) == 1
    return result.workloads[0]


def fixture(name: str) -> KubeResult:
    return load_text((FIXTURES / name).read_text(), file=name)


def line_of(text: str, needle: str, start: int = 0) -> int:
    """1-based line of the first line containing `needle`, searching from line `start` (1-based)."""
    for number, line in enumerate(text.splitlines(), start=1):
        if number >= start and needle in line:
            return number
    raise AssertionError(f"{needle!r} not in text")


# --- kinds and streams -----------------------------------------------------------------------------

def test_every_pod_bearing_kind_and_a_service_yield_one_workload_and_other_kinds_are_skipped() -> None:
    result = fixture("all-kinds.yaml")
    kinds = [w.kind for w in result.workloads]
    assert kinds == ["Pod", "Service", "PodTemplate", "Deployment", "ReplicaSet", "StatefulSet", "DaemonSet",
                     "Job", "CronJob", "ReplicationController"]
    assert set(kinds) == set(POD_SPEC_PATHS) | {"Service"}
    (service,) = [w for w in result.workloads if w.kind == "Service"]
    assert service.containers == () and not service.runtime and service.service is not None  # issue 27
    assert result.problems == []
    # Service, ConfigMap, CRD and the volcano Job count as documents; empty and comment-only ones do not.
    assert result.documents == 13


def test_each_kind_finds_its_containers_under_its_pod_spec_path() -> None:
    result = fixture("all-kinds.yaml")
    for workload in result.workloads:
        if workload.kind == "Service":
            continue
        spec_path = ".".join(POD_SPEC_PATHS[workload.kind])
        assert [c.origin.path for c in workload.containers] == [f"{spec_path}.containers[0]"], workload.kind
    by_kind = {w.kind: w for w in result.workloads}
    assert by_kind["CronJob"].containers[0].name == "cron-app"
    assert by_kind["PodTemplate"].containers[0].image.value == "busybox:1.36"


def test_crd_reusing_a_pod_kind_name_is_not_a_workload() -> None:
    result = fixture("all-kinds.yaml")
    assert "volcano-job" not in [w.name for w in result.workloads]


def test_group_less_api_version_on_a_controller_kind_is_still_evaluated() -> None:
    workload = only("""
        apiVersion: v1
        kind: Deployment
        metadata: {name: typo}
        spec:
          template:
            spec:
              containers: [{name: app, image: nginx}]
    """)
    assert (workload.kind, workload.name) == ("Deployment", "typo")


def test_workload_fields_and_origin_point_at_the_document() -> None:
    text = (FIXTURES / "all-kinds.yaml").read_text()
    result = fixture("all-kinds.yaml")
    deploy = next(w for w in result.workloads if w.kind == "Deployment")
    assert deploy.source == "kubernetes"
    assert deploy.runtime is True
    assert deploy.name == "deploy"
    assert deploy.namespace == "shop"
    assert deploy.origin.file == "all-kinds.yaml"
    assert deploy.origin.path == ""
    assert deploy.origin.line == line_of(text, "kind: Deployment") - 1  # the apiVersion line opens the document
    assert deploy.containers[0].origin.line == line_of(text, "- name: deploy-app")


def test_kind_list_expands_its_pod_bearing_items_with_item_paths() -> None:
    text = (FIXTURES / "list.yaml").read_text()
    result = fixture("list.yaml")
    assert [(w.kind, w.name) for w in result.workloads] == [("Service", "web"), ("Deployment", "listed-deploy"),
                                                            ("Pod", "listed-pod")]
    service, deploy, pod = result.workloads
    assert service.origin.path == "items[0]" and service.service is not None
    assert deploy.origin.path == "items[1]"
    assert deploy.origin.line == line_of(text, "kind: Deployment") - 1
    assert deploy.containers[0].origin.path == "items[1].spec.template.spec.containers[0]"
    assert pod.namespace == "tools"
    assert deploy.namespace == "default"
    assert result.documents == 1


def test_typed_list_items_without_kind_take_the_kind_of_the_list() -> None:
    result = fixture("pod-list.yaml")
    assert [(w.kind, w.name) for w in result.workloads] == [("Pod", "typed-a"), ("Pod", "typed-b")]
    assert result.workloads[1].containers[0].origin.path == "items[1].spec.containers[0]"


def test_list_with_items_that_are_not_a_list_is_a_problem() -> None:
    result = load("""
        apiVersion: v1
        kind: List
        items:
          a: b
    """)
    assert result.workloads == []
    [problem] = result.problems
    assert (problem.file, problem.line, problem.path) == ("m.yaml", 3, "items")


def test_empty_documents_between_separators_are_skipped() -> None:
    result = load("""
        ---
        ---
        apiVersion: v1
        kind: Pod
        metadata: {name: p}
        spec:
          containers: [{name: app, image: nginx:1.27}]
        ---
        ---
    """)
    assert [w.name for w in result.workloads] == ["p"]
    assert result.documents == 1


@pytest.mark.parametrize("text", ["", "---\n---\n", "# only a comment\n", "---\n# comment\n---\n"])
def test_input_without_any_non_empty_document_is_an_input_error(text: str) -> None:
    with pytest.raises(InputError) as info:
        load_text(text, file="empty.yaml")
    assert info.value.message.startswith("no YAML document")
    assert info.value.file == "empty.yaml"


def test_stream_of_only_non_pod_kinds_yields_no_workloads_and_no_problems() -> None:
    result = load("""
        apiVersion: v1
        kind: Secret
        metadata: {name: s}
        ---
        apiVersion: v1
        kind: ConfigMap
        metadata: {name: c}
    """)
    assert (result.workloads, result.problems, result.documents) == ([], [], 2)


def test_a_service_is_an_object_with_no_containers_and_its_type_node_ports_and_external_ips() -> None:
    result = load("""
        apiVersion: v1
        kind: Service
        metadata: {name: s}
        spec:
          type: NodePort
          ports:
            - {port: 80, nodePort: 30080}
            - {port: 443, protocol: TCP}
          externalIPs: [203.0.113.7]
        ---
        apiVersion: v1
        kind: Service
        metadata: {name: plain}
        ---
        apiVersion: example.com/v1
        kind: Service
        metadata: {name: a-crd-of-the-same-name}
    """)
    assert [w.name for w in result.workloads] == ["s", "plain"]
    node_port, plain = (w.service for w in result.workloads)
    assert node_port.type.value == "NodePort" and node_port.type.origin.path == "spec.type"
    assert [(p.published, p.target, p.origin.path) for p in node_port.node_ports] == [
        ("30080", "80", "spec.ports[0].nodePort"), (None, "443", "spec.ports[1]")]
    assert [ip.value for ip in node_port.external_ips] == ["203.0.113.7"]
    assert plain.type.value == "ClusterIP" and plain.node_ports == () and plain.external_ips == ()


@pytest.mark.parametrize(("spec", "message"), [
    ("{ports: [{port: 80, nodePort: '30080'}], type: NodePort}", "`nodePort` must be an integer"),
    ("{externalIPs: [1]}", "an externalIPs entry must be a string"),
    ("{ports: [80]}", "a Service port must be a mapping"),
    ("{type: [NodePort]}", "`type` must be a string"),
])
def test_a_service_field_of_the_wrong_shape_is_a_problem_at_its_line(spec: str, message: str) -> None:
    result = load(f"""
        apiVersion: v1
        kind: Service
        metadata: {{name: s}}
        spec: {spec}
    """)
    assert result.workloads == [] and len(result.problems) == 1
    assert message in result.problems[0].message and result.problems[0].line == 4


def test_yaml_syntax_error_is_an_input_error_with_a_line() -> None:
    with pytest.raises(InputError) as info:
        load("""
            apiVersion: v1
            kind: Pod
            metadata: {name: [unclosed
        """, file="broken.yaml")
    assert info.value.file == "broken.yaml"
    assert info.value.line is not None


def test_document_without_api_version_or_kind_is_a_problem_naming_its_line() -> None:
    result = load("""
        apiVersion: v1
        kind: Pod
        metadata: {name: good}
        spec:
          containers: [{name: app, image: nginx:1.27}]
        ---
        # a stray values file
        replicas: 3
        image: nginx
    """)
    assert [w.name for w in result.workloads] == ["good"]
    [problem] = result.problems
    assert problem.line == 8  # the document's first key, after its comment
    assert "apiVersion" in problem.message and "kind" in problem.message


def test_one_bad_object_does_not_hide_the_other_objects() -> None:
    result = load("""
        apiVersion: v1
        kind: Pod
        metadata: {name: first}
        spec:
          containers: [{name: app, image: nginx:1.27}]
        ---
        apiVersion: v1
        kind: Pod
        metadata: {name: bad}
        spec:
          containers:
            name: app
        ---
        apiVersion: v1
        kind: Pod
        metadata: {name: last}
        spec:
          containers: [{name: app, image: nginx:1.27}]
    """, file="stream.yaml")
    assert [w.name for w in result.workloads] == ["first", "last"]
    [problem] = result.problems
    assert (problem.file, problem.line, problem.path) == ("stream.yaml", 11, "spec.containers")


# --- namespace, names, hostNetwork, os ---------------------------------------------------------------

POD_NO_NAMESPACE = """
    apiVersion: v1
    kind: Pod
    metadata: {name: p}
    spec:
      containers: [{name: app, image: nginx:1.27}]
"""


def test_objects_without_namespace_get_default() -> None:
    assert only(POD_NO_NAMESPACE).namespace == "default"


def test_namespace_argument_fills_objects_without_namespace() -> None:
    assert only(POD_NO_NAMESPACE, namespace="staging").namespace == "staging"


def test_object_namespace_wins_over_namespace_argument() -> None:
    workload = only("""
        apiVersion: v1
        kind: Pod
        metadata: {name: p, namespace: prod}
        spec:
          containers: [{name: app, image: nginx:1.27}]
    """, namespace="staging")
    assert workload.namespace == "prod"


def test_generate_name_is_used_when_there_is_no_name() -> None:
    workload = only("""
        apiVersion: batch/v1
        kind: Job
        metadata: {generateName: backup-}
        spec:
          template:
            spec:
              containers: [{name: app, image: nginx:1.27}]
    """)
    assert workload.name == "backup-"


def test_yaml_1_1_yes_turns_host_network_on_with_its_origin() -> None:
    workload = only("""
        apiVersion: v1
        kind: Pod
        metadata: {name: p}
        spec:
          hostNetwork: yes
          containers: [{name: app, image: nginx:1.27}]
    """)
    assert workload.host_network is not None
    assert workload.host_network.value == "true"
    assert (workload.host_network.origin.line, workload.host_network.origin.path) == (5, "spec.hostNetwork")


def test_host_network_false_is_not_recorded() -> None:
    workload = only("""
        apiVersion: apps/v1
        kind: DaemonSet
        metadata: {name: d}
        spec:
          template:
            spec:
              hostNetwork: false
              containers: [{name: app, image: nginx:1.27}]
    """)
    assert workload.host_network is None


def test_os_name_comes_from_the_pod_spec() -> None:
    workload = only("""
        apiVersion: v1
        kind: Pod
        metadata: {name: p}
        spec:
          os: {name: windows}
          containers: [{name: app, image: mcr.microsoft.com/windows/nanoserver:ltsc2022}]
    """)
    assert workload.os == "windows"
    assert only(POD_NO_NAMESPACE).os is None


# --- containers ------------------------------------------------------------------------------------

def test_init_containers_are_init_and_restart_always_makes_a_native_sidecar() -> None:
    workload = only("""
        apiVersion: v1
        kind: Pod
        metadata: {name: p}
        spec:
          initContainers:
          - name: migrate
            image: app:1
          - name: proxy
            image: envoy:1
            restartPolicy: Always
          containers:
          - name: app
            image: app:1
    """)
    assert [(c.name, c.kind) for c in workload.containers] == [
        ("migrate", "init"), ("proxy", "sidecar"), ("app", "container")]
    assert workload.containers[1].origin.path == "spec.initContainers[1]"


def test_ephemeral_containers_never_carry_limits() -> None:
    workload = only("""
        apiVersion: v1
        kind: Pod
        metadata: {name: p}
        spec:
          containers:
          - name: app
            image: app:1
          ephemeralContainers:
          - name: debugger
            image: busybox:1.36
            resources:
              limits: {cpu: 100m, memory: 64Mi}
    """)
    debugger = workload.containers[1]
    assert (debugger.name, debugger.kind) == ("debugger", "ephemeral")
    assert debugger.limits == {}
    assert debugger.origin.path == "spec.ephemeralContainers[0]"


def test_missing_image_is_none_and_image_has_its_origin() -> None:
    workload = only("""
        apiVersion: v1
        kind: Pod
        metadata: {name: p}
        spec:
          containers:
          - name: no-image
          - name: app
            image: nginx:1.27
    """)
    no_image, app = workload.containers
    assert no_image.image is None
    assert app.image.value == "nginx:1.27"
    assert (app.image.origin.line, app.image.origin.path) == (8, "spec.containers[1].image")
    assert app.origin.line == 7


def test_limits_are_text_with_origins_and_zero_is_kept() -> None:
    workload = only("""
        apiVersion: v1
        kind: Pod
        metadata: {name: p}
        spec:
          containers:
          - name: app
            image: nginx:1.27
            resources:
              requests: {cpu: 100m}
              limits:
                cpu: 0
                memory: 128Mi
                nvidia.com/gpu: 1
    """)
    limits = workload.containers[0].limits
    assert {name: located.value for name, located in limits.items()} == {"cpu": "0", "memory": "128Mi", "nvidia.com/gpu": "1"}
    assert (limits["memory"].origin.line, limits["memory"].origin.path) == (12, "spec.containers[0].resources.limits.memory")


def test_only_ports_with_a_positive_host_port_are_host_ports() -> None:
    workload = only("""
        apiVersion: v1
        kind: Pod
        metadata: {name: p}
        spec:
          containers:
          - name: app
            image: nginx:1.27
            ports:
            - containerPort: 80
              hostPort: 8080
            - containerPort: 443
            - containerPort: 53
              hostPort: 5353
              hostIP: 127.0.0.1
              protocol: UDP
            - containerPort: 9090
              hostPort: 0
    """)
    first, second = workload.containers[0].host_ports
    assert (first.target, first.published, first.host_ip, first.protocol) == ("80", "8080", None, "TCP")
    assert first.text == "hostPort 8080 -> containerPort 80"
    assert (first.origin.line, first.origin.path) == (10, "spec.containers[0].ports[0].hostPort")
    assert (second.target, second.published, second.host_ip, second.protocol) == ("53", "5353", "127.0.0.1", "UDP")
    assert second.origin.path == "spec.containers[0].ports[2].hostPort"


# --- effective securityContext (kubelet DetermineEffectiveSecurityContext) -------------------------

def _pod(pod_sc: str, container_sc: str) -> Workload:
    return only(f"""
        apiVersion: v1
        kind: Pod
        metadata: {{name: p}}
        spec:
          securityContext: {pod_sc}
          containers:
          - name: app
            image: app:1
            securityContext: {container_sc}
    """)


def test_pod_run_as_non_root_applies_to_a_container_without_security_context() -> None:
    [c] = _pod("{runAsNonRoot: true}", "null").containers
    assert c.run_as_non_root.value is True
    assert c.run_as_non_root.origin.path == "spec.securityContext.runAsNonRoot"
    assert c.run_as_user is None


def test_container_run_as_non_root_false_overrides_the_pod_true() -> None:
    [c] = _pod("{runAsNonRoot: true}", "{runAsNonRoot: false}").containers
    assert c.run_as_non_root.value is False
    assert c.run_as_non_root.origin.path == "spec.containers[0].securityContext.runAsNonRoot"


def test_container_run_as_user_zero_overrides_the_pod_user() -> None:
    [c] = _pod("{runAsUser: 1000}", "{runAsUser: 0}").containers
    assert c.run_as_user.value == 0
    assert c.run_as_user.origin.path == "spec.containers[0].securityContext.runAsUser"


def test_security_context_merges_field_by_field_not_whole_object() -> None:
    [c] = _pod("{runAsUser: 1000, runAsNonRoot: false}", "{runAsNonRoot: true, allowPrivilegeEscalation: false}").containers
    assert (c.run_as_user.value, c.run_as_user.origin.path) == (1000, "spec.securityContext.runAsUser")
    assert (c.run_as_non_root.value, c.run_as_non_root.origin.path) == (True, "spec.containers[0].securityContext.runAsNonRoot")
    assert c.run_as_user.origin.line == 5


def test_yaml_1_1_yes_is_a_true_run_as_non_root() -> None:
    [c] = _pod("{runAsNonRoot: yes}", "{}").containers
    assert c.run_as_non_root.value is True


def test_pod_security_context_reaches_init_and_ephemeral_containers() -> None:
    workload = only("""
        apiVersion: v1
        kind: Pod
        metadata: {name: p}
        spec:
          securityContext: {runAsUser: 1000}
          initContainers: [{name: init, image: app:1}]
          containers: [{name: app, image: app:1}]
          ephemeralContainers: [{name: dbg, image: busybox:1.36}]
    """)
    assert [c.run_as_user.value for c in workload.containers] == [1000, 1000, 1000]


# --- annotations -----------------------------------------------------------------------------------

def test_exempt_annotations_on_object_and_pod_template_become_claims() -> None:
    workload = only("""
        apiVersion: apps/v1
        kind: Deployment
        metadata:
          name: edge
          annotations:
            admission.policy/exempt: "no-host-port, run-as-non-root"
            admission.policy/exempt-reason: edge proxy terminates TLS on the host
            admission.policy/exempt-expires: 2027-06-30
        spec:
          template:
            metadata:
              annotations:
                admission.policy/exempt: resource-limits
            spec:
              containers: [{name: app, image: nginx:1.27}]
    """)
    own, template = workload.exemption_claims
    assert own.rules == ("no-host-port", "run-as-non-root")
    assert own.reason == "edge proxy terminates TLS on the host"
    assert own.expires == "2027-06-30"
    assert own.via == "annotation"
    assert (own.origin.line, own.origin.path) == (6, 'metadata.annotations["admission.policy/exempt"]')
    assert template.rules == ("resource-limits",)
    assert (template.reason, template.expires) == (None, None)
    assert template.origin.path == 'spec.template.metadata.annotations["admission.policy/exempt"]'


def test_objects_without_the_exempt_annotation_have_no_claims() -> None:
    workload = only("""
        apiVersion: v1
        kind: Pod
        metadata:
          name: p
          annotations:
            admission.policy/exempt-reason: a reason alone exempts nothing
            prometheus.io/scrape: "true"
        spec:
          containers: [{name: app, image: nginx:1.27}]
    """)
    assert workload.exemption_claims == ()


# --- shape errors ------------------------------------------------------------------------------------

SHAPE_ERRORS = {
    "containers_as_map": ("""
        apiVersion: v1
        kind: Pod
        metadata: {name: p}
        spec:
          containers:
            name: app
    """, 5, "spec.containers"),
    "resources_as_list": ("""
        apiVersion: v1
        kind: Pod
        metadata: {name: p}
        spec:
          containers:
          - name: app
            resources:
            - limits: {cpu: 1}
    """, 7, "spec.containers[0].resources"),
    "limits_not_a_map": ("""
        apiVersion: v1
        kind: Pod
        metadata: {name: p}
        spec:
          containers:
          - name: app
            resources:
              limits: 500m
    """, 8, "spec.containers[0].resources.limits"),
    "limit_value_not_a_quantity": ("""
        apiVersion: v1
        kind: Pod
        metadata: {name: p}
        spec:
          containers:
          - name: app
            resources:
              limits:
                cpu: [1]
    """, 9, "spec.containers[0].resources.limits.cpu"),
    "run_as_user_not_an_integer": ("""
        apiVersion: v1
        kind: Pod
        metadata: {name: p}
        spec:
          containers:
          - name: app
            securityContext:
              runAsUser: abc
    """, 8, "spec.containers[0].securityContext.runAsUser"),
    "run_as_user_bool_is_not_an_integer": ("""
        apiVersion: v1
        kind: Pod
        metadata: {name: p}
        spec:
          securityContext:
            runAsUser: true
          containers: [{name: app}]
    """, 6, "spec.securityContext.runAsUser"),
    "run_as_non_root_quoted_string": ("""
        apiVersion: v1
        kind: Pod
        metadata: {name: p}
        spec:
          securityContext:
            runAsNonRoot: "yes"
          containers: [{name: app}]
    """, 6, "spec.securityContext.runAsNonRoot"),
    "security_context_not_a_map": ("""
        apiVersion: v1
        kind: Pod
        metadata: {name: p}
        spec:
          securityContext:
            runAsUser:65534
          containers: [{name: app}]
    """, 5, "spec.securityContext"),
    "spec_missing": ("""
        apiVersion: apps/v1
        kind: Deployment
        metadata: {name: d}
    """, 1, "spec"),
    "spec_not_a_map": ("""
        apiVersion: v1
        kind: Pod
        metadata: {name: p}
        spec:
        - containers: []
    """, 4, "spec"),
    "template_missing": ("""
        apiVersion: apps/v1
        kind: Deployment
        metadata: {name: d}
        spec:
          replicas: 2
    """, 4, "spec.template"),
    "cronjob_job_template_missing": ("""
        apiVersion: batch/v1
        kind: CronJob
        metadata: {name: c}
        spec:
          schedule: "* * * * *"
    """, 4, "spec.jobTemplate"),
    "pod_template_template_missing": ("""
        apiVersion: v1
        kind: PodTemplate
        metadata: {name: t}
    """, 1, "template"),
    "ports_not_a_list": ("""
        apiVersion: v1
        kind: Pod
        metadata: {name: p}
        spec:
          containers:
          - name: app
            ports:
              containerPort: 80
    """, 7, "spec.containers[0].ports"),
    "host_port_not_an_int": ("""
        apiVersion: v1
        kind: Pod
        metadata: {name: p}
        spec:
          containers:
          - name: app
            ports:
            - containerPort: 80
              hostPort: "8080"
    """, 9, "spec.containers[0].ports[0].hostPort"),
    "container_without_name": ("""
        apiVersion: v1
        kind: Pod
        metadata: {name: p}
        spec:
          containers:
          - name: app
          - image: nginx:1.27
    """, 7, "spec.containers[1].name"),
    "container_not_a_map": ("""
        apiVersion: v1
        kind: Pod
        metadata: {name: p}
        spec:
          containers:
          - nginx:1.27
    """, 6, "spec.containers[0]"),
    "metadata_not_a_map": ("""
        apiVersion: v1
        kind: Pod
        metadata: p
        spec:
          containers: [{name: app}]
    """, 3, "metadata"),
    "host_network_not_a_bool": ("""
        apiVersion: v1
        kind: Pod
        metadata: {name: p}
        spec:
          hostNetwork: "true"
          containers: [{name: app}]
    """, 5, "spec.hostNetwork"),
    "exempt_annotation_not_a_string": ("""
        apiVersion: v1
        kind: Pod
        metadata:
          name: p
          annotations:
            admission.policy/exempt-expires: 2027
            admission.policy/exempt: no-host-port
        spec:
          containers: [{name: app}]
    """, 6, 'metadata.annotations["admission.policy/exempt-expires"]'),
}


@pytest.mark.parametrize("case", list(SHAPE_ERRORS))
def test_wrong_shape_raises_input_error_naming_file_line_and_path(case: str) -> None:
    text, line, path = SHAPE_ERRORS[case]
    [doc] = load_documents(textwrap.dedent(text).lstrip("\n"), file="bad.yaml", dialect="1.1")
    with pytest.raises(InputError) as info:
        workloads_from_object(doc.value, file="bad.yaml", namespace="default")
    assert (info.value.file, info.value.line, info.value.path) == ("bad.yaml", line, path)


@pytest.mark.parametrize("case", list(SHAPE_ERRORS))
def test_wrong_shape_in_a_stream_is_a_problem_with_the_same_location(case: str) -> None:
    text, line, path = SHAPE_ERRORS[case]
    result = load(text, file="bad.yaml")
    assert result.workloads == []
    [problem] = result.problems
    assert (problem.file, problem.line, problem.path) == ("bad.yaml", line, path)
    assert problem.message


def test_unknown_fields_are_ignored() -> None:
    workload = only("""
        apiVersion: v1
        kind: Pod
        metadata: {name: p, futureField: {x: 1}}
        spec:
          someNewFeature: [1, 2]
          containers:
          - name: app
            image: nginx:1.27
            resizePolicy: whatever
            securityContext: {futureKnob: 3}
    """)
    assert workload.containers[0].name == "app"


# --- objects without lines (webhook JSON) --------------------------------------------------------

def test_plain_dict_objects_have_no_lines() -> None:
    obj = json.loads('{"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "d"},'
                     ' "spec": {"template": {"spec": {"hostNetwork": true, "containers": [{"name": "app", "image": "a:1"}]}}}}')
    [workload] = workloads_from_object(obj, file="request", namespace="team")
    assert workload.origin == Origin("request", None, "")
    assert workload.namespace == "team"
    assert workload.containers[0].origin.line is None
    assert workload.containers[0].origin.path == "spec.template.spec.containers[0]"
    assert workload.host_network.origin.path == "spec.template.spec.hostNetwork"


def test_plain_dict_with_wrong_shape_raises_with_path_and_no_line() -> None:
    obj = {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "p"}, "spec": {"containers": {"name": "app"}}}
    with pytest.raises(InputError) as info:
        workloads_from_object(obj, file="request", namespace="default")
    assert (info.value.file, info.value.line, info.value.path) == ("request", None, "spec.containers")


def test_non_pod_object_gives_no_workloads() -> None:
    assert workloads_from_object({"apiVersion": "v1", "kind": "ConfigMap"}, file="f", namespace="default") == []


@pytest.mark.parametrize(("doc", "expected"), [
    ({"apiVersion": "v1", "kind": "Pod"}, True),
    ({"apiVersion": "v1"}, False),
    ({"kind": "Pod"}, False),
    ({"apiVersion": 1, "kind": "Pod"}, False),
    ([{"apiVersion": "v1", "kind": "Pod"}], False),
    ("apiVersion: v1", False),
])
def test_is_kubernetes_needs_a_mapping_with_string_api_version_and_kind(doc: object, expected: bool) -> None:
    assert is_kubernetes(doc) is expected


# --- JSON --------------------------------------------------------------------------------------------

def test_json_manifest_is_read_with_line_numbers() -> None:
    text = json.dumps({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "j"},
                       "spec": {"containers": [{"name": "app", "image": "nginx:1.27",
                                                "resources": {"limits": {"cpu": "100m"}}}]}}, indent=2)
    [workload] = load_text(text, file="pod.json").workloads
    cpu = workload.containers[0].limits["cpu"]
    assert cpu.value == "100m"
    assert cpu.origin.line == line_of(text, '"cpu"')


def test_json_that_libyaml_refuses_for_tabs_keeps_its_line_numbers() -> None:
    text = (FIXTURES / "tab-indented.json").read_text()
    with pytest.raises(InputError):  # the premise: libyaml alone refuses this valid JSON
        load_documents(text, file="tab-indented.json", dialect="1.1")
    [workload] = load_text(text, file="tab-indented.json").workloads
    assert workload.name == "tabbed"
    assert workload.host_network.origin.line == line_of(text, '"hostNetwork"')
    [port] = workload.containers[0].host_ports
    assert (port.published, port.target) == ("8080", "80")
    assert port.origin.line == line_of(text, '"hostPort"')


def test_json_that_libyaml_cannot_read_falls_back_to_document_line_one() -> None:
    text = (FIXTURES / "long-key.json").read_text()
    with pytest.raises(InputError):  # the premise: a key over libyaml's 1024-character simple-key limit
        load_documents(text, file="long-key.json", dialect="1.1")
    result = load_text(text, file="long-key.json")
    [workload] = result.workloads
    assert workload.name == "long-key"
    assert workload.origin.line == 1
    assert workload.containers[0].origin.line == 1
    assert workload.containers[0].image.origin.line == 1
    assert result.documents == 1


@pytest.mark.skipif(yamlload._Parser is None,
                    reason="pure-Python PyYAML decodes a surrogate-pair escape into two lone surrogates")
def test_json_surrogate_pair_escape_decodes_to_one_character() -> None:
    text = (FIXTURES / "surrogate-escape.json").read_text()
    [workload] = load_text(text, file="surrogate-escape.json").workloads
    [claim] = workload.exemption_claims
    assert claim.reason == "launch \N{ROCKET}"


def test_text_that_is_neither_yaml_nor_json_keeps_the_yaml_error() -> None:
    with pytest.raises(InputError) as info:
        load_text('\t{"apiVersion": "v1", "kind": "Pod",', file="bad.json")
    assert info.value.message.startswith("YAML")
    assert info.value.file == "bad.json"


# --- owned manifests (tests/fixtures/k8s): what the corpus tests below also find in other projects' files ------


def _owned(name: str) -> KubeResult:
    return load_text((OWNED / name).read_text(encoding="utf-8"), file=name)


def test_init_containers_come_before_the_main_containers() -> None:
    [workload] = _owned("compliant.yaml").workloads
    assert workload.kind == "Deployment"
    assert [(c.name, c.kind) for c in workload.containers] == [("copy-config", "init"), ("app", "container")]


def test_ephemeral_containers_are_read_after_the_others() -> None:
    workload = next(w for w in _owned("probes.yaml").workloads if w.name == "with-ephemeral")
    assert [(c.name, c.kind) for c in workload.containers] == [("app", "container"), ("debugger", "ephemeral")]


def test_a_json_list_gives_one_workload_per_pod_bearing_item() -> None:
    result = _owned("limits.json")
    assert [(w.kind, w.name) for w in result.workloads] == [
        ("Pod", "cpu-only"), ("Pod", "memory-only"), ("Pod", "zero-cpu"), ("ReplicationController", "millicpu-and-gi")]
    [container] = result.workloads[0].containers
    assert container.image is not None and container.image.value == "registry.example/app:1.0.0"
    assert {k: v.value for k, v in container.limits.items()} == {"cpu": "100m"}  # requests are not limits


def test_a_multi_document_stream_keeps_every_pod_around_a_refused_one() -> None:
    result = _owned("root-forms.yaml")
    assert [w.name for w in result.workloads] == [
        "nonroot-at-pod", "nonroot-in-container", "pod-false-container-true", "uid-at-pod", "container-uid-zero",
        "no-security-context", "user-namespace-only"]
    assert [(p.line, p.path) for p in result.problems] == [(96, "spec.securityContext.runAsUser")]
    by_name = {w.name: w for w in result.workloads}
    uid_zero = by_name["container-uid-zero"]
    assert [(c.name, c.run_as_user.value) for c in uid_zero.containers] == [("main", 1000), ("main2", 0)]
    # field by field, as the kubelet merges: the container's true overrides the pod's false
    [container] = by_name["pod-false-container-true"].containers
    assert container.run_as_non_root.value is True
    [container] = by_name["nonroot-at-pod"].containers
    assert container.run_as_non_root.value is True and container.run_as_non_root.origin.path == \
        "spec.securityContext.runAsNonRoot"


def test_a_cronjobs_host_network_is_read_at_its_place_in_the_job_template() -> None:
    workload = _owned("host-network.yaml").workloads[0]
    assert workload.kind == "CronJob"
    assert workload.host_network.origin.path == "spec.jobTemplate.spec.template.spec.hostNetwork"
    assert workload.host_network.origin.line == 18


def test_a_host_port_keeps_its_published_and_target_port_and_line() -> None:
    workload = _owned("host-network.yaml").workloads[1]
    [port] = workload.containers[0].host_ports
    assert (port.published, port.target, port.origin.line) == ("8080", "80", 33)


def test_kinds_without_pods_count_as_documents_only_and_a_service_as_an_object() -> None:
    result = _owned("not-pod-bearing.yaml")
    assert ([w.kind for w in result.workloads], result.problems, result.documents) == (["Service"], [], 3)


# --- the public corpus (tests/corpus.py; skipped without it) -------------------------------------------------

# Files that real tools also find malformed: the object is a problem at this place, never a crash.
CORPUS_PROBLEMS = {
    "checkov__CKV_K8S_11-13__unknown__pod-requests-limits-UNKNOWN.yaml": [(12, "spec.containers[0].resources")],
    "checkov__CKV_K8S_23__fail__rootContainersFAILED-malformed-spec.yaml": [(5, "spec")],
    "checkov__CKV_K8S_23__fail__rootContainersFAILED.yaml": [(66, "spec.securityContext.runAsUser")],
    "checkov__CKV_K8S_23__fail__rootContainersFAILED_2.yaml": [(28, "spec.template.spec.securityContext")],
    "checkov__CKV_K8S_23__unknown__rootContainersUNKNOWN.yaml": [(8, "spec.containers")],
    "checkov__CKV_K8S_40__fail__rootContainersHighUIDFAILED.yaml": [(66, "spec.securityContext.runAsUser"),
                                                                    (81, "spec.securityContext")],
    "checkov__CKV_K8S_40__unknown__rootContainersHighUIDUNKNOWN.yaml": [(8, "spec.containers")],
    "polaris__tagNotSpecified__fail__failure.latest.yaml": [(9, "spec.containers[0].name")],
    "polaris__tagNotSpecified__fail__failure.yaml": [(9, "spec.containers[0].name")],
    "polaris__tagNotSpecified__pass__success.yaml": [(9, "spec.containers[0].name")],
}


def _corpus(name: str) -> KubeResult:
    return load_text((corpus_dir("k8s") / name).read_text(encoding="utf-8"), file=name)


@corpus("k8s")
def test_corpus_is_present() -> None:
    assert len(corpus_files("k8s")) > 50


@corpus("k8s")
@pytest.mark.parametrize("name", corpus_params("k8s", [p.name for p in corpus_files("k8s")]))
def test_every_corpus_file_loads_into_workloads_problems_or_only_non_pod_kinds(name: str) -> None:
    result = _corpus(name)
    assert [(p.line, p.path) for p in result.problems] == CORPUS_PROBLEMS.get(name, [])
    assert all(p.file == name for p in result.problems)
    if not result.workloads and not result.problems:
        # Read independently: every document is of a kind that carries no pods.
        kinds = {doc["kind"] for doc in yaml.safe_load_all((corpus_dir("k8s") / name).read_text()) if doc}
        assert kinds and not kinds & set(POD_SPEC_PATHS), kinds
    for workload in result.workloads:
        assert workload.source == "kubernetes" and workload.origin.line is not None
        assert all(c.origin.line is not None for c in workload.containers)


@corpus("k8s")
def test_corpus_psp_files_are_non_pod_kinds() -> None:
    result = _corpus("checkov__CKV_K8S_6__fail__psp-most-insecure-FAILED.yaml")
    assert (result.workloads, result.problems, result.documents) == ([], [], 1)


@corpus("k8s")
def test_corpus_jenkins_deployment_has_an_init_and_a_main_container() -> None:
    [workload] = _corpus("checkov__CKV_K8S_19__pass__jenkinsDeployment-PASSED.yaml").workloads
    assert workload.kind == "Deployment"
    assert [(c.name, c.kind) for c in workload.containers] == [("copy-default-config", "init"), ("jenkins", "container")]


@corpus("k8s")
def test_corpus_gatekeeper_ephemeral_sample_has_an_ephemeral_container() -> None:
    [workload] = _corpus("gatekeeper-library__disallowedtags__fail__disallowed_tag_ephemeral.yaml").workloads
    assert [(c.name, c.kind) for c in workload.containers] == [("opa", "container"), ("opa", "ephemeral")]


@corpus("k8s")
def test_corpus_storm_zookeeper_json_pod() -> None:
    [workload] = _corpus("checkov__CKV_K8S_14__fail__storm-zookeeper-FAILED.json").workloads
    [container] = workload.containers
    assert (workload.kind, workload.name, container.name) == ("Pod", "zookeeper", "zookeeper")
    assert container.image.value == "mattf/zookeeper"
    assert {k: v.value for k, v in container.limits.items()} == {"cpu": "100m"}


@corpus("k8s")
def test_corpus_multi_document_streams_keep_every_pod() -> None:
    result = _corpus("checkov__CKV_K8S_23__fail__rootContainersFAILED.yaml")
    assert [w.name for w in result.workloads] == ["pod1", "pod2", "pod3", "pod4"]
    pod4 = result.workloads[3]
    assert [(c.name, c.run_as_user.value) for c in pod4.containers] == [("main", 1000), ("main2", 0)]
    pod2 = result.workloads[1]
    assert pod2.containers[0].run_as_non_root.value is False


@corpus("k8s")
def test_corpus_cronjob_with_host_network() -> None:
    [workload] = _corpus("checkov__CKV_K8S_19__fail__cronjob-hostresources-FAILED.yaml").workloads
    assert workload.kind == "CronJob"
    assert workload.host_network.origin.path == "spec.jobTemplate.spec.template.spec.hostNetwork"
    assert workload.host_network.origin.line == 22


@corpus("k8s")
def test_corpus_polaris_host_port() -> None:
    [workload] = _corpus("polaris__hostPortSet__fail__failure.yaml").workloads
    [port] = workload.containers[0].host_ports
    assert (port.published, port.target, port.origin.line) == ("8080", "80", 13)
