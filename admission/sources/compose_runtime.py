"""What a compose service is allowed to do on the host, and its health check, read as Docker reads them.

least-privilege reads `privileged`, `pid`, `ipc`, `cap_add`, `cap_drop`, `security_opt`, bind mounts (short and
long `volumes` syntax, and named volumes the local driver binds to a host path), `devices`, `device_cgroup_rules`,
`userns_mode` and `cgroup`; healthcheck reads `healthcheck`.
Values are normalised the way Docker normalises them: capability names upper-cased with an optional `CAP_` prefix
removed, `security_opt` split at `=` (or the legacy `:`), booleans cast as compose-go casts strings. Types Compose
rejects are schema issues (evaluation continues with what can be read); a volume Compose cannot parse is an input
error, as a port is.
"""

from __future__ import annotations

import os
import posixpath
from typing import Any, Protocol

from admission.errors import InputError
from admission.model import HostMount, Origin, SecurityContext, Setting
from admission.sources.compose_merge import CMap, CSeq, enforce_unicity

__all__ = ["Resolved", "Runtime", "capability", "device_source", "named_binds", "parse_volume", "read_healthcheck",
           "read_only_root", "read_runtime", "resolve_volume_paths", "security_opts"]


class _Reader(Protocol):  # compose._Service
    name: str
    base: str
    svc: CMap

    def origin(self, key: str, parent: CMap | None = None, path: str | None = None) -> Origin: ...

    def issue(self, message: str, origin: Origin, value: Any = None, remediation: str | None = None) -> None: ...


_TRUE = frozenset(("y", "yes", "true", "on"))
_FALSE = frozenset(("n", "no", "false", "off"))
_GO_TRUE = frozenset(("1", "t", "T", "TRUE", "true", "True"))  # strconv.ParseBool
_GO_FALSE = frozenset(("0", "f", "F", "FALSE", "false", "False"))
_VOLUME_TYPES = frozenset(("bind", "volume", "tmpfs", "cluster", "npipe", "image"))


def _fail(message: str, origin: Origin) -> InputError:
    return InputError(message, file=origin.file, line=origin.line, path=origin.path)


def _bool(reader: _Reader, parent: CMap, key: str, path: str) -> tuple[bool, Origin] | None:
    """A boolean field: compose-go casts a string with YAML 1.1's words; another type is a schema issue."""
    if key not in parent:
        return None
    value = parent[key]
    origin = reader.origin(key, parent, path)
    if isinstance(value, bool):
        return value, origin
    if isinstance(value, str):
        lower = value.lower()
        if lower in _TRUE or lower in _FALSE:
            return lower in _TRUE, origin
        raise _fail(f"error while interpolating {path}: failed to cast to expected type: invalid boolean: {value}", origin)
    reader.issue(f"{path} must be a boolean or string", origin, None if isinstance(value, (dict, list)) else value)
    return None


def _strings(reader: _Reader, key: str, *, item_message: str) -> list[tuple[str, Origin]]:
    """A list of strings; a scalar that is not a string is a schema issue and its text is used."""
    svc, path = reader.svc, f"{reader.base}.{key}"
    value = svc.get(key)
    if value is None:
        return []
    if not isinstance(value, CSeq):
        reader.issue(f"{path} must be a array", reader.origin(key), None if isinstance(value, (dict, list)) else value)
        return []
    out: list[tuple[str, Origin]] = []
    for index, item in enumerate(value):
        file, line = value.pos(index)
        origin = Origin(file, line, f"{path}[{value.src(index)}]")
        if not isinstance(item, str):
            reader.issue(item_message.format(path=path, index=index, type=_go_type(item)), origin,
                         None if isinstance(item, (dict, list)) else item)
            if isinstance(item, (dict, list)) or item is None:
                continue
            item = str(item).lower() if isinstance(item, bool) else str(item)
        out.append((item, origin))
    return out


def _go_type(value: Any) -> str:
    if value is None:
        return "<nil>"
    if isinstance(value, bool):
        return "bool"
    if isinstance(value, int):
        return "int"
    if isinstance(value, float):
        return "float64"
    return type(value).__name__


def capability(text: str) -> str:
    """Docker's NormalizeLegacyCapabilities: upper-case, `CAP_` optional; ALL stays ALL."""
    upper = text.upper()
    if upper.startswith("CAP_") and upper != "CAP_ALL":  # CAP_ALL is not ALL: Docker refuses it as unknown
        return upper[4:]
    return upper


# --- volumes ----------------------------------------------------------------------------------------

def _windows_drive(buffer: str, char: str) -> bool:
    return char == ":" and len(buffer) == 1 and buffer.isalpha()


def _file_path(source: str) -> bool:
    """compose-go isFilePath: a bind source starts with `.`, `/` or `~`, is a UNC path or has a drive letter."""
    if not source:
        return False
    if source[0] in "./~" or source.startswith("\\\\"):
        return True
    return len(source) > 1 and _windows_drive(source[0], source[1])


def parse_volume(spec: str) -> tuple[str, str, str, str]:
    """compose-go format.ParseVolume: (type, source, target, options); ValueError with Compose's words."""
    if not spec:
        raise ValueError("invalid empty volume spec")
    if len(spec) <= 2:
        return "volume", "", spec, ""
    fields: list[str] = []
    buffer = ""
    for char in spec + "\0":
        if _windows_drive(buffer, char):
            buffer += char
        elif char in (":", "\0"):
            if not buffer:
                raise ValueError(f"invalid spec: {spec}: empty section between colons")
            if len(fields) == 2 and char == ":":
                raise ValueError(f"invalid spec: {spec}: too many colons")
            fields.append(buffer)
            buffer = ""
        else:
            buffer += char
    if len(fields) == 1:  # an anonymous volume: only a target
        return "volume", "", fields[0], ""
    source, target = fields[0], fields[1]
    options = fields[2] if len(fields) > 2 else ""
    return ("bind" if _file_path(source) else "volume"), source, target, options


def _windows_abs(path: str) -> bool:
    return len(path) > 2 and path[0].isalpha() and path[1] == ":" and path[2] in "\\/" or path.startswith("\\\\")


class Resolved(str):
    """A bind source (or a short volume spec) Compose made absolute from a relative one. `inside` is True when it was
    written against `~` or stays inside the project directory: the project's own files (least-privilege judges the
    host system paths of absolute sources only, so the folder a project is checked out in decides nothing)."""

    inside: bool


def _resolved(text: str, source: str) -> Resolved:
    out = Resolved(text)
    clean = posixpath.normpath(source.replace("\\", "/"))
    out.inside = source.startswith("~") or not (clean == ".." or clean.startswith("../"))
    return out


def _absolute(source: str, workdir: str, home: str | None) -> str:
    """A relative bind source as Compose resolves it: `~` against $HOME, anything else against the project dir."""
    if source.startswith("~"):
        return os.path.join(home, source[1:].lstrip("/")) if home else source
    return os.path.normpath(os.path.join(workdir, source))


def resolve_volume_paths(cfg: CMap, workdir: str, home: str | None) -> None:
    """Make each relative bind source of this file absolute, against this file's project directory (compose-go
    ResolveRelativePaths), before files are merged. Entries Compose cannot parse are left for the reader to report."""
    for spec in (cfg.get("volumes") or {}).values() if isinstance(cfg.get("volumes"), CMap) else ():
        # compose-go resolves a named volume's device only for the local driver named as such and `o: bind` exactly
        opts = spec.get("driver_opts") if isinstance(spec, CMap) and spec.get("driver") == "local" else None
        device = opts.get("device") if isinstance(opts, CMap) and opts.get("o") == "bind" else None
        if isinstance(device, str) and device and not device.startswith("/") and not _windows_abs(device):
            opts["device"] = _resolved(_absolute(device, workdir, home), device)
    services = cfg.get("services")
    if not isinstance(services, CMap):
        return
    for service in services.values():
        volumes = service.get("volumes") if isinstance(service, CMap) else None
        if not isinstance(volumes, CSeq):
            continue
        for index, item in enumerate(volumes):
            if isinstance(item, str):
                try:
                    kind, source, target, options = parse_volume(item)
                except ValueError:
                    continue
                if kind == "bind" and not source.startswith("/") and not _windows_abs(source):
                    resolved = _absolute(source, workdir, home)
                    volumes[index] = _resolved(f"{resolved}:{target}" + (f":{options}" if options else ""), source)
            elif isinstance(item, CMap) and item.get("type") == "bind":
                source = item.get("source")
                if isinstance(source, str) and source and not source.startswith("/") and not _windows_abs(source):
                    item["source"] = _resolved(_absolute(source, workdir, home), source)


def _volume_target(item: Any) -> str | None:
    """compose-go's unicity key for a volume (volumeIndexer): its target."""
    if isinstance(item, CMap):
        target = item.get("target")
        return target if isinstance(target, str) else None
    if isinstance(item, str):
        try:
            return parse_volume(item)[2]
        except ValueError:
            return None
    return None


def named_binds(top_volumes: Any) -> dict[str, str]:
    """Named volumes the local driver binds to a host path: `driver_opts: {type: none, o: bind, device: /path}`."""
    out: dict[str, str] = {}
    if not isinstance(top_volumes, dict):
        return out
    for name, spec in top_volumes.items():
        if not isinstance(spec, dict) or spec.get("driver") not in (None, "local"):
            continue
        opts = spec.get("driver_opts")
        if not isinstance(opts, dict):
            continue
        o, device = opts.get("o"), opts.get("device")
        if (isinstance(o, str) and any(part.strip() in ("bind", "rbind") for part in o.split(","))
                and isinstance(device, str) and device):
            out[name] = device
    return out


def _clean(target: str) -> str:
    """Go's path.Clean, which Compose applies to every mount target."""
    clean = posixpath.normpath(target)
    return "/" + clean.lstrip("/") if clean.startswith("//") else clean


def _mounts(reader: _Reader, top_volumes: Any) -> tuple[HostMount, ...]:
    svc, base = reader.svc, reader.base
    value = svc.get("volumes")
    if value is None:
        return ()
    path = f"{base}.volumes"
    if not isinstance(value, CSeq):
        raise _fail(f"{path} must be a array", reader.origin("volumes"))
    named = named_binds(top_volumes)
    mounts: list[tuple[str, HostMount]] = []
    for index, item in enumerate(value):
        file, line = value.pos(index)
        origin = Origin(file, line, f"{path}[{value.src(index)}]")
        read_only = relative = False
        if isinstance(item, str):
            try:
                kind, source, target, options = parse_volume(item)
            except ValueError as exc:
                raise _fail(str(exc), origin) from None
            for option in options.split(","):  # compose-go: the last of ro / rw wins
                if option in ("ro", "rw"):
                    read_only = option == "ro"
            relative = getattr(item, "inside", False)
        elif isinstance(item, CMap):
            kind, source, target = item.get("type"), item.get("source"), item.get("target")
            if kind is None:
                raise _fail(f"{path}.{index} must be a string", origin)
            if kind not in _VOLUME_TYPES:
                raise _fail(f"{path}.{index}.type value must be one of 'bind', 'volume', 'tmpfs', 'cluster', 'npipe', "
                            "'image'", origin)
            if not isinstance(target, str) or not target:
                raise _fail(f"service volume {path}.[{index}] is missing a mount target", origin)
            if kind == "bind" and (not isinstance(source, str) or not source):
                raise _fail('invalid mount config for type "bind": field Source must not be empty', origin)
            source = source if isinstance(source, str) else ""
            flag = item.get("read_only")
            read_only = flag is True or isinstance(flag, str) and flag.lower() in _TRUE
            relative = getattr(source, "inside", False)
        else:
            raise _fail(f"{path}.{index} must be a string", origin)
        target = _clean(target)
        host = source if kind == "bind" else named.get(source) if kind == "volume" and source else None
        if kind == "volume" and host is not None:
            relative = getattr(host, "inside", False) or not host.startswith("/")
        mounts.append((target, HostMount(name=target, kind="bind" if host is not None else kind, path=host,
                                         origin=origin, read_only=read_only,
                                         relative=relative and host is not None)))
    return enforce_unicity(mounts)  # one mount per target


# --- privileges -------------------------------------------------------------------------------------

class Runtime:
    """What least-privilege reads from one service."""

    __slots__ = ("device_cgroup_rules", "devices", "host_cgroup", "host_ipc", "host_pid", "host_userns", "mounts",
                 "security")

    def __init__(self, security: SecurityContext | None, host_pid: Setting | None, host_ipc: Setting | None,
                 mounts: tuple[HostMount, ...], devices: tuple[Setting, ...] = (),
                 device_cgroup_rules: tuple[Setting, ...] = (), host_userns: Setting | None = None,
                 host_cgroup: Setting | None = None) -> None:
        self.security = security
        self.host_pid = host_pid
        self.host_ipc = host_ipc
        self.mounts = mounts
        self.devices = devices
        self.device_cgroup_rules = device_cgroup_rules
        self.host_userns = host_userns
        self.host_cgroup = host_cgroup


def _namespace(reader: _Reader, key: str) -> Setting | None:
    if key not in reader.svc or reader.svc[key] is None:
        return None
    value = reader.svc[key]
    origin = reader.origin(key)
    if not isinstance(value, str):
        message = f"{origin.path} must be a null or string" if key == "pid" else f"{origin.path} must be a string"
        reader.issue(message, origin, None if isinstance(value, (dict, list)) else value)
        return None
    return Setting("true", f"{key}: {value}", origin) if value == "host" else None


def _host_mode(reader: _Reader, key: str) -> Setting | None:
    """`userns_mode: host` or `cgroup: host`; another string (`private`, a remapped mode) is not the host's."""
    value = reader.svc.get(key)
    if value is None:
        return None
    origin = reader.origin(key)
    if not isinstance(value, str):
        reader.issue(f"{origin.path} must be a string", origin, None if isinstance(value, (dict, list)) else value)
        return None
    return Setting("host", f"{key}: host", origin) if value == "host" else None


def device_source(entry: Any) -> str | None:
    """The host side of a `devices` entry, as compose-go reads it: `SRC[:DST[:PERMS]]`, or a mapping's `source`
    (a CDI name such as `nvidia.com/gpu=all` is kept whole: it has no colon-separated parts)."""
    if isinstance(entry, str):
        return entry.split(":", 1)[0] if entry else None
    if isinstance(entry, dict):
        source = entry.get("source")
        return source if isinstance(source, str) and source else None
    return None


def _devices(reader: _Reader) -> tuple[Setting, ...]:
    value = reader.svc.get("devices")
    if value is None:
        return ()
    path = f"{reader.base}.devices"
    if not isinstance(value, CSeq):
        reader.issue(f"{path} must be a array", reader.origin("devices"), None if isinstance(value, (dict, list)) else value)
        return ()
    out: list[Setting] = []
    for index, item in enumerate(value):
        file, line = value.pos(index)
        origin = Origin(file, line, f"{path}[{value.src(index)}]")
        source = device_source(item)
        if source is None:
            reader.issue(f"{path}.{index} must be a string", origin, None if isinstance(item, (dict, list)) else item)
            continue
        text = item if isinstance(item, str) else f"{source}:{item.get('target') or source}"
        out.append(Setting(source, text, origin))
    return tuple(out)


def security_opts(entries: list[tuple[str, Origin]]) -> dict[str, Setting]:
    """`security_opt` entries as the engine reads them (daemon parseSecurityOpt after compose's parseSecurityOpts),
    as SecurityContext fields; a later entry for the same field wins."""
    out: dict[str, Setting] = {}
    for text, origin in entries:
        if text == "systempaths=unconfined":
            out["proc_mount"] = Setting("Unmasked", text, origin)
            continue
        if text == "no-new-privileges":
            out["allow_privilege_escalation"] = Setting("false", text, origin)
            continue
        if "=" in text:
            key, _, value = text.partition("=")
        elif ":" in text:
            key, _, value = text.partition(":")
        else:
            continue  # Compose refuses it when the container is created; no privilege is granted
        if key == "no-new-privileges":
            if value in _GO_TRUE:
                out["allow_privilege_escalation"] = Setting("false", text, origin)
            elif value in _GO_FALSE:
                out["allow_privilege_escalation"] = Setting("true", text, origin)
        elif key == "seccomp":
            kind = "Unconfined" if value == "unconfined" else "RuntimeDefault" if value == "builtin" else "Localhost"
            out["seccomp"] = Setting(kind, text, origin)
        elif key == "apparmor":
            kind = "Unconfined" if value == "unconfined" else "RuntimeDefault" if value == "docker-default" else "Localhost"
            out["apparmor"] = Setting(kind, text, origin)
        elif key == "label":
            field, _, label = value.partition(":")
            if value == "disable":
                out["selinux_type"] = Setting("spc_t", text, origin)  # unconfined: Docker runs it as spc_t
            elif field in ("type", "user", "role") and label:
                out[f"selinux_{field}"] = Setting(label, text, origin)
    return out


def read_runtime(reader: _Reader, top_volumes: Any) -> Runtime:
    """privileged, pid/ipc, cap_add/cap_drop, security_opt and the service's bind mounts."""
    privileged = _bool(reader, reader.svc, "privileged", f"{reader.base}.privileged")
    item_message = "{path}.[{index}]: unexpected type {type}"
    add = tuple(Setting(capability(t), t, o) for t, o in _strings(reader, "cap_add", item_message=item_message))
    drop = tuple(Setting(capability(t), t, o) for t, o in _strings(reader, "cap_drop", item_message=item_message))
    opts = security_opts(_strings(reader, "security_opt", item_message="{path}.{index} must be a string"))
    security = None
    if privileged is not None or add or drop or opts:
        flag = None
        if privileged is not None:
            flag = Setting("true" if privileged[0] else "false", f"privileged: {'true' if privileged[0] else 'false'}",
                           privileged[1])
        security = SecurityContext(privileged=flag, capabilities_add=add, capabilities_drop=drop, **opts)
    rules = tuple(Setting(t, f"device_cgroup_rules: {t}", o)
                  for t, o in _strings(reader, "device_cgroup_rules", item_message="{path}.{index} must be a string"))
    return Runtime(security, _namespace(reader, "pid"), _namespace(reader, "ipc"), _mounts(reader, top_volumes),
                   _devices(reader), rules, _host_mode(reader, "userns_mode"), _host_mode(reader, "cgroup"))


# --- health check -----------------------------------------------------------------------------------

def read_healthcheck(reader: _Reader) -> Setting | None:
    """The service's own health check decision: "check", "disabled" (`disable: true` or `test: [NONE]`), or None when
    compose leaves it to the image (no `healthcheck`, or one without `test`, e.g. only `interval`)."""
    svc, base = reader.svc, reader.base
    value = svc.get("healthcheck")
    if value is None:
        return None
    path = f"{base}.healthcheck"
    if not isinstance(value, CMap):
        reader.issue(f"{path} must be a mapping", reader.origin("healthcheck"),
                     None if isinstance(value, (dict, list)) else value)
        return None
    disable = _bool(reader, value, "disable", f"{path}.disable")
    if disable is not None and disable[0]:
        return Setting("disabled", "healthcheck.disable: true", disable[1])
    test = value.get("test")
    if test is None:
        return None
    origin = reader.origin("test", value, f"{path}.test")
    if isinstance(test, str):
        return Setting("check", f"healthcheck.test: {test}", origin)  # CMD-SHELL <test>
    if not isinstance(test, CSeq):
        reader.issue(f"{path}.test must be a string", origin, None if isinstance(test, (dict, list)) else test)
        return None
    if not test:
        return None  # an empty test inherits the image's
    first = test[0]
    if first == "NONE":
        return Setting("disabled", "healthcheck.test: [NONE]", origin)
    if first not in ("CMD", "CMD-SHELL"):
        reader.issue('healthcheck.test must start either by "CMD", "CMD-SHELL" or "NONE"', origin,
                     first if isinstance(first, (str, int, float)) else None)
    return Setting("check", "healthcheck.test: " + " ".join(str(t) for t in test), origin)


# --- read-only root filesystem ------------------------------------------------------------------------

def read_only_root(reader: _Reader) -> Setting | None:
    """`read_only` as Docker reads it (`ReadonlyRootfs`): "true" or "false" with the line that set it; None when unset."""
    found = _bool(reader, reader.svc, "read_only", f"{reader.base}.read_only")
    if found is None:
        return None
    text = "true" if found[0] else "false"
    return Setting(text, f"read_only: {text}", found[1])
