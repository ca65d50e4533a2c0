"""Layer sizes from an image manifest (image-size, architecture §4). Pure: shared by the registry client and archives."""

from __future__ import annotations

from typing import Any

# Layer media types whose blobs are compressed (what a pull transfers): Docker's `...tar.gzip` and OCI's `+gzip` /
# `+zstd`, distributable or not. `application/vnd.oci.image.layer.v1.tar` (and its nondistributable twin) is a
# plain tar, whose size is the uncompressed one.
_COMPRESSED_SUFFIXES = ("+gzip", "+zstd", ".tar.gzip", ".tar.zstd")


def manifest_layer_sizes(layers: Any) -> tuple[tuple[int, ...] | None, bool]:
    """(sizes, compressed) of a manifest's `layers` descriptors, bottom layer first.

    Sizes are None when any descriptor lacks a whole, non-negative `size` (the image spec requires one).
    `compressed` is True only when every layer's media type is a compressed one (a missing media type counts
    as compressed: registries always push gzip unless told otherwise).
    """
    if not isinstance(layers, list):
        return None, True
    sizes: list[int] = []
    compressed = True
    for layer in layers:
        if not isinstance(layer, dict):
            return None, True
        size = layer.get("size")
        if not isinstance(size, int) or isinstance(size, bool) or size < 0:
            return None, True
        sizes.append(size)
        media = layer.get("mediaType")
        if isinstance(media, str) and media and not media.endswith(_COMPRESSED_SUFFIXES):
            compressed = False
    return tuple(sizes), compressed
