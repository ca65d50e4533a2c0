"""Attach image configs to containers (architecture §1, §4 image-config-unavailable). Never raises: a config that
could not be had becomes `image_config_error` / `base_config_error` = "<reason>: <message>", and the rules
report it under `images.on_error`.

What is resolved:
- a container's `image`, for Kubernetes workloads and for compose services whose image user is not known
  from a readable build Dockerfile (`image_user is None`);
- `inherits_user_from`, for containers whose build Dockerfile (or a Dockerfile object) sets no USER, because
  then the base image's config gives the user; not when compose `user:` already decides it. A Dockerfile's
  other base images are not resolved: only the user is read from them.
Image-source workloads (archives) already carry their config and are left alone.
_DaemonExecutor is hand-written because concurrent.futures joins its workers at exit, which a stuck getaddrinfo outlasts.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import threading
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import replace
from typing import TYPE_CHECKING, Any, TypeVar

from admission.errors import RegistryError
from admission.images.settings import ImagesSettings, VerifyEntry, entry_for
from admission.model import Container, ImageConfig, Workload, signed_references

if TYPE_CHECKING:
    from admission.images.cache import ImageResolver
    from admission.images.verify.remote import Checks

__all__ = ["enrich", "failure_reason", "offline", "resolve_sync", "with_resolver"]

DEADLINE_MESSAGE = "timeout: not resolved within the deadline"
T = TypeVar("T")
_DNS = ("cannot resolve ", "resolves to no address", ": resolving ")


def failure_reason(error: str) -> str:
    """The precise reason of an `image_config_error` ("<reason>: <message>"), for the audit line and metrics:
    timeout, dns, connection, not-found, auth, address-guard (a private or special address refused), not-allowed
    (images.restrict_to_allowed), blocked (another guard: a redirect or realm refused), too-large,
    digest-mismatch, error. The registry client's own reasons are coarser (DNS failures are "error", both
    guards are "blocked"), so the message decides within them."""
    reason, _, message = error.partition(": ")
    if any(marker in message for marker in _DNS):
        return "dns"
    if reason == "blocked":
        if "images.restrict_to_allowed is on" in message:
            return "not-allowed"
        if "is not in images.allowed_registries" in message:
            return "address-guard"
        return "blocked"
    if reason == "error" and ": connection failed (" in message:
        return "connection"
    if reason in ("timeout", "not-found", "auth", "too-large", "digest-mismatch"):
        return reason
    return "error"


def deadline_missed(error: str) -> bool:
    """A lookup cut off by the request's deadline (not a registry's own timeout answer)."""
    return error.startswith("timeout: ") and "deadline" in error


def _wants_image(workload: Workload, container: Container) -> bool:
    if container.image is None or not container.image.value:
        return False
    return workload.source == "kubernetes" or (workload.source == "compose" and container.image_user is None)


def _wants_base(container: Container) -> bool:
    return (container.inherits_user_from is not None and bool(container.inherits_user_from.value)
            and container.image_user is not None and container.image_user.value == ""
            and (container.user is None or container.user.value == ""))


def _error_text(exc: BaseException) -> str:
    if isinstance(exc, RegistryError):
        return f"{exc.reason}: {exc}"
    return f"error: {type(exc).__name__}: {exc}" if str(exc) else f"error: {type(exc).__name__}"


async def _one(resolver: ImageResolver, image: str, *, deadline: float, cred_key: str,
               settings: ImagesSettings | None) -> ImageConfig | str:
    try:
        return await resolver.config_for(image, deadline=deadline, cred_key=cred_key, settings=settings)
    except asyncio.CancelledError:
        raise
    except Exception as exc:  # noqa: BLE001 - the contract: every failure becomes a recorded reason
        return _error_text(exc)


async def enrich(workloads: Sequence[Workload], resolver: ImageResolver, *, deadline: float,
                 cred_key: str = "", settings: ImagesSettings | None = None) -> list[Workload]:
    """The workloads with image configs (or the reasons they are missing) attached, and the signature checks that
    `images.verify` asks for. `deadline`: time.monotonic(). `settings`: the `images` settings of the policy in force,
    so one resolver outlives policy reloads (default: the resolver's own).

    Identical references are looked up once, all of them concurrently; what is not done by the deadline
    gets "timeout: not resolved within the deadline". An image's signatures are looked up after its config, so the
    tag is asked once.
    """
    chosen = resolver.settings if settings is None else settings
    images: set[str] = set()
    signed: dict[str, VerifyEntry] = {}
    for workload in workloads:
        for container in workload.containers:
            if _wants_image(workload, container):
                images.add(container.image.value)  # type: ignore[union-attr]
            if _wants_base(container):
                images.add(container.inherits_user_from.value)  # type: ignore[union-attr]
            # An archive's image is verified by what the archive carries (verify/offline.py), never fetched.
            for ref in signed_references(workload, container) if workload.source != "image" else ():
                entry = entry_for(chosen.verify, ref.value)
                if entry is not None:
                    signed[ref.value] = entry
    if not images and not signed:
        return list(workloads)
    results: dict[str, ImageConfig | str] = {}
    checks: dict[str, Checks] = {}
    try:
        tasks = {image: asyncio.ensure_future(_one(resolver, image, deadline=deadline, cred_key=cred_key,
                                                   settings=settings))
                 for image in sorted(images)}
        verifying = {image: asyncio.ensure_future(verify_reference(resolver, image, entry, tasks.get(image),
                                                                   deadline=deadline, cred_key=cred_key, settings=chosen))
                     for image, entry in sorted(signed.items())}
        everything = [*tasks.values(), *verifying.values()]
        done, pending = await asyncio.wait(everything, timeout=max(0.0, deadline - time.monotonic()))
        for task in pending:
            task.cancel()
        if pending:
            await asyncio.gather(*pending, return_exceptions=True)
        for image, task in tasks.items():
            if task in done and not task.cancelled():
                exc = task.exception()
                results[image] = _error_text(exc) if exc is not None else task.result()
            else:
                results[image] = DEADLINE_MESSAGE
        for image, vtask in verifying.items():
            if vtask not in done or vtask.cancelled():
                checks[image] = _unavailable(image, signed[image], DEADLINE_MESSAGE)
            elif vtask.exception() is not None:
                checks[image] = _unavailable(image, signed[image], _error_text(vtask.exception()))  # type: ignore[arg-type]
            else:
                checks[image] = vtask.result()
    except asyncio.CancelledError:
        raise
    except Exception as exc:  # noqa: BLE001 - never raise: whatever went wrong is recorded on every container
        text = _error_text(exc)
        results = {image: results.get(image, text) for image in images}
        checks = {image: checks.get(image) or _unavailable(image, signed[image], text) for image in signed}
    return [_attach(workload, results, checks) for workload in workloads]


def _unavailable(image: str, entry: VerifyEntry, error: str) -> Checks:
    from admission.images.verify.remote import Checks, attestation_unavailable, unavailable

    return Checks(unavailable(image, error) if entry.signature != "off" else None,
                  attestation_unavailable(image, error) if entry.provenance != "off" else None)


async def verify_reference(resolver: ImageResolver, image: str, entry: VerifyEntry,
                           config: asyncio.Future[Any] | None, *, deadline: float, settings: ImagesSettings,
                           cred_key: str = "") -> Checks:
    """What `entry` asks of `image` (its signature, its provenance), after the lookup of its config when one runs (so
    its tag is asked once). Never raises, as the Verifier: the webhook, `check` and the audit all verify this way."""
    from admission.images.verify.remote import Verifier

    if config is not None:
        await asyncio.wait([config])  # its outcome is the config's business; the tag is cached by now
    return await Verifier(resolver).verify(image, entry, deadline=deadline, cred_key=cred_key, settings=settings)


def _attach(workload: Workload, results: dict[str, ImageConfig | str],
            checks: dict[str, Checks] | None = None) -> Workload:
    changed = False
    containers = []
    for container in workload.containers:
        updates: dict[str, Any] = {}
        if _wants_image(workload, container):
            found = results[container.image.value]  # type: ignore[union-attr]
            updates["image_config" if isinstance(found, ImageConfig) else "image_config_error"] = found
        if _wants_base(container):
            found = results[container.inherits_user_from.value]  # type: ignore[union-attr]
            updates["base_config" if isinstance(found, ImageConfig) else "base_config_error"] = found
        if checks and workload.source != "image":
            mine = [checks[r.value] for r in signed_references(workload, container) if r.value in checks]
            signatures = tuple(dict.fromkeys(c.signature for c in mine if c.signature is not None))
            attestations = tuple(dict.fromkeys(c.attestation for c in mine if c.attestation is not None))
            if signatures:
                updates["signatures"] = signatures
            if attestations:
                updates["attestations"] = attestations
        if updates:
            changed = True
            container = replace(container, **updates)
        containers.append(container)
    return replace(workload, containers=tuple(containers)) if changed else workload


def offline(workloads: Sequence[Workload]) -> list[Workload]:
    """--offline, or resolution off: the workloads unchanged, so image-config-unavailable reports nothing."""
    return list(workloads)


def resolve_sync(workloads: Sequence[Workload], *, settings: ImagesSettings, cache_dir: str | None, no_cache: bool,
                 registry_config: str | None, deadline_s: float = 30.0) -> list[Workload]:
    """The CLI's entry: enrich within `deadline_s` seconds through `with_resolver`.

    Registry failures never raise; an unreadable registry config is the caller's input error and does (InputError).
    """
    return with_resolver(lambda resolver: enrich(workloads, resolver, deadline=time.monotonic() + deadline_s),
                         settings=settings, cache_dir=cache_dir, no_cache=no_cache, registry_config=registry_config)


def with_resolver(work: Callable[[ImageResolver], Awaitable[T]], *, settings: ImagesSettings, cache_dir: str | None,
                  no_cache: bool, registry_config: str | None) -> T:
    """Run `work` with a registry client and a resolver as the CLI builds them (the on-disk cache unless `no_cache`),
    then close them: `check --resolve-images` and `pin` share the client, gates, credentials and caches this way.

    Credentials come from `registry_config`, else from $DOCKER_CONFIG/config.json or ~/.docker/config.json
    when present, as the docker CLI reads them; an unreadable one is an InputError.
    """
    # Imported here: the CLI loads httpx (via the registry package) only when it resolves images.
    from admission.images.cache import DiskCache, ImageResolver, default_cache_dir
    from admission.images.credentials import Credentials
    from admission.images.registry import RegistryClient

    credentials = Credentials.load(registry_config)
    disk = None if no_cache else DiskCache(cache_dir if cache_dir else default_cache_dir())

    async def run() -> T:
        client = RegistryClient(settings, credentials=credentials)
        resolver = ImageResolver(client, settings=settings, disk=disk)
        try:
            return await work(resolver)
        finally:
            await resolver.cancel_pending()
            await client.aclose()

    # asyncio.run would wait for the default executor's threads at the end; a getaddrinfo that the deadline
    # gave up on can block for the resolver's whole timeout, so those threads are left behind instead.
    with asyncio.Runner() as runner:
        runner.get_loop().set_default_executor(_DaemonExecutor())
        return runner.run(run())


class _DaemonExecutor(concurrent.futures.ThreadPoolExecutor):
    """The event loop's executor for the CLI: one daemon thread per call, and shutdown never waits for them.

    What runs here is getaddrinfo (cannot be interrupted) and layer scans (they stop at the deadline themselves);
    the CLI's deadline is the promise, so nothing left over may hold up the loop's close or the process's exit.
    A ThreadPoolExecutor only because loop.set_default_executor accepts nothing else; its pool is never used.
    """

    def submit(self, fn: Callable[..., Any], /, *args: Any, **kwargs: Any) -> concurrent.futures.Future[Any]:
        future: concurrent.futures.Future[Any] = concurrent.futures.Future()

        def work() -> None:
            if not future.set_running_or_notify_cancel():
                return
            try:
                result = fn(*args, **kwargs)
            except BaseException as exc:  # noqa: BLE001 - handed to whoever awaits the future, as executors do
                future.set_exception(exc)
            else:
                future.set_result(result)

        threading.Thread(target=work, name="admission-resolve", daemon=True).start()
        return future

    def shutdown(self, wait: bool = True, *, cancel_futures: bool = False) -> None:
        pass  # never waits: see the class docstring
