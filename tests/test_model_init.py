"""The model's faster __init__ (admission/model.py fast_init, issue 15; every frozen class since issue 27) behaves as the
dataclass-generated one."""

from __future__ import annotations

import dataclasses
import inspect
import pickle

import pytest

from admission import findings, model

# Every frozen class of both modules (`model.frozen`): all of them take fast_init's __init__ (Report is mutable)
CLASSES = [c for module in (model, findings) for c in vars(module).values() if isinstance(c, type)
           and dataclasses.is_dataclass(c) and c.__module__ == module.__name__ and c is not findings.Report]


def _reference(cls: type) -> type:
    """The same fields in a freshly generated frozen slotted dataclass (what each class was before fast_init)."""
    specs = []
    for f in dataclasses.fields(cls):
        if f.default is not dataclasses.MISSING:
            specs.append((f.name, f.type, dataclasses.field(default=f.default)))
        elif f.default_factory is not dataclasses.MISSING:
            specs.append((f.name, f.type, dataclasses.field(default_factory=f.default_factory)))
        else:
            specs.append((f.name, f.type))
    return dataclasses.make_dataclass(cls.__name__, specs, frozen=True, slots=True)


@pytest.mark.parametrize("cls", CLASSES, ids=lambda c: c.__name__)
def test_same_signature_defaults_and_frozenness(cls: type) -> None:
    ref = _reference(cls)
    assert [(p.name, p.kind, p.default is inspect.Parameter.empty) for p in inspect.signature(cls).parameters.values()] \
        == [(p.name, p.kind, p.default is inspect.Parameter.empty) for p in inspect.signature(ref).parameters.values()]
    required = {f.name: f"v-{f.name}" for f in dataclasses.fields(cls)
                if f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING}
    built, expected = cls(**required), ref(**required)
    assert type(built) is cls
    for f in dataclasses.fields(cls):
        assert getattr(built, f.name) == getattr(expected, f.name)
    assert repr(built).partition("(")[2] == repr(expected).partition("(")[2]
    assert built == cls(**required) and built != expected  # dataclass equality: same class and fields
    assert pickle.loads(pickle.dumps(built)) == built
    name = dataclasses.fields(cls)[0].name
    with pytest.raises(dataclasses.FrozenInstanceError):
        setattr(built, name, "other")
    changed = dataclasses.replace(built, **{name: "other"})
    assert type(changed) is cls and getattr(changed, name) == "other"
    # positional calls fill fields in order, as the generated __init__ does
    positional = cls(*(f"p-{f.name}" for f in dataclasses.fields(cls)))
    assert [getattr(positional, f.name) for f in dataclasses.fields(cls)] == [f"p-{f.name}" for f in dataclasses.fields(cls)]
    with pytest.raises(TypeError):
        cls(**required, no_such_field=1)


def test_default_factories_are_fresh_per_instance() -> None:
    origin = model.Origin("f", 1, "p")
    a, b = model.Container(name="a", origin=origin), model.Container(name="a", origin=origin)
    assert a.limits == {} and a.limits is not b.limits


def test_subclass_takes_the_descriptor_path() -> None:
    class Sub(model.Container):
        __slots__ = ("extra",)

    sub = Sub(name="a", origin=model.Origin("f", 1, "p"))
    assert type(sub) is Sub and sub.name == "a" and sub.limits == {}
