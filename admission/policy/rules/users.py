"""Which user a container runs as: run-as-non-root and numeric-user (architecture §4)."""

from __future__ import annotations

import re
from collections.abc import Iterator, Mapping
from typing import Any, Literal

from admission.findings import Violation
from admission.model import Container, Located, Origin, Setting, Workload, frozen
from admission.policy.rule import rule
from admission.policy.rules.common import container_field, subject

MAX_UID = 2147483647  # k8s IsValidUserID: 0..MaxInt32; 0 is root
_INT = re.compile(r"[+-]?[0-9]+\Z")
WINDOWS_ADMIN = "ContainerAdministrator"  # what a Windows container runs as when nothing says otherwise (servercore)
WINDOWS_USER = "ContainerUser"  # the unprivileged account every Windows base image has (nanoserver's default)


@frozen
class UserKind:
    kind: Literal["root", "uid", "invalid", "name"]
    uid: int | None
    name: str | None


def classify_user(text: str) -> UserKind:
    """Classify an image/compose user the way the container runtime and kubelet do.

    Only the part before the first ':' counts; it is a uid when Go's ParseInt(s, 10, 64) accepts it.
    """
    part = text.split(":", 1)[0]
    if part in ("", "root"):
        return UserKind("root", 0 if part == "" else None, part or None)
    if _INT.match(part):
        uid = int(part)
        if -(2**63) <= uid < 2**63:
            if uid == 0:
                return UserKind("root", 0, None)
            if 1 <= uid <= MAX_UID:
                return UserKind("uid", uid, None)
            return UserKind("invalid", uid, None)
    return UserKind("name", None, part)


@frozen
class KnownUser:
    value: Located[str]
    via: Literal["user", "dockerfile", "base", "config"]
    uid: int | None = None  # the uid of a named user, from the image's /etc/passwd (images.resolve_user_names)


def _safe_uid(uid: int | None) -> int | None:
    """Only a uid the kubelet accepts as non-root may be suggested in a fix (never 0, never out of range)."""
    return uid if uid is not None and 1 <= uid <= MAX_UID else None


def known_user(container: Container) -> KnownUser | None:
    """The user the container will run as when it is known without the cluster: compose `user:`,
    then the build Dockerfile's USER (or, when it sets none, its base image's config), then the image config.

    A build Dockerfile without USER runs as its base image's user: root when the chain starts FROM scratch, the
    config's User once the base image is resolved (judged as the kubelet judges an image config), and unknown until
    then, or when the base is a build arg with no value (see `_base_unknown`)."""
    if container.user is not None and container.user.value != "":
        return KnownUser(container.user, "user")
    if container.image_user is not None:
        if container.image_user.value == "":
            inherits = container.inherits_user_from
            if inherits is not None:
                base = container.base_config
                if base is None:
                    return None
                return KnownUser(Located(base.user, inherits.origin), "base", _safe_uid(base.user_uid))
            if container.inherits_unresolved is not None:
                return None
        return KnownUser(container.image_user, "dockerfile", _safe_uid(container.image_user_uid))
    if container.image_config is not None:
        origin = container.image.origin if container.image else container.origin
        return KnownUser(Located(container.image_config.user, origin), "config", _safe_uid(container.image_config.user_uid))
    return None


def _uid_hint(known: KnownUser, name: str | None) -> str:
    return str(known.uid) if known.uid is not None else "10001"


def _named(known: KnownUser, name: str | None) -> str:
    if known.uid is not None:
        return f"{known.uid} (the uid of '{name}' in the image's /etc/passwd)"
    return f"the numeric uid of '{name}' (e.g. 10001)"


def _describe(known: KnownUser) -> str:
    value = known.value.value
    if known.via == "user":
        return f"user: \"{value}\""
    if known.via == "dockerfile":
        # Without USER the user is the base's; here the chain starts FROM scratch (known_user), whose user is root.
        return f"USER {value}" if value else "no USER instruction, and the image is built FROM scratch"
    if known.via == "base":
        return (f"no USER instruction, and the base image's config User \"{value}\"" if value
                else "no USER instruction, and a base image config with no User")
    return f"image config User \"{value}\"" if value else "an image config with no User"


def _fix_root(workload: Workload, known: KnownUser) -> str:
    if known.via == "user":
        return 'set user: to a non-root uid that exists in the image, e.g. user: "10001:10001"'
    if known.via in ("dockerfile", "base"):
        if workload.source == "compose":
            return 'add `USER 10001` to the Dockerfile\'s final stage (create that uid first), or set user: "10001" on the service'
        return "add `USER 10001` to the final stage, after creating that user (e.g. `useradd -u 10001 app`)"
    if workload.source == "kubernetes":
        return "set securityContext.runAsUser to a non-zero uid, e.g. 10001, or rebuild the image with `USER 10001`"
    return "rebuild the image with `USER 10001` in its final stage"


def _fix_unknown(workload: Workload) -> str:
    if workload.source == "compose":
        return 'set user: "10001:10001" on the service (a uid that exists in the image), or build from a Dockerfile whose final stage sets USER 10001'
    return ("set securityContext.runAsNonRoot: true so the kubelet refuses to start it as root, "
            "and a numeric securityContext.runAsUser such as 10001")


def _base_unknown(workload: Workload, container: Container) -> tuple[str, str] | None:
    """When the build Dockerfile sets no USER and its base image's user is not known: what is known, as a sentence,
    and how to learn the rest, as the end of a fix. None otherwise. Never "runs as root": nobody knows that.
    Called only where known_user found nothing, so a set image_user here is a Dockerfile without USER."""
    if container.image_user is None:
        return None
    here = "this Dockerfile" if workload.source == "dockerfile" else "its build Dockerfile"
    base = container.inherits_user_from
    if base is not None:
        if container.base_config_error:
            return (f"no USER in {here}, and the user of its base image {base.value} is unknown: its config is "
                    f"unavailable ({container.base_config_error})", "")
        return (f"no USER in {here}, and the user of its base image {base.value} is not known offline",
                "or pass --resolve-images to read it")
    unresolved = container.inherits_unresolved
    if unresolved is None:
        return None
    names = ", ".join(unresolved.args)
    plural = "s" if len(unresolved.args) > 1 else ""
    given = ("set it in the service's build.args" if workload.source == "compose"
             else " ".join(f"--build-arg {name}=<image>" for name in unresolved.args))
    return (f"no USER in {here}, and its base image {unresolved.text} is set by build arg{plural} {names} with no "
            "value, so its user is unknown", f"or {'pass ' if workload.source != 'compose' else ''}{given} "
            "with --resolve-images to read it")


def _fix_base_unknown(workload: Workload, more: str) -> str:
    if workload.source == "compose":
        fix = 'add `USER 10001` to the Dockerfile\'s final stage (create that uid first), or set user: "10001" on the service'
    else:
        fix = "set `USER 10001` in the final stage, after creating that user (e.g. `useradd -u 10001 app`)"
    return f"{fix}, {more}" if more else fix


def _unknown_because(container: Container) -> str:
    """Why the image user is unknown, as a parenthesis for a message ("" when there is nothing more to say)."""
    if container.image_user_unknown:
        return f" ({container.image_user_unknown})"
    if container.image_config_error:
        return f" (its image config is unavailable: {container.image_config_error})"
    return ""


def windows(workload: Workload) -> Setting | None:
    """Why the object's containers are Windows containers (`os.name: windows`, a Windows nodeSelector, a Windows base
    image or SHELL, an image config's os), or None."""
    if workload.windows is not None:
        return workload.windows
    if workload.os == "windows":
        return Setting("windows", "os: windows", workload.origin)
    return None


def _windows_admin(name: str) -> bool:
    """The kubelet's Windows runAsNonRoot test (isAdministratorUsername): ContainerAdministrator, in any case, with or
    without a domain (`User Manager\\ContainerAdministrator`); an empty image user is that account too."""
    name = name.strip()
    return name == "" or name.rpartition("\\")[2].casefold() == WINDOWS_ADMIN.casefold()


def _windows_fix(workload: Workload, known: KnownUser | None) -> str:
    account = f"{WINDOWS_USER}, the unprivileged account of Windows base images"
    if known is not None and known.via == "user":
        return f"set user: {WINDOWS_USER} on the service ({account})"
    if workload.source == "kubernetes":
        return (f"set securityContext.windowsOptions.runAsUserName: {WINDOWS_USER} ({account}) and runAsNonRoot: true, "
                f"or build the image with `USER {WINDOWS_USER}`; runAsUser and numeric uids do not apply to Windows")
    if workload.source == "compose":
        return (f"add `USER {WINDOWS_USER}` to the Dockerfile's final stage ({account}), or set user: {WINDOWS_USER} "
                "on the service; useradd and numeric uids do not apply to Windows images")
    if workload.source == "image":
        return f"rebuild the image with `USER {WINDOWS_USER}` in its final stage ({account})"
    return f"add `USER {WINDOWS_USER}` to the final stage ({account}); useradd and numeric uids do not apply to Windows"


def _run_as_non_root_windows(workload: Workload, evidence: Setting) -> Iterator[Violation]:
    """run-as-non-root for Windows containers: ContainerAdministrator is their root (the kubelet's Windows check)."""
    on = f"a Windows container ({evidence.text})"
    for container in workload.containers:
        who = subject(workload, container)
        name = container_field(workload, container)
        if container.run_as_user_name is not None:
            given = container.run_as_user_name
            if _windows_admin(given.value):
                yield Violation(
                    message=(f"{who} runs as {WINDOWS_ADMIN}, the administrator of {on}: "
                             f"windowsOptions.runAsUserName is {given.value!r}"),
                    remediation=f"set securityContext.windowsOptions.runAsUserName to {WINDOWS_USER}",
                    origin=given.origin, value=given.value, container=name, key="user")
            continue
        non_root = container.run_as_non_root is not None and container.run_as_non_root.value
        known = known_user(container)
        if known is None:
            if non_root:
                continue  # the kubelet refuses an image whose user is ContainerAdministrator
            unknown_base = _base_unknown(workload, container)
            if unknown_base is not None:
                sentence, more = unknown_base
                fix = _windows_fix(workload, None)
                yield Violation(message=f"{who}: {sentence}; {on} runs as {WINDOWS_ADMIN} unless its image sets another user",
                                remediation=f"{fix}, {more}" if more else fix, origin=container.image_user.origin,  # type: ignore[union-attr]
                                value=None, container=name, key="user")
                continue
            ignored = " (runAsUser applies only to Linux containers)" if container.run_as_user is not None else ""
            if workload.source == "kubernetes":
                why = f"sets neither windowsOptions.runAsUserName nor runAsNonRoot{ignored}, and its image user is unknown"
            else:
                why = "sets no user: and its image user is unknown"
            why += _unknown_because(container)
            yield Violation(message=f"{who} {why}; {on} runs as {WINDOWS_ADMIN} unless its image sets another user",
                            remediation=_windows_fix(workload, None), origin=container.origin, value=None,
                            container=name, key="user")
            continue
        if _windows_admin(known.value.value):
            how = _describe(known)
            if known.value.value == "":
                how += f", and Windows runs a container as {WINDOWS_ADMIN} unless its image names another user"
            yield Violation(message=f"{who} runs as {WINDOWS_ADMIN}, the administrator of {on}: {how}",
                            remediation=_windows_fix(workload, known), origin=known.value.origin,
                            value=known.value.value, container=name, key="user")


@rule("run-as-non-root", severity="deny", summary="Containers must not run as root.",
      applies={"kubernetes": "every container, init and ephemeral", "compose": "every service",
               "dockerfile": "final stage (or the build.target stage)", "image": "config User"})
def run_as_non_root(workload: Workload, params: Mapping[str, Any]) -> Iterator[Violation]:
    """Predict the user each container runs as, and deny root or a user nobody can prove is not root.

    Why:
        A process that runs as root inside a container is root on the host's kernel: one container escape
        or a writable host mount gives away the node. The kubelet's `runAsNonRoot` check only runs when the
        container starts, so a bad image fails in production (`CreateContainerConfigError`) rather than in CI.
        This rule decides as the kubelet will, and is stricter where the kubelet checks nothing.

        Order: an effective `runAsUser` decides (0 denies). Otherwise the known user decides: compose `user:`,
        the build Dockerfile's USER, or the image config. Empty, `root`, `0` and `0:*` are root; a uid outside
        1..2147483647 is invalid; a name with `runAsNonRoot: true` is refused by the kubelet. With no known user,
        `runAsNonRoot: true` passes (the kubelet enforces it) and anything else is denied.

        A Dockerfile (or a compose build) whose final stage sets no USER runs as its base image's user: root when
        it is built FROM scratch; the base image config's User once `--resolve-images` reads it, judged as the same
        image in a Pod would be; unknown until then (denied, like a Pod that establishes nothing, with the message
        saying the user is unknown, not that it is root), and unknown when the base is a build arg with no value.

        Windows containers have no root and no uids: their administrator is `ContainerAdministrator` (what a
        servercore image runs as when nothing else is set), and `ContainerUser` is the unprivileged account every
        Windows base image has. A Windows pod (`spec.os.name: windows`, or a `nodeSelector` of
        `kubernetes.io/os: windows`), a Windows Dockerfile (its base image is windows/servercore, nanoserver,
        server or windows, or a `*-windowsservercore-*`/`*-nanoserver-*` variant; or its SHELL is cmd or
        PowerShell) and a Windows image config are judged as the kubelet judges Windows: an effective
        `windowsOptions.runAsUserName` decides (ContainerAdministrator denies, any other account passes); else the
        known image user decides (none, or ContainerAdministrator, denies); else `runAsNonRoot: true` passes (the
        kubelet then refuses ContainerAdministrator) and anything else is denied. `runAsUser` and numeric uids are
        ignored there.

    Fix:
        Create a user with a fixed numeric uid in the image and switch to it with `USER 10001`. In Kubernetes
        also set `securityContext.runAsNonRoot: true` and `runAsUser: 10001`; in compose set `user: "10001"`.
        For Windows: `USER ContainerUser` in the Dockerfile; in Kubernetes
        `securityContext.windowsOptions.runAsUserName: ContainerUser` and `runAsNonRoot: true`.

    Example:
        ```yaml
        # denied: nothing establishes a non-root user
        spec:
          containers:
            - name: app
              image: registry.example.com/app:1.4.2
        # passes
        spec:
          securityContext: {runAsNonRoot: true, runAsUser: 10001}
        # a Windows pod passes with
        spec:
          os: {name: windows}
          securityContext: {runAsNonRoot: true, windowsOptions: {runAsUserName: ContainerUser}}
        ```
        ```dockerfile
        # Windows: denied, it runs as ContainerAdministrator
        FROM mcr.microsoft.com/windows/servercore:ltsc2022
        # passes
        USER ContainerUser
        ```
    """
    evidence = windows(workload)
    if evidence is not None:
        yield from _run_as_non_root_windows(workload, evidence)
        return
    for container in workload.containers:
        name = container_field(workload, container)
        if container.run_as_user is not None:
            if container.run_as_user.value == 0:
                yield Violation(
                    message=f"{subject(workload, container)} runs as root: runAsUser is 0",
                    remediation="set runAsUser to a non-zero uid that exists in the image, e.g. 10001, and runAsNonRoot: true",
                    origin=container.run_as_user.origin, value="0", container=name, key="user")
            continue
        who = subject(workload, container)
        non_root = container.run_as_non_root is not None and container.run_as_non_root.value
        known = known_user(container)
        if known is None:
            if non_root:
                continue
            unknown_base = _base_unknown(workload, container)
            if unknown_base is not None:
                sentence, more = unknown_base
                yield Violation(message=f"{who}: {sentence}", remediation=_fix_base_unknown(workload, more),
                                origin=container.image_user.origin, value=None, container=name, key="user")  # type: ignore[union-attr]
                continue
            origin = container.origin
            if workload.source != "kubernetes":
                why = "sets no user: and its image user is unknown"
            elif container.run_as_non_root is not None:
                why = "sets runAsNonRoot: false and no runAsUser, and its image user is unknown"
                origin = container.run_as_non_root.origin
            else:
                why = "sets neither runAsUser nor runAsNonRoot, and its image user is unknown"
            why += _unknown_because(container)
            if workload.source == "kubernetes":
                why += "; nothing stops it running as root"
            yield Violation(message=f"{who} {why}", remediation=_fix_unknown(workload),
                            origin=origin, value=None, container=name, key="user")
            continue
        user = classify_user(known.value.value)
        if user.kind == "root":
            if non_root and known.via == "config":
                message = f"{who}: container has runAsNonRoot and image will run as root ({_describe(known)}); the kubelet will refuse to start it"
            else:
                message = f"{who} runs as root: {_describe(known)}"
            yield Violation(message=message, remediation=_fix_root(workload, known), origin=known.value.origin,
                            value=known.value.value, container=name, key="user")
        elif user.kind == "invalid":
            yield Violation(
                message=(f"{who} has an invalid user id ({user.uid}): a uid must be between 1 and {MAX_UID}, "
                         "so the kubelet refuses to start it"),
                remediation=f"use a uid between 1 and {MAX_UID}, e.g. 10001",
                origin=known.value.origin, value=known.value.value, container=name, key="user")
        elif user.kind == "name" and non_root and known.via != "user":
            yield Violation(
                message=(f"{who}: container has runAsNonRoot and image has non-numeric user ({user.name}), "
                         "cannot verify user is non-root; the kubelet will refuse to start it"),
                remediation=(f"set securityContext.runAsUser to {_named(known, user.name)}, "
                             f"or rebuild the image with a numeric `USER {_uid_hint(known, user.name)}`"),
                origin=_origin_for_name(container, known), value=known.value.value, container=name, key="user")


def _origin_for_name(container: Container, known: KnownUser) -> Origin:
    # The decision is made in the manifest (runAsNonRoot), not in the image, so point at the manifest.
    if container.run_as_non_root is not None:
        return container.run_as_non_root.origin
    return known.value.origin


@rule("numeric-user", severity="warn", summary="The user should be a numeric uid, not a name.",
      applies={"kubernetes": "effective user is a name (only when runAsUser is unset)",
               "compose": "effective user is a name (user:, build Dockerfile or config)",
               "dockerfile": "final USER that is a name", "image": "config User that is a name"})
def numeric_user(workload: Workload, params: Mapping[str, Any]) -> Iterator[Violation]:
    """Warn when the user a container runs as is a name rather than a numeric uid.

    Why:
        A user name means nothing to Kubernetes: with `runAsNonRoot: true` the kubelet refuses to start an
        image whose user is a name ("image has non-numeric user (appuser), cannot verify user is non-root").
        Names also resolve through the image's /etc/passwd, so the same name can be a different uid (or root)
        in another base image. A number is what the kernel enforces.
        This rule stays quiet where run-as-non-root already denies, for `root`, and for Windows containers (pods,
        Dockerfiles and images that run-as-non-root recognises as Windows): Windows accounts are names by design
        (`ContainerUser`), and no uid applies to them.

    Fix:
        Create the user with a fixed uid and refer to it by number: `RUN useradd -u 10001 app` then
        `USER 10001`; in compose `user: "10001"`; in Kubernetes `runAsUser: 10001`.

    Example:
        ```dockerfile
        # warns
        USER appuser
        # passes
        USER 10001
        ```
    """
    if windows(workload) is not None:
        return
    for container in workload.containers:
        if container.run_as_user is not None:
            continue
        known = known_user(container)
        if known is None:
            continue
        user = classify_user(known.value.value)
        if user.kind != "name":
            continue
        non_root = container.run_as_non_root is not None and container.run_as_non_root.value
        if non_root and known.via != "user":
            continue  # run-as-non-root denies this already
        uid = _uid_hint(known, user.name)
        if known.uid is not None and known.via != "user":
            where = (f"the Dockerfile creates '{user.name}' with uid {known.uid}" if known.via == "dockerfile"
                     else f"the image's /etc/passwd gives '{user.name}' the uid {known.uid}")
            use = (f"securityContext.runAsUser: {known.uid}" if workload.source == "kubernetes"
                   else f"`USER {known.uid}`")
            fix = f"{where}: use {use} instead of the name"
        elif known.via == "user":
            fix = f'use the numeric uid of \'{user.name}\' in the image instead of the name, e.g. user: "{uid}"'
        elif workload.source == "kubernetes":
            fix = f"set securityContext.runAsUser to {_named(known, user.name)}, or rebuild with `USER {uid}`"
        else:
            fix = f"create the user with a fixed uid and switch to it by number: `RUN useradd -u {uid} {user.name}` then `USER {uid}`"
        yield Violation(
            message=(f"{subject(workload, container)} runs as the named user '{user.name}' ({_describe(known)}); "
                     "Kubernetes cannot verify a name is non-root, so runAsNonRoot: true would refuse to start it"),
            remediation=fix, origin=known.value.origin, value=known.value.value,
            container=container_field(workload, container), key="user")
