"""Frozen data every rule reads. Source adapters build it; nothing here knows an input format.

Slotted dataclasses rather than pydantic: they are built per container on the CLI hot path,
and pydantic's import alone costs more than half of compose-lint's whole run (measured).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Mapping
from dataclasses import MISSING, FrozenInstanceError, dataclass, field, fields
from operator import attrgetter
from reprlib import recursive_repr
from typing import Any, Generic, Literal, TypeVar

T = TypeVar("T")


def fast_init(cls: type) -> None:
    """Give a frozen slotted dataclass a faster __init__ with the same parameters, defaults and default factories.

    The generated one calls object.__setattr__ per field (what `frozen` needs), which makes building a Container or a
    Workload cost microseconds; the webhook builds dozens of these objects per request (issue 15). Here each field is
    stored through its slot descriptor, which bypasses the frozen __setattr__ as object.__setattr__ does. Calls,
    `dataclasses.replace`, equality, hashing, repr, pickling and frozenness are as before (tests/test_model_init.py).
    """
    namespace: dict[str, Any] = {"_FACTORY": getattr(dataclasses, "_HAS_DEFAULT_FACTORY", object())}  # shows as <factory>
    positional: list[str] = []
    keywords: list[str] = []  # fields after a KW_ONLY marker
    values: list[tuple[str, str]] = []
    for f in fields(cls):
        params = keywords if f.kw_only else positional
        namespace[f"_set_{f.name}"] = cls.__dict__[f.name].__set__
        if f.default is not MISSING:
            namespace[f"_default_{f.name}"] = f.default
            params.append(f"{f.name}=_default_{f.name}")
            values.append((f.name, f.name))
        elif f.default_factory is not MISSING:
            namespace[f"_factory_{f.name}"] = f.default_factory
            params.append(f"{f.name}=_FACTORY")
            values.append((f.name, f"_factory_{f.name}() if {f.name} is _FACTORY else {f.name}"))
        else:
            params.append(f.name)
            values.append((f.name, f.name))
    signature = positional + (["*", *keywords] if keywords else [])
    body = [f"_set_{name}(self, {value})" for name, value in values] or ["pass"]
    exec(f"def __init__(self, {', '.join(signature)}):\n" + "\n".join(f"    {line}" for line in body), namespace)  # noqa: S102
    init = namespace["__init__"]
    init.__qualname__ = f"{cls.__qualname__}.__init__"
    init.__module__ = cls.__module__
    init.__annotations__ = {**{f.name: f.type for f in fields(cls)}, "return": None}  # as the generated one has
    cls.__init__ = init  # type: ignore[misc]


C = TypeVar("C", bound=type)


def _value_methods(cls: type) -> None:
    """What `@dataclass(frozen=True)` adds beyond fields (equality, hash, repr, frozenness, pickling of slots), as
    closures over the field names rather than functions compiled per class."""
    every = fields(cls)
    names = tuple(f.name for f in every)
    compared = tuple(f.name for f in every if f.compare)
    hashed = tuple(f.name for f in every if (f.compare if f.hash is None else f.hash))
    shown = tuple(f.name for f in every if f.repr)

    def values(of: tuple[str, ...]) -> Callable[[Any], tuple[Any, ...]]:
        """A getter of the fields' values as a tuple (attrgetter gives a bare value for one name)."""
        if len(of) > 1:
            return attrgetter(*of)
        if of:
            only = of[0]
            return lambda obj: (getattr(obj, only),)
        return lambda obj: ()

    compare, hash_of, everything = values(compared), values(hashed), values(names)

    def __eq__(self: Any, other: object) -> bool:  # noqa: ANN401
        if other.__class__ is self.__class__:
            return bool(compare(self) == compare(other))
        return NotImplemented

    def __hash__(self: Any) -> int:  # noqa: ANN401
        return hash(hash_of(self))

    @recursive_repr()
    def __repr__(self: Any) -> str:  # noqa: ANN401
        return f"{self.__class__.__qualname__}({', '.join(f'{n}={getattr(self, n)!r}' for n in shown)})"

    def __setattr__(self: Any, name: str, value: object) -> None:  # noqa: ANN401
        if type(self) is cls or name in names:
            raise FrozenInstanceError(f"cannot assign to field {name!r}")
        super(cls, self).__setattr__(name, value)  # type: ignore[misc]

    def __delattr__(self: Any, name: str) -> None:  # noqa: ANN401
        if type(self) is cls or name in names:
            raise FrozenInstanceError(f"cannot delete field {name!r}")
        super(cls, self).__delattr__(name)  # type: ignore[misc]

    def __getstate__(self: Any) -> list[Any]:  # noqa: ANN401
        return list(everything(self))

    def __setstate__(self: Any, state: list[Any]) -> None:  # noqa: ANN401
        for name, value in zip(names, state):
            object.__setattr__(self, name, value)

    for method in (__eq__, __hash__, __repr__, __setattr__, __delattr__, __getstate__, __setstate__):
        method.__qualname__ = f"{cls.__qualname__}.{method.__name__}"
        setattr(cls, method.__name__, method)


def frozen(cls: C) -> C:
    """`@dataclass(frozen=True, slots=True)`, made faster to build and to import: fast_init's __init__, and
    _value_methods' equality, hash, repr and frozenness instead of the functions the decorator compiles for each class,
    which were most of this module's import (issue 27, one-file start-up). Every class here is one of these."""
    made = dataclass(slots=True, init=False, repr=False, eq=False)(cls)
    _value_methods(made)
    fast_init(made)
    return made


SourceName = Literal["kubernetes", "compose", "dockerfile", "image"]
ContainerKind = Literal["container", "init", "sidecar", "ephemeral"]


@frozen
class Origin:
    """Where a value came from: the file as the user gave it ("-" for stdin), 1-based line, field path."""

    file: str
    line: int | None
    path: str


@frozen
class Located(Generic[T]):
    """A value together with its origin."""

    value: T
    origin: Origin


@frozen
class Port:
    """A port published on the host. Container-only ports (compose `expose`, k8s containerPort) are not here.

    `published` is the host port or range as text ("5000", "8000-8010"); None means Docker picks a
    random host port. `host_ip` None means all interfaces.
    """

    target: str
    published: str | None
    host_ip: str | None
    protocol: str
    text: str
    origin: Origin


@frozen
class HistoryEntry:
    """One entry of an image config's `history` (what the builder recorded for each step)."""

    created_by: str = ""
    comment: str = ""
    author: str = ""
    created: str = ""
    empty_layer: bool = False


@frozen
class ImageConfig:
    """The parts of an OCI/Docker image config the rules read, from a registry or an archive.

    `digest` is the manifest digest the config was reached through (None when unknown, e.g. a
    `docker save` tarball without one); `config_digest` the config blob's own digest.
    `user_uid` is the uid of a named `user` as the image's /etc/passwd gives it, when
    `images.resolve_user_names` asked for it and it was found.
    """

    reference: str
    digest: str | None
    user: str  # "" when the image sets no user
    config_digest: str | None = None
    os: str = "linux"
    architecture: str = ""
    exposed_ports: tuple[str, ...] = ()
    env: tuple[str, ...] = ()
    labels: Mapping[str, str] = field(default_factory=dict)
    history: tuple[HistoryEntry, ...] = ()
    user_uid: int | None = None
    # image-size: each layer's size in bytes, bottom layer first, as the manifest (or a `docker save` archive) gives
    # them; None when unknown. `layers_compressed` is False when they are uncompressed tar sizes (`docker save`,
    # or an OCI manifest with uncompressed layer media types).
    layer_sizes: tuple[int, ...] | None = None
    layers_compressed: bool = True
    # healthcheck: the config's Healthcheck.Test (["NONE"] turns an inherited one off); None when it sets none
    healthcheck: tuple[str, ...] | None = None


@frozen
class SignatureCheck:
    """What verifying one image reference's signatures found (images/verify/). Never a trust root: made afresh from
    the signature objects on every use, whatever caches held them.

    `status`: verified; unsigned (no signature object at all); invalid (signatures, none valid for the entry's keys
    and this digest, or not every runnable platform signed); unavailable (the registry did not answer in time).
    `detail` is our own sentence (never a registry's words or an address); `error` the precise registry failure of an
    unavailable check, for the CLI and the webhook's audit line only.
    """

    image: str  # the reference as written
    status: Literal["verified", "unsigned", "invalid", "unavailable"]
    digest: str  # what had to be signed: the reference's digest (an index's for a multi-platform image); "" if unknown
    detail: str
    tag: str | None = None  # the tag the digest was resolved from (verified at admission, not at pull)
    key: str = ""  # the label of the key that verified (as the policy names it)
    key_hint: str = ""
    format: str = ""  # "cosign bundle v0.3", "cosign legacy signature"
    where: str = ""  # where the valid signature was found: "OCI referrers API", "tag sha256-….sig", "OCI layout"
    error: str = ""


@frozen
class AttestationCheck:
    """What checking one image reference's build provenance found (images/verify/provenance.py): made afresh on every
    use from the attestations, never cached as a verdict.

    `status`: verified (every runnable platform has trusted SLSA provenance that the entry's constraints accept);
    unsigned (provenance present but trusted by nothing: BuildKit's, in an index no valid signature covers); missing
    (a runnable platform has no provenance at all); invalid (trusted provenance the constraints refuse, or one that is
    not about the manifest it is attached to); unavailable (the registry did not answer in time).
    """

    image: str
    status: Literal["verified", "unsigned", "missing", "invalid", "unavailable"]
    digest: str
    detail: str  # our own sentence: what was proven ("built by BuildKit (SLSA v1) from Dockerfile at ...") or why not
    tag: str | None = None
    error: str = ""  # unavailable: the precise registry failure (CLI and the webhook's audit line only)


@frozen
class CarriedAttestation:
    """A BuildKit attestation an archive or OCI layout carries in its index: the statement and the platform manifest
    its index entry says it is about (`vnd.docker.reference.digest`)."""

    about: str
    statement: bytes


@frozen
class CarriedSignature:
    """A cosign signature object an image archive or OCI layout carries (what `cosign save` writes, or a copied
    `sha256-<hex>` / `.sig` tag): raw, unverified, filed under the digest it says it is about."""

    format: Literal["bundle", "legacy", "dsse"]
    data: bytes  # bundle: the Sigstore bundle JSON; legacy: the simple-signing payload; dsse: a `.att` DSSE envelope
    subject: str  # the digest it is filed under (a bundle manifest's subject, the digest a payload names)
    signature: str = ""  # legacy: the base64 signature annotation


@frozen
class Carried:
    """What an archive says about one of its images for signature checks: its name, the digest the name points at
    (an index for a multi-platform image), the index's entries, and every signature object the archive holds."""

    image: str | None  # None: the archive names no image (`cosign save` writes no names)
    digest: str | None
    platforms: tuple[tuple[str, str], ...] | None  # (digest, "os/arch[/variant]") of an index's entries; None: a manifest
    signatures: tuple[CarriedSignature, ...]
    kind: str  # "OCI layout", "oci-archive", "docker save archive": where the signatures were looked for
    attestations: tuple[CarriedAttestation, ...] = ()  # BuildKit's, from the image's index


@frozen
class ContextCopy:
    """A COPY or ADD that takes files from the build context, in a stage the built image needs.

    `files` are the context files it would copy: paths relative to the context root, `/`-separated, after
    `.dockerignore` and the instruction's `--exclude`s, shallow ones first. `stage` is its stage's label;
    `reached` says how the built stage needs that stage ("" when it is the built stage itself).
    `public` are those of `files` with a secret-looking name that were opened and are PEM files without a private
    key in their first 64 KiB (a certificate, DH parameters, a public key): public material, not a secret.
    """

    instruction: str  # as written, whitespace collapsed: "COPY --chown=app . /src"
    origin: Origin  # the instruction's line in the Dockerfile
    stage: str
    reached: str
    files: tuple[str, ...]
    public: tuple[str, ...] = ()


@frozen
class BuildContext:
    """What a build sends from its context and what its COPY/ADD instructions take (sources/context.py).

    `dockerignore` is the ignore file that applies (`<Dockerfile>.dockerignore` beside the Dockerfile, else
    `.dockerignore` in the context), or where one would go when there is none (`dockerignore_exists` False).
    `cut` says why the bounded walk of the context stopped early (the files past it were not seen);
    `error` why the context could not be read as Docker reads it (an invalid `.dockerignore`).
    """

    path: str  # the context as shown
    dockerignore: str
    dockerignore_exists: bool
    copies: tuple[ContextCopy, ...]
    cut: str | None = None
    error: str | None = None


@frozen
class Setting:
    """A security-relevant value as the runtime reads it (`value`), the text that set it (`text`), and where.

    Kubernetes values are PSA's field values as written (`Unconfined`, `SYS_ADMIN`); compose values are Docker's
    after its normalisation (`cap_add: [cap_sys_admin]` gives `SYS_ADMIN`, `security_opt: [seccomp=unconfined]`
    gives seccomp `Unconfined`), with `text` the entry as written for messages.
    """

    value: str
    text: str
    origin: Origin


@frozen
class SecurityContext:
    """One securityContext level (a pod's or a container's) with the fields Pod Security Admission reads.

    Compose services carry their counterparts here: `privileged`, `cap_add`/`cap_drop`, and `security_opt`
    entries (`seccomp`/`apparmor` unconfined or a profile, `label:disable` as SELinux type `spc_t`,
    `no-new-privileges` as allowPrivilegeEscalation false, `systempaths=unconfined` as procMount `Unmasked`).
    """

    privileged: Setting | None = None
    allow_privilege_escalation: Setting | None = None  # "true" / "false"
    capabilities_add: tuple[Setting, ...] = ()
    capabilities_drop: tuple[Setting, ...] = ()
    proc_mount: Setting | None = None
    seccomp: Setting | None = None  # seccompProfile.type
    apparmor: Setting | None = None  # appArmorProfile.type
    selinux_type: Setting | None = None
    selinux_user: Setting | None = None
    selinux_role: Setting | None = None
    host_process: Setting | None = None  # windowsOptions.hostProcess: "true" / "false"


@frozen
class HostMount:
    """A volume the pod (or a bind mount the compose service) declares, for least-privilege.

    `kind` is the Kubernetes volume source (`hostPath`, `emptyDir`, `nfs`, ... or `unknown` when none is
    recognised) or `bind` for a compose bind mount; `path` the host path of a hostPath or bind mount, as written
    after Compose's own resolution (relative paths joined to the project directory, `~` expanded).
    """

    name: str  # the volume's name (Kubernetes) or the mount target (compose)
    kind: str
    path: str | None
    origin: Origin
    # compose binds (least-privilege, host system paths): the bind is read-only (`:ro`, `read_only: true`), which lets
    # the public files a service may read (time zone, CA certificates) pass; and its source was written relative to the
    # project directory without leaving it, or to `~`: the project's own files, whatever folder the project is in
    read_only: bool = False
    relative: bool = False


@frozen
class EnvVar:
    """An environment variable (or a Dockerfile ARG default) whose value is written literally where it is set, for
    no-secret-in-env: Kubernetes `env[].value`, compose `environment` (not a value interpolated from `.env` or the
    shell), Dockerfile `ENV` and `ARG` defaults (as written, before substitution), and a resolved image config's `Env`.
    References (`valueFrom`, a bare compose name, an ARG without a default) are not here: they hold no value.

    `via` says where: "env" (Kubernetes), "environment" (compose), "ENV", "ARG" (Dockerfile), "Env" (image config).
    The value is for the rule to judge; no finding ever shows it.
    """

    name: str
    value: str
    via: str
    origin: Origin


@frozen
class ServiceSpec:
    """A Kubernetes Service, for no-host-port (issue 27): the fields that open a port on the nodes or claim an address.

    A Service is a Workload with no containers and this `service`; `type` is as written ("ClusterIP" when unset, as
    the API server defaults it). `node_ports` are the `ports[]` entries of a NodePort Service (or of a LoadBalancer,
    whose node ports are allocated for the balancer): Port.published is the `nodePort` as written, None when the API
    server allocates one at random; `target` the Service `port`. `external_ips` are `externalIPs` (CVE-2020-8554).
    """

    type: Setting  # value: the type as written, or "ClusterIP" with the Service's `spec` as origin when unset
    node_ports: tuple[Port, ...] = ()
    external_ips: tuple[Setting, ...] = ()
    allocate_node_ports: bool | None = None  # LoadBalancer `allocateLoadBalancerNodePorts` as written (default true)


@frozen
class AccountToken:
    """What decides whether a Pod gets its ServiceAccount's API token mounted, for service-account-token (issue 27).

    `pod` is the pod spec's `automountServiceAccountToken` as written (value "true"/"false"); `account` the
    ServiceAccount it runs as (`default` when unset); `volume` a `kube-api-access-*` projected volume of the spec,
    which the ServiceAccount admission plugin adds when the token is mounted (a stored Pod, or one at the webhook).
    `injected`: the object has passed that plugin (a Pod at the validating webhook, or listed from the cluster), so a
    missing volume is evidence that no token is mounted. `account_automount` is the ServiceAccount's own field as read
    from the cluster ("true", "false", or "" when it leaves it unset); None when it was not read, and then
    `account_note` says why (CI cannot read it; a read that failed), in the words a finding can carry.
    """

    account: str
    origin: Origin  # where a finding points when nothing is written: serviceAccountName, else the pod spec
    pod: Setting | None = None
    volume: Setting | None = None
    injected: bool = False
    account_automount: str | None = None
    account_note: str | None = None


@frozen
class Probe:
    """A Kubernetes probe as healthcheck compares them: which probe, and what it checks, normalised so that two probes
    that ask the same thing compare equal (`GET http://<pod IP>:8080/healthz`, `TCP <pod IP>:5432`, `gRPC <pod IP>:9090
    service ''`, `exec ["/bin/check"]`; a named port resolved through the container's ports; "" when it has no
    handler). Timing (periodSeconds, failureThreshold, ...) is left out: it changes when a check fails, not what it
    checks (issue 27)."""

    name: str  # livenessProbe, readinessProbe, startupProbe
    check: str
    origin: Origin  # the probe's key


@frozen
class UnresolvedBase:
    """A base image named only by a build arg that has no value: `ARG BASE_IMAGE` then `FROM ${BASE_IMAGE}`, built
    without `--build-arg BASE_IMAGE=...` (or compose `build.args`). Which image it is cannot be known, so it is not
    checked; image-tag-pinned says so.
    """

    text: str  # the operand as written: "${BASE_IMAGE}"
    args: tuple[str, ...]  # the build args it needs that have no value, in order of use: ("BASE_IMAGE",)
    origin: Origin


@frozen
class Container:
    """One container as the rules see it: a k8s container, a compose service, a Dockerfile's final stage, an image.

    - `user`: the user the runtime is told to use (compose `user:`); it overrides the image's.
    - `image_user`: the user the image itself sets, when known without a registry (the build
      Dockerfile's USER; "" means the Dockerfile sets none, i.e. root).
    - `image_user_unknown`: why the image user could not be known statically (remote/unreadable build context).
    - `image_user_uid`: the uid the build Dockerfile gives a named `image_user` (`RUN useradd -u 1001 app`), for fixes.
    - `run_as_user` / `run_as_non_root`: Kubernetes effective securityContext (pod merged with container).
    - `image_config` / `image_config_error`: the resolved config of `image`, or why it could not be had
      (set only when images are resolved; see images/enrich.py).
    - `inherits_user_from`: when a build Dockerfile sets no USER and its chain starts FROM an external
      image, that image: its config (`base_config`, or `base_config_error`) then gives the user; until it is
      resolved the user is unknown (a chain that starts FROM scratch, with neither set, runs as root).
    - `inherits_unresolved`: when a build Dockerfile sets no USER and its chain starts FROM a base image named by a
      build arg with no value: which image, and so which user, is unknown.
    - `unresolved_bases`: FROMs whose image comes from a build arg with no value (not in `base_images`).
    - `built`: a compose service with `build:`: its `image` (if any) names what the build produces and tags
      locally, not an image it pulls.
    - `run_as_user_name`: Kubernetes effective `securityContext.windowsOptions.runAsUserName` (pod merged with
      container): the account a Windows container runs as.
    """

    name: str
    origin: Origin
    kind: ContainerKind = "container"
    image: Located[str] | None = None
    built: bool = False
    base_images: tuple[Located[str], ...] = ()
    unresolved_bases: tuple[UnresolvedBase, ...] = ()
    user: Located[str] | None = None
    image_user: Located[str] | None = None
    image_user_unknown: str | None = None
    image_user_uid: int | None = None
    run_as_user: Located[int] | None = None
    run_as_non_root: Located[bool] | None = None
    run_as_user_name: Located[str] | None = None
    limits: Mapping[str, Located[str]] = field(default_factory=dict)
    host_ports: tuple[Port, ...] = ()
    image_config: ImageConfig | None = None
    image_config_error: str | None = None
    inherits_user_from: Located[str] | None = None
    inherits_unresolved: UnresolvedBase | None = None
    base_config: ImageConfig | None = None
    base_config_error: str | None = None
    build_context: BuildContext | None = None  # the build's context, when it is on disk and a COPY/ADD reads it
    # least-privilege: the container's own securityContext (compose: the service's privileges), None when it has none
    security: SecurityContext | None = None
    # healthcheck: the Kubernetes probes the container sets ("livenessProbe", "readinessProbe", "startupProbe");
    # for compose the effective health check of compose or the build Dockerfile's final stage: value "check",
    # "disabled" (compose `disable: true` / `test: [NONE]`) or "none" (Dockerfile `HEALTHCHECK NONE`), None if neither says
    probes: tuple[str, ...] = ()
    healthcheck: Setting | None = None
    # archives: the image's name, digests and the signature objects the archive carries (verified offline)
    carried: Carried | None = None
    # image-signature: the checks of `image` and `base_images` that an `images.verify` entry matched, when verified
    # (resolution on, or an archive that carries its signatures); () when nothing was checked
    signatures: tuple[SignatureCheck, ...] = ()
    # image-attestation: the provenance checks of the same references, when an entry asks for provenance
    attestations: tuple[AttestationCheck, ...] = ()
    # no-secret-in-env: variables set with a literal value in the object's own text (for compose, also the build
    # Dockerfile's ENV and ARG defaults); a resolved image's Env is read from `image_config`
    env: tuple[EnvVar, ...] = ()
    # healthcheck: what each Kubernetes probe checks, to find a livenessProbe that is the readinessProbe (issue 27)
    probe_checks: tuple[Probe, ...] = ()
    # read-only-root-filesystem: Kubernetes securityContext.readOnlyRootFilesystem ("true"/"false" as written), compose
    # `read_only`; None when unset (writable, the runtimes' default). Not on SecurityContext: PSA does not read it.
    read_only_root: Setting | None = None


@frozen
class ExemptionClaim:
    """An exemption written on the object itself (compose `x-admission`, k8s annotations); the engine validates it."""

    rules: tuple[str, ...]
    reason: str | None
    expires: str | None
    via: Literal["x-admission", "annotation"]
    origin: Origin


@frozen
class SchemaIssue:
    """A value real Docker Compose rejects but that can still be read (architecture §4 compose-schema)."""

    message: str
    origin: Origin
    value: str | None = None
    container: str | None = None
    remediation: str | None = None


@frozen
class OwnerRef:
    """A controller ownerReference (`metadata.ownerReferences[]` with `controller: true`), or a verified owner.

    `manual_runs_only`: a verified CronJob lent to a manual run whose requester may not patch it: it lends only
    its exemptions that say `manual_runs: true`."""

    api_version: str
    kind: str
    name: str
    uid: str
    manual_runs_only: bool = False


@frozen
class Workload:
    """One object the rules evaluate: a pod-bearing k8s object, a k8s Service, a compose service, a Dockerfile or an image.

    `runtime` is True when the object says how a container runs (pods, compose services), so
    resource and host-port rules apply; False for Dockerfiles and images, which only describe an image.
    `host_network` carries k8s `hostNetwork: true` or compose `network_mode: host` / `service:X` on a host-networked X.
    """

    source: SourceName
    kind: str
    name: str
    namespace: str | None
    origin: Origin
    containers: tuple[Container, ...]
    runtime: bool = True
    host_network: Located[str] | None = None
    os: str | None = None  # Kubernetes spec.os.name as written (what PSA reads), an image config's os
    # Why the containers are known to be Windows containers, for the user rules (value "windows", text the evidence:
    # `os.name: windows`, `nodeSelector kubernetes.io/os: windows`, a Windows base image or SHELL); None: Linux or unknown
    windows: Setting | None = None
    exemption_claims: tuple[ExemptionClaim, ...] = ()
    schema_issues: tuple[SchemaIssue, ...] = ()
    # least-privilege, pod level (compose: the service's pid/ipc and bind mounts): PSA reads these once per pod
    host_pid: Setting | None = None  # Kubernetes hostPID: true, compose pid: host
    host_ipc: Setting | None = None  # Kubernetes hostIPC: true, compose ipc: host
    pod_security: SecurityContext | None = None  # the pod's securityContext (seccomp, AppArmor, SELinux, hostProcess)
    volumes: tuple[HostMount, ...] = ()
    sysctls: tuple[Setting, ...] = ()
    apparmor_annotations: tuple[Setting, ...] = ()  # container.apparmor.security.beta.kubernetes.io/*: value = profile, text = key
    host_users: bool | None = None  # Kubernetes hostUsers (false: a user namespace)
    # least-privilege, compose only: `devices` entries (value: the host device or CDI name, text: the entry as written)
    # and `device_cgroup_rules` (value: the rule), which give the container host devices as a /dev hostPath would;
    # `userns_mode: host` and `cgroup: host` (warnings: Kubernetes' defaults have the same effect)
    devices: tuple[Setting, ...] = ()
    device_cgroup_rules: tuple[Setting, ...] = ()
    host_userns: Setting | None = None
    host_cgroup: Setting | None = None
    restart_policy: str | None = None  # Kubernetes pod restartPolicy as written (healthcheck skips run-to-completion pods)
    # What is known about namespace LimitRange defaults, for resource-limits messages: None in CI (which cannot see
    # LimitRanges); the webhook says which applied, or why none could be counted.
    limits_note: str | None = None
    # The object's own controller reference as written (Kubernetes only); nothing trusts it until it is verified.
    controller: OwnerRef | None = None
    # The top controller (Deployment, StatefulSet, ...) that the webhook verified through the API for a request made
    # by a controller identity: exemptions match it as well as the object itself (architecture §5 as amended).
    owner: OwnerRef | None = None
    # no-host-port: a Kubernetes Service (a Workload with no containers); None for every other object (issue 27)
    service: ServiceSpec | None = None
    # service-account-token: whether the pod mounts its ServiceAccount token (Kubernetes pods and templates; issue 27)
    token: AccountToken | None = None


# --- construction speed ------------------------------------------------------------------------------

def signed_references(workload: Workload, container: Container) -> list[Located[str]]:
    """The references whose signatures an `images.verify` entry can require of a container: the image it pulls (not a
    compose service's own build output; an archive's image carries its own signatures) and the images its build
    starts FROM. Enrichment verifies exactly these and the image-signature rule reads exactly these."""
    out = list(container.base_images)
    if container.image is not None and container.image.value and not container.built:
        out.insert(0, container.image)
    elif workload.source == "image" and container.carried is not None:
        out.insert(0, Located(container.carried.image or workload.name, container.origin))
    return out


