"""Async OCI distribution client, as a package laid out the way go-containerregistry lays out its own:

- `authn`: the /v2/ challenge, Basic credentials and Bearer tokens;
- `transport`: the guarded transport (netguard's address check, redirects, one retry, capped bodies);
- `remote`: the client callers use, and the manifest walk (tag -> digest, index -> platform -> config -> layers);
- `manifest` (pure document reading: media types, digests, the platform pick, the image config) and `layerfs`
  (one file out of the layers) beside them.

Importers use the names below; the modules are the package's own business.
"""

from admission.images.registry.authn import parse_challenge
from admission.images.registry.manifest import ACCEPT_MANIFESTS, CONFIG_CAP, MANIFEST_CAP, parse_config, pick_platform
from admission.images.registry.remote import Fetched, RegistryClient, registry_key
from admission.images.registry.transport import Timeouts

__all__ = [
    "ACCEPT_MANIFESTS",
    "CONFIG_CAP",
    "MANIFEST_CAP",
    "Fetched",
    "RegistryClient",
    "Timeouts",
    "parse_challenge",
    "parse_config",
    "pick_platform",
    "registry_key",
]
