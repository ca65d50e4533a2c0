"""`admission-cli check-policy FILE`: validate a policy file exactly as the webhook will load it.

The same loader as `serve` and `check --policy` (`load_policy`: strict validation, overlaid on the built-in
default), so it accepts exactly what the server accepts. The Helm chart's pre-install/pre-upgrade hook runs it
on the rendered policy, so a bad policy fails the release instead of reaching the webhook (a running webhook
keeps its old policy when a reload is bad, but a new pod would refuse to start).

Exit 0 when the policy is valid; 2, with the file, line and key on stderr, when it is not. Warnings (an exemption
that has expired, one scoped to no namespace and no name) leave exit 0 unless `--strict` makes them errors.
"""

from __future__ import annotations

import argparse
import sys
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # the parser is built without importing the policy loader
    from datetime import date

    from admission.policy.config import Policy

EXIT_OK, EXIT_ERROR = 0, 2


def add_parser(subparsers: Any) -> argparse.ArgumentParser:
    parser = subparsers.add_parser(
        "check-policy", help="validate a policy file as the webhook loads it (exit 0, or 2 naming file, line, key)",
        description="Validate a policy file with the loader `serve` and `check --policy` use: it is overlaid on "
                    "the built-in default, and unknown keys, rules and parameters are errors naming the file, "
                    "line and key. `-` reads the policy from stdin.")
    parser.add_argument("file", metavar="FILE", help="policy file, or - for stdin")
    parser.add_argument("--strict", action="store_true",
                        help="warnings (expired or cluster-wide exemptions) are errors: exit 2")
    return parser


def exemption_warnings(policy: Policy, today: date) -> list[str]:
    """What is valid but probably not meant: an exemption past its date (it matches nothing any more) and one that
    names no namespace and no name (it exempts every workload in the cluster from its rule)."""
    out = []
    for exemption in policy.exemptions:
        where = f"{exemption.where}: " if exemption.where else ""
        if exemption.expired(today):
            out.append(f"{where}exemption for rule {exemption.rule} expired on {exemption.expires}; "
                       "remove it or renew its date")
        if exemption.namespace in (None, "*") and exemption.name in (None, "*"):
            out.append(f"{where}exemption for rule {exemption.rule} names no namespace and no name: it applies "
                       "cluster-wide")
    return out


def run(args: argparse.Namespace) -> int:
    from admission.errors import InputError, PolicyError
    from admission.policy.config import default_policy, load_policy, parse_policy

    name = args.file
    try:
        if name == "-":
            from admission.textio import decode

            policy = parse_policy(decode(sys.stdin.buffer.read(), file="-"), file="-", base=default_policy())
        else:
            policy = load_policy(name)
    except (PolicyError, InputError) as exc:
        print(f"admission-cli check-policy: policy error: {exc}", file=sys.stderr)
        return EXIT_ERROR
    import datetime

    warnings = exemption_warnings(policy, datetime.date.today())
    for line in warnings:
        print(f"admission-cli check-policy: {'error' if args.strict else 'warning'}: {line}", file=sys.stderr)
    if warnings and args.strict:
        return EXIT_ERROR
    states = [setting.severity for setting in policy.rules.values()]
    print(f"{name}: valid policy (overlaid on the built-in default): enforcement {policy.enforcement}, "
          f"{sum(s != 'off' for s in states)} rules on, {states.count('off')} off, "
          f"{len(policy.exemptions)} exemptions, images.resolve {str(policy.images.resolve).lower()}")
    return EXIT_OK
