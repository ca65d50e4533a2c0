"""The audit's client-side rate limit and its reading of Retry-After (the calls themselves are tested against the real
API server in tests/cluster/test_audit_listing.py)."""

from __future__ import annotations

import email.utils
import time

import pytest

from admission.kube.api import Resource, TokenBucket, retry_after


class Clock:
    """Time that passes only when the bucket sleeps: the waits are exact."""

    def __init__(self) -> None:
        self.now = 100.0
        self.slept: list[float] = []

    def __call__(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.slept.append(seconds)
        self.now += seconds


def test_a_burst_goes_at_once_and_then_calls_come_at_qps() -> None:
    clock = Clock()
    bucket = TokenBucket(qps=4, burst=3, clock=clock, sleep=clock.sleep)
    waits = [bucket.take() for _ in range(7)]
    assert waits[:3] == [0, 0, 0]
    assert waits[3:] == pytest.approx([0.25] * 4)
    assert clock.now - 100.0 == pytest.approx(1.0), "4 calls past the burst take 4/qps seconds"


def test_idle_time_refills_the_bucket_up_to_the_burst_only() -> None:
    clock = Clock()
    bucket = TokenBucket(qps=2, burst=2, clock=clock, sleep=clock.sleep)
    bucket.take(), bucket.take()
    clock.now += 60  # a long pause earns no more than the burst
    assert [bucket.take() for _ in range(3)] == pytest.approx([0, 0, 0.5])


@pytest.mark.parametrize(("qps", "burst"), [(0, 1), (-1, 1), (1, 0)])
def test_a_limit_that_would_never_let_a_call_through_is_refused(qps: float, burst: int) -> None:
    with pytest.raises(ValueError):
        TokenBucket(qps=qps, burst=burst)


def test_retry_after_reads_seconds_and_http_dates_within_the_cap() -> None:
    assert retry_after("2", default=1, cap=30) == 2
    assert retry_after("120", default=1, cap=30) == 30
    assert retry_after(None, default=1, cap=30) == 1
    assert retry_after("soon", default=4, cap=30) == 4
    later = email.utils.formatdate(time.time() + 10, usegmt=True)
    assert 8 <= retry_after(later, default=1, cap=30) <= 10
    earlier = email.utils.formatdate(time.time() - 10, usegmt=True)
    assert retry_after(earlier, default=1, cap=30) == 0


def test_resources_have_the_paths_and_names_the_api_server_and_rbac_use() -> None:
    pods = Resource("", "v1", "pods", "Pod")
    deployments = Resource("apps", "v1", "deployments", "Deployment")
    cluster = Resource("wgpolicyk8s.io", "v1alpha2", "clusterpolicyreports", "ClusterPolicyReport", namespaced=False)
    assert pods.path() == "/api/v1/pods" and pods.path("team") == "/api/v1/namespaces/team/pods"
    assert deployments.path("team", "web") == "/apis/apps/v1/namespaces/team/deployments/web"
    assert cluster.path("ignored", "r") == "/apis/wgpolicyk8s.io/v1alpha2/clusterpolicyreports/r"
    assert (pods.name, deployments.name, deployments.api_version) == ("pods", "deployments.apps", "apps/v1")
