"""`make lock`: the image's dependency locks, made from pyproject.toml by uv.

- requirements.lock: the runtime dependencies with the `server` extra (what the image installs);
- requirements-build.lock: the build backend ([build-system].requires), which `make image` builds our wheel with.

Both are universal (one lock for Python 3.11 and up, markers where platforms differ) and carry the hash of every
file. The resolver settings live in pyproject.toml's [tool.uv.pip], with `exclude-newer`, so the same pyproject.toml
always resolves to the same locks: `--check` resolves again into a temporary folder and fails with the difference
when a lock is stale. Each lock is resolved from scratch (never from the old lock's pins), for the same reason.

Usage: python tools/image/lock.py [--check]
"""

from __future__ import annotations

import argparse
import difflib
import shutil
import subprocess
import sys
import tempfile
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
LOCKS = ("requirements.lock", "requirements-build.lock")
COMMAND = "make lock"  # what the locks' headers name, whoever ran it


def uv_binary() -> str:
    try:
        from uv import find_uv_bin
    except ImportError:
        found = shutil.which("uv")
        if found:
            return found
        raise SystemExit("tools/image/lock.py: uv is not installed: pip install 'admission[test]' (or uv itself)")
    return find_uv_bin()


def build_requirements(root: Path) -> str:
    with open(root / "pyproject.toml", "rb") as handle:
        requires = tomllib.load(handle)["build-system"]["requires"]
    return "".join(f"{requirement}\n" for requirement in requires)


def compile_locks(root: Path, out: Path, *, uv: str) -> None:
    """Resolve both locks into `out` (a folder), with the settings of root/pyproject.toml."""
    common = ["pip", "compile", "--quiet", "--custom-compile-command", COMMAND, "--no-header"]
    # The header is written by hand: uv's names the output file's relative path in a way that depends on the cwd.
    runs = [([*common, "pyproject.toml", "--extra", "server", "-o", str(out / LOCKS[0])], None),
            ([*common, "-", "-o", str(out / LOCKS[1])], build_requirements(root))]
    for argv, stdin in runs:
        done = subprocess.run([uv, *argv], cwd=root, input=stdin, capture_output=True, text=True, timeout=300)
        if done.returncode != 0:
            raise SystemExit(f"uv {' '.join(argv)} failed ({done.returncode}):\n{done.stderr.strip()}")
    for name in LOCKS:
        body = (out / name).read_text()
        (out / name).write_text(f"# Made from pyproject.toml by `{COMMAND}` (tools/image/lock.py); do not edit.\n{body}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--check", action="store_true", help="fail when a lock differs from a fresh resolution")
    parser.add_argument("--root", type=Path, default=ROOT, help=argparse.SUPPRESS)  # the tests' copies of the project
    args = parser.parse_args(argv)
    uv = uv_binary()
    with tempfile.TemporaryDirectory(prefix="admission-lock-") as folder:
        out = Path(folder)
        compile_locks(args.root, out, uv=uv)
        stale = []
        for name in LOCKS:
            fresh = (out / name).read_text()
            current = (args.root / name).read_text() if (args.root / name).exists() else ""
            if fresh == current:
                continue
            stale.append(name)
            if args.check:
                sys.stdout.writelines(difflib.unified_diff(current.splitlines(keepends=True),
                                                           fresh.splitlines(keepends=True), name, f"{name} (fresh)"))
            else:
                (args.root / name).write_text(fresh)
    if args.check and stale:
        print(f"stale: {', '.join(stale)}: pyproject.toml changed since the locks were made; run `{COMMAND}`",
              file=sys.stderr)
        return 1
    if not args.check:
        print(f"wrote {', '.join(stale)}" if stale else "the locks are up to date", file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
