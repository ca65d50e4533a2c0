"""POST /mutate (architecture §3): each image `name:tag` of what a request adds becomes `name:tag@sha256:<digest>`, the
digest its tag names at admission, so what the validating webhook judges (and `images.verify` verifies) is what the
kubelet pulls later, wherever the tag has moved by then.

Pure, like review.py: which references a request may have pinned (`target`, `judge`), the JSONPatch and the
annotation (`patch`), and the record that lets the validating webhook of the same process say what was pinned
(`Pins`). app.py looks the digests up, through the same resolver, gates, credentials and cache as validation.

- What is considered: a Pod CREATE (containers, init and ephemeral containers), and on the `ephemeralcontainers`
  subresource only the ephemeral containers absent from `oldObject` (the API server refuses any change to an existing
  one). Controllers' pod templates only with `templates` (ADMISSION_MUTATION_TEMPLATES), on CREATE and on an UPDATE
  that changes the pod template, never a Job's UPDATE (its template is immutable) and never an object a controller owns
  (a ReplicaSet of a Deployment, a Job of a CronJob): its template must stay its owner's, or the Deployment controller
  no longer finds its ReplicaSet and a manual run no longer equals its CronJob (its Pods are pinned instead).
- What is never pinned: a reference that already has a digest, one whose tag `image-tag-pinned` refuses apart from
  `require_digest` (a digest pins, so `nginx:latest@sha256:...` would pass: it must stay denied as written), an
  invalid one, one on a registry in `skip_registries`, and one whose lookup failed or missed the deadline (the
  validating webhook then decides under `images.on_error`).
Hand-written: the patch is a few `replace`/`add` operations at pointers already known (a JSON-patch library would
diff two whole documents to find them), and `Pins` is an OrderedDict with a TTL (no cache library for ten lines).
"""

from __future__ import annotations

import base64
import collections
import json
import time
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from admission import reference
from admission.errors import RegistryError
from admission.images.enrich import failure_reason
from admission.kube.jobs import cronjob_ref
from admission.policy.rules.images import tag_refusal
from admission.sources import kubernetes
from admission.webhook.review import EPHEMERAL, AdmissionRequest, dig, kind_of

__all__ = ["ANNOTATION", "Mutation", "Pins", "Site", "Target", "judge", "not_resolved", "patch", "skip_set", "target"]

# On a Pod CREATE that pins something: JSON of container name -> the reference as written. Informational only: anyone
# who can create a Pod can write it, so nothing reads it back as evidence.
ANNOTATION = "admission.policy/original-images"
_LISTS = ("initContainers", "containers", "ephemeralContainers")
# Per reference, as admission_mutations_total{result} counts them.
MUTATED, ALREADY_PINNED, SKIPPED, UNRESOLVED = "mutated", "already-pinned", "skipped", "unresolved"
_GATE_REASONS = frozenset(("not-allowed", "address-guard", "blocked"))  # enrich.failure_reason's refusals


@dataclass(frozen=True, slots=True)
class Site:
    """One container's image: where it is (a JSON pointer) and what it says."""

    container: str
    pointer: str
    image: str


@dataclass(frozen=True, slots=True)
class Target:
    """What a request may have pinned: its image sites, and where the annotation goes (None: nowhere, on the
    `ephemeralcontainers` subresource, whose metadata changes the API server drops)."""

    kind: str
    namespace: str
    name: str  # metadata.name, else generateName (a controller's Pod has no name yet when it is mutated)
    sites: tuple[Site, ...]
    metadata: tuple[str, ...] | None  # path of the metadata the annotation goes into
    containers: frozenset[str]  # every container name of the pod spec (annotation entries of others are dropped)


@dataclass(slots=True)
class Mutation:
    """The answer to one /mutate request and what its audit line says."""

    result: str  # mutated | unchanged | skipped | invalid
    kind: str = ""
    namespace: str = ""
    name: str = ""
    patch: list[dict[str, Any]] = field(default_factory=list)
    pinned: list[dict[str, str]] = field(default_factory=list)  # container, from, to
    left: list[dict[str, str]] = field(default_factory=list)  # container, image, result, reason
    skipped: str | None = None  # why nothing was considered

    def encoded_patch(self) -> str | None:
        return base64.b64encode(json.dumps(self.patch, separators=(",", ":")).encode()).decode() if self.patch else None

    def counts(self) -> collections.Counter[str]:
        """Per reference: mutated, already-pinned, skipped, unresolved (admission_mutations_total)."""
        tally = collections.Counter(entry["result"] for entry in self.left)
        tally[MUTATED] += len(self.pinned)
        return tally


def _pointer(path: Iterable[str | int]) -> str:
    return "".join("/" + str(p).replace("~", "~0").replace("/", "~1") for p in path)


def _owned(metadata: Any, kind: str) -> bool:
    """Whether a controller owns the object (its template must stay the owner's), or a CronJob the Job."""
    if not isinstance(metadata, dict):
        return False
    refs = metadata.get("ownerReferences")
    if isinstance(refs, list) and any(isinstance(r, dict) and r.get("controller") is True for r in refs):
        return True
    return kind == "Job" and cronjob_ref(metadata) is not None


def _refused(kind: str, sub: str, operation: str, obj: dict[str, Any], old: dict[str, Any] | None, metadata: Any,
             spec_path: tuple[str, ...], *, templates: bool) -> str | None:
    """Why a request other than an ephemeral-containers update is not considered, or None when it is."""
    if sub:
        return f"subresource {sub} is not mutated"
    if kind == "Pod":
        return None if operation == "CREATE" else \
            f"a Pod {operation or '(no operation)'} is not mutated (only CREATE and ephemeral containers)"
    if not templates:
        return f"{kind} is a pod template: not mutated (ADMISSION_MUTATION_TEMPLATES is off; its Pods are)"
    if _owned(metadata, kind):
        return f"{kind} is owned by a controller: its template stays its owner's (its Pods are mutated)"
    if operation == "UPDATE" and old is not None:
        if kind == "Job":
            return "a Job's pod template cannot change after it is created"
        if dig(obj, spec_path[:-1]) == dig(old, spec_path[:-1]):
            return "the pod template is unchanged"
        return None
    return None if operation in ("CREATE", "UPDATE") else f"operation {operation or '(none)'} is not mutated"


def target(request: AdmissionRequest, *, templates: bool) -> Target | str:
    """What the request may have pinned, or why nothing is considered."""
    found = kind_of(request)
    if found is None:
        return "neither request.kind nor the object names a kind"
    api_version, kind = found
    if not kubernetes.is_pod_bearing(api_version, kind):
        return f"kind {kind} carries no pod spec"
    obj, old, sub, operation = request.object, request.oldObject, request.subResource or "", request.operation
    if not isinstance(obj, dict):
        return f"the {operation or 'request'} carries no object"
    metadata = obj.get("metadata")
    if isinstance(metadata, dict) and metadata.get("deletionTimestamp"):
        return "the object is being deleted"
    spec_path = kubernetes.POD_SPEC_PATHS[kind]
    ephemeral = kind == "Pod" and sub == EPHEMERAL and operation == "UPDATE"
    why = None if ephemeral else _refused(kind, sub, operation, obj, old, metadata, spec_path, templates=templates)
    if why is not None:
        return why
    spec = dig(obj, spec_path)
    if not isinstance(spec, dict):
        return "the object has no pod spec"
    before: set[str] = set()
    if ephemeral:
        items = dig(old, spec_path + ("ephemeralContainers",)) if old is not None else None
        before = {c["name"] for c in items or () if isinstance(c, dict) and isinstance(c.get("name"), str)}
    sites: list[Site] = []
    names: set[str] = set()
    for field_name in _LISTS:
        items = spec.get(field_name)
        if not isinstance(items, list):
            continue
        for index, item in enumerate(items):
            if not isinstance(item, dict) or not isinstance(item.get("name"), str):
                continue
            names.add(item["name"])
            if ephemeral and (field_name != "ephemeralContainers" or item["name"] in before):
                continue
            if isinstance(item.get("image"), str) and item["image"]:
                sites.append(Site(item["name"], _pointer((*spec_path, field_name, index, "image")), item["image"]))
    if ephemeral and not sites:
        return "the ephemeral containers update adds no container"
    meta = metadata if isinstance(metadata, dict) else {}
    name = meta.get("name") or meta.get("generateName") or request.name or ""
    return Target(kind=kind, namespace=request.namespace or str(meta.get("namespace") or ""), name=str(name),
                  sites=tuple(sites), metadata=None if ephemeral else (*spec_path[:-1], "metadata"),
                  containers=frozenset(names))


def skip_set(registries: str) -> frozenset[str]:
    """ADMISSION_MUTATION_SKIP_REGISTRIES (comma-separated) as registry identities (`index.docker.io` is docker.io)."""
    return frozenset(reference.registry_identity(r) for r in registries.split(",") if r.strip())


def judge(image: str, *, params: Mapping[str, Any], skip: frozenset[str]) -> tuple[str, str] | None:
    """(result, reason) for a reference left as written, or None when its tag's digest is to be looked up. `params`:
    the policy's image-tag-pinned parameters, whatever the rule's severity."""
    try:
        parsed = reference.parse_normalized_named(image)
    except reference.ReferenceError:
        return SKIPPED, "not a valid image reference"
    if parsed.digest is not None:
        return ALREADY_PINNED, ""
    refused = tag_refusal(parsed.tag, params)
    if refused is not None:
        return SKIPPED, f"image-tag-pinned refuses it ({refused}): a digest would make it pass"
    if reference.registry_host(parsed) in skip:
        return SKIPPED, "its registry is in ADMISSION_MUTATION_SKIP_REGISTRIES"
    return None


def not_resolved(error: RegistryError) -> tuple[str, str]:
    """(result, reason) of a reference whose lookup failed: skipped when the registry gates refused it (the policy's
    answer: restrict_to_allowed, the address guard, a blocked redirect), unresolved otherwise (deadline included)."""
    text = f"{error.reason}: {error}"
    return (SKIPPED if failure_reason(text) in _GATE_REASONS else UNRESOLVED), text


def _recorded(value: Any) -> dict[str, str]:
    """The annotation already there, when it is what we write (a JSON object of strings); else nothing of it."""
    if not isinstance(value, str):
        return {}
    try:
        parsed = json.loads(value)
    except ValueError:
        return {}
    if not isinstance(parsed, dict):
        return {}
    return {k: v for k, v in parsed.items() if isinstance(k, str) and isinstance(v, str)}


def patch(obj: Mapping[str, Any], found: Target, pinned: Sequence[tuple[Site, str]]) -> list[dict[str, Any]]:
    """The JSONPatch: each pinned site's `image`, and (when the target takes it) the annotation, merged into the value
    already there: a reinvocation after a sidecar injector keeps the first call's entries. A container pinned now
    replaces its entry; entries of containers the pod spec no longer has are dropped."""
    ops: list[dict[str, Any]] = [{"op": "replace", "path": site.pointer, "value": to} for site, to in pinned]
    if not pinned or found.metadata is None:
        return ops
    metadata = dig(obj, found.metadata)
    annotations = metadata.get("annotations") if isinstance(metadata, dict) else None
    merged = {k: v for k, v in _recorded((annotations or {}).get(ANNOTATION) if isinstance(annotations, dict)
                                          else None).items() if k in found.containers}
    merged.update({site.container: site.image for site, _ in pinned})
    value = json.dumps(dict(sorted(merged.items())), separators=(",", ":"))
    if not isinstance(metadata, dict):
        ops.append({"op": "add", "path": _pointer(found.metadata), "value": {"annotations": {ANNOTATION: value}}})
    elif not isinstance(annotations, dict):
        ops.append({"op": "add", "path": _pointer((*found.metadata, "annotations")), "value": {ANNOTATION: value}})
    else:
        ops.append({"op": "add", "path": _pointer((*found.metadata, "annotations", ANNOTATION)), "value": value})
    return ops


class Pins:
    """What this process pinned in the last `ttl` seconds, so its validating webhook can say in its audit line that a
    reference was mutated, and from what. Keyed by namespace, the Pod's name (or generateName: a controller's Pod has
    no name yet when it is mutated), container and the pinned reference. Another replica or worker knows only its own
    pins; the annotation is never read back as evidence (anyone can write it)."""

    def __init__(self, *, ttl: float = 60.0, size: int = 4096) -> None:
        self.ttl = ttl
        self.size = size
        self._entries: collections.OrderedDict[tuple[str, str, str, str], tuple[str, float]] = \
            collections.OrderedDict()

    def __len__(self) -> int:
        return len(self._entries)

    def record(self, namespace: str, name: str, container: str, pinned: str, original: str) -> None:
        key = (namespace, name, container, pinned)
        self._entries.pop(key, None)
        self._entries[key] = (original, time.monotonic() + self.ttl)
        while len(self._entries) > self.size:
            self._entries.popitem(last=False)

    def original(self, namespace: str, names: Iterable[str], container: str, image: str) -> str | None:
        """The reference `image` was pinned from, when this process pinned it for a Pod of one of `names`."""
        now = time.monotonic()
        for name in names:
            entry = self._entries.get((namespace, name, container, image))
            if entry is not None and entry[1] > now:
                return entry[0]
        return None
