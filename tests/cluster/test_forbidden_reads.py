"""LimitRange and ServiceAccount reads without the chart's cluster-wide grant, against the real API server: the server's reads are turned on
(extraEnv) while the chart's values grant none. The cluster-wide list and watch are then forbidden, so the server
reads per namespace: where a namespace's own Role grants `list`, its defaults count; where RBAC forbids the read, no
defaults are counted and the message says so (architecture §3). Its own module, so no other release's ClusterRole is bound
to the same ServiceAccount meanwhile."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.chart.conftest import NAMESPACE
from tests.cluster.controlplane import ControlPlane
from tests.cluster.release import Release, installed
from tests.cluster.test_cluster_reads import limit_range, namespaces, no_limits
from tests.cluster.test_webhook_in_cluster import compliant_deployment

pytestmark = pytest.mark.controlplane

LOCKED, GRANTED = "reads-locked", "reads-granted"


@pytest.fixture(scope="module")
def without_rbac(control_plane: ControlPlane, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Release]:
    namespaces(control_plane, LOCKED, GRANTED)
    control_plane.apply([limit_range(LOCKED), limit_range(GRANTED)])  # both have defaults; one may not be read
    # service-account-token on for the Deployment of the ServiceAccount test alone (the others are exempted)
    policy = ("images:\n  resolve: false\nrules:\n  service-account-token: deny\nexemptions:\n"
              "  - {rule: service-account-token, name: '[fg]*', reason: the LimitRange tests}\n")
    values = {"policy": policy,
              "clusterReads": {"limitRanges": False, "pullSecrets": False, "owners": False, "serviceAccounts": False},
              "server": {"extraEnv": [{"name": "ADMISSION_LIMITRANGE_READS", "value": "true"},
                                      {"name": "ADMISSION_SERVICE_ACCOUNT_READS", "value": "true"}]}}
    install = installed(control_plane, tmp_path_factory.mktemp("no-rbac"), values)
    release = next(install)
    account = release.rendered.one("ServiceAccount")["metadata"]["name"]
    # A namespace owner may grant the read in their own namespace: list only, no cluster-wide watch.
    control_plane.apply([
        {"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "Role",
         "metadata": {"name": "admission-limitranges", "namespace": GRANTED},
         "rules": [{"apiGroups": [""], "resources": ["limitranges"], "verbs": ["list"]}]},
        {"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "RoleBinding",
         "metadata": {"name": "admission-limitranges", "namespace": GRANTED},
         "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": "admission-limitranges"},
         "subjects": [{"kind": "ServiceAccount", "name": account, "namespace": NAMESPACE}]}])
    yield release
    next(install, None)  # uninstall


def test_a_limitrange_read_that_rbac_forbids_counts_no_defaults_and_says_so(
        control_plane: ControlPlane, without_rbac: Release) -> None:
    assert not without_rbac.rendered.has("ClusterRole")
    run = control_plane.apply([no_limits(compliant_deployment("forbidden", namespace=LOCKED))], check=False)
    assert run.returncode == 1 and "[resource-limits]" in run.stderr
    assert "LimitRange could not be read (403 Forbidden), so no defaults were counted" in run.stderr


def test_a_namespace_role_that_grants_list_lets_its_defaults_count(
        control_plane: ControlPlane, without_rbac: Release) -> None:
    run = control_plane.apply([no_limits(compliant_deployment("granted", namespace=GRANTED))], check=False)
    assert run.returncode == 0, run.stderr
    log = without_rbac.pod.log()
    assert "LimitRanges cannot be watched cluster-wide (403 Forbidden); reading them per namespace" in log


def test_a_service_account_read_that_rbac_forbids_is_said_in_the_finding(
        control_plane: ControlPlane, without_rbac: Release) -> None:
    """service-account-token (issue 27): the template leaves its token to its ServiceAccount, which may not be read."""
    run = control_plane.apply([compliant_deployment("token-unread", namespace=LOCKED)], check=False)
    assert run.returncode == 1 and "[service-account-token]" in run.stderr
    assert "unless that account turns it off; ServiceAccount 'default' could not be read (403 Forbidden)" in run.stderr
