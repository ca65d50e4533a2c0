"""Reading one file out of an image's layers (images.resolve_user_names: /etc/passwd), top layer first.

Hand-written on tarfile and zlib: a layer is a gzip (or plain) tar that must be read as a stream with a cap on what
it expands to (gzip bombs), from a thread that stops at the caller's deadline, none of which a library offers.
"""

from __future__ import annotations

import gzip
import io
import posixpath
import tarfile
import threading
import time
import zlib
from typing import Any

from admission.errors import RegistryError
from admission.images.cache import LayerUnreadable
from admission.images.registry.manifest import size_words

__all__ = ["scan_layer"]

_FILE_CAP = 1 << 20  # a file read from a layer (/etc/passwd) larger than this is refused unread: a bomb, not a passwd



class _LayerTooLarge(Exception):
    pass


class _Stopped(Exception):
    pass


class _Inflater(io.RawIOBase):
    """A gzip (or plain) layer as a readable stream that stops after `limit` bytes: a bomb costs no more.
    It also stops when `stop` is set or `deadline` (time.monotonic()) passes: it runs in a thread nobody can cancel."""

    def __init__(self, data: bytes, limit: int, *, stop: threading.Event | None = None,
                 deadline: float | None = None) -> None:
        self._data = data
        self._limit = limit
        self._stop = stop
        self._deadline = deadline
        self._produced = 0
        self._gzip = data[:2] == b"\x1f\x8b"
        self._position = 0
        self._pending = b""
        self._z = zlib.decompressobj(31) if self._gzip else None

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int:
        if (self._stop is not None and self._stop.is_set()) or \
                (self._deadline is not None and time.monotonic() > self._deadline):
            raise _Stopped
        wanted = len(buffer)
        while not self._pending:
            chunk = self._next(max(wanted, 1 << 16))
            if chunk is None:
                return 0
            self._pending = chunk
        out, self._pending = self._pending[:wanted], self._pending[wanted:]
        self._produced += len(out)
        if self._produced > self._limit:
            raise _LayerTooLarge
        buffer[: len(out)] = out
        return len(out)

    def _next(self, size: int) -> bytes | None:
        if self._z is None:
            if self._position >= len(self._data):
                return None
            chunk = self._data[self._position:self._position + size]
            self._position += len(chunk)
            return chunk
        while True:
            if self._z.unconsumed_tail:
                return self._z.decompress(self._z.unconsumed_tail, size)
            if self._z.eof:
                rest = self._z.unused_data + self._data[self._position:]
                if not rest.startswith(b"\x1f\x8b"):
                    return None
                self._data, self._position = rest, 0  # another gzip member (pigz and others write several)
                self._z = zlib.decompressobj(31)
            if self._position >= len(self._data):
                return None
            chunk = self._data[self._position:self._position + (1 << 16)]
            self._position += len(chunk)
            out = self._z.decompress(chunk, size)
            if out:
                return out


def _member_path(name: str) -> str:
    return posixpath.normpath("/" + name).lstrip("/")


def scan_layer(blob: bytes, target: str, layer: str, limit: int, *, stop: threading.Event | None = None,
                deadline: float | None = None) -> tuple[bool, bytes | None]:
    """(decided, content): whether this layer decides `target` (has it, deletes it, or hides it), and the bytes.

    A layer that can never be read (zstd, not a tar) is LayerUnreadable: the answer will not change.
    """
    if blob[:4] == b"\x28\xb5\x2f\xfd":
        raise LayerUnreadable(f"layer {layer} is zstd-compressed, which this client does not read", reason="error")
    parents = []
    parent = posixpath.dirname(target)
    while parent:
        parents.append(parent)
        parent = posixpath.dirname(parent)
    whiteouts = {posixpath.join(posixpath.dirname(p), ".wh." + posixpath.basename(p)) for p in [target, *parents]}
    opaque = {posixpath.join(p, ".wh..wh..opq") for p in parents} | {".wh..wh..opq"}
    hidden = False
    seen = 0
    try:
        inflater = _Inflater(blob, limit, stop=stop, deadline=deadline)
        with tarfile.open(fileobj=io.BufferedReader(inflater), mode="r|") as archive:
            while True:
                try:
                    member = archive.next()
                except tarfile.ReadError:
                    # umoci (and others) end a layer without the final padding and zero blocks; Go's reader and
                    # the runtimes accept that, so a cut after a complete member is the end of the archive.
                    if seen:
                        break
                    raise
                if member is None:
                    break
                seen += 1
                name = _member_path(member.name)
                if name == target:
                    if not member.isfile():
                        return True, None  # a symlink or directory: not a file we can read as text
                    if member.size > _FILE_CAP:
                        raise RegistryError(f"/{target} in layer {layer} is {member.size} bytes, more than the "
                                            f"{size_words(_FILE_CAP)} a file read from a layer may have",
                                            reason="too-large")
                    handle = archive.extractfile(member)
                    return True, handle.read(_FILE_CAP) if handle is not None else None
                if name in whiteouts or name in opaque:
                    hidden = True  # keep reading: the same layer may add the file back after the marker
    except _LayerTooLarge:
        raise RegistryError(f"layer {layer} expands to more than {size_words(limit)}", reason="too-large") from None
    except _Stopped:
        raise RegistryError(f"reading layer {layer} stopped at the deadline", reason="timeout") from None
    except (tarfile.TarError, zlib.error, EOFError, OSError, gzip.BadGzipFile) as exc:
        raise LayerUnreadable(f"layer {layer} is not a readable tar archive ({exc})", reason="error") from None
    return hidden, None
