"""The rules, one module per theme. Importing this package registers them in the catalogue."""

from admission.policy.rules import hostports, imageconfig, images, provenance, resources, schema, users  # noqa: F401
from admission.policy.rules import context, size  # noqa: F401
from admission.policy.rules import health, privilege  # noqa: F401
from admission.policy.rules import attestation, signature  # noqa: F401
from admission.policy.rules import secrets  # noqa: F401
from admission.policy.rules import accounts  # noqa: F401
from admission.policy.rules import filesystem  # noqa: F401

# Catalogue order: the order of architecture §4's table.
ORDER = ("run-as-non-root", "image-tag-pinned", "resource-limits", "no-host-port", "numeric-user", "compose-schema",
         "image-config-unavailable", "image-signature", "image-attestation", "image-provenance", "least-privilege",
         "read-only-root-filesystem", "service-account-token", "healthcheck", "no-secret-in-env", "image-size",
         "build-context")
