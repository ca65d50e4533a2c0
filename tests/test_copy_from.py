"""image-tag-pinned names the instruction that used the image: `COPY --from=nginx:latest` is a COPY --from, not "a FROM
line" (issue 12); the verdict, line and finding key stay as they were."""

from __future__ import annotations

from pathlib import Path

from admission.cli.docs import explain
from admission.findings import Finding
from admission.policy import catalog, engine
from admission.policy.config import default_policy
from admission.sources import compose, dockerfile

ROOT = Path(__file__).resolve().parents[1]
TEXT = "FROM nginx:latest AS base\nCOPY --from=nginx:latest /etc/nginx /etc/nginx\n" \
       "RUN --mount=type=bind,from=busybox:latest,target=/b true\nUSER 101\n"


def pinned(workloads: list) -> list[Finding]:
    return [f for f in engine.evaluate(workloads, default_policy()).findings if f.rule == "image-tag-pinned"]


def test_each_finding_names_its_instruction_at_its_line() -> None:
    found = {(f.line, f.message.split(" uses ")[0]) for f in pinned(dockerfile.load(TEXT, file="Dockerfile"))}
    assert found == {(1, "a FROM line"), (2, "a COPY --from"), (3, "a RUN --mount from=")}


def test_the_key_of_a_copy_from_finding_is_unchanged_so_baselines_keep_matching() -> None:
    [copy] = [f for f in pinned(dockerfile.load(TEXT, file="Dockerfile")) if f.line == 2]
    assert copy.key == "FROM nginx" and copy.path == "stages[0].copies_from[0]" and copy.severity == "deny"


def test_a_compose_build_says_copy_from_of_its_build_dockerfile(tmp_path: Path) -> None:
    (tmp_path / "Dockerfile").write_text(TEXT)
    (tmp_path / "compose.yaml").write_text("services:\n  web:\n    build: .\n    user: '101'\n")
    result = compose.load_project([str(tmp_path / "compose.yaml")], displays=["compose.yaml"], environ={})
    messages = {f.line: f.message for f in pinned(result.workloads)}
    assert messages[1].startswith("service 'web' (a FROM of its build Dockerfile) uses image 'nginx:latest'")
    assert messages[2].startswith("service 'web' (a COPY --from of its build Dockerfile) uses image 'nginx:latest'")


def test_an_inline_dockerfile_keeps_the_instruction_in_its_path(tmp_path: Path) -> None:
    (tmp_path / "compose.yaml").write_text(
        "services:\n  web:\n    user: '101'\n    build:\n      context: .\n      dockerfile_inline: |\n"
        "        FROM alpine:3.20\n        COPY --from=nginx:latest /etc/nginx /etc/nginx\n")
    result = compose.load_project([str(tmp_path / "compose.yaml")], displays=["compose.yaml"], environ={})
    [finding] = pinned(result.workloads)
    assert finding.message.startswith("service 'web' (a COPY --from of its build Dockerfile)")
    assert finding.line == 8 and finding.path == "services.web.build.dockerfile_inline.stages[0].copies_from[0]"


def test_the_docs_name_both_from_and_copy_from() -> None:
    rule = catalog.get("image-tag-pinned")
    assert rule is not None
    assert "COPY --from" in rule.applies["dockerfile"] and "FROM" in rule.applies["dockerfile"]
    text = explain(rule)
    assert "every `FROM` and every `COPY --from`" in text
    docs = (ROOT / "docs" / "rules.md").read_text(encoding="utf-8")
    assert "every FROM and COPY --from naming an image" in docs and "COPY --from=nginx:latest" in docs
