"""The pin fixture project (tests/pin/fixtures/project) copied into a repository of its own, with the placeholder
registry replaced, and optionally rewritten with CRLF line endings and a UTF-8 byte-order mark."""

from __future__ import annotations

import shutil
from pathlib import Path

FIXTURE = Path(__file__).parent / "fixtures" / "project"
PLACEHOLDER = "REGISTRY"
BOM = b"\xef\xbb\xbf"

# Every reference line of the fixture that pin must rewrite, by file (1-based). The others mentioning the registry
# stay: an already pinned one, an interpolated one, a build's output name, a ConfigMap value, an ARG default.
PINNED_LINES = {
    "compose.yaml": [6, 17, 19, 20, 31],
    "base.yaml": [4],
    "included.yaml": [3],
    "override.yaml": [4],
    "app/Dockerfile": [3, 7],
    "k8s.yaml": [11, 14, 26, 36, 39],
    "pod.json": [7],
}
MISSING = ("compose.yaml", 31)  # pin/missing:1, never pushed: unresolvable


def make(root: Path, host: str, *, crlf: bool = False, bom: bool = False) -> Path:
    """The project at `root` (a repository: it gets a `.git` folder), its references on registry `host`."""
    shutil.copytree(FIXTURE, root)
    (root / ".git").mkdir()
    for path in root.rglob("*"):
        if not path.is_file():
            continue
        data = path.read_bytes().replace(PLACEHOLDER.encode(), host.encode())
        if crlf:
            data = data.replace(b"\n", b"\r\n")
        if bom:
            data = BOM + data
        path.write_bytes(data)
    return root


def files(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()
            and ".git" not in p.parts}


def assert_only_references_changed(before: dict[str, bytes], after: dict[str, bytes], *, digest_of: dict[str, str],
                                   expected: dict[str, list[int]]) -> None:
    """Line by line (line endings included): every line is byte-identical except the expected reference lines, each
    of which is the old line with `@digest` inserted right after each reference on it (`digest_of`: reference ->
    digest)."""
    assert before.keys() == after.keys()
    for name, old in before.items():
        new = after[name]
        assert old[:3] == new[:3] or not old.startswith(BOM), f"{name}: the BOM was lost"
        old_lines, new_lines = old.splitlines(keepends=True), new.splitlines(keepends=True)
        assert len(old_lines) == len(new_lines), name
        changed = [i + 1 for i, (a, b) in enumerate(zip(old_lines, new_lines)) if a != b]
        assert changed == expected.get(name, []), f"{name}: lines {changed} changed"
        for number in changed:
            a, b = old_lines[number - 1].decode(), new_lines[number - 1].decode()
            want = a
            for reference in sorted((r for r in digest_of if r in a), key=len, reverse=True):
                want = want.replace(reference, f"{reference}@{digest_of[reference]}", 1)
            assert b == want, f"{name}:{number}"
