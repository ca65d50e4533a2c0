"""least-privilege agrees with Pod Security Admission on PSA's own test cases, one for one.

tests/rules/least-privilege/fail__psa-*.yaml transcribe the cases of k8s.io/pod-security-admission/policy/
check_*_test.go (SOURCES.md names file and commit). Each case is one Pod with a comment
    # psa: <Test> / <case> | allowed
    # psa: <Test> / <case> | <PSA's ForbiddenReason> | <PSA's ForbiddenDetail>
We report one finding per container (or pod-level field); here those findings are put back together in PSA's
own wording, and the reason and the detail must equal what PSA's test expects, character for character.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import pytest
import yaml

from admission.findings import Finding
from admission.model import Workload
from admission.policy import engine
from admission.policy.config import default_policy, parse_policy
from admission.sources import kubernetes

FIXTURES = Path(__file__).resolve().parent / "rules" / "least-privilege"
_PSA = re.compile(r"^# psa: (.+?) \| (.+?)(?: \| (.*))?$", re.M)
_POLICY = re.compile(r"^# policy: (.+)$", re.M)


@dataclass(frozen=True)
class Case:
    file: str
    test: str
    name: str
    reason: str  # "allowed" or PSA's ForbiddenReason
    detail: str


def _cases() -> list[Case]:
    cases = []
    for path in sorted(FIXTURES.glob("fail__psa-*.yaml")):
        for chunk in path.read_text(encoding="utf-8").split("\n---\n"):
            psa, name = _PSA.search(chunk), yaml.safe_load(chunk)["metadata"]["name"]
            assert psa, f"{path.name}: every document has a `# psa:` comment"
            cases.append(Case(path.name, psa.group(1), name, psa.group(2), psa.group(3) or ""))
    return cases


CASES = _cases()


def test_every_mirrored_psa_check_has_transcribed_cases() -> None:
    files = {c.file for c in CASES}
    assert files == {f"fail__psa-{name}.yaml" for name in (
        "privileged", "host-namespaces", "capabilities-baseline", "host-path-volumes", "windows-host-process",
        "proc-mount-baseline", "seccomp-baseline", "apparmor", "selinux", "sysctls", "allow-privilege-escalation",
        "capabilities-restricted", "seccomp-restricted", "restricted-volumes", "proc-mount-restricted")}
    assert len(CASES) == 48


def _evaluate(file: str) -> tuple[dict[str, Workload], dict[str, list[Finding]]]:
    path = FIXTURES / file
    text = path.read_text(encoding="utf-8")
    policy = default_policy()
    line = _POLICY.search(text)
    if line:
        policy = parse_policy(line.group(1), file=file, base=policy)
    result = kubernetes.load_text(text, file=file)
    assert not result.problems
    report = engine.evaluate(result.workloads, policy)
    found: dict[str, list[Finding]] = {}
    for f in report.findings:
        if f.rule == "least-privilege" or (f.rule == "no-host-port" and f.key == "hostNetwork"):
            found.setdefault(f.object_name, []).append(f)
    return {w.name: w for w in result.workloads}, found


def _reason(f: Finding) -> str:
    if f.rule == "no-host-port":
        return "host namespaces"
    return f.message.split(": ", 1)[0]


def _q(items: Sequence[str]) -> str:
    return ", ".join(f'"{i}"' for i in items)


def _containers(n: int) -> str:
    return "container" if n == 1 else "containers"


def _unique(items: Sequence[str]) -> list[str]:
    return list(dict.fromkeys(items))


def _names(findings: list[Finding], key: Callable[[Finding], bool] = lambda f: True) -> list[str]:
    return _unique([f.container for f in findings if f.container is not None and key(f)])


def _setters(findings: list[Finding], key: Callable[[Finding], bool] = lambda f: True) -> list[str]:
    setters = ["pod"] if any(f.container is None and key(f) for f in findings) else []
    names = _names(findings, key)
    if names:
        setters.append(f"{_containers(len(names))} {_q(names)}")
    return setters


def _volume(f: Finding) -> tuple[str, str]:
    if f.key.startswith("volume "):
        _, name, kind = f.key.split(" ", 2)
        return name, kind
    match = re.search(r"volume '([^']*)'", f.message)
    assert match, f.message
    return match.group(1), "hostPath"


def _render(reason: str, findings: list[Finding], workload: Workload) -> tuple[str, str]:
    """Our findings for one PSA check, in PSA's ForbiddenReason and ForbiddenDetail."""
    if reason == "privileged":
        names = _names(findings)
        return reason, f"{_containers(len(names))} {_q(names)} must not set securityContext.privileged=true"
    if reason == "host namespaces":
        keys = {f.key for f in findings}
        return reason, ", ".join(f"{k}=true" for k in ("hostNetwork", "hostPID", "hostIPC") if k in keys)
    if reason == "non-default capabilities":
        names = _names(findings)
        caps = sorted({f.value or "" for f in findings})
        return reason, f"{_containers(len(names))} {_q(names)} must not include {_q(caps)} in securityContext.capabilities.add"
    if reason == "hostPath volumes":
        return reason, f"volumes {_q([_volume(f)[0] for f in findings])}"
    if reason == "hostProcess":
        return reason, " and ".join(_setters(findings)) + " must not set securityContext.windowsOptions.hostProcess=true"
    if reason == "procMount":
        names = _names(findings)
        values = sorted({f.value or "" for f in findings})
        return reason, f"{_containers(len(names))} {_q(names)} must not set securityContext.procMount to {_q(values)}"
    if reason == "seccompProfile":
        implicit = [f for f in findings if f.key == "seccompProfile"]
        if implicit:
            names = _names(implicit)
            return reason, (f"pod or {_containers(len(names))} {_q(names)} must set securityContext.seccompProfile.type "
                            'to "RuntimeDefault" or "Localhost"')
        values = sorted({f.value or "" for f in findings})
        return reason, " and ".join(_setters(findings)) + f" must not set securityContext.seccompProfile.type to {_q(values)}"
    if reason in ("forbidden AppArmor profile", "forbidden AppArmor profiles"):
        fields = [f for f in findings if not f.key.startswith("apparmor annotation")]
        annotations = sorted(f'{f.path.split(chr(34))[1]}="{f.value}"' for f in findings if f.key.startswith("apparmor annotation"))
        values = sorted({f.value or "" for f in fields}) + annotations
        setters = _setters(fields)
        if annotations:
            setters.append("annotation" if len(annotations) == 1 else "annotations")
        plural = "forbidden AppArmor profile" if len(values) == 1 else "forbidden AppArmor profiles"
        return plural, " and ".join(setters) + f" must not set AppArmor profile type to {_q(values)}"
    if reason == "seLinuxOptions":
        types = sorted({f.value or "" for f in findings if f.key.startswith("seLinuxOptions.type")})
        parts = [f"{'type' if len(types) == 1 else 'types'} {_q(types)}"] if types else []
        if any(f.key == "seLinuxOptions.user" for f in findings):
            parts.append("user may not be set")
        if any(f.key == "seLinuxOptions.role" for f in findings):
            parts.append("role may not be set")
        return reason, " and ".join(_setters(findings)) + " set forbidden securityContext.seLinuxOptions: " + "; ".join(parts)
    if reason == "forbidden sysctls":
        return reason, ", ".join(f.value or "" for f in findings)
    if reason == "allowPrivilegeEscalation != false":
        names = _names(findings)
        return reason, f"{_containers(len(names))} {_q(names)} must set securityContext.allowPrivilegeEscalation=false"
    if reason == "unrestricted capabilities":
        parts = []
        missing = _names(findings, lambda f: f.key == "capabilities.drop ALL")
        if missing:
            parts.append(f'{_containers(len(missing))} {_q(missing)} must set securityContext.capabilities.drop=["ALL"]')
        adding = _names(findings, lambda f: f.key.startswith("capabilities.add "))
        if adding:
            caps = sorted({f.value or "" for f in findings if f.key.startswith("capabilities.add ")})
            parts.append(f"{_containers(len(adding))} {_q(adding)} must not include {_q(caps)} in securityContext.capabilities.add")
        return reason, "; ".join(parts)
    if reason == "restricted volume types":
        order = [v.name for v in workload.volumes]
        volumes = sorted((_volume(f) for f in findings), key=lambda v: order.index(v[0]))
        return reason, (f"volumes {_q([v[0] for v in volumes])} use restricted volume types "
                        f"{_q(sorted({v[1] for v in volumes}))}")
    raise AssertionError(f"no renderer for PSA reason {reason!r}")


# Where PSA reports one problem under two checks, and we once: a hostPath volume fails hostPathVolumes (baseline)
# and restrictedVolumes; we report it under hostPath volumes only.
_ALSO = {"restricted volume types": ("hostPath volumes",)}


@pytest.mark.parametrize("case", CASES, ids=[f"{c.file}::{c.name}" for c in CASES])
def test_least_privilege_gives_psa_reason_and_detail_for_psa_test_case(case: Case) -> None:
    workloads, found = _evaluate(case.file)
    ours = found.get(case.name, [])
    if case.reason == "allowed":
        assert ours == [], f"{case.test}: PSA allows this pod; we report " + "; ".join(f.message for f in ours)
        return
    wanted = {case.reason.replace("profiles", "profile"), *_ALSO.get(case.reason, ())}
    relevant = [f for f in ours if _reason(f) in wanted]
    assert relevant, f"{case.test}: PSA forbids this pod ({case.reason}); we report nothing for that check"
    reason, detail = _render(case.reason.replace("profiles", "profile"), relevant, workloads[case.name])
    assert (reason, detail) == (case.reason, case.detail)
