"""The compose tree with origins, and compose-go's override rules (merge, `!reset`, `!override`, unicity).

Hand-written: the rules are compose-go's own (override/merge.go, loader/reset.go) and keep each value's file and line.
"""

from __future__ import annotations

from collections.abc import Callable, Hashable, Iterable, Mapping
from typing import Any, TypeVar

from admission.errors import InputError
from admission.sources.compose_interp import TemplateError, split_assignment, substitute_marked
from admission.yamlload import Tagged

T = TypeVar("T")

Pos = tuple[str, int]  # (display file, 1-based line)
PathKey = tuple["str | int", ...]


class CMap(dict):  # type: ignore[type-arg]
    """A mapping whose keys remember the file and line they were written at."""

    __slots__ = ("at", "kpos")

    def __init__(self, at: Pos) -> None:
        super().__init__()
        self.at = at
        self.kpos: dict[str, Pos] = {}

    def pos(self, key: str) -> Pos:
        return self.kpos.get(key, self.at)


class CSeq(list):  # type: ignore[type-arg]
    """A sequence whose items remember the file and line they were written at."""

    __slots__ = ("at", "ipos", "isrc")

    def __init__(self, at: Pos) -> None:
        super().__init__()
        self.at = at
        self.ipos: list[Pos] = []
        self.isrc: list[int] = []  # each item's index in the file that wrote it (merges append and replace)

    def pos(self, index: int) -> Pos:
        return self.ipos[index] if 0 <= index < len(self.ipos) else self.at

    def src(self, index: int) -> int:
        return self.isrc[index] if 0 <= index < len(self.isrc) else index

    def add(self, item: Any, pos: Pos, src: int) -> None:
        self.append(item)
        self.ipos.append(pos)
        self.isrc.append(src)


_DROP = object()


def enforce_unicity(entries: Iterable[tuple[Hashable, T]]) -> tuple[T, ...]:
    """compose-go EnforceUnicity: one entry per key; a later entry with a key already seen replaces the earlier
    one in place (ports by binding, volumes by target)."""
    slots: dict[Hashable, int] = {}
    out: list[T] = []
    for key, item in entries:
        if key in slots:
            out[slots[key]] = item
        else:
            slots[key] = len(out)
            out.append(item)
    return tuple(out)


def dotted(path: PathKey) -> str:
    """`("services", "web", "ports", 0)` -> `services.web.ports[0]`."""
    out = ""
    for part in path:
        if isinstance(part, int):
            out += f"[{part}]"
        else:
            out += ("." if out else "") + part
    return out


def convert(node: Any, *, file: str, line: int, lookup: Callable[[str], str | None],
            resets: list[PathKey], path: PathKey = ()) -> Any:
    """Loader tree -> CMap/CSeq with origins; interpolates every string value (not keys).

    `!reset` values are dropped and `!override` values kept; both record their path in `resets`, which
    the caller applies to what earlier files defined (compose-go ResetProcessor).
    """
    if isinstance(node, Tagged):
        resets.append(path)
        if node.tag == "!reset":
            return _DROP
        line = node.line
        node = node.value
    if isinstance(node, dict):
        node_line = getattr(node, "line", line) or line
        key_lines: Mapping[str, int] = getattr(node, "key_lines", {})
        out = CMap((file, node_line))
        for key, value in node.items():
            key_line = key_lines.get(key, node_line)
            converted = convert(value, file=file, line=key_line, lookup=lookup, resets=resets, path=path + (key,))
            if converted is _DROP:
                continue
            out[key] = converted
            out.kpos[key] = (file, key_line)
        return out
    if isinstance(node, list):
        seq_line = getattr(node, "line", line) or line
        item_lines: list[int] = getattr(node, "item_lines", [])
        seq = CSeq((file, seq_line))
        for index, value in enumerate(node):
            item_line = item_lines[index] if index < len(item_lines) else seq_line
            converted = convert(value, file=file, line=item_line, lookup=lookup, resets=resets, path=path + (index,))
            if converted is _DROP:
                continue
            seq.add(converted, (file, item_line), index)
        return seq
    if isinstance(node, str) and "$" in node:
        try:
            return substitute_marked(node, lookup)
        except TemplateError as exc:
            raise InputError(exc.message, file=file, line=line, path=dotted(path)) from None
    return node


def apply_resets(target: CMap, resets: list[PathKey]) -> None:
    """Delete what earlier files set at each `!reset`/`!override` path (sequence items never match, as in compose-go)."""
    for path in resets:
        if not path or any(isinstance(part, int) for part in path):
            continue
        node: Any = target
        for part in path[:-1]:
            node = node.get(part) if isinstance(node, dict) else None
            if node is None:
                break
        if isinstance(node, dict) and path[-1] in node:
            del node[path[-1]]
            if isinstance(node, CMap):
                node.kpos.pop(str(path[-1]), None)


def deep_copy(value: Any) -> Any:
    if isinstance(value, CMap):
        out = CMap(value.at)
        for key, item in value.items():
            out[key] = deep_copy(item)
        out.kpos.update(value.kpos)
        return out
    if isinstance(value, CSeq):
        seq = CSeq(value.at)
        for index, item in enumerate(value):
            seq.add(deep_copy(item), value.pos(index), value.src(index))
        return seq
    return value


# --- merging (compose-go override/merge.go) --------------------------------------------------------

def _kv_entries(value: Any) -> list[tuple[str, Any, Pos]]:
    """A KEY=VALUE list or a mapping as (key, value, pos) triples; a bare KEY has value None."""
    out: list[tuple[str, Any, Pos]] = []
    if isinstance(value, CMap):
        for key, item in value.items():
            out.append((key, item, value.pos(key)))
    elif isinstance(value, CSeq):
        for index, item in enumerate(value):
            key, rest = split_assignment(item if isinstance(item, str) else str(item))
            out.append((key, rest, value.pos(index)))
    return out


def _merge_key_values(base: Any, over: Any) -> Any:
    """Merge by key, later wins (compose-go mergeKeyValueSequence); returned as a CMap for simplicity."""
    at = base.at if isinstance(base, (CMap, CSeq)) else over.at
    out = CMap(at)
    for key, value, pos in _kv_entries(base) + _kv_entries(over):
        out[key] = value
        out.kpos[key] = pos
    return out


def _as_mapping(value: Any, at: Pos) -> CMap:
    """A list of names (service `networks`) as a mapping of name -> None."""
    if isinstance(value, CMap):
        return value
    out = CMap(value.at if isinstance(value, CSeq) else at)
    if isinstance(value, CSeq):
        for index, item in enumerate(value):
            key = item if isinstance(item, str) else str(item)
            out[key] = None
            out.kpos[key] = value.pos(index)
    elif isinstance(value, str):
        out[value] = None
    return out


def _as_build(value: Any, at: Pos) -> Any:
    if isinstance(value, CMap):
        return value
    if value is None:
        return CMap(at)
    if isinstance(value, str) or not isinstance(value, (CSeq,)):
        out = CMap(at)
        out["context"] = value
        out.kpos["context"] = at
        return out
    return value


_OVERRIDE = frozenset({"command", "entrypoint"})
_KEY_VALUE = frozenset({"environment", "labels", "annotations", "sysctls"})
_BUILD_KEY_VALUE = frozenset({"args", "labels", "additional_contexts"})


def merge(base: Any, over: Any, path: PathKey, over_at: Pos | None = None) -> Any:
    """The value of `over` laid on `base` at `path`, as compose-go merges override files."""
    depth = len(path)
    in_service = depth >= 3 and path[0] in ("services", "jobs")
    if in_service and depth == 3:
        key = path[2]
        if key in _OVERRIDE:
            return over
        if key in _KEY_VALUE and isinstance(base, (CMap, CSeq)) and isinstance(over, (CMap, CSeq)):
            return _merge_key_values(base, over)
        if key == "build" and over is not None:
            at = over_at or (over.at if isinstance(over, (CMap, CSeq)) else base_at(base))
            base_build, over_build = _as_build(base, base_at(base)), _as_build(over, at)
            if isinstance(base_build, CMap) and isinstance(over_build, CMap):
                return _merge_maps(base_build, over_build, path)
            return over
        if key == "networks" and over is not None and base is not None:
            return _merge_maps(_as_mapping(base, base_at(base)), _as_mapping(over, over_at or base_at(base)), path)
    if (in_service and depth == 4 and path[2] == "build" and path[3] in _BUILD_KEY_VALUE
            and isinstance(base, (CMap, CSeq)) and isinstance(over, (CMap, CSeq))):
        return _merge_key_values(base, over)
    if in_service and depth == 4 and path[2] == "healthcheck" and path[3] == "test":
        return over
    if over is None:
        return base
    if isinstance(base, CMap) and isinstance(over, CMap):
        return _merge_maps(base, over, path)
    if isinstance(base, CSeq) and isinstance(over, CSeq):
        out = CSeq(base.at)
        for index, item in enumerate(base):
            out.add(item, base.pos(index), base.src(index))
        for index, item in enumerate(over):
            if item not in out:  # compose-go appends without exact duplicates
                out.add(item, over.pos(index), over.src(index))
        return out
    return over


def base_at(value: Any) -> Pos:
    return value.at if isinstance(value, (CMap, CSeq)) else ("", 0)


def _merge_maps(base: CMap, over: CMap, path: PathKey) -> CMap:
    out = CMap(base.at)
    for key, value in base.items():
        out[key] = value
        out.kpos[key] = base.pos(key)
    for key, value in over.items():
        if key not in out:
            out[key] = value
            out.kpos[key] = over.pos(key)
            continue
        previous = out[key]
        merged = merge(previous, value, path + (key,), over.pos(key))
        out[key] = merged
        # A merged mapping keeps where it was first written; a replaced value moves to where it now comes from.
        if not (isinstance(previous, CMap) and isinstance(value, CMap)) and merged is not previous:
            out.kpos[key] = over.pos(key)
    return out


def port_key(item: Any) -> str | None:
    """compose-go's unicity key for a port entry (override/uncity.go portIndexer)."""
    if isinstance(item, bool):
        return None
    if isinstance(item, int):
        return str(item)
    if isinstance(item, str):
        return item
    if isinstance(item, CMap):
        target = item.get("target")
        published = item.get("published")
        host = item.get("host_ip") if isinstance(item.get("host_ip"), str) else "0.0.0.0"
        protocol = item.get("protocol") if isinstance(item.get("protocol"), str) else "tcp"
        return f"{host}:{'' if published is None else published}:{target}/{protocol}"
    return None


def enforce_port_unicity(model: CMap) -> None:
    """A port redefined by a later file replaces the earlier entry in place (compose-go EnforceUnicity)."""
    services = model.get("services")
    if not isinstance(services, CMap):
        return
    for service in services.values():
        if not isinstance(service, CMap):
            continue
        ports = service.get("ports")
        if not isinstance(ports, CSeq):
            continue
        out = CSeq(ports.at)
        seen: dict[str, int] = {}
        for index, item in enumerate(ports):
            key = port_key(item)
            if key is not None and key in seen:
                out[seen[key]] = item
                out.ipos[seen[key]] = ports.pos(index)
                out.isrc[seen[key]] = ports.src(index)
                continue
            if key is not None:
                seen[key] = len(out)
            out.add(item, ports.pos(index), ports.src(index))
        service["ports"] = out
