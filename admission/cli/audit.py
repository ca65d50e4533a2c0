"""`admission-cli audit`: the policy run on what already runs in a cluster (architecture §2), as a report and, with
`--write-reports`, as PolicyReports in the cluster.

Building the parser imports nothing beyond argparse; the kubernetes client (the `server` extra) is imported by `run`
only, so `admission-cli check` never pays for it (tests/test_boundaries.py).
"""

from __future__ import annotations

import argparse
import os
import sys
from typing import Any

EXIT_OK, EXIT_FINDINGS, EXIT_ERROR = 0, 1, 2
FORMATS = ("text", "json", "sarif", "junit")
REPORT_API_CHOICES = ("wgpolicyk8s.io/v1alpha2", "openreports.io/v1alpha1")
_IN_CLUSTER_NAMESPACE = "/var/run/secrets/kubernetes.io/serviceaccount/namespace"


def _positive(kind: type) -> Any:  # noqa: ANN401 - an argparse type
    def parse(text: str) -> Any:  # noqa: ANN401
        try:
            value = kind(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected a number, not {text!r}") from None
        if value <= 0:
            raise argparse.ArgumentTypeError(f"must be more than 0, not {text}")
        return value
    return parse


def add_parser(subparsers: Any) -> argparse.ArgumentParser:  # noqa: ANN401
    audit = subparsers.add_parser(
        "audit", help="check what already runs in a cluster (and write PolicyReports)",
        description="List the pod-bearing objects of a cluster (paginated, rate-limited) and judge each with the "
                    "webhook's rules, policy and exemptions: Deployments, StatefulSets, DaemonSets, CronJobs and "
                    "ReplicationControllers, and the Jobs, ReplicaSets and Pods no controller owns. Images are "
                    "judged by the digest the Pods run. Needs the server extra: pip install 'admission[server]'.")
    audit.add_argument("--kubeconfig", metavar="FILE", help="kubeconfig (default: $KUBECONFIG, ~/.kube/config, "
                                                            "else the in-cluster service account)")
    audit.add_argument("--context", metavar="NAME", help="kubeconfig context (default: the current one)")
    scope = audit.add_mutually_exclusive_group()
    scope.add_argument("-n", "--namespace", metavar="NS", help="audit this namespace (default: the context's)")
    scope.add_argument("-A", "--all-namespaces", action="store_true", help="audit every namespace")
    audit.add_argument("--format", choices=FORMATS, default="text", help="report format: text, json, sarif, junit")
    audit.add_argument("--output", metavar="FILE", help="write the --format report to FILE; stdout then carries "
                                                        "the text report")
    audit.add_argument("--policy", metavar="FILE", help="policy file overlaid on the built-in default (the "
                                                        "webhook's, to get its verdicts)")
    audit.add_argument("--fail-on", choices=("deny", "warn", "none"), default="deny",
                       help="exit 1 on an unsuppressed finding at or above this (none: never; a CronJob's choice)")
    audit.add_argument("--write-reports", action="store_true",
                       help="create or update a PolicyReport per namespace, and delete this tool's older ones")
    audit.add_argument("--report-api", choices=REPORT_API_CHOICES, default=REPORT_API_CHOICES[0],
                       help="the PolicyReport API to write (default wgpolicyk8s.io/v1alpha2)")
    audit.add_argument("--qps", type=_positive(float), default=20.0, metavar="Q",
                       help="client-side limit: API calls a second on average (default 20)")
    audit.add_argument("--burst", type=_positive(int), default=40, metavar="B",
                       help="client-side limit: API calls at once (default 40)")
    audit.add_argument("--chunk-size", type=_positive(int), default=500, metavar="N",
                       help="objects per list call (`limit`; default 500, as kubectl)")
    from admission.cli.options import image_flags  # check's image flags: the same names, the same meaning

    image_flags(audit, offline="no registry lookups and no image cache (the API server is still read)")
    return audit


def _resolves(args: argparse.Namespace, setting: object) -> bool:
    """Flags beat the policy. `auto` resolves, as in the webhook: the audit judges what runs, as admission did."""
    if args.offline:
        return False
    if args.resolve_images:
        return True
    return setting in ("auto", True)


def _api_client(args: argparse.Namespace) -> tuple[Any, str]:  # noqa: ANN401
    """(ApiClient, the default namespace) from --kubeconfig/--context, $KUBECONFIG or ~/.kube/config, else the
    in-cluster service account (the chart's CronJob)."""
    from kubernetes import client, config

    from admission.kube.api import api_client

    configuration = client.Configuration()
    explicit = args.kubeconfig or args.context
    default_file = os.path.expanduser(os.environ.get("KUBECONFIG", "~/.kube/config").split(os.pathsep)[0])
    if explicit or os.path.exists(default_file):
        config.load_kube_config(config_file=args.kubeconfig, context=args.context,
                                client_configuration=configuration)
        _, active = config.list_kube_config_contexts(config_file=args.kubeconfig)
        if args.context:
            contexts, _ = config.list_kube_config_contexts(config_file=args.kubeconfig)
            active = next((c for c in contexts if c.get("name") == args.context), active)
        namespace = ((active or {}).get("context") or {}).get("namespace") or "default"
        return api_client(configuration), namespace
    config.load_incluster_config(client_configuration=configuration)
    try:
        with open(_IN_CLUSTER_NAMESPACE, encoding="utf-8") as f:
            namespace = f.read().strip() or "default"
    except OSError:
        namespace = "default"
    return api_client(configuration), namespace


def run(args: argparse.Namespace) -> int:
    try:
        import kubernetes  # noqa: F401  (the server extra)
    except ImportError as exc:
        print(f"admission-cli audit: the audit needs the server extra ({exc.name} is missing): "
              "pip install 'admission[server]'", file=sys.stderr)
        return EXIT_ERROR
    import logging
    import time

    from admission.kube.api import Kube
    from admission.audit.run import Audit, run_id
    from admission.errors import InputError, PolicyError
    from admission.policy.config import load_policy

    logging.basicConfig(level=logging.WARNING, stream=sys.stderr, format="admission-cli audit: %(message)s")
    try:
        policy = load_policy(args.policy)
    except PolicyError as exc:
        print(f"admission-cli audit: policy error: {exc}", file=sys.stderr)
        return EXIT_ERROR
    except InputError as exc:
        print(f"admission-cli audit: {exc}", file=sys.stderr)
        return EXIT_ERROR
    try:
        api_client, default_namespace = _api_client(args)
    except Exception as exc:  # noqa: BLE001 - the kubernetes client's ConfigException, a missing file, bad YAML
        print(f"admission-cli audit: no usable cluster configuration: {exc}", file=sys.stderr)
        return EXIT_ERROR
    namespace = None if args.all_namespaces else (args.namespace or default_namespace)
    kube = Kube(api_client, qps=args.qps, burst=args.burst)
    images = None
    if _resolves(args, policy.images.resolve):
        from admission.audit.images import Images

        try:
            images = Images(policy.images, cache_dir=args.cache_dir, no_cache=args.no_cache,
                            registry_config=args.registry_config)
        except InputError as exc:
            print(f"admission-cli audit: {exc}", file=sys.stderr)
            kube.close()
            return EXIT_ERROR
    started = time.time()
    this_run = run_id(started)
    try:
        outcome = Audit(kube, policy, namespace, limit=args.chunk_size, images=images).run()
        result = outcome.report
        if args.write_reports:
            _write_reports(kube, outcome, args.report_api, this_run, started, namespace, result)
    finally:
        if images is not None:
            images.close()
        kube.close()
    outcome.objects.clear()  # the reports are written: the findings are the report's alone from here
    from admission.cli import identity

    identity.assign(result, relative=str)  # keyed by the namespace label: no repository path to make relative
    if args.output:
        try:
            with open(args.output, "w", encoding="utf-8") as fh:
                _emit(args.format, result, fh, fail_on=args.fail_on)
        except OSError as exc:
            print(f"admission-cli audit: cannot write {args.output}: {exc.strerror or exc}", file=sys.stderr)
            return EXIT_ERROR
    try:
        _emit("text" if args.output else args.format, result, sys.stdout, fail_on=args.fail_on)
    except BrokenPipeError:  # the reader left (`| head`): the exit status stays the audit's verdict
        from admission.cli.report import stdout_to_devnull

        stdout_to_devnull()
    calls = sum(s.calls for s in outcome.stats.values())
    retries = sum(s.retries for s in outcome.stats.values())
    where = "every namespace" if namespace is None else f"namespace {namespace}"
    print(f"admission-cli audit: {where}: {result.objects} objects, {calls} API calls ({retries} retries), "
          f"{time.time() - started:.1f} s, run {this_run}", file=sys.stderr)
    if result.errors:
        return EXIT_ERROR
    if args.fail_on == "none":
        return EXIT_OK
    threshold = ("deny",) if args.fail_on == "deny" else ("deny", "warn")
    if any(not f.suppressed and f.severity in threshold for f in result.findings):
        return EXIT_FINDINGS
    return EXIT_OK


def _write_reports(kube: Any, outcome: Any, api_name: str, this_run: str, started: float,  # noqa: ANN401
                   namespace: str | None, result: Any) -> None:  # noqa: ANN401
    """The PolicyReports of the run, then the stale ones deleted; a failure is an error of the run (exit 2)."""
    import datetime

    from admission.audit import reports
    from admission.kube.api import ApiError
    from admission.audit.run import file_label
    from admission.findings import Problem

    writer = reports.Writer(kube, reports.REPORT_APIS[api_name], this_run,
                            datetime.datetime.fromtimestamp(started, datetime.timezone.utc).isoformat())
    stamp = reports.timestamp_of(started)
    failed = False
    for ns in sorted((n for n in outcome.objects if n), key=str):
        try:
            writer.write(ns, outcome.objects[ns], timestamp=stamp)
        except ApiError as exc:
            if "NamespaceTerminating" in exc.causes:  # it and its objects are going: nothing to report there
                print(f"admission-cli audit: namespace {ns} is being deleted: no report written", file=sys.stderr)
                continue
            if exc.status == 404 and exc.kind == "namespaces":  # gone since it was listed, its reports with it
                print(f"admission-cli audit: namespace {ns} was deleted during the audit: no report written",
                      file=sys.stderr)
                continue
            failed = True
            if exc.status == 404:  # the CRD is not there: every namespace would say the same
                result.errors.append(Problem(
                    message=f"{api_name} reports are not served by this cluster ({exc}): install the report CRDs "
                            "(Kyverno's chart does, or the admission chart's audit.installReportCRDs)", file="cluster"))
                return
            result.errors.append(Problem(message=f"cannot write the report of namespace {ns}: {exc}",
                                         file=file_label(ns)))
    if namespace is None:
        try:
            unlisted = [reports.ObjectResults("", "", "", None, "", (), error=p.message, error_rule="list")
                        for p in outcome.unlisted]
            writer.write(None, outcome.objects.get(None, []) + unlisted, timestamp=stamp, always=True)
        except ApiError as exc:
            failed = True
            result.errors.append(Problem(message=f"cannot write the cluster report: {exc}", file="cluster"))
    if failed or outcome.unlisted:
        # A partial run must not delete the reports of a complete one: only what was written is trusted.
        return
    try:
        writer.delete_stale([namespace] if namespace else None, cluster=namespace is None)
    except ApiError as exc:
        result.errors.append(Problem(message=f"cannot delete stale reports: {exc}", file=file_label(namespace)))
    print(f"admission-cli audit: {len(writer.written)} reports written ({api_name}), {writer.deleted} stale "
          "deleted", file=sys.stderr)


def _emit(fmt: str, result: Any, out: Any, *, fail_on: str) -> None:  # noqa: ANN401 - a Report, a text stream
    """The report in `fmt` on `out`. JSON is written as it is made (a cluster's report can be megabytes: built
    whole, it was the largest allocation of a 5,000-object audit); the other formats are rendered, then written in
    slices, since a text stream encodes what it is given at once."""
    if fmt == "json":
        from admission.cli import report

        report.write_json(result, out)
        return
    text = _render(fmt, result, fail_on=fail_on)
    step = 1 << 20
    for start in range(0, len(text), step):
        out.write(text[start:start + step])


def _render(fmt: str, result: Any, *, fail_on: str) -> str:  # noqa: ANN401
    from admission.cli import report

    if fmt == "sarif":
        return report.render_sarif(result)
    if fmt == "junit":
        return report.render_junit(result, fail_on="warn" if fail_on == "warn" else "deny")
    return report.render_text(result, colour=sys.stdout.isatty() and "NO_COLOR" not in os.environ)
