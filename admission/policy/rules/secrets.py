"""no-secret-in-env: a literal value for an environment variable whose name says it is a secret (issue 27).

No finding of this rule carries the value: not in its message, its fix or its `value` (None), so no report format,
webhook answer or audit line can show it (tests/test_secret_never_shown.py).
"""

from __future__ import annotations

import re
from collections.abc import Iterator, Mapping
from functools import lru_cache
from typing import Any

from admission.findings import Violation
from admission.model import Origin, Workload
from admission.policy.rule import Param, rule
from admission.policy.rules.common import container_field, subject

DEFAULT_NAMES = ("PASSWORD", "PASSWD", "SECRET", "TOKEN", "API_KEY", "PRIVATE_KEY", "ACCESS_KEY")
# A last word that makes the variable about a secret rather than the secret itself: where it is (`TLS_SECRET_NAME`, a
# Kubernetes Secret's name; `DB_PASSWORD_FILE`), which one (`AWS_ACCESS_KEY_ID`), or how it is used (`TOKEN_TTL`).
DEFAULT_NOT_LAST = ("FILE", "PATH", "DIR", "NAME", "REF", "ID", "URL", "URI", "ENDPOINT", "HOST", "PORT", "TTL",
                    "TIMEOUT", "LIFETIME", "EXPIRY", "LENGTH", "TYPE", "HEADER", "ALGORITHM")
_WORD = re.compile(r"[A-Za-z0-9]+(?:_[A-Za-z0-9]+)?\Z")
_SPLIT = re.compile(r"[^A-Za-z0-9]+")  # `_` separates words; `.` and `-` (spring.datasource.password) as well
_NUMBER = re.compile(r"[+-]?(?:\d+(?:\.\d*)?|\.\d+)(?:[eE][+-]?\d+)?\Z")
_BOOLEANS = frozenset(("true", "false", "yes", "no", "on", "off", "y", "n"))
# `$(VAR)` (Kubernetes), `${VAR}` and `$VAR` (shells, Dockerfiles, compose's `$$` escape): the value is elsewhere
_REFERENCE = re.compile(r"\$(?:\([A-Za-z_][A-Za-z0-9_.-]*\)|\{[A-Za-z_][A-Za-z0-9_]*[^}]*\}|[A-Za-z_][A-Za-z0-9_]*)")
_SECRET_FILES = ("/run/secrets/", "/var/run/secrets/")

_WHERE = {
    "env": ("in env[].value", "anyone who can read the Pod spec (get pods, the manifest in git) reads it",
            "take it from a Secret: valueFrom.secretKeyRef (or envFrom.secretRef)"),
    "environment": ("in the compose file's environment", "the file is in the repository for anyone who reads it",
                    ("keep the value in an untracked .env (or the shell) and write ${NAME} here, or use compose "
                     "secrets: and the image's NAME_FILE")),
    "ENV": ("with ENV", "it stays in the image config, where anyone who pulls the image reads it",
            ("give it at run time instead (the runtime's environment from a secret store), or use it only in a build "
             "step with RUN --mount=type=secret")),
    "ARG": ("as an ARG default", "a build arg is recorded in the image history of every RUN that uses it",
            ("declare ARG NAME without a default and pass the secret with RUN --mount=type=secret "
             "(docker build --secret), not --build-arg")),
    "Env": ("in its image config's Env", "anyone who pulls the image reads it (docker inspect, crane config)",
            "rebuild the image without that ENV and give the value at run time from a Secret"),
}


def _check_name(value: Any) -> str | None:
    text = str(value)
    if not _WORD.match(text):
        return f"{text!r} is not a word or two words joined by _ (letters and digits: PASSWORD, API_KEY)"
    return None


@lru_cache(maxsize=32)
def _patterns(names: tuple[Any, ...]) -> tuple[tuple[str, ...], ...]:
    return tuple(tuple(str(n).upper().split("_")) for n in names)


@lru_cache(maxsize=32)
def _words(words: tuple[Any, ...]) -> frozenset[str]:
    return frozenset(str(w).upper() for w in words)


def secret_name(name: str, patterns: tuple[tuple[str, ...], ...],
                not_last: frozenset[str] = frozenset(DEFAULT_NOT_LAST)) -> bool:
    """Whether a variable name holds one of the patterns as whole words (`DB_PASSWORD`, `AWS_SECRET_ACCESS_KEY`),
    not as part of a word (`TOKENIZERS_PARALLELISM`); a name whose last word is in `not_last` is about a secret, not
    one (`DB_PASSWORD_FILE`, `TLS_SECRET_NAME`)."""
    words = [w for w in _SPLIT.split(name.upper()) if w]
    if not words or words[-1] in not_last:
        return False
    for pattern in patterns:
        n = len(pattern)
        if any(tuple(words[i:i + n]) == pattern for i in range(len(words) - n + 1)):
            return True
    return False


def holds_value(value: str) -> bool:
    """Whether a literal is worth calling a secret: not empty, a boolean, a number, a reference or a secret file."""
    text = value.strip().strip("\"'")
    if not text or text.lower() in _BOOLEANS or _NUMBER.match(text):
        return False
    if _REFERENCE.search(text):
        return False
    return not text.startswith(_SECRET_FILES)


@rule("no-secret-in-env", severity="warn", summary="No secret is written as an environment variable's literal value.",
      applies={"kubernetes": "env[].value of every container (not valueFrom, not envFrom)",
               "compose": "environment written in the file (not values from .env or the shell); the build "
                          "Dockerfile's ENV and ARG defaults",
               "dockerfile": "ENV values and ARG defaults of every stage",
               "image": "the config's Env, when images are resolved or read from an archive"},
      params=(Param("names", list, DEFAULT_NAMES, "words that make a variable name a secret's: a name matches when "
                    "one of them is a whole `_`-separated word (or pair of words) of it, case-insensitive",
                    _check_name),
              Param("not_last", list, DEFAULT_NOT_LAST, "last words that make a name about a secret, not one: where "
                    "it is (FILE, PATH, NAME: a Kubernetes Secret's name), which (ID), how it is used (TTL)",
                    _check_name)))
def no_secret_in_env(workload: Workload, params: Mapping[str, Any]) -> Iterator[Violation]:
    """Warn on a secret written as an environment variable's value, naming the variable and never its value.

    Why:
        A password or token in a manifest, a compose file or a Dockerfile is in the repository, in every clone and
        in CI logs; in a Pod spec anyone who may read Pods reads it; an ENV, or an ARG a RUN uses, stays in the
        image for anyone who pulls it. A variable is a secret's when its name holds one of `names` as whole
        words (`DB_PASSWORD`, `GITHUB_TOKEN`, `AWS_SECRET_ACCESS_KEY`, `STRIPE_API_KEY`; not
        `TOKENIZERS_PARALLELISM`), case-insensitive, words split at `_` (and `.` or `-`). Its value must be
        written literally: Kubernetes `env[].value` (not `valueFrom`; `envFrom` holds no value), compose
        `environment` in the file's own text (a value interpolated from `.env`, an `--env-file` or the shell is
        where a secret belongs and passes; `${VAR:-default}` whose default is used is written in the file and does
        not; `env_file:` contents are another file, usually untracked, and are not read), Dockerfile `ENV` values
        and `ARG` defaults of every stage, as written, and a resolved image config's `Env`. Empty values,
        booleans, numbers, references (`$(VAR)`, `${VAR}`, `$VAR`), paths under `/run/secrets/` and names
        whose last word says they are about a secret rather than one (`not_last`: `DB_PASSWORD_FILE`,
        `TLS_SECRET_NAME`, a Kubernetes Secret's name; `AWS_ACCESS_KEY_ID`; `TOKEN_TTL`) pass. Findings name the
        variable and where it is set, never the value, in every format. Peers: trivy's secret scanning (it finds
        secrets by their value's shape, in files and image layers), compose-lint's CL-0020 (credential-shaped
        environment keys with literal values), checkov's
        CKV_K8S_35 (prefer secrets as files over environment variables); kube-score and Polaris have no
        counterpart. A warning by default: a name is evidence, not proof (a `TOKEN_TTL` of `1h` is no secret).

    Fix:
        Kubernetes: `valueFrom: {secretKeyRef: {name: app, key: db-password}}`. Compose: write
        `DB_PASSWORD: ${DB_PASSWORD}` and keep the value in an untracked `.env`, or use `secrets:` and the
        image's `*_FILE` variable. Dockerfile: no secret in ENV or an ARG default; use `RUN --mount=type=secret`
        at build time and the runtime's environment at run time. To match other names, set `names`.

    Example:
        ```yaml
        # compose: warns on DB_PASSWORD (written in the file); API_TOKEN comes from .env and passes
        services:
          app:
            environment:
              DB_PASSWORD: hunter2
              API_TOKEN: ${API_TOKEN}
              DB_PASSWORD_FILE: /run/secrets/db_password
        ```
    """
    patterns = _patterns(tuple(params.get("names", DEFAULT_NAMES)))
    not_last = _words(tuple(params.get("not_last", DEFAULT_NOT_LAST)))
    for container in workload.containers:
        if not container.env and (container.image_config is None or not container.image_config.env):
            continue
        name = container_field(workload, container)
        who = subject(workload, container)
        for env in container.env:
            if secret_name(env.name, patterns, not_last) and holds_value(env.value):
                # a Dockerfile's line reads the same under every service that builds it (reported once, cli/repeats)
                yield _violation("the Dockerfile" if env.via in ("ENV", "ARG") else who, env.name, env.via, env.origin,
                                 name, "")
        config = container.image_config
        if config is not None and config.env:
            image = "" if workload.source == "image" or container.image is None else container.image.value
            origin = container.image.origin if container.image is not None else container.origin
            for entry in config.env:
                key, _, value = entry.partition("=")
                if secret_name(key, patterns, not_last) and holds_value(value):
                    yield _violation(who, key, "Env", origin, name, image)


def _violation(who: str, name: str, via: str, origin: Origin, container: str | None, image: str) -> Violation:
    where, why, fix = _WHERE[via]
    if via == "Env":
        message = f"{who}: image '{image}' sets {name} {where}: {why}" if image else f"{who} sets {name} {where}: {why}"
    else:
        message = f"{who} sets {name} to a literal value {where}: {why}"
    return Violation(message=message, remediation=fix.replace("NAME", name), origin=origin, value=None,
                     container=container, key=f"{via} {name}")


__all__ = ["DEFAULT_NAMES", "holds_value", "no_secret_in_env", "secret_name"]
