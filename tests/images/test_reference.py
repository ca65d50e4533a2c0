"""The reference grammar against upstream's own test tables (../shared/corpus/image_refs.json), plus what rules rely on."""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import pytest

from admission.images.reference import (
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

REPO = Path(__file__).resolve().parents[2]
VECTORS_FILE = REPO / ".." / "shared" / "corpus" / "image_refs.json"
CASES: list[dict[str, Any]] = json.loads(VECTORS_FILE.read_text(encoding="utf-8"))["cases"]

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
    return [
        pytest.param(case, id=_vector_id(i, case)) for i, case in enumerate(CASES) if bool(case.get("legacy")) == legacy
    ]


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


@pytest.mark.parametrize("case", _params(legacy=False))
def test_upstream_vector_behaves_as_distribution_reference(case: dict[str, Any]) -> None:
    _check(case, UPSTREAM_TEST_ALGORITHMS)


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


def test_legacy_divergence_list_only_names_legacy_vectors() -> None:
    legacy_inputs = {c["input"] for c in CASES if c.get("legacy")}
    assert set(LEGACY_DIVERGENCES) <= legacy_inputs


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
        "import sys; before = set(sys.modules); import admission.images.reference; "
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
