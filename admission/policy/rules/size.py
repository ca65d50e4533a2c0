"""Image size: image-size (architecture §4), the guide's "small" principle.

The layer sizes come from the manifest (registry images, oci-archives, OCI layouts: compressed, what a pull
transfers) or from a `docker save` archive's layer members (uncompressed). History entries map to layers as the
image spec says: in order, skipping `empty_layer` entries, which made no layer.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from typing import Any

from admission.findings import Violation
from admission.model import Container, HistoryEntry, ImageConfig, Workload
from admission.policy.rule import Param, rule
from admission.policy.rules.common import container_field, subject

MIB = 1024 * 1024
LARGEST = 3
STEP_CHARS = 100


def _mib(n: int) -> str:
    if n >= MIB:
        return f"{n / MIB:.1f} MiB"
    return f"{n / 1024:.1f} KiB" if n >= 1024 else f"{n} B"


def layer_steps(config: ImageConfig) -> list[tuple[int, HistoryEntry] | None]:
    """For each layer, the history entry that made it and its index, as the image spec maps them: the history
    entries without `empty_layer`, in order. None for every layer when the counts disagree (no mapping is sound)."""
    sizes = config.layer_sizes or ()
    made = [(i, h) for i, h in enumerate(config.history) if not h.empty_layer]
    if len(made) != len(sizes):
        return [None] * len(sizes)
    return list(made)  # type: ignore[arg-type]


def _step(entry: HistoryEntry) -> str:
    text = " ".join((entry.created_by or entry.comment).split())
    for prefix in ("/bin/sh -c #(nop) ", "/bin/sh -c "):
        if text.startswith(prefix):
            text = ("" if prefix.endswith("#(nop) ") else "RUN ") + text[len(prefix):]
            break
    text = text.removesuffix(" # buildkit")
    if not text:
        return "no recorded step"
    return text if len(text) <= STEP_CHARS else text[: STEP_CHARS - 1] + "…"


def _check(workload: Workload, container: Container, config: ImageConfig, max_mib: int) -> Iterator[Violation]:
    sizes = config.layer_sizes
    if sizes is None:
        return
    total = sum(sizes)
    if total <= max_mib * MIB:
        return
    steps = layer_steps(config)
    largest = sorted(range(len(sizes)), key=lambda k: (-sizes[k], k))[:LARGEST]
    named = []
    for k in largest:
        made = steps[k]
        how = f": `{_step(made[1])}` (history[{made[0]}])" if made is not None else ""
        named.append(f"layer {k + 1} {_mib(sizes[k])}{how}")
    kind = ("compressed, as a pull transfers them" if config.layers_compressed
            else "uncompressed, as `docker save` stores them")
    mismatch = "" if not sizes or steps[0] is not None else (
        f" (the history names {sum(1 for h in config.history if not h.empty_layer)} layer steps for "
        f"{len(sizes)} layers, so no step can be named)")
    who = subject(workload, container)
    if workload.source != "image":
        who = f"{who} (image {config.reference})"
    origin = container.image.origin if workload.source != "image" and container.image is not None else container.origin
    yield Violation(
        message=(f"{who} is {_mib(total)} in {len(sizes)} layer{'s' if len(sizes) != 1 else ''} ({kind}), over the "
                 f"{max_mib} MiB limit (max_mib); the largest: {'; '.join(named)}{mismatch}"),
        remediation=("use a multi-stage build: compilers, package caches and sources stay in a builder stage and "
                     "`COPY --from=builder` takes only what runs; start FROM a slim or distroless base "
                     "(`python:3.12-slim`, `gcr.io/distroless/...`); remove package caches in the RUN that installs "
                     "(`apt-get install --no-install-recommends ... && rm -rf /var/lib/apt/lists/*`)"),
        origin=origin, value=_mib(total), container=container_field(workload, container), key="image size")


@rule("image-size", severity="warn", summary="Images are small: their layers add up to at most `max_mib` MiB.",
      applies={"kubernetes": "resolved images", "compose": "resolved images", "image": "layer sizes from the manifest"},
      params=(Param("max_mib", int, 300, "the most the layers may add up to, in MiB (compressed for registries "
                                         "and OCI, uncompressed for docker save)"),))
def image_size(workload: Workload, params: Mapping[str, Any]) -> Iterator[Violation]:
    """Warn when an image's layers add up to more than `max_mib` MiB, naming the three largest and the steps that made them.

    Why:
        Every node pulls the whole image before the container starts: a large image slows deployments, scaling
        and recovery, costs registry storage and transfer, and usually carries build tools and caches that widen
        the attack surface. The sizes are the manifest's: for registry images (when resolved), oci-archives and
        OCI layouts they are compressed, which is what a pull transfers; a `docker save` archive stores its layers
        uncompressed, so there the total is the uncompressed one, and the message says which. The three largest
        layers are named with the history line that made each, mapping history entries to layers as the image
        spec says (entries marked `empty_layer`, such as ENV or CMD, made no layer). Only images whose manifest
        is known are checked: resolved images and archives.

    Fix:
        Use a multi-stage build: compile and install in a builder stage and `COPY --from=builder` only what runs.
        Start from a slim or distroless base. Clean package caches in the same RUN that installs
        (`--no-install-recommends`, `rm -rf /var/lib/apt/lists/*`, `pip install --no-cache-dir`). Raise `max_mib`
        for images that are large by nature (CUDA, browsers).

    Example:
        ```text
        # warns with max_mib: 300
        image 'registry.example/app:1.4' is 812.4 MiB in 9 layers (compressed, as a pull transfers them), over
        the 300 MiB limit (max_mib); the largest: layer 5 512.0 MiB: `RUN apt-get install -y build-essential`
        (history[7]); ...
        # passes: the same app built in two stages FROM python:3.12-slim, 64 MiB
        ```
    """
    max_mib = int(params.get("max_mib", 300))
    for container in workload.containers:
        if container.image_config is not None:
            yield from _check(workload, container, container.image_config, max_mib)
