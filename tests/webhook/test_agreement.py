"""The CLI and the webhook agree: every pod-bearing object and Service of the project's manifests (tests/fixtures/k8s) and of the
public corpus's k8s folder (skipped without it), wrapped in a CREATE review, is denied by the webhook for exactly
the rules `admission-cli check` denies it for (both with images.resolve false, since no public registry is reachable
here), and an object the CLI cannot read (exit 2) is refused with code 400. For the rules of issue 27 (a tag that
names no version, a writable root filesystem, a livenessProbe that is the readinessProbe) the per-rule fixtures'
objects are compared container by container, warnings included, through the webhook's audit line."""

from __future__ import annotations

import contextlib
import io
import json
from pathlib import Path
from typing import Any

import pytest
import yaml

from admission.cli.main import main
from admission.sources import kubernetes
from admission.webhook.settings import Settings
from tests.corpus import corpus, corpus_dir
from tests.webhook.conftest import OWNED_MANIFESTS, review, rules_in, running, write_policy

pytestmark = pytest.mark.anyio


def _objects(folder: Path) -> list[tuple[str, dict[str, Any]]]:
    """(id, object) for every pod-bearing object and Service, List items split out, as the API server would send each."""
    out = []
    for path in sorted(folder.iterdir()):
        if path.suffix not in (".yaml", ".yml", ".json"):
            continue
        docs = list(yaml.safe_load_all(path.read_text()))  # YAML 1.1, as kubectl reads manifests
        items: list[Any] = []
        for doc in docs:
            if isinstance(doc, dict) and str(doc.get("kind", "")).endswith("List") and isinstance(doc.get("items"), list):
                items.extend(doc["items"])
            elif doc is not None:
                items.append(doc)
        for index, item in enumerate(items):
            if kubernetes.is_kubernetes(item) and kubernetes.is_evaluated(item["apiVersion"], item["kind"]):
                out.append((f"{path.name}#{index}", item))
    return out


def test_the_owned_manifests_have_pod_bearing_objects_to_compare() -> None:
    assert len(_objects(OWNED_MANIFESTS)) >= 30


@corpus("k8s")
def test_the_corpus_has_pod_bearing_objects_to_compare() -> None:
    assert len(_objects(corpus_dir("k8s"))) >= 50


def _cli(obj: dict[str, Any], folder: Path, policy: Path) -> tuple[int, set[str]]:
    target = folder / "object.json"
    target.write_text(json.dumps(obj))
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        code = main(["check", str(target), "--format", "json", "--policy", str(policy)])
    report = json.loads(out.getvalue())
    return code, {f["rule"] for f in report["findings"] if f["severity"] == "deny" and not f["suppressed"]}


async def test_webhook_denies_for_the_same_rules_as_the_cli_on_every_owned_object(tmp_path: Path) -> None:
    disagreements = await _disagreements(_objects(OWNED_MANIFESTS), tmp_path)
    assert not disagreements, disagreements


@corpus("k8s")
async def test_webhook_denies_for_the_same_rules_as_the_cli_on_every_corpus_object(tmp_path: Path) -> None:
    disagreements = await _disagreements(_objects(corpus_dir("k8s")), tmp_path)
    assert not disagreements, disagreements


async def _disagreements(objects: list[tuple[str, dict[str, Any]]], tmp_path: Path) -> list[tuple[Any, ...]]:
    policy = write_policy(tmp_path / "p")
    disagreements: list[tuple[Any, ...]] = []
    async with running(Settings(policy=str(policy))) as hook:
        for ident, obj in objects:
            code, cli_rules = _cli(obj, tmp_path, policy)
            got = await hook.answer(review(obj, namespace=obj.get("metadata", {}).get("namespace") or "default"))
            if code == 2:
                verdict = got["allowed"] is False and got["status"]["code"] == 400
                if not verdict:
                    disagreements.append((ident, "cli: input error", got))
                continue
            hook_rules = rules_in(got["status"]["message"]) if not got["allowed"] else set()
            if hook_rules != cli_rules or (code == 1) != (not got["allowed"]):
                disagreements.append((ident, sorted(cli_rules), sorted(hook_rules)))
    return disagreements


ISSUE_27_RULES = ("image-tag-pinned", "read-only-root-filesystem", "healthcheck")
RULE_FIXTURES = Path(__file__).resolve().parents[1] / "rules"


def _fixture_objects() -> list[tuple[str, dict[str, Any]]]:
    out = []
    for rule in ISSUE_27_RULES:
        for path in sorted((RULE_FIXTURES / rule).glob("*__k8s-*.yaml")):
            for ident, obj in _objects_of_file(path):
                out.append((f"{rule}/{ident}", obj))
    return out


def _objects_of_file(path: Path) -> list[tuple[str, dict[str, Any]]]:
    return [(ident, obj) for ident, obj in _objects(path.parent) if ident.split("#")[0] == path.name]


async def test_webhook_finds_what_the_cli_finds_per_container_for_the_issue_27_rules(tmp_path: Path) -> None:
    objects = _fixture_objects()
    assert len(objects) >= 10
    policy = write_policy(tmp_path / "p")
    disagreements = []
    async with running(Settings(policy=str(policy))) as hook:
        for ident, obj in objects:
            target = tmp_path / "object.json"
            target.write_text(json.dumps(obj))
            out = io.StringIO()
            with contextlib.redirect_stdout(out):
                main(["check", str(target), "--format", "json", "--policy", str(policy)])
            cli = {(f["rule"], f["container"], f["severity"]) for f in json.loads(out.getvalue())["findings"]
                   if f["rule"] in ISSUE_27_RULES and not f["suppressed"]}
            before = len(hook.audit())
            await hook.answer(review(obj, namespace=obj.get("metadata", {}).get("namespace") or "default"))
            (line,) = hook.audit()[before:]
            webhook = {(r["rule"], c, r["severity"]) for r in line["rules"] if r["rule"] in ISSUE_27_RULES
                       for c in r["containers"]}
            if cli != webhook:
                disagreements.append((ident, sorted(cli), sorted(webhook)))
            assert cli or ident.split("/")[1].startswith("pass__"), f"{ident}: a fail fixture's object found nothing"
    assert not disagreements, disagreements
