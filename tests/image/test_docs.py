"""docs/image.md names what exists: the make image variables its table lists are those the Makefile passes, and the
policy it shows is one the webhook accepts."""

from __future__ import annotations

import re
from pathlib import Path

from admission.cli.main import main
from tests.image.conftest import ROOT

DOC = (ROOT / "docs" / "image.md").read_text()


def test_the_variables_table_is_what_make_image_passes() -> None:
    makefile = (ROOT / "Makefile").read_text()
    recipe = makefile[makefile.index("\nimage:"):makefile.index("\nimage-base:")]
    passed = set(re.findall(r"\$\(([A-Z_]+)\)", recipe)) - {"PYTHON", "APT_STAMP"}
    table = DOC[DOC.index("| variable | meaning |"):]
    table = table[: table.index("\n\n")]
    documented = set(re.findall(r"^\| `([A-Z_]+)`(?:, `([A-Z_]+)`)?", table, re.MULTILINE))
    assert {name for pair in documented for name in pair if name} == passed


def test_the_policy_shown_is_accepted(tmp_path: Path, capsys: object) -> None:
    (block,) = re.findall(r"```yaml\n(images:\n.*?)```", DOC, re.DOTALL)
    (tmp_path / "keys").mkdir()
    # The public half of an ECDSA P-256 key made for the chart tests (tests/chart/conftest.py).
    from tests.chart.conftest import TEST_PUBLIC_KEY

    (tmp_path / "keys" / "cosign.pub").write_text(TEST_PUBLIC_KEY)
    (tmp_path / "policy.yaml").write_text(block)
    assert main(["check-policy", str(tmp_path / "policy.yaml")]) == 0
