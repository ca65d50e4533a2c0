"""Rebuild the image-size fixtures: real images made with umoci (layers of random bytes), copied with skopeo.

    .venv/bin/python tests/rules/image-size/build_fixtures.py

The layers are a few KiB, so the fail__ fixtures set `max_mib: 0` in their expect.txt (any layer is too much);
tests/test_image_size.py checks real multi-MiB images against real limits, built the same way in a temp folder.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

HERE = Path(__file__).parent
sys.path.insert(0, str(HERE.parents[2]))
from tests.images import oci  # noqa: E402

STEPS = (  # (created_by, file in the image, bytes of random data); no file: a config change (empty_layer)
    ("ADD rootfs.tar.xz / # buildkit", "/rootfs.bin", 8 * 1024),
    ("ENV LANG=C.UTF-8", None, 0),
    ("RUN /bin/sh -c apt-get install -y build-essential # buildkit", "/usr/lib/toolchain.bin", 24 * 1024),
    ("WORKDIR /app", None, 0),
    ("COPY app.py /app/ # buildkit", "/app/app.py", 2 * 1024),
    ("COPY static/ /app/static/ # buildkit", "/app/static/bundle.bin", 12 * 1024),
)


def copy(source: str, dest: str) -> None:
    subprocess.run(["skopeo", "copy", "--quiet", source, dest], check=True, capture_output=True)


def main() -> None:
    for entry in HERE.iterdir():
        if entry.is_dir() and entry.name.startswith(("pass__", "fail__")):
            shutil.rmtree(entry)
    work = HERE / ".work"
    shutil.rmtree(work, ignore_errors=True)
    work.mkdir()
    source = oci.build_steps(work / "app", "1.0", STEPS)
    for kind in ("fail", "pass"):
        layout = HERE / f"{kind}__oci-layout"
        shutil.copytree(work / "app", layout)
        archive = HERE / f"{kind}__oci-archive"
        archive.mkdir()
        copy(source, f"oci-archive:{archive / 'app.tar'}:1.0")
        saved = HERE / f"{kind}__docker-save"
        saved.mkdir()
        copy(source, f"docker-archive:{saved / 'app.tar'}:fixtures/app:1.0")
        for folder, name in ((layout, f"{layout.name}:1.0"), (archive, "app:1.0"), (saved, "docker.io/fixtures/app:1.0")):
            lines = ["# Built by build_fixtures.py: umoci layers of random bytes (a few KiB), copied with skopeo."]
            if kind == "fail":
                lines += ["# policy: {rules: {image-size: {params: {max_mib: 0}}}}", f"# expect: {name}"]
            else:
                lines += ["# The default max_mib (300) passes them."]
            (folder / "expect.txt").write_text("\n".join(lines) + "\n", encoding="utf-8")
    shutil.rmtree(work)


if __name__ == "__main__":
    sys.exit(main())
