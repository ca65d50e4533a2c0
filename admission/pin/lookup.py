"""Digests for `pin`, through the registry client, gates, credentials and caches that `check --resolve-images` uses.

- A tag's digest is what a HEAD of the tag answers: an index's own digest for a multi-platform image, so a pinned
  reference still pulls on every platform. One HEAD per tag (plus the registry's ping and token, once), and none
  while the tag cache (memory, and on disk unless --no-cache) holds a fresh answer (`images.tag_ttl`).
- `--platform` asks for one platform's manifest instead: the image config lookup of `check`, which walks the index
  (and is cached by digest like `check`'s).
- Drift: what a pinned tag points at now, asked of the registry for every tag (the tag cache is bypassed: a pin run
  a minute earlier filled it, and a re-push since must still show). A pin to one platform's manifest is not drift while the tag's index still
  lists that manifest (one GET of the index, only when the digests differ).
Failures are answers too ("<reason>: <message>"), never exceptions: what cannot be resolved is left as it is.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Sequence
from dataclasses import dataclass, replace

from admission.errors import RegistryError
from admission import reference
from admission.images.settings import ImagesSettings

__all__ = ["Drift", "Found", "lookup"]

# How a failure's reason reads in a listing; the others (auth, timeout, error, too-large, ...) read as they are.
_REASON_WORDS = {"blocked": "refused", "not-found": "not found"}


# A registry that says a tag or platform does not exist has answered; refusals by the gates, DNS and connection
# failures, timeouts and auth have not (they are about the run's network, policy or credentials, not the reference).
_ANSWERS = frozenset({"not-found"})


@dataclass(frozen=True, slots=True)
class Found:
    """The digest to pin a reference to, or why there is none."""

    digest: str | None
    error: str | None = None  # "<reason>: <message>"
    answered: bool = True  # False: no registry answer at all (refused, unreachable, timeout, auth)


@dataclass(frozen=True, slots=True)
class Drift:
    """What a pinned reference's tag points at now. `moved` False: no drift (`note` says why when digests differ)."""

    current: str | None
    moved: bool
    note: str = ""
    error: str | None = None
    answered: bool = True  # as for Found


def _error_text(exc: BaseException) -> str:
    if isinstance(exc, RegistryError):
        return f"{_REASON_WORDS.get(exc.reason, exc.reason)}: {exc}"
    return f"error: {type(exc).__name__}: {exc}" if str(exc) else f"error: {type(exc).__name__}"


def _answered(exc: BaseException) -> bool:
    return isinstance(exc, RegistryError) and exc.reason in _ANSWERS


def lookup(*, wanted: Sequence[str], pinned: Sequence[str], settings: ImagesSettings, platform: str | None,
           cache_dir: str | None, no_cache: bool, registry_config: str | None,
           deadline_s: float = 60.0) -> tuple[dict[str, Found], dict[str, Drift]]:
    """Digests for the references in `wanted` (as written, without a digest) and the drift of those in `pinned`
    (as written, `name:tag@digest`), all concurrently within `deadline_s`. InputError for an unreadable
    registry config (the caller's input), nothing else raises."""
    from admission.images.cache import ImageResolver
    from admission.images.enrich import with_resolver

    chosen = settings if platform is None else replace(settings, platform=platform)

    async def run(resolver: ImageResolver) -> tuple[dict[str, Found], dict[str, Drift]]:
        deadline = time.monotonic() + deadline_s

        async def digest_of(image: str, *, fresh: bool = False) -> str:
            if platform is None:
                return await resolver.digest_for(image, deadline=deadline, fresh=fresh)
            config = await resolver.config_for(image, deadline=deadline, settings=chosen, fresh=fresh)
            _same_platform(config.os, config.architecture, platform, image)
            if config.digest is None:  # pragma: no cover - a registry config always has its manifest digest
                raise RegistryError(f"{image}: no manifest digest", reason="error")
            return config.digest

        async def find(image: str) -> Found:
            try:
                return Found(await digest_of(image))
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # noqa: BLE001 - every failure is an answer, listed with its reason
                return Found(None, _error_text(exc), answered=_answered(exc))

        async def drift(written: str) -> Drift:
            ref = reference.parse_normalized_named(written)
            tagged = str(reference.Reference(domain=ref.domain, path=ref.path, tag=ref.tag))
            try:
                current = await digest_of(tagged, fresh=True)  # what the registry says now, not the tag cache
                if current == ref.digest:
                    return Drift(current, moved=False)
                if platform is None:
                    entries = await resolver.client.index_manifests(  # type: ignore[attr-defined]
                        reference.trim_named(ref), current, deadline=deadline)
                    platforms = [p for d, p in entries if d == ref.digest]
                    if platforms:
                        return Drift(current, moved=False,
                                     note=f"pinned to the {platforms[0] or 'platform'} manifest of the tag's index")
                return Drift(current, moved=True)
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # noqa: BLE001 - as in find
                return Drift(None, moved=False, error=_error_text(exc), answered=_answered(exc))

        found_tasks = {image: asyncio.ensure_future(find(image)) for image in dict.fromkeys(wanted)}
        drift_tasks = {written: asyncio.ensure_future(drift(written)) for written in dict.fromkeys(pinned)}
        everything = [*found_tasks.values(), *drift_tasks.values()]
        if everything:
            _done, pending = await asyncio.wait(everything, timeout=max(0.0, deadline - time.monotonic()))
            for task in pending:
                task.cancel()
            await asyncio.gather(*pending, return_exceptions=True)
        late = f"timeout: not resolved within {deadline_s:g} s"
        return ({k: t.result() if not t.cancelled() else Found(None, late, answered=False)
                 for k, t in found_tasks.items()},
                {k: t.result() if not t.cancelled() else Drift(None, moved=False, error=late, answered=False)
                 for k, t in drift_tasks.items()})

    return with_resolver(run, settings=settings, cache_dir=cache_dir, no_cache=no_cache,
                         registry_config=registry_config)


def _same_platform(os_name: str, architecture: str, platform: str, image: str) -> None:
    """A single-platform image has no index to pick from: its own config must be the platform asked for."""
    want = platform.lower().split("/")
    if os_name.lower() != want[0] or (len(want) > 1 and architecture and architecture.lower() != want[1]):
        raise RegistryError(f"{image} has no image for {platform} (it is {os_name}/{architecture})", reason="not-found")
