"""Import boundaries (architecture §1): the core imports no web/HTTP/Kubernetes/CLI framework, and `check` loads
no FastAPI, uvicorn or kubernetes module. Checked in a fresh interpreter, so nothing else has imported them."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
FORBIDDEN_IN_CORE = ("fastapi", "starlette", "uvicorn", "httpx", "requests", "aiohttp", "kubernetes", "click", "typer",
                     "pydantic")
FORBIDDEN_IN_CHECK = ("fastapi", "starlette", "uvicorn", "kubernetes", "pydantic", "httpx", "jsonschema")

_PROBE = """
import json, sys, runpy
modules_before = set(sys.modules)
{body}
print(json.dumps(sorted(set(sys.modules) - modules_before)))
"""


def _loaded(body: str) -> list[str]:
    proc = subprocess.run([sys.executable, "-c", _PROBE.format(body=body)], capture_output=True, text=True, cwd=ROOT,
                          env={"PYTHONPATH": str(ROOT), "PATH": "/usr/bin:/bin"})
    assert proc.returncode == 0, proc.stderr
    return json.loads(proc.stdout.strip().splitlines()[-1])


def _top(modules: list[str]) -> set[str]:
    return {m.split(".")[0] for m in modules}


def test_policy_core_imports_no_web_http_kubernetes_or_cli_framework() -> None:
    loaded = _top(_loaded("import admission.model, admission.findings, admission.errors, admission.reference, "
                          "admission.policy.engine, admission.policy.config, admission.policy.catalog\n"
                          "from admission.policy import catalog; catalog.all_rules()"))
    assert not loaded & set(FORBIDDEN_IN_CORE), loaded & set(FORBIDDEN_IN_CORE)


def test_check_path_loads_no_fastapi_uvicorn_kubernetes_or_pydantic() -> None:
    example = ROOT / "examples" / "flask-prod-app"
    body = ("from admission.cli.main import main\nimport contextlib, io\n"
            f"with contextlib.redirect_stdout(io.StringIO()):\n    main(['check', {str(example)!r}, '--format', 'sarif'])")
    loaded = _top(_loaded(body))
    assert "admission" in loaded and "yaml" in loaded, "the probe really ran the check"
    assert not loaded & set(FORBIDDEN_IN_CHECK), loaded & set(FORBIDDEN_IN_CHECK)


def test_text_check_loads_nothing_the_ci_formats_need() -> None:
    """The one-file start-up is user-visible: JUnit's XML writer loads only for --format junit."""
    example = ROOT / "examples" / "flask-prod-app"
    run = ("from admission.cli.main import main\nimport contextlib, io\n"
           "with contextlib.redirect_stdout(io.StringIO()):\n    main(['check', {path!r}, '--format', {fmt!r}])")
    text = set(_loaded(run.format(path=str(example), fmt="text")))
    assert not {m for m in text if m.startswith(("xml", "admission.cli.baseline"))}
    for fmt in ("github", "gitlab"):
        extra = set(_loaded(run.format(path=str(example), fmt=fmt))) - text
        assert extra <= {"admission.cli.baseline", "hashlib", "_hashlib", "_blake2"}, fmt  # fingerprints
    junit = set(_loaded(run.format(path=str(example), fmt="junit"))) - text
    assert junit <= {"admission.cli.baseline", "hashlib", "_hashlib", "_blake2"}


def test_a_text_check_computes_no_fingerprints_so_it_loads_no_hashlib() -> None:
    example = ROOT / "examples" / "flask-prod-app" / "docker-compose.prod.yml"
    run = ("from admission.cli.main import main\nimport contextlib, io\n"
           "with contextlib.redirect_stdout(io.StringIO()):\n    main(['check', {path!r}, '--format', {fmt!r}])")
    assert "hashlib" not in _loaded(run.format(path=str(example), fmt="text"))
    assert "hashlib" in _loaded(run.format(path=str(example), fmt="json"))
