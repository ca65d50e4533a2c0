"""Small helpers the rules share: how to name a container in a message."""

from __future__ import annotations

from admission.model import Container, Workload

_KIND_WORDS = {"init": "init container", "sidecar": "sidecar container", "ephemeral": "ephemeral container",
               "container": "container"}


def subject(workload: Workload, container: Container) -> str:
    """`service 'web'`, `container 'app'`, `init container 'setup'`, `Dockerfile stage 'runtime'`, `image 'x'`."""
    if workload.source == "compose":
        return f"service '{workload.name}'"
    if workload.source == "dockerfile":
        return f"the final stage ('{container.name}')"
    if workload.source == "image":
        return f"image '{workload.name}'"
    return f"{_KIND_WORDS.get(container.kind, 'container')} '{container.name}'"


def container_field(workload: Workload, container: Container) -> str | None:
    """The value for a finding's `container`: compose gives the service name; images and Dockerfiles none."""
    if workload.source in ("dockerfile", "image"):
        return None
    return container.name
