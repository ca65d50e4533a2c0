"""Our verdicts on ../shared/corpus/k8s, next to other tools' verdicts (carried in each file name).

File name: <tool>__<check>__<pass|fail|unknown>__<stem>. The tool's verdict is under the tool's settings.
We assert ours where the semantics agree, and where they differ the table says why.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from admission.policy import engine
from admission.policy.config import default_policy
from admission.sources import kubernetes
from admission.sources.text import read_path

CORPUS = Path(__file__).resolve().parents[1].parent / "shared" / "corpus" / "k8s"

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


def _cases() -> list[Path]:
    return sorted(p for p in CORPUS.iterdir() if p.name != "SOURCES.md")


def test_the_corpus_is_where_we_expect_it() -> None:
    assert len(_cases()) >= 50


@pytest.mark.parametrize("path", _cases(), ids=lambda p: p.name)
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


def test_the_rootcontainers_corpus_fails_per_object_as_checkov_does() -> None:
    name = "checkov__CKV_K8S_23__pass__rootContainersPASSED.yaml"
    result = kubernetes.load_text(read_path(str(CORPUS / name), display=name), file=name)
    assert [w.name for w in result.workloads] == ["pod1", "pod2", "pod3", "pod4", "pod5"]
    report = engine.evaluate(result.workloads, default_policy())
    assert not [f for f in report.findings if f.rule == "run-as-non-root"]
