"""`admission-cli serve`: the validating admission webhook (architecture §3, §5).

Building the parser imports nothing beyond argparse; FastAPI, uvicorn, pydantic and the kubernetes client are
imported by `run` only, so `admission-cli check` never pays for them (tests/test_boundaries.py).
"""

from __future__ import annotations

import argparse
from typing import Any

EXIT_OK, EXIT_ERROR = 0, 2

# flag -> setting; a flag that is not given leaves the ADMISSION_* variable (or the default) in force
_FLAGS = ("host", "port", "tls_cert", "tls_key", "policy", "workers", "deadline", "max_body", "drain_delay", "grace",
          "docker_config", "metrics_dir", "metrics_port", "log_level")


def add_parser(subparsers: Any) -> argparse.ArgumentParser:
    serve = subparsers.add_parser(
        "serve", help="run the validating admission webhook",
        description="Serve POST /validate (AdmissionReview v1/v1beta1), /healthz, /readyz and /metrics. Every "
                    "setting can also come from ADMISSION_<NAME> (flags win); see docs/webhook.md.")
    serve.add_argument("--host", help="address to listen on (ADMISSION_HOST, default 0.0.0.0)")
    serve.add_argument("--port", type=int, help="port (ADMISSION_PORT, default 8443)")
    serve.add_argument("--tls-cert", metavar="FILE", help="PEM certificate chain (ADMISSION_TLS_CERT); hot-reloaded")
    serve.add_argument("--tls-key", metavar="FILE", help="PEM private key (ADMISSION_TLS_KEY); hot-reloaded")
    serve.add_argument("--policy", metavar="FILE", help="policy file overlaid on the default (ADMISSION_POLICY); "
                                                        "hot-reloaded")
    serve.add_argument("--workers", type=int, metavar="N", help="worker processes (ADMISSION_WORKERS, default 1; "
                                                                 "scale with replicas instead)")
    serve.add_argument("--deadline", type=float, metavar="SECONDS", help="answer within (ADMISSION_DEADLINE, 2.0)")
    serve.add_argument("--max-body", type=int, metavar="BYTES", help="body cap (ADMISSION_MAX_BODY, 8 MiB)")
    serve.add_argument("--drain-delay", type=float, metavar="SECONDS", help="after SIGTERM (ADMISSION_DRAIN_DELAY, 5)")
    serve.add_argument("--grace", type=float, metavar="SECONDS", help="for in-flight requests (ADMISSION_GRACE, 20)")
    serve.add_argument("--docker-config", metavar="FILE", help="static registry credentials (ADMISSION_DOCKER_CONFIG)")
    serve.add_argument("--metrics-dir", metavar="DIR", help="prometheus multiprocess dir (ADMISSION_METRICS_DIR)")
    serve.add_argument("--metrics-port", type=int, metavar="PORT",
                       help="serve /metrics over plain HTTP on this port only (ADMISSION_METRICS_PORT)")
    serve.add_argument("--log-level", choices=("critical", "error", "warning", "info", "debug"))
    return serve


def _settings(args: argparse.Namespace) -> Any:  # noqa: ANN401
    from admission.webhook.settings import Settings

    given = {name: getattr(args, name) for name in _FLAGS if getattr(args, name, None) is not None}
    return Settings(**given)


def run(args: argparse.Namespace) -> int:
    import logging
    import os
    import sys
    import tempfile

    try:
        from pydantic import ValidationError

        import fastapi, kubernetes, prometheus_client, uvicorn  # noqa: E401, F401  (the server extra, all of it)
    except ImportError as exc:
        print(f"admission-cli serve: the webhook needs the server extra ({exc.name} is missing): "
              "pip install 'admission[server]'", file=sys.stderr)
        return 2

    try:
        settings = _settings(args)
    except ValidationError as exc:
        print(f"admission-cli serve: invalid setting: {exc}", file=sys.stderr)
        return EXIT_ERROR
    logging.basicConfig(level=settings.log_level.upper(), stream=sys.stderr,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    log = logging.getLogger("admission.webhook")
    manager = None
    if settings.tls_managed:
        if settings.tls_cert or settings.tls_key:
            print("admission-cli serve: managed TLS (ADMISSION_TLS_MANAGED) and --tls-cert/--tls-key exclude each "
                  "other", file=sys.stderr)
            return EXIT_ERROR
        if settings.tls_cert_validity >= settings.tls_ca_validity:
            print("admission-cli serve: ADMISSION_TLS_CERT_VALIDITY must be shorter than ADMISSION_TLS_CA_VALIDITY",
                  file=sys.stderr)
            return EXIT_ERROR
        from admission.webhook.certs import connect as managed_tls

        try:
            manager = managed_tls(settings)
        except ValueError as exc:
            print(f"admission-cli serve: {exc}", file=sys.stderr)
            return EXIT_ERROR
        manager.prepare()  # a placeholder pair to listen with; readiness waits for the Secret's certificate
        settings.tls_cert, settings.tls_key = str(manager.cert_file), str(manager.key_file)
        settings.tls_held = str(manager.held)
    if bool(settings.tls_cert) != bool(settings.tls_key):
        print("admission-cli serve: --tls-cert and --tls-key go together", file=sys.stderr)
        return EXIT_ERROR
    for path in (settings.tls_cert, settings.tls_key, settings.policy, settings.docker_config):
        if path and not os.path.isfile(path):
            print(f"admission-cli serve: {path}: file not found", file=sys.stderr)
            return EXIT_ERROR
    from admission.webhook.server import StartError, bind, check_tls

    try:
        if settings.tls_cert and settings.tls_key:
            check_tls(settings.tls_cert, settings.tls_key)
        # bound here, so a port in use is one line and exit 2 rather than uvicorn's exit 3 (or a traceback)
        sockets = [bind(settings.host, settings.port, what="port")]
        if settings.metrics_port is not None:
            bind(settings.host, settings.metrics_port, what="metrics port").close()
    except StartError as exc:
        print(f"admission-cli serve: {exc}", file=sys.stderr)
        return EXIT_ERROR
    if not settings.tls_cert:
        log.warning("serving plain HTTP: the API server calls webhooks over HTTPS only (give --tls-cert/--tls-key)")
    if settings.workers > 1:
        if not settings.metrics_dir:
            settings.metrics_dir = tempfile.mkdtemp(prefix="admission-metrics-")
        from admission.webhook.metrics import prepare_multiprocess

        prepare_multiprocess(settings.metrics_dir)  # and clears what an earlier run left there

    from admission.errors import InputError, PolicyError
    from admission.policy.config import load_policy
    from admission.webhook.metrics import start_metrics_port
    from admission.webhook.server import config_for, run_server

    try:
        load_policy(settings.policy)  # refuse to start on a bad policy, before any worker starts
        if settings.workers > 1:
            # Each worker builds its own app (caches, reloads and metrics files are per process).
            for name, value in settings.model_dump().items():
                if value is not None:
                    os.environ[f"ADMISSION_{name.upper()}"] = str(value)
            config = config_for("admission.webhook.app:create_app_from_env", settings, factory=True)
            metrics = None  # the parent serves the workers' files on the metrics port
        else:
            from admission.webhook.app import create_app

            app = create_app(settings)
            metrics = app.state.webhook.metrics
            config = config_for(app, settings)
    except PolicyError as exc:
        print(f"admission-cli serve: policy error: {exc}", file=sys.stderr)
        return EXIT_ERROR
    except InputError as exc:
        print(f"admission-cli serve: {exc}", file=sys.stderr)
        return EXIT_ERROR
    if settings.metrics_port is not None:
        try:
            start_metrics_port(metrics, host=settings.host, port=settings.metrics_port,
                               multiprocess_dir=settings.metrics_dir)
        except OSError as exc:
            print(f"admission-cli serve: metrics port {settings.metrics_port} on {settings.host}: {exc.strerror}",
                  file=sys.stderr)
            return EXIT_ERROR
    if manager is not None:
        manager.start()
    try:
        started = run_server(config, drain_delay=settings.drain_delay, sockets=sockets)
    finally:
        if manager is not None:
            manager.stop()
    return EXIT_OK if started else EXIT_ERROR
