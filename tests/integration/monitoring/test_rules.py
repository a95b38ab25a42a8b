"""The alert rules (deploy/prometheus-rules.yaml) with the real promtool: `check rules`, and the
unit tests in tests/rules/ (series in, alerts out). Also that every alert is tested firing and
not firing, documented in docs/runbook.md, written against metrics that really exist, and
shipped unchanged by the Helm chart."""

from __future__ import annotations

import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.support.kube import REPO_ROOT
from tests.support.monitoring_files import (
    CHART_RULES,
    RULE_TESTS,
    RULES,
    RUNBOOK_URL,
    alerting_rules,
    chart_template,
    exported_metric_names,
    github_anchor,
    load_rules,
    metric_names,
    runbook_sections,
)
from tests.support.prometheus_tools import promtool_binary

ALERTS = [rule["alert"] for rule in alerting_rules(load_rules())]


def promtool(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(promtool_binary()), *args],
        capture_output=True,
        text=True,
        cwd=REPO_ROOT,
        timeout=60,
        check=False,
    )


@pytest.mark.parametrize("path", [RULES, CHART_RULES], ids=["deploy", "chart"])
def test_promtool_checks_the_rules(path: Path) -> None:
    checked = promtool("check", "rules", str(path))
    assert checked.returncode == 0, checked.stdout + checked.stderr
    assert f"SUCCESS: {len(ALERTS)} rules found" in checked.stdout


def test_promtool_unit_tests_pass() -> None:
    assert RULE_TESTS, "no tests/rules/*.test.yaml"
    tested = promtool("test", "rules", *(str(p) for p in RULE_TESTS))
    assert tested.returncode == 0, tested.stdout + tested.stderr
    assert tested.stdout.count("SUCCESS") == len(RULE_TESTS), tested.stdout


def _alert_rule_tests() -> list[dict[str, Any]]:
    found: list[dict[str, Any]] = []
    for path in RULE_TESTS:
        suite = yaml.safe_load(path.read_text())
        assert suite["rule_files"] == ["../../deploy/prometheus-rules.yaml"], path
        for test in suite["tests"]:
            found.extend(test.get("alert_rule_test") or [])
    return found


@pytest.mark.parametrize("alert", ALERTS)
def test_every_alert_is_tested_firing_and_not_firing(alert: str) -> None:
    cases = [case for case in _alert_rule_tests() if case["alertname"] == alert]
    assert any(case.get("exp_alerts") for case in cases), f"{alert}: no case where it fires"
    assert any(not case.get("exp_alerts") for case in cases), f"{alert}: no silent case"


@pytest.mark.parametrize("rule", alerting_rules(load_rules()), ids=lambda rule: rule["alert"])
def test_every_alert_has_a_severity_summary_description_and_runbook(rule: dict[str, Any]) -> None:
    assert rule["labels"]["severity"] in {"warning", "critical"}
    annotations = rule["annotations"]
    assert set(annotations) == {"summary", "description", "runbook_url"}
    assert annotations["summary"].strip()
    assert annotations["description"].strip()
    anchor = github_anchor(rule["alert"])
    assert annotations["runbook_url"] == f"{RUNBOOK_URL}#{anchor}"
    assert anchor in {github_anchor(section) for section in runbook_sections()}


def test_the_runbook_has_one_section_per_alert_and_nothing_else() -> None:
    assert runbook_sections() == ALERTS


@pytest.mark.parametrize("rule", alerting_rules(load_rules()), ids=lambda rule: rule["alert"])
def test_every_alert_reads_metrics_that_are_exported(rule: dict[str, Any]) -> None:
    # A misspelt metric is not an error to Prometheus: the alert would just never fire.
    unknown = metric_names(rule["expr"]) - exported_metric_names()
    assert not unknown, f"{rule['alert']} reads metrics nobody exports: {sorted(unknown)}"


def test_the_chart_copy_is_the_rules_file() -> None:
    """The chart can only read files inside itself: `make monitoring` copies the rules there."""
    assert CHART_RULES.read_bytes() == RULES.read_bytes(), "stale: run `make monitoring`"


def test_the_chart_renders_the_same_groups() -> None:
    rule = chart_template("monitoring/prometheusrule.yaml", "prometheusRule.enabled=true")
    assert rule["kind"] == "PrometheusRule"
    assert rule["spec"]["groups"] == load_rules()["groups"]
