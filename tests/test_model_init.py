"""The model's faster __init__ (admission/model.py fast_init, issue 15; every frozen class since issue 27) behaves as the
dataclass-generated one."""

from __future__ import annotations

import dataclasses
import inspect
import pickle

import pytest

from admission import findings, model
from admission.images import settings
from admission.inputs import repoconfig
from admission.policy import config, engine, rule
from admission.policy.rules import users
from admission.sources import kubernetes, spans

MODULES = (model, findings, config, settings, rule, users, repoconfig, spans, kubernetes, engine)
# Every class made by `model.frozen` in the modules that use it (their equality and frozenness come from model.py)
CLASSES = [c for module in MODULES for c in vars(module).values() if isinstance(c, type)
           and dataclasses.is_dataclass(c) and c.__module__ == module.__name__
           and getattr(c.__setattr__, "__module__", None) == model.__name__]


def test_every_class_of_the_model_and_the_findings_but_the_report_is_frozen_this_way() -> None:
    made = {c for c in CLASSES if c.__module__ in (model.__name__, findings.__name__)}
    every = {c for m in (model, findings) for c in vars(m).values() if isinstance(c, type)
             and dataclasses.is_dataclass(c) and c.__module__ == m.__name__}
    assert made == every - {findings.Report} and config.Policy in CLASSES and engine._Claim in CLASSES


def _reference(cls: type) -> type:
    """The same fields in a freshly generated frozen slotted dataclass (what each class was before fast_init)."""
    specs = []
    for f in dataclasses.fields(cls):
        if f.default is not dataclasses.MISSING:
            specs.append((f.name, f.type, dataclasses.field(default=f.default, kw_only=f.kw_only)))
        elif f.default_factory is not dataclasses.MISSING:
            specs.append((f.name, f.type, dataclasses.field(default_factory=f.default_factory, kw_only=f.kw_only)))
        else:
            specs.append((f.name, f.type, dataclasses.field(kw_only=f.kw_only)))
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
    # positional calls fill fields in order, as the generated __init__ does (keyword-only ones by name)
    every = dataclasses.fields(cls)
    positional = cls(*(f"p-{f.name}" for f in every if not f.kw_only), **{f.name: f"p-{f.name}" for f in every if f.kw_only})
    assert [getattr(positional, f.name) for f in every] == [f"p-{f.name}" for f in every]
    assert _hashable(built) == _hashable(expected)  # unhashable exactly when a field holds a dict or a list
    if _hashable(built):
        assert hash(built) == hash(cls(**required))
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


def _hashable(value: object) -> bool:
    try:
        hash(value)
    except TypeError:
        return False
    return True
