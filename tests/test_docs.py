"""Docs generated from the catalogue are current: docs/rules.md and the README's rule table."""

from __future__ import annotations

from pathlib import Path

from admission.cli import docs
from admission.policy import catalog

ROOT = Path(__file__).resolve().parents[1]


def test_docs_rules_md_is_generated_from_the_current_catalogue() -> None:
    assert (ROOT / "docs" / "rules.md").read_text(encoding="utf-8") == docs.rules_markdown(), \
        "docs/rules.md is stale: run `make docs`"


def test_readme_rule_table_is_current() -> None:
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    assert docs.readme_with_table(readme) == readme, "README rule table is stale: run `make docs`"


def test_every_rule_documents_why_fix_and_example() -> None:
    for rule in catalog.all_rules().values():
        for section in ("Why", "Fix", "Example"):
            assert len(rule.section(section)) > 20, f"{rule.id}: {section} section is missing or empty"
