"""The Grafana dashboard: generated from hack/grafana_dashboard.py (both committed copies are
current), shipped unchanged by the chart, every query parsed by a real Prometheus and reading
only metrics that exist. tests/e2e/test_monitoring.py runs the same queries against a fleet."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest

import grafana_dashboard
from tests.support.monitoring_files import (
    CHART_DASHBOARD,
    DASHBOARD,
    DashboardQuery,
    chart_template,
    dashboard_queries,
    exported_metric_names,
    load_dashboard,
    metric_names,
    panels,
    substitute,
    variable_queries,
)
from tests.support.prometheus_server import PrometheusServer

QUERIES = dashboard_queries(load_dashboard())
VALUES = {"namespace": "shop", "jobqueue": "emails", "__rate_interval": "1m"}


@pytest.mark.parametrize("path", [DASHBOARD, CHART_DASHBOARD], ids=["deploy", "chart"])
def test_the_committed_dashboard_is_generated(path: Path) -> None:
    assert path.read_text() == grafana_dashboard.render(), "stale: run `make monitoring`"


def test_panels_have_unique_titles_and_ids() -> None:
    found = panels(load_dashboard())
    assert len({p["title"] for p in found}) == len(found)
    assert len({p["id"] for p in found}) == len(found)


@pytest.mark.parametrize("query", QUERIES, ids=lambda q: f"{q.where} {q.ref}".strip())
def test_every_query_reads_metrics_that_are_exported(query: DashboardQuery) -> None:
    unknown = metric_names(query.expr) - exported_metric_names()
    assert not unknown, f"{query}: reads metrics nobody exports: {sorted(unknown)}"


@pytest.fixture(scope="module")
def empty_prometheus() -> Iterator[PrometheusServer]:
    server = PrometheusServer(rule_files=[], jobs=[])
    try:
        yield server.start()
    finally:
        server.cleanup()


def test_every_query_and_variable_parses(empty_prometheus: PrometheusServer) -> None:
    board = load_dashboard()
    refused = {}
    for query in dashboard_queries(board):
        answer = empty_prometheus.get("query", query=substitute(query.expr, VALUES))
        if answer.status != 200:
            refused[f"{query.where} {query.ref}"] = answer.body.get("error")
    for name, (selector, label) in variable_queries(board).items():
        answer = empty_prometheus.get(
            f"label/{label}/values", **{"match[]": substitute(selector, VALUES)}
        )
        if answer.status != 200:
            refused[f"variable {name}"] = answer.body.get("error")
    assert not refused


def test_the_chart_renders_the_same_dashboard() -> None:
    config_map = chart_template("monitoring/dashboard.yaml", "dashboard.enabled=true")
    assert json.loads(config_map["data"]["arqfleet.json"]) == load_dashboard()
