"""Our verdicts on the public corpus's k8s folder, next to other tools' verdicts (carried in each file name).

File name: <tool>__<check>__<pass|fail|unknown>__<stem>. The tool's verdict is under the tool's settings.
We assert ours where the semantics agree, and where they differ the table says why. Skipped without the corpus
(tests/corpus.py); tests/test_k8s_verdicts.py covers the same behaviours with manifests the project owns.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from admission.policy import engine
from admission.policy.config import default_policy
from admission.sources import kubernetes
from admission.textio import read_path
from tests.corpus import corpus, corpus_dir, corpus_files, corpus_params

pytestmark = corpus("k8s")

# the tool's check -> our rule (and, for split checks, the resource or field that check covers)
CHECK_TO_RULE = {
    "CKV_K8S_23": "run-as-non-root", "CKV_K8S_40": "run-as-non-root", "CKV_K8S_14": "image-tag-pinned",
    "CKV_K8S_26": "no-host-port", "CKV_K8S_11-13": "resource-limits", "CKV_K8S_19": "no-host-port",
    "runAsRootAllowed": "run-as-non-root", "tagNotSpecified": "image-tag-pinned", "hostPortSet": "no-host-port",
    "cpuLimitsMissing": "resource-limits", "memoryLimitsMissing": "resource-limits", "hostNetworkSet": "no-host-port",
    "disallowedtags": "image-tag-pinned", "host-network-ports": "no-host-port", "users": "run-as-non-root",
    "containerlimits": "resource-limits", "CKV_K8S_6": None,
}
RESOURCE_OF_CHECK = {"cpuLimitsMissing": "cpu", "memoryLimitsMissing": "memory"}

# Where our verdict differs from the tool's: (our verdict, why). "error" = the object is an input error
# (exit 2 in the CLI, a denial in the webhook); "none" = no pod-bearing object in the file.
DIFFERENT = {
    "checkov__CKV_K8S_6__fail__RunAsUserRange-FAILED.yaml": ("none", "PodSecurityPolicy is not pod-bearing (and was removed in 1.25)"),
    "checkov__CKV_K8S_6__fail__psp-most-insecure-FAILED.yaml": ("none", "PodSecurityPolicy is not pod-bearing"),
    "checkov__CKV_K8S_6__pass__MustRunAsNonRoot-PASSED.yaml": ("none", "PodSecurityPolicy is not pod-bearing"),
    "checkov__CKV_K8S_6__pass__RunAsUserRange-PASSED.yaml": ("none", "PodSecurityPolicy is not pod-bearing"),
    "checkov__CKV_K8S_23__fail__rootContainersFAILED-malformed-spec.yaml":
        ("error", "`spec` is a list: the API server cannot decode it, so we refuse to guess rather than pass or fail it"),
    "checkov__CKV_K8S_23__fail__rootContainersFAILED_2.yaml":
        ("error", "securityContext is the string 'runAsUser:65534' (a missing space): not a mapping the API server accepts"),
    "checkov__CKV_K8S_23__unknown__rootContainersUNKNOWN.yaml": ("error", "`containers` is a mapping; checkov gives no verdict"),
    "checkov__CKV_K8S_40__unknown__rootContainersHighUIDUNKNOWN.yaml": ("error", "`containers` is a mapping; checkov gives no verdict"),
    "checkov__CKV_K8S_11-13__unknown__pod-requests-limits-UNKNOWN.yaml": ("error", "`resources` is a list; checkov gives no verdict"),
    "checkov__CKV_K8S_40__pass__rootContainersHighUIDPASSED.yaml":
        ("fail", "pod4 has hostUsers: false and no securityContext: checkov accepts a user namespace instead of a uid; "
                 "we do not, since the process is still root inside the container and the kubelet's runAsNonRoot "
                 "would not stop it"),
    "checkov__CKV_K8S_14__pass__imageWithDigest-PASSED.yaml":
        ("fail", "the digest sha256:123456 is not 64 hex digits: an invalid reference, which checkov does not parse"),
    "checkov__CKV_K8S_14__pass__imageWithTagAndDigest-PASSED.yaml":
        ("fail", "same invalid digest (sha256:123456) after a valid tag"),
    "gatekeeper-library__disallowedtags__pass__example_exempt_image_w_disallowed_tag.yaml":
        ("fail", "the gatekeeper constraint exempts that image by name (exemptImages); our default policy has no such exemption"),
    "polaris__tagNotSpecified__pass__success.yaml":
        ("error", "the container has no name, which the API server requires; polaris checks only the image"),
    "polaris__tagNotSpecified__fail__failure.yaml": ("error", "the container has no name, which the API server requires"),
    "polaris__tagNotSpecified__fail__failure.latest.yaml": ("error", "the container has no name, which the API server requires"),
}


def test_the_corpus_is_where_we_expect_it() -> None:
    assert len(corpus_files("k8s")) >= 50


@pytest.mark.parametrize("path", corpus_params("k8s"), ids=lambda p: p.name)
def test_our_verdict_on_the_k8s_corpus(path: Path) -> None:
    tool, check, tool_verdict, _ = path.name.split("__", 3)
    rule = CHECK_TO_RULE[check]
    result = kubernetes.load_text(read_path(str(path), display=path.name), file=path.name, namespace="default")
    report = engine.evaluate(result.workloads, default_policy())
    hits = [f for f in report.findings if f.rule == rule]
    resource = RESOURCE_OF_CHECK.get(check)
    if resource:
        hits = [f for f in hits if f" {resource} limit" in f.message]
    if not result.workloads and result.problems:
        ours = "error"
    elif not result.workloads:
        ours = "none"
    else:
        ours = "fail" if hits else "pass"
    expected, why = DIFFERENT.get(path.name, (tool_verdict, "same semantics"))
    assert ours == expected, f"{tool} {check} says {tool_verdict}; we expected {expected} ({why}); got {ours}"
    for problem in result.problems:
        assert problem.file == path.name and problem.line, "every refused object names file and line"


# least-privilege and healthcheck on the same corpus. The corpus carries no verdicts for their checks, so checkov
# 3.3.30 was run on it for its counterparts (CKV_K8S_16 privileged, CKV_K8S_17 hostPID, CKV_K8S_18 hostIPC,
# CKV_K8S_39 SYS_ADMIN, CKV_K8S_27 docker socket; CKV_K8S_8 liveness probe, CKV_K8S_9 readiness probe): on every
# evaluable file they agree with ours except where NEW_RULE_DIFFERENT says why not. polaris's counterparts (runAsPrivileged, hostPIDSet, hostIPCSet, hostPathSet,
# dangerousCapabilities; livenessProbeMissing, readinessProbeMissing @ pkg/config/checks) are read from their
# definitions. Objects we refuse as input errors (DIFFERENT above) are left out: checkov evaluates them.
LEAST_PRIVILEGE_FAILS = {
    "checkov__CKV_K8S_19__fail__cronjob-hostresources-FAILED.yaml",  # hostPID, hostIPC
    "checkov__CKV_K8S_19__fail__privilegedDaemonSet-FAILED.yaml",  # privileged, hostPID, hostIPC
    "checkov__CKV_K8S_19__fail__privilegedPod-FAILED.yaml",
    "checkov__CKV_K8S_19__pass__privilegedPod-PASS.yaml",  # passes CKV_K8S_19 (hostNetwork), fails CKV_K8S_16/17/18
    "checkov__CKV_K8S_26__fail__DS-node-exporter-FAILED.yaml",  # hostPID and hostPath /proc, /sys
}
HEALTHCHECK_PASSES = {
    "checkov__CKV_K8S_11-13__fail__cronjob-request-limit-1FAILED.yaml",  # a CronJob: run to completion
    "checkov__CKV_K8S_14__fail__job-ImageTagLatest-FAILED.yaml",  # a Job
    "checkov__CKV_K8S_19__fail__cronjob-hostresources-FAILED.yaml",  # a CronJob
    # jenkins, memcached and node-exporter have both probes, but each livenessProbe is its readinessProbe's check:
    # they fail healthcheck since issue 27 (NEW_RULE_DIFFERENT)
    "gatekeeper-library__users__fail__disallowed_ephemeral.yaml",  # only an ephemeral container
    # a readinessProbe and no livenessProbe: see NEW_RULE_DIFFERENT
    "checkov__CKV_K8S_14__pass__imageWithDigest-PASSED.yaml",
    "checkov__CKV_K8S_14__pass__imageWithTagAndDigest-PASSED.yaml",
    "checkov__CKV_K8S_14__pass__kafka-ImageWithRepo-PASSED.yaml",
    "checkov__CKV_K8S_14__pass__kafka-PASSED.yaml",
}
# (rule, file) -> (the tool's verdict on its counterpart checks, why ours differs)
NEW_RULE_DIFFERENT = {
    **{("healthcheck", name): ("fail", "checkov CKV_K8S_8 and polaris livenessProbeMissing require a livenessProbe "
                                       "on their own; architecture §4 asks for a liveness or a readiness probe, and the "
                                       "kafka StatefulSet has a readinessProbe")
       for name in ("checkov__CKV_K8S_14__pass__imageWithDigest-PASSED.yaml",
                    "checkov__CKV_K8S_14__pass__imageWithTagAndDigest-PASSED.yaml",
                    "checkov__CKV_K8S_14__pass__kafka-ImageWithRepo-PASSED.yaml",
                    "checkov__CKV_K8S_14__pass__kafka-PASSED.yaml")},
    **{("healthcheck", name): ("pass", f"a policy difference: checkov CKV_K8S_8/CKV_K8S_9 and polaris "
                                       f"livenessProbeMissing/readinessProbeMissing only ask that the probes exist; "
                                       f"{what} is both its livenessProbe and its readinessProbe, which kube-score's "
                                       "pod-probes and our healthcheck warn about since issue 27 item 6")
       for name, what in (("checkov__CKV_K8S_19__pass__jenkinsDeployment-PASSED.yaml", "GET :http/login (http is 8080)"),
                          ("checkov__CKV_K8S_19__pass__memcachedStatefulSet-PASSED.yaml", "TCP :memcache (11211)"),
                          ("checkov__CKV_K8S_26__fail__DS-node-exporter-FAILED.yaml", "GET :9100/"))},
    ("healthcheck", "gatekeeper-library__users__fail__disallowed_ephemeral.yaml"):
        ("none", "checkov gives no result (ephemeralContainers only); an ephemeral debug container takes no probes "
                 "(the API forbids them), so we skip it too and the pod passes"),
}


# read-only-root-filesystem (issue 27 item 3): no container of the corpus sets readOnlyRootFilesystem: true, so every
# file fails as it fails kube-score's container-security-context-readonlyrootfilesystem, polaris's
# notReadOnlyRootFilesystem and checkov's CKV_K8S_22 (read from their definitions), but the one whose only container
# is an ephemeral debug container, which we skip (NEW_RULE_DIFFERENT).
READ_ONLY_PASSES = {"gatekeeper-library__users__fail__disallowed_ephemeral.yaml"}
NEW_RULE_DIFFERENT[("read-only-root-filesystem", "gatekeeper-library__users__fail__disallowed_ephemeral.yaml")] = (
    "fail", "a policy difference: kube-score and polaris read only containers and init containers, so they have "
            "nothing to fail here either; checkov CKV_K8S_22 would fail the ephemeral container, which is a debugging "
            "shell meant to write")


@pytest.mark.parametrize("path", corpus_params("k8s"), ids=lambda p: p.name)
def test_least_privilege_and_healthcheck_verdicts_on_the_k8s_corpus(path: Path) -> None:
    result = kubernetes.load_text(read_path(str(path), display=path.name), file=path.name, namespace="default")
    if not result.workloads:
        assert DIFFERENT[path.name][0] in ("error", "none"), "only refused or pod-less files have no workloads"
        return
    report = engine.evaluate(result.workloads, default_policy())
    for rule, failing in (("least-privilege", path.name in LEAST_PRIVILEGE_FAILS),
                          ("healthcheck", path.name not in HEALTHCHECK_PASSES),
                          ("read-only-root-filesystem", path.name not in READ_ONLY_PASSES)):
        ours = "fail" if any(f.rule == rule for f in report.findings) else "pass"
        expected = "fail" if failing else "pass"
        assert ours == expected, f"{rule} on {path.name}: expected {expected} ({NEW_RULE_DIFFERENT.get((rule, path.name))})"


def test_the_rootcontainers_corpus_fails_per_object_as_checkov_does() -> None:
    name = "checkov__CKV_K8S_23__pass__rootContainersPASSED.yaml"
    result = kubernetes.load_text(read_path(str(corpus_dir("k8s") / name), display=name), file=name)
    assert [w.name for w in result.workloads] == ["pod1", "pod2", "pod3", "pod4", "pod5"]
    report = engine.evaluate(result.workloads, default_policy())
    assert not [f for f in report.findings if f.rule == "run-as-non-root"]
