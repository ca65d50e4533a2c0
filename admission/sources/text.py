"""Reading text inputs safely: a size cap, strict UTF-8, no NUL bytes. Errors name file and line."""

from __future__ import annotations

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
