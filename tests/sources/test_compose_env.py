"""What the compose adapter gives no-secret-in-env: `environment` values written in the file, told apart from what
interpolation took from `.env` or the shell, through overrides, `extends` and both syntaxes."""

from __future__ import annotations

from pathlib import Path

import pytest

from admission.errors import InputError
from admission.sources.compose import load_project


def _env(tmp_path: Path, files: dict[str, str], environ: dict[str, str] | None = None,
         names: tuple[str, ...] = ("compose.yaml",)) -> dict[str, dict[str, tuple[str, int | None]]]:
    for name, text in files.items():
        (tmp_path / name).write_text(text)
    result = load_project([str(tmp_path / n) for n in names], displays=list(names), environ=environ or {})
    return {w.name: {e.name: (e.value, e.origin.line) for e in w.containers[0].env} for w in result.workloads}


def test_values_from_dotenv_or_the_shell_are_not_literals_but_a_used_default_is(tmp_path: Path) -> None:
    got = _env(tmp_path, {
        "compose.yaml": "services:\n  a:\n    image: x:1\n    environment:\n      FROM_DOTENV: ${T}\n"
                        "      FROM_SHELL: $S\n      DEFAULTED: ${UNSET:-changeme}\n      NOT_DEFAULTED: ${T:-unused}\n"
                        "      PART: pre-${T}\n      ESCAPED: $$T\n      EMPTY_VAR: ${E}\n      BARE:\n",
        ".env": "T=from-dotenv\nE=\n"}, environ={"S": "from-shell"})
    assert got["a"] == {"DEFAULTED": ("changeme", 7), "ESCAPED": ("$T", 10), "EMPTY_VAR": ("", 11)}


def test_list_entries_keep_what_a_variable_filled_through_an_override_and_extends(tmp_path: Path) -> None:
    got = _env(tmp_path, {
        "compose.yaml": "services:\n  a:\n    image: x:1\n    environment: {KEEP: base, OVER: base}\n"
                        "  b:\n    extends: {service: a}\n    environment: [\"B_TOKEN=${T}\", B_LIT=lit]\n",
        "override.yaml": "services:\n  a:\n    environment: [\"OVER=${T}\", ADDED=x, \"KEY_${T}=literal\"]\n",
        ".env": "T=v\n"}, names=("compose.yaml", "override.yaml"))
    assert got["a"] == {"KEEP": ("base", 4), "ADDED": ("x", 3), "KEY_v": ("literal", 3)}
    assert got["b"] == {"KEEP": ("base", 4), "OVER": ("base", 4), "B_LIT": ("lit", 7)}  # extends reads its own file


def test_a_missing_required_variable_is_reported_without_interpolation_markers(tmp_path: Path) -> None:
    (tmp_path / "compose.yaml").write_text("services:\n  a:\n    image: x:1\n    environment:\n"
                                           "      X: ${NEED:?set it, not $T}\n")
    (tmp_path / ".env").write_text("T=v\n")
    with pytest.raises(InputError) as caught:
        load_project([str(tmp_path / "compose.yaml")], displays=["compose.yaml"], environ={})
    assert caught.value.message == "required variable NEED is missing a value: set it, not v"
