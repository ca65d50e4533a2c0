"""The run docs/pin.md shows is a real one: its files are written as the page shows them, the images it names are
pushed to a loopback docker-registry (fixed digests: tests/pin/images.py), and the commands it shows print exactly
what it shows. Only the registry's port differs per run; the page shows 127.0.0.1:5000."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from tests.images.registry import Registry
from tests.pin import images

ROOT = Path(__file__).resolve().parents[2]
SHOWN_HOST = "127.0.0.1:5000"
CLI = str(Path(sys.executable).parent / "admission-cli")


def _section() -> str:
    page = (ROOT / "docs" / "pin.md").read_text(encoding="utf-8")
    return page[page.index("<!-- pin:begin -->"):page.index("<!-- pin:end -->")]


def _blocks(section: str, kind: str) -> dict[str, str]:
    """`<!-- pin:KIND NAME -->` followed by a fenced block -> {NAME: the block's text}."""
    found = {}
    for match in re.finditer(rf"<!-- pin:{kind} (\S+) -->\n```\w*\n(.*?)```", section, re.DOTALL):
        found[match.group(1)] = match.group(2)
    return found


def push_shown_images(layout: Path, host: str) -> None:
    images.image(layout, "web-amd64", release="shop web 1.4", architecture="amd64")
    images.image(layout, "web-arm64", release="shop web 1.4", architecture="arm64")
    images.index(layout, "web", [("web-amd64", "amd64"), ("web-arm64", "arm64")])
    images.push(layout, "web", f"{host}/shop/web:1.4")
    for tag, release in (("shop/migrate:3", "shop migrate 3"), ("shop/base:12", "shop base 12")):
        name = tag.replace("/", "-").replace(":", "-")
        images.image(layout, name, release=release)
        images.push(layout, name, f"{host}/{tag}")


def test_the_pin_run_in_the_docs_is_what_pin_prints(tmp_path: Path, registry: Registry) -> None:
    section = _section()
    push_shown_images(tmp_path / "layout", registry.host)
    repo = tmp_path / "shop"
    repo.mkdir()
    (repo / ".git").mkdir()
    for name, text in _blocks(section, "file").items():
        (repo / name).write_text(text.replace(SHOWN_HOST, registry.host))
    (transcript,) = _blocks(section, "run").values()
    env = {"PATH": os.environ["PATH"], "NO_COLOR": "1", "XDG_CACHE_HOME": str(tmp_path / "cache")}
    shown = []
    for command in [line[2:] for line in transcript.splitlines() if line.startswith("$ ")]:
        if command.startswith("echo "):
            continue
        proc = subprocess.run([CLI, *command.split()[1:]], cwd=repo, env=env, capture_output=True, text=True,
                              timeout=120, check=False)
        shown += [f"$ {command}", proc.stdout.rstrip("\n").replace(registry.host, SHOWN_HOST),
                  f"$ echo $?\n{proc.returncode}"]
    real = "\n".join(shown) + "\n"
    assert real == transcript, f"the pin run in docs/pin.md is stale; a real run prints:\n{real}"
    for name, text in _blocks(section, "after").items():
        assert (repo / name).read_text().replace(registry.host, SHOWN_HOST) == text, name


@pytest.fixture(scope="module")
def registry(tmp_path_factory: pytest.TempPathFactory) -> Registry:  # type: ignore[misc]
    """A registry of its own: the page's repositories exist in no other test's registry."""
    from tests.images.registry import free_port

    reg = Registry(tmp_path_factory.mktemp("readme-registry"), free_port()).start()
    yield reg  # type: ignore[misc]
    reg.stop()
