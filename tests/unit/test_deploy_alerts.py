"""Every Prometheus alert is well-formed and has its row in the runbook (docs/OPERATIONS.md)."""

from __future__ import annotations

import yaml

from config.settings import ROOT


def test_every_alert_is_complete_and_in_the_runbook() -> None:
    groups = yaml.safe_load((ROOT / "deploy" / "prometheus" / "alerts.yml").read_text())["groups"]
    rules = [rule for group in groups for rule in group["rules"]]
    runbook = (ROOT / "docs" / "OPERATIONS.md").read_text()
    assert len(rules) >= 6
    for rule in rules:
        assert rule["expr"] and rule["for"] and rule["annotations"]["summary"], rule["alert"]
        assert rule["labels"]["severity"] in ("warning", "critical"), rule["alert"]
        assert f"| `{rule['alert']}` ({rule['labels']['severity']}) |" in runbook, f"{rule['alert']}: no runbook row"
