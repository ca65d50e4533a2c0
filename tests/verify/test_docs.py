"""docs/verify.md's run is a real one: its files are written as the page shows them, its images pushed to a loopback
docker-registry with fixed digests (tests/pin/images.py), signed by the real cosign, and every command prints exactly
what the page shows. Only the registry's port differs per run (the page shows 127.0.0.1:5000).

    ADMISSION_WRITE_DOCS=1 .venv/bin/python -m pytest tests/verify/test_docs.py   # rewrite the run from a real one
"""

from __future__ import annotations

import os
import re
import shlex
import subprocess
import sys
from pathlib import Path
from typing import Any

from tests.pin import images
from tests.verify.buildkit import BuildKit
from tests.verify.signing import Cosign

ROOT = Path(__file__).resolve().parents[2]
DOC = ROOT / "docs" / "verify.md"
SHOWN_HOST = "127.0.0.1:5000"
# cosign generate-key-pair makes a new key for every run: its hint (what a bundle names it by) is compared as such
_HINTS = re.compile(r"key hint [A-Za-z0-9+/=]{12}…")
CLI = str(Path(sys.executable).parent / "admission-cli")


def blocks(text: str, kind: str) -> dict[str, str]:
    """`<!-- verify:KIND NAME -->` followed by a fenced block -> {NAME: the block's text}."""
    return {m.group(1): m.group(2)
            for m in re.finditer(rf"<!-- verify:{kind} (\S+) -->\n```\w*\n(.*?)```", text, re.DOTALL)}


def run_commands(transcript: str, *, cwd: Path, host: str, cosign: Cosign, buildkit: BuildKit | None = None) -> str:
    """Each `$ ` line of the transcript run for real; what it printed, with the registry shown as on the page."""
    env = {"PATH": os.environ["PATH"], "NO_COLOR": "1", "XDG_CACHE_HOME": str(cwd / ".cache"),
           **{k: v for k, v in os.environ.items() if k == "PYTHONPATH"}}
    shown: list[str] = []
    code = 0
    for command in [line[2:] for line in transcript.splitlines() if line.startswith("$ ")]:
        if command == "echo $?":
            shown += [f"$ {command}", str(code)]
            continue
        argv = shlex.split(command.replace(SHOWN_HOST, host))
        if argv[0] == "buildctl":  # its progress lines go to stderr and are not shown
            assert buildkit is not None
            proc = subprocess.run([str(buildkit.buildctl), "--addr", buildkit.socket, *argv[1:]], cwd=cwd,
                                  capture_output=True, text=True, timeout=600, check=False)
            assert proc.returncode == 0, proc.stderr[-3000:]
            shown.append(f"$ {command}")
            code = proc.returncode
            continue
        if argv[0] == "cosign":  # its progress lines go to stderr and are not shown
            proc = subprocess.run([str(cosign.binary), *argv[1:]], cwd=cwd, env={**env, **cosign.env},
                                  capture_output=True, text=True, timeout=120, check=False)
            assert proc.returncode == 0, proc.stderr
            shown.append(f"$ {command}")
            code = proc.returncode
            continue
        proc = subprocess.run([CLI, *argv[1:]], cwd=cwd, env=env, capture_output=True, text=True, timeout=120,
                              check=False)
        code = proc.returncode
        assert code in (0, 1), proc.stderr
        shown += [f"$ {command}", proc.stdout.rstrip("\n").replace(host, SHOWN_HOST)]
    return "\n".join(shown) + "\n"


def page_files(tmp_path: Path, text: str, host: str, cosign: Cosign) -> Path:
    """A repository holding the page's files (its registry in place of the page's) and a fresh cosign key pair."""
    repo = tmp_path / "shop"
    repo.mkdir()
    (repo / ".git").mkdir()
    for name, body in blocks(text, "file").items():
        (repo / name).write_text(body.replace(SHOWN_HOST, host))
    subprocess.run([str(cosign.binary), "generate-key-pair"], cwd=repo, env=cosign.env, capture_output=True,
                   check=True, timeout=60)
    return repo


def test_the_verify_page_run_is_what_the_tools_print(tmp_path: Path, cosign: Cosign, plain: Any) -> None:
    text = DOC.read_text(encoding="utf-8")
    layout = tmp_path / "layout"
    images.image(layout, "api", release="shop api 1.4", user="10001")
    images.push(layout, "api", f"{plain.host}/shop/api:1.4.0")
    images.image(layout, "worker", release="shop worker 2.0", user="10001")
    images.push(layout, "worker", f"{plain.host}/shop/worker:2.0.1")
    repo = page_files(tmp_path, text, plain.host, cosign)
    transcript = blocks(text, "run")["transcript"]
    real = run_commands(transcript, cwd=repo, host=plain.host, cosign=cosign)
    if os.environ.get("ADMISSION_WRITE_DOCS") == "1":
        DOC.write_text(text.replace(transcript, real), encoding="utf-8")
        return
    assert _HINTS.sub("key hint …", real) == _HINTS.sub("key hint …", transcript), \
        f"docs/verify.md's run is stale; a real run prints:\n{real}"


_DIGESTS = re.compile(r"sha256[:-][0-9a-f]{12}(?:[0-9a-f]{52})?")


def test_the_verify_pages_provenance_run_is_what_the_tools_print(tmp_path: Path, cosign: Cosign, plain: Any,
                                                                 buildkit: BuildKit) -> None:
    """BuildKit's build records its own invocation (times, ids), so the index and its digests differ per build: they
    are compared as `sha256:…`; every other character of the run is held to the page."""
    text = DOC.read_text(encoding="utf-8")
    repo = page_files(tmp_path, text, plain.host, cosign)
    transcript = blocks(text, "run")["provenance"]
    real = run_commands(transcript, cwd=repo, host=plain.host, cosign=cosign, buildkit=buildkit)
    if os.environ.get("ADMISSION_WRITE_DOCS") == "1":
        DOC.write_text(text.replace(transcript, real), encoding="utf-8")
        return
    assert _DIGESTS.sub("sha256:…", _HINTS.sub("key hint …", real)) == \
        _DIGESTS.sub("sha256:…", _HINTS.sub("key hint …", transcript)), \
        f"docs/verify.md's provenance run is stale; a real run prints:\n{real}"
