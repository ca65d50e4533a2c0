"""Cases for test_kubernetes_speed_equivalence.py: every Kubernetes input the project owns, read whole and mutated.

The reader (admission/sources/kubernetes.py) was rewritten for speed (issue 15); its output must not change. Each
case's outcome is the full repr of what it returns (Workloads, Problems, Origins) or of the error it raises
(message, file, line, path). `python -m tests.sources.k8s_equivalence` rewrites the golden file from the current
reader; do that only when a behaviour change is meant.
"""

from __future__ import annotations

import hashlib
import json
import sys
from collections.abc import Callable, Iterator
from functools import partial
from pathlib import Path
from types import ModuleType
from typing import Any

from admission.errors import InputError
from admission.yamlload import load_documents

REPO = Path(__file__).resolve().parents[2]
TESTS = REPO / "tests"
GOLDEN = Path(__file__).resolve().parent / "k8s_equivalence.golden.json"

# A value of every shape the reader distinguishes, put in place of each value of each input in turn.
BAD_VALUES: tuple[Any, ...] = (None, True, False, 0, 7, -1, 2**31, 1e19, 3.5, "", "x", "windows", "Always",
                               [], [1], ["x"], [{}], {}, {"a": 1}, {"name": "n"})
DELETE = "<deleted>"


def fixture_files() -> list[Path]:
    """The Kubernetes YAML/JSON files the project owns (fixtures, source tests, rule cases)."""
    files = sorted((TESTS / "fixtures" / "k8s").glob("*")) + sorted((TESTS / "sources" / "k8s").glob("*"))
    for path in sorted((TESTS / "rules").rglob("*")):
        if path.suffix in (".yaml", ".yml", ".json") and path.is_file():
            text = path.read_text(encoding="utf-8", errors="replace")
            if "apiVersion" in text and "kind" in text:
                files.append(path)
    return [p for p in files if p.is_file()]


def _bench_objects() -> dict[str, Any]:
    sys.path.insert(0, str(REPO / "bench"))
    try:
        from webhook import MARK, review_template  # type: ignore[import-not-found]
    finally:
        sys.path.remove(str(REPO / "bench"))
    out = {}
    for deny in (False, True):
        body = review_template(deny=deny).replace(f"{MARK}UID{MARK}", "u1").replace(f"{MARK}NAME{MARK}", "shop")
        for i in range(3):
            body = body.replace(f"{MARK}TAG{i}{MARK}", f"1.{i}")
        out["bench-deny" if deny else "bench-allow"] = json.loads(body)["request"]["object"]
    return out


def review_objects() -> dict[str, tuple[Any, str]]:
    """request.object / oldObject of every owned AdmissionReview fixture, and the webhook benchmark's objects."""
    out: dict[str, tuple[Any, str]] = {}
    for path in sorted((TESTS / "fixtures" / "admission").glob("*.json")):
        try:
            review = json.loads(path.read_text(encoding="utf-8"))
        except ValueError:
            continue
        request = review.get("request") if isinstance(review, dict) else None
        if not isinstance(request, dict):
            continue
        for key in ("object", "oldObject"):
            if isinstance(request.get(key), dict):
                out[f"{path.name}:{key}"] = (request[key], request.get("namespace") or "default")
    for name, obj in _bench_objects().items():
        out[name] = (obj, "shop")
    return out


def outcome(call: Callable[[], Any]) -> str:
    try:
        return repr(call())
    except InputError as exc:
        return f"InputError({exc.message!r}, file={exc.file!r}, line={exc.line!r}, path={exc.path!r})"
    except Exception as exc:  # noqa: BLE001  (a crash must stay the same crash)
        return f"{type(exc).__name__}({exc})"


def _positions(node: Any, where: str = "") -> Iterator[tuple[Any, Any, str]]:
    if isinstance(node, dict):
        for key in list(node):
            yield node, key, f"{where}/{key}"
            yield from _positions(node[key], f"{where}/{key}")
    elif isinstance(node, list):
        for i in range(len(node)):
            yield node, i, f"{where}/{i}"
            yield from _positions(node[i], f"{where}/{i}")


def mutations(obj: Any) -> Iterator[tuple[str, Callable[[], None]]]:
    """(id, undo) for each value of `obj` replaced by each BAD_VALUE and deleted, applied in place one at a time."""
    for parent, key, where in list(_positions(obj)):
        old = parent[key]
        for bad in (*BAD_VALUES, DELETE):
            if bad is DELETE:
                if isinstance(parent, dict):
                    items = list(parent.items())
                    del parent[key]
                    def undo(parent: Any = parent, items: list[Any] = items) -> None:
                        parent.clear()
                        parent.update(items)
                else:
                    continue  # a YSeq keeps item lines by index; deleting would shift them
            else:
                parent[key] = json.loads(json.dumps(bad))  # a fresh copy each time
                def undo(parent: Any = parent, key: Any = key, old: Any = old) -> None:
                    parent[key] = old
            yield f"{where}={bad!r}", undo
            undo()


def digest(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def cases(module: ModuleType) -> dict[str, str]:
    """Every case id -> outcome under `module` (the reader). Whole inputs keep their full repr; mutated ones a digest."""
    out: dict[str, str] = {}
    for path in fixture_files():
        rel = path.relative_to(REPO).as_posix()
        text = path.read_text(encoding="utf-8", errors="replace")
        out[f"{rel}|load_text"] = outcome(partial(module.load_text, text, file=rel, namespace="default"))
        try:
            docs = load_documents(text, file=rel, dialect="1.1")
        except InputError:
            continue
        for n, doc in enumerate(docs):
            if not isinstance(doc.value, dict):
                continue
            for mid, _undo in mutations(doc.value):
                out[f"{rel}|doc{n}|{mid}"] = digest(outcome(
                    partial(module.workloads_from_object, doc.value, file=rel, namespace="default")))
    for name, (obj, namespace) in review_objects().items():
        def read(obj: Any = obj, namespace: str = namespace) -> Any:
            return module.workloads_from_object(obj, file="request.object", namespace=namespace)
        out[f"{name}|object"] = outcome(read)
        out[f"{name}|object-line"] = outcome(
            partial(module.workloads_from_object, obj, file="request.object", namespace=namespace, line=1,
                    base_path="items[0]"))
        for mid, _undo in mutations(obj):
            out[f"{name}|{mid}"] = digest(outcome(read))
    return out


def summary(result: dict[str, str]) -> dict[str, str]:
    """What the golden file keeps: whole inputs in full, and per input one digest over all its mutations."""
    out: dict[str, str] = {}
    groups: dict[str, list[str]] = {}
    for key, value in result.items():
        source, _, _rest = key.rpartition("|") if key.endswith(("|load_text", "|object", "|object-line")) else (None, "", "")
        if source is not None:
            out[key] = value
            continue
        parts = key.split("|")
        source = "|".join(parts[:2]) if parts[1].startswith("doc") else parts[0]
        groups.setdefault(source, []).append(f"{key}={value}")
    for source, lines in groups.items():
        out[f"{source}|mutations"] = f"{len(lines)} cases, {digest(chr(10).join(sorted(lines)))}"
    return out


if __name__ == "__main__":
    from admission.sources import kubernetes

    result = summary(cases(kubernetes))
    GOLDEN.write_text(json.dumps(result, indent=0, sort_keys=True) + "\n", encoding="utf-8")
    print(f"{len(result)} cases written to {GOLDEN.relative_to(REPO)}")
