"""The image build's first step, run in the Dockerfile's builder stage on the base image's own Python (so: standard
library only), before anything is installed.

It stops the build with a clear error when the base cannot run what `make image` fetched: another Python than
PYTHON_VERSION, no glibc, a glibc older than a wheel needs, or a wheel for another architecture. Otherwise it prints
the platform tags of the wheels, one per line: `pip install --target` installs another platform's wheels only when
told their platforms (`--platform`), and these are exactly the ones fetched.

Usage: preflight.py --python 3.12 --base IMAGE --arch amd64|arm64 --wheels DIR
"""

from __future__ import annotations

import argparse
import os
import re
import sys
from pathlib import Path

MACHINES = {"amd64": "x86_64", "arm64": "aarch64"}
# The glibc each legacy manylinux tag stands for (PEP 600).
LEGACY = {"manylinux1": (2, 5), "manylinux2010": (2, 12), "manylinux2014": (2, 17)}
_TAG = re.compile(r"(?:manylinux_(\d+)_(\d+)|(manylinux1|manylinux2010|manylinux2014))_(\w+)")


def fail(message: str) -> None:
    raise SystemExit(f"make image: {message}")


def glibc() -> tuple[int, int]:
    try:
        found = os.confstr("CS_GNU_LIBC_VERSION") or ""
    except (ValueError, OSError):
        found = ""
    match = re.fullmatch(r"glibc (\d+)\.(\d+).*", found)
    if not match:
        fail("the base image has no glibc (musl?): the wheels make image fetches are manylinux (glibc) wheels")
    return int(match[1]), int(match[2])


def platform_tags(wheel: str, machine: str, have: tuple[int, int]) -> list[str]:
    """The platform tags of one wheel file name; fails when the wheel cannot run on this base and machine."""
    compound = wheel[: -len(".whl")].split("-")[-1]
    if compound == "any":
        return []
    tags = compound.split(".")
    needs = []
    for tag in tags:
        match = _TAG.fullmatch(tag)
        if not match:
            fail(f"{wheel}: platform tag {tag} is not a manylinux tag")
        if match[4] != machine:
            fail(f"{wheel} is for {match[4]}, and this build's target is {machine}")
        needs.append((int(match[1]), int(match[2])) if match[1] else LEGACY[match[3]])
    if min(needs) > have:
        need = ".".join(str(part) for part in min(needs))
        fail(f"{wheel} needs glibc {need}, and the base image has glibc {have[0]}.{have[1]}: "
             "choose a newer base, or fetch for an older glibc (make image GLIBC=...)")
    return tags


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--python", required=True, help="PYTHON_VERSION: the Python the wheels were fetched for")
    parser.add_argument("--base", required=True, help="PYTHON_IMAGE, for the messages")
    parser.add_argument("--arch", required=True, choices=sorted(MACHINES))
    parser.add_argument("--wheels", type=Path, required=True)
    args = parser.parse_args(argv)
    have = f"{sys.version_info[0]}.{sys.version_info[1]}"
    if have != args.python:
        fail(f"PYTHON_VERSION is {args.python}, but the base image {args.base} runs Python {have}: the wheels were "
             f"fetched for Python {args.python}; pass PYTHON_VERSION={have}, or a base that runs Python {args.python}")
    wheels = sorted(p.name for p in args.wheels.glob("*.whl"))
    if not wheels:
        fail(f"no wheels in {args.wheels}: build the image with make image, which prepares its build context")
    libc = glibc()
    tags = sorted({tag for wheel in wheels for tag in platform_tags(wheel, MACHINES[args.arch], libc)})
    print("\n".join(tags))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
