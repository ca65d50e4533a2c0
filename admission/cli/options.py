"""What `check`, `pin` and `audit` share: the image flags and the run's configuration (policy and excludes), so that
the faces keep the same names and meanings without importing each other."""

from __future__ import annotations

import argparse
import sys
from typing import TYPE_CHECKING

from admission.errors import PolicyError

if TYPE_CHECKING:
    from admission.inputs import repoconfig


def image_flags(parser: argparse.ArgumentParser, *, offline: str = "no network and no cache") -> None:
    """--resolve-images | --offline, --cache-dir | --no-cache, --registry-config: the same flags, meaning the same,
    wherever images are looked up (check, audit)."""
    resolve = parser.add_mutually_exclusive_group()
    resolve.add_argument("--resolve-images", action="store_true", help="fetch image configs from registries")
    resolve.add_argument("--offline", action="store_true", help=offline)
    cache = parser.add_mutually_exclusive_group()
    cache.add_argument("--cache-dir", metavar="DIR")
    cache.add_argument("--no-cache", action="store_true")
    parser.add_argument("--registry-config", metavar="FILE", help="Docker config.json with registry credentials")


def run_config(args: argparse.Namespace) -> repoconfig.RunConfig | None:
    """The run's policy and excludes from PATHs, --exclude, --no-config and --policy (`check` and `pin`); None after
    printing why they could not be read (a usage error, exit 2)."""
    from admission.inputs import repoconfig

    try:
        return repoconfig.run_config(args.paths, exclude=args.exclude, no_config=args.no_config,
                                     policy_file=args.policy)
    except repoconfig.ConfigError as exc:
        print(f"admission-cli: {exc}", file=sys.stderr)
    except PolicyError as exc:
        print(f"admission-cli: policy error: {exc}", file=sys.stderr)
    return None
