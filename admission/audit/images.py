"""Image configs for the audit: what runs, looked up once per reference for the whole run.

A container is judged by the config of the image it runs: the manifest digest its Pods' statuses report
(inventory.running_digests), else its spec's reference. The lookups of one page run concurrently through the same
resolver and caches as `check --resolve-images` (images/cache.py; the disk cache unless `--no-cache`); the answers
(configs or the reasons they are missing) are kept by reference for the rest of the run, so each digest costs one
lookup however many objects run it.

When the Pods of one owner run more than one digest of a container (a tag that moved between pulls), the owner is
judged once per digest and a finding of any of them counts.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Mapping, Sequence
from dataclasses import replace
from typing import TYPE_CHECKING, Any

from admission.errors import RegistryError
from admission.images.settings import ImagesSettings, entry_for
from admission.model import ImageConfig, Workload

if TYPE_CHECKING:
    from admission.images.verify.remote import Checks

__all__ = ["Images", "lookup_references"]


def lookup_references(workload: Workload, running: Mapping[str, Sequence[str]]) -> list[str]:
    """Every reference the workload's containers need looked up."""
    out: list[str] = []
    for container in workload.containers:
        if container.image is None or not container.image.value:
            continue
        out.extend(running.get(container.name) or (container.image.value,))
    return out


def variants(workload: Workload, running: Mapping[str, Sequence[str]],
             results: Mapping[str, ImageConfig | str],
             checks: Mapping[str, Checks] | None = None) -> list[Workload]:
    """The workload with each container's config (and signature check) attached: one workload per running digest
    when a container's Pods run several (the n-th variant takes each container's n-th digest, or its last). A check
    made on the running digest is shown under the reference the spec writes, which is what the rule reads."""
    count = max([len(running.get(c.name, ())) for c in workload.containers] + [1])
    out = []
    for n in range(count):
        containers = []
        for container in workload.containers:
            if container.image is None or not container.image.value:
                containers.append(container)
                continue
            refs = running.get(container.name) or (container.image.value,)
            ref = refs[min(n, len(refs) - 1)]
            found = results.get(ref)
            if isinstance(found, ImageConfig):
                container = replace(container, image_config=found)
            elif found is not None:
                container = replace(container, image_config_error=found)
            found_checks = (checks or {}).get(ref)
            if found_checks is not None and found_checks.signature is not None:
                container = replace(container, signatures=(replace(found_checks.signature, image=container.image.value),))
            if found_checks is not None and found_checks.attestation is not None:
                container = replace(container,
                                    attestations=(replace(found_checks.attestation, image=container.image.value),))
            containers.append(container)
        out.append(replace(workload, containers=tuple(containers)))
    return out


def _error_text(exc: BaseException) -> str:
    """As images/enrich.py words a failed lookup: `<reason>: <message>`."""
    if isinstance(exc, RegistryError):
        return f"{exc.reason}: {exc}"
    return f"error: {type(exc).__name__}: {exc}" if str(exc) else f"error: {type(exc).__name__}"


class Images:
    """One registry client and resolver for the run, on an event loop of its own (the audit's listing is synchronous)."""

    def __init__(self, settings: ImagesSettings, *, cache_dir: str | None, no_cache: bool,
                 registry_config: str | None, page_deadline: float = 60.0) -> None:
        from admission.images.cache import DiskCache, ImageResolver, default_cache_dir
        from admission.images.credentials import Credentials
        from admission.images.enrich import _DaemonExecutor
        from admission.images.registry import RegistryClient

        self.settings = settings
        self.page_deadline = page_deadline
        self.results: dict[str, ImageConfig | str] = {}
        self.checks: dict[str, Checks] = {}  # images.verify checks, by the reference that runs
        self.lookups = 0  # references looked up (each once)
        credentials = Credentials.load(registry_config)
        disk = None if no_cache else DiskCache(cache_dir if cache_dir else default_cache_dir())
        self._runner = asyncio.Runner()
        # A getaddrinfo that the deadline gave up on must not hold up the loop's close (see enrich._DaemonExecutor).
        self._runner.get_loop().set_default_executor(_DaemonExecutor())

        async def build() -> tuple[Any, Any]:
            client = RegistryClient(settings, credentials=credentials)
            return client, ImageResolver(client, settings=settings, disk=disk)

        self._client, self.resolver = self._runner.run(build())

    def lookup(self, references: set[str]) -> None:
        """Look up the references not looked up yet in this run, concurrently, within the page deadline."""
        todo = sorted(r for r in references if r not in self.results)
        if not todo:
            return
        self.lookups += len(todo)
        self.results.update(self._runner.run(self._lookup(todo)))

    async def _lookup(self, todo: list[str]) -> dict[str, ImageConfig | str]:
        deadline = time.monotonic() + self.page_deadline
        from admission.images.enrich import verify_reference

        async def one(reference: str) -> ImageConfig | str:
            try:
                found: ImageConfig | str = await self.resolver.config_for(reference, deadline=deadline,
                                                                         settings=self.settings)
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # noqa: BLE001 - every failure is a recorded reason, as in enrich.py
                found = _error_text(exc)
            entry = entry_for(self.settings.verify, reference)
            if entry is not None:  # the same checks as the webhook's, on the digest that runs
                self.checks[reference] = await verify_reference(self.resolver, reference, entry, None,
                                                                deadline=deadline, settings=self.settings)
            return found

        tasks = [asyncio.ensure_future(one(r)) for r in todo]
        done, pending = await asyncio.wait(tasks, timeout=max(0.0, deadline - time.monotonic()))
        for task in pending:
            task.cancel()
        if pending:
            await asyncio.gather(*pending, return_exceptions=True)
        from admission.images.enrich import DEADLINE_MESSAGE

        return {r: (t.result() if t in done and not t.cancelled() else DEADLINE_MESSAGE) for r, t in zip(todo, tasks)}

    def close(self) -> None:
        async def close() -> None:
            await self.resolver.cancel_pending()
            await self._client.aclose()

        try:
            self._runner.run(close())
        finally:
            self._runner.close()
