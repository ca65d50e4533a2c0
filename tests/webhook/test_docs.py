"""docs/webhook.md matches the code: a row for every server setting and every metric."""

from __future__ import annotations

import re
from pathlib import Path

from admission.webhook.metrics import Metrics
from admission.webhook.settings import Settings

PAGE = (Path(__file__).resolve().parents[2] / "docs" / "webhook.md").read_text()


def _section(title: str) -> str:
    start = PAGE.index(f"## {title}\n")
    return PAGE[start:PAGE.index("\n## ", start + 1)]


def test_every_server_setting_has_a_row_in_the_settings_table_of_the_docs() -> None:
    table = _section("Settings") + _section("Managed certificates")
    internal = {"tls_held"}  # set by `serve` for its workers, not by users
    missing = [name for name in Settings.model_fields
               if name not in internal and f"ADMISSION_{name.upper()}" not in table]
    assert missing == []


def test_every_metric_the_webhook_exports_is_in_the_metrics_table_of_the_docs_and_no_other() -> None:
    table = _section("Metrics").split("\n\nCounters have")[0]
    documented = set(re.findall(r"`(admission_[a-z_]+)`", table))
    exported = {m.name + ("_total" if m.type == "counter" else "") for m in Metrics().registry.collect()
                if m.name.startswith("admission_")}
    assert exported == documented
