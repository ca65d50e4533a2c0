"""Files a walk meets that are parts of something else, not inputs of their own (issue 20): compose layers for `-f`.

A compose file beside a base (`compose.yaml`, `docker-compose.yml`, ...) in which no service has `image`, `build` or
`extends` only overrides keys: it is a layer for `docker compose -f base -f layer`, and checked alone every service
would be "neither an image nor a build context" and every limit and user invented. A walk skips it as
`compose-fragment`, naming the base and the command that checks them together. A file with at least one complete
service, or with no base beside it, is checked as before; a file named on the command line is always read.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from admission.errors import InputError

_COMPLETE = ("image", "build", "extends")


def _services(text: str, *, file: str) -> list[Mapping[str, Any]] | None:
    """Every service mapping of a compose text (all its documents), or None when it does not read as compose."""
    from admission.yamlload import iter_documents

    found: list[Mapping[str, Any]] = []
    try:
        for document in iter_documents(text, file=file, dialect="1.2"):
            value = document.value
            if value is None:
                continue
            if not isinstance(value, dict):
                return None
            services = value.get("services")
            if services is None:
                continue
            if not isinstance(services, dict):
                return None
            found.extend(s if isinstance(s, dict) else {} for s in services.values())
    except InputError:
        return None  # its error is reported when it is read as a project
    return found


def _complete(services: list[Mapping[str, Any]] | None) -> bool | None:
    """True when a service has image, build or extends; False when the file has services and none has; None when it
    has no service or does not read as compose (neither a base nor a layer)."""
    if not services:
        return None
    return any(key in service for service in services for key in _COMPLETE)


def compose_fragments(pending: Iterable[tuple[str, str, str]], *, bases: Sequence[str]) -> dict[str, str]:
    """Of the compose files a walk found, `(path, display, text)` each, those that are layers: display -> the reason
    for `skipped`. A base is a file named as `bases` on disk in the same folder (it need not be in the walk:
    pre-commit passes only the changed files), else another compose file of the walk in that folder with a complete
    service."""
    by_folder: dict[str, list[tuple[str, str, str]]] = {}
    for item in pending:
        by_folder.setdefault(os.path.dirname(os.path.abspath(item[0])), []).append(item)
    out: dict[str, str] = {}
    for folder, items in by_folder.items():
        on_disk = [name for name in bases if os.path.isfile(os.path.join(folder, name))]
        if not on_disk and len(items) < 2:
            continue  # a layer needs a base beside it
        # With a base on disk only the other files are read for their shape; without one, every file, to find it.
        shapes = {display: _complete(_services(text, file=display)) for path, display, text in items
                  if not on_disk or os.path.basename(path) not in bases}
        partial = sorted(display for path, display, _ in items
                         if os.path.basename(path) not in bases and shapes.get(display) is False)
        if not partial:
            continue
        base = _base_display(on_disk, items, partial, shapes)
        if base is None:
            continue
        for display in partial:
            out[display] = (f"compose-fragment: no service has image, build or extends, so it only overrides {base} "
                            f"beside it; check them together: admission-cli check {base} -f {display}")
    return out


def _base_display(on_disk: list[str], items: list[tuple[str, str, str]], partial: list[str],
                  shapes: Mapping[str, bool | None]) -> str | None:
    if on_disk:
        for _, display, _ in items:
            if os.path.basename(display) == on_disk[0]:
                return display
        # The base is not among the files walked (named files): shown beside the layer, as the layer is shown.
        return os.path.join(os.path.dirname(partial[0]), on_disk[0])
    complete = sorted(display for _, display, _ in items if shapes.get(display))
    return complete[0] if complete else None
