"""Image-config cache in front of the registry client (architecture §1, §5): what makes resolution cheap enough for a webhook.

- Configs are kept by manifest digest: immutable, so never revalidated; an in-memory LRU bounded by entries
  and by (estimated) bytes, and for the CLI an on-disk copy kept forever.
- A tag's digest is trusted for `images.tag_ttl` seconds. After that it is revalidated with a HEAD (Docker
  Hub does not count HEADs toward its pull limit), and when the digest is unchanged the cached config answers.
  A `fresh` lookup (`pin`'s drift check: has the tag moved since it was pinned?) skips the tag and failure caches
  and sends that HEAD at once; the gates still apply, and its answer refreshes the cache.
- Failures are cached for a short time (refusals by policy, `blocked`, longer); timeouts are never cached:
  they say how long we waited, not what the registry holds.
- Concurrent lookups of one reference share one resolution; each registry gets a semaphore so a burst of
  admissions cannot open hundreds of connections to it.
- Every key starts with `cred_key`: answers fetched with a pull secret are never served to another caller.
  Pass a hash of the credential, never the credential itself (it ends up in file names' inputs and memory).
- Caches never change a verdict (architecture §5). The `images` settings come with each call, so one resolver
  serves across policy reloads. Every key (tags, configs, failures, in-flight lookups) holds the fingerprint
  of the registry gates (gates.py), so what was learnt under one set of gates is not even looked up under
  another; and before any answer is taken from a cache, or an in-flight lookup is joined, the client re-runs
  the gates that depend on DNS rather than on settings (`admit`: restrict_to_allowed and the address check).
  A refusal there is cached like a lookup's. Only failures can outlive a DNS change, for their short TTL:
  they refuse, so they never let through what a fresh lookup would refuse.
Hand-written rather than cachetools/diskcache: two small LRUs and a JSON-file-per-entry directory are all this needs,
and those libraries would add import time and a SQLite file that CI cannot just keep as a folder.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import hashlib
import json
import os
import time
from collections import Counter, OrderedDict
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, Generic, Protocol, TypeVar

from admission.errors import RegistryError
from admission import reference
from admission.images.gates import Gates
from admission.reference import Reference
from admission.model import HistoryEntry, ImageConfig
from admission.images.settings import ImagesSettings
from admission.textio import write_atomic

__all__ = ["DiskCache", "ImageResolver", "LayerUnreadable", "ListEntry", "MemoryCache", "default_cache_dir",
           "passwd_uid"]

K = TypeVar("K")
V = TypeVar("V")
R = TypeVar("R")

#: Layer bytes downloaded at most to find /etc/passwd (the client's budget for all layers read, compressed).
#: Enough for the distro bases named users usually come from (debian ~30 MB, ubuntu ~30 MB, alpine ~4 MB).
PASSWD_LAYER_BUDGET = 96 << 20
_FINAL_PASSWD_ERRORS = frozenset({"too-large", "not-found", "digest-mismatch"})
_DISK_FILE_CAP = 16 << 20  # a cache entry larger than this was not written by us
# On-disk layout version: a new layout gets a new folder instead of misreading the old one. v2: configs carry the
# manifest's layer sizes (image-size), so a warm cache never hides that rule; a v1 entry, which has none, is never read.
# v3: configs carry the config's Healthcheck (healthcheck), so a v2 entry, which has none, is never read either.
_FORMAT = "v3"


# --- the seam to registry.py (a Protocol, so this module never imports httpx) ---------------------------


class LayerUnreadable(RegistryError):
    """A layer that can never be read (zstd-compressed, not a tar): reason "error", but final like a missing blob,
    so the passwd answer counts as checked instead of costing the layers again on every lookup."""


class FetchedLike(Protocol):
    @property
    def config(self) -> ImageConfig: ...

    @property
    def manifest_digest(self) -> str: ...

    @property
    def index_digest(self) -> str | None: ...

    @property
    def layers(self) -> tuple[str, ...]: ...


class ClientLike(Protocol):
    """The registry client as the resolver uses it; each call carries the `images` settings in force."""

    async def admit(self, ref: Reference, *, deadline: float, settings: ImagesSettings) -> None: ...

    async def resolve_digest(self, ref: Reference, *, deadline: float, settings: ImagesSettings) -> str: ...

    async def fetch(self, ref: Reference, *, deadline: float, digest: str | None = None,
                    settings: ImagesSettings) -> FetchedLike: ...

    async def read_file_from_layers(self, ref: Reference, fetched: Any, path: str, *, deadline: float,
                                    max_bytes: int, settings: ImagesSettings) -> bytes | None: ...


# --- in memory --------------------------------------------------------------------------------------------


class _LRU(Generic[K, V]):
    """Least recently used first out, bounded by entry count and by the summed `size` of the values."""

    __slots__ = ("_items", "_size", "bytes", "max_bytes", "max_entries")

    def __init__(self, *, max_entries: int, max_bytes: int, size: Callable[[V], int]) -> None:
        self._items: OrderedDict[K, tuple[V, int]] = OrderedDict()
        self._size = size
        self.max_entries = max_entries
        self.max_bytes = max_bytes
        self.bytes = 0

    def get(self, key: K) -> V | None:
        item = self._items.get(key)
        if item is None:
            return None
        self._items.move_to_end(key)
        return item[0]

    def put(self, key: K, value: V) -> None:
        size = self._size(value)
        old = self._items.pop(key, None)
        if old is not None:
            self.bytes -= old[1]
        if size > self.max_bytes:
            return  # one value larger than the whole budget would evict everything and then itself
        self._items[key] = (value, size)
        self.bytes += size
        while len(self._items) > self.max_entries or self.bytes > self.max_bytes:
            _, (_, evicted) = self._items.popitem(last=False)
            self.bytes -= evicted

    def pop(self, key: K) -> None:
        old = self._items.pop(key, None)
        if old is not None:
            self.bytes -= old[1]

    def __len__(self) -> int:
        return len(self._items)

    def __contains__(self, key: object) -> bool:
        return key in self._items


@dataclass(frozen=True, slots=True)
class CachedConfig:
    """A config as cached. `passwd_checked`: /etc/passwd was read for a named user (found or not)."""

    config: ImageConfig
    passwd_checked: bool = False


@dataclass(frozen=True, slots=True)
class TagEntry:
    digest: str
    at: float  # MemoryCache: the resolver's clock; DiskCache: wall-clock seconds


@dataclass(frozen=True, slots=True)
class ListEntry:
    """What a registry listed for a digest (a referrers index, a cosign tag's manifest), or None when it had none."""

    body: bytes | None
    at: float  # as TagEntry.at


@dataclass(frozen=True, slots=True)
class NegativeEntry:
    reason: str
    message: str
    until: float  # the resolver's clock


def config_size(config: ImageConfig) -> int:
    """A rough byte count of a cached config (its strings plus a fixed overhead), for the byte budget."""
    n = 256 + len(config.reference) + len(config.digest or "") + len(config.config_digest or "") + len(config.user)
    n += sum(len(e) + 16 for e in config.env) + sum(len(p) + 16 for p in config.exposed_ports)
    n += sum(len(k) + len(v) + 32 for k, v in config.labels.items())
    n += sum(len(h.created_by) + len(h.comment) + len(h.author) + len(h.created) + 64 for h in config.history)
    return n + 8 * len(config.layer_sizes or ())


class MemoryCache:
    """Configs by digest (LRU by entries and bytes), tag -> digest, and recent failures (each LRU by entries)."""

    def __init__(self, *, max_entries: int = 4096, max_bytes: int = 64 << 20, max_tags: int = 16384,
                 max_negative: int = 4096) -> None:
        self.configs: _LRU[str, CachedConfig] = _LRU(max_entries=max_entries, max_bytes=max_bytes,
                                                      size=lambda c: config_size(c.config))
        self.tags: _LRU[str, TagEntry] = _LRU(max_entries=max_tags, max_bytes=1 << 62, size=lambda _: 1)
        self.negative: _LRU[str, NegativeEntry] = _LRU(max_entries=max_negative, max_bytes=1 << 62, size=lambda _: 1)
        # images/verify/: signature manifests and blobs by digest (content-addressed), and what a registry lists for a
        # digest (referrers, cosign's tags), which changes when someone signs: trusted for images.tag_ttl only.
        self.objects: _LRU[str, bytes] = _LRU(max_entries=max_entries, max_bytes=16 << 20, size=len)
        self.lists: _LRU[str, ListEntry] = _LRU(max_entries=max_tags, max_bytes=32 << 20,
                                                size=lambda e: 64 + len(e.body or b""))
        self.no_referrers: _LRU[str, float] = _LRU(max_entries=1024, max_bytes=1 << 62, size=lambda _: 1)
        self.referrers: _LRU[str, float] = _LRU(max_entries=1024, max_bytes=1 << 62, size=lambda _: 1)  # it serves it


# --- on disk (CLI) ----------------------------------------------------------------------------------------


def default_cache_dir() -> Path:
    """`$XDG_CACHE_HOME/admission`, else `~/.cache/admission` (the XDG base-directory default)."""
    base = os.environ.get("XDG_CACHE_HOME")
    if not base or not os.path.isabs(base):  # the spec says to ignore a relative XDG_CACHE_HOME
        base = os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / "admission"


def _config_to_json(config: ImageConfig) -> dict[str, Any]:
    return {
        "reference": config.reference, "digest": config.digest, "user": config.user,
        "config_digest": config.config_digest, "os": config.os, "architecture": config.architecture,
        "exposed_ports": list(config.exposed_ports), "env": list(config.env), "labels": dict(config.labels),
        "history": [{"created_by": h.created_by, "comment": h.comment, "author": h.author, "created": h.created,
                     "empty_layer": h.empty_layer} for h in config.history],
        "user_uid": config.user_uid,
        "layer_sizes": list(config.layer_sizes) if config.layer_sizes is not None else None,
        "layers_compressed": config.layers_compressed,
        "healthcheck": list(config.healthcheck) if config.healthcheck is not None else None,
    }


def _strs(value: Any) -> tuple[str, ...]:
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise TypeError("not a list of strings")
    return tuple(value)


def _opt(value: Any, kind: type) -> Any:
    if value is not None and (not isinstance(value, kind) or isinstance(value, bool) and kind is not bool):
        raise TypeError(f"not {kind.__name__}")
    return value


def _config_from_json(obj: Any) -> ImageConfig:
    """Strict: any shape other than what _config_to_json writes raises TypeError or KeyError (the file is then ignored)."""
    if not isinstance(obj, dict):
        raise TypeError("not an object")
    labels = obj["labels"]
    if not isinstance(labels, dict) or not all(isinstance(k, str) and isinstance(v, str) for k, v in labels.items()):
        raise TypeError("labels")
    history = obj["history"]
    if not isinstance(history, list):
        raise TypeError("history")
    entries = []
    for h in history:
        if not isinstance(h, dict):
            raise TypeError("history entry")
        fields = {k: _opt(h[k], str) for k in ("created_by", "comment", "author", "created")}
        if None in fields.values() or not isinstance(h["empty_layer"], bool):
            raise TypeError("history entry")
        entries.append(HistoryEntry(empty_layer=h["empty_layer"], **fields))
    user = obj["user"]
    if not isinstance(user, str) or not isinstance(obj["os"], str) or not isinstance(obj["architecture"], str):
        raise TypeError("user/os/architecture")
    sizes = obj["layer_sizes"]
    if sizes is not None and (not isinstance(sizes, list) or not all(
            isinstance(n, int) and not isinstance(n, bool) and n >= 0 for n in sizes)):
        raise TypeError("layer_sizes")
    if not isinstance(obj["layers_compressed"], bool):
        raise TypeError("layers_compressed")
    return ImageConfig(
        reference=str(_opt(obj["reference"], str) or ""), digest=_opt(obj["digest"], str), user=user,
        config_digest=_opt(obj["config_digest"], str), os=obj["os"], architecture=obj["architecture"],
        exposed_ports=_strs(obj["exposed_ports"]), env=_strs(obj["env"]), labels=labels,
        history=tuple(entries), user_uid=_opt(obj["user_uid"], int),
        layer_sizes=tuple(sizes) if sizes is not None else None, layers_compressed=obj["layers_compressed"],
        healthcheck=_strs(obj["healthcheck"]) if obj["healthcheck"] is not None else None,
    )


class DiskCache:
    """One JSON file per entry under `root/v1/{configs,tags}/`, named by the SHA-256 of its key.

    Configs are kept forever (a digest never changes meaning); a tag file stores its fetch time (wall clock)
    so the TTL holds across runs and CI can keep the folder between jobs. Writes go to a temp file in the
    same folder and are renamed over the target, so a reader sees the old file or the new one, never half.
    No fsync: a file torn by a crash is just a corrupt entry, and a corrupt or foreign file is ignored (and
    replaced on the next write), never an error. An unwritable folder turns the disk cache into a no-op.
    """

    def __init__(self, root: str | os.PathLike[str]) -> None:
        self.root = Path(root) / _FORMAT
        self.writable = True

    def _path(self, kind: str, key: str) -> Path:
        return self.root / kind / (hashlib.sha256(key.encode()).hexdigest() + ".json")

    def _read(self, kind: str, key: str) -> dict[str, Any] | None:
        try:
            with open(self._path(kind, key), "rb") as f:
                obj = json.loads(f.read(_DISK_FILE_CAP))
        except (OSError, ValueError, RecursionError):
            return None
        if not isinstance(obj, dict) or obj.get("key") != key:
            return None  # corrupt, truncated, or a hash collision / copied file: not ours
        return obj

    def _write(self, kind: str, key: str, body: dict[str, Any]) -> None:
        if not self.writable:
            return
        target = self._path(kind, key)
        try:
            target.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
            write_atomic(str(target), json.dumps({"key": key, **body}, separators=(",", ":")).encode())
        except OSError:
            self.writable = False  # read-only or full: keep answering, just stop trying to write

    def get_config(self, key: str) -> CachedConfig | None:
        obj = self._read("configs", key)
        if obj is None:
            return None
        try:
            checked = obj["passwd_checked"]
            if not isinstance(checked, bool):
                return None
            return CachedConfig(_config_from_json(obj["config"]), checked)
        except (KeyError, ValueError, TypeError):
            return None

    def put_config(self, key: str, cached: CachedConfig) -> None:
        self._write("configs", key, {"passwd_checked": cached.passwd_checked, "config": _config_to_json(cached.config)})

    def get_tag(self, key: str) -> TagEntry | None:
        obj = self._read("tags", key)
        if obj is None:
            return None
        digest, fetched = obj.get("digest"), obj.get("fetched")
        if not isinstance(digest, str) or not isinstance(fetched, (int, float)) or isinstance(fetched, bool):
            return None
        try:
            reference.validate_digest(digest)
        except reference.ReferenceError:
            return None
        return TagEntry(digest, float(fetched))

    def put_tag(self, key: str, entry: TagEntry) -> None:
        self._write("tags", key, {"digest": entry.digest, "fetched": entry.at})

    def get_object(self, key: str, digest: str) -> bytes | None:
        """A content-addressed object, hashed again on every read: a restored or edited cache folder must not be
        able to hand over other bytes under a digest (images/verify/ trusts nothing it has not checked)."""
        obj = self._read("objects", key)
        data = _b64decode(obj.get("data")) if obj is not None else None
        if data is None or not _matches(data, digest):
            return None
        return data

    def put_object(self, key: str, data: bytes) -> None:
        self._write("objects", key, {"data": base64.b64encode(data).decode()})

    def get_list(self, key: str) -> ListEntry | None:
        obj = self._read("lists", key)
        if obj is None or not isinstance(obj.get("fetched"), (int, float)) or isinstance(obj.get("fetched"), bool):
            return None
        body = obj.get("body")
        if body is None:
            return ListEntry(None, float(obj["fetched"]))
        data = _b64decode(body)
        return None if data is None else ListEntry(data, float(obj["fetched"]))

    def put_list(self, key: str, entry: ListEntry) -> None:
        self._write("lists", key, {"body": base64.b64encode(entry.body).decode() if entry.body is not None else None,
                                   "fetched": entry.at})


def _b64decode(value: object) -> bytes | None:
    if not isinstance(value, str):
        return None
    try:
        return base64.b64decode(value, validate=True)
    except (binascii.Error, ValueError):
        return None


def _matches(data: bytes, digest: str) -> bool:
    algorithm, _, hexdigest = digest.partition(":")
    try:
        return hashlib.new(algorithm, data).hexdigest() == hexdigest
    except ValueError:
        return False


# --- /etc/passwd ------------------------------------------------------------------------------------------


def passwd_uid(data: bytes | None, name: str) -> int | None:
    """The uid of `name` in an /etc/passwd (`name:x:uid:gid:...`), or None. The first matching line wins, as in glibc."""
    if not data:
        return None
    for raw in data.decode("utf-8", "replace").splitlines():
        fields = raw.split(":")
        if len(fields) >= 3 and fields[0] == name:
            uid = fields[2].strip()
            return int(uid) if uid.isascii() and uid.isdigit() and len(uid) <= 10 else None
    return None


def _named_user(user: str) -> str | None:
    """The user name a config names, or None for empty, root, or numeric users (their uid is already known)."""
    part = user.split(":", 1)[0]
    if part in ("", "root") or part.lstrip("+-").isdigit():
        return None
    return part


# --- the resolver -----------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class _Scope:
    """One call's lookups: whose (cred_key) and under which `images` settings; every key is made here."""

    cred_key: str
    settings: ImagesSettings
    gates: Gates

    def _prefix(self) -> str:
        return f"{self.cred_key}\n{self.gates.fingerprint}"

    def tag_key(self, ref: Reference) -> str:
        return f"{self._prefix()}\n{ref.name}:{ref.tag}"

    def config_key(self, ref: Reference, digest: str) -> str:
        # The repository is part of the key: a digest served by one repository says nothing about whether
        # another repository (which the pod actually pulls) holds it, or whether this caller may read it.
        return f"{self._prefix()}\n{ref.name}@{digest}\n{self.settings.platform}"

    def object_key(self, ref: Reference, digest: str) -> str:
        """A content-addressed object (a manifest or blob) of `ref`'s repository, as images/verify/ keys it."""
        return f"{self._prefix()}\n{ref.name}@{digest}"

    def ref_key(self, ref: Reference) -> str:
        return f"{self._prefix()}\n{ref}\n{self.settings.platform}"

    def inflight_key(self, ref: Reference) -> str:
        # resolve_user_names too: a lookup started without it brings no uid to a caller that asked for one.
        return f"{self.ref_key(ref)}\n{self.settings.resolve_user_names}"


def _registry_error(exc: Exception) -> RegistryError:
    if isinstance(exc, RegistryError):
        return exc
    return RegistryError(f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__, reason="error")


class ImageResolver:
    """Image reference -> ImageConfig through the caches; RegistryError (with its reason) on failure.

    One resolver (and its caches) can serve every policy a process loads: `config_for` takes the `images`
    settings in force, and answers are kept apart by the fingerprint of their gates (see the module docstring).

    Costs (registry requests per reference, with the real client; it adds GET /v2/ once per registry per
    client, and a token request per repository while the token lasts on registries that use Bearer auth):
    - unseen tag: HEAD manifest + GET manifest by digest (+ GET the platform's manifest when the tag is an
      index) + GET config blob; the config is a few KB;
    - tag known, TTL holds, config cached: nothing;
    - tag known, TTL expired: HEAD manifest; plus the above only when the digest moved;
    - digest reference with the config cached: nothing, forever (also across CLI runs with the disk cache);
    - a failure cached in the last `negative_ttl` seconds (`blocked_ttl` for policy refusals): nothing;
    - after a change to the registry gates: as for an unseen tag, once.
    Before a cached answer is used, the client's `admit` re-runs the address check: nothing for a registry
    in `images.allowed_registries`, otherwise a DNS lookup (the client keeps answers for 30 s).
    With `images.resolve_user_names` and a config user that is a name (not root, not numeric): one more blob
    GET per layer, top down, until a layer holds /etc/passwd. Layers are whole compressed tarballs, and the
    passwd file is usually in the base image's bottom layer, so this can download every layer of the image
    (tens of MB for a distro base), capped at PASSWD_LAYER_BUDGET in all (more: no uid, the config still
    counts). The answer (uid or "not found") is cached with the config, so it is paid once per digest.
    """

    def __init__(self, client: ClientLike, *, settings: ImagesSettings, disk: DiskCache | None = None,
                 memory: MemoryCache | None = None, negative_ttl: float = 30.0, blocked_ttl: float = 300.0,
                 per_registry: int = 8, clock: Callable[[], float] = time.monotonic,
                 wall: Callable[[], float] = time.time) -> None:
        self.client = client
        self.settings = settings  # for calls that pass none (the CLI: one policy per run)
        self.disk = disk
        self.memory = memory if memory is not None else MemoryCache()
        self.negative_ttl = negative_ttl
        self.blocked_ttl = blocked_ttl
        self.per_registry = per_registry
        self.clock = clock  # TTLs only; deadlines are always time.monotonic() values
        self.wall = wall  # tag fetch times on disk
        self.stats: Counter[str] = Counter()
        # images/verify/: a registry's first referrers API answer, awaited by checks that start meanwhile, so a burst
        # of checks against one registry probes it once (registry key -> a future set when the answer is known)
        self.referrer_probes: dict[str, asyncio.Future[None]] = {}
        self._inflight: dict[str, asyncio.Task[CachedConfig]] = {}
        self._inflight_digests: dict[str, asyncio.Task[str]] = {}  # digest_for's HEADs, by tag (and gates, credentials)
        self._semaphores: dict[str, asyncio.Semaphore] = {}

    # -- cache access --

    def _tag(self, scope: _Scope, key: str) -> tuple[str, bool] | None:
        """(digest, fresh) for a tag, from memory or disk."""
        now = self.clock()
        entry = self.memory.tags.get(key)
        if entry is None and self.disk is not None:
            stored = self.disk.get_tag(key)
            if stored is not None:
                age = self.wall() - stored.at
                entry = TagEntry(stored.digest, now - age if age >= 0 else now - float("inf"))
                self.memory.tags.put(key, entry)
        if entry is None:
            return None
        return entry.digest, 0 <= now - entry.at < scope.settings.tag_ttl

    def _store_tag(self, key: str, digest: str) -> None:
        self.memory.tags.put(key, TagEntry(digest, self.clock()))
        if self.disk is not None:
            self.disk.put_tag(key, TagEntry(digest, self.wall()))

    def _config(self, scope: _Scope, key: str) -> CachedConfig | None:
        """A cached config good enough for the call's settings (with the passwd answer when it is wanted)."""
        cached = self.memory.configs.get(key)
        if cached is None and self.disk is not None:
            cached = self.disk.get_config(key)
            if cached is not None:
                self.stats["disk_hit"] += 1
                self.memory.configs.put(key, cached)
        if cached is None:
            return None
        if scope.settings.resolve_user_names and not cached.passwd_checked and _named_user(cached.config.user):
            return None
        return cached

    def _store_config(self, key: str, cached: CachedConfig) -> None:
        self.memory.configs.put(key, cached)
        if self.disk is not None:
            self.disk.put_config(key, cached)

    def _negative(self, key: str) -> NegativeEntry | None:
        entry = self.memory.negative.get(key)
        if entry is not None and self.clock() >= entry.until:
            self.memory.negative.pop(key)
            return None
        return entry

    # -- public --

    async def config_for(self, image: str, *, deadline: float, cred_key: str = "",
                         settings: ImagesSettings | None = None, fresh: bool = False) -> ImageConfig:
        """The config of `image` for `images.platform`. `deadline` is a time.monotonic() value. `settings`: the
        `images` settings of the policy in force (a webhook passes its current policy's); default the resolver's.
        `fresh`: ask the registry what the tag points at now, whatever the tag and failure caches hold (a drift
        check); the answer is cached as any other, and a config already cached for that digest is still used.

        Raises RegistryError: reason `error` for an invalid reference, else the client's reason
        (blocked, timeout, not-found, auth, too-large, digest-mismatch, error).
        """
        scope, named = self._begin(image, cred_key=cred_key, settings=settings)
        ref = reference.tag_name_only(named)  # no tag means :latest, as the kubelet pulls
        ref_key = scope.ref_key(ref)
        # The gates first, then the caches: every answer below (cached or in flight) was obtained under the
        # same gate settings (the key says so), and this re-runs what depends on DNS instead.
        await self._gate(scope, ref, ref_key, image=image, deadline=deadline, fresh=fresh)
        cached = None if fresh and ref.digest is None else self._fast(scope, ref)
        if cached is not None:
            self.stats["hit"] += 1
            return replace(cached.config, reference=image)
        # A fresh lookup never joins one that may have answered from the tag cache.
        inflight_key = scope.inflight_key(ref) + ("\nfresh" if fresh else "")
        cached = await self._shared(self._inflight, inflight_key,
                                    lambda: self._resolve(scope, ref, ref_key, deadline=deadline, fresh=fresh),
                                    image=image, deadline=deadline, started="miss")
        return replace(cached.config, reference=image)

    async def digest_for(self, image: str, *, deadline: float, cred_key: str = "",
                         settings: ImagesSettings | None = None, fresh: bool = False) -> str:
        """The digest the tag of `image` points at (an index's own digest for a multi-platform image), for `pin`.

        The same gates, tag cache (memory and disk, `images.tag_ttl`) and failure cache as `config_for`: one HEAD
        for a tag not known or no longer fresh, nothing for a fresh one. `fresh` (a drift check): one HEAD whatever
        the caches hold, its answer cached as any other. A digest in `image` is ignored: this asks what the tag says
        now. Raises RegistryError with the client's reason.
        """
        scope, named = self._begin(image, cred_key=cred_key, settings=settings)
        ref = Reference(domain=named.domain, path=named.path, tag=named.tag or reference.DEFAULT_TAG)
        tag_key = scope.tag_key(ref)
        failure_key = f"{tag_key}\ndigest"  # not the config's key: a tag can have a digest and no usable config
        await self._gate(scope, ref, failure_key, image=image, deadline=deadline, fresh=fresh)
        known = self._tag(scope, tag_key)
        if known is not None and known[1] and not fresh:
            self.stats["hit"] += 1
            return known[0]
        if known is not None:
            self.stats["revalidate"] += 1
        # Concurrent asks for one tag (a Deployment's Pods created at once, both webhooks) share one HEAD; a fresh
        # one never joins one that may have answered from the tag cache.
        return await self._shared(self._inflight_digests, failure_key + ("\nfresh" if fresh else ""),
                                  lambda: self._head(scope, ref, tag_key, failure_key, deadline=deadline),
                                  image=image, deadline=deadline)

    async def _head(self, scope: _Scope, ref: Reference, tag_key: str, failure_key: str, *, deadline: float) -> str:
        client = self.client
        try:
            digest = await self._call(
                ref, lambda: client.resolve_digest(ref, deadline=deadline, settings=scope.settings), deadline=deadline)
        except Exception as exc:  # noqa: BLE001 - as in _resolve: cached like any failure, never a crash
            error = _registry_error(exc)
            self._remember_failure(failure_key, error)
            raise error from None
        self._store_tag(tag_key, digest)
        return digest

    async def top_digest(self, image: str, *, deadline: float, cred_key: str = "",
                         settings: ImagesSettings | None = None) -> tuple[str, str | None]:
        """(the digest `image` names, the tag it came from): its own digest when it has one (after the gates), else
        what its tag points at now, through the tag cache (`digest_for`): an index's digest for a multi-platform
        image. What images/verify/ checks signatures on."""
        scope, named = self._begin(image, cred_key=cred_key, settings=settings)
        if named.digest is not None:
            await self._gate(scope, named, scope.ref_key(named), image=image, deadline=deadline)
            return named.digest, named.tag
        return await self.digest_for(image, deadline=deadline, cred_key=cred_key, settings=settings), \
            named.tag or reference.DEFAULT_TAG

    def key_prefix(self, *, cred_key: str, settings: ImagesSettings | None) -> str:
        """The start of every cache key made for this caller under these settings (credentials, gates)."""
        chosen = self.settings if settings is None else settings
        return _Scope(cred_key, chosen, Gates.of(chosen))._prefix()

    async def call(self, ref: Reference, call: Callable[[], Awaitable[R]], *, deadline: float) -> R:
        """One registry call under the registry's semaphore, bounded by the deadline (images/verify/)."""
        return await self._call(ref, call, deadline=deadline)

    async def cancel_pending(self) -> None:
        """Cancel lookups still running (e.g. after the caller's deadline) and wait for them to end."""
        tasks: list[asyncio.Task[Any]] = [*self._inflight.values(), *self._inflight_digests.values()]
        for task in tasks:
            task.cancel()
        if tasks:
            await asyncio.gather(*tasks, return_exceptions=True)

    # -- internals --

    def _begin(self, image: str, *, cred_key: str, settings: ImagesSettings | None) -> tuple[_Scope, Reference]:
        """The call's scope and its parsed reference; RegistryError (reason error) for an invalid one."""
        chosen = self.settings if settings is None else settings
        scope = _Scope(cred_key, chosen, Gates.of(chosen))
        try:
            return scope, reference.parse_normalized_named(image)
        except reference.ReferenceError as exc:
            raise RegistryError(f"invalid image reference '{image}': {exc}", reason="error") from None

    async def _gate(self, scope: _Scope, ref: Reference, key: str, *, image: str, deadline: float,
                    fresh: bool = False) -> None:
        """A failure remembered under `key` answers again (not for a `fresh` lookup, which asks the registry); then
        the client's pre-request gates (`_admit`), always."""
        failed = None if fresh else self._negative(key)
        if failed is not None:
            self.stats["negative_hit"] += 1
            raise RegistryError(failed.message, reason=failed.reason)
        await self._admit(scope, ref, key, image=image, deadline=deadline)

    async def _admit(self, scope: _Scope, ref: Reference, ref_key: str, *, image: str, deadline: float) -> None:
        """The client's pre-request gates for `ref`; a refusal is remembered as a lookup's would be."""
        try:
            async with asyncio.timeout(deadline - time.monotonic()):
                await self.client.admit(ref, deadline=deadline, settings=scope.settings)
        except TimeoutError:
            raise RegistryError(f"{image}: not resolved within the deadline", reason="timeout") from None
        except Exception as exc:  # noqa: BLE001 - as in _resolve: a client bug is a failure, not a crash
            error = _registry_error(exc)
            self.stats["refused"] += 1
            self._remember_failure(ref_key, error)
            raise error from None

    async def _shared(self, inflight: dict[str, asyncio.Task[R]], key: str, start: Callable[[], Awaitable[R]], *,
                      image: str, deadline: float, started: str | None = None) -> R:
        """The answer of the lookup in flight under `key`, joined, or of one started now (`started`: the stat it
        counts). Shielded: one caller's deadline or cancellation must not cancel the lookup the others wait on."""
        for attempt in (1, 2):
            task = inflight.get(key)
            joined = task is not None
            if task is None:
                if started:
                    self.stats[started] += 1
                task = asyncio.get_running_loop().create_task(start())  # type: ignore[arg-type]
                inflight[key] = task
                task.add_done_callback(lambda t, k=key: self._done(inflight, k, t))
            else:
                self.stats["dedup"] += 1
            try:
                async with asyncio.timeout(deadline - time.monotonic()):
                    return await asyncio.shield(task)
            except TimeoutError:
                raise RegistryError(f"{image}: not resolved within the deadline", reason="timeout") from None
            except RegistryError as exc:
                # A joined lookup runs under the deadline of whoever started it; when that ran out first,
                # a caller with time left tries once more under its own.
                if joined and attempt == 1 and exc.reason == "timeout" and deadline - time.monotonic() > 0.05:
                    continue
                raise
        raise AssertionError("unreachable")  # pragma: no cover

    @staticmethod
    def _done(inflight: dict[str, asyncio.Task[Any]], key: str, task: asyncio.Task[Any]) -> None:
        if inflight.get(key) is task:
            del inflight[key]
        if not task.cancelled():
            task.exception()  # retrieved here: when every waiter timed out nobody else would, and asyncio would warn

    def _fast(self, scope: _Scope, ref: Reference) -> CachedConfig | None:
        digest = ref.digest
        if digest is None:
            tag = self._tag(scope, scope.tag_key(ref))
            if tag is None or not tag[1]:
                return None
            digest = tag[0]
        return self._config(scope, scope.config_key(ref, digest))

    async def _resolve(self, scope: _Scope, ref: Reference, ref_key: str, *, deadline: float,
                       fresh: bool = False) -> CachedConfig:
        try:
            return await self._lookup(scope, ref, deadline=deadline, fresh=fresh)
        except Exception as exc:  # noqa: BLE001 - a client bug is a failure like any other: cached, not a crash
            error = _registry_error(exc)
            self._remember_failure(ref_key, error)
            if error is exc:
                raise
            raise error from None

    def _remember_failure(self, ref_key: str, exc: RegistryError) -> None:
        if exc.reason != "timeout":
            ttl = self.blocked_ttl if exc.reason == "blocked" else self.negative_ttl
            self.memory.negative.put(ref_key, NegativeEntry(exc.reason, str(exc), self.clock() + ttl))

    async def _lookup(self, scope: _Scope, ref: Reference, *, deadline: float, fresh: bool = False) -> CachedConfig:
        client = self.client
        settings = scope.settings
        digest = ref.digest  # with both a tag and a digest the digest wins, as for docker and the kubelet
        if digest is None:
            tag_key = scope.tag_key(ref)
            known = self._tag(scope, tag_key)
            if known is not None and known[1] and not fresh:
                digest = known[0]
            else:
                # HEAD first even for an unseen tag: the digest may already be cached (another tag, the disk
                # cache), and the client's fetch by tag would send the same HEAD anyway.
                if known is not None:
                    self.stats["revalidate"] += 1
                digest = await self._call(
                    ref, lambda: client.resolve_digest(ref, deadline=deadline, settings=settings), deadline=deadline)
                self._store_tag(tag_key, digest)
        key = scope.config_key(ref, digest)
        cached = self._config(scope, key)
        if cached is not None:
            return cached
        pinned = digest
        fetched = await self._call(
            ref, lambda: client.fetch(ref, deadline=deadline, digest=pinned, settings=settings), deadline=deadline)
        top = getattr(fetched, "top", None)
        if top is not None:  # images/verify/ reads the same index (its attestations, its platforms): keep it
            self.memory.objects.put(scope.object_key(ref, digest), top)
        cached = await self._with_uid(scope, ref, fetched, deadline=deadline)
        self._store_config(key, cached)
        if fetched.manifest_digest != digest:  # an index: a later pin by the platform manifest's digest also hits
            self._store_config(scope.config_key(ref, fetched.manifest_digest), cached)
        return cached

    async def _with_uid(self, scope: _Scope, ref: Reference, fetched: FetchedLike, *, deadline: float) -> CachedConfig:
        config = fetched.config
        name = _named_user(config.user) if scope.settings.resolve_user_names else None
        if name is None:
            return CachedConfig(config, passwd_checked=False)
        client = self.client
        try:
            data = await self._call(ref, lambda: client.read_file_from_layers(
                ref, fetched, "/etc/passwd", deadline=deadline, max_bytes=PASSWD_LAYER_BUDGET,
                settings=scope.settings), deadline=deadline)
        except RegistryError as exc:
            # The uid only improves a fix message; the config itself was had. An answer that will not change
            # (layers over the budget, a missing or corrupt blob) counts as checked; a transient one is tried
            # again by a later lookup.
            self.stats["passwd_error"] += 1
            final = exc.reason in _FINAL_PASSWD_ERRORS or isinstance(exc, LayerUnreadable)
            return CachedConfig(config, passwd_checked=final)
        uid = passwd_uid(data, name)
        return CachedConfig(replace(config, user_uid=uid) if uid is not None else config, passwd_checked=True)

    async def _call(self, ref: Reference, call: Callable[[], Awaitable[R]], *, deadline: float) -> R:
        """One registry call under the registry's semaphore, bounded by the deadline."""
        host = reference.registry_host(ref)
        sem = self._semaphores.get(host)
        if sem is None:
            sem = self._semaphores[host] = asyncio.Semaphore(self.per_registry)
        try:
            async with asyncio.timeout(deadline - time.monotonic()):
                async with sem:
                    self.stats["registry_call"] += 1
                    return await call()
        except TimeoutError:
            raise RegistryError(f"{ref}: registry {host} did not answer within the deadline", reason="timeout") from None
