"""image-config-unavailable: resolution was on and an image config could not be had (architecture §4)."""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from typing import Any

from admission.findings import Violation
from admission.model import Workload
from admission.policy.rule import rule
from admission.policy.rules.common import container_field, repository, subject

_FIXES = {
    "blocked": "list the registry in images.allowed_registries if it is yours (a private address is refused otherwise), "
               "or use an image from a registry the policy allows",
    "timeout": "check that the registry answers; the webhook waits at most its deadline (ADMISSION_DEADLINE)",
    "not-found": "check the image reference: the registry has no such repository, tag or digest",
    "auth": "give credentials for the registry (--registry-config, or imagePullSecrets when pull secrets are read)",
}
_DEFAULT_FIX = "check the image reference and that the registry answers; the rules that need the config treat it as unknown"


def _fix(error: str) -> str:
    return _FIXES.get(error.split(":", 1)[0].strip(), _DEFAULT_FIX)


@rule("image-config-unavailable", severity="warn", summary="An image config could not be had while resolving images.",
      applies={"kubernetes": "a lookup that failed or was refused", "compose": "same",
               "dockerfile": "base images, when resolved"}, severity_from="images.on_error")
def image_config_unavailable(workload: Workload, params: Mapping[str, Any]) -> Iterator[Violation]:
    """Report every image whose config was asked for and could not be had, with the reason.

    Why:
        The user an image runs as, and how it was built, live in its config. When the lookup fails (the registry
        is down, times out, needs credentials, has no such tag) or is refused (the SSRF guard, or
        `images.restrict_to_allowed`), the rules that need the config can only treat it as unknown. A silent pass
        would let through exactly the images nobody can inspect, so this is always visible. Its severity is
        `images.on_error` (warn by default, deny in strict.yaml) and cannot be set under `rules:`.
        Runs without image resolution report nothing here.

    Fix:
        Follow the reason: list your own registry in `images.allowed_registries`, give credentials
        (`--registry-config`, pull secrets), or fix the reference. Set `images.on_error: deny` to refuse what
        cannot be inspected.

    Example:
        ```text
        image-config-unavailable  Pod web/app  image config of 'registry.internal:5000/app:1.2' unavailable:
          blocked: 10.0.0.12 is private and the registry is not in images.allowed_registries
        ```
    """
    for container in workload.containers:
        name = container_field(workload, container)
        if container.image_config_error and container.image is not None:
            yield Violation(
                message=(f"{subject(workload, container)}: image config of '{container.image.value}' is unavailable: "
                         f"{container.image_config_error}"),
                remediation=_fix(container.image_config_error), origin=container.image.origin,
                value=container.image.value, container=name, key="image config")
        if container.base_config_error and container.inherits_user_from is not None:
            base = container.inherits_user_from
            yield Violation(
                message=(f"{subject(workload, container)}: config of the base image '{base.value}' is unavailable, "
                         f"so the user it runs as is unknown: {container.base_config_error}"),
                remediation=_fix(container.base_config_error), origin=base.origin, value=base.value, container=name,
                key=f"base image config {repository(base.value)}")
