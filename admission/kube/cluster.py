"""Reads from the cluster (architecture §3), behind a small interface of our own: LimitRange defaults and pull secrets.

`KubeApi` is the only code that talks to the API server (the `kubernetes` client, raw JSON answers, a timeout
from the request's deadline); `ClusterReads` caches what it reads (a TTL per namespace or object) and, when it
may list LimitRanges in every namespace, keeps them current with a watch instead of reading per request.

- **LimitRange defaults** (ADMISSION_LIMITRANGE_READS): the API server's LimitRanger fills Pods' missing limits
  before validating webhooks run, but not pod templates'. So for a Deployment (and the other templates) the
  namespace's `type: Container` defaults are counted as its Pods will get them. A failed read counts no
  defaults, and the resource-limits message says so.
- **Pull secrets** (ADMISSION_PULL_SECRETS): the Pod's `imagePullSecrets` and its ServiceAccount's, as the
  kubelet uses them, so an image is looked up with the credentials its pull would use (then the static
  ADMISSION_DOCKER_CONFIG, like node credentials). Cached image answers are keyed by a hash of the credentials.
- **Owners** (ADMISSION_OWNER_READS): for an object a controller identity creates, each controller
  ownerReference up the chain is read in the object's namespace and its uid compared, so the top owner
  (Deployment, StatefulSet, DaemonSet, CronJob, Job) can lend its exemptions. A uid is no secret: the identity
  check (the policy's `owners.controllers`) is what keeps users from borrowing, the reads keep controllers honest.
  Job and CronJob links are read fresh, and a Job lends its CronJob only while it is that CronJob's jobTemplate
  (kube/jobs.py). A person's manual run of a CronJob asks a SubjectAccessReview (`may`, never cached).
- **ServiceAccounts** (ADMISSION_SERVICE_ACCOUNT_READS): a pod template's ServiceAccount, for its
  `automountServiceAccountToken` when the template does not set its own (service-account-token; a Pod needs no read:
  the ServiceAccount admission plugin's token volume says it). A read that fails is said in the finding.
- With no cluster configuration (no in-cluster service account, no kubeconfig) `connect` returns None and logs
  that cluster reads are off.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import hashlib
import json
import logging
import threading
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from admission.images.credentials import Credentials
from admission.kube.api import automount_setting
from admission.model import OwnerRef
from admission.sources.kubernetes import POD_SPEC_PATHS, controller_of
from admission.kube.jobs import cronjob_ref, template_difference
from admission.kube.limits import LimitDefaults, apply_limit_defaults, defaults_of

__all__ = ["ClusterReads", "KubeApi", "LimitDefaults", "OwnerChain", "PullCredentials", "ReadError",
           "apply_limit_defaults", "connect"]

log = logging.getLogger("admission.webhook")
_MAX_CACHED = 4096
# Owner kinds that are followed: (apiVersion, kind) -> the kubernetes client's API class and read method. An owner
# of any other kind (an operator's custom resource) ends the chain unverified.
OWNER_KINDS: dict[tuple[str, str], tuple[str, str]] = {
    ("apps/v1", "ReplicaSet"): ("AppsV1Api", "read_namespaced_replica_set"),
    ("apps/v1", "Deployment"): ("AppsV1Api", "read_namespaced_deployment"),
    ("apps/v1", "StatefulSet"): ("AppsV1Api", "read_namespaced_stateful_set"),
    ("apps/v1", "DaemonSet"): ("AppsV1Api", "read_namespaced_daemon_set"),
    ("batch/v1", "Job"): ("BatchV1Api", "read_namespaced_job"),
    ("batch/v1", "CronJob"): ("BatchV1Api", "read_namespaced_cron_job"),
    ("v1", "ReplicationController"): ("CoreV1Api", "read_namespaced_replication_controller"),
}
OWNER_DEPTH = 4  # Pod -> ReplicaSet -> Deployment, Pod -> Job -> CronJob: real chains are two links


@dataclass(frozen=True, slots=True)
class PullCredentials:
    """Credentials for one request's lookups (the Pod's and its ServiceAccount's pull secrets), keyed by a hash."""

    key: str = ""
    credentials: Credentials | None = None
    problem: str | None = None  # a read that failed: said in the answer, the lookup goes on without them


@dataclass(frozen=True, slots=True)
class OwnerChain:
    """What an owner chain read back from the API says: `top`, the verified top owner whose exemptions may be lent
    (None: none); `claimed`, the highest owner the chain names, verified or not (whose exemptions were at stake);
    `problem`, why the chain was not verified up to `claimed` (for the audit line)."""

    top: OwnerRef | None = None
    claimed: OwnerRef | None = None
    problem: str = ""


class ReadError(Exception):
    """A read that failed: `status` is the HTTP status (0 without an answer), `reason` the Status reason."""

    def __init__(self, status: int, reason: str, message: str = "") -> None:
        super().__init__(message or reason)
        self.status = status
        self.reason = reason

    def short(self) -> str:
        return f"{self.status} {self.reason}" if self.status else self.reason


class KubeApi:
    """The API calls we make, with the kubernetes client's ApiClient (auth, TLS, proxies as configured)."""

    def __init__(self, api_client: Any) -> None:
        from kubernetes import client

        self.api_client = api_client
        self.core = client.CoreV1Api(api_client)
        self._apis: dict[str, Any] = {"CoreV1Api": self.core}

    def _call(self, method: Any, *args: Any, timeout: float) -> dict[str, Any]:
        from kubernetes.client.exceptions import ApiException

        try:
            response = method(*args, _preload_content=False, _request_timeout=max(0.05, timeout))
            body = json.loads(response.data)
        except ApiException as exc:
            reason = exc.reason or ""
            try:
                status = json.loads(exc.body or b"{}")
                reason = status.get("reason") or reason
                message = status.get("message") or ""
            except (ValueError, AttributeError):
                message = ""
            raise ReadError(exc.status or 0, reason, message) from None
        except (OSError, ValueError) as exc:
            raise ReadError(0, type(exc).__name__, str(exc)) from None
        except Exception as exc:  # noqa: BLE001 - urllib3's errors: any failure to get an answer
            raise ReadError(0, type(exc).__name__, str(exc)) from None
        if not isinstance(body, dict):
            raise ReadError(0, "not a JSON object")
        return body

    def limit_ranges(self, namespace: str, *, timeout: float) -> list[dict[str, Any]]:
        body = self._call(self.core.list_namespaced_limit_range, namespace, timeout=timeout)
        items = body.get("items")
        return [i for i in items if isinstance(i, dict)] if isinstance(items, list) else []

    def secret(self, namespace: str, name: str, *, timeout: float) -> dict[str, Any]:
        return self._call(self.core.read_namespaced_secret, name, namespace, timeout=timeout)

    def service_account(self, namespace: str, name: str, *, timeout: float) -> dict[str, Any]:
        return self._call(self.core.read_namespaced_service_account, name, namespace, timeout=timeout)

    def owner(self, namespace: str, ref: OwnerRef, *, timeout: float) -> dict[str, Any]:
        """The object an ownerReference names, in `namespace` (owners are never in another namespace)."""
        from kubernetes import client

        api_class, method = OWNER_KINDS[(ref.api_version, ref.kind)]
        api = self._apis.get(api_class)
        if api is None:
            api = self._apis[api_class] = getattr(client, api_class)(self.api_client)
        return self._call(getattr(api, method), ref.name, namespace, timeout=timeout)

    def access_review(self, user: Mapping[str, Any], attributes: Mapping[str, str], *, timeout: float) -> dict[str, Any]:
        """A SubjectAccessReview: may `user` (userInfo: username, uid, groups, extra) do `attributes` (verb, group,
        resource, namespace, name)? Its status."""
        from kubernetes import client

        api = self._apis.get("AuthorizationV1Api")
        if api is None:
            api = self._apis["AuthorizationV1Api"] = client.AuthorizationV1Api(self.api_client)
        spec: dict[str, Any] = {"user": user.get("username") or "", "resourceAttributes": dict(attributes)}
        if user.get("uid"):
            spec["uid"] = user["uid"]
        if user.get("groups"):
            spec["groups"] = list(user["groups"])
        if user.get("extra"):
            spec["extra"] = {k: list(v or []) for k, v in user["extra"].items()}
        body = {"apiVersion": "authorization.k8s.io/v1", "kind": "SubjectAccessReview", "spec": spec}
        answer = self._call(api.create_subject_access_review, body, timeout=timeout)
        status = answer.get("status")
        return status if isinstance(status, dict) else {}

    def watch_limit_ranges(self, stop: threading.Event, on_list: Any, on_event: Any) -> None:
        """List LimitRanges in every namespace, then follow the watch until `stop` (raises ReadError)."""
        from kubernetes import watch
        from kubernetes.client.exceptions import ApiException

        body = self._call(self.core.list_limit_range_for_all_namespaces, timeout=10)
        items = body.get("items") if isinstance(body.get("items"), list) else []
        version = (body.get("metadata") or {}).get("resourceVersion", "")
        on_list(items)
        while not stop.is_set():
            w = watch.Watch()
            try:
                for event in w.stream(self.core.list_limit_range_for_all_namespaces, resource_version=version,
                                      timeout_seconds=60, _request_timeout=75, deserialize=False):
                    if stop.is_set():
                        break
                    raw = event.get("object")
                    if not isinstance(raw, dict):
                        continue
                    version = (raw.get("metadata") or {}).get("resourceVersion", version)
                    on_event(event.get("type"), raw)
            except ApiException as exc:
                if exc.status == 410:  # the version is too old: list again
                    return
                raise ReadError(exc.status or 0, str(exc.reason or "watch error")) from None
            except (OSError, ValueError) as exc:
                raise ReadError(0, type(exc).__name__, str(exc)) from None
            finally:
                w.stop()

    def close(self) -> None:
        try:
            self.api_client.close()
        except Exception:  # noqa: BLE001
            pass


def _meta(obj: Mapping[str, Any]) -> tuple[str, str]:
    meta = obj.get("metadata") if isinstance(obj.get("metadata"), dict) else {}
    return str(meta.get("namespace") or ""), str(meta.get("name") or "")


def _uid(obj: Mapping[str, Any]) -> str:
    meta = obj.get("metadata")
    uid = meta.get("uid") if isinstance(meta, dict) else None
    return uid if isinstance(uid, str) else ""


def _docker_auths(secret: Mapping[str, Any]) -> dict[str, Any]:
    """`auths` of a kubernetes.io/dockerconfigjson (or legacy dockercfg) Secret; {} when it has none."""
    data = secret.get("data") if isinstance(secret.get("data"), dict) else {}
    for key, legacy in ((".dockerconfigjson", False), (".dockercfg", True)):
        encoded = data.get(key)
        if not isinstance(encoded, str):
            continue
        try:
            parsed = json.loads(base64.b64decode(encoded, validate=True))
        except (binascii.Error, ValueError):
            return {}
        auths = parsed if legacy else (parsed.get("auths") if isinstance(parsed, dict) else None)
        return dict(auths) if isinstance(auths, dict) else {}
    return {}


@dataclass
class _Entry:
    value: Any
    until: float


class ClusterReads:
    """Cached reads. Every method takes the request's deadline and never raises: failures come back as `problem`."""

    def __init__(self, api: Any, *, limitranges: bool, pull_secrets: bool, owners: bool = False, ttl: float = 30.0,
                 metrics: Any = None, static_auths: Mapping[str, Any] | None = None, watch: bool = True,
                 service_accounts: bool = False) -> None:
        self.api = api
        self.limitranges = limitranges
        self.pull_secrets = pull_secrets
        self.owners = owners
        self.service_accounts = service_accounts
        self.ttl = ttl
        self.metrics = metrics
        self.static_auths = dict(static_auths or {})
        self._cache: dict[tuple[str, ...], _Entry] = {}
        self._watched: dict[str, dict[str, dict[str, Any]]] | None = None  # namespace -> name -> LimitRange
        self._stop = threading.Event()
        self._watcher: threading.Thread | None = None
        if limitranges and watch:
            self._watcher = threading.Thread(target=self._watch, name="admission-limitrange-watch", daemon=True)
            self._watcher.start()

    # --- the watch ---

    def _watch(self) -> None:
        backoff = 1.0
        while not self._stop.is_set():
            try:
                self.api.watch_limit_ranges(self._stop, self._on_list, self._on_event)
                backoff = 1.0
            except ReadError as exc:
                self._watched = None  # back to per-namespace reads until the watch works again
                self._count("limitranges-watch", exc.short())
                if exc.status in (401, 403):
                    log.info("LimitRanges cannot be watched cluster-wide (%s); reading them per namespace", exc.short())
                    return
                log.warning("LimitRange watch failed (%s); reading per namespace while it restarts", exc.short())
            except Exception:  # noqa: BLE001
                self._watched = None
                log.exception("LimitRange watch failed")
            self._stop.wait(backoff)
            backoff = min(backoff * 2, 60.0)

    def _on_list(self, items: Sequence[dict[str, Any]]) -> None:
        watched: dict[str, dict[str, dict[str, Any]]] = {}
        for item in items:
            namespace, name = _meta(item)
            watched.setdefault(namespace, {})[name] = item
        self._watched = watched
        self._count("limitranges-watch", "listed")

    def _on_event(self, kind: str, obj: dict[str, Any]) -> None:
        watched = self._watched
        if watched is None:
            return
        namespace, name = _meta(obj)
        if kind == "DELETED":
            watched.get(namespace, {}).pop(name, None)
        else:
            watched.setdefault(namespace, {})[name] = obj

    # --- reads ---

    def _count(self, resource: str, result: str) -> None:
        if self.metrics is not None:
            self.metrics.cluster_reads.labels(resource, result).inc()

    async def _read(self, key: tuple[str, ...], call: Any, deadline: float, *, fresh: bool = False) -> Any:
        """A cached value, or `call(timeout)` in a thread within the deadline (failures cached briefly). `fresh`:
        read now whatever the cache holds (the answer is cached for the next request all the same)."""
        now = time.monotonic()
        entry = None if fresh else self._cache.get(key)
        if entry is not None and entry.until > now:
            if isinstance(entry.value, ReadError):
                raise entry.value
            return entry.value
        remaining = deadline - now
        if remaining <= 0:
            raise ReadError(0, "no time left before the deadline")
        try:
            value = await asyncio.wait_for(asyncio.to_thread(call, remaining), timeout=remaining)
        except TimeoutError:
            self._count(key[0], "timeout")
            raise ReadError(0, "timed out") from None
        except ReadError as exc:
            self._count(key[0], exc.short())
            if len(self._cache) > _MAX_CACHED:
                self._cache.clear()
            self._cache[key] = _Entry(exc, now + min(self.ttl, 5.0))
            raise
        self._count(key[0], "ok")
        if len(self._cache) > _MAX_CACHED:
            self._cache.clear()
        self._cache[key] = _Entry(value, now + self.ttl)
        return value

    async def limit_defaults(self, namespace: str, *, deadline: float) -> LimitDefaults:
        watched = self._watched
        if watched is not None:
            return defaults_of(namespace, list(watched.get(namespace, {}).values()))
        try:
            items = await self._read(("limitranges", namespace),
                                     lambda timeout: self.api.limit_ranges(namespace, timeout=timeout), deadline)
        except ReadError as exc:
            return LimitDefaults(problem=exc.short())
        return defaults_of(namespace, items)

    async def owner_object(self, namespace: str, ref: OwnerRef, *, deadline: float, fresh: bool = False) -> dict[str, Any]:
        """The object an ownerReference names, whose uid must be the reference's (ReadError otherwise). A cached read
        whose uid differs is read once more: it may predate a delete and re-create under the same name."""
        key = ("owners", namespace, ref.kind, ref.name)
        obj = await self._read(key, lambda timeout: self.api.owner(namespace, ref, timeout=timeout), deadline,
                               fresh=fresh)
        if _uid(obj) != ref.uid and not fresh:
            obj = await self._read(key, lambda timeout: self.api.owner(namespace, ref, timeout=timeout), deadline,
                                   fresh=True)
        if _uid(obj) != ref.uid:
            raise ReadError(0, "uid", f"{ref.kind} {namespace}/{ref.name} has uid {_uid(obj) or '(none)'}, not the "
                                      f"reference's {ref.uid}")
        return obj

    async def top_owner(self, namespace: str, ref: OwnerRef, *, deadline: float) -> OwnerChain:
        """The verified top controller: each link is read and its uid must be the one the reference below it names;
        an owner of a kind that is not followed ends the chain there. A Job follows its CronJob reference with or
        without `controller: true`, and only while it is the CronJob's jobTemplate unchanged (a manual run may not
        be): Jobs and CronJobs are read fresh for that, since the check is about what they say now."""
        verified: OwnerRef | None = None
        below: dict[str, Any] | None = None  # the object of the link below
        current: OwnerRef | None = ref
        for _ in range(OWNER_DEPTH):
            if current is None:
                break
            if (current.api_version, current.kind) not in OWNER_KINDS:
                if verified is None:
                    return OwnerChain(None, current, f"owner {current.kind} {namespace}/{current.name} is not a kind "
                                                     "that is followed")
                break
            try:
                obj = await self.owner_object(namespace, current, deadline=deadline,
                                              fresh=current.kind in ("Job", "CronJob"))
            except ReadError as exc:
                why = exc.args[0] if exc.reason == "uid" else \
                    f"{current.kind} {namespace}/{current.name} could not be read ({exc.short()})"
                return OwnerChain(None, current, why)
            if current.kind == "CronJob" and below is not None and verified is not None and verified.kind == "Job":
                differs = template_difference(below, obj)
                if differs is not None:
                    return OwnerChain(verified, current, (
                        f"Job {namespace}/{verified.name} is not CronJob {current.name}'s jobTemplate (it differs at "
                        f"{differs}): it lends only its own exemptions"))
            verified, below = current, obj
            meta = obj.get("metadata")
            meta = meta if isinstance(meta, dict) else None
            current = controller_of(meta) or (cronjob_ref(meta) if current.kind == "Job" else None)
        else:
            if current is not None:
                return OwnerChain(None, current, f"the owner chain is longer than {OWNER_DEPTH} links")
        return OwnerChain(verified, verified)

    async def may(self, user: Mapping[str, Any], attributes: Mapping[str, str], *,
                  deadline: float) -> tuple[bool, str]:
        """(allowed, why not) of a SubjectAccessReview, asked now (never cached: permissions change)."""
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            return False, "no time left before the deadline to ask"
        try:
            status = await asyncio.wait_for(asyncio.to_thread(self.api.access_review, user, attributes,
                                                              timeout=remaining), timeout=remaining)
        except TimeoutError:
            self._count("subjectaccessreviews", "timeout")
            return False, "the access review timed out"
        except ReadError as exc:
            self._count("subjectaccessreviews", exc.short())
            return False, f"the access review failed ({exc.short()})"
        self._count("subjectaccessreviews", "ok")
        if status.get("allowed") is True:
            return True, ""
        reason = status.get("reason") or status.get("evaluationError") or ""
        return False, f"not allowed{': ' + reason if reason else ''}"

    async def account_automount(self, namespace: str, name: str, *, deadline: float) -> tuple[str | None, str | None]:
        """A ServiceAccount's `automountServiceAccountToken`: ("true" | "false" | "" when unset, None), or (None, what
        could not be read, in words a finding can carry). Cached as the pull secrets' reads of the same account."""
        try:
            account = await self._read(("serviceaccounts", namespace, name), lambda timeout: self.api.service_account(
                namespace, name, timeout=timeout), deadline)
        except ReadError as exc:
            if exc.status == 404:
                return None, f"ServiceAccount '{name}' does not exist (yet), so its setting is unknown"
            return None, f"ServiceAccount '{name}' could not be read ({exc.short()})"
        return automount_setting(account), None

    async def pull_credentials(self, obj: Mapping[str, Any], kind: str, namespace: str, *,
                               deadline: float) -> PullCredentials:
        """The credentials a pull of this object's images would use: its pull secrets, its ServiceAccount's, then
        the static docker config. Secrets that cannot be read are named in `problem` and left out."""
        spec: Any = obj
        for step in POD_SPEC_PATHS.get(kind, ("spec",)):
            spec = spec.get(step) if isinstance(spec, dict) else None
        spec = spec if isinstance(spec, dict) else {}
        names = [s.get("name") for s in spec.get("imagePullSecrets") or [] if isinstance(s, dict)]
        problems: list[str] = []
        account = spec.get("serviceAccountName") or spec.get("serviceAccount") or "default"
        if isinstance(account, str):
            try:
                sa = await self._read(("serviceaccounts", namespace, account), lambda timeout: self.api.service_account(
                    namespace, account, timeout=timeout), deadline)
                names += [s.get("name") for s in sa.get("imagePullSecrets") or [] if isinstance(s, dict)]
            except ReadError as exc:
                if exc.status != 404:  # a missing ServiceAccount has no pull secrets; the pod would not start anyway
                    problems.append(f"ServiceAccount {namespace}/{account} ({exc.short()})")
        auths: dict[str, Any] = {}
        for name in dict.fromkeys(n for n in names if isinstance(n, str) and n):
            try:
                secret = await self._read(("secrets", namespace, name), lambda timeout, n=name: self.api.secret(
                    namespace, n, timeout=timeout), deadline)
            except ReadError as exc:
                problems.append(f"pull secret {namespace}/{name} ({exc.short()})")
                continue
            for registry, entry in _docker_auths(secret).items():
                auths.setdefault(registry, entry)  # the first secret naming a registry wins
        problem = None
        if problems:
            problem = "could not read " + ", ".join(problems) + "; images were looked up without them"
        if not auths:
            return PullCredentials(problem=problem)
        for registry, entry in self.static_auths.items():
            auths.setdefault(registry, entry)
        canonical = json.dumps(auths, sort_keys=True, separators=(",", ":")).encode()
        key = "pull:" + hashlib.sha256(canonical).hexdigest()[:24]
        try:
            credentials = Credentials.from_config({"auths": auths}, source="imagePullSecrets")
        except Exception as exc:  # noqa: BLE001 - a malformed secret is the namespace's problem, not a crash
            return PullCredentials(problem=f"pull secrets of {namespace} are not a Docker config: {exc}")
        return PullCredentials(key=key, credentials=credentials, problem=problem)

    def close(self) -> None:
        self._stop.set()
        self.api.close()


async def connect(settings: Any, *, metrics: Any = None) -> ClusterReads | None:
    """Cluster reads as configured, or None (logged) when there is no cluster configuration to read with."""
    try:
        from kubernetes import client, config
    except ImportError:  # pragma: no cover - a dependency of the package
        log.warning("the kubernetes client is not installed: cluster reads are off")
        return None
    configuration = client.Configuration()
    where = ""
    try:
        config.load_incluster_config(client_configuration=configuration)
        where = "in-cluster service account"
    except config.ConfigException:
        try:
            await asyncio.to_thread(config.load_kube_config, config_file=settings.kubeconfig,
                                    client_configuration=configuration)
            where = f"kubeconfig {settings.kubeconfig or '(default)'}"
        except (config.ConfigException, OSError, TypeError, ValueError) as exc:
            log.warning("no cluster configuration (no in-cluster service account, no usable kubeconfig: %s): "
                        "cluster reads are off (LimitRange defaults and pull secrets are not read)", exc)
            return None
    static: dict[str, Any] = {}
    if settings.docker_config:
        try:
            with open(settings.docker_config, encoding="utf-8") as f:
                loaded = json.load(f)
            static = loaded.get("auths") or {} if isinstance(loaded, dict) else {}
        except (OSError, ValueError):
            static = {}
    api = KubeApi(client.ApiClient(configuration))
    log.info("cluster reads on (%s): LimitRange defaults %s, pull secrets %s, owners %s, ServiceAccounts %s", where,
             "on" if settings.limitrange_reads else "off", "on" if settings.pull_secrets else "off",
             "on" if settings.owner_reads else "off", "on" if settings.service_account_reads else "off")
    return ClusterReads(api, limitranges=settings.limitrange_reads, pull_secrets=settings.pull_secrets,
                        owners=settings.owner_reads, ttl=settings.cluster_cache_ttl, metrics=metrics,
                        static_auths=static, service_accounts=settings.service_account_reads)
