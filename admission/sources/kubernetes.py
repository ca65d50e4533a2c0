"""Kubernetes manifests -> Workloads: Pod, PodTemplate, the pod-bearing controllers, CronJob, Service and `List`.

Hand-written rather than decoded with the kubernetes client's models: those models import slowly, keep
no line numbers and accept wrong shapes silently; here only the fields the rules read are type-checked.
"""

from __future__ import annotations

import json
from collections.abc import Iterator, Mapping
from typing import Any

from admission.errors import InputError
from admission.findings import Problem
from admission.model import (
    AccountToken,
    Container,
    ContainerKind,
    EnvVar,
    ExemptionClaim,
    HostMount,
    OwnerRef,
    Located,
    Origin,
    Port,
    Probe,
    SecurityContext,
    ServiceSpec,
    Setting,
    Workload,
    frozen,
)
from admission.yamlload import Document, YMap, YSeq, iter_documents, load_documents, type_name

__all__ = [
    "EXEMPT_ANNOTATION",
    "EXEMPT_EXPIRES_ANNOTATION",
    "EXEMPT_REASON_ANNOTATION",
    "POD_SPEC_PATHS",
    "KubeResult",
    "is_evaluated",
    "is_kubernetes",
    "is_pod_bearing",
    "is_service",
    "load_text",
    "pod_spec_path",
    "workloads_from_object",
]

_TEMPLATE_SPEC = ("spec", "template", "spec")
MAX_ID = 2147483647  # the API server's range for a uid or gid: 0..math.MaxInt32 (IsValidUserID, IsValidGroupID)
_OS_LABELS = ("kubernetes.io/os", "beta.kubernetes.io/os")  # node labels a nodeSelector picks the node's OS by

POD_SPEC_PATHS: Mapping[str, tuple[str, ...]] = {
    "Pod": ("spec",),
    "PodTemplate": ("template", "spec"),
    "Deployment": _TEMPLATE_SPEC,
    "ReplicaSet": _TEMPLATE_SPEC,
    "StatefulSet": _TEMPLATE_SPEC,
    "DaemonSet": _TEMPLATE_SPEC,
    "Job": _TEMPLATE_SPEC,
    "ReplicationController": _TEMPLATE_SPEC,
    "CronJob": ("spec", "jobTemplate", "spec", "template", "spec"),
}

# API groups that own each pod-bearing kind. A CRD may reuse a kind name with another shape (volcano's
# batch.volcano.sh/v1alpha1 Job); such objects are skipped like any other non-pod kind.
_GROUPS: Mapping[str, frozenset[str]] = {
    "Pod": frozenset(),  # core group: a group-less apiVersion ("v1"), always accepted below
    "PodTemplate": frozenset(),
    "ReplicationController": frozenset(),
    "Deployment": frozenset(("apps", "extensions")),
    "ReplicaSet": frozenset(("apps", "extensions")),
    "DaemonSet": frozenset(("apps", "extensions")),
    "StatefulSet": frozenset(("apps",)),
    "Job": frozenset(("batch",)),
    "CronJob": frozenset(("batch",)),
}

EXEMPT_ANNOTATION = "admission.policy/exempt"
EXEMPT_REASON_ANNOTATION = "admission.policy/exempt-reason"
EXEMPT_EXPIRES_ANNOTATION = "admission.policy/exempt-expires"

_CONTAINER_LISTS: tuple[tuple[str, ContainerKind], ...] = (
    ("initContainers", "init"),
    ("containers", "container"),
    ("ephemeralContainers", "ephemeral"),
)


@frozen
class KubeResult:
    workloads: list[Workload]
    problems: list[Problem]  # one per object that could not be interpreted; the other objects are still evaluated
    documents: int  # non-empty documents seen


def is_kubernetes(doc: object) -> bool:
    """A mapping with string `apiVersion` and `kind`: architecture §2 calls any such document Kubernetes."""
    return isinstance(doc, dict) and isinstance(doc.get("apiVersion"), str) and isinstance(doc.get("kind"), str)


def is_pod_bearing(api_version: str, kind: str) -> bool:
    """Whether apiVersion/kind is one of the built-in kinds that carry a pod spec."""
    groups = _GROUPS.get(kind)
    if groups is None:
        return False
    # A group-less apiVersion ("v1") cannot be a CRD, so `v1` + Deployment is a typo the API server would
    # refuse; it is evaluated as the kind it names (as polaris and checkov do) rather than silently skipped.
    return "/" not in api_version or api_version.partition("/")[0] in groups


def is_service(api_version: str, kind: str) -> bool:
    """A core-group Service (issue 27: no-host-port reads its type, node ports and externalIPs)."""
    return kind == "Service" and "/" not in api_version


def is_evaluated(api_version: str, kind: str) -> bool:
    """Whether an object of apiVersion/kind becomes a Workload: the pod-bearing kinds and Services."""
    return is_pod_bearing(api_version, kind) or is_service(api_version, kind)


def pod_spec_path(kind: str, base_path: str = "") -> str:
    """Dotted path of a kind's pod spec, e.g. `spec.template.spec` (KeyError for a kind without one)."""
    path = ".".join(POD_SPEC_PATHS[kind])
    return f"{base_path}.{path}" if base_path else path


# --- shape helpers ---------------------------------------------------------------------------------

def _join(base: str, key: str) -> str:
    return f"{base}.{key}" if base else key


# Origins of values without a line of their own (webhook JSON), by (file, default line) then path. An Origin is
# immutable, and the webhook reads the same paths of `request.object` on every request: reusing one saves building
# it (issue 15). Bounded: a table is emptied when it grows past _ORIGIN_LIMIT (paths can hold user-chosen keys).
_ORIGINS: dict[tuple[str, int | None], dict[str, Origin]] = {}
_ORIGIN_LIMIT = 2048


class _Walker:
    """Carries the file name and the line to use when a value has no line of its own (webhook JSON, JSON fallback)."""

    __slots__ = ("default_line", "file", "origins")

    def __init__(self, file: str, default_line: int | None) -> None:
        self.file = file
        self.default_line = default_line
        origins = _ORIGINS.get((file, default_line))
        if origins is None:
            if len(_ORIGINS) >= 16:  # the webhook has one table; an audit one per namespace label
                _ORIGINS.clear()
            origins = _ORIGINS[(file, default_line)] = {}
        self.origins = origins

    def line(self, parent: Any, key: Any) -> int | None:
        if type(parent) is YMap:
            return parent.key_lines.get(key, parent.line)
        if type(parent) is YSeq:
            return parent.line_of(key)
        return self.default_line

    def own_line(self, value: Any) -> int | None:
        if type(value) is YMap or type(value) is YSeq:
            return value.line
        return self.default_line

    def fail(self, message: str, parent: Any, key: Any, path: str) -> InputError:
        return InputError(message, file=self.file, line=self.line(parent, key), path=path)

    def wrong_type(self, parent: Any, key: Any, path: str, want: str) -> InputError:
        value = parent[key]
        return self.fail(f"`{path.rpartition('.')[2] or path}` must be {want}, not {type_name(value)}", parent, key, path)

    def mapping(self, parent: Any, key: str, path: str) -> dict[str, Any] | None:
        """parent[key] as a mapping; None when absent or null (Go decodes null to the zero value)."""
        value = parent.get(key)
        if value is None:
            return None
        if not isinstance(value, dict):
            raise self.wrong_type(parent, key, path, "a mapping")
        return value

    def sequence(self, parent: Any, key: str, path: str) -> list[Any] | None:
        value = parent.get(key)
        if value is None:
            return None
        if not isinstance(value, list):
            raise self.wrong_type(parent, key, path, "a list")
        return value

    def string(self, parent: Any, key: str, path: str) -> str | None:
        value = parent.get(key)
        if value is None or isinstance(value, str):
            return value
        raise self.wrong_type(parent, key, path, "a string")

    def identity(self, parent: Any, key: str | int, path: str) -> int | None:
        """A uid or gid (runAsUser, runAsGroup, fsGroup, a supplementalGroups entry): an int64 the API server accepts
        only from 0 to 2147483647 (IsValidUserID / IsValidGroupID), so anything else is an object it would refuse."""
        value = parent[key] if type(parent) is list or type(parent) is YSeq else parent.get(key)
        if value is None:
            return None
        name = path.rpartition(".")[2] or path
        if type(value) is float and value.is_integer() and abs(value) >= 2**63:
            # Past int64 the YAML reader has a float: an integer too large for any field (Go's decoder refuses it).
            raise self.fail(f"`{name}` must be between 0 and {MAX_ID}, not a number beyond the 64-bit integer range",
                            parent, key, path)
        if type(value) is not int:
            raise self.wrong_type(parent, key, path, "an integer")
        if not 0 <= value <= MAX_ID:
            raise self.fail(f"`{name}` must be between 0 and {MAX_ID}, not {value}", parent, key, path)
        return value

    def integer(self, parent: Any, key: str, path: str) -> int | None:
        value = parent.get(key)
        if value is None:
            return None
        # bool is an int subclass in Python, but JSON/Go never decode true into an int32/int64 field.
        if type(value) is not int:
            raise self.wrong_type(parent, key, path, "an integer")
        return value

    def boolean(self, parent: Any, key: str, path: str) -> bool | None:
        value = parent.get(key)
        if value is None or type(value) is bool:
            return value
        raise self.wrong_type(parent, key, path, "a boolean (true or false, unquoted)")

    def origin(self, parent: Any, key: Any, path: str) -> Origin:
        # self.line inlined: an origin is built for every field that is reported
        kind = type(parent)
        if kind is YMap:
            return Origin(self.file, parent.key_lines.get(key, parent.line), path)
        if kind is YSeq:
            return Origin(self.file, parent.line_of(key), path)
        origin = self.origins.get(path)
        if origin is None:
            if len(self.origins) >= _ORIGIN_LIMIT:
                self.origins.clear()
            origin = self.origins[path] = Origin(self.file, self.default_line, path)
        return origin

    # The *_in variants take the parent's path and build the field's path only for an error: the webhook reads
    # every field of every container of every request, and most are absent or well-formed (issue 15).
    def mapping_in(self, parent: Any, key: str, base: str) -> dict[str, Any] | None:
        value = parent.get(key)
        if value is None or isinstance(value, dict):
            return value
        raise self.wrong_type(parent, key, f"{base}.{key}", "a mapping")

    def sequence_in(self, parent: Any, key: str, base: str) -> list[Any] | None:
        value = parent.get(key)
        if value is None or isinstance(value, list):
            return value
        raise self.wrong_type(parent, key, f"{base}.{key}", "a list")

    def string_in(self, parent: Any, key: str, base: str) -> str | None:
        value = parent.get(key)
        if value is None or isinstance(value, str):
            return value
        raise self.wrong_type(parent, key, f"{base}.{key}", "a string")

    def boolean_in(self, parent: Any, key: str, base: str) -> bool | None:
        value = parent.get(key)
        if value is None or type(value) is bool:
            return value
        raise self.wrong_type(parent, key, f"{base}.{key}", "a boolean (true or false, unquoted)")


# --- objects ---------------------------------------------------------------------------------------

_Found = tuple[Any, str, int | None, tuple[Any, str] | None]  # object, path, line, implied (apiVersion, kind)


def _iter_objects(obj: Mapping[str, Any], base_path: str, line: int | None, walker: _Walker,
                  implied: tuple[Any, str] | None = None, depth: int = 0) -> Iterator[_Found]:
    """The object itself, or the items of a `List` / `*List` (recursively), with paths, lines and implied kind."""
    kind = obj.get("kind")
    if not (isinstance(kind, str) and kind.endswith("List") and "items" in obj) or depth > 8:
        yield obj, base_path, line, implied
        return
    items_path = _join(base_path, "items")
    items = walker.sequence(obj, "items", items_path)
    if not items:
        return
    # A typed list (PodList, DeploymentList) from the API server leaves apiVersion/kind off its items.
    item_implied = (obj.get("apiVersion"), kind[:-4]) if kind != "List" else None
    for i, item in enumerate(items):
        path, item_line = f"{items_path}[{i}]", walker.line(items, i)
        if isinstance(item, dict):
            yield from _iter_objects(item, path, item_line, walker, item_implied, depth + 1)
        else:
            yield item, path, item_line, None


def workloads_from_object(obj: Mapping[str, Any], *, file: str, namespace: str, base_path: str = "",
                          line: int | None = None) -> list[Workload]:
    """The workloads of one object (a `List` gives one per pod-bearing item or Service); [] for other kinds.

    Objects from the YAML loader carry lines; plain dicts (webhook JSON) get `line` (default None) everywhere.
    Raises InputError naming file, line and path when a field the rules read has the wrong shape.
    """
    walker = _Walker(file, line)
    result: list[Workload] = []
    for item, path, item_line, implied in _iter_objects(obj, base_path, walker.own_line(obj) if line is None else line, walker):
        workload = _object(item, path, item_line, walker, namespace, implied)
        if workload is not None:
            result.append(workload)
    return result


def _object(obj: Any, base: str, line: int | None, walker: _Walker, namespace: str,
            implied: tuple[Any, str] | None = None) -> Workload | None:
    if not isinstance(obj, dict):
        raise InputError(f"a Kubernetes object must be a mapping, not {type_name(obj)}", file=walker.file, line=line, path=base or None)
    api_version, kind = obj.get("apiVersion"), obj.get("kind")
    if implied is not None and api_version is None and kind is None:
        api_version, kind = implied
    if not (isinstance(api_version, str) and isinstance(kind, str)):
        missing = [k for k in ("apiVersion", "kind") if not isinstance(obj.get(k), str)]
        raise InputError(f"not a Kubernetes object: {' and '.join(missing)} missing or not a string",
                         file=walker.file, line=line, path=base or None)
    service = not is_pod_bearing(api_version, kind)
    if service and not is_service(api_version, kind):
        return None

    meta_path = _join(base, "metadata")
    meta = walker.mapping(obj, "metadata", meta_path) or {}
    name = walker.string_in(meta, "name", meta_path) or walker.string_in(meta, "generateName", meta_path) or ""
    ns = walker.string_in(meta, "namespace", meta_path) or namespace
    claims = _claims(meta, meta_path, walker)
    if service:
        return _service(obj, base, line, walker, name=name, namespace=ns, claims=claims, controller=controller_of(meta))

    # Walk down to the pod spec, collecting the pod template's metadata on the way.
    pod_meta: dict[str, Any] | None = meta  # the pod's own metadata: the object's for a Pod, else its template's
    pod_meta_path = meta_path
    node: Any = obj
    node_line, path = line, base
    for step in POD_SPEC_PATHS[kind]:
        path = _join(path, step)
        child = walker.mapping(node, step, path)
        if child is None:
            # Point at the parent's key (`spec:`), not at the parent's first child, which YMap.line is.
            raise InputError(f"`{step}` is required (a mapping)", file=walker.file, line=node_line, path=path)
        node_line, node = walker.line(node, step), child
        if step == "template":  # the pod template's own metadata: its annotations land on every pod
            tmeta_path = f"{path}.metadata"
            tmeta = walker.mapping(node, "metadata", tmeta_path)
            pod_meta, pod_meta_path = tmeta, tmeta_path
            if tmeta:
                claims += _claims(tmeta, tmeta_path, walker)
    spec: dict[str, Any] = node
    get = spec.get

    host_network = None
    if get("hostNetwork") is not None and walker.boolean(spec, "hostNetwork", f"{path}.hostNetwork"):
        host_network = Located("true", walker.origin(spec, "hostNetwork", f"{path}.hostNetwork"))
    os_map = walker.mapping_in(spec, "os", path)
    os_name = walker.string_in(os_map, "name", f"{path}.os") if os_map else None
    windows = None
    if os_name == "windows":
        windows = Setting("windows", "os.name: windows", walker.origin(os_map, "name", f"{path}.os.name"))
    elif get("nodeSelector") is not None:
        windows = _windows_selector(spec, path, walker)

    pod_run_as = _run_as(spec, path, walker, pod=True)
    containers: list[Container] = []
    for key, ckind in _CONTAINER_LISTS:
        if get(key) is None:
            continue
        items = walker.sequence_in(spec, key, path)
        if items:
            list_path = f"{path}.{key}"
            for i, item in enumerate(items):
                containers.append(_container(items, i, f"{list_path}[{i}]", ckind, walker, pod_run_as))

    host_pid = _true_flag(spec, "hostPID", path, walker)
    host_ipc = _true_flag(spec, "hostIPC", path, walker)
    pod_sc = walker.mapping_in(spec, "securityContext", path)
    sysctls: tuple[Setting, ...] = ()
    pod_security = None
    if pod_sc:
        pod_sc_path = f"{path}.securityContext"
        sysctl_items = walker.sequence_in(pod_sc, "sysctls", pod_sc_path)
        if sysctl_items:
            sysctls = tuple(_sysctl(sysctl_items, i, f"{pod_sc_path}.sysctls[{i}]", walker) for i in range(len(sysctl_items)))
        pod_security = _security(pod_sc, pod_sc_path, walker)
    volumes = _volumes(spec, path, walker) if get("volumes") is not None else ()
    token = _token(spec, path, walker, volumes, node_line)
    return Workload(
        source="kubernetes",
        kind=kind,
        name=name,
        namespace=ns,
        origin=Origin(walker.file, line, base),
        containers=tuple(containers),
        runtime=True,
        host_network=host_network,
        os=os_name,
        windows=windows,
        exemption_claims=claims,
        host_pid=host_pid,
        host_ipc=host_ipc,
        pod_security=pod_security,
        volumes=volumes,
        sysctls=sysctls,
        apparmor_annotations=_apparmor_annotations(pod_meta, pod_meta_path, walker) if pod_meta else (),
        host_users=walker.boolean_in(spec, "hostUsers", path),
        restart_policy=walker.string_in(spec, "restartPolicy", path),
        controller=controller_of(meta),
        token=token,
    )


# The volume the ServiceAccount admission plugin adds when it mounts the token (serviceaccount.go: "kube-api-access-"
# and a random suffix; a projected volume of the token, the cluster's CA and the namespace).
TOKEN_VOLUME_PREFIX = "kube-api-access-"


def _token(spec: dict[str, Any], path: str, walker: _Walker, volumes: tuple[HostMount, ...],
           spec_line: int | None) -> AccountToken:
    """What the pod spec says of its ServiceAccount token: its own automountServiceAccountToken, the account it runs
    as (`serviceAccount` is the deprecated spelling; `default` when neither is set) and the plugin's volume."""
    account = "default"
    origin = None
    for key in ("serviceAccountName", "serviceAccount"):
        if spec.get(key) is not None:
            written = walker.string_in(spec, key, path)
            if written:
                account, origin = written, walker.origin(spec, key, f"{path}.{key}")
                break
    if origin is None:
        origin = Origin(walker.file, spec_line, path)
    volume = None
    for mount in volumes:
        if mount.kind == "projected" and mount.name.startswith(TOKEN_VOLUME_PREFIX):
            volume = Setting(mount.name, mount.name, mount.origin)
            break
    return AccountToken(account=account, origin=origin,
                        pod=_bool_setting(spec, "automountServiceAccountToken", path, walker), volume=volume)


_SERVICE_TYPES_WITH_NODE_PORTS = frozenset(("NodePort", "LoadBalancer"))


def _service(obj: dict[str, Any], base: str, line: int | None, walker: _Walker, *, name: str, namespace: str,
             claims: tuple[ExemptionClaim, ...], controller: OwnerRef | None) -> Workload:
    """A Service: a Workload with no containers whose `service` holds what no-host-port reads (issue 27)."""
    path = _join(base, "spec")
    spec = walker.mapping(obj, "spec", path) or {}
    written = walker.string_in(spec, "type", path)
    if written:
        kind = Setting(written, written, walker.origin(spec, "type", f"{path}.type"))
    else:  # the API server defaults it to ClusterIP
        kind = Setting("ClusterIP", "ClusterIP", walker.origin(obj, "spec", path) if "spec" in obj
                       else walker.origin(obj, "kind", _join(base, "kind")))
    allocate = walker.boolean_in(spec, "allocateLoadBalancerNodePorts", path)
    node_ports: list[Port] = []
    ports = walker.sequence_in(spec, "ports", path)
    if ports:
        ports_path = f"{path}.ports"
        for j, entry in enumerate(ports):
            port_path = f"{ports_path}[{j}]"
            if not isinstance(entry, dict):
                raise walker.fail(f"a Service port must be a mapping, not {type_name(entry)}", ports, j, port_path)
            node_port = walker.integer(entry, "nodePort", f"{port_path}.nodePort")
            number = walker.integer(entry, "port", f"{port_path}.port")
            protocol = walker.string(entry, "protocol", f"{port_path}.protocol") or "TCP"
            if kind.value not in _SERVICE_TYPES_WITH_NODE_PORTS:
                continue  # the API server refuses a nodePort on other types; nothing is opened on the nodes
            target = "" if number is None else str(number)
            published = str(node_port) if node_port else None
            node_ports.append(Port(
                target=target, published=published, host_ip=None, protocol=protocol,
                text=f"nodePort {published or '(allocated)'} -> port {target or '?'}",
                origin=walker.origin(entry, "nodePort", f"{port_path}.nodePort") if node_port
                else walker.origin(ports, j, port_path)))
    external: list[Setting] = []
    ips = walker.sequence_in(spec, "externalIPs", path)
    if ips:
        ips_path = f"{path}.externalIPs"
        for j, ip in enumerate(ips):
            if not isinstance(ip, str):
                raise walker.fail(f"an externalIPs entry must be a string, not {type_name(ip)}", ips, j,
                                  f"{ips_path}[{j}]")
            external.append(Setting(ip, ip, walker.origin(ips, j, f"{ips_path}[{j}]")))
    return Workload(
        source="kubernetes",
        kind="Service",
        name=name,
        namespace=namespace,
        origin=Origin(walker.file, line, base),
        containers=(),
        runtime=False,  # it runs no container: the container rules have nothing to read (and are not run on it)
        exemption_claims=claims,
        controller=controller,
        service=ServiceSpec(type=kind, node_ports=tuple(node_ports), external_ips=tuple(external),
                            allocate_node_ports=allocate),
    )


def controller_of(meta: Mapping[str, Any] | None) -> OwnerRef | None:
    """The ownerReference marked `controller: true` (the API server allows at most one), if it is well formed.

    Only a claim: anyone who may create the object may write it, uid included."""
    refs = meta.get("ownerReferences") if isinstance(meta, Mapping) else None
    if not isinstance(refs, list):
        return None
    for ref in refs:
        if isinstance(ref, Mapping) and ref.get("controller") is True:
            fields = [ref.get(k) for k in ("apiVersion", "kind", "name", "uid")]
            if all(isinstance(f, str) and f for f in fields):
                return OwnerRef(*fields)
    return None


# --- least-privilege and healthcheck fields (PSA's checks read these) ------------------------------

# Every VolumeSource field of the core API: the first one set names the volume's kind (PSA restrictedVolumes).
_VOLUME_SOURCES = (
    "hostPath", "emptyDir", "gcePersistentDisk", "awsElasticBlockStore", "gitRepo", "secret", "nfs", "iscsi",
    "glusterfs", "persistentVolumeClaim", "rbd", "flexVolume", "cinder", "cephfs", "flocker", "downwardAPI", "fc",
    "azureFile", "configMap", "vsphereVolume", "quobyte", "azureDisk", "photonPersistentDisk", "projected",
    "portworxVolume", "scaleIO", "storageos", "csi", "ephemeral", "image",
)
_VOLUME_SOURCE_SET = frozenset(_VOLUME_SOURCES)
_APPARMOR_PREFIX = "container.apparmor.security.beta.kubernetes.io/"
_PROBES = ("livenessProbe", "readinessProbe", "startupProbe")


def _setting(parent: Any, key: str, value: str, path: str, walker: _Walker) -> Setting:
    return Setting(value, value, walker.origin(parent, key, path))


# Each helper below returns at once when its key is absent: most fields are, and the webhook reads every one of
# them for every container of every request (paths are built only for what is there).
def _true_flag(spec: dict[str, Any], key: str, path: str, walker: _Walker) -> Setting | None:
    if spec.get(key) is None:
        return None
    key_path = f"{path}.{key}"
    return _setting(spec, key, "true", key_path, walker) if walker.boolean(spec, key, key_path) else None


def _bool_setting(parent: dict[str, Any], key: str, path: str, walker: _Walker) -> Setting | None:
    if parent.get(key) is None:
        return None
    key_path = f"{path}.{key}"
    value = walker.boolean(parent, key, key_path)
    if value is None:
        return None
    text = "true" if value else "false"
    return Setting(text, text, walker.origin(parent, key, key_path))


def _str_setting(parent: dict[str, Any], key: str, path: str, walker: _Walker) -> Setting | None:
    if parent.get(key) is None:
        return None
    key_path = f"{path}.{key}"
    value = walker.string(parent, key, key_path)
    return None if value is None else _setting(parent, key, value, key_path, walker)


def _type_setting(parent: dict[str, Any], key: str, path: str, walker: _Walker) -> Setting | None:
    """`seccompProfile.type` / `appArmorProfile.type`: set when the profile is (Go decodes a missing type to "")."""
    if parent.get(key) is None:
        return None
    profile_path = f"{path}.{key}"
    profile = walker.mapping(parent, key, profile_path)
    if profile is None:
        return None
    type_path = f"{profile_path}.type"
    value = walker.string(profile, "type", type_path) or ""
    if "type" in profile:
        return Setting(value, value, walker.origin(profile, "type", type_path))
    return Setting(value, value, walker.origin(parent, key, profile_path))


def _security(sc: dict[str, Any], path: str, walker: _Walker) -> SecurityContext:
    """One securityContext level as PSA reads it (each field with its own origin)."""
    get = sc.get  # most fields are absent: each is looked at once before any helper runs
    add: tuple[Setting, ...] = ()
    drop: tuple[Setting, ...] = ()
    if get("capabilities") is not None:
        caps_path = f"{path}.capabilities"
        caps = walker.mapping(sc, "capabilities", caps_path)
        if caps:
            if caps.get("add") is not None:
                add = _capabilities(caps, "add", caps_path, walker)
            if caps.get("drop") is not None:
                drop = _capabilities(caps, "drop", caps_path, walker)
    selinux_type = selinux_user = selinux_role = None
    if get("seLinuxOptions") is not None:
        se_path = f"{path}.seLinuxOptions"
        se = walker.mapping(sc, "seLinuxOptions", se_path)
        if se is not None:
            # PSA tests the type of every seLinuxOptions it sees ("" is allowed), and user and role when non-empty.
            selinux_type = _str_setting(se, "type", se_path, walker) or Setting("", "", walker.origin(sc, "seLinuxOptions", se_path))
            selinux_user = _str_setting(se, "user", se_path, walker)
            selinux_role = _str_setting(se, "role", se_path, walker)
    win = None
    if get("windowsOptions") is not None:
        win_path = f"{path}.windowsOptions"
        win = walker.mapping(sc, "windowsOptions", win_path)
    privileged = None if get("privileged") is None else _bool_setting(sc, "privileged", path, walker)
    escalation = None if get("allowPrivilegeEscalation") is None else _bool_setting(sc, "allowPrivilegeEscalation", path, walker)
    proc_mount = None if get("procMount") is None else _str_setting(sc, "procMount", path, walker)
    seccomp = None if get("seccompProfile") is None else _type_setting(sc, "seccompProfile", path, walker)
    apparmor = None if get("appArmorProfile") is None else _type_setting(sc, "appArmorProfile", path, walker)
    return SecurityContext(
        privileged=privileged,
        allow_privilege_escalation=escalation,
        capabilities_add=add,
        capabilities_drop=drop,
        proc_mount=proc_mount,
        seccomp=seccomp,
        apparmor=apparmor,
        selinux_type=selinux_type,
        selinux_user=selinux_user,
        selinux_role=selinux_role,
        host_process=_bool_setting(win, "hostProcess", win_path, walker) if win else None,
    )


def _capabilities(caps: dict[str, Any], key: str, path: str, walker: _Walker) -> tuple[Setting, ...]:
    list_path = f"{path}.{key}"
    items = walker.sequence(caps, key, list_path)
    if not items:
        return ()
    out: list[Setting] = []
    for i, item in enumerate(items):
        item_path = f"{list_path}[{i}]"
        if not isinstance(item, str):
            raise walker.fail(f"a capability must be a string, not {type_name(item)}", items, i, item_path)
        out.append(Setting(item, item, walker.origin(items, i, item_path)))
    return tuple(out)


def _sysctl(items: list[Any], i: int, path: str, walker: _Walker) -> Setting:
    item = items[i]
    if not isinstance(item, dict):
        raise walker.fail(f"a sysctl must be a mapping with `name` and `value`, not {type_name(item)}", items, i, path)
    name = walker.string(item, "name", f"{path}.name") or ""
    return Setting(name, name, walker.origin(item, "name", f"{path}.name") if "name" in item else walker.origin(items, i, path))


def _volumes(spec: dict[str, Any], path: str, walker: _Walker) -> tuple[HostMount, ...]:
    list_path = f"{path}.volumes"
    items = walker.sequence(spec, "volumes", list_path)
    if not items:
        return ()
    out: list[HostMount] = []
    for i, item in enumerate(items):
        item_path = f"{list_path}[{i}]"
        if not isinstance(item, dict):
            raise walker.fail(f"a volume must be a mapping, not {type_name(item)}", items, i, item_path)
        name = walker.string_in(item, "name", item_path) or ""
        kind = None  # the first source key set, in the order written
        for k in item:
            if k in _VOLUME_SOURCE_SET and item[k] is not None:
                kind = k
                break
        if kind is None:
            # The API server defaults a volume that sets no source (`{name: data}`) to emptyDir (SetDefaults_Volume), so
            # that is what runs. A key this list does not know stays `unknown`, as PSA calls a source it cannot name.
            kind = "emptyDir" if all(k == "name" or item[k] is None for k in item) else "unknown"
        host_path = None
        origin = walker.origin(items, i, item_path)
        if kind == "hostPath":
            source_path = f"{item_path}.hostPath"
            source = walker.mapping(item, "hostPath", source_path) or {}
            host_path = walker.string(source, "path", f"{source_path}.path") or ""
            origin = walker.origin(source, "path", f"{source_path}.path") if "path" in source else walker.origin(item, "hostPath", source_path)
        out.append(HostMount(name=name, kind=kind, path=host_path, origin=origin))
    return tuple(out)


def _apparmor_annotations(meta: dict[str, Any], meta_path: str, walker: _Walker) -> tuple[Setting, ...]:
    ann_path = f"{meta_path}.annotations"
    annotations = walker.mapping(meta, "annotations", ann_path)
    if not annotations:
        return ()
    out: list[Setting] = []
    for key, value in annotations.items():
        if isinstance(key, str) and key.startswith(_APPARMOR_PREFIX):
            key_path = f'{ann_path}["{key}"]'
            if not isinstance(value, str):
                raise walker.fail(f"annotation {key} must be a string, not {type_name(value)} (quote it)", annotations, key, key_path)
            out.append(Setting(value, key, walker.origin(annotations, key, key_path)))
    return tuple(out)


def _windows_selector(spec: dict[str, Any], path: str, walker: _Walker) -> Setting | None:
    """`nodeSelector: {kubernetes.io/os: windows}`: the pod runs on Windows nodes though it has no `os.name`."""
    selector_path = f"{path}.nodeSelector"
    selector = walker.mapping(spec, "nodeSelector", selector_path)
    for label in _OS_LABELS:
        if selector and selector.get(label) is not None:
            label_path = f'{selector_path}["{label}"]'
            if walker.string(selector, label, label_path) == "windows":
                return Setting("windows", f"nodeSelector {label}: windows", walker.origin(selector, label, label_path))
    return None


_RunAs = tuple[Located[int] | None, Located[bool] | None, Located[str] | None]  # runAsUser, runAsNonRoot, runAsUserName


_NO_RUN_AS: _RunAs = (None, None, None)


def _run_as(parent: dict[str, Any], path: str, walker: _Walker, *, pod: bool = False) -> _RunAs:
    """runAsUser / runAsNonRoot / windowsOptions.runAsUserName of one securityContext level, each with its own origin.

    The uids and gids of the level (runAsGroup, and a pod's fsGroup and supplementalGroups) are range-checked too:
    the API server refuses a pod with one outside 0..2147483647, so the webhook and the CLI cannot interpret it.
    """
    sc = walker.mapping_in(parent, "securityContext", path)
    if not sc:
        return _NO_RUN_AS
    sc_path = f"{path}.securityContext"
    get = sc.get
    user = non_root = None
    if get("runAsUser") is not None:
        user_path = f"{sc_path}.runAsUser"
        user = Located(walker.identity(sc, "runAsUser", user_path), walker.origin(sc, "runAsUser", user_path))
    if get("runAsNonRoot") is not None:
        non_root_path = f"{sc_path}.runAsNonRoot"
        non_root = Located(walker.boolean(sc, "runAsNonRoot", non_root_path), walker.origin(sc, "runAsNonRoot", non_root_path))
    if get("runAsGroup") is not None:
        walker.identity(sc, "runAsGroup", f"{sc_path}.runAsGroup")
    if pod:
        if get("fsGroup") is not None:
            walker.identity(sc, "fsGroup", f"{sc_path}.fsGroup")
        if get("supplementalGroups") is not None:
            groups_path = f"{sc_path}.supplementalGroups"
            groups = walker.sequence(sc, "supplementalGroups", groups_path) or []
            for k in range(len(groups)):
                walker.identity(groups, k, f"{groups_path}[{k}]")
    user_name = None
    if get("windowsOptions") is not None:
        win_path = f"{sc_path}.windowsOptions"
        win = walker.mapping(sc, "windowsOptions", win_path)
        if win and win.get("runAsUserName") is not None:
            name_path = f"{win_path}.runAsUserName"
            name = walker.string(win, "runAsUserName", name_path)
            user_name = None if name is None else Located(name, walker.origin(win, "runAsUserName", name_path))
    if user is None and non_root is None and user_name is None:
        return _NO_RUN_AS
    return user, non_root, user_name


def _container(items: list[Any], i: int, path: str, kind: ContainerKind, walker: _Walker, pod_run_as: _RunAs) -> Container:
    c = items[i]
    if not isinstance(c, dict):
        raise walker.fail(f"a container must be a mapping, not {type_name(c)}", items, i, path)
    get = c.get
    name = walker.string_in(c, "name", path)
    if not name:
        raise walker.fail("container has no `name`", items, i, f"{path}.name")

    image_text = get("image")
    image = None
    if image_text is not None:
        if not isinstance(image_text, str):
            raise walker.wrong_type(c, "image", f"{path}.image", "a string")
        image = Located(image_text, walker.origin(c, "image", f"{path}.image"))

    if kind == "init" and walker.string_in(c, "restartPolicy", path) == "Always":
        kind = "sidecar"  # a native sidecar (KEP-753): runs for the pod's whole life, like a regular container

    # DetermineEffectiveSecurityContext: each field set on the container overrides the pod's, field by field.
    user, non_root, user_name = _run_as(c, path, walker) if get("securityContext") is not None else _NO_RUN_AS
    if user is None or non_root is None or user_name is None:
        pod_user, pod_non_root, pod_user_name = pod_run_as
        if user is None:
            user = pod_user
        if non_root is None:
            non_root = pod_non_root
        if user_name is None:
            user_name = pod_user_name

    limits: dict[str, Located[str]] = {}
    if get("resources") is not None:
        res_path = f"{path}.resources"
        resources = walker.mapping(c, "resources", res_path)
        if resources and kind != "ephemeral":  # the API forbids resources on ephemeral containers
            lim = walker.mapping_in(resources, "limits", res_path)
            if lim:
                lim_path = f"{res_path}.limits"
                for key, value in lim.items():
                    key_path = f"{lim_path}.{key}"
                    value_type = type(value)
                    if value_type is not str and (value_type is bool or not isinstance(value, (str, int, float))):
                        raise walker.fail(f"limit `{key}` must be a quantity such as 500m or 128Mi, not {type_name(value)}",
                                          lim, key, key_path)
                    limits[key] = Located(value if value_type is str else str(value), walker.origin(lim, key, key_path))

    host_ports: list[Port] = []
    ports = walker.sequence_in(c, "ports", path) if get("ports") is not None else None
    if ports:
        ports_path = f"{path}.ports"
        for j, port in enumerate(ports):
            if not isinstance(port, dict):
                raise walker.fail(f"a port must be a mapping, not {type_name(port)}", ports, j, f"{ports_path}[{j}]")
            if port.get("hostPort") is None:
                continue
            port_path = f"{ports_path}[{j}]"
            host_port = walker.integer(port, "hostPort", f"{port_path}.hostPort")
            if not host_port or host_port <= 0:
                continue
            container_port = walker.integer(port, "containerPort", f"{port_path}.containerPort")
            host_ip = walker.string(port, "hostIP", f"{port_path}.hostIP") or None
            protocol = walker.string(port, "protocol", f"{port_path}.protocol") or "TCP"
            target = "" if container_port is None else str(container_port)
            host_ports.append(Port(
                target=target,
                published=str(host_port),
                host_ip=host_ip,
                protocol=protocol,
                text=f"hostPort {host_port} -> containerPort {target or '?'}",
                origin=walker.origin(port, "hostPort", f"{port_path}.hostPort"),  # line and path agree
            ))

    env: tuple[EnvVar, ...] = ()
    items_env = get("env")
    if items_env and type(items_env) in (list, YSeq):
        env = _literal_env(items_env, f"{path}.env", walker)
    sc = walker.mapping_in(c, "securityContext", path)
    probes: tuple[str, ...] = ()
    checks: tuple[Probe, ...] = ()
    if "livenessProbe" in c or "readinessProbe" in c or "startupProbe" in c:
        found = []
        described = []
        for p in _PROBES:
            probe = walker.mapping_in(c, p, path)
            if probe is not None:
                found.append(p)
                described.append(Probe(p, _probe_check(c, probe, f"{path}.{p}", walker), walker.origin(c, p, f"{path}.{p}")))
        probes = tuple(found)
        checks = tuple(described)
    return Container(
        name=name,
        origin=walker.origin(items, i, path),
        kind=kind,
        image=image,
        run_as_user=user,
        run_as_non_root=non_root,
        run_as_user_name=user_name,
        limits=limits,
        host_ports=tuple(host_ports),
        security=_security(sc, f"{path}.securityContext", walker) if sc else None,
        probes=probes,
        env=env,
        probe_checks=checks,
        read_only_root=_bool_setting(sc, "readOnlyRootFilesystem", f"{path}.securityContext", walker) if sc else None,
    )


def _probe_check(c: dict[str, Any], probe: dict[str, Any], path: str, walker: _Walker) -> str:
    """What a probe checks, normalised (model.Probe): the first handler set, with the API server's defaults filled in
    (scheme HTTP, path /, the pod IP for an empty host, grpc service "") and a named port resolved to its number."""
    for handler in ("exec", "httpGet", "tcpSocket", "grpc"):
        if probe.get(handler) is None:
            continue
        hpath = f"{path}.{handler}"
        h = walker.mapping(probe, handler, hpath)
        if h is None:
            continue
        if handler == "exec":
            command = walker.sequence_in(h, "command", hpath) or []
            return "exec " + json.dumps([str(part) for part in command])
        port = _probe_port(c, h, hpath, walker)
        host = walker.string_in(h, "host", hpath) or "<pod IP>"
        if handler == "httpGet":
            scheme = (walker.string_in(h, "scheme", hpath) or "HTTP").lower()
            where = walker.string_in(h, "path", hpath) or "/"
            headers = walker.sequence_in(h, "httpHeaders", hpath) or []
            pairs = sorted((str(x.get("name", "")).lower(), str(x.get("value", ""))) for x in headers if isinstance(x, dict))
            shown = "".join(f" {name}: {value}" for name, value in pairs)
            return f"GET {scheme}://{host}:{port}{'' if where.startswith('/') else '/'}{where}{shown and ' with' + shown}"
        if handler == "tcpSocket":
            return f"TCP {host}:{port}"
        return f"gRPC <pod IP>:{port} service '{walker.string_in(h, 'service', hpath) or ''}'"
    return ""


def _probe_port(c: dict[str, Any], handler: dict[str, Any], path: str, walker: _Walker) -> str:
    """A probe's port as a number: a name is looked up in the container's ports, as the kubelet does."""
    port = handler.get("port")
    if type(port) is int:
        return str(port)
    if not isinstance(port, str):
        return "" if port is None else str(port)
    for item in walker.sequence_in(c, "ports", path.rpartition(".")[0].rpartition(".")[0]) or ():
        if isinstance(item, dict) and item.get("name") == port and type(item.get("containerPort")) is int:
            return str(item["containerPort"])
    return port


def _literal_env(items: list[Any], path: str, walker: _Walker) -> tuple[EnvVar, ...]:
    """`env[].value` strings (no-secret-in-env); `valueFrom` and `envFrom` hold references, not values. Another shape
    is left to the API server: no rule read env before, so it refuses nothing new."""
    out = []
    for j, item in enumerate(items):
        if type(item) is not dict and type(item) is not YMap:
            continue
        name, value = item.get("name"), item.get("value")
        if type(name) is str and type(value) is str and value and item.get("valueFrom") is None:
            out.append(EnvVar(name, value, "env", walker.origin(item, "value", f"{path}[{j}].value")))
    return tuple(out)


def _claims(meta: dict[str, Any], meta_path: str, walker: _Walker) -> tuple[ExemptionClaim, ...]:
    """An `admission.policy/exempt` annotation as written; the engine validates rules, reason and date."""
    ann_path = f"{meta_path}.annotations"
    annotations = walker.mapping(meta, "annotations", ann_path)
    if not annotations or EXEMPT_ANNOTATION not in annotations:
        return ()
    # Keys hold dots and a slash, so they are bracketed to keep the dotted path readable.
    values: list[str | None] = []
    for key in (EXEMPT_ANNOTATION, EXEMPT_REASON_ANNOTATION, EXEMPT_EXPIRES_ANNOTATION):
        value = annotations.get(key)
        if value is not None and not isinstance(value, str):
            raise walker.fail(f"annotation {key} must be a string, not {type_name(value)} (quote it)",
                              annotations, key, f'{ann_path}["{key}"]')
        values.append(value)
    rules_text, reason, expires = values
    rules = tuple(part.strip() for part in (rules_text or "").split(",") if part.strip())
    origin = walker.origin(annotations, EXEMPT_ANNOTATION, f'{ann_path}["{EXEMPT_ANNOTATION}"]')
    return (ExemptionClaim(rules=rules, reason=reason or None, expires=expires or None, via="annotation", origin=origin),)


# --- streams ---------------------------------------------------------------------------------------

def _parse(text: str, file: str) -> tuple[list[Document], int | None]:
    """Documents and the line to use for values without one (None: every value has its own line)."""
    try:
        return load_documents(text, file=file, dialect="1.1"), None
    except InputError as yaml_error:
        return _as_json(text, file, yaml_error)


def _as_json(text: str, file: str, yaml_error: InputError) -> tuple[list[Document], int | None]:
    """JSON is YAML, but libyaml refuses some valid JSON: a tab before the first token, surrogate-pair escapes, keys
    over 1024 characters. Only then is the text read as JSON; anything else raises the YAML error."""
    if text.lstrip()[:1] not in ("{", "["):
        raise yaml_error
    try:
        value = json.loads(text)
    except (ValueError, RecursionError):
        raise yaml_error from None
    if "\t" in text:
        # A valid JSON text has tabs only as whitespace (never raw inside strings), so spaces keep meaning and lines.
        try:
            return load_documents(text.replace("\t", " "), file=file, dialect="1.1"), None
        except InputError:
            pass
    return [Document(value, 1)], 1


def read_documents(text: str, *, file: str) -> list[Any]:
    """The non-empty documents of a stream, read as load_text reads them: a walk looks at their shape first."""
    return [d.value for d in _parse(text, file)[0] if d.value is not None]


def load_text(text: str, *, file: str, namespace: str = "default") -> KubeResult:
    """Every pod-bearing object and Service of a YAML or JSON stream. Other kinds and empty documents are skipped.

    Raises InputError for a syntax error or a stream with no non-empty document; an object that cannot be
    interpreted becomes a Problem and the other objects are still returned. Documents are read one at a time and
    dropped once their objects are built: a 10 MB stream is never held whole as values.
    """
    workloads: list[Workload] = []
    problems: list[Problem] = []
    try:
        seen = _objects_of(iter_documents(text, file=file, dialect="1.1"), _Walker(file, None), namespace,
                           workloads, problems)
    except InputError as yaml_error:
        documents, default_line = _as_json(text, file, yaml_error)
        workloads, problems = [], []
        seen = _objects_of(iter(documents), _Walker(file, default_line), namespace, workloads, problems)
    if not seen:
        raise InputError("no YAML document with content in the input (it is empty or holds only comments)", file=file)
    return KubeResult(workloads=workloads, problems=problems, documents=seen)


def _objects_of(documents: Iterator[Document], walker: _Walker, namespace: str, workloads: list[Workload],
                problems: list[Problem]) -> int:
    """Append the workloads (and problems) of each document; the number of non-empty documents."""
    seen = 0
    for doc in documents:
        value = doc.value
        if value is None:
            continue
        seen += 1
        for item, path, line, implied in _iter_objects_safe(value, doc.line, walker, problems):
            try:
                workload = _object(item, path, line, walker, namespace, implied)
            except InputError as exc:
                problems.append(Problem(exc.message, exc.file, exc.line, exc.path))
                continue
            if workload is not None:
                workloads.append(workload)
    return seen


def _iter_objects_safe(value: Any, line: int, walker: _Walker,
                       problems: list[Problem]) -> Iterator[_Found]:
    if not isinstance(value, dict):
        yield value, "", line, None  # _object reports it as a problem
        return
    try:
        yield from _iter_objects(value, "", line, walker)
    except InputError as exc:  # a List whose `items` is not a list
        problems.append(Problem(exc.message, exc.file, exc.line, exc.path))
