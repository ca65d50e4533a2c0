"""Small helpers the rules share: how to name a container in a message, and a finding key for an image."""

from __future__ import annotations

from admission import reference
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


def repository(image: str) -> str:
    """An image reference without tag or digest, as `docker` names it: part of finding keys, which must not move
    when a tag is bumped or an image rebuilt. An unparseable reference is its own key."""
    try:
        return reference.parse_normalized_named(image).familiar_name
    except reference.ReferenceError:
        return image
