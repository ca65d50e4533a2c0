"""The admission-cli entry point: argument parsing and the mapping of errors to exit codes.

argparse rather than click/typer: it is in the standard library and costs nothing to import.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence
from typing import IO, TYPE_CHECKING

from admission import __version__
from admission.cli.options import image_flags, run_config
from admission.errors import InputError

if TYPE_CHECKING:
    from admission.findings import Report
    from admission.inputs.paths import RepoPaths
    from admission.policy.config import Policy

EXIT_OK, EXIT_FINDINGS, EXIT_ERROR = 0, 1, 2
FORMATS = ("text", "json", "sarif", "junit", "github", "gitlab")
# The formats that show fingerprints; the others skip hashing every finding (and the text report's start-up, hashlib).
FINGERPRINTED = frozenset(("json", "sarif", "gitlab"))


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="admission-cli", description="Check compose files, Kubernetes manifests, "
                                     "Dockerfiles and image archives against the production-image policy.")
    parser.add_argument("--version", action="version", version=f"admission {__version__}")
    sub = parser.add_subparsers(dest="command", required=True)

    check = sub.add_parser("check", help="check inputs against the policy")
    check.add_argument("paths", nargs="+", metavar="PATH", help="file, directory, or - for stdin")
    check.add_argument("--format", choices=FORMATS, default="text",
                       help="report format: text, json, sarif, junit (JUnit XML), github (workflow commands), "
                            "gitlab (Code Quality)")
    check.add_argument("--output", metavar="FILE",
                       help="write the --format report to FILE; stdout then carries the text report")
    check.add_argument("--policy", metavar="FILE", help="policy file overlaid on the built-in default")
    check.add_argument("--fail-on", choices=("deny", "warn"), default="deny")
    image_flags(check)
    check.add_argument("--env-file", action="append", default=None, metavar="FILE",
                       help="compose env file; replaces the project's .env (repeatable)")
    check.add_argument("--profile", action="append", default=[], metavar="NAME",
                       help="compose profile to enable (default: check every service)")
    check.add_argument("-f", dest="overrides", action="append", default=[], metavar="OVERRIDE",
                       help="compose override file merged onto the one compose PATH (repeatable)")
    check.add_argument("--namespace", default="default", help="namespace of objects that have none")
    check.add_argument("--build-arg", dest="build_args", action="append", default=[], type=_build_arg,
                       metavar="NAME=VALUE",
                       help="a Dockerfile build arg, as docker build takes it (repeatable); e.g. the image of "
                            "`ARG BASE_IMAGE` / `FROM ${BASE_IMAGE}`")
    check.add_argument("--baseline", metavar="FILE",
                       help="suppress the findings whose fingerprints FILE holds (reason: baseline); new ones still fail")
    check.add_argument("--write-baseline", metavar="FILE",
                       help="write the fingerprints of every finding no exemption suppresses to FILE; with --baseline, "
                            "only the baseline's entries still in use (a refresh only shrinks it)")
    check.add_argument("--hide-suppressed", action="store_true",
                       help="leave suppressed findings (baselined or exempted) out of the text report; the summary "
                            "line still counts them")
    check.add_argument("--as-walk", action="store_true",
                       help="handle named files as a directory walk would (for pre-commit): files that are not "
                            "inputs are skipped, overrides are merged onto their base file")
    check.add_argument("--exclude", action="append", default=[], metavar="PATTERN",
                       help="leave out what a walk finds that matches PATTERN (gitignore-style, relative to the "
                            "repository root; repeatable); added to the patterns of .admission.yaml")
    check.add_argument("--no-config", action="store_true",
                       help="ignore the repository's .admission.yaml (its excludes and policy overlay)")

    sub.add_parser("rules", help="list the rule catalogue")
    explain = sub.add_parser("explain", help="why a rule exists, how to fix it, examples")
    explain.add_argument("rule", metavar="RULE-ID")
    from admission.cli import serve  # argparse only: the webhook's modules load when `serve` runs

    serve.add_parser(sub)
    from admission.cli import checkpolicy  # argparse only: the policy loader loads when it runs

    checkpolicy.add_parser(sub)
    from admission.cli import pin  # argparse only: the pin modules load when it runs

    pin.add_parser(sub)
    from admission.cli import audit  # argparse only: the kubernetes client loads when `audit` runs

    audit.add_parser(sub)
    return parser


def _build_arg(text: str) -> tuple[str, str]:
    """`--build-arg NAME=VALUE` -> (NAME, VALUE); argparse turns the error into a usage error naming the flag."""
    name, eq, value = text.partition("=")
    if not eq or not name.strip():
        raise argparse.ArgumentTypeError(f"expected NAME=VALUE, not {text!r}")
    return name, value


def _check_with_few_collections(args: argparse.Namespace) -> int:
    """A check allocates hundreds of thousands of small objects that live until the report is written (the model, the
    findings) and hold almost no cycles, so the collector's scans every 700 allocations find nothing and cost 10-20%
    of a 10,000-document run (issue 27's benchmark). What is loaded by then (modules) is set aside, and collections
    come far less often, not never: an input with cycles still has them freed. Peak memory is unchanged on that run
    and on bench/large.py's. Undone on return, for callers that run `main` in their own process (the tests)."""
    import gc

    before = gc.get_threshold()
    gc.freeze()
    gc.set_threshold(100_000, 50, 100)
    try:
        return _check(args)
    finally:
        gc.set_threshold(*before)
        gc.unfreeze()


def _check(args: argparse.Namespace) -> int:
    from admission.cli import identity
    from admission.findings import Problem
    from admission.inputs import walk as inputs
    from admission.inputs.paths import RepoPaths
    from admission.policy import engine

    config = run_config(args)
    if config is None:
        return EXIT_ERROR
    policy = config.policy
    options = inputs.Options(namespace=args.namespace, env_files=args.env_file, profiles=tuple(args.profile),
                             overrides=tuple(args.overrides), platform=policy.images.platform, as_walk=args.as_walk,
                             build_args=dict(args.build_args), excludes=config.excludes,
                             secret_patterns=_secret_patterns(policy))
    baselined: frozenset[str] | None = None
    if args.baseline:
        from admission.cli import baseline

        try:
            baselined = baseline.load(args.baseline)
        except InputError as exc:
            print(f"admission-cli: {exc}", file=sys.stderr)
            return EXIT_ERROR
    try:
        collected = inputs.collect(args.paths, options=options)
    except inputs.UsageError as exc:
        print(f"admission-cli: {exc}", file=sys.stderr)
        return EXIT_ERROR
    workloads = collected.workloads
    if policy.images.verify:  # archives carry their own signatures: verified offline, whatever the flags say
        from admission.images.verify.offline import verify_carried

        workloads = verify_carried(workloads, policy.images.verify)
    if _resolves(args, policy.images.resolve):
        from admission.images import enrich  # only now: resolution needs the HTTP client

        try:
            workloads = enrich.resolve_sync(workloads, settings=policy.images, cache_dir=args.cache_dir,
                                            no_cache=args.no_cache, registry_config=args.registry_config)
        except InputError as exc:
            collected.errors.append(Problem(message=exc.message, file=exc.file, line=exc.line, path=exc.path))
        except RecursionError:
            collected.errors.append(Problem(message="the registry config nests too deeply to be a Docker config",
                                            file=args.registry_config))
    result = engine.evaluate(workloads, policy)
    result.errors[:0] = collected.errors
    result.files = len(collected.files)
    result.skipped_files = collected.skipped
    result.skipped = sorted(collected.skipped_reasons)
    result.config = config.config
    patterns = config.excludes.patterns if config.excludes else ()
    result.excluded = {p.label: collected.excluded[p.label] for p in patterns if p.label in collected.excluded}
    paths = RepoPaths()
    if args.format in FINGERPRINTED or baselined is not None or args.write_baseline:
        identity.assign(result, relative=paths.relative)
    from admission.cli.repeats import merge_repeats

    merge_repeats(result)  # after the fingerprints: each object's stays with the finding reported once
    if baselined is not None:
        from admission.cli import baseline

        baseline.apply(result, baselined)
    if args.write_baseline:
        from admission.cli import baseline

        try:
            baseline.write(args.write_baseline, result, relative=paths.relative, refresh=baselined is not None)
        except InputError as exc:
            result.errors.append(Problem(message=exc.message, file=exc.file))
    if args.output:
        try:
            with open(args.output, "w", encoding="utf-8") as fh:
                _emit(args.format, result, fh, args=args, paths=paths)
        except OSError as exc:
            print(f"admission-cli: cannot write {args.output}: {exc.strerror or exc}", file=sys.stderr)
            return EXIT_ERROR
    try:
        _emit("text" if args.output else args.format, result, sys.stdout, args=args, paths=paths)
    except BrokenPipeError:
        # The reader left (`| head`): what it did not read changes no verdict, so the exit status stays the run's.
        from admission.cli.report import stdout_to_devnull

        stdout_to_devnull()
    if result.errors:
        return EXIT_ERROR
    threshold = ("deny",) if args.fail_on == "deny" else ("deny", "warn")
    if any(not f.suppressed and f.severity in threshold for f in result.findings):
        return EXIT_FINDINGS
    return EXIT_OK


def _secret_patterns(policy: Policy) -> tuple[str, ...]:
    """What build-context may open to tell public PEM material: its patterns, nothing when the rule is off."""
    if not policy.enabled("build-context"):
        return ()
    return tuple(str(p) for p in policy.rules["build-context"].params.get("secret_patterns", ()))


def _emit(fmt: str, result: Report, out: IO[str], *, args: argparse.Namespace, paths: RepoPaths) -> None:
    """The report in `fmt` on `out`. JSON is written as it is made (a large report built whole was held three times
    over, issue 27's benchmark); the other formats are rendered, then written."""
    from admission.cli import report

    if fmt == "json":
        report.write_json(result, out)
    elif fmt == "sarif":
        out.write(report.render_sarif(result, root=paths.run_root(args.paths)))
    elif fmt == "junit":
        for chunk in report.junit_chunks(result, fail_on=args.fail_on):
            out.write(chunk)
    elif fmt == "github":
        out.write(report.render_github(result, relative=paths.relative))
    elif fmt == "gitlab":
        out.write(report.render_gitlab(result, relative=paths.relative))
    else:
        out.write(report.render_text(result, colour=sys.stdout.isatty() and "NO_COLOR" not in os.environ,
                                     hide_suppressed=args.hide_suppressed))


def _resolves(args: argparse.Namespace, setting: object) -> bool:
    """Flags beat the policy: --offline never resolves, --resolve-images always; `auto` means no in the CLI."""
    if args.offline:
        return False
    if args.resolve_images:
        return True
    return setting is True


def _rules() -> int:
    from admission.policy import catalog

    for rule in catalog.all_rules().values():
        default = rule.severity_from.rpartition(".")[2] if rule.severity_fixed else rule.severity
        print(f"{rule.id:<26} {default:<8} {rule.summary}")
    return EXIT_OK


def _explain(rule_id: str) -> int:
    from admission.cli import docs
    from admission.policy import catalog

    rule = catalog.get(rule_id)
    if rule is None:
        print(f"admission-cli: unknown rule {rule_id!r}; see `admission-cli rules`", file=sys.stderr)
        return EXIT_ERROR
    sys.stdout.write(docs.explain(rule))
    return EXIT_OK


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    try:
        if args.command == "check":
            return _check_with_few_collections(args)
        if args.command == "rules":
            return _rules()
        if args.command == "check-policy":
            from admission.cli import checkpolicy

            return checkpolicy.run(args)
        if args.command == "pin":
            from admission.cli import pin

            return pin.run(args)
        if args.command == "serve":
            from admission.cli import serve

            return serve.run(args)
        if args.command == "audit":
            from admission.cli import audit

            return audit.run(args)
        return _explain(args.rule)
    except BrokenPipeError:
        return EXIT_OK
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    raise SystemExit(main())
