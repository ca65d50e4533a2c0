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


def _code_under_test() -> dict[str, str]:
    """PYTHONPATH when the suite runs a checkout that is not the one installed in the venv (a worktree), so that the
    CLI these tests start runs the code under test; nothing in a fresh clone's `make test`."""
    import os

    return {k: v for k, v in os.environ.items() if k == "PYTHONPATH"}


def test_readme_make_demo_output_is_a_real_run_of_the_demo() -> None:
    """The quick start's `make demo` transcript is what the two commands the Makefile runs print today."""
    import subprocess
    import sys

    cli = str(Path(sys.executable).parent / "admission-cli")
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    block = readme[readme.index("<!-- demo:begin -->"):readme.index("<!-- demo:end -->")]
    shown = block.split("```text\n", 1)[1].split("```", 1)[0]
    example = "examples/flask-prod-app"
    env = {"PATH": "/usr/bin:/bin", "NO_COLOR": "1", **_code_under_test()}
    published = subprocess.run([cli, "check", f"{example}/docker-compose.prod.yml", f"{example}/Dockerfile"],
                               capture_output=True, text=True, cwd=ROOT, env=env)
    fixed = subprocess.run([cli, "check", f"{example}/fixed"], capture_output=True, text=True, cwd=ROOT, env=env)
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
                         timeout=120, env={"PATH": f"{Path(sys.executable).parent}:/usr/bin:/bin", **_code_under_test()})
    assert run.returncode == 0, run.stderr

    def normal(text: str) -> str:
        text = re.sub(r"127\.0\.0\.1:\d+|--port \d+", "PORT", text)
        return re.sub(r'"(ts|duration_ms)":[0-9.]+', r'"\1":N', text)

    assert normal(shown) == normal(run.stdout), \
        f"docs/webhook.md's demo-webhook output is stale; a real run prints:\n{run.stdout}"


# --- the README is the front door; the docs hold the rest, and cite only what the repository has ------------------

import re  # noqa: E402
import subprocess  # noqa: E402

DOCS = ("cli.md", "ci.md", "webhook.md", "install.md", "rollout.md", "audit.md", "pin.md", "performance.md",
        "architecture.md", "decisions.md", "rules.md", "policy.md")


def _tracked_text() -> dict[str, str]:
    """Every text file git tracks in the checkout (a tarball without .git: every file under the root)."""
    try:
        names = subprocess.run(["git", "ls-files", "-z"], cwd=ROOT, capture_output=True, check=True).stdout
        paths = [ROOT / n for n in names.decode().split("\0") if n]
    except (OSError, subprocess.CalledProcessError):
        paths = [p for p in ROOT.rglob("*") if ".venv" not in p.parts and ".git" not in p.parts]
    texts = {}
    for path in paths:
        if path.is_file() and not path.is_symlink():
            try:
                texts[str(path.relative_to(ROOT))] = path.read_text(encoding="utf-8")
            except (UnicodeDecodeError, OSError):
                continue
    return texts


def test_the_readme_is_a_front_door_of_at_most_300_lines_with_a_two_command_quick_start() -> None:
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    assert len(readme.splitlines()) <= 300
    quick = readme[readme.index("## Quick start"):readme.index("<!-- demo:begin -->")]
    commands = quick.split("```console\n", 1)[1].split("```", 1)[0].splitlines()
    assert [c.split("#")[0].strip() for c in commands] == ["make demo", "make test"]
    for name in DOCS:
        assert f"(docs/{name})" in readme or name in ("rules.md", "policy.md"), f"README links no docs/{name}"
    assert "## Layout" in readme


def _slug(heading: str) -> str:
    """GitHub's anchor for a heading: lower case, punctuation but hyphens and spaces dropped, spaces to hyphens."""
    return re.sub(r"[^\w\- ]", "", heading.strip().lower()).replace(" ", "-")


def _anchors(text: str) -> set[str]:
    out, fence = set(), False
    for line in text.splitlines():
        if line.startswith("```"):
            fence = not fence
        elif not fence and line.startswith("#"):
            out.add(_slug(line.lstrip("#")))
    return out


def test_every_link_of_the_readme_and_the_docs_reaches_a_file_and_heading_that_exist() -> None:
    pages = [ROOT / "README.md", *(ROOT / "docs").glob("*.md"), ROOT / "charts" / "admission" / "README.md"]
    broken = []
    for page in pages:
        text = page.read_text(encoding="utf-8")
        for target in re.findall(r"\]\(([^)\s]+)\)", text):
            if target.startswith(("http://", "https://", "mailto:")):
                continue
            file, _, anchor = target.partition("#")
            path = (page.parent / file).resolve() if file else page
            if not path.exists():
                broken.append(f"{page.relative_to(ROOT)}: {target}")
            elif anchor and path.suffix == ".md" and anchor not in _anchors(path.read_text(encoding="utf-8")):
                broken.append(f"{page.relative_to(ROOT)}: {target} (no such heading)")
    assert broken == []


def test_every_architecture_citation_names_a_section_the_architecture_has() -> None:
    sections = set(re.findall(r"^## (\d+)\. ", (ROOT / "docs" / "architecture.md").read_text(), re.M))
    assert sections == {"1", "2", "3", "4", "5", "6", "7"}
    cited = {(name, n) for name, text in _tracked_text().items()
             for n in re.findall(r"architecture §(\d+)", text)}
    assert cited, "the code and docs cite the architecture"
    assert [c for c in cited if c[1] not in sections] == []


def test_nothing_cites_a_document_the_repository_does_not_have() -> None:
    # Spelt so that no pattern is itself a citation: the design document the project started from is not in it.
    gone = re.compile(r"DESIGN[ ]?(§|\.md|'s)|the shared[ ]folder|shared[/]corpus")
    found = [f"{name}: {m.group(0)}" for name, text in _tracked_text().items() for m in gone.finditer(text)
             if not (name == "tests/corpus.py" and m.group(0) == "shared" + "/corpus")]  # ADMISSION_CORPUS's default
    assert found == []


def test_no_command_names_a_release_tag_or_commit_this_repository_does_not_have() -> None:
    refs = set()
    for name, text in _tracked_text().items():
        if name.endswith((".md", ".yaml", ".yml")) or name == "Makefile":
            refs |= set(re.findall(r"github\.com/admission/admission@([\w.\-]+)", text))
            refs |= set(re.findall(r"repo: https://github\.com/admission/admission\s+#?\s*rev: ([\w.\-]+)", text))
    assert refs, "the docs show how to install from the repository"
    if not (ROOT / ".git").exists():
        return
    tags = set(subprocess.run(["git", "tag", "-l"], cwd=ROOT, capture_output=True, text=True).stdout.split())
    missing = [ref for ref in refs if ref not in tags and subprocess.run(
        ["git", "cat-file", "-e", f"{ref}^{{commit}}"], cwd=ROOT, capture_output=True).returncode != 0]
    assert missing == []
