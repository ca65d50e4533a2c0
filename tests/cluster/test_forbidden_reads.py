"""A cluster read that RBAC forbids, against the real API server (DESIGN §3: count no defaults and say so): the
server's LimitRange reads are turned on (extraEnv) while the chart's values grant no read. Its own module, so no
other release's ClusterRole is bound to the same ServiceAccount meanwhile."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.cluster.controlplane import ControlPlane
from tests.cluster.release import Release, installed
from tests.cluster.test_cluster_reads import limit_range, namespaces, no_limits
from tests.cluster.test_webhook_in_cluster import compliant_deployment

pytestmark = pytest.mark.controlplane

LOCKED = "reads-locked"


@pytest.fixture()
def without_rbac(control_plane: ControlPlane, tmp_path: Path) -> Iterator[Release]:
    """LimitRange reads turned on in the server (extraEnv) while the chart grants no read: RBAC forbids them."""
    namespaces(control_plane, LOCKED)
    control_plane.apply([limit_range(LOCKED)])  # there are defaults; the server may not read them
    values = {"policy": "images:\n  resolve: false\n", "clusterReads": {"limitRanges": False, "pullSecrets": False, "owners": False},
              "server": {"extraEnv": [{"name": "ADMISSION_LIMITRANGE_READS", "value": "true"}]}}
    yield from installed(control_plane, tmp_path, values)


def test_a_limitrange_read_that_rbac_forbids_counts_no_defaults_and_says_so(
        control_plane: ControlPlane, without_rbac: Release) -> None:
    assert not without_rbac.rendered.has("ClusterRole")
    run = control_plane.apply([no_limits(compliant_deployment("forbidden", namespace=LOCKED))], check=False)
    assert run.returncode == 1 and "[resource-limits]" in run.stderr
    assert "LimitRange could not be read (403 Forbidden), so no defaults were counted" in run.stderr
