"""The distribution reference grammar: our own vectors, upstream's test tables (the public corpus's
image_refs.json, skipped without it), and what the rules rely on."""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import pytest

from admission.reference import (
    ANCHORED_DOMAIN_RE,
    ANCHORED_IDENTIFIER_RE,
    ANCHORED_NAME_RE,
    DIGEST_ALGORITHMS,
    MAX_REFERENCE_LENGTH,
    REFERENCE_RE,
    ErrorKind,
    Reference,
    ReferenceError,
    parse,
    parse_any_reference,
    parse_docker_ref,
    parse_named,
    parse_normalized_named,
    registry_host,
    with_digest,
    with_name,
    with_tag,
)
from tests.corpus import corpus, corpus_params, corpus_path

REPO = Path(__file__).resolve().parents[2]
VECTORS = "image_refs.json"


def _upstream_cases() -> list[dict[str, Any]]:
    path = corpus_path(VECTORS)
    return json.loads(path.read_text(encoding="utf-8"))["cases"] if path is not None else []


CASES: list[dict[str, Any]] = _upstream_cases()

# Upstream's current test binary registers only crypto/sha256, so its tables expect sha512 to be
# "unsupported"; the older docker/distribution tests imported crypto/sha512 as real binaries do.
UPSTREAM_TEST_ALGORITHMS = frozenset({"sha256"})

ERROR_KINDS: Mapping[str, ErrorKind] = {
    "ErrReferenceInvalidFormat": ErrorKind.REFERENCE_INVALID_FORMAT,
    "ErrNameNotCanonical": ErrorKind.NAME_NOT_CANONICAL,
    "ErrNameTooLong": ErrorKind.NAME_TOO_LONG,
    "ErrNameEmpty": ErrorKind.NAME_EMPTY,
    "ErrNameContainsUppercase": ErrorKind.NAME_CONTAINS_UPPERCASE,
    "digest.ErrDigestUnsupported": ErrorKind.DIGEST_UNSUPPORTED,
    "digest.ErrDigestInvalidLength": ErrorKind.CHECKSUM_INVALID_LENGTH,
}

# Legacy vectors where the old docker/distribution copy and current upstream disagree. We follow current
# upstream, so for these the test asserts the opposite of the legacy verdict.
LEGACY_DIVERGENCES: Mapping[str, str] = {
    "[fc00::1::1]/repo": "current ipv6address is just \\[[a-fA-F0-9:]+\\]: malformed literals pass",
    "[::fc00:1:1::]/repo": "current ipv6address is just \\[[a-fA-F0-9:]+\\]: malformed literals pass",
    "[fc00::00001]/repo": "current ipv6address is just \\[[a-fA-F0-9:]+\\]: malformed literals pass",
    "[fc00]/repo": "current ipv6address is just \\[[a-fA-F0-9:]+\\]: malformed literals pass",
    "[:::]/repo": "current ipv6address is just \\[[a-fA-F0-9:]+\\]: malformed literals pass",
    "[fc00::192.168.134.145]/repo": "current upstream excludes IPv4-embedded IPv6 literals",
    "[fc00::192.168.134.145%eth0]/repo": "current upstream excludes zone ids",
    "[fc00::1%eth0]:5000/repo": "current upstream excludes zone ids",
    "[fc00::1%eth0]:8080/foo": "current upstream excludes zone ids",
    "a/" + "a/" * 127 + "a:tag": "the 255 limit now applies to the path, which is 255 here",
}

HEX64 = "86e0e091d0da6bde2456dbb48306f3956bbeb2eae1b5b9a43045843f69fe4aaa"

ParseFunc = Callable[..., Reference]
PARSERS: Mapping[str, ParseFunc] = {
    "Parse": parse,
    "Field.UnmarshalText(Parse)": parse,
    "ParseNormalizedNamed": parse_normalized_named,
    "ParseNormalizedNamed + FamiliarName/String/Domain/Path": parse_normalized_named,
    "ParseNamed": parse_named,
    "ParseAnyReference": parse_any_reference,
    "ParseDockerRef": parse_docker_ref,
}
WITH_NAME_APIS = frozenset({"WithName", "WithName+Domain/Path", "WithName+SplitHostname"})
CONSTRUCTION_API = "WithName+WithTag/WithDigest (construction, not parsing)"
REGEXPS = {
    "regexp anchoredNameRegexp (name only, no tag)": ANCHORED_NAME_RE,
    "regexp ^domainAndPort$ (domain component only)": ANCHORED_DOMAIN_RE,
    "regexp referenceRegexp (name[:tag][@digest])": REFERENCE_RE,
    "regexp anchoredIdentifierRegexp (64 lowercase hex image ID)": ANCHORED_IDENTIFIER_RE,
}


def _vector_id(index: int, case: Mapping[str, Any]) -> str:
    text = case["input"] if len(case["input"]) <= 48 else case["input"][:40] + f"...({len(case['input'])})"
    legacy = "legacy-" if case.get("legacy") else ""
    return f"{index:03d}-{legacy}{case['test']}-{text!r}"


def _params(legacy: bool) -> list[Any]:
    return corpus_params(VECTORS, [
        pytest.param(case, id=_vector_id(i, case)) for i, case in enumerate(CASES) if bool(case.get("legacy")) == legacy
    ])


def _call(case: Mapping[str, Any], algorithms: frozenset[str]) -> Reference:
    api = case["api"]
    if api in WITH_NAME_APIS:
        return with_name(case["input"])
    return PARSERS[api](case["input"], digest_algorithms=algorithms)


def _check_api_vector(case: Mapping[str, Any], algorithms: frozenset[str]) -> None:
    if not case["valid"]:
        with pytest.raises(ReferenceError) as caught:
            _call(case, algorithms)
        if case.get("error"):
            assert caught.value.kind is ERROR_KINDS[case["error"]]
        return

    ref = _call(case, algorithms)
    # ParseDockerRef vectors give only the resulting string; their tag/digest fields are not asserted.
    asserts_fields = case.get("docker_ref") is None and any(
        case.get(k) is not None for k in ("domain", "path", "repository", "normalized")
    )
    if case["domain"] is not None:
        assert ref.domain == case["domain"]
    if case["path"] is not None:
        assert ref.path == case["path"]
    if asserts_fields:
        # Upstream's tables check "not Tagged"/"not Digested" when they give no tag/digest.
        assert ref.tag == case["tag"]
        assert ref.digest == case["digest"]
    if case.get("repository") is not None:
        assert ref.name == case["repository"]
    if case.get("normalized") is not None:
        assert str(ref) == case["normalized"]
    if case.get("familiar") is not None:
        assert ref.familiar == case["familiar"]
    if case.get("docker_ref") is not None:
        assert str(ref) == case["docker_ref"]
    if PARSERS.get(case["api"]) is parse:
        assert str(ref) == case["input"]  # Parse does not normalise: String() round-trips


def _check_regexp_vector(case: Mapping[str, Any]) -> None:
    m = REGEXPS[case["api"]].match(case["input"])
    assert (m is not None) == case["valid"]
    if m is None:
        return
    if REGEXPS[case["api"]] is ANCHORED_NAME_RE:
        if case["domain"] is not None:
            assert (m.group(1) or "") == case["domain"]
        if case["path"] is not None:
            assert m.group(2) == case["path"]
    elif REGEXPS[case["api"]] is REFERENCE_RE:
        assert (m.group(1), m.group(2), m.group(3)) == (case["repository"], case["tag"], case["digest"])


def _check_construction_vector(case: Mapping[str, Any]) -> None:
    ref = with_name(case["repository"])
    if case["tag"] is not None:
        ref = with_tag(ref, case["tag"])
    if case["digest"] is not None:
        ref = with_digest(ref, case["digest"])
    assert str(ref) == case["input"]
    assert (ref.tag, ref.digest) == (case["tag"], case["digest"])
    if case["digest"] is None:
        assert parse(case["input"]) == ref  # a tagged construction parses back to itself


def _check(case: Mapping[str, Any], algorithms: frozenset[str]) -> None:
    if case["api"] in REGEXPS:
        _check_regexp_vector(case)
    elif case["api"] == CONSTRUCTION_API:
        _check_construction_vector(case)
    else:
        _check_api_vector(case, algorithms)


@corpus(VECTORS)
@pytest.mark.parametrize("case", _params(legacy=False))
def test_upstream_vector_behaves_as_distribution_reference(case: dict[str, Any]) -> None:
    _check(case, UPSTREAM_TEST_ALGORITHMS)


@corpus(VECTORS)
@pytest.mark.parametrize("case", _params(legacy=True))
def test_legacy_vector_agrees_except_where_current_upstream_changed(case: dict[str, Any]) -> None:
    if case["input"] in LEGACY_DIVERGENCES:
        # Known divergence: assert the current-upstream verdict, which is the opposite of the legacy one.
        flipped = {**case, "valid": not case["valid"], "error": None}
        if flipped["valid"]:
            flipped = {**flipped, "domain": None, "path": None, "repository": None, "tag": None, "digest": None}
        _check(flipped, DIGEST_ALGORITHMS)
    else:
        _check(case, DIGEST_ALGORITHMS)


@corpus(VECTORS)
def test_legacy_divergence_list_only_names_legacy_vectors() -> None:
    legacy_inputs = {c["input"] for c in CASES if c.get("legacy")}
    assert set(LEGACY_DIVERGENCES) <= legacy_inputs


# --- our own vectors ---------------------------------------------------------------------------------------
# Written from the grammar of distribution/reference (reference.go, normalize.go, regexp.go) and go-digest's
# Validate, not taken from any test table: name := [domain '/'] path; domain := host [':' port], where a host is a
# domain name (upper case allowed) or a bracketed IPv6 literal; a path component is [a-z0-9]+ joined by '.', '_',
# '__' or one or more '-'; tag := [\w][\w.-]{0,127}; the reference regexp wants at least 32 digest hex digits; the
# path (not the domain) is at most 255 characters. ParseNormalizedNamed takes the first component as a registry
# only when it has a '.' or ':', is `localhost`, or has an upper-case letter.

A = "a" * 255
Field = dict[str, str | None]
OWN_VECTORS: list[tuple[str, str, Field | ErrorKind]] = [
    # Parse: no normalisation, String() gives the input back
    ("Parse", "app", {"domain": "", "path": "app", "tag": None, "digest": None}),
    ("Parse", "org/app", {"domain": "org", "path": "app"}),
    ("Parse", "app.example:tag", {"domain": "", "path": "app.example", "tag": "tag"}),
    ("Parse", "app.example:5000", {"domain": "", "path": "app.example", "tag": "5000"}),  # no '/': a tag
    ("Parse", "app.example:5000/repo", {"domain": "app.example:5000", "path": "repo", "tag": None}),
    ("Parse", "app.example:5000/repo:1.2", {"domain": "app.example:5000", "path": "repo", "tag": "1.2"}),
    ("Parse", f"app.example:5000/repo@sha256:{HEX64}", {"path": "repo", "tag": None, "digest": f"sha256:{HEX64}"}),
    ("Parse", f"app.example:5000/repo:1.2@sha256:{HEX64}", {"tag": "1.2", "digest": f"sha256:{HEX64}"}),
    ("Parse", "localhost:5000/team/app", {"domain": "localhost:5000", "path": "team/app"}),
    ("Parse", "192.168.1.10:5000/app:1", {"domain": "192.168.1.10:5000", "path": "app", "tag": "1"}),
    ("Parse", "[2001:db8::1]:5000/app", {"domain": "[2001:db8::1]:5000", "path": "app"}),
    ("Parse", "[2001:db8::1]/app", {"domain": "[2001:db8::1]", "path": "app"}),
    ("Parse", "2001:db8::1/app", ErrorKind.REFERENCE_INVALID_FORMAT),  # an IPv6 host needs brackets
    ("Parse", "host:port/app", ErrorKind.REFERENCE_INVALID_FORMAT),  # a port is digits
    ("Parse", "Registry.Example:5000/app", {"domain": "Registry.Example:5000", "path": "app"}),
    ("Parse", "Upper/lower:1", {"domain": "Upper", "path": "lower", "tag": "1"}),  # upper case is fine in a host
    ("Parse", "exa-mple.com/app", {"domain": "exa-mple.com", "path": "app"}),
    ("Parse", "-example.com/app", ErrorKind.REFERENCE_INVALID_FORMAT),
    ("Parse", "app:Uppercase_Tag", {"path": "app", "tag": "Uppercase_Tag"}),
    ("Parse", "app:v1.2-rc_3", {"tag": "v1.2-rc_3"}),
    ("Parse", "app:" + "t" * 128, {"tag": "t" * 128}),
    ("Parse", "app:" + "t" * 129, ErrorKind.REFERENCE_INVALID_FORMAT),
    ("Parse", "app:-tag", ErrorKind.REFERENCE_INVALID_FORMAT),
    ("Parse", "app:.tag", ErrorKind.REFERENCE_INVALID_FORMAT),
    ("Parse", "app:", ErrorKind.REFERENCE_INVALID_FORMAT),
    ("Parse", "app:1:2", ErrorKind.REFERENCE_INVALID_FORMAT),
    ("Parse", ":1", ErrorKind.REFERENCE_INVALID_FORMAT),
    ("Parse", f"@sha256:{HEX64}", ErrorKind.REFERENCE_INVALID_FORMAT),
    ("Parse", "", ErrorKind.NAME_EMPTY),
    # path components and their separators
    ("Parse", "a__b", {"path": "a__b"}),
    ("Parse", "a_b.c-d", {"path": "a_b.c-d"}),
    ("Parse", "a---b", {"path": "a---b"}),
    ("Parse", "a___b", ErrorKind.REFERENCE_INVALID_FORMAT),
    ("Parse", "a-_b", ErrorKind.REFERENCE_INVALID_FORMAT),
    ("Parse", "a..b", ErrorKind.REFERENCE_INVALID_FORMAT),
    ("Parse", "-a", ErrorKind.REFERENCE_INVALID_FORMAT),
    ("Parse", "a-", ErrorKind.REFERENCE_INVALID_FORMAT),
    ("Parse", "_a", ErrorKind.REFERENCE_INVALID_FORMAT),
    ("Parse", "a/", ErrorKind.REFERENCE_INVALID_FORMAT),
    ("Parse", "/a", ErrorKind.REFERENCE_INVALID_FORMAT),
    ("Parse", "a//b", ErrorKind.REFERENCE_INVALID_FORMAT),
    ("Parse", "a/b$/c", ErrorKind.REFERENCE_INVALID_FORMAT),
    # upper case in the path: a name the lower-cased text would match
    ("Parse", "Uppercase:tag", ErrorKind.NAME_CONTAINS_UPPERCASE),
    ("Parse", "app.example:5000/Upper/lower:tag", ErrorKind.NAME_CONTAINS_UPPERCASE),
    # the 255 limit is on the path; the domain does not count
    ("Parse", A, {"path": A}),
    ("Parse", "a" * 256, ErrorKind.NAME_TOO_LONG),
    ("Parse", "a/" * 127 + "a", {"domain": "a", "path": "a/" * 126 + "a"}),
    ("Parse", "registry.example/" + A, {"domain": "registry.example", "path": A}),
    ("Parse", "registry.example/" + A + "b", ErrorKind.NAME_TOO_LONG),
    # digests: the regexp wants 32+ hex digits, then go-digest checks algorithm, length and case
    ("Parse", "app@sha256:123456", ErrorKind.REFERENCE_INVALID_FORMAT),
    ("Parse", "app:1.0@sha256:123456", ErrorKind.REFERENCE_INVALID_FORMAT),
    ("Parse", "app@sha256:" + "f" * 34, ErrorKind.CHECKSUM_INVALID_LENGTH),
    ("Parse", "app@sha256:" + HEX64.upper(), ErrorKind.CHECKSUM_INVALID_FORMAT),
    ("Parse", "app@nosuchalgo:" + HEX64, ErrorKind.DIGEST_UNSUPPORTED),
    ("Parse", "app@sha512:" + "b" * 128, {"digest": "sha512:" + "b" * 128}),
    # ParseNormalizedNamed: Docker Hub's defaults
    ("ParseNormalizedNamed", "nginx",
     {"domain": "docker.io", "path": "library/nginx", "string": "docker.io/library/nginx", "familiar": "nginx"}),
    ("ParseNormalizedNamed", "nginx:1.27",
     {"string": "docker.io/library/nginx:1.27", "familiar": "nginx:1.27", "tag": "1.27"}),
    ("ParseNormalizedNamed", "library/nginx", {"string": "docker.io/library/nginx", "familiar": "nginx"}),
    ("ParseNormalizedNamed", "docker.io/nginx", {"string": "docker.io/library/nginx", "familiar": "nginx"}),
    ("ParseNormalizedNamed", "index.docker.io/nginx", {"string": "docker.io/library/nginx", "familiar": "nginx"}),
    ("ParseNormalizedNamed", "index.docker.io/org/app:2", {"string": "docker.io/org/app:2", "familiar": "org/app:2"}),
    ("ParseNormalizedNamed", "org/app", {"domain": "docker.io", "path": "org/app", "familiar": "org/app"}),
    ("ParseNormalizedNamed", "example/app", {"domain": "docker.io", "path": "example/app"}),  # no '.': a Hub org
    ("ParseNormalizedNamed", "example.com/app", {"domain": "example.com", "path": "app",
                                                 "familiar": "example.com/app"}),
    ("ParseNormalizedNamed", "localhost/app", {"domain": "localhost", "path": "app"}),
    ("ParseNormalizedNamed", "localhost:5000/app", {"domain": "localhost:5000", "path": "app", "tag": None}),
    ("ParseNormalizedNamed", "registry:5000/app", {"domain": "registry:5000", "path": "app", "tag": None}),
    ("ParseNormalizedNamed", "Registry/app:1", {"domain": "Registry", "path": "app", "tag": "1"}),
    ("ParseNormalizedNamed", "registry-1.docker.io/library/nginx",
     {"domain": "registry-1.docker.io", "familiar": "registry-1.docker.io/library/nginx"}),
    ("ParseNormalizedNamed", "docker.io/library/team/app", {"path": "library/team/app",
                                                            "familiar": "library/team/app"}),
    ("ParseNormalizedNamed", "quay.io/library/app", {"familiar": "quay.io/library/app"}),
    ("ParseNormalizedNamed", f"nginx@sha256:{HEX64}",
     {"string": f"docker.io/library/nginx@sha256:{HEX64}", "familiar": f"nginx@sha256:{HEX64}"}),
    ("ParseNormalizedNamed", f"nginx:1.27@sha256:{HEX64}", {"tag": "1.27", "digest": f"sha256:{HEX64}"}),
    ("ParseNormalizedNamed", HEX64, ErrorKind.NAME_IS_IDENTIFIER),
    ("ParseNormalizedNamed", HEX64[:63], {"string": f"docker.io/library/{HEX64[:63]}"}),  # not 64: just a name
    ("ParseNormalizedNamed", "Nginx", ErrorKind.NAME_CONTAINS_UPPERCASE),
    ("ParseNormalizedNamed", "docker.io/Library/nginx", ErrorKind.NAME_CONTAINS_UPPERCASE),
    ("ParseNormalizedNamed", "org/App:1", ErrorKind.NAME_CONTAINS_UPPERCASE),
    # ParseNamed: only canonical names
    ("ParseNamed", "docker.io/library/nginx:1", {"string": "docker.io/library/nginx:1"}),
    ("ParseNamed", "example.com/app", {"string": "example.com/app"}),
    ("ParseNamed", "nginx", ErrorKind.NAME_NOT_CANONICAL),
    ("ParseNamed", "docker.io/nginx", ErrorKind.NAME_NOT_CANONICAL),
    ("ParseNamed", "index.docker.io/library/nginx", ErrorKind.NAME_NOT_CANONICAL),
    # ParseDockerRef: what the kubelet and containerd pull; a digest wins over a tag, no tag means latest
    ("ParseDockerRef", "nginx", {"string": "docker.io/library/nginx:latest"}),
    ("ParseDockerRef", "nginx:1.27", {"string": "docker.io/library/nginx:1.27"}),
    ("ParseDockerRef", f"nginx:1.27@sha256:{HEX64}", {"string": f"docker.io/library/nginx@sha256:{HEX64}"}),
    ("ParseDockerRef", f"example.com/app@sha256:{HEX64}", {"string": f"example.com/app@sha256:{HEX64}"}),
    # ParseAnyReference: a bare image id or digest is a digest reference
    ("ParseAnyReference", HEX64, {"domain": "", "path": "", "digest": f"sha256:{HEX64}", "string": f"sha256:{HEX64}"}),
    ("ParseAnyReference", f"sha256:{HEX64}", {"path": "", "digest": f"sha256:{HEX64}"}),
    ("ParseAnyReference", "nginx", {"string": "docker.io/library/nginx"}),
    ("ParseAnyReference", "Nginx", ErrorKind.NAME_CONTAINS_UPPERCASE),
]
OWN_PARSERS: Mapping[str, ParseFunc] = {"Parse": parse, "ParseNormalizedNamed": parse_normalized_named,
                                        "ParseNamed": parse_named, "ParseDockerRef": parse_docker_ref,
                                        "ParseAnyReference": parse_any_reference}


def _own_id(api: str, text: str) -> str:
    return f"{api}-{text if len(text) <= 40 else text[:32] + f'...({len(text)})'}"


@pytest.mark.parametrize(("api", "text", "expected"), OWN_VECTORS, ids=[_own_id(a, t) for a, t, _ in OWN_VECTORS])
def test_own_vector_follows_the_reference_grammar(api: str, text: str, expected: Field | ErrorKind) -> None:
    if isinstance(expected, ErrorKind):
        with pytest.raises(ReferenceError) as caught:
            OWN_PARSERS[api](text)
        assert caught.value.kind is expected
        return
    ref = OWN_PARSERS[api](text)
    got: Field = {"domain": ref.domain, "path": ref.path, "tag": ref.tag, "digest": ref.digest,
                  "string": str(ref), "familiar": ref.familiar}
    assert {k: got[k] for k in expected} == expected
    if api == "Parse":
        assert str(ref) == text  # Parse does not normalise


def test_with_name_then_tag_and_digest_builds_what_parse_reads() -> None:
    ref = with_digest(with_tag(with_name("registry.example:5000/team/app"), "2.1"), f"sha256:{HEX64}")
    assert str(ref) == f"registry.example:5000/team/app:2.1@sha256:{HEX64}"
    assert parse(str(ref)) == ref
    with pytest.raises(ReferenceError) as caught:
        with_name("NGINX")
    assert caught.value.kind is ErrorKind.REFERENCE_INVALID_FORMAT


# --- behaviour the rules rely on -------------------------------------------------------------------------


def test_bare_name_has_no_tag_and_is_docker_hub_library() -> None:
    ref = parse_normalized_named("nginx")
    assert (ref.domain, ref.path, ref.tag, ref.digest) == ("docker.io", "library/nginx", None, None)
    assert ref.familiar == "nginx"


@pytest.mark.parametrize(
    ("text", "domain", "path"),
    [("localhost:5000/app", "localhost:5000", "app"), ("registry:5000/app", "registry:5000", "app")],
)
def test_registry_port_is_not_a_tag(text: str, domain: str, path: str) -> None:
    ref = parse_normalized_named(text)
    assert (ref.domain, ref.path, ref.tag) == (domain, path, None)


def test_tag_and_digest_are_both_kept() -> None:
    ref = parse_normalized_named(f"app:latest@sha256:{HEX64}")
    assert (ref.tag, ref.digest) == ("latest", f"sha256:{HEX64}")
    assert str(ref) == f"docker.io/library/app:latest@sha256:{HEX64}"


@pytest.mark.parametrize("text", ["Nginx", "library/Nginx", "docker.io/library/Nginx:1.25", "ghcr.io/Org/app:1"])
def test_uppercase_repository_path_is_invalid(text: str) -> None:
    with pytest.raises(ReferenceError) as caught:
        parse_normalized_named(text)
    assert caught.value.kind is ErrorKind.NAME_CONTAINS_UPPERCASE


def test_uppercase_first_component_is_taken_as_a_registry() -> None:
    assert parse_normalized_named("Registry/app:1").domain == "Registry"


@pytest.mark.parametrize(("algorithm", "hex_len"), [("sha256", 64), ("sha384", 96), ("sha512", 128)])
def test_digest_of_each_real_algorithm_needs_its_exact_length(algorithm: str, hex_len: int) -> None:
    assert parse_normalized_named(f"app@{algorithm}:{'a' * hex_len}").digest == f"{algorithm}:{'a' * hex_len}"
    for wrong in (hex_len - 1, hex_len + 1):
        with pytest.raises(ReferenceError) as caught:
            parse_normalized_named(f"app@{algorithm}:{'a' * wrong}")
        assert caught.value.kind is ErrorKind.CHECKSUM_INVALID_LENGTH


def test_unknown_digest_algorithm_is_unsupported() -> None:
    with pytest.raises(ReferenceError) as caught:
        parse_normalized_named(f"app@md5:{'a' * 32}")
    assert caught.value.kind is ErrorKind.DIGEST_UNSUPPORTED


def test_uppercase_digest_hex_is_invalid_format() -> None:
    with pytest.raises(ReferenceError) as caught:
        parse_normalized_named(f"app@sha256:{HEX64.upper()}")
    assert caught.value.kind is ErrorKind.CHECKSUM_INVALID_FORMAT


def test_algorithm_set_can_model_a_binary_without_sha512() -> None:
    with pytest.raises(ReferenceError) as caught:
        parse(f"app@sha512:{'a' * 128}", digest_algorithms={"sha256"})
    assert caught.value.kind is ErrorKind.DIGEST_UNSUPPORTED


@pytest.mark.parametrize("text", ["nginx\n", "nginx:1.25\n", "nginx:1\u0662", "ngin\u00e9x", " nginx", "nginx:"])
def test_python_regex_pitfalls_do_not_leak_in(text: str) -> None:
    # `$` matching before "\n", and Unicode \w/\d, would accept these; Go's regexp does not.
    with pytest.raises(ReferenceError):
        parse_normalized_named(text)


@pytest.mark.parametrize("value", [None, 123, 1.5, ["nginx"], {"image": "nginx"}])
def test_non_string_input_is_an_invalid_reference_not_a_type_error(value: object) -> None:
    with pytest.raises(ReferenceError) as caught:
        parse_normalized_named(value)  # type: ignore[arg-type]
    assert caught.value.kind is ErrorKind.REFERENCE_INVALID_FORMAT


def test_overlong_input_is_refused_without_matching() -> None:
    text = "a." * MAX_REFERENCE_LENGTH + "com/app:1"
    with pytest.raises(ReferenceError) as caught:
        parse(text)
    assert caught.value.kind is ErrorKind.REFERENCE_INVALID_FORMAT
    assert str(MAX_REFERENCE_LENGTH) in caught.value.reason


def test_reference_error_is_a_value_error_whose_text_is_the_reason() -> None:
    with pytest.raises(ValueError, match="repository name must be canonical"):
        parse_named("nginx")


def test_with_tag_and_with_digest_validate_their_argument() -> None:
    base = parse_normalized_named("busybox")
    with pytest.raises(ReferenceError) as tag_error:
        with_tag(base, "-foo")
    assert tag_error.value.kind is ErrorKind.TAG_INVALID_FORMAT
    with pytest.raises(ReferenceError) as digest_error:
        with_digest(base, "foo")
    assert digest_error.value.kind is ErrorKind.DIGEST_INVALID_FORMAT


def test_digest_only_reference_has_no_name_and_cannot_take_a_tag() -> None:
    ref = parse_any_reference(HEX64)
    assert (ref.name, ref.digest, str(ref), ref.familiar) == (
        "",
        f"sha256:{HEX64}",
        f"sha256:{HEX64}",
        f"sha256:{HEX64}",
    )
    with pytest.raises(ReferenceError):
        with_tag(ref, "1")


def test_familiar_form_keeps_nested_library_paths_and_other_registries() -> None:
    assert parse_normalized_named("library/foo/bar:1").familiar == "library/foo/bar:1"
    assert parse_normalized_named("quay.io/library/foo:1").familiar == "quay.io/library/foo:1"
    assert parse_normalized_named("index.docker.io/org/app:2").familiar == "org/app:2"


@pytest.mark.parametrize(
    ("text", "host"),
    [
        ("nginx", "docker.io"),
        ("docker.io/library/nginx", "docker.io"),
        ("index.docker.io/library/nginx", "docker.io"),
        ("registry-1.docker.io/library/nginx", "docker.io"),
        ("REGISTRY-1.Docker.IO/library/nginx", "docker.io"),
        ("Registry.Example.com:5000/app:1", "registry.example.com:5000"),
        ("localhost:5000/app", "localhost:5000"),
        ("[FC00::1]:5000/app", "[fc00::1]:5000"),
        ("docker.io:443/library/nginx", "docker.io:443"),
    ],
)
def test_registry_host_is_lowercase_and_folds_docker_hub_aliases(text: str, host: str) -> None:
    assert registry_host(parse_normalized_named(text)) == host


def test_registry_host_of_a_digest_only_reference_is_an_error() -> None:
    with pytest.raises(ReferenceError):
        registry_host(parse_any_reference(HEX64))


def test_module_imports_only_the_standard_library() -> None:
    # The policy core must stay light: anything outside the stdlib (regex, docker_image, pydantic...) fails this.
    code = (
        "import sys; before = set(sys.modules); import admission.reference; "
        "print(sorted({m.split('.')[0] for m in set(sys.modules) - before} - set(sys.stdlib_module_names)))"
    )
    out = subprocess.run(
        [sys.executable, "-c", code],
        cwd=REPO,
        capture_output=True,
        text=True,
        check=True,
        env={"PYTHONPATH": str(REPO)},
    )
    assert out.stdout.strip() == "['admission']"
