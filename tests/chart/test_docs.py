"""The chart's documentation and schema stay in step with values.yaml: the README's values table is generated
from it, every value is described once and typed by values.schema.json, and the schema refuses what it should."""

from __future__ import annotations

import json

import pytest

from tests.chart import valuesdoc
from tests.chart.conftest import CHART, chart_values, render


def test_chart_readme_values_table_is_the_one_values_yaml_generates() -> None:
    readme = (CHART / "README.md").read_text()
    assert valuesdoc.readme_table(readme) == valuesdoc.table(), \
        "the values table is stale: run `.venv/bin/python -m tests.chart.valuesdoc`"


def test_every_value_is_described_exactly_once() -> None:
    rows = valuesdoc.described_keys((CHART / "values.yaml").read_text())
    described = [row.path for row in rows]
    for leaf in valuesdoc.leaves(chart_values()):
        covering = [path for path in described if leaf[:len(path)] == path]
        assert len(covering) == 1, (".".join(leaf), covering)
    assert all(row.description for row in rows)
    assert len(set(described)) == len(described)


def test_schema_types_every_value_and_has_no_value_values_yaml_lacks() -> None:
    schema = json.loads((CHART / "values.schema.json").read_text())
    values = chart_values()
    for leaf in valuesdoc.leaves(values):
        assert valuesdoc.schema_at(schema, leaf) is not None, ".".join(leaf)

    def walk(node: dict, path: tuple[str, ...]) -> None:
        for key, sub in node.get("properties", {}).items():
            if path + (key,) == ("global",):
                continue
            default = valuesdoc.lookup(values, path + (key,))  # KeyError: a value values.yaml lacks
            if default != {}:  # an empty mapping's schema describes what a user may put in it
                walk(sub, path + (key,))

    walk(schema, ())
    assert schema["additionalProperties"] is False


@pytest.mark.parametrize(("values", "where"), [
    ({"replicaCount": 3}, "replicaCount"),
    ({"server": {"prot": 8443}}, "prot"),
    ({"failurePolicy": "fail"}, "failurePolicy"),
    ({"timeoutSeconds": 31}, "timeoutSeconds"),
    ({"tls": {"mode": "letsencrypt"}}, "mode"),
    ({"image": {"digest": "sha256:abc"}}, "digest"),
    ({"runAsUser": 0}, "runAsUser"),
    ({"resources": {"limits": {"memory": None}}}, "memory"),  # null removes a default, as --set x=null does
    ({"excludedNamespaces": ["Not_A_Namespace"]}, "excludedNamespaces"),
    ({"clusterReads": {"pullSecrets": "yes"}}, "pullSecrets"),
])
def test_schema_refuses_unknown_and_mistyped_values(values: dict, where: str) -> None:
    import helm_python

    with pytest.raises(helm_python.HelmValuesError, match=where):
        render(values)
