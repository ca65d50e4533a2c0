"""The rule catalogue: every registered rule, in catalogue order. `admission-cli explain`, `rules` and docs/rules.md
are generated from it. The rules register themselves through policy/rule.py when policy/rules/ is imported."""

from __future__ import annotations

from admission.policy.rule import REGISTERED, Param, Rule, RuleFunc, rule

__all__ = ["Param", "Rule", "RuleFunc", "all_rules", "get", "rule"]

_ORDERED: dict[str, Rule] = {}


def all_rules() -> dict[str, Rule]:
    """Every registered rule, in catalogue order (architecture §4 table order, then registration order)."""
    from admission.policy import rules  # noqa: F401  (registers on import)

    if len(_ORDERED) != len(REGISTERED):
        order = {rule_id: i for i, rule_id in enumerate(rules.ORDER)}
        _ORDERED.clear()
        _ORDERED.update(sorted(REGISTERED.items(), key=lambda item: order.get(item[0], len(order))))
    return _ORDERED


def get(rule_id: str) -> Rule | None:
    return all_rules().get(rule_id)
