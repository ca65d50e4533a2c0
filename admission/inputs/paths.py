"""The repository root of a path and names relative to it: what fingerprints, `.admission.yaml`, excludes and
`pin`'s writes agree on (architecture §2, finding identity)."""

from __future__ import annotations

import os
from collections.abc import Sequence


class RepoPaths:
    """File names relative to the repository root (the nearest folder above with `.git`), else to the
    current directory: `check .`, `check sub` and an absolute path name a file the same way."""

    def __init__(self, cwd: str | None = None) -> None:
        self._cwd = os.path.abspath(cwd or os.getcwd())
        self._roots: dict[str, str | None] = {}
        self._relative: dict[str, str] = {}  # a run has thousands of findings in a few hundred files

    def root(self, folder: str) -> str | None:
        """The repository root of a folder: the nearest folder at or above it with `.git`, else None."""
        return self._root(os.path.normpath(os.path.join(self._cwd, folder)))

    def _root(self, folder: str) -> str | None:
        if folder in self._roots:
            return self._roots[folder]
        if os.path.exists(os.path.join(folder, ".git")):
            root: str | None = folder
        else:
            parent = os.path.dirname(folder)
            root = None if parent == folder else self._root(parent)
        self._roots[folder] = root
        return root

    def roots_of(self, paths: Sequence[str]) -> set[str]:
        """The repository roots of command-line PATHs: the nearest folder at or above each with `.git`; outside any
        repository the current directory, for a PATH inside it (stdin: there)."""
        roots: set[str] = set()
        for path in paths:
            full = self._cwd if path == "-" else os.path.normpath(os.path.join(self._cwd, path))
            root = self.root(full if os.path.isdir(full) else os.path.dirname(full))
            if root is None and (full == self._cwd or full.startswith(self._cwd.rstrip(os.sep) + os.sep)):
                root = self._cwd
            if root is not None:
                roots.add(root)
        return roots

    def run_root(self, paths: Sequence[str]) -> str:
        """The one root a run's SARIF locations are relative to: the PATHs' repository root when they share one, else
        the current directory's, else the current directory. `cd sub && check ..` and `check .` at the root agree."""
        roots = self.roots_of(paths)
        if len(roots) == 1:
            return next(iter(roots))
        return self.root(self._cwd) or self._cwd

    def relative(self, file: str) -> str:
        known = self._relative.get(file)
        if known is not None:
            return known
        if file in ("-", ""):
            return file
        full = os.path.normpath(os.path.join(self._cwd, file))
        base = self._root(os.path.dirname(full)) or self._cwd
        known = self._relative[file] = os.path.relpath(full, base).replace(os.sep, "/")
        return known
