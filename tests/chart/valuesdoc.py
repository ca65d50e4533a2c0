"""The chart README's values table, generated from values.yaml (`# --` comments), values.schema.json (types) and
the defaults themselves, so the table cannot drift from the chart: a test compares it with the README.

    .venv/bin/python -m tests.chart.valuesdoc        # rewrite the table in charts/admission/README.md
"""

from __future__ import annotations

import json
import re
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

CHART = Path(__file__).resolve().parents[2] / "charts" / "admission"
README = CHART / "README.md"
BEGIN, END = "<!-- values:begin -->", "<!-- values:end -->"
_KEY = re.compile(r"^(?P<indent> *)(?P<key>[A-Za-z_][A-Za-z0-9_]*):(?:\s|$)")


@dataclass(frozen=True)
class Row:
    path: tuple[str, ...]
    description: str
    line: int

    @property
    def key(self) -> str:
        return ".".join(self.path)


def described_keys(text: str) -> list[Row]:
    """Every key preceded by a `# --` comment (continued by the `#` lines after it), with its full path."""
    rows: list[Row] = []
    stack: list[tuple[int, str]] = []
    comment: list[str] | None = None
    block: int | None = None  # indent of a key whose value is a block scalar: its lines are text, not keys
    for number, line in enumerate(text.splitlines(), 1):
        stripped = line.strip()
        if block is not None:
            if not stripped or len(line) - len(line.lstrip(" ")) > block:
                continue
            block = None
        if stripped.startswith("# --"):
            comment = [stripped[4:].strip()]
            continue
        if stripped.startswith("#"):
            if comment is not None:
                comment.append(stripped[1:].strip())
            continue
        match = _KEY.match(line)
        if not match:
            if stripped and not stripped.startswith("-"):
                comment = None
            continue
        indent = len(match["indent"])
        while stack and stack[-1][0] >= indent:
            stack.pop()
        stack.append((indent, match["key"]))
        if re.search(r":\s*[|>][-+]?\d*\s*$", line):
            block = indent
        if comment is not None:
            rows.append(Row(tuple(k for _, k in stack), " ".join(comment), number))
        comment = None
    return rows


def leaves(value: Any, path: tuple[str, ...] = ()) -> list[tuple[str, ...]]:
    """Paths of the values a user sets: scalars, lists, and empty mappings."""
    if isinstance(value, dict) and value:
        return [leaf for key, item in value.items() for leaf in leaves(item, (*path, key))]
    return [path]


def lookup(value: Any, path: tuple[str, ...]) -> Any:
    for key in path:
        value = value[key]
    return value


def schema_at(schema: dict[str, Any], path: tuple[str, ...]) -> dict[str, Any] | None:
    """The schema of a value path, or None when the schema does not describe it."""
    for key in path:
        properties = schema.get("properties", {})
        extra = schema.get("additionalProperties", True)
        if key in properties:
            schema = properties[key]
        elif isinstance(extra, dict):
            schema = extra
        elif extra is True and schema.get("type") == "object" and not properties:
            return schema  # a free-form mapping (affinity, tolerations' items): anything below it is its own
        else:
            return None
    return schema


def type_of(schema: dict[str, Any] | None) -> str:
    if schema is None:
        return "?"
    if "enum" in schema:
        return " \\| ".join(f"`{v}`" for v in schema["enum"])
    if "anyOf" in schema and "type" not in schema:
        return " or ".join(type_of(s) for s in schema["anyOf"] if s.get("type") or s.get("enum"))
    return str(schema.get("type", "?"))


def default_text(value: Any) -> str:
    if isinstance(value, str) and "\n" in value:
        return "a YAML string (see values.yaml)"
    text = json.dumps(value, ensure_ascii=False, separators=(", ", ": "))
    return f"`{text}`"


def table() -> str:
    text = (CHART / "values.yaml").read_text()
    values = yaml.safe_load(text)
    schema = json.loads((CHART / "values.schema.json").read_text())
    lines = ["| key | type | default | description |", "|---|---|---|---|"]
    for row in described_keys(text):
        description = row.description.replace("|", "\\|")
        lines.append(f"| `{row.key}` | {type_of(schema_at(schema, row.path))} | "
                     f"{default_text(lookup(values, row.path))} | {description} |")
    return "\n".join(lines)


def readme_table(readme: str) -> str:
    start, end = readme.index(BEGIN) + len(BEGIN), readme.index(END)
    return readme[start:end].strip()


def main() -> int:
    readme = README.read_text()
    start, end = readme.index(BEGIN) + len(BEGIN), readme.index(END)
    README.write_text(readme[:start] + "\n" + table() + "\n" + readme[end:])
    print(f"wrote the values table of {README}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
