"""`admission-cli pin`: its arguments and its listing. The work is admission/pin/run.py's.

Each listed line is `FILE:LINE  FIELD  STATUS  detail`; references already pinned are only counted, in the
summary, so a pinned repository's run is one line.
"""

from __future__ import annotations

import argparse
import re
import sys
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from admission.pin.run import Outcome

_PLATFORM = re.compile(r"^[a-z0-9]+/[a-z0-9_]+(/[a-z0-9]+)?$")


def _platform(text: str) -> str:
    if not _PLATFORM.match(text.lower()):
        raise argparse.ArgumentTypeError(f"expected OS/ARCH[/VARIANT] such as linux/arm64, not {text!r}")
    return text.lower()


def add_parser(sub: Any) -> None:
    pin = sub.add_parser("pin", help="lock image references to digests, changing nothing else in the files",
                         description="Rewrite image references as name:tag@sha256:... in compose files, Kubernetes "
                                     "manifests and Dockerfile FROM lines, byte for byte around them.")
    pin.add_argument("paths", nargs="+", metavar="PATH", help="file or directory (walked as `check` walks it)")
    pin.add_argument("--check", action="store_true",
                     help="write nothing and ask no registry: exit 1 when a reference has no digest (the CI guard)")
    pin.add_argument("--lock", metavar="FILE",
                     help="leave the sources alone and write a compose override with services.<name>.image pinned")
    pin.add_argument("--platform", type=_platform, metavar="OS/ARCH",
                     help="pin one platform's manifest instead of the multi-platform index (the default)")
    pin.add_argument("--drift", action="store_true",
                     help="also ask the registry (never the tag cache) what the tags of pinned references point at, "
                          "and list those that now point elsewhere")
    pin.add_argument("--fail-on-drift", action="store_true",
                     help="implies --drift: exit 1 when a tag drifted, and 2 when the drift of a reference could not "
                          "be checked")
    pin.add_argument("--policy", metavar="FILE", help="policy file: its `images` gates apply to the lookups")
    pin.add_argument("--registry-config", metavar="FILE", help="Docker config.json with registry credentials")
    cache = pin.add_mutually_exclusive_group()
    cache.add_argument("--cache-dir", metavar="DIR")
    cache.add_argument("--no-cache", action="store_true")
    pin.add_argument("-f", dest="overrides", action="append", default=[], metavar="OVERRIDE",
                     help="compose override file merged onto the one compose PATH (repeatable)")
    pin.add_argument("--env-file", action="append", default=None, metavar="FILE",
                     help="compose env file; replaces the project's .env (repeatable)")
    pin.add_argument("--exclude", action="append", default=[], metavar="PATTERN",
                     help="leave out what a walk finds that matches PATTERN (as for check)")
    pin.add_argument("--no-config", action="store_true", help="ignore the repository's .admission.yaml")


def run(args: argparse.Namespace) -> int:
    from admission.inputs import walk as inputs
    from admission.cli.options import run_config
    from admission.pin.run import EXIT_ERROR, PinOptions, pin

    config = run_config(args)
    if config is None:
        return EXIT_ERROR
    options = PinOptions(settings=config.policy.images, check=args.check, lock=args.lock, platform=args.platform,
                         drift=args.drift or args.fail_on_drift, fail_on_drift=args.fail_on_drift,
                         cache_dir=args.cache_dir, no_cache=args.no_cache, registry_config=args.registry_config)
    # Every compose service is pinned, whatever its profiles: a profile only chooses what runs.
    collect = inputs.Options(env_files=args.env_file, overrides=tuple(args.overrides), excludes=config.excludes)
    try:
        outcome = pin(args.paths, options=options, inputs_options=collect)
    except inputs.UsageError as exc:
        print(f"admission-cli: {exc}", file=sys.stderr)
        return EXIT_ERROR
    sys.stdout.write(render(outcome, check=args.check, platform=args.platform, lock=args.lock,
                            fail_on_drift=args.fail_on_drift))
    return outcome.code


def render(outcome: Outcome, *, check: bool, platform: str | None, lock: str | None = None,
           fail_on_drift: bool = False) -> str:
    """The listing: one line per reference that is not simply pinned already, errors, then a summary. When no lookup
    was answered, the unresolved references are one line per distinct reason instead, with their count."""
    unanswered: dict[str, int] = {}
    lines = []
    for e in outcome.entries:
        if outcome.nothing_answered and e.status == "unresolved":
            unanswered[e.reason or e.detail] = unanswered.get(e.reason or e.detail, 0) + 1
        else:
            lines.append(f"{e.file}:{e.line}  {e.field}  {e.status}  {e.detail}")
    lines += [f"unresolved  {n} reference{'s' if n != 1 else ''}: {reason}" for reason, n in unanswered.items()]
    for error in outcome.errors:
        where = error.file or "-"
        if error.line:
            where += f":{error.line}"
        field = f"  {error.path}" if error.path else ""
        lines.append(f"{where}{field}  error  {error.message}")
    counts = [f"{outcome.count('pinned')} pinned"] if not check else [f"{outcome.count('unpinned')} unpinned"]
    counts.append(f"{outcome.already} already pinned")
    for status in ("drift", "unresolved", "left alone", "not written", "not locked"):
        if outcome.count(status):
            counts.append(f"{outcome.count(status)} {status}")
    if outcome.errors:
        counts.append(f"{len(outcome.errors)} error{'s' if len(outcome.errors) != 1 else ''}")
    summary = ", ".join(counts)
    if check and outcome.count("unpinned"):
        summary += "; `admission-cli pin` pins them"
    if outcome.files_written:
        summary += f"; wrote {len(outcome.files_written)} file{'s' if len(outcome.files_written) != 1 else ''}"
    if outcome.lock_written:
        summary += f"; wrote {outcome.lock_written}"
    if platform and not check and outcome.count("pinned"):
        summary += f"; digests are {platform} manifests, not indexes"
    if outcome.nothing_answered:
        summary += f"; none of the {outcome.asked} lookups was answered"
        if not check:
            summary += f", so {lock} was not written" if lock else ", so nothing was written"
    elif outcome.drift_unchecked and fail_on_drift:
        n = outcome.drift_unchecked
        summary += f"; the drift of {n} reference{'s' if n != 1 else ''} could not be checked (--fail-on-drift)"
    lines.append(summary)
    return "\n".join(lines) + "\n"
