"""Rebuild the image-signature fixtures: real images made with umoci, pushed to a loopback docker-registry, signed
by the real cosign (tests/supply/build.sh) and saved with `cosign save --dir`; only the public key is kept.

    .venv/bin/python tests/rules/image-signature/build_fixtures.py

The fixtures check archives offline (what they carry), and an offline run on a manifest (one warning per image);
tests/verify/ checks registries, the webhook and the audit against cosign itself.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

HERE = Path(__file__).parent
sys.path.insert(0, str(HERE.parents[2]))
from tests.images import oci  # noqa: E402
from tests.images.registry import Registry, free_port  # noqa: E402
from tests.supply.tools import tool_path  # noqa: E402
from tests.verify.signing import Cosign  # noqa: E402
from tests.verify.signing import Registry as Api  # noqa: E402

NAME = "registry.example.com/fixtures/signed"  # what the fixtures' policy covers (images: [registry.example.com/*])


def main() -> None:
    for entry in HERE.iterdir():
        if entry.is_dir() and entry.name.startswith(("pass__", "fail__")):
            shutil.rmtree(entry)
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        (work / "registry").mkdir()
        registry = Registry(work / "registry", free_port()).start()
        try:
            cosign = Cosign(tool_path("cosign"), work / "home")
            release, other = cosign.generate("release"), cosign.generate("other")
            shutil.copy(release.public, HERE / "release.pub")
            api = Api(registry.host)
            for name, key, bundle in (("pass__cosign-save-legacy", release, False),
                                      ("pass__cosign-save-bundle", release, True),
                                      ("fail__signed-by-another-key", other, True)):
                repo = f"fixtures/{name.split('__')[1]}"
                oci.push(oci.build(work / "layout", name.split("__")[1], user="10001", labels={"fixture": name}),
                         registry.host,
                         f"{repo}:1.0")
                digest = api.digest(repo, "1.0")
                cosign.sign(f"{registry.host}/{repo}@{digest}", key, bundle=bundle)
                cosign.save(f"{registry.host}/{repo}@{digest}", HERE / name)
            unsigned = HERE / "fail__unsigned-layout"
            source = oci.build(work / "layout", "unsigned", user="10001", labels={"fixture": "unsigned"})
            subprocess.run(["skopeo", "copy", "--quiet", source, f"oci:{unsigned}:{NAME}:1.0"], check=True,
                           capture_output=True)
        finally:
            registry.stop()


if __name__ == "__main__":
    main()
