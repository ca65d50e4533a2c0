"""Docs generated from code are current: docs/rules.md and the README's rule table from the rule catalogue,
docs/policy.md from the policy key table."""

from __future__ import annotations

from pathlib import Path

from admission.cli import docs
from admission.policy import catalog, config

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


def test_docs_policy_md_is_generated_from_the_current_key_table() -> None:
    assert (ROOT / "docs" / "policy.md").read_text(encoding="utf-8") == docs.policy_markdown(), \
        "docs/policy.md is stale: run `make docs`"


def _documented_keys() -> list[str]:
    rows = docs.policy_keys_table().splitlines()[2:]  # after the header and its rule
    return [row.split(" | ")[0].removeprefix("| `").removesuffix("`") for row in rows]


def test_the_policy_reference_has_one_row_per_key_the_loader_accepts_and_per_rule_parameter() -> None:
    params = [f"rules.{rule.id}.params.{p.name}" for rule in catalog.all_rules().values() for p in rule.params]
    documented = _documented_keys()
    assert sorted(documented) == sorted([key.path for key in config.KEYS] + params)
    assert len(documented) == len(set(documented))


def test_every_documented_key_has_a_type_default_and_description() -> None:
    for row in docs.policy_keys_table().splitlines()[2:]:
        cells = [cell.strip() for cell in row.strip("|").split(" | ")]
        assert len(cells) == 4 and all(cells), row


def test_the_readme_policy_section_links_the_policy_reference() -> None:
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    section = readme[readme.index("\n## Policy\n"):]
    section = section[: section.index("\n## ", 1)]
    assert "(docs/policy.md)" in section


def test_readme_make_demo_output_is_a_real_run_of_the_demo() -> None:
    """The quick start's `make demo` transcript is what the two commands the Makefile runs print today."""
    import subprocess
    import sys

    cli = str(Path(sys.executable).parent / "admission-cli")
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    block = readme[readme.index("<!-- demo:begin -->"):readme.index("<!-- demo:end -->")]
    shown = block.split("```text\n", 1)[1].split("```", 1)[0]
    example = "examples/flask-prod-app"
    published = subprocess.run([cli, "check", f"{example}/docker-compose.prod.yml", f"{example}/Dockerfile"],
                               capture_output=True, text=True, cwd=ROOT, env={"PATH": "/usr/bin:/bin", "NO_COLOR": "1"})
    fixed = subprocess.run([cli, "check", f"{example}/fixed"], capture_output=True, text=True, cwd=ROOT,
                           env={"PATH": "/usr/bin:/bin", "NO_COLOR": "1"})
    assert published.returncode == 1 and fixed.returncode == 0
    expected = (f"$ admission-cli check {example}/docker-compose.prod.yml {example}/Dockerfile\n{published.stdout}\n"
                f"exit code 1 (1 = findings at or above --fail-on); now the fixed example:\n"
                f"$ admission-cli check {example}/fixed\n{fixed.stdout}")
    assert shown == expected, f"README's make demo output is stale; a real run prints:\n{expected}"


def test_the_make_demo_webhook_output_in_the_docs_is_a_real_run() -> None:
    """docs/webhook.md's `make demo-webhook` block is what the demo prints today, but for the free port it picked and
    the audit lines' timestamps and durations."""
    import re
    import subprocess
    import sys

    page = (ROOT / "docs" / "webhook.md").read_text(encoding="utf-8")
    block = page[page.index("<!-- demo-webhook:begin -->"):page.index("<!-- demo-webhook:end -->")]
    shown = block.split("```text\n", 1)[1].split("```", 1)[0].removeprefix("$ make demo-webhook\n")
    run = subprocess.run([sys.executable, "examples/webhook-demo/demo.py"], capture_output=True, text=True, cwd=ROOT,
                         timeout=120, env={"PATH": f"{Path(sys.executable).parent}:/usr/bin:/bin"})
    assert run.returncode == 0, run.stderr

    def normal(text: str) -> str:
        text = re.sub(r"127\.0\.0\.1:\d+|--port \d+", "PORT", text)
        return re.sub(r'"(ts|duration_ms)":[0-9.]+', r'"\1":N', text)

    assert normal(shown) == normal(run.stdout), \
        f"docs/webhook.md's demo-webhook output is stale; a real run prints:\n{run.stdout}"

