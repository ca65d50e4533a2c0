"""Server settings (architecture §5): not policy. From `ADMISSION_*` environment variables, overridden by `serve`'s flags.

pydantic-settings, because this is a validation edge that runs once per process start; the policy file keeps its
hand-written validator (the CLI cannot afford pydantic's import).
"""

from __future__ import annotations

from typing import Literal

from pydantic import AliasChoices, Field, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

__all__ = ["Settings"]


class Settings(BaseSettings):
    """Every server setting with its default. `ADMISSION_<NAME>` sets each (case-insensitive)."""

    model_config = SettingsConfigDict(env_prefix="ADMISSION_", case_sensitive=False, extra="ignore",
                                      validate_default=True)

    host: str = "0.0.0.0"
    port: int = Field(8443, ge=0, le=65535)
    tls_cert: str | None = None
    tls_key: str | None = None
    # Managed TLS (chart tls.mode=managed, admission/webhook/certs.py): the server keeps its CA and serving
    # certificate in a Secret and the caBundle of its webhook configuration in step; exclusive with tls_cert.
    tls_managed: bool = False
    # the name of the Secret holding the CA, the serving pair and the bundle. ADMISSION_TLS_SECRET_NAME since issue 27:
    # a variable named *_SECRET with a literal value reads as a secret written into the Pod spec (no-secret-in-env);
    # ADMISSION_TLS_SECRET, its name before, is still read
    tls_secret_name: str | None = Field(None, validation_alias=AliasChoices(
        "tls_secret_name", "ADMISSION_TLS_SECRET_NAME", "ADMISSION_TLS_SECRET"))
    tls_lease: str | None = None  # the Lease that picks the one writer (default: the Secret's name)
    tls_webhook: str | None = None  # the ValidatingWebhookConfiguration whose caBundle is kept
    tls_mutating_webhook: str | None = None  # the MutatingWebhookConfiguration whose caBundle is kept too (mutation)
    tls_hosts: str | None = None  # comma-separated DNS names / IPs of the serving certificate
    tls_ca_validity: float = Field(5 * 365 * 86400.0, ge=30)  # seconds; rotated with a third left
    tls_cert_validity: float = Field(90 * 86400.0, ge=10)  # seconds; renewed with a third left
    tls_propagation_delay: float = Field(60.0, ge=0, le=3600)  # bundle change -> serving what needs it
    tls_report_interval: float = Field(30.0, ge=1, le=3600)  # how often a replica says which CA it serves
    tls_handover: float = Field(600.0, ge=0, le=86400)  # seconds the caBundle's earlier CAs stay trusted
    tls_held: str | None = None  # set by serve: a file that exists once the managed certificate is served
    pod_name: str | None = None  # this replica's identity for the Lease and its report (downward API)
    pod_namespace: str | None = None  # where the Secret and Lease live (downward API)
    workers: int = Field(1, ge=1, le=64)
    policy: str | None = None  # a policy file overlaid on the built-in default; None: the default alone

    deadline: float = Field(2.0, gt=0, le=60)  # seconds for a whole decision, image lookups included
    timeout_margin: float = Field(0.25, ge=0, le=10)  # kept free of the API server's ?timeout= for the answer's trip
    max_body: int = Field(8 << 20, ge=1024)  # bytes of an AdmissionReview body; more is 413

    drain_delay: float = Field(5.0, ge=0, le=300)  # after SIGTERM: still served, readiness false
    grace: float = Field(20.0, ge=0, le=600)  # then in-flight requests get this long to finish

    limitrange_reads: bool = False
    pull_secrets: bool = False
    owner_reads: bool = False  # verify a controller-made object's owner chain, so it borrows its top owner's exemptions
    service_account_reads: bool = False  # read a pod template's ServiceAccount for service-account-token (issue 27)
    docker_config: str | None = None  # a Docker config.json mounted into the pod (static registry credentials)
    redact_details: bool = True
    cluster_cache_ttl: float = Field(30.0, ge=0, le=3600)  # seconds a LimitRange / pull-secret read is reused
    kubeconfig: str | None = None  # outside a cluster; in a pod the service account is used

    # POST /mutate (issue 26): controllers' pod templates are pinned too (else only Pods), and registries never pinned.
    mutation_templates: bool = False
    mutation_skip_registries: str = ""  # comma-separated registries, as images.allowed_registries spells them

    metrics_dir: str | None = None  # prometheus-client multiprocess directory (needed for workers > 1)
    # /metrics on a port of its own (plain HTTP), and not on the webhook's port: a NetworkPolicy can then open
    # scraping to the monitoring namespace apart from the API server's path. None: /metrics on the webhook's port.
    metrics_port: int | None = Field(None, ge=0, le=65535)
    registry_labels: int = Field(20, ge=1, le=1000)  # distinct `registry` label values; further registries: other
    audit: bool = True  # one JSON line per decision on stdout
    log_level: Literal["critical", "error", "warning", "info", "debug"] = "info"
    watch_interval: float = Field(1.0, gt=0, le=60)  # how often the policy and TLS folders are checked

    @field_validator("log_level", mode="before")
    @classmethod
    def _lower(cls, value: object) -> object:
        return value.lower() if isinstance(value, str) else value

    @field_validator("tls_cert", "tls_key", "tls_secret_name", "tls_lease", "tls_webhook", "tls_mutating_webhook",
                     "tls_hosts", "tls_held", "pod_name", "pod_namespace", "policy", "docker_config", "metrics_dir",
                     "kubeconfig", mode="before")
    @classmethod
    def _empty_is_unset(cls, value: object) -> object:
        return None if value == "" else value
