"""The control plane for the whole session, and the chart installed into it with `admission-cli serve` behind it.

The binaries come from `make k8s-bin` (tests/cluster/build.sh). When they could not be built the tests skip with the
build's reason, except under CI=true, where the same condition fails them: CI must run them.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.cluster.controlplane import ControlPlane, binaries_dir

_PLANE_KEY = pytest.StashKey[ControlPlane]()


@pytest.fixture(scope="session")
def control_plane(tmp_path_factory: pytest.TempPathFactory, request: pytest.FixtureRequest) -> Iterator[ControlPlane]:
    folder, why = binaries_dir()
    if folder is None:
        if os.environ.get("CI") == "true":
            pytest.fail(f"CI=true and the control plane is missing: {why}", pytrace=False)
        pytest.skip(why)
    plane = ControlPlane(bin=folder, root=tmp_path_factory.mktemp("control-plane"))
    request.config.stash[_PLANE_KEY] = plane
    try:
        plane.start()
        yield plane
    finally:
        plane.stop()


@pytest.fixture(scope="session")
def controllers(control_plane: ControlPlane) -> ControlPlane:
    """The control plane with kube-controller-manager running (ReplicaSets, Pods, ServiceAccounts, tokens)."""
    control_plane.start_controller_manager()
    return control_plane


@pytest.fixture(autouse=True)
def _keep_server_log(request: pytest.FixtureRequest) -> None:
    """A failing test's report carries the server's log too (below), in every module whose tests use `release`."""
    if "release" in request.fixturenames:
        pod = request.getfixturevalue("release").pod
        request.node._admission_logs = [pod.root / "stderr.log", pod.root / "stdout.log"]


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Iterator[None]:
    """A failing control-plane test carries the tail of every component's log, and where the whole logs are kept."""
    report = yield
    plane = item.config.stash.get(_PLANE_KEY, None)
    if report.failed and plane is not None and "control_plane" in getattr(item, "fixturenames", ()):
        report.sections.append(("control plane logs", plane.logs()))
        for extra in getattr(item, "_admission_logs", ()):
            path = Path(extra)
            if path.exists():
                report.sections.append((f"log {path}", "\n".join(path.read_text(errors="replace").splitlines()[-60:])))
    return report
