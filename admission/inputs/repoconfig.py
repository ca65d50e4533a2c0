"""The repository's own config, `.admission.yaml` at the repository root: `exclude:` patterns and a `policy:` overlay
(docs/cli.md "Repository config"; docs/decisions.md "Walks").

The file is ours, so it is read strictly: an unknown key, a pattern that is not a string or does not compile, or a
bad policy key is an error naming file, line and key (exit 2). Overlays stack: the built-in policy, then this
file's `policy:`, then `--policy`, then flags.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from typing import Any

from admission.inputs.excludes import Excludes, Pattern, compile_pattern
from admission.inputs.paths import RepoPaths
from admission.errors import InputError
from admission.policy.config import Policy, default_policy, load_policy, merge_policy
from admission.textio import read_path
from admission.yamlload import YMap, YSeq, line_of, load_documents, type_name
from admission.model import frozen

CONFIG_NAME = ".admission.yaml"
_KEYS = ("exclude", "policy")


class ConfigError(Exception):
    """`.admission.yaml` is invalid, or the run cannot tell which one applies (exit 2). The message names the file
    and line."""


@frozen
class RepoConfig:
    shown: str  # the file as reports name it: relative to the current directory
    root: str
    excludes: tuple[Pattern, ...]
    policy: YMap | None  # the overlay as read: it keeps its lines, so merge_policy's errors name this file's


@frozen
class RunConfig:
    """What the repository config and the flags decide for one `check` run."""

    policy: Policy
    excludes: Excludes | None
    config: str | None  # the `.admission.yaml` in use, as shown


def run_config(paths: Sequence[str], *, exclude: Sequence[str], no_config: bool, policy_file: str | None,
               cwd: str | None = None) -> RunConfig:
    """The policy (built-in <- `.admission.yaml` <- --policy) and the excludes (the file's, then --exclude's) of a
    run. Raises ConfigError or PolicyError."""
    cwd = os.path.abspath(cwd or os.getcwd())
    roots = _roots(paths, cwd=cwd)
    found = sorted(os.path.join(root, CONFIG_NAME) for root in roots if os.path.isfile(os.path.join(root, CONFIG_NAME)))
    if len(found) > 1 and not no_config:
        raise ConfigError(f"the PATHs are in {len(found)} repositories with their own {CONFIG_NAME} "
                          f"({', '.join(_shown(f, cwd) for f in found)}): check each in its own run, or pass --no-config")
    config = load(found[0], cwd=cwd) if found and not no_config else None
    base = default_policy()
    if config is not None and config.policy is not None:
        base = merge_policy(config.policy, file=config.shown, base=base)
    patterns = list(config.excludes) if config else []
    for text in exclude:
        try:
            patterns.append(compile_pattern(text, origin="--exclude"))
        except ValueError as exc:
            raise ConfigError(f"--exclude: {exc}") from None
    excludes = None
    if patterns:
        if config is None and len(roots) > 1:
            raise ConfigError(f"--exclude patterns are relative to one repository root, and the PATHs are in {len(roots)} "
                              f"({', '.join(sorted(_shown(r, cwd) for r in roots))}): check each in its own run")
        excludes = Excludes(patterns, root=config.root if config else next(iter(roots), cwd))
    return RunConfig(policy=load_policy(policy_file, base=base), excludes=excludes,
                     config=config.shown if config else None)


def _roots(paths: Sequence[str], *, cwd: str) -> set[str]:
    """The repository roots of the PATHs, as fingerprints have them (identity.RepoPaths)."""
    return RepoPaths(cwd).roots_of(paths)


def _shown(path: str, cwd: str) -> str:
    return os.path.relpath(path, cwd)


def load(file: str, *, cwd: str) -> RepoConfig:
    """Read and validate one `.admission.yaml`."""
    shown = _shown(file, cwd)
    try:
        text = read_path(file, display=shown)
        documents = [d for d in load_documents(text, file=shown, dialect="1.2", strict_keys=True) if d.value is not None]
    except InputError as exc:
        raise ConfigError(str(exc)) from None
    if len(documents) > 1:
        raise ConfigError(f"{shown}: holds one YAML document, found {len(documents)}")
    root: Any = documents[0].value if documents else YMap()
    if not isinstance(root, YMap):
        raise ConfigError(f"{shown}:{documents[0].line}: must be a mapping with `exclude:` and `policy:`, "
                          f"not {type_name(root)}")
    for key in root:
        if key not in _KEYS:
            raise ConfigError(f"{shown}:{root.line_of(key)}: unknown key {key!r} (allowed: {', '.join(_KEYS)})")
    policy = root.get("policy")
    if policy is not None and not isinstance(policy, YMap):
        raise ConfigError(f"{shown}:{root.line_of('policy')}: `policy` must be a mapping, shaped like a policy file, "
                          f"not {type_name(policy)}")
    return RepoConfig(shown=shown, root=os.path.dirname(os.path.abspath(file)),
                      excludes=_patterns(root, shown=shown), policy=policy)


def _patterns(root: YMap, *, shown: str) -> tuple[Pattern, ...]:
    items = root.get("exclude")
    if items is None:
        return ()
    if not isinstance(items, YSeq):
        raise ConfigError(f"{shown}:{root.line_of('exclude')}: `exclude` must be a list of patterns, "
                          f"not {type_name(items)}")
    patterns = []
    for index, item in enumerate(items):
        line = line_of(items, index)
        if not isinstance(item, str):
            raise ConfigError(f"{shown}:{line}: exclude[{index}] must be a string pattern, not {type_name(item)}")
        try:
            patterns.append(compile_pattern(item, origin=f"{shown}:{line}"))
        except ValueError as exc:
            raise ConfigError(f"{shown}:{line}: exclude[{index}]: {exc}") from None
    return tuple(patterns)
