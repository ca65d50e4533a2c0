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


def test_the_documented_mutate_audit_line_has_the_fields_a_real_one_has() -> None:
    """docs/webhook.md's /mutate audit line: the fields `mutation_record` writes for a Pod it pinned, no more, no less."""
    import json as json_

    from admission.webhook.audit import mutation_record
    from admission.webhook.mutate import Mutation
    from admission.webhook.review import parse
    from tests.webhook.conftest import pod, review

    section = _section("Audit line")
    shown = json_.loads(next(line for line in section.splitlines() if line.startswith('{"ts"') and '"mutate"' in line))
    request = parse(json_.dumps(review(pod())).encode()).request
    real = mutation_record(request, Mutation(result="mutated", kind="Pod", namespace="default", name="web",
                                             pinned=[{"container": "app", "from": "a:1", "to": "a:1@sha256:" + "0" * 64}]),
                           duration=0.001, deadline=2.0)
    assert list(shown) == list(real)
    assert list(shown["pinned"][0]) == ["container", "from", "to"]


def test_the_tls_secret_name_is_read_under_its_new_name_and_its_old_one(monkeypatch) -> None:  # type: ignore[no-untyped-def]
    """ADMISSION_TLS_SECRET became ADMISSION_TLS_SECRET_NAME (issue 27: no-secret-in-env would read a literal *_SECRET as
    a secret in the chart's own Pod spec); a Deployment written with the old name keeps working."""
    for name in ("ADMISSION_TLS_SECRET_NAME", "ADMISSION_TLS_SECRET"):
        monkeypatch.delenv("ADMISSION_TLS_SECRET_NAME", raising=False)
        monkeypatch.delenv("ADMISSION_TLS_SECRET", raising=False)
        monkeypatch.setenv(name, "admission-tls")
        assert Settings().tls_secret_name == "admission-tls"
