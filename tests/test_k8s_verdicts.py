"""Our verdicts on manifests the project owns (tests/fixtures/k8s), object by object and container by container.

They cover what the public corpus test (tests/test_k8s_corpus.py) checks against other tools, so a checkout
without the corpus still guards it: the securityContext forms of runAsNonRoot, malformed shapes refused where
they go wrong, kinds that carry no pods, image references (ports, digests, `latest` in any case), hostNetwork and
hostPort, PSA baseline privileges, probes (and a livenessProbe that is the readinessProbe), limits, and the
read-only root filesystem no object sets.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

import pytest

from admission.policy import engine
from admission.policy.config import default_policy
from admission.sources import kubernetes
from admission.sources.kubernetes import KubeResult
from admission.textio import read_path

FIXTURES = Path(__file__).resolve().parent / "fixtures" / "k8s"
# The rules the corpus's tools have counterparts for.
RULES = frozenset({"run-as-non-root", "image-tag-pinned", "no-host-port", "resource-limits", "least-privilege",
                   "healthcheck"})

Hits = set[tuple[str, str | None]]  # (rule, container); None when the finding is about the pod, not a container

# file -> object -> what it fails, in document order. Every object not listed in PROBLEMS must be here.
EXPECTED: Mapping[str, Mapping[str, Hits]] = {
    "compliant.yaml": {"web": set()},
    "root-forms.yaml": {
        "nonroot-at-pod": set(),
        "nonroot-in-container": set(),
        "pod-false-container-true": set(),
        "uid-at-pod": set(),
        "container-uid-zero": {("run-as-non-root", "main2")},
        "no-security-context": {("run-as-non-root", "main")},
        # a user namespace is not a uid: the process is still root inside, and the kubelet would not stop it
        "user-namespace-only": {("run-as-non-root", "main")},
    },
    "malformed-shapes.yaml": {"well-formed": set()},
    # a ClusterIP Service is an object since issue 27 (no-host-port reads Services) and passes
    "not-pod-bearing.yaml": {"web": set()},
    "image-references.yaml": {"images": {
        ("image-tag-pinned", "no-tag"), ("image-tag-pinned", "latest"), ("image-tag-pinned", "latest-any-case"),
        ("image-tag-pinned", "port-no-tag"), ("image-tag-pinned", "short-digest"),
        ("image-tag-pinned", "tag-and-short-digest"), ("image-tag-pinned", "uppercase-repository"),
        ("image-tag-pinned", "no-version"),  # issue 27: `lts` names no version (require_version)
    }},
    "host-network.yaml": {
        # a CronJob runs to completion: no probe needed; its host namespaces are least-privilege's
        "node-report": {("no-host-port", None), ("least-privilege", None)},
        "host-port": {("no-host-port", "web")},
        "container-port-only": set(),
        "host-network": {("no-host-port", None)},
    },
    "privileges.yaml": {
        "node-agent": {("least-privilege", "agent"), ("least-privilege", None)},  # privileged; hostPath /proc
        "sys-admin": {("least-privilege", "main")},
        "docker-socket": {("least-privilege", None)},
        "net-bind-service": set(),
    },
    "probes.yaml": {
        "migrate": set(),
        "readiness-only": set(),
        "startup-probe-only": {("healthcheck", "app")},
        "run-once": set(),
        # the debug container is checked for its user and image, never for limits or probes
        "with-ephemeral": {("run-as-non-root", "debugger"), ("image-tag-pinned", "debugger")},
        # the livenessProbe is the readinessProbe's check (port http is 8080); the cache's two probes differ
        "same-check": {("healthcheck", "web")},
    },
    "limits.json": {
        "cpu-only": {("resource-limits", "app")},
        "memory-only": {("resource-limits", "app")},
        "zero-cpu": {("resource-limits", "app")},
        "millicpu-and-gi": {("resource-limits", "init")},
    },
}

# file -> (line, path) of each object refused as an input error: the API server could not decode it either.
PROBLEMS: Mapping[str, list[tuple[int, str]]] = {
    "root-forms.yaml": [(96, "spec.securityContext.runAsUser")],
    "malformed-shapes.yaml": [
        (7, "spec"),
        (24, "spec.template.spec.securityContext"),
        (36, "spec.containers"),
        (48, "spec.containers[0].resources"),
        (57, "spec.containers[0].name"),
    ],
}


def load(name: str) -> KubeResult:
    return kubernetes.load_text(read_path(str(FIXTURES / name), display=name), file=name, namespace="default")


def test_every_owned_manifest_has_expected_verdicts() -> None:
    assert sorted(p.name for p in FIXTURES.iterdir()) == sorted(EXPECTED)


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_owned_manifest_gets_the_expected_verdict_per_object_and_container(name: str) -> None:
    result = load(name)
    assert [(p.line, p.path) for p in result.problems] == PROBLEMS.get(name, [])
    assert all(p.file == name and p.line for p in result.problems), "every refused object names file and line"
    assert [w.name for w in result.workloads] == list(EXPECTED[name])
    report = engine.evaluate(result.workloads, default_policy())
    hits: dict[str, Hits] = {w.name: set() for w in result.workloads}
    for finding in report.findings:
        if finding.rule in RULES:
            hits[finding.object_name].add((finding.rule, finding.container))
    assert hits == EXPECTED[name]


def test_kinds_without_pods_are_neither_objects_nor_errors_but_a_service_is_an_object() -> None:
    result = load("not-pod-bearing.yaml")
    assert ([(w.kind, w.name) for w in result.workloads], result.problems, result.documents) == (
        [("Service", "web")], [], 3)


@pytest.mark.parametrize(("name", "words"), [
    ("cpu-only", "no memory limit"),
    ("memory-only", "no cpu limit"),
    ("zero-cpu", "cpu limit of '0', which means no limit"),
])
def test_a_missing_limit_is_named_by_its_resource(name: str, words: str) -> None:
    result = load("limits.json")
    report = engine.evaluate(result.workloads, default_policy())
    [finding] = [f for f in report.findings if f.rule == "resource-limits" and f.object_name == name]
    assert words in finding.message


def test_an_init_container_needs_limits_of_its_own() -> None:
    result = load("limits.json")
    report = engine.evaluate(result.workloads, default_policy())
    missing = sorted(f.message.split(" has ")[1].split(" (")[0] for f in report.findings
                     if f.rule == "resource-limits" and f.object_name == "millicpu-and-gi")
    assert missing == ["no cpu limit", "no memory limit"]


def test_no_owned_object_sets_a_read_only_root_so_every_container_but_a_debug_one_fails_it() -> None:
    """The corpus test's statement for read-only-root-filesystem, on the manifests the project owns: none sets
    readOnlyRootFilesystem, so every regular and init container fails (as kube-score's and Polaris's definitions fail
    them) and an ephemeral debug container is skipped."""
    for name in sorted(EXPECTED):
        result = load(name)
        report = engine.evaluate(result.workloads, default_policy())
        for workload in result.workloads:
            failing = {f.container for f in report.findings
                       if f.rule == "read-only-root-filesystem" and f.object_name == workload.name}
            assert failing == {c.name for c in workload.containers if c.kind != "ephemeral"}, (name, workload.name)
