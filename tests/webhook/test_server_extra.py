"""The webhook's dependencies are the `server` extra: without them `serve` says what to install, exit 2."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_serve_without_the_server_extra_names_the_extra_to_install() -> None:
    probe = ("import sys; sys.modules['fastapi'] = None\n"  # as if `pip install admission` left it out
             "from admission.cli.main import main\nraise SystemExit(main(['serve', '--port', '0']))")
    proc = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, cwd=ROOT, timeout=60)
    assert proc.returncode == 2
    assert "pip install 'admission[server]'" in proc.stderr and "fastapi" in proc.stderr
    assert "Traceback" not in proc.stderr


def test_the_checker_alone_installs_no_web_framework_or_kubernetes_client() -> None:
    import tomllib

    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    core = " ".join(project["dependencies"]).lower()
    assert not any(name in core for name in ("fastapi", "uvicorn", "pydantic", "kubernetes", "prometheus"))
    assert {"fastapi", "uvicorn", "kubernetes"} <= {d.split(">")[0].split("[")[0] for d in
                                                    project["optional-dependencies"]["server"]}
