"""What a container may do to its host: least-privilege (architecture §4).

Kubernetes mirrors Pod Security Admission's checks (k8s.io/pod-security-admission/policy/check_*.go, the
current policy version), field for field, with PSA's details as the model for messages; one finding per
container (or per pod-level field) so that exemptions and fingerprints can name it. Compose gets the
counterparts after Docker's own normalisation (the source adapter normalises; see sources/compose_runtime.py).
"""

from __future__ import annotations

import posixpath
import re
from collections.abc import Iterator, Mapping
from functools import lru_cache
from typing import Any

from admission.findings import Violation
from admission.model import Container, HostMount, SecurityContext, Setting, Workload
from admission.policy.rule import Param, rule
from admission.policy.rules.common import subject

# PSA capabilities_baseline: the container runtime's default set.
BASELINE_CAPABILITIES = ("AUDIT_WRITE", "CHOWN", "DAC_OVERRIDE", "FOWNER", "FSETID", "KILL", "MKNOD", "NET_BIND_SERVICE",
                         "SETFCAP", "SETGID", "SETPCAP", "SETUID", "SYS_CHROOT")
# Every Linux capability (capability.h), for validating `allowed_capabilities`.
_LINUX_CAPABILITIES = frozenset((
    "CHOWN", "DAC_OVERRIDE", "DAC_READ_SEARCH", "FOWNER", "FSETID", "KILL", "SETGID", "SETUID", "SETPCAP",
    "LINUX_IMMUTABLE", "NET_BIND_SERVICE", "NET_BROADCAST", "NET_ADMIN", "NET_RAW", "IPC_LOCK", "IPC_OWNER",
    "SYS_MODULE", "SYS_RAWIO", "SYS_CHROOT", "SYS_PTRACE", "SYS_PACCT", "SYS_ADMIN", "SYS_BOOT", "SYS_NICE",
    "SYS_RESOURCE", "SYS_TIME", "SYS_TTY_CONFIG", "MKNOD", "LEASE", "AUDIT_WRITE", "AUDIT_CONTROL", "SETFCAP",
    "MAC_OVERRIDE", "MAC_ADMIN", "SYSLOG", "WAKE_ALARM", "BLOCK_SUSPEND", "AUDIT_READ", "PERFMON", "BPF",
    "CHECKPOINT_RESTORE",
))
# PSA sysctls (v1.32): namespaced and isolated from other pods on the node.
SAFE_SYSCTLS = frozenset((
    "kernel.shm_rmid_forced", "net.ipv4.ip_local_port_range", "net.ipv4.tcp_syncookies", "net.ipv4.ping_group_range",
    "net.ipv4.ip_unprivileged_port_start", "net.ipv4.ip_local_reserved_ports", "net.ipv4.tcp_keepalive_time",
    "net.ipv4.tcp_fin_timeout", "net.ipv4.tcp_keepalive_intvl", "net.ipv4.tcp_keepalive_probes", "net.ipv4.tcp_rmem",
    "net.ipv4.tcp_wmem",
))
_SECCOMP_OK = frozenset(("RuntimeDefault", "Localhost"))  # seccompProfile and appArmorProfile types PSA allows
_SELINUX_TYPES = frozenset(("", "container_t", "container_init_t", "container_kvm_t", "container_engine_t"))
# PSA restrictedVolumes: the volume sources the restricted profile allows.
_RESTRICTED_VOLUME_OK = frozenset(("configMap", "csi", "downwardAPI", "emptyDir", "ephemeral", "image",
                                   "persistentVolumeClaim", "projected", "secret"))
_APPARMOR_PREFIX = "container.apparmor.security.beta.kubernetes.io/"

# Container runtime sockets, with /var/run written as /run (one folder: /var/run is a link to /run).
RUNTIME_SOCKETS = {
    "/run/docker.sock": "the Docker socket",
    "/run/containerd/containerd.sock": "the containerd socket",
    "/run/crio/crio.sock": "the CRI-O socket",
    "/run/podman/podman.sock": "the Podman socket",
    "/run/dockershim.sock": "the dockershim socket",
    "/run/cri-dockerd.sock": "the cri-dockerd socket",
    "/run/k3s/containerd/containerd.sock": "the k3s containerd socket",
}
# Folders that hold one (architecture §4: `/`, `/var`, `/run` contain them), each with the socket to name.
_SOCKET_FOLDERS: dict[str, str] = {"/var": "/run/docker.sock"}
for _socket in RUNTIME_SOCKETS:
    _parent = posixpath.dirname(_socket)
    while True:
        _SOCKET_FOLDERS.setdefault(_parent, _socket)
        if _parent == "/":
            break
        _parent = posixpath.dirname(_parent)


# Host system paths a compose bind may not mount, a path above one (`/var`, `/var/lib`) or a path inside one, with what
# each holds (issue 27: compose has no volume types to fall back on, so only these are denied, where PSA denies every
# hostPath). `/lib*` is the FHS and multilib names; /var/lib/containers is Podman's and CRI-O's storage.
HOST_SYSTEM_PATHS = {
    "/": "the host's whole filesystem",
    "/etc": "the host's configuration, with its password hashes, SSH host keys, TLS keys and the daemon's and "
            "kubelet's credentials",
    "/proc": "the host's processes, their environments and memory, and its kernel settings",
    "/sys": "the host's kernel, devices and cgroups",
    "/dev": "the host's devices, its disks and memory among them",
    "/boot": "the host's kernel and boot loader",
    "/root": "root's home, with its SSH keys and credentials",
    "/usr": "the host's programs and libraries",
    "/lib": "the host's libraries and kernel modules",
    "/lib32": "the host's libraries",
    "/lib64": "the host's libraries",
    "/libx32": "the host's libraries",
    "/bin": "the host's programs",
    "/sbin": "the host's system programs",
    "/var/lib/docker": "every Docker container's files and volumes",
    "/var/lib/containerd": "every containerd container's files",
    "/var/lib/containers": "every Podman and CRI-O container's files",
    "/var/lib/kubelet": "the kubelet's state, with every pod's volumes, secrets and service account tokens",
}
_ABOVE_SYSTEM_PATHS = {"/var": "/var/lib/docker", "/var/lib": "/var/lib/docker"}
# Public files a service may read: the time zone and the CA certificates it trusts. Read-only only: written, they
# change the host's clock zone or its trust store.
PUBLIC_READ_ONLY = ("/etc/localtime", "/etc/timezone", "/usr/share/zoneinfo", "/etc/ssl/certs", "/etc/pki/ca-trust",
                    "/etc/pki/tls/certs", "/etc/ca-certificates", "/usr/share/ca-certificates")
# Character devices that convey nothing: binding /dev/null over a file the image expects is a common way to blank it
_INERT_DEVICES = frozenset(("/dev/null", "/dev/zero", "/dev/full", "/dev/random", "/dev/urandom"))
# A CDI device name (`nvidia.com/gpu=all`): the vendor's declared device set, what a device plugin gives a Pod
_CDI_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9.-]*/[A-Za-z0-9][A-Za-z0-9_.-]*=[A-Za-z0-9_.:*-]+\Z")


def _clean_host(path: str) -> str:
    clean = posixpath.normpath(path)
    return "/" + clean.lstrip("/") if clean.startswith("//") else clean


def host_system_path(path: str | None) -> tuple[str, str] | None:
    """(relation, system path) when an absolute host path is ("is"), is inside ("in") or holds ("above") one of
    HOST_SYSTEM_PATHS; None otherwise (relative paths, other folders, the public files read-only callers allow)."""
    if not path or not path.startswith("/"):
        return None
    clean = _clean_host(path)
    if clean in _INERT_DEVICES:
        return None
    if clean in HOST_SYSTEM_PATHS:
        return "is", clean
    if clean in _ABOVE_SYSTEM_PATHS:
        return "above", _ABOVE_SYSTEM_PATHS[clean]
    parts = clean.split("/")
    for depth in (4, 2):  # /var/lib/<x> first, then the top-level folder
        prefix = "/".join(parts[:depth])
        if len(parts) > depth and prefix in HOST_SYSTEM_PATHS:
            return "in", prefix
    return None


def _public(path: str) -> bool:
    clean = _clean_host(path)
    return any(clean == p or clean.startswith(p + "/") for p in PUBLIC_READ_ONLY)


def _check_profile(value: Any) -> str | None:
    return None if value in ("baseline", "restricted") else f"{value!r} is not a profile (baseline or restricted)"


def _check_capability(value: Any) -> str | None:
    text = str(value)
    if text == "ALL":
        return "ALL is never allowed: it grants every capability"
    if text.upper().startswith("CAP_"):
        return f"{text!r}: write capabilities without the CAP_ prefix, as Kubernetes does ({text[4:].upper()})"
    if text not in _LINUX_CAPABILITIES:
        hint = f" (did you mean {text.upper()}?)" if text.upper() in _LINUX_CAPABILITIES else ""
        return f"{text!r} is not a Linux capability name{hint}"
    return None


@lru_cache(maxsize=32)
def _allowed(capabilities: tuple[Any, ...]) -> frozenset[str]:
    return frozenset(str(c) for c in capabilities)


def runtime_socket(path: str | None) -> tuple[str, str] | None:
    """(socket, what) when a host path is a container runtime socket or a folder above one, else None."""
    if not path or not path.startswith("/"):
        return None
    clean = posixpath.normpath(path)
    if clean.startswith("//"):
        clean = "/" + clean.lstrip("/")
    if clean == "/var/run" or clean.startswith("/var/run/"):
        clean = clean[4:]
    if clean in RUNTIME_SOCKETS:
        return clean, RUNTIME_SOCKETS[clean]
    socket = _SOCKET_FOLDERS.get(clean)
    return (socket, RUNTIME_SOCKETS[socket]) if socket is not None else None


def _socket_message(who: str, path: str, found: tuple[str, str]) -> str:
    socket, what = found
    if runtime_path(path) == socket:
        mounted = f"{what} {path}"
    else:
        shown = "/var" + socket if runtime_path(path) in ("/", "/var") or path.startswith("/var/run") else socket
        mounted = f"{path}, a folder that holds {what} ({shown})"
    return (f"{who} mounts {mounted}: whoever can reach that socket can tell the runtime to start a privileged "
            "container with the host's root filesystem mounted, which is root on the host")


def _system_message(who: str, mount: HostMount, relation: str, system: str) -> str:
    path = mount.path or ""
    if relation == "is":
        mounted = f"the host's {system} at {mount.name}"
    elif relation == "in":
        mounted = f"{path} at {mount.name}, inside the host's {system}"
    else:
        mounted = f"{path} at {mount.name}, a folder that holds the host's {system}"
    message = f"{who} bind-mounts {mounted}: {HOST_SYSTEM_PATHS[system]}"
    if mount.read_only:
        return message + "; read-only does not help, reading is enough for keys, password hashes and tokens"
    if relation != "above" and _public(path):
        return message + f"; {path} passes read-only ({path}:{mount.name}:ro)"
    return message


_SYSTEM_FIX = ("mount the project's own files (a relative path such as ./config) or a named volume instead; the time "
               "zone and CA certificates may be mounted read-only (/etc/localtime:/etc/localtime:ro); a node agent "
               "that must read the host is exempted by name, with its reason")

_SOCKET_FIX = ("do not mount the runtime socket; if the service must manage containers, give it a narrowly scoped "
               "API instead (for example a socket proxy that allows only the calls it needs) or build images with a "
               "daemonless builder (BuildKit rootless, kaniko, buildah)")


@rule("least-privilege", severity="deny", summary="Containers get no privileges beyond what they need.",
      applies={"kubernetes": "PSA baseline's checks (restricted's with `profile: restricted`), all containers",
               "compose": "privileged, pid/ipc host, cap_add, unconfined security_opt, bind mounts of runtime sockets "
                          "and host system paths, devices, device_cgroup_rules; userns_mode/cgroup host (warn)"},
      params=(Param("profile", str, "baseline", "`baseline` (PSA's baseline level) or `restricted` (adds PSA's "
                    "restricted checks; compose also needs no-new-privileges and cap_drop: [ALL])", _check_profile),
              Param("allowed_capabilities", list, BASELINE_CAPABILITIES, "capabilities a container may add under "
                    "`baseline` (names as Linux spells them, without CAP_; ALL is never allowed); `restricted` allows "
                    "only NET_BIND_SERVICE, as PSA does", _check_capability)))
def least_privilege(workload: Workload, params: Mapping[str, Any]) -> Iterator[Violation]:
    """Deny what breaks container isolation: Pod Security Admission's checks for Kubernetes, their counterparts for compose.

    Why:
        A privileged container, a shared host PID or IPC namespace, an added capability such as SYS_ADMIN, an
        unconfined seccomp or AppArmor profile, or a host path mounted in: each gives a process in the container
        a way out to the host. Kubernetes' own Pod Security Admission defines which fields break isolation; this
        rule checks the same fields with the same allowed values, so a manifest that passes here passes PSA's
        `baseline` level (or `restricted` with `profile: restricted`) in the cluster, and fails in CI rather than
        at deploy time. The checks: privileged, hostPID/hostIPC, capabilities outside the runtime's default set,
        hostPath volumes, Windows hostProcess, procMount, seccomp and AppArmor profiles other than RuntimeDefault
        or Localhost, SELinux type/user/role, and sysctls outside PSA's safe list. Restricted adds
        allowPrivilegeEscalation: false, capabilities drop ALL (add only NET_BIND_SERVICE), a seccomp profile on
        the pod or every container, and only ephemeral or PersistentVolume-backed volume types. Windows pods skip
        exactly what PSA skips for them: the restricted checks on capabilities, seccomp and allowPrivilegeEscalation.
        Host ports and hostNetwork stay with no-host-port, runAsNonRoot and runAsUser with run-as-non-root.

        A container runtime socket (`/var/run/docker.sock`, containerd's, CRI-O's, Podman's) or a folder above one
        (`/`, `/var`, `/run`) mounted into a container is called out on its own: whoever reaches the socket can
        start a privileged container with the host's filesystem mounted, which is root on the host.

        Compose, after Docker's normalisation: `privileged: true`, `pid: host`, `ipc: host`, `cap_add` outside
        the allowed list (names upper-cased, `CAP_` optional, ALL never allowed), `security_opt` entries that
        turn confinement off (`seccomp:unconfined`, `apparmor:unconfined`, `label:disable`, `systempaths=unconfined`,
        either separator), and bind mounts of a runtime socket in any syntax. `restricted` also requires
        `no-new-privileges` and `cap_drop: [ALL]`.

        Compose's host paths: PSA denies every hostPath because a Pod has other volume types to fall back on; a
        compose service has only binds and named volumes, so binding the project's own files must stay possible.
        What is denied is a bind (short or long syntax, or a named volume the local driver binds with
        `driver_opts: {type: none, o: bind, device: ...}`) of a host system path: `/`, `/etc`, `/proc`, `/sys`,
        `/dev`, `/boot`, `/root`, `/usr`, `/lib`, `/lib32`, `/lib64`, `/libx32`, `/bin`, `/sbin`, `/var/lib/docker`,
        `/var/lib/containerd`, `/var/lib/containers`, `/var/lib/kubelet`, a folder above one (`/var`, `/var/lib`) or a
        path inside one (`/etc/ssh`, `/proc/1`, `/var/lib/docker/volumes`). Read-only excuses none of them: shadow
        files, SSH keys, pod tokens and every container's files are readable. The one exception is public files
        mounted read-only: the time zone (`/etc/localtime`, `/etc/timezone`, `/usr/share/zoneinfo`) and the CA
        certificates (`/etc/ssl/certs`, `/etc/pki/ca-trust`, `/etc/pki/tls/certs`, `/etc/ca-certificates`,
        `/usr/share/ca-certificates`), which countless compose files mount and which hold nothing secret, and the
        inert devices `/dev/null`, `/dev/zero`, `/dev/full`, `/dev/random` and `/dev/urandom`. Paths are
        judged as Compose resolves them (normalised, symlinks not followed); a relative bind that stays inside the
        project directory, and a `~` bind, are the project's or the user's own files and pass wherever the project
        is checked out; other absolute paths (`/srv/data`, `/var/log`, `/home/app`) pass. `devices` and
        `device_cgroup_rules` give host devices, as a `/dev` hostPath would, and are denied; CDI device names,
        `gpus:` and `deploy.resources.reservations.devices` pass (what a device plugin gives a Pod).
        `userns_mode: host` and `cgroup: host` are warnings, whatever the rule's severity: their Kubernetes
        counterparts are the defaults (`hostUsers: true`, allowed by PSA, matters only on a daemon with
        user-namespace remapping; `cgroup: host` is Docker's default on cgroup v1 hosts). Peers: compose-lint's
        CL-0013 (sensitive mounts; it lets the time zone files pass read-only, as here) and CL-0016 (devices: it
        flags disks and a few others, where this rule denies every host device, as PSA's hostPath check would);
        compose-lint dropped `userns_mode: host` as a no-op on a daemon at defaults, which is why it is only a
        warning here.

    Fix:
        Remove `privileged`, `hostPID`/`hostIPC` (`pid`/`ipc: host`) and added capabilities the process does not
        need; grant one capability (`NET_BIND_SERVICE`) rather than all. Keep the runtime's default seccomp and
        AppArmor profiles. Replace hostPath volumes with emptyDir, a ConfigMap/Secret or a PersistentVolumeClaim.
        Never mount the runtime socket: use a socket proxy that allows only the calls needed, or a daemonless
        image builder. In compose, bind the project's own files (`./config:/etc/app:ro`) or a named volume rather
        than a host system path, and ask for GPUs with `gpus:` rather than `devices:`; a node agent that must read
        the host (a log shipper, an exporter) is exempted by name, with its reason. For `restricted`, set `allowPrivilegeEscalation: false`, `capabilities: {drop: [ALL]}` and
        `seccompProfile: {type: RuntimeDefault}` (compose: `security_opt: [no-new-privileges:true]`,
        `cap_drop: [ALL]`).

    Example:
        ```yaml
        # compose: denied, the Docker socket is root on the host, and /etc holds its keys
        services:
          agent:
            volumes: ["/var/run/docker.sock:/var/run/docker.sock", "/etc:/host-etc:ro"]
          app:  # passes: the project's own files and the time zone, read-only
            volumes: ["./config:/etc/app:ro", "/etc/localtime:/etc/localtime:ro"]
        # Kubernetes: passes baseline and restricted
        securityContext:
          allowPrivilegeEscalation: false
          capabilities: {drop: [ALL]}
          seccompProfile: {type: RuntimeDefault}
        ```
    """
    restricted = params.get("profile", "baseline") == "restricted"
    if workload.source == "kubernetes":
        yield from _kubernetes(workload, restricted, _allowed(tuple(params.get("allowed_capabilities", BASELINE_CAPABILITIES))))
    elif workload.source == "compose":
        yield from _compose(workload, restricted, _allowed(tuple(params.get("allowed_capabilities", BASELINE_CAPABILITIES))))


# --- Kubernetes: PSA's checks ----------------------------------------------------------------------

def _v(message: str, fix: str, setting: Setting, key: str, container: str | None) -> Violation:
    return Violation(message=message, remediation=fix, origin=setting.origin, value=setting.value, container=container,
                     key=key)


def _kubernetes(workload: Workload, restricted: bool, allowed: frozenset[str]) -> Iterator[Violation]:
    pod = workload.pod_security
    windows = workload.os == "windows"
    # PSA's restricted capability and seccomp checks replace the baseline ones (OverrideCheckIDs), and all three
    # restricted container checks skip Windows pods (v1.25+).
    container_rules = not (restricted and windows)
    kinds = f"{workload.kind} '{workload.name}'"

    # hostNamespaces (hostNetwork is no-host-port's)
    if workload.host_pid is not None:
        yield _v(f"host namespaces: {kinds} sets hostPID=true, so its containers see and can signal every process "
                 "on the node", "remove hostPID: true", workload.host_pid, "hostPID", None)
    if workload.host_ipc is not None:
        yield _v(f"host namespaces: {kinds} sets hostIPC=true, so its containers share the node's System V IPC and "
                 "shared memory", "remove hostIPC: true", workload.host_ipc, "hostIPC", None)

    # hostPathVolumes; restrictedVolumes
    for volume in workload.volumes:
        if volume.kind == "hostPath":
            yield _host_path(workload, volume)
        elif restricted and volume.kind not in _RESTRICTED_VOLUME_OK:
            yield Violation(
                message=f"restricted volume types: volume '{volume.name}' uses the restricted volume type "
                        f"\"{volume.kind}\"", remediation="use configMap, secret, emptyDir, projected, downwardAPI, "
                        "csi, ephemeral, image or a persistentVolumeClaim (bind other storage through a PersistentVolume)",
                origin=volume.origin, value=volume.kind, key=f"volume {volume.name} {volume.kind}")

    # sysctls
    for sysctl in workload.sysctls:
        if sysctl.value not in SAFE_SYSCTLS:
            yield _v(f"forbidden sysctls: {kinds} sets {sysctl.value}, which is not on Pod Security's list of safe "
                     "(namespaced and isolated) sysctls", "remove the sysctl, or set it on the node instead",
                     sysctl, f"sysctl {sysctl.value}", None)

    # AppArmor annotations (container.apparmor.security.beta.kubernetes.io/<container>)
    for annotation in workload.apparmor_annotations:
        profile = annotation.value
        if profile == "" or profile == "runtime/default" or profile.startswith("localhost/"):
            continue
        target = annotation.text[len(_APPARMOR_PREFIX):]
        yield _v(f"forbidden AppArmor profile: annotation {annotation.text}=\"{profile}\" must be runtime/default or "
                 "localhost/<profile>", "remove the annotation or set appArmorProfile.type: RuntimeDefault",
                 annotation, f"apparmor annotation {target}",
                 target if any(c.name == target for c in workload.containers) else None)

    # pod-level securityContext
    if pod is not None:
        yield from _pod_level(workload, pod, restricted, container_rules, kinds)

    relax_proc_mount = workload.host_users is False and not restricted
    check_restricted = restricted and container_rules
    seccomp_pod_ok = explicit_bad_seccomp = False
    if check_restricted:
        seccomp_pod_ok = pod is not None and pod.seccomp is not None and pod.seccomp.value in _SECCOMP_OK
        explicit_bad_seccomp = (pod is not None and pod.seccomp is not None and pod.seccomp.value not in _SECCOMP_OK) or any(
            c.security is not None and c.security.seccomp is not None and c.security.seccomp.value not in _SECCOMP_OK
            for c in workload.containers)
    for container in workload.containers:
        sc = container.security
        if sc is None and not check_restricted:
            continue
        who = subject(workload, container)
        if sc is not None:
            yield from _container_baseline(sc, who, container.name, allowed, restricted, relax_proc_mount, container_rules)
        if check_restricted:
            yield from _container_restricted(container, sc, who, seccomp_pod_ok, explicit_bad_seccomp)


def _host_path(workload: Workload, volume: HostMount) -> Violation:
    path = volume.path or ""
    found = runtime_socket(path)
    if found is not None:
        message = "hostPath volumes: " + _socket_message(f"volume '{volume.name}'", path, found).replace(
            "root on the host", "root on the node")
        fix = _SOCKET_FIX
    else:
        message = (f"hostPath volumes: volume '{volume.name}' mounts {path or 'a path'} from the node, which gives "
                   "the pod the node's files and survives the pod")
        fix = "use emptyDir, a ConfigMap or Secret, or a persistentVolumeClaim instead of hostPath"
    return Violation(message=message, remediation=fix, origin=volume.origin, value=path, key=f"hostPath {path}")


def _pod_level(workload: Workload, pod: SecurityContext, restricted: bool, container_rules: bool,
               kinds: str) -> Iterator[Violation]:
    if pod.host_process is not None and pod.host_process.value == "true":
        yield _v(f"hostProcess: {kinds} must not set securityContext.windowsOptions.hostProcess=true (a host process "
                 "container runs on the Windows node itself)", "remove windowsOptions.hostProcess",
                 pod.host_process, "windowsOptions.hostProcess", None)
    yield from _profiles(pod, kinds, None, seccomp=not restricted or container_rules)


def _profiles(sc: SecurityContext, who: str, container: str | None, *, seccomp: bool) -> Iterator[Violation]:
    """seccompProfile (unless the restricted check replaces it), appArmorProfile and seLinuxOptions of one level."""
    for setting, field, reason in ((sc.seccomp if seccomp else None, "securityContext.seccompProfile.type", "seccompProfile"),
                                   (sc.apparmor, "appArmorProfile.type", "forbidden AppArmor profile")):
        if setting is not None and setting.value not in _SECCOMP_OK:
            profile = field.split(".")[-2]
            yield _v(f"{reason}: {who} must not set {field} to \"{setting.value}\"",
                     f"set {profile}.type to RuntimeDefault (or Localhost with a profile)", setting,
                     f"{profile} {setting.value}", container)
    yield from _selinux(sc, who, container)


def _selinux(sc: SecurityContext, who: str, container: str | None) -> Iterator[Violation]:
    if sc.selinux_type is not None and sc.selinux_type.value not in _SELINUX_TYPES:
        yield _v(f"seLinuxOptions: {who} sets forbidden securityContext.seLinuxOptions type \"{sc.selinux_type.value}\"",
                 "leave seLinuxOptions.type unset, or use container_t, container_init_t, container_kvm_t or "
                 "container_engine_t", sc.selinux_type, f"seLinuxOptions.type {sc.selinux_type.value}", container)
    if sc.selinux_user is not None and sc.selinux_user.value:
        yield _v(f"seLinuxOptions: {who} sets securityContext.seLinuxOptions.user, which may not be set",
                 "remove seLinuxOptions.user", sc.selinux_user, "seLinuxOptions.user", container)
    if sc.selinux_role is not None and sc.selinux_role.value:
        yield _v(f"seLinuxOptions: {who} sets securityContext.seLinuxOptions.role, which may not be set",
                 "remove seLinuxOptions.role", sc.selinux_role, "seLinuxOptions.role", container)


def _container_baseline(sc: SecurityContext, who: str, name: str, allowed: frozenset[str], restricted: bool,
                        relax_proc_mount: bool, container_rules: bool) -> Iterator[Violation]:
    if sc.privileged is not None and sc.privileged.value == "true":
        yield _v(f"privileged: {who} must not set securityContext.privileged=true (a privileged container has every "
                 "capability and device of the node)", "remove privileged: true; add only the capability the "
                 "process needs", sc.privileged, "privileged", name)
    if not restricted:  # capabilities_restricted replaces this check under restricted
        for cap in sc.capabilities_add:
            if cap.value not in allowed:
                yield _v(f"non-default capabilities: {who} must not include \"{cap.value}\" in "
                         "securityContext.capabilities.add", f"remove {cap.value} from capabilities.add",
                         cap, f"capabilities.add {cap.value}", name)
    if sc.host_process is not None and sc.host_process.value == "true":
        yield _v(f"hostProcess: {who} must not set securityContext.windowsOptions.hostProcess=true",
                 "remove windowsOptions.hostProcess", sc.host_process, "windowsOptions.hostProcess", name)
    if sc.proc_mount is not None and sc.proc_mount.value != "Default" and not relax_proc_mount:
        yield _v(f"procMount: {who} must not set securityContext.procMount to \"{sc.proc_mount.value}\" (it unmasks "
                 "/proc paths the runtime hides)", "remove procMount (Default is the default)", sc.proc_mount,
                 f"procMount {sc.proc_mount.value}", name)
    if _has_profiles(sc):
        yield from _profiles(sc, who, name, seccomp=not restricted or container_rules)


def _has_profiles(sc: SecurityContext) -> bool:
    """Whether _profiles could say anything about `sc` (most containers set none of these fields)."""
    return (sc.seccomp is not None or sc.apparmor is not None or sc.selinux_type is not None
            or sc.selinux_user is not None or sc.selinux_role is not None)


def _container_restricted(container: Container, sc: SecurityContext | None, who: str, seccomp_pod_ok: bool,
                          explicit_bad_seccomp: bool) -> Iterator[Violation]:
    name = container.name
    ape = sc.allow_privilege_escalation if sc is not None else None
    if ape is None or ape.value != "false":
        yield Violation(message=f"allowPrivilegeEscalation != false: {who} must set "
                                "securityContext.allowPrivilegeEscalation=false",
                        remediation="set securityContext.allowPrivilegeEscalation: false",
                        origin=ape.origin if ape is not None else container.origin, value=ape.value if ape else None,
                        container=name, key="allowPrivilegeEscalation")
    drops = sc.capabilities_drop if sc is not None else ()
    if not any(d.value == "ALL" for d in drops):
        yield Violation(message=f"unrestricted capabilities: {who} must set securityContext.capabilities.drop=[\"ALL\"]",
                        remediation="set securityContext.capabilities.drop: [ALL] (add back NET_BIND_SERVICE if needed)",
                        origin=drops[0].origin if drops else container.origin, container=name,
                        key="capabilities.drop ALL")
    for cap in (sc.capabilities_add if sc is not None else ()):
        if cap.value != "NET_BIND_SERVICE":
            yield _v(f"unrestricted capabilities: {who} must not include \"{cap.value}\" in "
                     "securityContext.capabilities.add (restricted allows only NET_BIND_SERVICE)",
                     f"remove {cap.value} from capabilities.add", cap, f"capabilities.add {cap.value}", name)
    # seccompProfile_restricted: explicit bad values are reported above (baseline wording); when there are none,
    # every container without its own profile needs the pod's.
    if not explicit_bad_seccomp and not seccomp_pod_ok and (sc is None or sc.seccomp is None):
        yield Violation(message=f"seccompProfile: pod or {who} must set securityContext.seccompProfile.type to "
                                "\"RuntimeDefault\" or \"Localhost\"",
                        remediation="set spec.securityContext.seccompProfile.type: RuntimeDefault on the pod",
                        origin=container.origin, container=name, key="seccompProfile")


# --- compose ----------------------------------------------------------------------------------------

def _compose(workload: Workload, restricted: bool, allowed: frozenset[str]) -> Iterator[Violation]:
    name = workload.name
    who = f"service '{name}'"
    if workload.host_pid is not None:
        yield _v(f"{who} sets pid: host, so it sees and can signal every process on the host",
                 "remove pid: host", workload.host_pid, "pid host", name)
    if workload.host_ipc is not None:
        yield _v(f"{who} sets ipc: host, so it shares the host's System V IPC and shared memory",
                 "remove ipc: host", workload.host_ipc, "ipc host", name)
    for mount in workload.volumes:
        found = runtime_socket(mount.path) if mount.kind == "bind" else None
        if found is not None:
            yield Violation(message=_socket_message(who, mount.path or "", found), remediation=_SOCKET_FIX,
                            origin=mount.origin, value=mount.path, container=name,
                            key=f"volumes {runtime_path(mount.path or '')}")
        elif mount.kind == "bind" and not mount.relative:
            system = host_system_path(mount.path)
            if system is not None and not (mount.read_only and system[0] != "above" and _public(mount.path or "")):
                yield Violation(message=_system_message(who, mount, *system), remediation=_SYSTEM_FIX,
                                origin=mount.origin, value=mount.path, container=name,
                                key=f"volumes {runtime_path(mount.path or '')}")
    for device in workload.devices:
        if _CDI_NAME.match(device.value):
            continue
        yield _v(f"{who} is given the host device {device.value} (devices: {device.text}): direct access to the "
                 "host's hardware, as a /dev hostPath gives a Pod",
                 f"remove {device.text} from devices; ask for a GPU with gpus: or deploy.resources.reservations.devices "
                 "(what a device plugin gives a Pod), or name a CDI device (vendor.com/class=name)",
                 device, f"devices {device.value}", name)
    for cgroup_rule in workload.device_cgroup_rules:
        yield _v(f"{who} may use host devices by number ({cgroup_rule.text}): with a device node it reaches the "
                 "host's disks and memory, as a /dev hostPath would",
                 f"remove '{cgroup_rule.value}' from device_cgroup_rules", cgroup_rule,
                 f"device_cgroup_rules {cgroup_rule.value}", name)
    if workload.host_userns is not None:
        setting = workload.host_userns
        yield Violation(message=f"{who} sets userns_mode: host: on a daemon that remaps users (userns-remap) this "
                                "undoes the remapping, so root in the container is root on the host; elsewhere it "
                                "changes nothing (its Kubernetes counterpart, hostUsers: true, is the default and "
                                "Pod Security allows it)",
                        remediation="remove userns_mode: host, unless the service needs the host's user ids on a "
                                    "remapping daemon", origin=setting.origin, value="host", container=name,
                        key="userns_mode host", severity="warn")
    if workload.host_cgroup is not None:
        setting = workload.host_cgroup
        yield Violation(message=f"{who} sets cgroup: host, so it sees the host's whole cgroup hierarchy (Docker's "
                                "default on cgroup v1 hosts, and what a Pod gets there; on cgroup v2 the default is a "
                                "private cgroup namespace)",
                        remediation="remove cgroup: host (or set cgroup: private)", origin=setting.origin,
                        value="host", container=name, key="cgroup host", severity="warn")
    sc = workload.containers[0].security if workload.containers else None
    if sc is not None:
        if sc.privileged is not None and sc.privileged.value == "true":
            yield _v(f"{who} runs privileged: it gets every capability and device of the host and no seccomp or "
                     "AppArmor confinement, so root in the container is root on the host",
                     "remove privileged: true; add only the capability the process needs with cap_add",
                     sc.privileged, "privileged", name)
        for cap in sc.capabilities_add:
            if cap.value == "ALL" or (cap.value != "NET_BIND_SERVICE" if restricted else cap.value not in allowed):
                what = "every capability" if cap.value == "ALL" else f"capability {cap.value}"
                yield _v(f"{who} adds {what} (cap_add: {cap.text})" + (", beyond NET_BIND_SERVICE, the only one the "
                         "restricted profile allows" if restricted and cap.value != "ALL" else ", beyond the runtime's "
                         "default set"), f"remove {cap.text} from cap_add", cap, f"cap_add {cap.value}", name)
        for setting, what in ((sc.seccomp, "seccomp"), (sc.apparmor, "AppArmor")):
            if setting is not None and setting.value == "Unconfined":
                yield _v(f"{who} turns {what} off (security_opt: {setting.text})",
                         f"remove {setting.text} from security_opt", setting,
                         f"security_opt {what.lower()}:unconfined", name)
        if sc.selinux_type is not None and sc.selinux_type.value not in _SELINUX_TYPES:
            message = (f"{who} turns SELinux labelling off (security_opt: {sc.selinux_type.text})"
                       if sc.selinux_type.value == "spc_t" and "disable" in sc.selinux_type.text else
                       f"{who} runs with the SELinux type {sc.selinux_type.value} (security_opt: {sc.selinux_type.text})")
            yield _v(message, f"remove {sc.selinux_type.text} from security_opt", sc.selinux_type,
                     f"security_opt label:type {sc.selinux_type.value}", name)
        for setting, field in ((sc.selinux_user, "user"), (sc.selinux_role, "role")):
            if setting is not None and setting.value:
                yield _v(f"{who} sets an SELinux {field} (security_opt: {setting.text})",
                         f"remove {setting.text} from security_opt", setting, f"security_opt label:{field}", name)
        if sc.proc_mount is not None and sc.proc_mount.value != "Default":
            yield _v(f"{who} unmasks /proc and /sys paths the runtime hides (security_opt: {sc.proc_mount.text})",
                     f"remove {sc.proc_mount.text} from security_opt", sc.proc_mount,
                     "security_opt systempaths=unconfined", name)
    if restricted:
        ape = sc.allow_privilege_escalation if sc is not None else None
        if ape is None or ape.value != "false":
            origin = ape.origin if ape is not None else workload.origin
            yield Violation(message=f"{who} can gain privileges through setuid binaries: the restricted profile "
                                    "needs security_opt: [no-new-privileges:true]",
                            remediation="add no-new-privileges:true to security_opt", origin=origin,
                            value=ape.text if ape else None, container=name, key="security_opt no-new-privileges")
        drops = sc.capabilities_drop if sc is not None else ()
        if not any(d.value == "ALL" for d in drops):
            yield Violation(message=f"{who} keeps the runtime's default capabilities: the restricted profile needs "
                                    "cap_drop: [ALL]",
                            remediation="add cap_drop: [ALL] (and cap_add: [NET_BIND_SERVICE] if it binds a port below 1024)",
                            origin=drops[0].origin if drops else workload.origin, container=name, key="cap_drop ALL")


def runtime_path(path: str) -> str:
    """A host path as finding keys show it: normalised, /var/run written as /run."""
    clean = posixpath.normpath(path) if path.startswith("/") else path
    if clean == "/var/run" or clean.startswith("/var/run/"):
        clean = clean[4:]
    return clean
