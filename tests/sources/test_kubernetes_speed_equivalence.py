"""The Kubernetes reader's output is unchanged by its speed work (issue 15): every owned input, whole and mutated.

The golden file was written by the reader before it was rewritten for speed; see tests/sources/k8s_equivalence.py.
"""

from __future__ import annotations

import json

from admission.sources import kubernetes
from tests.sources.k8s_equivalence import GOLDEN, cases, summary


def test_every_owned_input_reads_as_before() -> None:
    expected = json.loads(GOLDEN.read_text(encoding="utf-8"))
    got = summary(cases(kubernetes))
    assert sorted(got) == sorted(expected)
    changed = [key for key in expected if got[key] != expected[key]]
    assert not changed, f"{len(changed)} cases differ, first: {changed[0]}\nwas: {expected[changed[0]][:2000]}\nnow: {got[changed[0]][:2000]}"


def test_the_origin_tables_stay_bounded() -> None:
    """Origins of line-less values are reused from tables that cannot grow without bound (user-chosen keys, files)."""
    pod = {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "p"}, "spec": {"containers": []}}
    for n in range(40):
        containers = [{"name": f"c{i}", "image": "x:1", "resources": {"limits": {f"k{n}-{i}": "1"}}} for i in range(100)]
        pod["spec"]["containers"] = containers
        first = kubernetes.workloads_from_object(pod, file=f"object-{n % 20}", namespace="default")
        again = kubernetes.workloads_from_object(pod, file=f"object-{n % 20}", namespace="default")
        assert first == again
        assert len(kubernetes._ORIGINS) <= 16
        assert all(len(table) <= kubernetes._ORIGIN_LIMIT for table in kubernetes._ORIGINS.values())
