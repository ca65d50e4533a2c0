"""The distribution/reference image-reference grammar and Docker normalisation, in pure Python (stdlib `re` only).

Mirrors github.com/distribution/reference (Parse, ParseNormalizedNamed, ParseNamed, ParseAnyReference,
ParseDockerRef, WithName/WithTag/WithDigest, FamiliarString) and go-digest v1.0.0's digest validation.
Own code, not PyPI docker-image-py: that fails 49 of 322 non-legacy vectors (no ParseAnyReference/ParseDockerRef/With*; FamiliarString drops tag+digest), accepts a trailing newline and imports in ~45 ms.

Deliberate differences from upstream, each for a reason:
- Digest algorithms: Go accepts an algorithm only when its hash is linked into the binary. docker, containerd,
  the kubelet and the registry all link crypto/sha512 (crypto/tls pulls it in), so sha256, sha384 and sha512
  are accepted by default. Pass `digest_algorithms` to model another binary (upstream's own test binary only
  has sha256, which is why its tests expect sha512 to be unsupported).
- Inputs longer than MAX_REFERENCE_LENGTH are refused before any regex runs: upstream's grammar leaves the
  domain unbounded, but no resolvable host is that long, and the webhook must not spend CPU on a 1 MiB string.
- Non-string input (a YAML integer, null) is an invalid reference, not a TypeError.
"""

from __future__ import annotations

import functools

import re
from collections.abc import Collection
from dataclasses import dataclass
from enum import Enum

__all__ = [
    "ANCHORED_DIGEST_RE",
    "ANCHORED_DOMAIN_RE",
    "ANCHORED_IDENTIFIER_RE",
    "ANCHORED_NAME_RE",
    "ANCHORED_TAG_RE",
    "DEFAULT_DOMAIN",
    "DIGEST_ALGORITHMS",
    "MAX_REFERENCE_LENGTH",
    "NAME_TOTAL_LENGTH_MAX",
    "REFERENCE_RE",
    "ErrorKind",
    "Reference",
    "ReferenceError",
    "parse",
    "parse_any_reference",
    "parse_docker_ref",
    "parse_named",
    "parse_normalized_named",
    "registry_host",
    "split_docker_domain",
    "split_domain",
    "tag_name_only",
    "trim_named",
    "validate_digest",
    "with_digest",
    "with_name",
    "with_tag",
]

# --- constants (upstream names in comments) ----------------------------------------------------------

NAME_TOTAL_LENGTH_MAX = 255  # RepositoryNameTotalLengthMax; applies to the path, not the domain
DEFAULT_DOMAIN = "docker.io"  # defaultDomain
LEGACY_DEFAULT_DOMAIN = "index.docker.io"  # legacyDefaultDomain
OFFICIAL_REPO_PREFIX = "library/"  # officialRepoPrefix
DEFAULT_TAG = "latest"  # defaultTag
LOCALHOST = "localhost"
MAX_REFERENCE_LENGTH = 4096

# go-digest: algorithm -> length of the lower-case hex encoding (Size()*2).
_HEX_LENGTH = {"sha256": 64, "sha384": 96, "sha512": 128}
DIGEST_ALGORITHMS: frozenset[str] = frozenset(_HEX_LENGTH)

# Hub's registry answers under several names; registry identity (allowed_registries, mirrors) folds them.
_DOCKER_HUB_HOSTS = frozenset({"docker.io", "index.docker.io", "registry-1.docker.io"})

# --- the grammar (regexp.go), built from the same pieces -----------------------------------------------
# Character classes are spelled out because Python's \w and \d are Unicode-aware while Go's are ASCII;
# patterns are anchored with \A...\Z because Python's `$` also matches before a trailing newline.

_ALPHANUMERIC = r"[a-z0-9]+"
_SEPARATOR = r"(?:[._]|__|[-]+)"
_DOMAIN_NAME_COMPONENT = r"(?:[a-zA-Z0-9]|[a-zA-Z0-9][a-zA-Z0-9-]*[a-zA-Z0-9])"
_OPTIONAL_PORT = r"(?::[0-9]+)?"
_TAG = r"[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}"
_DIGEST = r"[A-Za-z][A-Za-z0-9]*(?:[-_+.][A-Za-z][A-Za-z0-9]*)*[:][0-9A-Fa-f]{32,}"
_IDENTIFIER = r"[a-f0-9]{64}"
_IPV6_ADDRESS = r"\[(?:[a-fA-F0-9:]+)\]"
_DOMAIN_NAME = _DOMAIN_NAME_COMPONENT + r"(?:\." + _DOMAIN_NAME_COMPONENT + r")*"
_HOST = r"(?:" + _DOMAIN_NAME + r"|" + _IPV6_ADDRESS + r")"
_DOMAIN_AND_PORT = _HOST + _OPTIONAL_PORT
_PATH_COMPONENT = _ALPHANUMERIC + r"(?:" + _SEPARATOR + _ALPHANUMERIC + r")*"
_REMOTE_NAME = _PATH_COMPONENT + r"(?:/" + _PATH_COMPONENT + r")*"
_NAME = r"(?:" + _DOMAIN_AND_PORT + r"/)?" + _REMOTE_NAME


def _anchored(pattern: str) -> re.Pattern[str]:
    return re.compile(r"\A(?:" + pattern + r")\Z", re.ASCII)


#: name[:tag][@digest]; groups: 1 name, 2 tag, 3 digest (upstream ReferenceRegexp).
REFERENCE_RE = _anchored(r"(" + _NAME + r")(?::(" + _TAG + r"))?(?:@(" + _DIGEST + r"))?")
#: [domain/]path; groups: 1 domain, 2 path (upstream anchoredNameRegexp).
ANCHORED_NAME_RE = _anchored(r"(?:(" + _DOMAIN_AND_PORT + r")/)?(" + _REMOTE_NAME + r")")
#: host[:port] alone (upstream anchored(DomainRegexp)). Matches some strings later rejected (port range, bad IPv6).
ANCHORED_DOMAIN_RE = _anchored(_DOMAIN_AND_PORT)
#: a 64-hex image ID (upstream anchoredIdentifierRegexp).
ANCHORED_IDENTIFIER_RE = _anchored(_IDENTIFIER)
ANCHORED_TAG_RE = _anchored(_TAG)
#: the reference grammar's digest: syntax only, no algorithm or length check (upstream anchoredDigestRegexp).
ANCHORED_DIGEST_RE = _anchored(_DIGEST)
# go-digest DigestRegexpAnchored: decides "malformed" versus "unsupported algorithm".
_GO_DIGEST_RE = _anchored(r"[a-z0-9]+(?:[.+_-][a-z0-9]+)*:[a-zA-Z0-9=_-]+")
_LOWER_HEX_RE = _anchored(r"[a-f0-9]+")


# --- errors ---------------------------------------------------------------------------------------------


class ErrorKind(Enum):
    """Upstream's error values; the value is upstream's message."""

    REFERENCE_INVALID_FORMAT = "invalid reference format"  # ErrReferenceInvalidFormat
    TAG_INVALID_FORMAT = "invalid tag format"  # ErrTagInvalidFormat
    DIGEST_INVALID_FORMAT = "invalid digest format"  # ErrDigestInvalidFormat (WithDigest)
    NAME_CONTAINS_UPPERCASE = "repository name must be lowercase"  # ErrNameContainsUppercase
    NAME_EMPTY = "repository name must have at least one component"  # ErrNameEmpty
    NAME_TOO_LONG = f"repository name must not be more than {NAME_TOTAL_LENGTH_MAX} characters"  # ErrNameTooLong
    NAME_NOT_CANONICAL = "repository name must be canonical"  # ErrNameNotCanonical
    NAME_IS_IDENTIFIER = "cannot specify 64-byte hexadecimal strings"  # ParseNormalizedNamed's fmt.Errorf
    CHECKSUM_INVALID_FORMAT = "invalid checksum digest format"  # digest.ErrDigestInvalidFormat
    CHECKSUM_INVALID_LENGTH = "invalid checksum digest length"  # digest.ErrDigestInvalidLength
    DIGEST_UNSUPPORTED = "unsupported digest algorithm"  # digest.ErrDigestUnsupported


class ReferenceError(ValueError):  # noqa: A001 - the name the rules import; shadows only the weakref builtin
    """An image reference that upstream would refuse. `kind` says which error; `reason` is the message."""

    def __init__(self, kind: ErrorKind, reason: str | None = None) -> None:
        self.kind = kind
        self.reason = reason if reason is not None else kind.value
        super().__init__(self.reason)


# --- the value ------------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Reference:
    """A parsed reference. Build it with the functions below; the constructor does not validate.

    `domain` is "" when the input had none (parse/with_name do not default to docker.io). A digest-only
    reference (parse_any_reference of a bare digest) has `domain == path == ""`. `tag`/`digest` are None
    when absent.
    """

    domain: str
    path: str
    tag: str | None = None
    digest: str | None = None

    @property
    def name(self) -> str:
        """Name(): domain/path, or path alone when there is no domain."""
        return f"{self.domain}/{self.path}" if self.domain else self.path

    @property
    def has_name(self) -> bool:
        return bool(self.path)

    @property
    def is_name_only(self) -> bool:
        """IsNameOnly(): neither tag nor digest."""
        return self.tag is None and self.digest is None

    @property
    def familiar_name(self) -> str:
        """FamiliarName(): docker.io and a single-level library/ dropped."""
        domain, path = _familiarize(self.domain, self.path)
        return f"{domain}/{path}" if domain else path

    @property
    def familiar(self) -> str:
        """FamiliarString(): the familiar name with tag and digest, as `docker` prints it."""
        if not self.path:
            return str(self)
        return _join(self.familiar_name, self.tag, self.digest)

    def __str__(self) -> str:
        """String()."""
        return _join(self.name, self.tag, self.digest)


def _join(name: str, tag: str | None, digest: str | None) -> str:
    out = name
    if tag is not None:
        out += ":" + tag
    if digest is not None:
        out = out + "@" + digest if out else digest
    return out


def _familiarize(domain: str, path: str) -> tuple[str, str]:
    # familiarizeName: only one level below library/ is shortened ("library/foo/bar" stays as is).
    if domain != DEFAULT_DOMAIN:
        return domain, path
    if path.startswith(OFFICIAL_REPO_PREFIX):
        rest = path[len(OFFICIAL_REPO_PREFIX) :]
        if "/" not in rest:
            return "", rest
    return "", path


# --- digests (go-digest v1.0.0 Digest.Validate) ---------------------------------------------------------


def validate_digest(digest: str, *, digest_algorithms: Collection[str] = DIGEST_ALGORITHMS) -> str:
    """digest.Parse: return `digest` when valid, else raise ReferenceError with go-digest's error kind."""
    if not isinstance(digest, str):
        raise ReferenceError(ErrorKind.CHECKSUM_INVALID_FORMAT)
    i = digest.find(":")
    if i <= 0 or i + 1 == len(digest):
        raise ReferenceError(ErrorKind.CHECKSUM_INVALID_FORMAT)
    algorithm, encoded = digest[:i], digest[i + 1 :]
    if algorithm not in _HEX_LENGTH or algorithm not in digest_algorithms:
        if _GO_DIGEST_RE.match(digest) is None:
            raise ReferenceError(ErrorKind.CHECKSUM_INVALID_FORMAT)
        raise ReferenceError(ErrorKind.DIGEST_UNSUPPORTED, f"unsupported digest algorithm: {algorithm}")
    if len(encoded) != _HEX_LENGTH[algorithm]:
        raise ReferenceError(
            ErrorKind.CHECKSUM_INVALID_LENGTH,
            f"invalid checksum digest length: {algorithm} needs {_HEX_LENGTH[algorithm]} hex digits, got {len(encoded)}",
        )
    if _LOWER_HEX_RE.match(encoded) is None:
        raise ReferenceError(ErrorKind.CHECKSUM_INVALID_FORMAT, "invalid checksum digest format: not lower-case hex")
    return digest


# --- parsing --------------------------------------------------------------------------------------------


def _check_input(s: object) -> str:
    if not isinstance(s, str):
        raise ReferenceError(
            ErrorKind.REFERENCE_INVALID_FORMAT, f"invalid reference format: expected a string, got {type(s).__name__}"
        )
    if len(s) > MAX_REFERENCE_LENGTH:
        raise ReferenceError(
            ErrorKind.REFERENCE_INVALID_FORMAT,
            f"invalid reference format: longer than {MAX_REFERENCE_LENGTH} characters",
        )
    return s


def parse(s: str, *, digest_algorithms: Collection[str] = DIGEST_ALGORITHMS) -> Reference:
    """Parse: syntax only, no normalisation. "foo/bar" gives domain "foo"; "nginx" gives domain ""."""
    s = _check_input(s)
    if s == "":
        raise ReferenceError(ErrorKind.NAME_EMPTY)
    m = REFERENCE_RE.match(s)
    if m is None:
        lowered = s.lower()
        if lowered != s and REFERENCE_RE.match(lowered) is not None:
            raise ReferenceError(ErrorKind.NAME_CONTAINS_UPPERCASE)
        raise ReferenceError(ErrorKind.REFERENCE_INVALID_FORMAT)
    name, tag, digest = m.group(1), m.group(2), m.group(3)
    domain, path = split_domain(name)
    if len(path) > NAME_TOTAL_LENGTH_MAX:
        raise ReferenceError(ErrorKind.NAME_TOO_LONG)
    if digest is not None:
        validate_digest(digest, digest_algorithms=digest_algorithms)
    return Reference(domain=domain, path=path, tag=tag, digest=digest)


def split_domain(name: str) -> tuple[str, str]:
    """splitDomain: (domain, path) by the grammar alone; ("", name) when `name` is not a valid name."""
    m = ANCHORED_NAME_RE.match(name)
    if m is None:
        return "", name
    return m.group(1) or "", m.group(2)


def split_docker_domain(name: str) -> tuple[str, str]:
    """splitDockerDomain: Docker's rule for whether the first component is a registry.

    It is one when it is `localhost`, contains "." or ":", or has upper case; otherwise the name is on
    docker.io, and a single component gets `library/`. `name` may still carry ":tag"/"@digest".
    """
    maybe_domain, sep, maybe_remote = name.partition("/")
    if not sep:
        return DEFAULT_DOMAIN, OFFICIAL_REPO_PREFIX + name
    if maybe_domain == LOCALHOST:
        domain, remote = maybe_domain, maybe_remote
    elif maybe_domain == LEGACY_DEFAULT_DOMAIN:
        domain, remote = DEFAULT_DOMAIN, maybe_remote
    elif "." in maybe_domain or ":" in maybe_domain:
        domain, remote = maybe_domain, maybe_remote
    elif maybe_domain.lower() != maybe_domain:
        domain, remote = maybe_domain, maybe_remote
    else:
        domain, remote = DEFAULT_DOMAIN, name
    if domain == DEFAULT_DOMAIN and "/" not in remote:
        remote = OFFICIAL_REPO_PREFIX + remote
    return domain, remote


def parse_normalized_named(s: str, *, digest_algorithms: Collection[str] = DIGEST_ALGORITHMS) -> Reference:
    """ParseNormalizedNamed: what `docker pull s` / the kubelet mean. "nginx" -> docker.io/library/nginx.

    This is the entry point for rules. A port is not a tag ("registry:5000/app" has none), and a
    domain-less name with upper case is refused.
    """
    if type(s) is str and digest_algorithms is DIGEST_ALGORITHMS:
        return _parse_normalized_named_cached(s)
    return _parse_normalized_named(s, digest_algorithms=digest_algorithms)


# A cluster runs the same few hundred images over and over, and every container of every admission parses its
# reference; the answer is a frozen value, so it is shared (failures raise and are not cached).
@functools.lru_cache(maxsize=4096)
def _parse_normalized_named_cached(s: str) -> Reference:
    return _parse_normalized_named(s, digest_algorithms=DIGEST_ALGORITHMS)


def _parse_normalized_named(s: str, *, digest_algorithms: Collection[str]) -> Reference:
    s = _check_input(s)
    if ANCHORED_IDENTIFIER_RE.match(s) is not None:
        raise ReferenceError(
            ErrorKind.NAME_IS_IDENTIFIER,
            f"invalid repository name ({s}), cannot specify 64-byte hexadecimal strings",
        )
    domain, remainder = split_docker_domain(s)
    # Upstream cuts at the first ":" only, so an "@digest" stays in `remote`; digests are lower-case hex
    # when valid, so that changes nothing but the error kind of an already-invalid reference.
    remote = remainder.split(":", 1)[0]
    if remote.lower() != remote:
        raise ReferenceError(
            ErrorKind.NAME_CONTAINS_UPPERCASE,
            f"invalid reference format: repository name ({remote}) must be lowercase",
        )
    return parse(f"{domain}/{remainder}", digest_algorithms=digest_algorithms)


def parse_named(s: str, *, digest_algorithms: Collection[str] = DIGEST_ALGORITHMS) -> Reference:
    """ParseNamed: like parse_normalized_named, but the input must already be canonical ("docker.io/library/x")."""
    ref = parse_normalized_named(s, digest_algorithms=digest_algorithms)
    if str(ref) != s:
        raise ReferenceError(ErrorKind.NAME_NOT_CANONICAL)
    return ref


def parse_any_reference(s: str, *, digest_algorithms: Collection[str] = DIGEST_ALGORITHMS) -> Reference:
    """ParseAnyReference: a 64-hex image ID or a bare digest gives a digest-only reference; else a name."""
    s = _check_input(s)
    if ANCHORED_IDENTIFIER_RE.match(s) is not None:
        return Reference(domain="", path="", digest="sha256:" + s)
    try:
        validate_digest(s, digest_algorithms=digest_algorithms)
    except ReferenceError:
        pass
    else:
        return Reference(domain="", path="", digest=s)
    return parse_normalized_named(s, digest_algorithms=digest_algorithms)


def parse_docker_ref(s: str, *, digest_algorithms: Collection[str] = DIGEST_ALGORITHMS) -> Reference:
    """ParseDockerRef: normalised, with ":latest" added to a bare name and the tag dropped beside a digest."""
    ref = parse_normalized_named(s, digest_algorithms=digest_algorithms)
    if ref.tag is not None and ref.digest is not None:
        return Reference(domain=ref.domain, path=ref.path, digest=ref.digest)
    return tag_name_only(ref)


# --- construction ---------------------------------------------------------------------------------------


def with_name(name: str) -> Reference:
    """WithName: a bare repository name (no tag or digest), split by the grammar only."""
    name = _check_input(name)
    m = ANCHORED_NAME_RE.match(name)
    if m is None:
        raise ReferenceError(ErrorKind.REFERENCE_INVALID_FORMAT)
    if len(m.group(2)) > NAME_TOTAL_LENGTH_MAX:
        raise ReferenceError(ErrorKind.NAME_TOO_LONG)
    return Reference(domain=m.group(1) or "", path=m.group(2))


def _require_name(ref: Reference) -> None:
    # Upstream's With* take a Named; a digest-only reference is not one.
    if not ref.path:
        raise ReferenceError(ErrorKind.REFERENCE_INVALID_FORMAT, f"reference {ref} has no name")


def with_tag(ref: Reference, tag: str) -> Reference:
    """WithTag: replace the tag and keep any digest."""
    _require_name(ref)
    if not isinstance(tag, str) or ANCHORED_TAG_RE.match(tag) is None:
        raise ReferenceError(ErrorKind.TAG_INVALID_FORMAT)
    return Reference(domain=ref.domain, path=ref.path, tag=tag, digest=ref.digest)


def with_digest(ref: Reference, digest: str) -> Reference:
    """WithDigest: replace the digest and keep any tag. Like upstream, checks syntax only (not length)."""
    _require_name(ref)
    if not isinstance(digest, str) or ANCHORED_DIGEST_RE.match(digest) is None:
        raise ReferenceError(ErrorKind.DIGEST_INVALID_FORMAT)
    return Reference(domain=ref.domain, path=ref.path, tag=ref.tag, digest=digest)


def trim_named(ref: Reference) -> Reference:
    """TrimNamed: the name without tag or digest."""
    return Reference(domain=ref.domain, path=ref.path)


def tag_name_only(ref: Reference) -> Reference:
    """TagNameOnly: add ":latest" when there is neither tag nor digest."""
    if ref.has_name and ref.is_name_only:
        return Reference(domain=ref.domain, path=ref.path, tag=DEFAULT_TAG)
    return ref


# --- registry identity (architecture §5) ----------------------------------------------------------------------


def registry_identity(server: str) -> str:
    """A registry named by a user (policy setting, Docker config key, server URL) as architecture §5 spells it.

    Lower-case host[:port] without scheme or path; Docker Hub's aliases are one registry, `docker.io`:
    "https://Index.Docker.io/v1/" -> "docker.io".
    """
    text = server.strip()
    if "://" in text:
        text = text.split("://", 1)[1]
    host = text.split("/", 1)[0].lower()
    return DEFAULT_DOMAIN if host in _DOCKER_HUB_HOSTS else host


def registry_host(ref: Reference) -> str:
    """The registry a reference is pulled from, as `images.allowed_registries` spells it.

    Lower-case host[:port]; docker.io, index.docker.io and registry-1.docker.io (without a port) are all
    `docker.io`. Give it a normalised reference (`parse_normalized_named`): `parse` leaves "nginx" without a
    domain, which is taken as Docker Hub here, but reads "org/app" as domain "org".
    """
    _require_name(ref)
    return registry_identity(ref.domain) if ref.domain else DEFAULT_DOMAIN
