"""The two YAML dialects with line numbers: YAML 1.2 as Compose reads it, YAML 1.1 as kubectl reads it."""

from __future__ import annotations

import pytest
import yaml

from admission.errors import InputError
from admission import yamlload
from admission.yamlload import MAX_ALIAS_EXPANSION, MAX_DEPTH, Tagged, iter_documents, load_documents


def one(text: str, dialect: str = "1.2", **kw):
    (doc,) = load_documents(text, file="f.yml", dialect=dialect, **kw)  # type: ignore[arg-type]
    return doc.value


def test_pyyaml_default_resolver_really_turns_port_pairs_into_sexagesimal_ints() -> None:
    # The reason this loader exists: PyYAML's YAML 1.1 resolver changes what Compose reads as strings.
    assert yaml.safe_load("p: 22:22\nu: 1000:59\n") == {"p": 1342, "u": 60059}


@pytest.mark.parametrize(("text", "value"), [("22:22", "22:22"), ("1000:59", "1000:59"), ("on", "on"), ("yes", "yes"),
                                             ("Off", "Off"), ("y", "y"), ("true", True), ("FALSE", False), ("0o17", 15),
                                             ("0x1F", 31), ("1_000", 1000), ("0.5", 0.5), ("~", None), ("1e3", 1000.0),
                                             ("'1001'", "1001"), ("!!str 1001", "1001")])
def test_compose_dialect_is_yaml_1_2(text: str, value: object) -> None:
    assert one(f"v: {text}\n")["v"] == value


@pytest.mark.parametrize(("text", "value"), [("yes", True), ("on", True), ("No", False), ("OFF", False), ("y", True),
                                             ("22:22", "22:22"), ("0o17", "0o17"), ("017", 15), ("'yes'", "yes")])
def test_kubernetes_dialect_has_yaml_1_1_booleans_like_kubectl(text: str, value: object) -> None:
    assert one(f"v: {text}\n", "1.1")["v"] == value


def test_every_key_and_item_knows_its_line() -> None:
    value = one("a: 1\nb:\n  c: [x, y]\n  d:\n    - p\n    - q\n")
    assert value.key_lines == {"a": 1, "b": 2}
    assert value["b"].key_lines == {"c": 3, "d": 4}
    assert value["b"]["d"].item_lines == [5, 6]


def test_anchors_and_merge_keys_work_and_explicit_keys_win() -> None:
    value = one("base: &b {image: x, user: '1'}\nsvc:\n  <<: *b\n  user: '2'\n")
    assert value["svc"] == {"image": "x", "user": "2"}


def test_compose_tags_are_kept_for_the_merger() -> None:
    value = one("ports: !reset []\nuser: !override '5'\n", keep_tags=frozenset({"!reset", "!override"}))
    assert value["ports"] == Tagged("!reset", [], 1) and value["user"].value == "5"


def test_duplicate_keys_are_an_error_in_strict_mode_like_compose() -> None:
    with pytest.raises(InputError) as info:
        one("a: 1\nb: 2\na: 3\n", strict_keys=True)
    assert info.value.line == 3 and "already defined at line 1" in info.value.message


def test_an_alias_bomb_is_refused_not_expanded() -> None:
    rows = ["a: &a [x, x, x, x, x, x, x, x, x]"]
    for prev, name in zip("abcdefgh", "bcdefghi"):
        rows.append(f"{name}: &{name} [" + ", ".join([f"*{prev}"] * 9) + "]")
    with pytest.raises(InputError, match="alias bomb"):
        one("\n".join(rows) + "\n")


def test_a_merge_key_bomb_is_refused_not_expanded() -> None:
    rows = ["a: &a {" + ", ".join(f"a{i}: x" for i in range(9)) + "}"]
    for prev, name in zip("abcdefgh", "bcdefghi"):
        rows.append(f"{name}: &{name} {{<<: *{prev}, " + ", ".join(f"{name}{i}: *{prev}" for i in range(9)) + "}")
    with pytest.raises(InputError, match="alias bomb") as info:
        one("\n".join(rows) + "\n")
    assert info.value.line is not None and info.value.line <= 9


def test_a_file_without_anchors_is_never_an_alias_bomb_however_many_nodes_it_has() -> None:
    # More nodes than the alias bound, all written out: large, not a bomb.
    text = "v: [" + ",".join(["1"] * (MAX_ALIAS_EXPANSION + 50_000)) + "]\n"
    assert len(one(text)["v"]) == MAX_ALIAS_EXPANSION + 50_000


def test_only_nodes_reached_through_an_alias_count_toward_the_bound(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(yamlload, "MAX_ALIAS_EXPANSION", 1000)
    entries = "".join(f"      E{i:04d}: v{i}\n" for i in range(3000))
    written = "services:\n  a:\n    environment:\n" + entries + "  b:\n    environment:\n" + entries
    assert len(one(written)["services"]["b"]["environment"]) == 3000, "6,000 entries written out: read"
    aliased = "services:\n  a:\n    environment: &env\n" + entries + "  b:\n    environment: *env\n"
    with pytest.raises(InputError, match="alias expansion exceeds 1000 nodes") as info:
        one(aliased)
    assert info.value.line == 3005, "the alias that crossed the bound"
    small = "x: &x [1, 2, 3]\n" + "".join(f"y{i}: *x\n" for i in range(200))
    assert one(small)["y199"] == [1, 2, 3], "800 nodes through aliases: under the bound"


def test_the_bound_is_per_document_and_documents_come_one_at_a_time(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(yamlload, "MAX_ALIAS_EXPANSION", 100)
    document = "a: &a [" + ", ".join(["1"] * 30) + "]\nb: [*a, *a]\n"
    stream = iter_documents("---\n".join([document] * 5) + "---\nbad: [\n", file="s.yml", dialect="1.1")
    assert [len(next(stream).value["b"]) for _ in range(5)] == [2] * 5, "60 aliased nodes per document, 300 in all"
    with pytest.raises(InputError, match="syntax") as info:
        next(stream)
    assert info.value.file == "s.yml" and info.value.line is not None


def test_deep_nesting_is_refused_with_a_line() -> None:
    with pytest.raises(InputError, match="nesting") as info:
        one("v: " + "[" * (MAX_DEPTH + 5) + "]" * (MAX_DEPTH + 5) + "\n")
    assert info.value.line == 1


def test_a_syntax_error_names_the_line() -> None:
    with pytest.raises(InputError) as info:
        one("a: 1\nb: [1, 2\nc: 3\n")
    assert info.value.file == "f.yml" and info.value.line in (3, 4) and "syntax" in info.value.message


def test_empty_documents_are_kept_as_none_with_their_line() -> None:
    docs = load_documents("---\n---\na: 1\n", file="f", dialect="1.1")
    assert [d.value for d in docs] == [None, {"a": 1}]
