"""Signatures (cosign legacy and v3 bundles) of images: read (cosign.py), judged (decide.py), found in a registry
(remote.py) or in an archive (offline.py). The rules read the SignatureCheck it makes; nothing here is a trust root."""
