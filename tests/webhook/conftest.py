"""Webhook test helpers: apps driven through httpx's ASGITransport (the app's own lifespan runs), reviews built
from real objects, and where the AdmissionReviews and manifests to send are: the project's own (tests/fixtures) and
the public corpus's (tests/corpus.py; absent in a plain checkout)."""

from __future__ import annotations

import copy
import io
import json
import uuid
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import httpx
import pytest

from admission.webhook.app import create_app
from admission.webhook.settings import Settings

ROOT = Path(__file__).resolve().parents[2]
OWNED_REVIEWS = ROOT / "tests" / "fixtures" / "admission"
OWNED_MANIFESTS = ROOT / "tests" / "fixtures" / "k8s"
DEMO_REVIEWS = ROOT / "examples" / "webhook-demo"

NO_RESOLVE = "images: {resolve: false}\n"


def write_policy(folder: Path, text: str = NO_RESOLVE, name: str = "policy.yaml") -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / name
    path.write_text(text)
    return path


class Hook:
    """A running app (lifespan started) with an httpx client and its audit lines."""

    def __init__(self, app: Any, client: httpx.AsyncClient, audit: io.StringIO) -> None:
        self.app = app
        self.client = client
        self._audit = audit

    @property
    def state(self) -> Any:
        return self.app.state.webhook

    async def post(self, body: Any, *, params: dict[str, str] | None = None, raw: bytes | None = None) -> httpx.Response:
        content = raw if raw is not None else json.dumps(body).encode()
        return await self.client.post("/validate", content=content, params=params,
                                      headers={"Content-Type": "application/json"})

    async def answer(self, body: Any, **kwargs: Any) -> dict[str, Any]:
        response = await self.post(body, **kwargs)
        assert response.status_code == 200, response.text
        return response.json()["response"]

    async def mutate(self, body: Any, *, params: dict[str, str] | None = None) -> dict[str, Any]:
        """POST /mutate: the answer's `response`, with its JSONPatch decoded under `ops` (absent: no patch)."""
        import base64

        response = await self.client.post("/mutate", content=json.dumps(body).encode(), params=params,
                                          headers={"Content-Type": "application/json"})
        assert response.status_code == 200, response.text
        answer = response.json()["response"]
        if "patch" in answer:
            assert answer["patchType"] == "JSONPatch"
            answer["ops"] = json.loads(base64.b64decode(answer["patch"]))
        return answer

    def audit(self) -> list[dict[str, Any]]:
        return [json.loads(line) for line in self._audit.getvalue().splitlines() if line.strip()]


@asynccontextmanager
async def running(settings: Settings | None = None, **kwargs: Any) -> AsyncIterator[Hook]:
    audit = io.StringIO()
    app = create_app(settings, audit_stream=audit, **kwargs)
    async with app.router.lifespan_context(app):
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://webhook") as client:
            yield Hook(app, client, audit)


@pytest.fixture()
def no_resolve_policy(tmp_path: Path) -> Path:
    return write_policy(tmp_path / "policy")


def review(obj: dict[str, Any] | None, *, operation: str = "CREATE", old: dict[str, Any] | None = None,
           version: str = "admission.k8s.io/v1", uid: str | None = None, sub: str | None = None,
           namespace: str | None = "default", dry_run: bool = False, kind: dict[str, str] | None = None,
           user: str = "alice") -> dict[str, Any]:
    """An AdmissionReview as the API server sends it (CreateV1AdmissionReview fills every field)."""
    source = obj if obj is not None else old
    if kind is None and source is not None:
        group, _, version_ = source["apiVersion"].rpartition("/")
        kind = {"group": group, "version": version_, "kind": source["kind"]}
    request: dict[str, Any] = {
        "uid": uid if uid is not None else str(uuid.uuid4()),
        "kind": kind, "resource": None, "subResource": sub, "requestKind": kind,
        "name": (source or {}).get("metadata", {}).get("name", ""), "namespace": namespace,
        "operation": operation, "userInfo": {"username": user, "groups": ["system:authenticated"]},
        "object": obj, "oldObject": old, "dryRun": dry_run, "options": None,
    }
    return {"apiVersion": version, "kind": "AdmissionReview", "request": request}


def pod(name: str = "web", *, containers: list[dict[str, Any]] | None = None, **spec: Any) -> dict[str, Any]:
    return {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": name, "namespace": "default", "labels": {"app": name}},
            "spec": {"containers": containers if containers is not None else [good_container()], **spec}}


def deployment(name: str = "web", *, containers: list[dict[str, Any]] | None = None, replicas: int = 2) -> dict[str, Any]:
    return {"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": name, "namespace": "default"},
            "spec": {"replicas": replicas, "selector": {"matchLabels": {"app": name}},
                     "template": {"metadata": {"labels": {"app": name}},
                                  "spec": {"containers": containers if containers is not None else [good_container()]}}}}


def good_container(name: str = "app", image: str = "registry.example/app:1.2.3") -> dict[str, Any]:
    return {"name": name, "image": image,
            "securityContext": {"runAsNonRoot": True, "runAsUser": 10001, "readOnlyRootFilesystem": True},
            "resources": {"limits": {"cpu": "500m", "memory": "256Mi"}},
            "livenessProbe": {"httpGet": {"path": "/livez", "port": 8080}},
            "readinessProbe": {"httpGet": {"path": "/readyz", "port": 8080}}}


def bad_container(name: str = "app", image: str = "nginx:latest") -> dict[str, Any]:
    return {"name": name, "image": image, "securityContext": {"runAsUser": 0}}


def mutate(obj: dict[str, Any], change: Callable[[dict[str, Any]], None]) -> dict[str, Any]:
    out = copy.deepcopy(obj)
    change(out)
    return out


def rules_in(message: str) -> set[str]:
    import re

    return set(re.findall(r"\[([a-z][a-z0-9-]+)\]", message))


@pytest.fixture()
def anyio_backend() -> str:
    return "asyncio"


# Real registries and the fault server (tests/images): fixtures imported so webhook tests can use them.
from tests.images.conftest import faults, htpasswd_registry, layout, registry  # noqa: E402,F401
