"""`docker save` / oci-archive tarballs and OCI layout directories -> one Image workload per reference (architecture §2, §4).

Only the tar index and the index, manifest and config members are read, each under its own cap; layers never are.
The stdlib tarfile indexes the archive by seeking past member data ("r:" mode), so a 2 GB archive costs a few reads.
The OCI / Docker JSON is walked by hand: no light library reads both layouts without also pulling the layers.

Decisions (architecture §2 leaves them open):
- One Workload per reference: every RepoTag of a `docker save` entry and every ref-name annotation of an OCI index is
  its own object, even when several share a config, because each is a name that can be deployed and exempted on its
  own. Untagged images are named after the archive (plus `@<manifest digest>` when the archive holds several).
- A `docker save` archive (manifest.json) is read as `docker load` reads it; newer Docker also writes index.json,
  which then only supplies the manifest digests. An archive with index.json alone is read as an OCI layout.
- Indexes may nest; `platform` picks the manifest inside an index, attestation manifests are ignored, and top-level
  entries are taken as they are (the archive names them).
- Origins point at the config member, which holds every value the rules read (User, history, labels).

Compressed tarballs and stdin cannot seek, so they are read once as a stream: we decompress (gzip; zstd through the
`zstandard` package, imported only when its magic is seen) and give tarfile a plain stream ("r|"). tarfile's own
"r|*" is not used: it knows no zstd before Python 3.14, and our own detection gives gzip and zstd the same messages.
While streaming, a member is kept only when it is small enough to be an index, manifest or config and starts like
JSON; layers are skipped unbuffered. Such members are all kept to the end, because `docker save` may write
manifest.json after the configs and layers it names; their count and total size are capped.
A walk first sniffs a tarball: it is checked only when its first members (from at most SNIFF_CAP decompressed
bytes) look like an image archive (architecture §2); skopeo's docker-archive starts with `<hex>.tar`, so that counts too.
"""

from __future__ import annotations

import base64
import binascii
import gzip
import hashlib
import io
import json
import os
import posixpath
import re
import stat
import tarfile
import zlib
from collections.abc import Mapping
from dataclasses import dataclass, replace
from typing import IO, Any, Protocol

from admission.errors import InputError
from admission.images.layers import manifest_layer_sizes
from admission.model import (Carried, CarriedAttestation, CarriedSignature, Container, HistoryEntry, ImageConfig, Origin,
                             Workload)

MANIFEST_CAP = 4 * 1024 * 1024  # manifest.json, index.json, OCI manifests and indexes
CONFIG_CAP = 8 * 1024 * 1024
EXT_HEADER_CAP = 1024 * 1024  # a PAX or GNU long-name header, which tarfile would otherwise read whole
MAX_MEMBERS = 500_000  # tarfile keeps a TarInfo per member; a real docker save has ~4 per layer
MAX_DEPTH = 8  # index -> index -> ... -> manifest
SNIFF_CAP = 4 * 1024 * 1024  # decompressed bytes a walk reads to tell an image archive from other tarballs
SNIFF_MEMBERS = 16  # "its first members": an image archive names itself within its first few
STREAM_KEEP_BYTES = 32 * 1024 * 1024  # JSON members a stream keeps until it knows which it needs
STREAM_KEEP_MEMBERS = 10_000
STREAM_TRAILER_CAP = 1024 * 1024  # read past the tar's end, so `docker save | ...` does not die of SIGPIPE
_STREAM_BUFSIZE = 256 * 1024
_GZIP_MAGIC = b"\x1f\x8b"
_ZSTD_MAGIC = b"\x28\xb5\x2f\xfd"
# Root members only an image archive has: OCI layout files, docker save files, skopeo's `<hex>.tar` layers.
_IMAGE_MEMBER = re.compile(r"(oci-layout|manifest\.json|index\.json|blobs(/.*)?"
                           r"|[a-f0-9]{64}(\.tar|\.json|/layer\.tar))\Z")

_INDEX_TYPES = frozenset({"application/vnd.oci.image.index.v1+json",
                          "application/vnd.docker.distribution.manifest.list.v2+json"})
_MANIFEST_TYPES = frozenset({"application/vnd.oci.image.manifest.v1+json",
                             "application/vnd.docker.distribution.manifest.v2+json"})
_CONFIG_TYPES = frozenset({"application/vnd.oci.image.config.v1+json",
                           "application/vnd.docker.container.image.v1+json"})
_DIGEST = re.compile(r"(sha256):([a-f0-9]{64})\Z|(sha512):([a-f0-9]{128})\Z")
# cosign's objects in a layout: `cosign save` marks them by a `kind` annotation; copied tags keep cosign's tag names.
_COSIGN_KINDS = {"dev.cosignproject.cosign/sigs": "sigs", "dev.cosignproject.cosign/atts": "atts"}
_COSIGN_TAG = re.compile(r"(?:^|:)sha256-([a-f0-9]{64})(\.sig|\.att)?\Z")
SIGNATURE_SCAN_CAP = 64 * 1024  # a signature manifest is about 1 KiB
SIGNATURE_SCAN_MEMBERS = 4096
_NAMED_BY_DIGEST = re.compile(r"(?:^|/)([a-f0-9]{64})(?:\.json)?\Z")  # "<hex>.json" or "blobs/sha256/<hex>"
_ARCH_ALIASES = {"x86_64": "amd64", "x86-64": "amd64", "aarch64": "arm64", "armhf": "arm", "armel": "arm"}
_DEFAULT_VARIANT = {"arm64": "v8", "arm": "v7"}
_IMPLIED_VARIANT = {"armel": "v6", "armhf": "v7"}
_EXT_HEADER_TYPES = frozenset({tarfile.XHDTYPE, tarfile.XGLTYPE, tarfile.SOLARIS_XHDTYPE,
                               tarfile.GNUTYPE_LONGNAME, tarfile.GNUTYPE_LONGLINK})


def is_archive(path: str) -> bool:
    """A tarball, plain, gzip or zstd (by its first bytes, not its name), or a directory holding an `oci-layout`."""
    if os.path.isdir(path):
        return os.path.isfile(os.path.join(path, "oci-layout"))
    try:
        with open(path, "rb") as fh:
            block = fh.read(tarfile.BLOCKSIZE)
    except OSError:
        return False
    return is_tar_stream(block)


def _is_tar_header(block: bytes) -> bool:
    # The header checksum is what tar itself trusts; the "ustar" magic is absent from v7 archives.
    if len(block) < tarfile.BLOCKSIZE or block.count(0) == tarfile.BLOCKSIZE:
        return False
    field = block[148:156].replace(b"\x00", b" ").strip()
    if not field or any(c not in b"01234567" for c in field):
        return False
    stored = int(field, 8)
    unsigned = sum(block[:148]) + 8 * 32 + sum(block[156:])
    signed = sum(b - 256 if b > 127 else b for b in block[:148]) + 8 * 32 + sum(b - 256 if b > 127 else b for b in block[156:])
    return stored in (unsigned, signed)


def compression(head: bytes) -> str | None:
    """'gzip' or 'zstd' from the first bytes of a file or stream; None for anything else."""
    if head.startswith(_GZIP_MAGIC):
        return "gzip"
    if head.startswith(_ZSTD_MAGIC):
        return "zstd"
    return None


def is_tar_stream(head: bytes) -> bool:
    """Whether a stream whose first bytes (512, or all there are) are `head` is a tarball: plain, gzip or zstd."""
    return compression(head) is not None or _is_tar_header(head[:tarfile.BLOCKSIZE])


def load(path: str, *, display: str, platform: str = "linux/amd64") -> list[Workload]:
    """Every image the archive or layout names, as Image workloads carrying their ImageConfig."""
    want = _Platform.parse(platform, display=display)
    fallback = os.path.basename(os.path.normpath(path)) or display
    if os.path.isdir(path):
        store: _Store = _DirStore(path, display)
        return _load_oci(store, display=display, fallback=fallback, want=want)
    try:
        with open(path, "rb") as fh:
            head = fh.read(len(_ZSTD_MAGIC))
            if compression(head) is not None:  # cannot seek: read it once, as a stream
                return _load_stream(fh, head=head, display=display, fallback=fallback, want=want)
            fh.seek(0)
            return _load_tarball(fh, display=display, fallback=fallback, want=want)
    except OSError as exc:  # opening it; read errors inside become InputErrors naming the member
        raise InputError(f"cannot read: {exc.strerror or exc}", file=display) from None


def load_stream(fileobj: IO[bytes], *, display: str, platform: str = "linux/amd64",
                head: bytes = b"") -> list[Workload]:
    """A tarball (plain, gzip or zstd) read once from a stream such as stdin, in constant memory.

    `head` is what the caller already read from `fileobj` to recognise it (see `is_tar_stream`)."""
    want = _Platform.parse(platform, display=display)
    fallback = "stdin" if display == "-" else os.path.basename(display) or display
    return _load_stream(fileobj, head=head, display=display, fallback=fallback, want=want)


def sniff(path: str, *, display: str | None = None) -> str | None:
    """None when `path` is a tarball (plain, gzip or zstd) whose first members look like an image archive;
    otherwise the reason it is not one, for a walk to skip it with. Reads at most SNIFF_CAP decompressed bytes
    (of a plain tar only its first headers, by seeking)."""
    try:
        with open(path, "rb") as fh:
            head = fh.read(tarfile.BLOCKSIZE)
            kind = compression(head)
            if kind is None:
                if not _is_tar_header(head):
                    return "neither a tar archive nor gzip or zstd data"
                fh.seek(0)
                names = _first_members(fh)
            else:
                fh.seek(0)
                prefix, error = _decompressed_prefix(fh, kind)
                if not _is_tar_header(prefix[:tarfile.BLOCKSIZE]):
                    if error is not None and len(prefix) < tarfile.BLOCKSIZE:
                        return error  # "the gzip data is corrupt or cut short: ..."
                    return f"{kind} data that is not a tar archive"
                names = _first_members(io.BytesIO(prefix))
    except OSError as exc:
        raise InputError(f"cannot read: {exc.strerror or exc}", file=display or path) from None
    if any(_IMAGE_MEMBER.match(n) for n in map(_member_name, names) if n is not None):
        return None
    what = "a tar archive" if kind is None else f"a {kind}-compressed tar archive"
    return f"{what}, but not an image archive (first members: {_shown(names)})"


def _first_members(fh: IO[bytes]) -> list[str]:
    """The names of the first SNIFF_MEMBERS members (directories with a trailing /); a cut or bad tar ends the list."""
    names: list[str] = []
    try:
        with tarfile.open(fileobj=fh, mode="r:", tarinfo=_CappedTarInfo) as tar:
            while len(names) < SNIFF_MEMBERS and (info := tar.next()) is not None:
                names.append(info.name + "/" if info.isdir() and not info.name.endswith("/") else info.name)
                tar.members.clear()
    except (tarfile.TarError, OSError, EOFError, _HeaderTooBig):
        pass
    return names


def _decompressed_prefix(fh: IO[bytes], kind: str) -> tuple[bytes, str | None]:
    """Up to SNIFF_CAP decompressed bytes, and the decompression error that ended them early, if any."""
    chunks: list[bytes] = []
    total = 0
    try:
        reader = _Decompressing(fh, kind)
        while total < SNIFF_CAP:
            chunk = reader.read(min(1 << 16, SNIFF_CAP - total))
            if not chunk:
                break
            chunks.append(chunk)
            total += len(chunk)
    except _BadData as exc:
        return b"".join(chunks), str(exc)
    return b"".join(chunks), None


def _shown(names: list[str], limit: int = 3) -> str:
    """Member names as a report line shows them: a few, printable, not too long."""
    def printable(name: str) -> str:
        clean = "".join(c if c.isprintable() else "?" for c in name)
        return clean if len(clean) <= 80 else clean[:79] + "…"
    return ", ".join(printable(n) for n in names[:limit]) + (", …" if len(names) > limit else "") if names else "none"


def _load_tarball(fh: IO[bytes], *, display: str, fallback: str, want: _Platform) -> list[Workload]:
    return _load_members(_TarStore(fh, display), display=display, fallback=fallback, want=want)


def _load_stream(raw: IO[bytes], *, head: bytes, display: str, fallback: str, want: _Platform) -> list[Workload]:
    return _load_members(_StreamStore(_tar_stream(raw, head=head, display=display), display),
                         display=display, fallback=fallback, want=want)


def _load_members(store: _TarIndex, *, display: str, fallback: str, want: _Platform) -> list[Workload]:
    if store.has("manifest.json"):
        return _load_docker(store, display=display, fallback=fallback, want=want)
    if store.has("index.json"):
        return _load_oci(store, display=display, fallback=fallback, want=want)
    raise InputError("not an image archive: the tar has neither manifest.json (docker save) nor index.json (OCI) "
                     f"(first members: {_shown(store.first)})", file=display)


# ---------------------------------------------------------------------------------------------------------------
# Streams: decompression, and a tar read once from front to back.


class _BadData(Exception):
    pass


class _Prefixed:
    """`fileobj` with `head` (bytes already read from it) put back in front."""

    def __init__(self, head: bytes, fileobj: IO[bytes] | _Decompressing) -> None:
        self._head = head
        self._fileobj = fileobj

    def read(self, size: int = -1) -> bytes:
        if not self._head:
            return self._fileobj.read(size)
        if size < 0:
            head, self._head = self._head, b""
            return head + self._fileobj.read()
        head, self._head = self._head[:size], self._head[size:]
        return head  # possibly short, as a pipe's read is; every reader here reads again


class _Decompressing:
    """Decompressed bytes of a gzip or zstd stream, read forward only; corrupt or cut input raises _BadData."""

    def __init__(self, raw: IO[bytes] | _Prefixed, kind: str) -> None:
        self.kind = kind
        self._inner: Any
        if kind == "gzip":
            self._inner = gzip.GzipFile(fileobj=raw, mode="rb")  # type: ignore[arg-type]
            self._errors: tuple[type[BaseException], ...] = (OSError, EOFError, zlib.error)
        else:
            try:
                import zstandard  # lazily: start-up time is user-visible, and only zstd input needs it
            except ImportError:
                raise _BadData("reading zstd needs the zstandard package (pip install zstandard)") from None
            self._inner = zstandard.ZstdDecompressor().stream_reader(raw, read_across_frames=True, closefd=False)
            self._errors = (zstandard.ZstdError, OSError)

    def read(self, size: int = -1) -> bytes:
        try:
            data: bytes = self._inner.read(size)
        except self._errors as exc:
            raise _BadData(f"the {self.kind} data is corrupt or cut short: {exc}") from None
        return data


def _read_upto(fileobj: IO[bytes] | _Prefixed | _Decompressing, size: int) -> bytes:
    """`size` bytes, fewer only at the end of the stream (a pipe's read may return less)."""
    chunks: list[bytes] = []
    got = 0
    while got < size:
        chunk = fileobj.read(size - got)
        if not chunk:
            break
        chunks.append(chunk)
        got += len(chunk)
    return b"".join(chunks)


def _tar_stream(raw: IO[bytes], *, head: bytes, display: str) -> _Prefixed:
    """The tar bytes of a plain, gzip or zstd stream, checked to start with a tar header."""
    try:
        head += _read_upto(raw, tarfile.BLOCKSIZE - len(head)) if len(head) < tarfile.BLOCKSIZE else b""
        kind = compression(head)
        if kind is None:
            if not _is_tar_header(head[:tarfile.BLOCKSIZE]):
                raise InputError("not an image archive: neither a tar archive nor gzip or zstd data", file=display)
            return _Prefixed(head, raw)
        reader = _Decompressing(_Prefixed(head, raw), kind)
        first = _read_upto(reader, tarfile.BLOCKSIZE)
    except _BadData as exc:
        raise InputError(f"not a readable image archive: {exc}", file=display) from None
    except OSError as exc:
        raise InputError(f"cannot read: {exc.strerror or exc}", file=display) from None
    if not _is_tar_header(first):
        raise InputError(f"not an image archive: {kind} data that is not a tar archive", file=display)
    return _Prefixed(first, reader)


# ---------------------------------------------------------------------------------------------------------------
# Where members come from: a tar index or a layout directory.


class _Store(Protocol):
    display: str

    def has(self, name: str) -> bool: ...

    def read(self, name: str, *, cap: int) -> bytes: ...

    def small_blobs(self) -> list[str]: ...


class _HeaderTooBig(Exception):
    def __init__(self, offset: int, size: int) -> None:
        super().__init__(f"an extended tar header at offset {offset} is {size} bytes, over the {EXT_HEADER_CAP} byte cap")


class _CappedTarInfo(tarfile.TarInfo):
    """tarfile reads PAX / GNU long-name headers whole into memory; refuse oversized ones before it does."""

    def _proc_member(self, tarfile_: tarfile.TarFile) -> tarfile.TarInfo:  # tarfile's own (private) hook
        if self.type in _EXT_HEADER_TYPES and self.size > EXT_HEADER_CAP:
            raise _HeaderTooBig(self.offset, self.size)
        return super()._proc_member(tarfile_)  # type: ignore[misc]


def _member_name(name: str) -> str | None:
    """A tar member name as a path inside the archive, or None for names that escape it (never looked up)."""
    if name.startswith("/") or "\\" in name:
        return None
    norm = posixpath.normpath(name)
    if norm in (".", "") or norm == ".." or norm.startswith("../"):
        return None
    return norm


class _TarIndex:
    """Members by name, as a tar lists them; links inside the archive are followed."""

    display: str
    first: list[str]  # the first few member names, for messages
    _members: dict[str, tarfile.TarInfo]

    def has(self, name: str) -> bool:
        return self._resolve(name) is not None

    def _resolve(self, name: str) -> tarfile.TarInfo | None:
        info = self._members.get(name)
        for _ in range(8):  # links within the archive, bounded
            if info is None or not (info.issym() or info.islnk()):
                return info
            target = posixpath.join(posixpath.dirname(info.name), info.linkname) if info.issym() else info.linkname
            resolved = _member_name(target)
            info = self._members.get(resolved) if resolved else None
        return None

    def _member(self, name: str, *, cap: int) -> tarfile.TarInfo:
        """The regular member `name` resolves to, checked against `cap`."""
        info = self._resolve(name)
        if info is None:
            raise InputError(f"{name} is not in the archive", file=self.display, path=name)
        if not info.isreg():
            raise InputError(f"{name} is not a regular file in the archive", file=self.display, path=name)
        if info.size > cap:
            raise InputError(f"{name} is {info.size} bytes, over the {cap // (1024 * 1024)} MiB cap for this member",
                             file=self.display, path=name)
        if info.issparse():
            raise InputError(f"{name} is a sparse tar member; image metadata never is", file=self.display, path=name)
        return info

    def read(self, name: str, *, cap: int) -> bytes:
        raise NotImplementedError

    def small_blobs(self) -> list[str]:
        """`blobs/<algo>/<hex>` members small enough to be a manifest (cosign's signature manifests hide there)."""
        return [name for name, info in self._members.items() if name.startswith("blobs/") and info.isreg()
                and 0 < info.size <= SIGNATURE_SCAN_CAP][:SIGNATURE_SCAN_MEMBERS]

    def _listed(self, count: int, info: tarfile.TarInfo) -> str | None:
        """Each member as a reader meets it (the `count`th): the member cap, the first names for messages, and
        the name to look it up by (None for a name that escapes the archive)."""
        if count > MAX_MEMBERS:
            raise InputError(f"the archive has more than {MAX_MEMBERS} members; not an image archive", file=self.display)
        if len(self.first) < 4:
            self.first.append(info.name + "/" if info.isdir() and not info.name.endswith("/") else info.name)
        return _member_name(info.name)


class _TarStore(_TarIndex):
    def __init__(self, fh: IO[bytes], display: str) -> None:
        self.display = display
        self.first = []
        self._fh = fh
        self._members = {}
        last: str | None = None
        try:
            # Closing the TarFile leaves `fh` open (tarfile did not open it); members are read from `fh` later.
            with tarfile.open(fileobj=fh, mode="r:", tarinfo=_CappedTarInfo) as tar:
                for count, info in enumerate(tar, 1):
                    last = info.name
                    name = self._listed(count, info)
                    if name is not None:
                        self._members[name] = info  # a later member of the same name wins, as on extraction
        except _HeaderTooBig as exc:
            raise InputError(str(exc), file=display) from None
        except (tarfile.TarError, OSError, EOFError) as exc:
            # tarfile notices a cut archive when it seeks past the data of the member read last.
            where = f" (after member {last})" if last else ""
            raise InputError(f"not a readable tar archive{where}: {exc}", file=display, path=last) from None

    def read(self, name: str, *, cap: int) -> bytes:
        info = self._member(name, cap=cap)
        try:
            self._fh.seek(info.offset_data)
            data = self._fh.read(info.size)
        except (tarfile.TarError, OSError, EOFError) as exc:
            raise InputError(f"{name} cannot be read: {exc}", file=self.display, path=name) from None
        if len(data) != info.size:
            raise InputError(f"{name} is truncated ({len(data)} of {info.size} bytes)", file=self.display, path=name)
        return data


class _StreamStore(_TarIndex):
    """A tar read once, front to back, in constant memory: only links and members that may be an index, manifest
    or config (at most CONFIG_CAP bytes, starting like JSON) are kept; other members' data is skipped unread."""

    def __init__(self, stream: _Prefixed, display: str) -> None:
        self.display = display
        self.first = []
        self._members = {}
        self._data: dict[str, bytes] = {}
        self._kept_bytes = 0
        last: str | None = None
        try:
            with tarfile.open(fileobj=stream, mode="r|", tarinfo=_CappedTarInfo, bufsize=_STREAM_BUFSIZE) as tar:
                count = 0
                while (info := tar.next()) is not None:
                    tar.members.clear()  # tarfile remembers every member; this reader needs none of them
                    count += 1
                    last = info.name
                    name = self._listed(count, info)
                    if name is not None:
                        self._add(tar, name, info)
            try:  # the producer's padding: read it, so that `docker save | ...` does not fail writing to a closed pipe
                _read_upto(stream, STREAM_TRAILER_CAP)
            except (_BadData, OSError):
                pass  # past the end of the archive: nothing of it is needed
        except _HeaderTooBig as exc:
            raise InputError(str(exc), file=display) from None
        except _BadData as exc:
            where = f" (after member {last})" if last else ""
            raise InputError(f"not a readable tar archive{where}: {exc}", file=display, path=last) from None
        except (tarfile.TarError, OSError, EOFError) as exc:
            where = f" (after member {last})" if last else ""
            raise InputError(f"not a readable tar archive{where}: {exc}", file=display, path=last) from None

    def _add(self, tar: tarfile.TarFile, name: str, info: tarfile.TarInfo) -> None:
        if name in self._data:  # a later member of the same name wins, as on extraction
            self._kept_bytes -= len(self._data.pop(name))
        data = None
        if info.isreg() and not info.issparse() and 0 < info.size <= CONFIG_CAP:
            data = self._json_member(tar, info, name)
        room = len(self._members) < STREAM_KEEP_MEMBERS or name in self._members
        if data is None and not (info.issym() or info.islnk()):
            if room:
                self._members[name] = info  # its size and type only, so that a read of it says what is wrong
            return
        if not room:
            raise InputError(f"the archive has more than {STREAM_KEEP_MEMBERS} links and JSON members; "
                             "not an image archive that can be read from a stream", file=self.display, path=name)
        self._members[name] = info
        if data is not None:
            self._data[name] = data

    def _json_member(self, tar: tarfile.TarFile, info: tarfile.TarInfo, name: str) -> bytes | None:
        """The member's data if it starts like a JSON document; None (and its data skipped) if not."""
        member = tar.extractfile(info)
        if member is None:
            return None
        start = member.read(min(info.size, 4096))
        if not start.removeprefix(b"\xef\xbb\xbf").lstrip(b" \t\r\n").startswith((b"{", b"[")):
            return None  # a layer, or other data; tarfile skips the rest when it moves to the next member
        if self._kept_bytes + info.size > STREAM_KEEP_BYTES:
            raise InputError(f"the archive holds more than {STREAM_KEEP_BYTES // (1024 * 1024)} MiB of JSON members "
                             f"(at {name}); not an image archive that can be read from a stream",
                             file=self.display, path=name)
        data = start + member.read(info.size - len(start))
        if len(data) != info.size:
            raise InputError(f"{name} is truncated ({len(data)} of {info.size} bytes)", file=self.display, path=name)
        self._kept_bytes += len(data)
        return data

    def read(self, name: str, *, cap: int) -> bytes:
        info = self._member(name, cap=cap)
        data = self._data.get(_member_name(info.name) or "")
        if data is None:
            raise InputError(f"{name} is not a JSON document (it does not start with {{ or [)",
                             file=self.display, path=name)
        return data


class _DirStore:
    def __init__(self, root: str, display: str) -> None:
        self.root = root
        self.display = display

    def _path(self, name: str) -> str:
        return os.path.join(self.root, *name.split("/"))

    def has(self, name: str) -> bool:
        return os.path.lexists(self._path(name))  # read() then says what is wrong with it

    def small_blobs(self) -> list[str]:
        out: list[str] = []
        try:
            with os.scandir(self._path("blobs")) as algorithms:
                for algorithm in algorithms:
                    if not algorithm.is_dir(follow_symlinks=False):
                        continue
                    with os.scandir(algorithm.path) as blobs:
                        for blob in blobs:
                            if len(out) >= SIGNATURE_SCAN_MEMBERS:
                                return out
                            if blob.is_file(follow_symlinks=False) and 0 < blob.stat().st_size <= SIGNATURE_SCAN_CAP:
                                out.append(f"blobs/{algorithm.name}/{blob.name}")
        except OSError:
            pass  # an unreadable folder carries no signatures we can see; the image itself is read as before
        return out

    def read(self, name: str, *, cap: int) -> bytes:
        # Non-blocking open and a regular-file check: a FIFO planted as a blob must not hang the CLI.
        try:
            fd = os.open(self._path(name), os.O_RDONLY | getattr(os, "O_NONBLOCK", 0))
        except FileNotFoundError:
            raise InputError(f"{name} is not in the layout", file=self.display, path=name) from None
        except OSError as exc:
            raise InputError(f"{name} cannot be read: {exc.strerror or exc}", file=self.display, path=name) from None
        with os.fdopen(fd, "rb") as fh:
            st = os.fstat(fh.fileno())
            if not stat.S_ISREG(st.st_mode):
                raise InputError(f"{name} is not a regular file", file=self.display, path=name)
            if st.st_size > cap:
                raise InputError(f"{name} is {st.st_size} bytes, over the {cap // (1024 * 1024)} MiB cap for this member",
                                 file=self.display, path=name)
            return fh.read(cap + 1)


# ---------------------------------------------------------------------------------------------------------------
# JSON helpers: every shape error names the member and the field.


def _parse_json(store: _Store, name: str, data: bytes) -> Any:
    try:
        return json.loads(data)
    except (ValueError, UnicodeDecodeError) as exc:
        raise InputError(f"{name} is not valid JSON: {exc}", file=store.display, path=name) from None
    except RecursionError:
        raise InputError(f"{name} nests too deeply to be a manifest", file=store.display, path=name) from None


def _bad(store: _Store, member: str, field: str, message: str) -> InputError:
    return InputError(f"{member}: {field} {message}", file=store.display, path=member)


def _digest(store: _Store, member: str, field: str, value: object) -> tuple[str, str]:
    """'sha256:<hex>' -> (algorithm, hex); only well-formed digests ever become blob paths."""
    match = _DIGEST.match(value) if isinstance(value, str) else None
    if match is None:
        raise _bad(store, member, field, f"is not a sha256 or sha512 digest: {value!r}")
    algo = match.group(1) or match.group(3)
    return algo, match.group(2) or match.group(4)


def _verified_blob(store: _Store, *, algo: str, hexdigest: str, cap: int, referrer: str) -> tuple[str, bytes]:
    member = f"blobs/{algo}/{hexdigest}"
    if not store.has(member):
        raise InputError(f"{referrer} points at {algo}:{hexdigest}, but {member} is missing",
                         file=store.display, path=member)
    data = store.read(member, cap=cap)
    actual = hashlib.new(algo, data).hexdigest()
    if actual != hexdigest:
        raise InputError(f"{member} does not match its digest (content is {algo}:{actual})", file=store.display, path=member)
    return member, data


# ---------------------------------------------------------------------------------------------------------------
# Platforms.


@dataclass(frozen=True, slots=True)
class _Platform:
    os: str
    architecture: str
    variant: str

    @classmethod
    def parse(cls, text: str, *, display: str) -> _Platform:
        parts = text.strip().lower().split("/")
        if len(parts) not in (2, 3) or not all(parts):
            raise InputError(f"invalid platform {text!r}: expected os/arch[/variant], e.g. linux/amd64", file=display)
        return cls.of(parts[0], parts[1], parts[2] if len(parts) == 3 else "")

    @classmethod
    def of(cls, os_: str, arch: str, variant: str) -> _Platform:
        # containerd's rules, as registry.py applies them: armel is arm/v6, armhf is arm/v7
        implied = _IMPLIED_VARIANT.get(arch.lower(), "")
        arch = _ARCH_ALIASES.get(arch.lower(), arch.lower())
        return cls(os_.lower(), arch, (variant or implied or _DEFAULT_VARIANT.get(arch, "")).lower())

    def __str__(self) -> str:
        return "/".join(p for p in (self.os, self.architecture, self.variant) if p)


def _descriptor_platform(desc: Mapping[str, Any]) -> _Platform | None:
    plat = desc.get("platform")
    if not isinstance(plat, dict) or not isinstance(plat.get("os"), str) or not isinstance(plat.get("architecture"), str):
        return None
    variant = plat.get("variant")
    return _Platform.of(plat["os"], plat["architecture"], variant if isinstance(variant, str) else "")


def _is_attestation(desc: Mapping[str, Any]) -> bool:
    plat = desc.get("platform")
    if isinstance(plat, dict) and plat.get("os") == "unknown" and plat.get("architecture") == "unknown":
        return True
    annotations = desc.get("annotations")
    return isinstance(annotations, dict) and annotations.get("vnd.docker.reference.type") == "attestation-manifest"


# ---------------------------------------------------------------------------------------------------------------
# Resolving a descriptor: index -> ... -> manifest -> config.


@dataclass(frozen=True, slots=True)
class _Resolved:
    manifest_digest: str
    config_digest: str
    config_member: str
    config: dict[str, Any]
    layer_sizes: tuple[int, ...] | None = None  # the manifest's layer sizes (image-size)
    layers_compressed: bool = True


def _resolve(store: _Store, desc: object, *, referrer: str, want: _Platform, depth: int,
             seen: frozenset[str]) -> _Resolved | None:
    """Follow a descriptor to an image config; None for something that is not a container image (an artifact)."""
    if not isinstance(desc, dict):
        raise InputError(f"{referrer} is not a descriptor object", file=store.display)
    algo, hexdigest = _digest(store, referrer, "digest", desc.get("digest"))
    digest = f"{algo}:{hexdigest}"
    if depth > MAX_DEPTH or digest in seen:
        raise InputError(f"{referrer}: indexes nest too deep or loop back to {digest}", file=store.display)
    member, data = _verified_blob(store, algo=algo, hexdigest=hexdigest, cap=MANIFEST_CAP, referrer=referrer)
    doc = _parse_json(store, member, data)
    if not isinstance(doc, dict):
        raise _bad(store, member, "the document", "is not a JSON object")
    media = doc.get("mediaType") or desc.get("mediaType")
    if media in _INDEX_TYPES or (media not in _MANIFEST_TYPES and "manifests" in doc):
        return _resolve_index(store, doc, member=member, want=want, depth=depth + 1, seen=seen | {digest})
    if media not in _MANIFEST_TYPES and "config" not in doc:
        return None  # neither index nor image manifest: some other artifact
    config_desc = doc.get("config")
    if not isinstance(config_desc, dict):
        raise _bad(store, member, "config", "is missing or not a descriptor")
    config_media = config_desc.get("mediaType")
    if config_media is not None and config_media not in _CONFIG_TYPES:
        return None  # an artifact manifest (signature, SBOM, Helm chart ...), not a container image
    calgo, chex = _digest(store, member, "config.digest", config_desc.get("digest"))
    config_member, config_data = _verified_blob(store, algo=calgo, hexdigest=chex, cap=CONFIG_CAP, referrer=f"{member} config")
    config = _parse_json(store, config_member, config_data)
    if not isinstance(config, dict):
        raise _bad(store, config_member, "the config", "is not a JSON object")
    sizes, compressed = manifest_layer_sizes(doc.get("layers"))
    return _Resolved(digest, f"{calgo}:{chex}", config_member, config, sizes, compressed)


def _resolve_index(store: _Store, doc: Mapping[str, Any], *, member: str, want: _Platform, depth: int,
                   seen: frozenset[str]) -> _Resolved | None:
    children = doc.get("manifests")
    if not isinstance(children, list):
        raise _bad(store, member, "manifests", "is missing or not a list")
    offered: list[str] = []
    unplaced: list[tuple[int, object]] = []
    for i, child in enumerate(children):
        if not isinstance(child, dict):
            raise _bad(store, member, f"manifests[{i}]", "is not a descriptor object")
        if _is_attestation(child):
            continue
        plat = _descriptor_platform(child)
        if plat is None:
            unplaced.append((i, child))
            continue
        offered.append(str(plat))
        if plat == want:
            return _resolve(store, child, referrer=f"{member} manifests[{i}]", want=want, depth=depth, seen=seen)
    # Entries without a platform (nested indexes, single-image indexes): the config says what they are.
    artifacts_only = True
    for i, child in unplaced:
        found = _resolve(store, child, referrer=f"{member} manifests[{i}]", want=want, depth=depth, seen=seen)
        if found is None:
            continue
        artifacts_only = False
        got = _Platform.of(_text(found.config.get("os")) or "linux", _text(found.config.get("architecture")),
                           _text(found.config.get("variant")))
        if got == want or (not found.config.get("architecture") and len(unplaced) == 1 and not offered):
            return found
        offered.append(str(got))
    if not offered and artifacts_only:
        return None
    raise InputError(f"{member}: no manifest for platform {want} (the index offers {', '.join(offered) or 'none'})",
                     file=store.display, path=member)


def _text(value: object) -> str:
    return value if isinstance(value, str) else ""


# ---------------------------------------------------------------------------------------------------------------
# The two archive shapes.


def _load_docker(store: _TarIndex, *, display: str, fallback: str, want: _Platform) -> list[Workload]:
    entries = _parse_json(store, "manifest.json", store.read("manifest.json", cap=MANIFEST_CAP))
    if not isinstance(entries, list):
        raise _bad(store, "manifest.json", "the document", "is not a list of images")
    by_config = _manifest_digests(store, want) if store.has("index.json") else {}
    workloads: list[Workload] = []
    untagged = sum(1 for e in entries if isinstance(e, dict) and not e.get("RepoTags"))
    for i, entry in enumerate(entries):
        where = f"[{i}]"
        if not isinstance(entry, dict):
            raise _bad(store, "manifest.json", where, "is not an object")
        config_ref = entry.get("Config")
        if not isinstance(config_ref, str) or not config_ref:
            raise _bad(store, "manifest.json", f"{where}.Config", "is missing or not a string")
        tags = entry.get("RepoTags") or []
        if not isinstance(tags, list) or not all(isinstance(t, str) for t in tags):
            raise _bad(store, "manifest.json", f"{where}.RepoTags", "is not a list of strings")
        member = _member_name(config_ref)
        if member is None:
            raise _bad(store, "manifest.json", f"{where}.Config", f"points outside the archive: {config_ref!r}")
        if not store.has(member):
            raise InputError(f"manifest.json: {where}.Config points at {config_ref}, which is not in the archive",
                             file=display, path="manifest.json")
        data = store.read(member, cap=CONFIG_CAP)
        actual = hashlib.sha256(data).hexdigest()
        named = _NAMED_BY_DIGEST.search(member)
        if named is not None and named.group(1) != actual:
            raise InputError(f"{member} does not match its digest (content is sha256:{actual})", file=display, path=member)
        config = _parse_json(store, member, data)
        if not isinstance(config, dict):
            raise _bad(store, member, "the config", "is not a JSON object")
        config_digest = f"sha256:{actual}"
        manifest_digest = by_config.get(config_digest)
        names = tags or [_untagged_name(fallback, manifest_digest or config_digest, many=untagged > 1)]
        sizes = _saved_layer_sizes(store, entry.get("Layers"))
        for name in names:
            carried = Carried(image=name if tags else None, digest=manifest_digest, platforms=None, signatures=(),
                              kind="docker save archive")
            workloads.append(_workload(store, name=name, config=config, member=member, manifest_digest=manifest_digest,
                                       config_digest=config_digest, layer_sizes=sizes, layers_compressed=False,
                                       carried=carried))
    return workloads


def _saved_layer_sizes(store: _TarIndex, layers: object) -> tuple[int, ...] | None:
    """The sizes of a `docker save` entry's `Layers` members: uncompressed tars, as docker save writes them (image-size).
    None when a layer is not a regular member of the archive (the layers are never read, only their tar headers)."""
    if not isinstance(layers, list):
        return None
    sizes: list[int] = []
    for layer in layers:
        name = _member_name(layer) if isinstance(layer, str) else None
        info = store._resolve(name) if name else None
        if info is None or not info.isreg():
            return None
        sizes.append(info.size)
    return tuple(sizes)


def _manifest_digests(store: _TarIndex, want: _Platform) -> dict[str, str]:
    """config digest -> manifest digest from the index.json newer `docker save` writes next to manifest.json.

    It only adds digests, so a problem in it never hides the images manifest.json describes, as for `docker load`.
    """
    found: dict[str, str] = {}
    try:
        index = _parse_json(store, "index.json", store.read("index.json", cap=MANIFEST_CAP))
        for i, desc in enumerate(index.get("manifests", []) if isinstance(index, dict) else []):
            resolved = _resolve(store, desc, referrer=f"index.json manifests[{i}]", want=want, depth=0, seen=frozenset())
            if resolved is not None:
                found.setdefault(resolved.config_digest, resolved.manifest_digest)
    except InputError:
        pass
    return found


def _load_oci(store: _Store, *, display: str, fallback: str, want: _Platform) -> list[Workload]:
    index = _parse_json(store, "index.json", store.read("index.json", cap=MANIFEST_CAP))
    if not isinstance(index, dict):
        raise _bad(store, "index.json", "the document", "is not a JSON object")
    descriptors = index.get("manifests")
    if not isinstance(descriptors, list):
        raise _bad(store, "index.json", "manifests", "is missing or not a list")
    resolved: list[tuple[str | None, _Resolved, dict[str, Any]]] = []
    cosign_entries: list[tuple[str, dict[str, Any]]] = []
    for i, desc in enumerate(descriptors):
        referrer = f"index.json manifests[{i}]"
        if isinstance(desc, dict) and _is_attestation(desc):
            continue
        kind = _cosign_entry(desc) if isinstance(desc, dict) else None
        if kind is not None:
            cosign_entries.append((kind, desc))  # a signature, not an image: read for image-signature below
            continue
        found = _resolve(store, desc, referrer=referrer, want=want, depth=0, seen=frozenset())
        if found is not None:
            resolved.append((_ref_name(desc), found, desc))
    if not resolved:
        raise InputError("index.json names no container image", file=display, path="index.json")
    material = _signatures(store, cosign_entries)
    untagged = sum(1 for name, _, _ in resolved if name is None)
    kind = "OCI layout" if isinstance(store, _DirStore) else "oci-archive"
    out = []
    for name, found, desc in resolved:
        shown = _full_name(name, fallback) or _untagged_name(fallback, found.manifest_digest, many=untagged > 1)
        top = str(desc.get("digest"))
        carried = Carried(image=_full_name(name, fallback) if name else _claimed_name(material, top),
                          digest=top, platforms=_platforms(store, desc), signatures=material, kind=kind,
                          attestations=_attestations(store, desc))
        out.append(_workload(store, name=shown, config=found.config, member=found.config_member,
                             manifest_digest=found.manifest_digest, config_digest=found.config_digest,
                             layer_sizes=found.layer_sizes, layers_compressed=found.layers_compressed, carried=carried))
    return out


def _cosign_entry(desc: Mapping[str, Any]) -> str | None:
    """"sigs", "atts", "tag" (an index of bundles), "sig-tag", "att-tag" for cosign's objects, else None."""
    annotations = desc.get("annotations")
    if isinstance(annotations, dict) and annotations.get("kind") in _COSIGN_KINDS:
        return _COSIGN_KINDS[annotations["kind"]]
    name = _ref_name(desc)
    match = _COSIGN_TAG.search(name) if name else None
    if match is None:
        return None
    return {None: "tag", ".sig": "sig-tag", ".att": "att-tag"}[match.group(2)]


def _signatures(store: _Store, entries: list[tuple[str, dict[str, Any]]]) -> tuple[CarriedSignature, ...]:
    """Every cosign signature object the archive holds: `cosign save`'s sigs manifests, copied cosign tags, and
    signature manifests with a `subject` among the small blobs (where `cosign save` leaves v3 bundles, unlisted).

    Nothing here is trusted or required: an object that cannot be read is left out, so the image reads as unsigned or
    not validly signed (never as signed); verify/offline.py checks what is kept."""
    from admission.images.verify import cosign

    found: dict[bytes, CarriedSignature] = {}

    def manifest(digest: object) -> dict[str, Any] | None:
        document = _json_blob(store, digest, MANIFEST_CAP)
        return document if isinstance(document, dict) else None

    def blob(digest: str, cap: int) -> bytes | None:
        return _raw_blob(store, digest, cap)

    def add_bundle(doc: Mapping[str, Any], subject: str) -> None:
        layer = cosign.bundle_layer(doc)
        data = blob(layer, cosign.BUNDLE_CAP) if layer else None
        if data is not None:
            found.setdefault(data, CarriedSignature("bundle", data, subject))

    for kind, desc in entries:
        doc = manifest(desc.get("digest"))
        if doc is None:
            continue
        named = _COSIGN_TAG.search(_ref_name(desc) or "")
        if kind in ("sigs", "sig-tag"):
            for payload_digest, signature in cosign.legacy_layers(doc):
                data = blob(payload_digest, cosign.PAYLOAD_CAP)
                if data is not None and isinstance(signature, str):
                    subject = _payload_digest(data) or (f"sha256:{named.group(1)}" if named else "")
                    found.setdefault(data + signature.encode(), CarriedSignature("legacy", data, subject, signature))
        elif kind in ("atts", "att-tag"):
            for envelope_digest in cosign.attestation_layers(doc):
                data = blob(envelope_digest, cosign.BUNDLE_CAP)
                if data is not None:
                    subject = _envelope_subject(data) or (f"sha256:{named.group(1)}" if named else "")
                    found.setdefault(data, CarriedSignature("dsse", data, subject))
        elif kind == "tag" and named is not None:
            for entry in doc.get("manifests") or ():
                inner = manifest(entry.get("digest")) if isinstance(entry, dict) else None
                if inner is not None:
                    add_bundle(inner, f"sha256:{named.group(1)}")
    for member in store.small_blobs():
        try:
            data = store.read(member, cap=SIGNATURE_SCAN_CAP)
        except InputError:
            continue
        if not data.lstrip().startswith(b"{") or b'"subject"' not in data:
            continue
        try:
            doc = json.loads(data)
        except (ValueError, RecursionError):
            continue
        subject = doc.get("subject") if isinstance(doc, dict) else None
        if isinstance(subject, dict) and isinstance(subject.get("digest"), str):
            add_bundle(doc, subject["digest"])
    return tuple(found.values())


def _envelope_subject(data: bytes) -> str | None:
    """The first subject digest of the statement in a DSSE envelope (for filing it; the check reads it again)."""
    try:
        statement = json.loads(base64.b64decode(json.loads(data)["payload"]))
        digests = statement["subject"][0]["digest"]
        algorithm, value = next(iter(digests.items()))
    except (ValueError, RecursionError, KeyError, TypeError, IndexError, StopIteration, binascii.Error):
        return None
    return f"{algorithm}:{value}" if isinstance(value, str) else None


def _payload_digest(payload: bytes) -> str | None:
    """The digest a simple-signing payload says it signs (for filing it; the signature check reads it again)."""
    try:
        named = json.loads(payload)["critical"]["image"]["docker-manifest-digest"]
    except (ValueError, RecursionError, KeyError, TypeError):
        return None
    return named if isinstance(named, str) else None


def _claimed_name(material: tuple[CarriedSignature, ...], digest: str) -> str | None:
    """A name for an image the archive does not name (`cosign save` writes none): the repository its legacy signatures
    name, when one of them is about this digest. Bundles name no repository."""
    for item in material:
        if item.format != "legacy" or item.subject != digest:
            continue
        try:
            name = json.loads(item.data)["critical"]["identity"]["docker-reference"]
        except (ValueError, RecursionError, KeyError, TypeError):
            continue
        if isinstance(name, str) and name:
            return f"{name}@{digest}"
    return None


def _attestations(store: _Store, desc: Mapping[str, Any]) -> tuple[CarriedAttestation, ...]:
    """BuildKit's attestations in the image's index (`--output type=oci` keeps them): each in-toto statement with the
    platform manifest its entry names. Unreadable ones are left out: the image then reads as lacking provenance."""
    index = _json_blob(store, desc.get("digest"), MANIFEST_CAP)
    out = []
    for entry in index.get("manifests") or () if isinstance(index, dict) else ():
        annotations = entry.get("annotations") if isinstance(entry, dict) else None
        about = annotations.get("vnd.docker.reference.digest") if isinstance(annotations, dict) else None
        if not isinstance(about, str) or annotations.get("vnd.docker.reference.type") != "attestation-manifest":
            continue
        manifest = _json_blob(store, entry.get("digest"), MANIFEST_CAP)
        for layer in manifest.get("layers") or () if isinstance(manifest, dict) else ():
            if isinstance(layer, dict) and layer.get("mediaType") == "application/vnd.in-toto+json":
                data = _raw_blob(store, layer.get("digest"), CONFIG_CAP)
                if data is not None:
                    out.append(CarriedAttestation(about, data))
    return tuple(out)


def _raw_blob(store: _Store, digest: object, cap: int) -> bytes | None:
    """A blob by digest, checked against it; None when it is missing, too large or another's."""
    match = _DIGEST.match(digest) if isinstance(digest, str) else None
    if match is None:
        return None
    try:
        return _verified_blob(store, algo=match.group(1) or match.group(3), hexdigest=match.group(2) or match.group(4),
                              cap=cap, referrer="attestation")[1]
    except InputError:
        return None


def _json_blob(store: _Store, digest: object, cap: int) -> Any:  # noqa: ANN401 - decoded JSON
    data = _raw_blob(store, digest, cap)
    if data is None:
        return None
    try:
        return json.loads(data)
    except (ValueError, RecursionError):
        return None


def _platforms(store: _Store, desc: Mapping[str, Any]) -> tuple[tuple[str, str], ...] | None:
    """(digest, platform) of each entry when the descriptor is an index, else None."""
    doc = _json_blob(store, desc.get("digest"), MANIFEST_CAP)
    if not isinstance(doc, dict) or not isinstance(doc.get("manifests"), list):
        return None
    out = []
    for entry in doc["manifests"]:
        if isinstance(entry, dict) and isinstance(entry.get("digest"), str):
            platform = _descriptor_platform(entry)
            out.append((entry["digest"], str(platform) if platform is not None else ""))
    return tuple(out)


def _ref_name(desc: Mapping[str, Any]) -> str | None:
    annotations = desc.get("annotations")
    if not isinstance(annotations, dict):
        return None
    # containerd's full name beats the OCI ref name, which is often just a tag ("1.2").
    for key in ("io.containerd.image.name", "org.opencontainers.image.ref.name"):
        value = annotations.get(key)
        if isinstance(value, str) and value:
            return value
    return None


def _full_name(name: str | None, fallback: str) -> str | None:
    """An OCI ref name is often a bare tag ("1.2", as `skopeo copy oci:dir:1.2` writes it): show it as
    `<layout or archive name>:<tag>`, so the object says which image it is."""
    if name is None or "/" in name or ":" in name or "@" in name:
        return name
    stem = next((fallback[:-len(suffix)] for suffix in (".tar", ".tar.gz", ".tgz", ".tar.zst", ".tar.zstd")
                 if fallback.endswith(suffix) and len(fallback) > len(suffix)), fallback)
    return f"{stem}:{name}"


def _untagged_name(fallback: str, digest: str, *, many: bool) -> str:
    return f"{fallback}@{digest}" if many else fallback


# ---------------------------------------------------------------------------------------------------------------
# Config -> model.


def _workload(store: _Store, *, name: str, config: Mapping[str, Any], member: str, manifest_digest: str | None,
              config_digest: str, layer_sizes: tuple[int, ...] | None = None, layers_compressed: bool = True,
              carried: Carried | None = None) -> Workload:
    image_config = _image_config(store, config, member=member, reference=name, manifest_digest=manifest_digest,
                                 config_digest=config_digest)
    if layer_sizes is not None:
        image_config = replace(image_config, layer_sizes=layer_sizes, layers_compressed=layers_compressed)
    origin = Origin(store.display, None, member)
    container = Container(name=name, origin=origin, image=None, image_config=image_config, carried=carried)
    return Workload(source="image", kind="Image", name=name, namespace=None, origin=origin, containers=(container,),
                    runtime=False, os=image_config.os or None)


def _image_config(store: _Store, config: Mapping[str, Any], *, member: str, reference: str,
                  manifest_digest: str | None, config_digest: str) -> ImageConfig:
    def field(obj: Mapping[str, Any], key: str, kind: type, where: str) -> Any:
        value = obj.get(key)
        if value is None:
            return None
        if not isinstance(value, kind) or (kind is int and isinstance(value, bool)):
            raise _bad(store, member, where, f"is a {type(value).__name__}, expected a {kind.__name__}")
        return value

    inner = field(config, "config", dict, "config") or {}
    exposed = field(inner, "ExposedPorts", dict, "config.ExposedPorts") or {}
    env = field(inner, "Env", list, "config.Env") or []
    if not all(isinstance(e, str) for e in env):
        raise _bad(store, member, "config.Env", "is not a list of strings")
    labels = field(inner, "Labels", dict, "config.Labels") or {}
    if not all(isinstance(v, str) for v in labels.values()):
        raise _bad(store, member, "config.Labels", "has a value that is not a string")
    history: list[HistoryEntry] = []
    for i, entry in enumerate(field(config, "history", list, "history") or []):
        if not isinstance(entry, dict):
            raise _bad(store, member, f"history[{i}]", "is not an object")
        history.append(HistoryEntry(
            created_by=field(entry, "created_by", str, f"history[{i}].created_by") or "",
            comment=field(entry, "comment", str, f"history[{i}].comment") or "",
            author=field(entry, "author", str, f"history[{i}].author") or "",
            created=field(entry, "created", str, f"history[{i}].created") or "",
            empty_layer=bool(field(entry, "empty_layer", bool, f"history[{i}].empty_layer"))))
    return ImageConfig(
        reference=reference,
        digest=manifest_digest,
        user=field(inner, "User", str, "config.User") or "",
        config_digest=config_digest,
        os=field(config, "os", str, "os") or "linux",
        architecture=field(config, "architecture", str, "architecture") or "",
        exposed_ports=tuple(sorted(exposed)),
        env=tuple(env),
        labels=dict(labels),
        history=tuple(history),
        healthcheck=_healthcheck(inner.get("Healthcheck")),
    )


def _healthcheck(health: Any) -> tuple[str, ...] | None:
    """The config's Healthcheck.Test, for the healthcheck rule; another shape reads as none."""
    test = health.get("Test") if isinstance(health, dict) else None
    return tuple(str(t) for t in test) if isinstance(test, list) and test else None
