"""Image references: image-tag-pinned (architecture §4)."""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator, Mapping
from functools import partial
from typing import Any

from admission.findings import Violation
from admission import reference
from admission.model import Container, ImageConfig, Located, UnresolvedBase, Workload
from admission.policy.rule import Param, rule
from admission.policy.rules.common import container_field, repository, subject


def _repo(text: str, tag: str) -> str:
    """The reference as the user wrote it, without its tag (fixes keep their spelling, not docker.io/library/...)."""
    return text[: -len(tag) - 1] if text.endswith(":" + tag) else text


# What an unfilled template leaves in a reference: `$IMAGE_URL`, `${IMAGE}`, `<DOCKER_REPO>`, and words in capitals
# (`REGION-docker.pkg.dev/PROJECT_ID/app`) where a real reference has lower case. Only asked of invalid references.
_PLACEHOLDER = re.compile(r"\$\{?[A-Za-z_][A-Za-z0-9_]*\}?|<[^<>\s]+>|(?<![A-Za-z0-9])[A-Z][A-Z0-9_]*[A-Z0-9](?![A-Za-z0-9])")


def placeholders(text: str) -> list[str]:
    """The unfilled placeholders of an image reference as written, in order (none for a mixed-case `MyApp`)."""
    return list(dict.fromkeys(_PLACEHOLDER.findall(text)))


def _check(ref: Located[str], *, who: Callable[[], str], params: Mapping[str, Any], container: str | None,
           key: str, built: bool = False, config: ImageConfig | None = None) -> Iterator[Violation]:
    text = ref.value
    try:
        parsed = reference.parse_normalized_named(text)
    except reference.ReferenceError as exc:
        found = placeholders(text)
        if found:
            yield Violation(
                message=(f"{who()} uses image '{text}', an unfilled placeholder ({', '.join(found)}): this image cannot "
                         "be pulled as written"),
                remediation=("fill it in before the file is used: render the template or set the variable as the "
                             "pipeline does, and check the result (e.g. `envsubst < FILE | admission-cli check -`)"),
                origin=ref.origin, value=text, container=container, key=key)
            return
        shown = text if text else "(empty)"
        yield Violation(
            message=f"{who()} uses an invalid image reference '{shown}': {exc}",
            remediation="write a valid reference: [registry[:port]/]repository[:tag][@sha256:<64 hex>], repository in lower case",
            origin=ref.origin, value=text, container=container, key=key)
        return
    if parsed.digest:
        return
    refused = tag_refusal(parsed.tag, params)
    if built and (refused == "no tag" or refused == "no version" or (
            refused == "disallowed" and parsed.tag is not None and parsed.tag.casefold() == reference.DEFAULT_TAG)):
        # `build:` with `image: myapp` tags what it builds myapp:latest on this machine: nothing is pulled, but the
        # guide's red lines (no latest, a version in every tag) hold for what is built and shipped too.
        name = _repo(text, parsed.tag) if parsed.tag else text
        if refused == "no version" and parsed.tag is not None and parsed.tag.casefold() != reference.DEFAULT_TAG:
            yield Violation(
                message=(f"{who()} builds '{text}' locally, and its tag '{parsed.tag}' names no version: every build "
                         "replaces the last one under the same name"),
                remediation=(f"set image: {suggest(text, parsed.tag, None, version='1.4.0')} (the version this build "
                             "releases), so that every build has its own tag and a rollback can name the one before"),
                origin=ref.origin, value=text, container=container, key=key)
            return
        yield Violation(
            message=f"{who()} builds '{text}' locally, so {tag_the_build(text, parsed.tag)}",
            remediation=(f"set image: {name}:1.4.0 (the version this build releases), so that every build has its own "
                         "tag and a rollback can name the one before"),
            origin=ref.origin, value=text, container=container, key=key)
        return
    if refused == "no tag":
        yield Violation(
            message=f"{who()} uses image '{text}' with no tag, which means ':latest': it changes under you and cannot be rolled back",
            remediation=f"pin a version tag or a digest, e.g. '{text}:1.2.3' or '{text}@sha256:<digest>'",
            origin=ref.origin, value=text, container=container, key=key)
    elif refused == "disallowed" and parsed.tag is not None:
        yield Violation(
            message=f"{who()} uses image '{text}' with the tag '{parsed.tag}', which the policy does not allow (disallowed_tags)",
            remediation=f"pin a release tag or a digest instead, e.g. '{_repo(text, parsed.tag)}:1.2.3' or "
                        f"'{_repo(text, parsed.tag)}@sha256:<digest>'",
            origin=ref.origin, value=text, container=container, key=key)
    elif refused == "no version" and parsed.tag is not None:
        name = _repo(text, parsed.tag)
        version = config_version(name, config)
        now = f" (today it is {version})" if version else ""
        yield Violation(
            message=(f"{who()} uses image '{text}': tag '{parsed.tag}' names no version{now}; it moves with every "
                     "release and cannot be rolled back (require_version)"),
            remediation=(f"use {suggest(text, parsed.tag, config)} or a digest ('{name}@sha256:<digest>'); "
                         "let Renovate or Dependabot move it"),
            origin=ref.origin, value=text, container=container, key=key)
    elif params.get("require_digest"):
        yield Violation(
            message=f"{who()} uses image '{text}' pinned by tag only; the policy requires a digest (require_digest)",
            remediation=f"add the digest: '{text}@sha256:<digest>' (e.g. from `skopeo inspect docker://{text}`)",
            origin=ref.origin, value=text, container=container, key=key)


def tag_refusal(tag: str | None, params: Mapping[str, Any]) -> str | None:
    """Why image-tag-pinned refuses a reference for its tag, which no digest added to it would change: "no tag",
    "disallowed" (`disallowed_tags`) or "no version" (`require_version`: a tag without a digit); None when only
    `require_digest` could refuse it. The webhook's mutation asks this before it pins anything (a digest pins, so
    `nginx:latest@sha256:...` would pass), whatever the rule's severity, the enforcement or the exemptions: a tag
    refused here must reach the rule as written."""
    if tag is None:
        return "no tag"
    if tag.casefold() in {str(t).casefold() for t in params.get("disallowed_tags", ())}:
        return "disallowed"
    if params.get("require_version", True) and not names_version(tag):
        return "no version"
    return None


def names_version(tag: str) -> bool:
    """Whether a tag names a version: it holds a digit (`1.27-alpine`, `v2`, `2024.06`, `3`), where `alpine`, `lts`,
    `stable`, `nightly` or `bookworm` name a channel, a variant or a codename that moves from release to release."""
    return any("0" <= c <= "9" for c in tag)


# Words of a tag that name a channel (what moves), dropped from a suggested tag; other words (a variant such as
# `alpine` or `apache`, an environment such as `prod`) are kept after the version: the guide's `name:version-env`.
_CHANNELS = frozenset((
    "latest", "stable", "lts", "edge", "nightly", "main", "master", "trunk", "head", "current", "release", "mainline",
    "rolling", "canary", "beta", "alpha", "rc", "next", "unstable", "testing", "snapshot", "preview", "experimental"))
# A release as the grammar allows a tag, after a Debian epoch (`1:`) and revision suffix (`+maria~ubu2404`) are cut.
_VERSION = re.compile(r"[0-9][0-9A-Za-z.]{0,63}")


def config_version(name: str, config: ImageConfig | None) -> str | None:
    """The version the image a tag names says it is, from the `<NAME>_VERSION` variable official images set
    (`REDIS_VERSION=7.2.5`, `MARIADB_VERSION=1:11.4.2+maria~ubu2404`), when its config was resolved. Only a variable
    named after the repository counts: a label or another image's variable is inherited from a base image."""
    if config is None or not config.env:
        return None
    wanted = name.rpartition("/")[2].upper().replace("-", "_").replace(".", "_") + "_VERSION="
    for entry in config.env:
        if entry.startswith(wanted):
            value = entry[len(wanted):]
            value = value.partition(":")[2] if ":" in value else value  # a Debian epoch
            match = _VERSION.match(value)
            if match and "." in match.group(0):
                return match.group(0).rstrip(".")
    return None


def suggest(text: str, tag: str, config: ImageConfig | None, *, version: str = "1.2.3") -> str:
    """A pinned reference to suggest for a tag that names no version: the version the image config gives, else
    `version`, followed by the tag's words that are not a channel (`redis:alpine` -> `redis:7.2.5-alpine`,
    `app:latest-accounting` -> `app:1.2.3-accounting`, `mariadb:lts` -> `mariadb:1.2.3`)."""
    name = _repo(text, tag)
    words = [w for w in re.split(r"[-_.]", tag) if w and w.casefold() not in _CHANNELS]
    return f"{name}:" + "-".join([config_version(name, config) or version, *words])


def tag_the_build(text: str, tag: str | None) -> str:
    """What to say of a compose `image:` beside `build:` with no tag (or `latest`): the build is tagged latest
    (`check` denies it, `pin` leaves it alone; both say this)."""
    name = _repo(text, tag) if tag else text
    return f"the build is tagged latest: tag it with a version (image: {name}:1.4.0)"


def _instruction(ref: Located[str]) -> str:
    """Which instruction named a base image, from its field path: `stages[i].from`, `stages[i].copies_from[k]`,
    `stages[i].mounts_from[k]` (the path of a dockerfile_inline base ends with its own)."""
    path = ref.origin.path
    if ".copies_from[" in path or path.startswith("copies_from["):
        return "COPY --from"
    if ".mounts_from[" in path or path.startswith("mounts_from["):
        return "RUN --mount from="
    return "FROM"


def _base_subject(workload: Workload, container: Container, ref: Located[str]) -> str:
    instruction = _instruction(ref)
    if workload.source == "compose":
        return f"service '{workload.name}' (a {instruction} of its build Dockerfile)"
    return f"a {instruction} line" if instruction == "FROM" else f"a {instruction}"


def _unresolved(base: UnresolvedBase, workload: Workload, container: str | None) -> Violation:
    names = ", ".join(base.args)
    plural = "s" if len(base.args) > 1 else ""
    values = " ".join(f"{name}=<value>" for name in base.args)
    if workload.source == "compose":
        how = f"set the service's build.args ({values}) to the value{plural} the build uses"
    else:
        how = " ".join(f"--build-arg {name}=<value>" for name in base.args)
        how = f"pass {how} with the value{plural} the build uses"
    return Violation(
        message=(f"base image set by build arg{plural} {names}, not checked; "
                 + ("set it in build.args" if workload.source == "compose" else "pass --build-arg")),
        remediation=f"{how}, or give the ARG a pinned default (ARG {base.args[0]}=registry.example.com/base:1.2.3)",
        origin=base.origin, value=base.text, container=container, key=f"FROM {base.text}", severity="warn")


@rule("image-tag-pinned", severity="deny", summary="Images are pinned: a tag that names a version, or a digest.",
      applies={"kubernetes": "every container's image",
               "compose": "image:; for build: services, the FROMs and COPY --froms of its Dockerfile",
               "dockerfile": "every FROM and COPY --from naming an image"},
      params=(Param("disallowed_tags", list, ("latest",), "tags that never count as pinned (case-insensitive)"),
              Param("require_digest", bool, False, "every reference must carry a digest"),
              Param("require_version", bool, True, "a tag must name a version (hold a digit): `alpine`, `lts`, "
                    "`stable`, `nightly` do not")))
def image_tag_pinned(workload: Workload, params: Mapping[str, Any]) -> Iterator[Violation]:
    """Every image reference must name a fixed version: a tag that names a version, or a digest.

    Why:
        `latest` and a missing tag (which means `latest`) name whatever was pushed last. Two nodes can run
        different code under the same manifest, and there is nothing to roll back to. So do tags that name a
        channel, a variant or a codename and no version (`redis:alpine`, `mariadb:lts`, `nextcloud:apache`,
        `app:nightly`, `app:stable`, `app:latest-accounting`, `debian:bookworm`): with `require_version` (the
        default) a tag must hold a digit to count as pinned. `1.27-alpine`, `v2`, `2024.06` and
        `3.12.11-slim-bookworm` pass; so does a major-only tag (`python:3`), which still moves between minor
        releases: `policies/strict.yaml` requires a digest for every reference (`require_digest`). A digest always
        pins, whatever its tag. The guide says it: never `latest`, give the version explicitly, tag as
        `name:version-env`. Trivy's and Polaris' `tagNotSpecified` and kube-score's `container-image-tag` only refuse
        `latest` and a missing tag: this rule is stricter by `require_version` (turn it off to match them).
        References are parsed with the distribution grammar, so a registry port is not a tag (`registry:5000/app`
        has no tag), and an invalid reference is named as invalid (the API server does not check reference syntax).
        In Dockerfiles every `FROM` and every `COPY --from` (and `RUN --mount from=`) that names an image is checked;
        `FROM scratch` and `FROM <earlier stage>` / `COPY --from=<stage>` are not images. ARG defaults, the CLI's
        `--build-arg NAME=VALUE` and compose `build.args` are substituted first. A FROM whose image comes only from a
        build arg with no value (`ARG BASE_IMAGE` then `FROM ${BASE_IMAGE}`) names no image that can be checked: it is
        a warn finding (`base image set by build arg BASE_IMAGE, not checked`), whatever the rule's severity, and every
        other check of the file still runs. A compose service that only has `build:` is checked through the FROMs
        of its Dockerfile; one with `build:` and an untagged (or `latest`) `image:` tags its build latest, which is
        denied as "the build is tagged latest", and one whose `image:` tag names no version (`myapp:dev`) is denied
        too: what is built is tagged, shipped and rolled back by that tag like any other. An invalid reference that
        holds an unfilled placeholder (`$IMAGE`, `${IMAGE}`, `<DOCKER_REPO>`, a word in capitals such as
        `PROJECT_ID`) is named as one: it cannot be pulled as written.

    Fix:
        Pin a release tag (`python:3.12.4-slim`) or, better, a digest (`python@sha256:...`); let Renovate or
        Dependabot move it. For a tag with no version the fix suggests one that keeps its variant
        (`redis:alpine` -> `redis:7.2.5-alpine`), with the version the image's `<NAME>_VERSION` variable gives when
        its config was resolved, else a placeholder `1.2.3`. A codename becomes its number (`debian:12`). With
        `require_digest: true` every reference needs a digest. For a base image set by a build arg, check with the
        value the build uses: `admission-cli check --build-arg BASE_IMAGE=... Dockerfile`.

    Example:
        ```yaml
        image: nginx            # denied: no tag
        image: nginx:latest     # denied
        image: redis:alpine     # denied: names no version
        image: nginx:1.27.1     # passes
        image: python:3         # passes (a digest is required under policies/strict.yaml)
        ```
        ```dockerfile
        FROM nginx:latest                                  # denied
        FROM python:slim                                   # denied: names no version
        COPY --from=nginx:latest /etc/nginx /etc/nginx     # denied: COPY --from names an image too
        COPY --from=nginx:1.27.1 /etc/nginx /etc/nginx     # passes
        ```
    """
    for container in workload.containers:
        name = container_field(workload, container)
        if container.image is not None:
            yield from _check(container.image, who=partial(subject, workload, container), params=params, container=name,
                              key="image", built=container.built, config=container.image_config)  # the subject is named only in a violation
        for base in container.base_images:
            yield from _check(base, who=partial(_base_subject, workload, container, base), params=params, container=name,
                             key=f"FROM {repository(base.value)}")
        for unresolved in container.unresolved_bases:
            yield _unresolved(unresolved, workload, name)
