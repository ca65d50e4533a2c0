"""Reading text inputs safely: a size cap, strict UTF-8, no NUL bytes. Errors name file and line. And replacing a
file so that a reader never sees half of it (`write_atomic`: `pin`'s rewrites, the image cache's entries)."""

from __future__ import annotations

import os

from admission.errors import InputError

MAX_TEXT_BYTES = 64 * 1024 * 1024


def decode(data: bytes, *, file: str) -> str:
    """Bytes of a text input -> str, or an InputError naming the first bad line."""
    if len(data) > MAX_TEXT_BYTES:
        raise InputError(f"input is larger than the {MAX_TEXT_BYTES // (1024 * 1024)} MiB cap for text inputs", file=file)
    nul = data.find(b"\x00")
    if nul >= 0:
        raise InputError("input contains a NUL byte; this is not a text file", file=file, line=data.count(b"\n", 0, nul) + 1)
    if data.startswith(b"\xef\xbb\xbf"):
        data = data[3:]
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = data.count(b"\n", 0, exc.start) + 1
        raise InputError(f"input is not valid UTF-8 (byte 0x{data[exc.start]:02x} at offset {exc.start})", file=file, line=line) from None


def read_path(path: str, *, display: str) -> str:
    """Read a file with the cap applied before the whole file is loaded."""
    try:
        with open(path, "rb") as fh:
            data = fh.read(MAX_TEXT_BYTES + 1)
    except IsADirectoryError:
        raise InputError("is a directory", file=display) from None
    except OSError as exc:
        raise InputError(f"cannot read: {exc.strerror or exc}", file=display) from None
    return decode(data, file=display)


def new_file_mode(path: str) -> int:
    """The mode a write should leave `path` with: an existing file's own, else what open() gives a new file
    (0666 & ~umask; mkstemp's temp files are 0600)."""
    try:
        return os.stat(path).st_mode & 0o7777
    except FileNotFoundError:
        mask = os.umask(0)  # the only way to read the umask; set back at once
        os.umask(mask)
        return 0o666 & ~mask


def write_atomic(path: str, data: bytes, *, mode: int | None = None) -> None:
    """Write `data` to a temp file in the target's folder and rename it over the target, so a reader sees the old
    file or the new one (no fsync: a torn file after a crash is as if never written). Through a symlink the link stays
    a link. The temp file is 0600 unless `mode` says otherwise. OSError when the folder is not writable."""
    import tempfile  # here: reading, the check path, needs none of it (tempfile pulls in shutil, random, bz2, lzma)

    target = os.path.realpath(path)
    fd, tmp = tempfile.mkstemp(dir=os.path.dirname(target), prefix=".tmp-", suffix=".part")
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
        if mode is not None:
            os.chmod(tmp, mode)
        os.replace(tmp, target)
    except BaseException:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise
