"""Docker Compose projects -> Workloads, read the way Docker Compose v2 (compose-go v2) reads them.

YAML 1.2, interpolation per file with the project's `.env` (or `--env-file`s) under the shell's
environment, `-f` overrides merged by compose-go's rules (`!reset`, `!override`, port unicity),
`extends`, `include`, profiles, and each service's build Dockerfile.
Hand-written: no Python library implements compose-go v2's loader, and the rules need a file and line per value.
"""

from __future__ import annotations

import math
import os
import re
import struct
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from admission.errors import InputError
from admission.findings import Problem
from admission.model import (
    BuildContext,
    Container,
    EnvVar,
    ExemptionClaim,
    Located,
    Origin,
    Port,
    SchemaIssue,
    Setting,
    UnresolvedBase,
    Workload,
)
from admission.sources.compose_interp import read_env_files, split_assignment
from admission.sources.compose_runtime import read_healthcheck, read_only_root, read_runtime, resolve_volume_paths
from admission.sources.compose_merge import (
    CMap,
    CSeq,
    PathKey,
    apply_resets,
    convert,
    deep_copy,
    enforce_port_unicity,
    enforce_unicity,
    merge,
)
from admission.textio import read_path
from admission.yamlload import load_documents

__all__ = [
    "ComposeResult",
    "cpus_value",
    "load_project",
    "looks_like_compose",
    "memory_bytes",
    "parse_port",
]

_KEEP_TAGS = frozenset({"!reset", "!override"})
_REMOTE_PREFIXES = ("https://", "http://", "git://", "ssh://", "github.com/", "git@")


_TOP_LEVEL = frozenset(("version", "name", "services", "networks", "volumes", "secrets", "configs", "include", "models"))


def looks_like_compose(doc: object) -> bool:
    """A compose file's shape: only compose top-level keys (or x-*), `services` a mapping or a local `include`.

    Strict enough that CI files with `services:` or `include:` lists (.gitlab-ci.yml) are not taken for compose.
    """
    if not isinstance(doc, dict) or not all(isinstance(k, str) and (k in _TOP_LEVEL or k.startswith("x-")) for k in doc):
        return False
    services, include = doc.get("services"), doc.get("include")
    if isinstance(services, dict):
        return True
    if "services" not in doc and isinstance(include, list) and include:
        return all(isinstance(i, str) or (isinstance(i, dict) and "path" in i) for i in include)
    return False


class NotCompose(Exception):
    """`load_project(require_shape=True)`: the base file parses, but is not shaped like a compose file."""


@dataclass(frozen=True, slots=True)
class ComposeResult:
    workloads: list[Workload]
    problems: list[Problem]  # non-fatal: a malformed x-admission block, a build Dockerfile that does not parse
    files: list[str]  # display names of every file read
    dockerfiles: frozenset[str]  # real absolute paths of the Dockerfiles builds use


# --- values as Compose normalises them ------------------------------------------------------------

_RAM_UNITS = {"k": 1024, "m": 1024**2, "g": 1024**3, "t": 1024**4, "p": 1024**5}
_FLOAT_TEXT = re.compile(r"[+-]?(?:\d+\.?\d*|\.\d+)(?:[eE][+-]?\d+)?|[+-]?(?:inf|infinity|nan)", re.IGNORECASE)


def memory_bytes(text: str) -> int:
    """docker/go-units RAMInBytes: "512m" -> 536870912 (binary units). ValueError with go-units' words."""
    sep = max(text.rfind(ch) for ch in "0123456789. ")
    if sep == -1:
        raise ValueError(f"invalid size: '{text}'")
    if text[sep] == " ":
        number, suffix = text[:sep], text[sep + 1:]
    else:
        number, suffix = text[: sep + 1], text[sep + 1:]
    if not _FLOAT_TEXT.fullmatch(number):
        raise ValueError(f"invalid size: '{text}'")
    size = float(number)
    if size < 0 or math.isnan(size) or math.isinf(size):
        raise ValueError(f"invalid size: '{text}'")
    if not suffix:
        return int(size)
    lower = suffix.lower()
    bad = ValueError(f"invalid suffix: '{lower}'")
    if len(lower) > 3:
        raise ValueError(f"invalid suffix: '{suffix}'")
    if lower[0] == "b":
        if len(lower) > 1:
            raise bad
        return int(size)
    if lower[0] not in _RAM_UNITS:
        raise bad
    if (len(lower) == 2 and lower[1] != "b") or (len(lower) == 3 and lower[1:] != "ib"):
        raise bad
    scaled = size * _RAM_UNITS[lower[0]]
    if math.isinf(scaled):
        raise ValueError(f"invalid size: '{text}'")
    return int(scaled)


def cpus_value(text: str) -> float:
    """A cpus value as Compose stores it (a float32). ValueError when it is not a number."""
    if not _FLOAT_TEXT.fullmatch(text):
        raise ValueError(f'parsing "{text}": invalid syntax')
    return struct.unpack("f", struct.pack("f", float(text)))[0]


def _scalar_text(value: Any) -> str:
    if value is True:
        return "true"
    if value is False:
        return "false"
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value)


# --- ports ----------------------------------------------------------------------------------------

def _port_number(text: str) -> int | None:
    return int(text) if text.isascii() and text.isdigit() and int(text) <= 65535 else None


def _port_range(text: str) -> tuple[int, int] | None:
    """go-connections ParsePortRange: "80" or "8000-8010" (extra `-` parts ignored, as there)."""
    if not text:
        return None
    if "-" not in text:
        number = _port_number(text)
        return None if number is None else (number, number)
    parts = text.split("-")
    start, end = _port_number(parts[0]), _port_number(parts[1])
    if start is None or end is None or end < start:
        return None
    return start, end


def _valid_ip(text: str) -> bool:
    if "%" in text:
        return False  # Go's net.ParseIP takes no zone
    import ipaddress  # here: few files bind a host IP, and the module costs ~5 ms to import

    try:
        ipaddress.ip_address(text)
    except ValueError:
        return False
    return True


def parse_port(value: Any, *, origin: Origin) -> Port:
    """One `ports:` entry (short string, integer, or long mapping) -> Port. InputError when Compose cannot read it."""
    def fail(message: str) -> InputError:
        return InputError(message, file=origin.file, line=origin.line, path=origin.path)

    if isinstance(value, bool) or value is None:
        raise fail(f"{origin.path} must be a number, a string or a mapping")
    if isinstance(value, float):
        raise fail(f"invalid type float64 for port: {value}")
    if isinstance(value, int):
        value = str(value)
    if isinstance(value, str):
        return _parse_short_port(value, origin, fail)
    if isinstance(value, dict):
        return _parse_long_port(value, origin, fail)
    raise fail(f"{origin.path} must be a number, a string or a mapping")


def _parse_short_port(text: str, origin: Origin, fail: Any) -> Port:
    # go-connections nat.ParsePortSpec, which compose-go's ParsePortConfig calls
    parts = text.split(":")
    container = parts[-1]
    host_port = parts[-2] if len(parts) >= 2 else ""
    ip = ":".join(parts[:-2]) if len(parts) >= 3 else ""
    slash = container.split("/")
    if not container or not slash[0]:
        proto, container = "", ""
    elif len(slash) == 1:
        proto = "tcp"
    else:
        proto, container = (slash[1] or "tcp"), slash[0]
        if len(slash) > 2:
            proto = "/".join(slash[1:])
    if ip.startswith("["):
        if not ip.endswith("]") or "]" in ip[1:-1]:
            raise fail(f"invalid IP address {ip}: missing ']' in address")
        ip = ip[1:-1]
    if ip and not _valid_ip(ip):
        raise fail(f"invalid IP address: {ip}")
    if not container:
        raise fail(f"no port specified: {text}<empty>")
    target = _port_range(container)
    if target is None:
        raise fail(f"invalid containerPort: {container}")
    published: tuple[int, int] | None = None
    if host_port:
        published = _port_range(host_port)
        if published is None:
            raise fail(f"invalid hostPort: {host_port}")
        if published[1] - published[0] != target[1] - target[0] and target[0] != target[1]:
            raise fail(f"invalid ranges specified for container and host Ports: {container} and {host_port}")
    if proto.lower() not in ("tcp", "udp", "sctp"):
        raise fail(f"invalid proto: {proto}")
    return Port(
        target=container,
        published=host_port or None,
        host_ip=ip or None,
        protocol=proto.lower(),
        text=text,
        origin=origin,
    )


def _parse_long_port(item: Mapping[str, Any], origin: Origin, fail: Any) -> Port:
    target = item.get("target")
    if isinstance(target, str) and target.isascii() and target.isdigit():
        target = int(target)
    if target is None:
        raise fail(f"service ports {origin.path} is missing a target port")
    if isinstance(target, bool) or not isinstance(target, int):
        raise fail(f"{origin.path}.target must be an integer, not {_scalar_text(target)!r}")
    published = item.get("published")
    if isinstance(published, (bool, float, dict, list)):
        raise fail(f"{origin.path}.published must be a integer or string")
    published_text = None if published in (None, "") else str(published)
    host_ip = item.get("host_ip")
    if host_ip is not None:
        if not isinstance(host_ip, str):
            raise fail(f"{origin.path}.host_ip must be a string")
        if not _valid_ip(host_ip):
            raise fail(f"invalid ip address: {host_ip}")
    protocol = item.get("protocol")
    if protocol is not None and not isinstance(protocol, str):
        raise fail(f"{origin.path}.protocol must be a string")
    protocol = protocol or "tcp"
    text = f"{host_ip + ':' if host_ip else ''}{published_text + ':' if published_text else ''}{target}"
    if protocol != "tcp":
        text += f"/{protocol}"
    return Port(target=str(target), published=published_text, host_ip=host_ip or None, protocol=protocol,
                text=text, origin=origin)


# --- loading --------------------------------------------------------------------------------------

class _Dir:
    """A directory as the filesystem knows it and as the user sees it."""

    # Internal helpers are plain slotted classes: each dataclass costs about a millisecond at import.
    __slots__ = ("display", "real")

    def __init__(self, real: str, display: str) -> None:
        self.real = real
        self.display = display

    def join(self, rel: str) -> tuple[str, str]:
        if os.path.isabs(rel):
            return os.path.normpath(rel), os.path.normpath(rel)
        return os.path.normpath(os.path.join(self.real, rel)), os.path.normpath(os.path.join(self.display, rel))

    @staticmethod
    def of_file(real: str, display: str) -> _Dir:
        return _Dir(os.path.dirname(os.path.abspath(real)), os.path.dirname(display))


class _Context:
    """A build context after path resolution (compose-go resolves it against the declaring file's project dir)."""

    __slots__ = ("display", "real", "text")

    def __init__(self, text: str, real: str | None, display: str | None) -> None:
        self.text = text
        self.real = real  # None when remote
        self.display = display

    def __eq__(self, other: object) -> bool:
        return isinstance(other, _Context) and (self.text, self.real) == (other.text, other.real)

    def __hash__(self) -> int:
        return hash((self.text, self.real))

    def __str__(self) -> str:
        return self.text


class _Scope:
    """What a file is read with: where its relative paths point, and the variables it interpolates."""

    __slots__ = ("env", "workdir")

    def __init__(self, workdir: _Dir, env: Mapping[str, str]) -> None:
        self.workdir = workdir
        self.env = env


def _is_remote(text: str) -> bool:
    return "://" in text or text.startswith(_REMOTE_PREFIXES)


class _Loader:
    """One project load: what it read, what it could not interpret, and caches."""

    def __init__(self, preset: Mapping[str, str] | None = None) -> None:
        self.preset = dict(preset or {})  # real path -> text already read (a compose file on stdin)
        self.files: list[str] = []
        self.problems: list[Problem] = []
        self.dockerfiles: set[str] = set()
        self.contexts: Any = None  # sources.context.ContextCache: build contexts, walked once per run
        # The run's excludes: (path, display, folder) -> why it is not read ("excluded by PATTERN"), or None.
        self.excluded: Callable[[str, str, bool], str | None] | None = None
        self._parsed: dict[str, list[tuple[Any, int]]] = {}
        self._extends_cache: dict[tuple[str, frozenset[tuple[str, str]]], tuple[CMap, list[PathKey]]] = {}

    def _note(self, display: str) -> None:
        if display not in self.files:
            self.files.append(display)

    def read(self, real: str, display: str) -> str:
        text = self.preset[real] if real in self.preset else read_path(real, display=display)
        self._note(display)
        return text

    # A project: a base file and its overrides, or one include entry.
    def load_model(self, files: Sequence[tuple[str, str]], scope: _Scope, included: tuple[str, ...]) -> CMap:
        model = CMap((files[0][1], 1))
        for real, display in files:
            model = self._load_file(real, display, scope, model, included)
        self._default_build_contexts(model, scope.workdir)
        return model

    def _documents(self, real: str, display: str) -> list[tuple[Any, int]]:
        if real not in self._parsed:
            text = self.read(real, display)
            docs = load_documents(text, file=display, dialect="1.2", strict_keys=True, keep_tags=_KEEP_TAGS)
            self._parsed[real] = [(doc.value, doc.line) for doc in docs]
        return self._parsed[real]

    def _convert_file(self, real: str, display: str, scope: _Scope) -> list[tuple[CMap, list[PathKey]]]:
        out: list[tuple[CMap, list[PathKey]]] = []
        for value, line in self._documents(real, display):
            if value is None:
                continue
            if not isinstance(value, dict):
                raise InputError("a compose file must be a mapping at the top level", file=display, line=line)
            resets: list[PathKey] = []
            cfg = convert(value, file=display, line=line, lookup=scope.env.get, resets=resets)
            self._check_services_shape(cfg)
            self._resolve_contexts(cfg, scope.workdir)
            resolve_volume_paths(cfg, scope.workdir.real, scope.env.get("HOME") or None)
            out.append((cfg, resets))
        return out

    @staticmethod
    def _check_services_shape(cfg: CMap) -> None:
        if "services" not in cfg:
            return
        services = cfg["services"]
        file, line = cfg.pos("services")
        if not isinstance(services, CMap):
            raise InputError("services must be a mapping", file=file, line=line, path="services")
        for name, service in services.items():
            if not isinstance(service, CMap):
                file, line = services.pos(name)
                raise InputError(f"services.{name} must be a mapping", file=file, line=line, path=f"services.{name}")

    @staticmethod
    def _resolve_contexts(cfg: CMap, workdir: _Dir) -> None:
        """Turn each build into a mapping whose context is resolved against this file's project dir."""
        services = cfg.get("services")
        if not isinstance(services, CMap):
            return
        for service in services.values():
            build = service.get("build")
            if build is None:
                continue
            if not isinstance(build, CMap):
                if not isinstance(build, str):
                    continue  # reported as a schema issue later
                mapping = CMap(service.pos("build"))
                mapping["context"] = build
                mapping.kpos["context"] = service.pos("build")
                service["build"] = build = mapping
            context = build.get("context")
            if isinstance(context, str):
                if _is_remote(context):
                    build["context"] = _Context(context, None, None)
                else:
                    real, display = workdir.join(context)
                    build["context"] = _Context(context, real, display)

    @staticmethod
    def _default_build_contexts(model: CMap, workdir: _Dir) -> None:
        services = model.get("services")
        if not isinstance(services, CMap):
            return
        for service in services.values():
            build = service.get("build") if isinstance(service, CMap) else None
            if isinstance(build, CMap) and build.get("context") is None:
                real, display = workdir.join(".")
                build["context"] = _Context(".", real, display)
                build.kpos["context"] = service.pos("build")

    def _load_file(self, real: str, display: str, scope: _Scope, model: CMap, included: tuple[str, ...]) -> CMap:
        for cfg, resets in self._convert_file(real, display, scope):
            self._apply_extends(cfg, resets, scope, display)
            apply_resets(model, resets)
            cfg = self._apply_include(cfg, scope, included + (os.path.realpath(real),))
            model = merge(model, cfg, ())
            enforce_port_unicity(model)
        return model

    # --- extends -----------------------------------------------------------------------------------

    def _apply_extends(self, cfg: CMap, resets: list[PathKey], scope: _Scope, display: str) -> None:
        services = cfg.get("services")
        if not isinstance(services, CMap):
            return
        for name in list(services):
            self._extend(name, services, resets, scope, display, ())

    def _extend(self, name: str, services: CMap, resets: list[PathKey], scope: _Scope, display: str,
                chain: tuple[tuple[str, str], ...]) -> CMap:
        service = services[name]
        if not isinstance(service, CMap) or "extends" not in service:
            return service
        file, line = service.pos("extends")
        path = f"services.{name}.extends"
        if (display, name) in chain:
            trail = " -> ".join(f"{n} in {f}" for f, n in chain + ((display, name),))
            raise InputError(f"circular reference: {trail}", file=file, line=line, path=path)
        extends = service["extends"]
        ref_file: Any = None
        ref: Any
        if isinstance(extends, str):
            ref = extends
        elif isinstance(extends, CMap):
            ref, ref_file = extends.get("service"), extends.get("file")
        else:
            ref = None
        if not isinstance(ref, str) or not ref:
            raise InputError(f'cannot extend service "{name}" in {display}: no service named',
                             file=file, line=line, path=path)
        if ref_file is not None:
            if not isinstance(ref_file, str):
                raise InputError(f"{path}.file must be a string", file=file, line=line, path=path)
            if _is_remote(ref_file) or ref_file.startswith("oci:"):
                raise InputError(f"remote extends file {ref_file} cannot be read: only local files are supported",
                                 file=file, line=line, path=path)
            base_real, base_display = scope.workdir.join(ref_file)
            if not os.path.isfile(base_real):
                at_file, at_line = extends.pos("file") if isinstance(extends, CMap) else (file, line)
                raise InputError(f'cannot extend service "{name}": the extended file {base_display} does not exist',
                                 file=at_file, line=at_line, path=f"{path}.file")
            try:
                base_services, base_resets = self._extends_file(base_real, base_display, scope)
            except InputError as exc:
                # The error is in the extended file (and named there); say which extends reached it.
                raise InputError(f"{exc.message} (in {base_display}, extended by {file} line {line}, {path})",
                                 file=exc.file, line=exc.line, path=exc.path) from None
            if ref not in base_services:
                raise InputError(f'cannot extend service "{name}" in {display}: service "{ref}" not found in {base_display}',
                                 file=file, line=line, path=path)
            base_scope = _Scope(_Dir.of_file(base_real, base_display), scope.env)
            base = self._extend(ref, base_services, base_resets, base_scope, base_display,
                                chain + ((display, name),))
        else:
            if ref not in services:
                raise InputError(f'cannot extend service "{name}" in {display}: service "{ref}" not found',
                                 file=file, line=line, path=path)
            base = self._extend(ref, services, resets, scope, display, chain + ((display, name),))
        source = deep_copy(base)
        # The extending service's !reset/!override paths clear what it would inherit (compose-go ApplyExtends).
        holder = CMap(service.at)
        holder["services"] = wrapper = CMap(service.at)
        wrapper[name] = source
        apply_resets(holder, [p for p in resets if len(p) > 2 and p[0] == "services" and p[1] == name])
        merged = merge(wrapper[name], service, ("services", name))
        merged.pop("extends", None)
        merged.kpos.pop("extends", None)
        services[name] = merged
        return merged

    def _extends_file(self, real: str, display: str, scope: _Scope) -> tuple[CMap, list[PathKey]]:
        key = (os.path.realpath(real), frozenset(scope.env.items()))
        if key not in self._extends_cache:
            if not os.path.isfile(real):
                raise InputError(f"cannot read extended file: no such file {display}", file=display)
            docs = self._convert_file(real, display, _Scope(_Dir.of_file(real, display), scope.env))
            services = CMap((display, 1))
            resets: list[PathKey] = []
            for cfg, doc_resets in docs:
                found = cfg.get("services")
                if isinstance(found, CMap):
                    services = merge(services, found, ("services",))
                resets.extend(doc_resets)
            self._extends_cache[key] = (services, resets)
        return self._extends_cache[key]

    # --- include -----------------------------------------------------------------------------------

    def _apply_include(self, cfg: CMap, scope: _Scope, included: tuple[str, ...]) -> CMap:
        if "include" not in cfg:
            return cfg
        entries = cfg.pop("include")
        file, line = cfg.kpos.pop("include", cfg.at)
        if entries is None:
            return cfg
        if not isinstance(entries, CSeq):
            raise InputError("include must be a list", file=file, line=line, path="include")
        imported = CMap(cfg.at)
        for index, entry in enumerate(entries):
            file, line = entries.pos(index)
            path = f"include[{index}]"
            project_dir: Any = None
            env_files: Any = None
            if isinstance(entry, str):
                paths: Any = [entry]
            elif isinstance(entry, CMap):
                paths = entry.get("path")
                project_dir = entry.get("project_directory")
                env_files = entry.get("env_file")
                if isinstance(paths, str):
                    paths = [paths]
                if isinstance(env_files, str):
                    env_files = [env_files]
            else:
                raise InputError("an include entry must be a path or a mapping with `path`", file=file, line=line, path=path)
            if not paths or not all(isinstance(p, str) for p in paths):
                raise InputError("an include entry needs `path`: a string or a list of strings", file=file, line=line, path=path)
            if env_files is not None and not all(isinstance(p, str) for p in env_files):
                raise InputError("include env_file must be a string or a list of strings", file=file, line=line, path=path)
            remote = next((p for p in paths if _is_remote(p) or p.startswith("oci:")), None)
            if remote is not None:
                raise InputError(f"remote include {remote} cannot be read: only local files are supported",
                                 file=file, line=line, path=path)
            targets = [scope.workdir.join(p) for p in paths]
            for real, display in targets:
                if not os.path.isfile(real):
                    raise InputError(f"included file {display} cannot be read: no such file", file=file, line=line, path=path)
            main_real = os.path.realpath(targets[0][0])
            if main_real in included:
                raise InputError(f"include cycle detected: {targets[0][1]} includes itself through {len(included)} file(s)",
                                 file=file, line=line, path=path)
            if project_dir is None:
                workdir = _Dir.of_file(*targets[0])
            elif isinstance(project_dir, str):
                workdir = _Dir(*scope.workdir.join(project_dir))
            else:
                raise InputError("include project_directory must be a string", file=file, line=line, path=path)
            env_paths: list[tuple[str, str]] = []
            if env_files is None:
                real, display = workdir.join(".env")
                if os.path.isfile(real):
                    env_paths.append((real, display))
            else:
                for name in env_files:
                    if name == "/dev/null":
                        continue
                    real, display = scope.workdir.join(name)
                    if not os.path.isfile(real):
                        raise InputError(f"env file {display} not found", file=file, line=line, path=path)
                    env_paths.append((real, display))
            env = dict(scope.env)
            for key, value in read_env_files(env_paths, environ=scope.env, read=self.read).items():
                env.setdefault(key, value)  # the including project's variables win
            model = self.load_model(targets, _Scope(workdir, env), included + (main_real,))
            imported = merge(imported, model, ())
        # Definitions in the including file are laid over what it imports.
        return merge(imported, cfg, ())


# --- services -> workloads ------------------------------------------------------------------------

class _Service:
    """Reads one merged service, collecting schema issues as Compose would report them."""

    def __init__(self, name: str, service: CMap, loader: _Loader, env: Mapping[str, str]) -> None:
        self.name = name
        self.svc = service
        self.loader = loader
        self.env = env
        self.issues: list[SchemaIssue] = []
        self.base = f"services.{name}"

    def origin(self, key: str, parent: CMap | None = None, path: str | None = None) -> Origin:
        parent = self.svc if parent is None else parent
        file, line = parent.pos(key)
        return Origin(file, line, path or f"{self.base}.{key}")

    def issue(self, message: str, origin: Origin, value: Any = None, remediation: str | None = None) -> None:
        text = None if value is None else _scalar_text(value)
        self.issues.append(SchemaIssue(message=message, origin=origin, value=text, container=self.name,
                                       remediation=remediation))

    def string(self, key: str, parent: CMap | None = None, path: str | None = None) -> Located[str] | None:
        """A string field; another scalar is a schema issue and evaluation continues with its text."""
        parent = self.svc if parent is None else parent
        if key not in parent:
            return None
        value = parent[key]
        origin = self.origin(key, parent, path)
        if isinstance(value, str):
            return Located(value, origin)
        if value is None:
            return None
        scalar = not isinstance(value, (dict, list))
        fix = f'quote the value so YAML reads it as a string: {key}: "{_scalar_text(value)}"' if scalar else None
        self.issue(f"{origin.path} must be a string", origin, value if scalar else None, fix)
        if isinstance(value, (dict, list)):
            return None
        return Located(_scalar_text(value), origin)


def _limit(reader: _Service, parent: CMap, key: str, path: str, *, kind: str) -> tuple[Located[str], float | int] | None:
    """A limit's text and normalised value (bytes or cpus), or None with a schema issue when Compose rejects it."""
    if key not in parent or parent[key] is None:
        return None
    value = parent[key]
    origin = reader.origin(key, parent, path)
    if kind == "memory-string" and not isinstance(value, str):
        reader.issue(f"{path} must be a string", origin, value)
        return None
    if isinstance(value, bool) or not isinstance(value, (int, float, str)):
        reader.issue(f"{path} must be a number or string", origin, value if not isinstance(value, (dict, list)) else None)
        return None
    text = _scalar_text(value)
    try:
        if kind in ("memory", "memory-string"):
            if isinstance(value, float):
                return None  # Compose drops a non-integer number here (UnitBytes only decodes int and string)
            number: float | int = value if isinstance(value, int) else memory_bytes(value)
        elif kind == "quota":
            number = int(value) if isinstance(value, (int, float)) else int(text, 10)
        else:
            number = cpus_value(text)
    except ValueError as exc:
        reader.issue(f"{path}: {exc}", origin, value)
        return None
    return Located(text, origin), number


def _limits(reader: _Service) -> dict[str, Located[str]]:
    svc, base = reader.svc, reader.base
    limits: dict[str, Located[str]] = {}
    deploy_limits: CMap | None = None
    deploy = svc.get("deploy")
    if deploy is not None and not isinstance(deploy, CMap):
        reader.issue(f"{base}.deploy must be a mapping or null", reader.origin("deploy"))
    elif isinstance(deploy, CMap):
        resources = deploy.get("resources")
        found = resources.get("limits") if isinstance(resources, CMap) else None
        deploy_limits = found if isinstance(found, CMap) else None
    lim_path = f"{base}.deploy.resources.limits"
    d_mem = _limit(reader, deploy_limits, "memory", f"{lim_path}.memory", kind="memory-string") if deploy_limits else None
    d_cpu = _limit(reader, deploy_limits, "cpus", f"{lim_path}.cpus", kind="cpus") if deploy_limits else None
    mem = _limit(reader, svc, "mem_limit", f"{base}.mem_limit", kind="memory")
    cpus = _limit(reader, svc, "cpus", f"{base}.cpus", kind="cpus")
    quota = _limit(reader, svc, "cpu_quota", f"{base}.cpu_quota", kind="quota")
    if mem and d_mem and mem[1] != d_mem[1]:
        reader.issue(f"services.{reader.name}: can't set distinct values on 'mem_limit' and "
                     "'deploy.resources.limits.memory'", mem[0].origin, mem[0].value)
    if cpus and d_cpu and cpus[1] != d_cpu[1]:
        reader.issue(f"services.{reader.name}: can't set distinct values on 'cpus' and "
                     "'deploy.resources.limits.cpus'", cpus[0].origin, cpus[0].value)
    memory = d_mem or mem
    cpu = d_cpu or cpus or quota
    if memory:
        limits["memory"] = memory[0]
    if cpu:
        limits["cpu"] = cpu[0]
    return limits


def _ports(reader: _Service) -> tuple[Port, ...]:
    svc = reader.svc
    value = svc.get("ports")
    if value is None:
        return ()
    if not isinstance(value, CSeq):
        origin = reader.origin("ports")
        raise InputError(f"{origin.path} must be a list", file=origin.file, line=origin.line, path=origin.path)
    ports: list[tuple[tuple[str, str | None, str, str], Port]] = []
    for index, item in enumerate(value):
        file, line = value.pos(index)
        # The path names the entry as written in its file, where `file` and `line` point.
        port = parse_port(item, origin=Origin(file, line, f"{reader.base}.ports[{value.src(index)}]"))
        # Compose keeps one binding per (host ip, published, target, protocol); no host ip is 0.0.0.0.
        ports.append(((port.host_ip or "0.0.0.0", port.published, port.target, port.protocol.lower()), port))
    return enforce_unicity(ports)


def _claims(reader: _Service) -> tuple[ExemptionClaim, ...]:
    svc = reader.svc
    if "x-admission" not in svc:
        return ()
    block = svc["x-admission"]
    origin = reader.origin("x-admission")
    problems = reader.loader.problems

    def drop(message: str, where: Origin) -> None:
        problems.append(Problem(message=f"x-admission exemption dropped: {message}", file=where.file,
                                line=where.line, path=where.path))

    if not isinstance(block, CMap):
        drop("x-admission must be a mapping with an `exempt` list", origin)
        return ()
    if "exempt" not in block:
        drop("x-admission has no `exempt` list", origin)
        return ()
    items = block["exempt"]
    list_origin = reader.origin("exempt", block, f"{origin.path}.exempt")
    if not isinstance(items, CSeq):
        drop("x-admission.exempt must be a list of {rule, reason, expires}", list_origin)
        return ()
    claims: list[ExemptionClaim] = []
    for index, item in enumerate(items):
        file, line = items.pos(index)
        where = Origin(file, line, f"{list_origin.path}[{items.src(index)}]")
        if not isinstance(item, CMap):
            drop("an exemption must be a mapping with `rule` and `reason`", where)
            continue
        rule = item.get("rule")
        if isinstance(rule, str) and rule:
            rules: tuple[str, ...] = (rule,)
        elif isinstance(rule, CSeq) and rule and all(isinstance(r, str) and r for r in rule):
            rules = tuple(rule)
        else:
            drop("an exemption needs `rule`: a rule id or a list of rule ids", where)
            continue
        reason = item.get("reason")
        expires = item.get("expires")
        claims.append(ExemptionClaim(
            rules=rules,
            reason=None if reason is None else _scalar_text(reason),
            expires=None if expires is None else _scalar_text(expires),
            via="x-admission",
            origin=where,
        ))
    return tuple(claims)


def _environment(reader: _Service) -> tuple[EnvVar, ...]:
    """`environment` entries whose value is written in the compose file (no-secret-in-env): not a bare name (the
    shell's), not a value a variable filled (`.env`, an env file, the shell: where a secret belongs)."""
    value = reader.svc.get("environment")
    if not value:
        return ()
    out: list[EnvVar] = []
    path = f"{reader.base}.environment"
    if isinstance(value, CMap):
        for key, item in value.items():
            if item is None or isinstance(item, (CMap, CSeq)) or getattr(item, "from_variable", False):
                continue
            file, line = value.pos(key)
            out.append(EnvVar(str(key), _scalar_text(item), "environment", Origin(file, line, f"{path}.{key}")))
    elif isinstance(value, CSeq):
        for index, item in enumerate(value):
            if not isinstance(item, str):
                continue
            key, text = split_assignment(item)
            if text is None or getattr(text, "from_variable", False):
                continue
            file, line = value.pos(index)
            out.append(EnvVar(key, str(text), "environment", Origin(file, line, f"{path}[{value.src(index)}]")))
    return tuple(out)


def _build_args(reader: _Service, build: CMap) -> dict[str, str]:
    args = build.get("args")
    out: dict[str, str] = {}
    if isinstance(args, CMap):
        items = list(args.items())
    elif isinstance(args, CSeq):
        items = []
        for entry in args:
            key, sep, value = _scalar_text(entry).partition("=")
            items.append((key, value if sep else None))
    else:
        if args is not None:
            reader.issue(f"{reader.base}.build.args must be a mapping", reader.origin("args", build, f"{reader.base}.build.args"))
        return out
    for key, value in items:
        if value is None:
            # A bare arg takes its value from the environment, as compose-go ResolveEnvironment does.
            found = reader.env.get(key)
            if found is not None:
                out[key] = found
        else:
            out[key] = _scalar_text(value)
    return out


class _BuildOutcome:
    __slots__ = ("base_images", "build_context", "env", "healthcheck", "image_user", "inherits_unresolved",
                 "inherits_user_from", "unknown", "unresolved_bases", "user_uid", "windows")
    env: tuple[EnvVar, ...]  # the Dockerfile's ENV and ARG defaults written literally (no-secret-in-env)

    def __init__(self, image_user: Located[str] | None, unknown: str | None,
                 base_images: tuple[Located[str], ...], inherits_user_from: Located[str] | None = None,
                 user_uid: int | None = None, build_context: BuildContext | None = None,
                 healthcheck: Located[str] | None = None, unresolved_bases: tuple[UnresolvedBase, ...] = (),
                 windows: Setting | None = None, inherits_unresolved: UnresolvedBase | None = None) -> None:
        self.env = ()
        self.inherits_unresolved = inherits_unresolved  # no USER, and the base is a build arg with no value
        self.unresolved_bases = unresolved_bases  # FROMs named by a build arg that build.args leave without a value
        self.windows = windows  # why the build makes a Windows image (its base image or SHELL), for the user rules
        self.build_context = build_context
        self.healthcheck = healthcheck  # the Dockerfile's HEALTHCHECK for the built stage: "check" or "none"
        self.user_uid = user_uid
        self.image_user = image_user
        self.unknown = unknown
        self.base_images = base_images
        self.inherits_user_from = inherits_user_from


def _shift(located: Located[str], offset: int, path: str) -> Located[str]:
    line = None if located.origin.line is None else located.origin.line + offset
    return Located(located.value, Origin(located.origin.file, line, path))


def _shift_setting(setting: Setting, offset: int, path: str) -> Setting:
    return Setting(setting.value, setting.text, _shift(Located(setting.value, setting.origin), offset, path).origin)


def _build(reader: _Service, cache: dict[tuple[Any, ...], _BuildOutcome]) -> _BuildOutcome | None:
    svc = reader.svc
    if "build" not in svc or svc["build"] is None:
        return None
    build = svc["build"]
    if not isinstance(build, CMap):
        reader.issue(f"{reader.base}.build must be a string", reader.origin("build"), build)
        return None
    for key in ("dockerfile", "dockerfile_inline", "target"):
        if key in build and build[key] is not None and not isinstance(build[key], str):
            reader.issue(f"{reader.base}.build.{key} must be a string",
                         reader.origin(key, build, f"{reader.base}.build.{key}"), build[key])
    context = build.get("context")
    if not isinstance(context, _Context):
        reader.issue(f"{reader.base}.build.context must be a string", reader.origin("build"), context)
        return _BuildOutcome(None, "the build context is not a path; the image user cannot be read", ())
    if context.real is None:
        return _BuildOutcome(None, f"build context '{context.text}' is remote; the image user cannot be read", ())
    # An excluded context or Dockerfile is not read at all: the service is judged as if it were not there.
    excluded = reader.loader.excluded
    context_why = excluded(context.real, context.display or ".", True) if excluded is not None else None
    args = _build_args(reader, build)
    target = build.get("target") if isinstance(build.get("target"), str) else None
    inline = build.get("dockerfile_inline")
    if isinstance(inline, str):
        if context_why is not None:
            return _BuildOutcome(None, f"build context '{context.display}' is {context_why}, so it is not read", ())
        file, line = build.pos("dockerfile_inline")
        real_key: Any = ("inline", file, line, inline)
        display = file
    else:
        named = build.get("dockerfile")
        dockerfile = named if isinstance(named, str) else "Dockerfile"
        real, display = _Dir(context.real, context.display or "").join(dockerfile)
        why = excluded(real, display, False) if excluded is not None and os.path.isfile(real) else None
        if why is not None:
            return _BuildOutcome(None, f"Dockerfile '{display}' is {why}, so it is not read", ())
        if context_why is not None:
            return _BuildOutcome(None, f"build context '{context.display}' is {context_why}, so it is not read", ())
        if not os.path.isdir(context.real):
            return _BuildOutcome(None, f"build context '{context.display}' is not a readable directory; "
                                       "the image user cannot be read", ())
        if not os.path.isfile(real) or not os.access(real, os.R_OK):
            return _BuildOutcome(None, f"Dockerfile '{display}' cannot be read; the image user cannot be read", ())
        real_key = os.path.realpath(real)
    cache_key = (real_key, tuple(sorted(args.items())), target, context.real)
    if cache_key in cache:
        return cache[cache_key]
    outcome = _analyse(reader, real_key, display, inline, args, target, build)
    cache[cache_key] = outcome
    return outcome


def _analyse(reader: _Service, real_key: Any, display: str, inline: Any, args: dict[str, str],
             target: str | None, build: CMap) -> _BuildOutcome:
    loader = reader.loader
    try:
        from admission.sources import dockerfile  # imported here: only builds need it
    except ImportError:  # pragma: no cover - the module ships with the package
        return _BuildOutcome(None, "Dockerfile analysis is not available; the image user cannot be read", ())
    try:
        if isinstance(inline, str):
            parsed = dockerfile.parse(inline, file=display)
        else:
            text = loader.read(real_key, display)
            loader.dockerfiles.add(real_key)  # a walk skips it even when it is broken: the build reports it
            parsed = dockerfile.parse(text, file=display)
        info = dockerfile.analyse(parsed, build_args=args, target=target)
    except dockerfile.TargetNotFound as exc:
        at_file, at_line = build.pos("target")
        where = "the service's dockerfile_inline" if isinstance(inline, str) else display
        loader.problems.append(Problem(
            message=f'target stage "{exc.target}" could not be found in {where} (its stages: {", ".join(exc.stages)})',
            file=at_file, line=at_line, path=f"{reader.base}.build.target"))
        return _BuildOutcome(None, f"the build Dockerfile '{display}' has no stage \"{exc.target}\" (build.target)", ())
    except InputError as exc:
        loader.problems.append(Problem(message=exc.message, file=exc.file or display, line=exc.line, path=exc.path))
        return _BuildOutcome(None, f"the build Dockerfile '{display}' could not be read: {exc.message}", ())
    if isinstance(inline, str):
        # Lines inside dockerfile_inline count from the compose file's `dockerfile_inline:` line.
        offset = build.pos("dockerfile_inline")[1]
        path = f"{reader.base}.build.dockerfile_inline"
        inherits = _shift(info.inherits_user_from, offset, path) if info.inherits_user_from else None

        def shifted(u: UnresolvedBase) -> UnresolvedBase:
            return UnresolvedBase(u.text, u.args, _shift(Located(u.text, u.origin), offset, path).origin)

        # A base keeps its own path after the inline one, so rules can tell a FROM from a COPY --from.
        outcome = _BuildOutcome(_shift(info.user, offset, path), None,
                             tuple(_shift(b, offset, f"{path}.{b.origin.path}") for b in info.base_images), inherits,
                             info.user_uid, _context(loader, build, info, None, display, offset, path + "."),
                             _shift(info.healthcheck, offset, path) if info.healthcheck else None,
                             tuple(shifted(u) for u in info.unresolved_bases),
                             _shift_setting(info.windows, offset, path) if info.windows else None,
                             shifted(info.inherits_unresolved) if info.inherits_unresolved else None)
        outcome.env = tuple(EnvVar(e.name, e.value, e.via, _shift(Located(e.value, e.origin), offset,
                                                                  f"{path}.{e.origin.path}").origin)
                            for e in dockerfile.literal_env(parsed))
        return outcome
    outcome = _BuildOutcome(info.user, None, tuple(info.base_images), info.inherits_user_from, info.user_uid,
                            _context(loader, build, info, real_key, display, 0, ""), info.healthcheck,
                            info.unresolved_bases, info.windows, info.inherits_unresolved)
    outcome.env = dockerfile.literal_env(parsed)
    return outcome


def _context(loader: _Loader, build: CMap, info: Any, dockerfile: str | None, display: str, offset: int,
             prefix: str) -> BuildContext | None:
    """The build's context as the build-context rule reads it (sources/context.py); the walk is shared per run."""
    context = build.get("context")
    if not isinstance(context, _Context) or context.real is None:
        return None  # a remote context is not on disk
    from admission.sources import context as contexts
    from admission.sources.dockerfile import context_stages

    if loader.contexts is None:
        loader.contexts = contexts.ContextCache()
    return contexts.gather(loader.contexts, context=context.real, context_display=context.display or ".",
                           dockerfile=dockerfile, stages=context_stages(info), dockerfile_display=display,
                           line_offset=offset, path_prefix=prefix)


def _host_network(name: str, services: CMap) -> tuple[Located[str] | None, SchemaIssue | None]:
    """`network_mode: host`, or `service:X` where X is (transitively) host-networked; plus what Compose rejects."""
    service = services[name]
    mode = service.get("network_mode")
    if not isinstance(mode, str):
        return None, None
    file, line = service.pos("network_mode")
    origin = Origin(file, line, f"services.{name}.network_mode")
    if mode == "host":
        return Located("host", origin), None
    if not mode.startswith("service:"):
        return None, None
    seen = [name]
    current = mode[len("service:"):]
    while True:
        if current in seen:
            if seen.index(current) != 0:
                return None, None  # a cycle further down the chain is reported on its own services
            cycle = " -> ".join(seen + [current])
            return None, SchemaIssue(f"dependency cycle detected: {cycle}", origin, mode, name)
        other = services.get(current)
        if not isinstance(other, CMap):
            if len(seen) == 1:
                return None, SchemaIssue(f'service "{name}" depends on undefined service "{current}"', origin, mode, name)
            return None, None
        next_mode = other.get("network_mode")
        if next_mode == "host":
            return Located(mode, origin), None
        if not (isinstance(next_mode, str) and next_mode.startswith("service:")):
            return None, None
        seen.append(current)
        current = next_mode[len("service:"):]


def _networks(reader: _Service, defined: set[str]) -> None:
    svc = reader.svc
    if "networks" not in svc or svc["networks"] is None:
        return
    networks = svc["networks"]
    origin = reader.origin("networks")
    if isinstance(networks, CMap):
        names = [(k, networks.pos(k)) for k in networks]
    elif isinstance(networks, CSeq):
        names = [(n, networks.pos(i)) for i, n in enumerate(networks) if isinstance(n, str)]
    else:
        reader.issue(f"{origin.path} must be a array", origin, networks)
        return
    if names and svc.get("network_mode") is not None:
        mode = reader.origin("network_mode")
        reader.issue(f"service {reader.name} declares mutually exclusive `network_mode` and `networks`",
                     mode, svc.get("network_mode"))
    for name, (file, line) in names:
        if name != "default" and name not in defined:
            reader.issue(f'service "{reader.name}" refers to undefined network {name}',
                         Origin(file, line, f"{origin.path}.{name}"), name)


def _profiles(reader: _Service) -> list[str]:
    value = reader.svc.get("profiles")
    if value is None:
        return []
    origin = reader.origin("profiles")
    if not isinstance(value, CSeq):
        reader.issue(f"{origin.path} must be a array", origin, value)
        return [_scalar_text(value)] if not isinstance(value, CMap) else []
    out: list[str] = []
    for index, item in enumerate(value):
        if not isinstance(item, str):
            file, line = value.pos(index)
            reader.issue(f"{origin.path}[{index}]: unexpected type {type(item).__name__}", Origin(file, line, f"{origin.path}[{index}]"), item)
        out.append(_scalar_text(item))
    return out


def _selected(service_profiles: list[str], wanted: Sequence[str]) -> bool:
    if not wanted or "*" in wanted or not service_profiles:
        return True
    return any(p in wanted for p in service_profiles)


def _workloads(model: CMap, loader: _Loader, env: Mapping[str, str], profiles: Sequence[str]) -> list[Workload]:
    services = model.get("services")
    if services is None:
        return []
    if not isinstance(services, CMap):  # pragma: no cover - rejected per file already
        file, line = model.pos("services")
        raise InputError("services must be a mapping", file=file, line=line, path="services")
    top_networks = model.get("networks")
    defined = set(top_networks) if isinstance(top_networks, CMap) else set()
    cache: dict[tuple[Any, ...], _BuildOutcome] = {}
    workloads: list[Workload] = []
    for name, service in services.items():
        reader = _Service(name, service, loader, env)
        if not _selected(_profiles(reader), profiles):
            continue
        file, line = services.pos(name)
        origin = Origin(file, line, f"services.{name}")
        image = reader.string("image")
        if image is not None and image.value == "":
            image = None
        user = reader.string("user")
        if "user" in service and service["user"] is None:
            reader.issue(f"services.{name}.user must be a string", reader.origin("user"))
        if user is not None and user.value == "":
            user = None  # Compose drops an empty user: the image's user applies
        if "network_mode" in service and not isinstance(service["network_mode"], str):
            reader.issue(f"services.{name}.network_mode must be a string", reader.origin("network_mode"),
                         service["network_mode"])
        host_ports = _ports(reader)
        limits = _limits(reader)
        _networks(reader, defined)
        built = _build(reader, cache)
        if image is None and built is None:
            reader.issue(f'service "{name}" has neither an image nor a build context specified', origin)
        host, network_issue = _host_network(name, services)
        if network_issue is not None:
            reader.issues.append(network_issue)
        runtime = read_runtime(reader, model.get("volumes"))
        health = read_healthcheck(reader)
        if health is None and built is not None and built.healthcheck is not None:
            found = built.healthcheck
            health = Setting(found.value, "HEALTHCHECK NONE" if found.value == "none" else "HEALTHCHECK CMD", found.origin)
        container = Container(
            name=name,
            origin=origin,
            image=image,
            built="build" in service and service["build"] is not None,
            base_images=built.base_images if built else (),
            unresolved_bases=built.unresolved_bases if built else (),
            user=user,
            image_user=built.image_user if built else None,
            image_user_unknown=built.unknown if built else None,
            inherits_user_from=built.inherits_user_from if built else None,
            inherits_unresolved=built.inherits_unresolved if built else None,
            image_user_uid=built.user_uid if built else None,
            build_context=built.build_context if built else None,
            limits=limits,
            host_ports=host_ports,
            security=runtime.security,
            healthcheck=health,
            env=_environment(reader) + (built.env if built else ()),
            read_only_root=read_only_root(reader),
        )
        workloads.append(Workload(
            source="compose",
            kind="ComposeService",
            name=name,
            namespace=None,
            origin=origin,
            containers=(container,),
            runtime=True,
            host_network=host,
            windows=built.windows if built else None,
            exemption_claims=_claims(reader),
            schema_issues=tuple(reader.issues),
            host_pid=runtime.host_pid,
            host_ipc=runtime.host_ipc,
            volumes=runtime.mounts,
            devices=runtime.devices,
            device_cgroup_rules=runtime.device_cgroup_rules,
            host_userns=runtime.host_userns,
            host_cgroup=runtime.host_cgroup,
        ))
    return workloads


def load_project(paths: Sequence[str], *, displays: Sequence[str], environ: Mapping[str, str],
                 env_files: Sequence[str] | None = None, profiles: Sequence[str] = (),
                 texts: Mapping[str, str] | None = None, require_shape: bool = False,
                 contexts: Any = None, excluded: Callable[[str, str, bool], str | None] | None = None) -> ComposeResult:
    """Read a compose project: paths[0] is the base file, paths[1:] the `-f` overrides in order.

    Variables come from `environ`, then the project directory's `.env` (replaced by `env_files` when
    given). `profiles` empty means every service; otherwise services without profiles or with a
    matching one (`*` matches all). `texts` gives contents already read, by path (stdin: a path in
    the working directory, which is then the project directory, as with `docker compose -f -`).
    Raises InputError for anything Compose itself could not read; with `require_shape` (a directory walk
    guessing from content), NotCompose when the base file is not shaped like a compose file at all.
    `contexts` (a sources.context.ContextCache) shares build-context walks across the projects of one run.
    `excluded(path, display, folder)` says why a build context or Dockerfile the run excludes is not read (None:
    read it); such a build is judged as one whose context is not available.
    """
    if not paths or len(paths) != len(displays):
        raise ValueError("load_project needs one display name per path")
    loader = _Loader(texts)
    loader.contexts = contexts
    loader.excluded = excluded
    if require_shape:
        first = next((value for value, _ in loader._documents(paths[0], displays[0]) if value is not None), None)
        if not looks_like_compose(first):
            raise NotCompose(displays[0])
    workdir = _Dir.of_file(paths[0], displays[0])
    if env_files is None:
        real, display = workdir.join(".env")
        files = [(real, display)] if os.path.isfile(real) else []
    else:
        files = []
        for name in env_files:
            if not os.path.isfile(name):
                raise InputError("env file not found", file=name)
            files.append((os.path.abspath(name), name))
    env = dict(environ)
    for key, value in read_env_files(files, environ=environ, read=loader.read).items():
        env.setdefault(key, value)  # the shell's environment wins over env files
    scope = _Scope(workdir, env)
    model = loader.load_model(list(zip(paths, displays)), scope, ())
    if not model:
        raise InputError("empty compose file", file=displays[0])
    workloads = _workloads(model, loader, env, profiles)
    return ComposeResult(workloads=workloads, problems=loader.problems, files=list(loader.files),
                         dockerfiles=frozenset(loader.dockerfiles))
