"""Rebuild the image-attestation fixtures: `FROM scratch` images built by the real BuildKit with SLSA provenance
(tests/supply/build.sh; buildkitd runs as root), pushed to a loopback docker-registry, the index signed by the real
cosign and carried offline with `cosign save --dir`, or written by BuildKit as an OCI archive (no signature).

    .venv/bin/python tests/rules/image-attestation/build_fixtures.py
"""

from __future__ import annotations

import shutil
import sys
import tempfile
from pathlib import Path

HERE = Path(__file__).parent
sys.path.insert(0, str(HERE.parents[2]))
from tests.images.registry import Registry, free_port  # noqa: E402
from tests.supply.tools import tool_path  # noqa: E402
from tests.verify.buildkit import BuildKit, scratch_context  # noqa: E402
from tests.verify.signing import Cosign  # noqa: E402
from tests.verify.signing import Registry as Api  # noqa: E402

VCS = {"vcs:source": "https://github.com/acme/fixtures", "vcs:revision": "4f2c1e0aa"}


def main() -> None:
    for entry in HERE.iterdir():
        if entry.is_dir() and entry.name.startswith(("pass__", "fail__")):
            shutil.rmtree(entry)
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        (work / "registry").mkdir()
        (work / "buildkit").mkdir()
        registry = Registry(work / "registry", free_port()).start()
        buildkit = BuildKit(work / "buildkit")
        try:
            cosign = Cosign(tool_path("cosign"), work / "home")
            release = cosign.generate("release")
            shutil.copy(release.public, HERE / "release.pub")
            buildkit.push(scratch_context(work / "signed"), f"{registry.host}/fixtures/signed:1.0",
                          platforms="linux/amd64,linux/arm64", opts=VCS)
            digest = Api(registry.host).digest("fixtures/signed", "1.0")
            cosign.sign(f"{registry.host}/fixtures/signed@{digest}", release)
            cosign.save(f"{registry.host}/fixtures/signed@{digest}", HERE / "pass__cosign-save-signed-index")
            unsigned = HERE / "fail__buildkit-oci-unsigned"
            unsigned.mkdir()
            buildkit.build(scratch_context(work / "unsigned"),
                           output=f"type=oci,dest={unsigned / 'app.tar'},name=registry.example.com/fixtures/app:1.0",
                           platforms="linux/amd64,linux/arm64", opts=VCS)
        finally:
            buildkit.stop()
            registry.stop()


if __name__ == "__main__":
    main()
