"""Kustomize patches in a walk (issue 20): a file a kustomization applies as a patch is part of an object, not one.

A strategic-merge patch looks like a Deployment but holds only what it changes, so checked alone it gets false
verdicts (no limits, where the base sets them) or input errors (`template` is required). A walk skips every file a
`kustomization.yaml`, `kustomization.yml` or `Kustomization` (or a Component) lists under `patches[].path`,
`patchesStrategicMerge` or `patchesJson6902[].path` as `kustomize-patch`, with the command that checks what kustomize
builds. Files the kustomization lists as `resources` are whole objects and are checked as usual. The real kustomize is
the test oracle for which files are patches (tests/test_kustomize_patches.py).

Hand-read rather than through kustomize's Go API, which has no Python binding; only these list fields are read.
Kustomize loads patches from the kustomization's folder or below (its default load restrictor), so a top-down walk
meets the kustomization before its patches.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

from admission.errors import InputError

KUSTOMIZATION_NAMES = ("kustomization.yaml", "kustomization.yml", "Kustomization")  # kustomize's own order


@dataclass(slots=True)
class Patches:
    """The patch files (real paths -> why they are skipped) and resource files (real paths) of the kustomizations a
    walk has met."""

    patches: dict[str, str] = field(default_factory=dict)
    resources: set[str] = field(default_factory=set)
    read: set[str] = field(default_factory=set)  # kustomization folders already read

    def reason(self, path: str) -> str | None:
        """Why a walked file is skipped as a patch, or None (a resource is never a patch)."""
        if not self.patches:
            return None
        real = os.path.realpath(path)
        return None if real in self.resources else self.patches.get(real)

    def add_folder(self, folder: str, *, shown: str) -> None:
        """Read the kustomization in `folder`, if it has one; `shown` is the folder as reports show it."""
        real_folder = os.path.realpath(folder)
        if real_folder in self.read:
            return
        self.read.add(real_folder)
        name = next((n for n in KUSTOMIZATION_NAMES if os.path.isfile(os.path.join(folder, n))), None)
        if name is None:
            return
        document = _read(os.path.join(folder, name), shown=os.path.join(shown, name))
        if document is None:
            return
        file_shown = os.path.normpath(os.path.join(shown, name))
        dir_shown = os.path.normpath(shown)
        if document.get("kind") == "Component":
            why = (f"kustomize-patch: a patch of the Component {file_shown}, not a whole object; check a kustomization "
                   "that uses the component: kubectl kustomize DIR | admission-cli check -")
        else:
            why = (f"kustomize-patch: a patch that {file_shown} applies, not a whole object; check what kustomize "
                   f"builds: kubectl kustomize {dir_shown} | admission-cli check -")
        for rel in _patch_paths(document):
            self.patches.setdefault(_real(real_folder, rel), why)
        for rel in _strings(document.get("resources")) + _strings(document.get("bases")):
            target = _real(real_folder, rel)
            if os.path.isfile(target):
                self.resources.add(target)

    def add_above(self, folder: str, *, shown: str, stop: str) -> None:
        """Read the kustomizations of `folder` and of the folders above it up to `stop` (named files: pre-commit passes
        a changed patch without its kustomization)."""
        real_stop = os.path.realpath(stop)
        current, current_shown = folder, shown
        for _ in range(64):
            self.add_folder(current, shown=current_shown)
            real = os.path.realpath(current)
            if real == real_stop or os.path.dirname(real) == real or os.path.isdir(os.path.join(current, ".git")):
                return
            current, current_shown = os.path.join(current, ".."), os.path.join(current_shown, "..")


def _read(path: str, *, shown: str) -> dict[str, Any] | None:
    """The kustomization as a mapping, or None when it cannot be read (its own check reports a broken file)."""
    from admission.textio import read_path
    from admission.yamlload import load_documents

    try:
        documents = load_documents(read_path(path, display=shown), file=shown, dialect="1.2")
    except (InputError, OSError):
        return None
    values = [d.value for d in documents if d.value is not None]
    return values[0] if len(values) == 1 and isinstance(values[0], dict) else None


def _strings(value: Any) -> list[str]:
    return [item for item in value if isinstance(item, str)] if isinstance(value, list) else []


def _patch_paths(document: dict[str, Any]) -> Iterator[str]:
    for key in ("patches", "patchesJson6902"):
        for entry in document.get(key) or ():
            if isinstance(entry, dict) and isinstance(entry.get("path"), str):
                yield entry["path"]
    for entry in _strings(document.get("patchesStrategicMerge")):
        if "\n" not in entry.strip():  # otherwise an inline patch, as kustomize reads one
            yield entry.strip()


def _real(folder: str, rel: str) -> str:
    return os.path.realpath(os.path.join(folder, rel))
