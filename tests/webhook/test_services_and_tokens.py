"""Issue 27 in the webhook: Services (no-host-port on NodePort and externalIPs, UPDATEs judged only when the type,
a node port or the externalIPs change) and service-account-token (a Pod's token volume is the evidence; a template's
ServiceAccount is read when the server may). The CLI gives the same verdict on the same objects."""

from __future__ import annotations

import contextlib
import copy
import io
import json
import re
from pathlib import Path
from typing import Any

import pytest
import yaml

from admission.cli.main import main
from admission.sources import kubernetes
from admission.webhook.settings import Settings
from tests.webhook.conftest import deployment, pod, review, rules_in, running, write_policy

pytestmark = pytest.mark.anyio

RULES = Path(__file__).resolve().parents[1] / "rules"
_POLICY = re.compile(r"^#\s*policy:\s*(.+?)\s*$", re.M)


def service(name: str = "web", **spec: Any) -> dict[str, Any]:
    return {"apiVersion": "v1", "kind": "Service", "metadata": {"name": name, "namespace": "default"},
            "spec": {"selector": {"app": name}, "ports": [{"port": 80, "targetPort": 8080}], **spec}}


def node_port(name: str = "legacy", port: int = 30080) -> dict[str, Any]:
    return service(name, type="NodePort", ports=[{"port": 80, "targetPort": 8080, "nodePort": port}])


def as_admitted(obj: dict[str, Any]) -> dict[str, Any]:
    """A Pod as the API server sends it to a validating webhook: the ServiceAccount admission plugin has added the
    token volume unless the Pod turns automounting off (the default ServiceAccount leaves it on)."""
    if obj["kind"] != "Pod" or obj["spec"].get("automountServiceAccountToken") is False:
        return obj
    out = copy.deepcopy(obj)
    if not any(v.get("name", "").startswith("kube-api-access-") for v in out["spec"].get("volumes", [])):
        out["spec"].setdefault("volumes", []).append({"name": "kube-api-access-q7x2z", "projected": {"sources": [
            {"serviceAccountToken": {"expirationSeconds": 3607, "path": "token"}}]}})
    return out


# --- the same verdict in the CLI and the webhook ------------------------------------------------------------

def _fixture_objects() -> list[tuple[str, Path, dict[str, Any]]]:
    out = []
    for folder in ("no-host-port", "service-account-token"):
        for path in sorted((RULES / folder).glob("*.yaml")):
            for index, doc in enumerate(yaml.safe_load_all(path.read_text())):
                if kubernetes.is_kubernetes(doc) and kubernetes.is_evaluated(doc["apiVersion"], doc["kind"]):
                    out.append((f"{folder}/{path.name}#{index}", path, doc))
    return out


def _cli(path: Path, name: str, policy: Path) -> set[str]:
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        main(["check", str(path), "--format", "json", "--policy", str(policy)])
    return {f["rule"] for f in json.loads(out.getvalue())["findings"]
            if f["severity"] == "deny" and not f["suppressed"] and f["object"]["name"] == name}


@pytest.mark.parametrize(("ident", "path", "obj"), _fixture_objects(), ids=lambda v: v if isinstance(v, str) else "")
async def test_the_webhook_denies_each_service_and_token_fixture_object_for_the_rules_the_cli_does(
        ident: str, path: Path, obj: dict[str, Any], tmp_path: Path) -> None:
    found = _POLICY.search(path.read_text())
    overlay = yaml.safe_load(found.group(1)) if found else {}
    policy = write_policy(tmp_path, json.dumps({**overlay, "images": {"resolve": False}}))
    expected = _cli(path, obj["metadata"]["name"], policy)
    async with running(Settings(policy=str(policy))) as hook:
        answer = await hook.answer(review(as_admitted(obj)))
    got = rules_in(answer["status"]["message"]) if not answer["allowed"] else set()
    assert got == expected, (ident, answer)
    if "fail__" in path.name and path.parent.name in ("no-host-port", "service-account-token") \
            and f"# expect: {obj['metadata']['name']} " in path.read_text():
        assert path.parent.name in got


# --- Services ------------------------------------------------------------------------------------------------

async def test_a_node_port_service_is_denied_naming_its_port_and_a_random_one_says_so(
        no_resolve_policy: Path) -> None:
    async with running(Settings(policy=str(no_resolve_policy))) as hook:
        named = await hook.answer(review(node_port()))
        random = await hook.answer(review(service("any", type="NodePort")))
        for allowed in (service("plain"), service("lb", type="LoadBalancer"), service("headless", clusterIP="None"),
                        {**service("db", type="ExternalName", externalName="db.example.com"), "spec": {
                            "type": "ExternalName", "externalName": "db.example.com"}}):
            assert (await hook.answer(review(allowed)))["allowed"], allowed["metadata"]["name"]
    assert not named["allowed"] and named["status"]["code"] == 403
    assert "[no-host-port] Service 'legacy' is of type NodePort: nodePort 30080" in named["status"]["message"]
    assert "allocates at random" in random["status"]["message"]
    lines = [a for a in hook.audit() if a["kind"] == "Service"]
    assert [a["result"] for a in lines] == ["denied", "denied", "allowed", "allowed", "allowed", "allowed"]


async def test_an_update_that_changes_no_type_node_port_or_external_ip_is_allowed_unevaluated(
        no_resolve_policy: Path) -> None:
    old = node_port()
    relabelled = copy.deepcopy(old)
    relabelled["metadata"]["labels"] = {"team": "web"}
    relabelled["spec"]["ports"][0]["targetPort"] = 9090
    relabelled["spec"]["selector"] = {"app": "web-v2"}
    async with running(Settings(policy=str(no_resolve_policy))) as hook:
        answer = await hook.answer(review(relabelled, operation="UPDATE", old=old))
    assert answer["allowed"] and "status" not in answer
    (line,) = hook.audit()
    assert line["result"] == "skipped" and "type, node ports and externalIPs are unchanged" in line["skipped"]


@pytest.mark.parametrize(("change", "allowed"), [
    (lambda s: s["spec"].update(externalIPs=["203.0.113.9"]), False),
    (lambda s: s["spec"]["ports"][0].update(nodePort=30081), False),
    (lambda s: s["spec"]["ports"].append({"port": 443, "targetPort": 8443}), False),
    (lambda s: s["spec"].update(type="LoadBalancer"), True),
    (lambda s: (s["spec"].update(type="ClusterIP"), s["spec"]["ports"][0].pop("nodePort")), True),
], ids=["adds-external-ips", "moves-the-node-port", "adds-a-port", "becomes-a-load-balancer", "becomes-cluster-ip"])
async def test_an_update_of_the_type_node_ports_or_external_ips_is_evaluated(
        change: Any, allowed: bool, no_resolve_policy: Path) -> None:
    old = node_port()
    new = copy.deepcopy(old)
    change(new)
    async with running(Settings(policy=str(no_resolve_policy))) as hook:
        answer = await hook.answer(review(new, operation="UPDATE", old=old))
    assert answer["allowed"] is allowed, answer
    (line,) = hook.audit()
    assert line["result"] == ("allowed" if allowed else "denied")


async def test_adding_external_ips_to_a_cluster_ip_service_is_denied_for_them_alone(no_resolve_policy: Path) -> None:
    old = service()
    new = copy.deepcopy(old)
    new["spec"]["externalIPs"] = ["10.0.0.5"]
    async with running(Settings(policy=str(no_resolve_policy))) as hook:
        answer = await hook.answer(review(new, operation="UPDATE", old=old))
    message = answer["status"]["message"]
    assert "externalIPs 10.0.0.5" in message and "CVE-2020-8554" in message and "NodePort" not in message


def test_only_no_host_port_runs_on_a_service_under_a_policy_that_turns_every_rule_on() -> None:
    from admission.policy import engine
    from admission.policy.config import load_policy

    policy = load_policy(str(Path(__file__).resolve().parents[2] / "admission" / "policies" / "strict.yaml"))
    (workload,) = kubernetes.workloads_from_object(node_port(), file="f", namespace="default")
    report = engine.evaluate([workload], policy)
    assert [e.rules for e in report.evaluated] == [("no-host-port",)]
    assert {f.rule for f in report.findings} == {"no-host-port"}


# --- service-account-token -------------------------------------------------------------------------------------

TOKEN_ON = "images: {resolve: false}\nrules: {service-account-token: deny}\n"


async def test_a_pod_the_plugin_gave_a_token_volume_is_denied_naming_it_and_one_without_is_admitted(
        tmp_path: Path) -> None:
    policy = write_policy(tmp_path, TOKEN_ON)
    async with running(Settings(policy=str(policy))) as hook:
        with_token = await hook.answer(review(as_admitted(pod("web"))))
        # the ServiceAccount says automountServiceAccountToken: false: the plugin added no volume
        without = await hook.answer(review(pod("quiet")))
    assert not with_token["allowed"]
    assert "added volume kube-api-access-q7x2z" in with_token["status"]["message"]
    assert without["allowed"], without


async def test_a_template_that_leaves_the_token_to_its_service_account_says_the_account_was_not_read(
        tmp_path: Path) -> None:
    policy = write_policy(tmp_path, TOKEN_ON)
    quiet = deployment("quiet")
    quiet["spec"]["template"]["spec"]["automountServiceAccountToken"] = False
    async with running(Settings(policy=str(policy))) as hook:
        left = await hook.answer(review(deployment("web")))
        said = await hook.answer(review(quiet))
    assert not left["allowed"]
    assert "ServiceAccount 'default' unless that account turns it off; its ServiceAccount was not read " \
           "(ADMISSION_SERVICE_ACCOUNT_READS is off)" in left["status"]["message"]
    assert said["allowed"]


async def test_a_debug_container_is_not_refused_for_the_pods_token(tmp_path: Path) -> None:
    policy = write_policy(tmp_path, TOKEN_ON)
    old = as_admitted(pod("web"))
    new = copy.deepcopy(old)
    new["spec"]["ephemeralContainers"] = [{"name": "debugger", "image": "registry.example/debug:1.0",
                                           "securityContext": {"runAsNonRoot": True, "runAsUser": 10001}}]
    async with running(Settings(policy=str(policy))) as hook:
        answer = await hook.answer(review(new, operation="UPDATE", old=old, sub="ephemeralcontainers"))
    assert "service-account-token" not in json.dumps(answer)
