"""What the audit lists and under which object each thing is reported; and which image each container really runs.

- The pod-bearing kinds, in the order the audit lists them: Pods first (their `status` says which image digest each
  container runs), then ReplicaSets and Jobs (which pass their Pods' digests up to a Deployment or CronJob), then
  the top owners; then Services (no-host-port, issue 27), each reported itself.
- An object is reported under its top owner: one whose controller (the ownerReference with `controller: true`) is a
  pod-bearing kind the audit lists is left to that controller, so a Deployment is reported once and its ReplicaSets
  and Pods are not repeated. An object whose controller is anything else (an operator's custom resource, an Argo
  Rollout) is the top of what the audit can judge, and is reported itself.
- `status.containerStatuses[].imageID` is what runs: a `repo@sha256:...` manifest digest is looked up instead of the
  spec's tag. A bare `sha256:...` (containerd's image config digest, docker's image ID) names no repository to look
  it up in, so the spec's reference is used, as it is for containers that have not started.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from admission.kube.api import Resource
from admission.reference import parse as parse_reference

__all__ = ["LISTED", "OWNED_BY", "Digests", "controller_of", "reported", "running_digests"]

PODS = Resource("", "v1", "pods", "Pod")
REPLICASETS = Resource("apps", "v1", "replicasets", "ReplicaSet")
JOBS = Resource("batch", "v1", "jobs", "Job")
DEPLOYMENTS = Resource("apps", "v1", "deployments", "Deployment")
STATEFULSETS = Resource("apps", "v1", "statefulsets", "StatefulSet")
DAEMONSETS = Resource("apps", "v1", "daemonsets", "DaemonSet")
CRONJOBS = Resource("batch", "v1", "cronjobs", "CronJob")
REPLICATIONCONTROLLERS = Resource("", "v1", "replicationcontrollers", "ReplicationController")
SERVICES = Resource("", "v1", "services", "Service")

# The listing order: digests flow from Pods up through ReplicaSets and Jobs to the top owners.
LISTED: tuple[Resource, ...] = (PODS, REPLICASETS, JOBS, DEPLOYMENTS, STATEFULSETS, DAEMONSETS, CRONJOBS,
                                REPLICATIONCONTROLLERS, SERVICES)
_GROUP_KINDS = frozenset((r.group, r.kind) for r in LISTED)
# For each kind, the controllers that report it (so it is not reported itself).
OWNED_BY: Mapping[str, frozenset[str]] = {
    "Pod": frozenset(("ReplicaSet", "StatefulSet", "DaemonSet", "Job", "ReplicationController")),
    "ReplicaSet": frozenset(("Deployment",)),
    "Job": frozenset(("CronJob",)),
}
_STATUS_LISTS = ("initContainerStatuses", "containerStatuses", "ephemeralContainerStatuses")


def controller_of(obj: Mapping[str, Any]) -> tuple[str, str, str] | None:
    """(group, kind, uid) of the object's controller, or None."""
    meta = obj.get("metadata")
    refs = meta.get("ownerReferences") if isinstance(meta, dict) else None
    if not isinstance(refs, list):
        return None
    for ref in refs:
        if isinstance(ref, dict) and ref.get("controller") is True:
            api_version = ref.get("apiVersion")
            group = api_version.partition("/")[0] if isinstance(api_version, str) and "/" in api_version else ""
            return group, str(ref.get("kind") or ""), str(ref.get("uid") or "")
    return None


def reported(kind: str, obj: Mapping[str, Any]) -> bool:
    """Whether the object is reported itself: its controller is not a pod-bearing kind the audit lists."""
    owner = controller_of(obj)
    if owner is None:
        return True
    group, owner_kind, _ = owner
    return not ((group, owner_kind) in _GROUP_KINDS and owner_kind in OWNED_BY.get(kind, ()))


def manifest_digest(image_id: object) -> str | None:
    """`repo@sha256:...` from a container status's imageID when it names a manifest digest, else None.

    CRI-O and containerd report `docker.io/library/nginx@sha256:...`; dockershim and cri-dockerd prefix
    `docker-pullable://`. A bare `sha256:...` (or `docker://sha256:...`) is the image's config digest: no
    repository to fetch it from, so None.
    """
    if not isinstance(image_id, str) or "@" not in image_id:
        return None
    text = image_id.split("://", 1)[1] if "://" in image_id else image_id
    try:
        ref = parse_reference(text)
    except ValueError:
        return None
    return text if ref.digest else None


def running_digests(pod: Mapping[str, Any]) -> dict[str, str]:
    """container name -> the manifest digest reference it runs, for the containers whose status says one."""
    status = pod.get("status")
    if not isinstance(status, dict):
        return {}
    out: dict[str, str] = {}
    for key in _STATUS_LISTS:
        entries = status.get(key)
        if not isinstance(entries, list):
            continue
        for entry in entries:
            if isinstance(entry, dict) and isinstance(entry.get("name"), str):
                digest = manifest_digest(entry.get("imageID"))
                if digest:
                    out[entry["name"]] = digest
    return out


class Digests:
    """Running digests by the uid of the object they are reported under: container name -> digest references.

    Held between the Pods' list and their owners' (a few short strings per owner, interned, so 5,000 owners of
    one image cost a few hundred kilobytes); each entry is taken when its owner is evaluated.
    """

    def __init__(self) -> None:
        self._by_owner: dict[str, dict[str, list[str]]] = {}
        self._strings: dict[str, str] = {}

    def __len__(self) -> int:
        return len(self._by_owner)

    def _intern(self, text: str) -> str:
        return self._strings.setdefault(text, text)

    def add(self, owner_uid: str, running: Mapping[str, str]) -> None:
        if not owner_uid or not running:
            return
        entry = self._by_owner.setdefault(owner_uid, {})
        for container, digest in running.items():
            seen = entry.setdefault(self._intern(container), [])
            digest = self._intern(digest)
            if digest not in seen:
                seen.append(digest)

    def move(self, from_uid: str, to_uid: str) -> None:
        """A ReplicaSet's (a Job's) digests go up to its Deployment (CronJob)."""
        entry = self._by_owner.pop(from_uid, None)
        if entry:
            for container, digests in entry.items():
                seen = self._by_owner.setdefault(to_uid, {}).setdefault(container, [])
                seen.extend(d for d in digests if d not in seen)

    def take(self, uid: str) -> dict[str, list[str]]:
        return self._by_owner.pop(uid, {})


def uid_of(obj: Mapping[str, Any]) -> str:
    meta = obj.get("metadata")
    uid = meta.get("uid") if isinstance(meta, dict) else None
    return uid if isinstance(uid, str) else ""


def namespaces_of(objects: Iterable[Mapping[str, Any]]) -> set[str]:
    out = set()
    for obj in objects:
        meta = obj.get("metadata")
        if isinstance(meta, dict) and isinstance(meta.get("namespace"), str):
            out.add(meta["namespace"])
    return out
