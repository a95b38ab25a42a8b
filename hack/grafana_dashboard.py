"""The arqfleet Grafana dashboard, as code (Grafana's grafana-foundation-sdk builders).

One dashboard, one JobQueue (or several) at a time, chosen with the namespace and jobqueue
variables: queue depth and oldest job, replicas desired against current with the scale events
as annotations, job outcomes, duration and wait percentiles, dead letters, and the operator's
own health. Every query uses the metric names of operator/arqfleet/operator/metrics.py and
worker/arqfleet/worker/metrics.py and the label contract of deploy/prometheus-rules.yaml
(operator series carry namespace/jobqueue; worker series get them from their scrape target).

`make monitoring` (`.venv/bin/python hack/grafana_dashboard.py`) writes the JSON to
charts/arqfleet/files/dashboard.json (the chart's ConfigMap) and deploy/grafana-dashboard.json
(to import by hand); a test fails when either differs from `render()`, and
tests/e2e/test_monitoring.py runs every query against a real Prometheus scraping a real fleet.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Iterator
from pathlib import Path

from grafana_foundation_sdk.builders import common as common_builders
from grafana_foundation_sdk.builders import dashboard as builders
from grafana_foundation_sdk.builders import prometheus, stat, timeseries
from grafana_foundation_sdk.cog.builder import Builder
from grafana_foundation_sdk.cog.encoder import JSONEncoder
from grafana_foundation_sdk.models import common
from grafana_foundation_sdk.models import dashboard as models

REPO_ROOT = Path(__file__).resolve().parent.parent
OUTPUTS = (
    REPO_ROOT / "charts" / "arqfleet" / "files" / "dashboard.json",
    REPO_ROOT / "deploy" / "grafana-dashboard.json",
)
UID = "arqfleet-jobqueue"

DATASOURCE = models.DataSourceRef(type_val="prometheus", uid="${datasource}")
# The JobQueues on screen; "All" is the regex .* so every query can use =~ alike.
QUEUE = 'namespace="$namespace", jobqueue=~"$jobqueue"'
RATE = "$__rate_interval"

# The panel builders this dashboard uses (both have .id(), which the generic Builder lacks).
Panel = timeseries.Panel | stat.Panel


class PrometheusAnnotation(models.AnnotationQuery):
    """An annotation query with the Prometheus data source's own fields, which the SDK's
    generic AnnotationQuery does not model: how to title and tag each event."""

    def __init__(
        self, *, name: str, expr: str, icon_color: str, title_format: str, tag_keys: str
    ) -> None:
        super().__init__(
            name=name, datasource=DATASOURCE, enable=True, icon_color=icon_color, expr=expr
        )
        self.title_format = title_format
        self.tag_keys = tag_keys

    def to_json(self) -> dict[str, object]:
        return {**super().to_json(), "titleFormat": self.title_format, "tagKeys": self.tag_keys}


class Annotation(Builder[models.AnnotationQuery]):
    def __init__(self, annotation: PrometheusAnnotation) -> None:
        self._internal = annotation

    def build(self) -> models.AnnotationQuery:
        return self._internal


def query(expr: str, legend: str, ref: str = "A") -> prometheus.Dataquery:
    return prometheus.Dataquery().expr(expr).legend_format(legend).ref_id(ref).range()


def _graph(
    title: str, description: str, unit: str, *queries: prometheus.Dataquery
) -> timeseries.Panel:
    panel = (
        timeseries.Panel()
        .title(title)
        .description(description)
        .datasource(DATASOURCE)
        .unit(unit)
        .height(8)
        .span(12)
        .legend(
            common_builders.VizLegendOptions()
            .display_mode(common.LegendDisplayMode.LIST)
            .placement(common.LegendPlacement.BOTTOM)
            .show_legend(True)
        )
    )
    for i, target in enumerate(queries):
        panel = panel.with_target(target.ref_id(chr(ord("A") + i)))
    return panel


def graph(
    title: str, description: str, unit: str, *queries: prometheus.Dataquery
) -> timeseries.Panel:
    return _graph(title, description, unit, *queries).min(0)


def bars(
    title: str, description: str, unit: str, *queries: prometheus.Dataquery
) -> timeseries.Panel:
    panel = _graph(title, description, unit, *queries)
    return panel.draw_style(common.GraphDrawStyle.BARS).fill_opacity(80).min(0)


def number(title: str, description: str, unit: str, expr: str) -> stat.Panel:
    return (
        stat.Panel()
        .title(title)
        .description(description)
        .datasource(DATASOURCE)
        .unit(unit)
        .height(4)
        .span(4)
        .graph_mode(common.BigValueGraphMode.AREA)
        .reduce_options(common_builders.ReduceDataOptions().calcs(["lastNotNull"]))
        .with_target(query(expr, ""))
    )


def scale_events_expr() -> str:
    """Scale events by direction and reason within the window. A counter's child appears at its
    first increment, which increase() cannot see (there is no earlier sample), so a series that
    is new within the window counts as events too."""
    events = f"arqfleet_scale_events_total{{{QUEUE}}}"
    by = "sum by (jobqueue, direction, reason)"
    return f"{by} (increase({events}[{RATE}])) > 0 or {by} ({events} unless {events} offset {RATE})"


def percentiles(metric: str, by: str = "") -> list[prometheus.Dataquery]:
    """p50, p90 and p99 of a histogram over the JobQueues on screen."""
    group = f"le{', ' + by if by else ''}"
    return [
        query(
            f"histogram_quantile({q}, sum by ({group}) (rate({metric}_bucket{{{QUEUE}}}[{RATE}])))",
            f"p{round(q * 100)}" + (f" {{{{{by}}}}}" if by else ""),
        )
        for q in (0.5, 0.9, 0.99)
    ]


def queue_row() -> Iterator[Panel]:
    yield number(
        "Ready", "Jobs due and not running.", "short", f"sum(arqfleet_queue_ready_jobs{{{QUEUE}}})"
    )
    yield number(
        "Running", "Jobs in progress.", "short", f"sum(arqfleet_queue_running_jobs{{{QUEUE}}})"
    )
    yield number(
        "Deferred",
        "Jobs due later.",
        "short",
        f"sum(arqfleet_queue_deferred_jobs{{{QUEUE}}})",
    )
    yield number(
        "Oldest ready",
        "How long the oldest due job has waited to start.",
        "s",
        f"max(arqfleet_queue_oldest_ready_seconds{{{QUEUE}}})",
    )
    yield number(
        "Replicas",
        "The worker Deployment's replicas.",
        "short",
        f"sum(arqfleet_replicas_current{{{QUEUE}}})",
    )
    yield number(
        "Dead letters",
        "Jobs in the dead-letter store (`arqfleet dlq list`).",
        "short",
        f"sum(arqfleet_queue_dead_letters{{{QUEUE}}})",
    )
    yield graph(
        "Queue depth",
        "Ready (due, not running), running and deferred (due later) jobs, read from Redis by "
        "the operator every poll.",
        "short",
        query(f"sum by (jobqueue) (arqfleet_queue_ready_jobs{{{QUEUE}}})", "{{jobqueue}} ready"),
        query(
            f"sum by (jobqueue) (arqfleet_queue_running_jobs{{{QUEUE}}})", "{{jobqueue}} running"
        ),
        query(
            f"sum by (jobqueue) (arqfleet_queue_deferred_jobs{{{QUEUE}}})",
            "{{jobqueue}} deferred",
        ),
    )
    yield graph(
        "Oldest ready job age",
        "Age of the oldest job that is due and not running: what maxWaitSeconds targets.",
        "s",
        query(
            f"max by (jobqueue) (arqfleet_queue_oldest_ready_seconds{{{QUEUE}}})", "{{jobqueue}}"
        ),
    )


def scaling_row() -> Iterator[Panel]:
    yield graph(
        "Replicas: desired and current",
        "What the scaler wants, the Deployment's replicas, and the workers serving (scraped and "
        "not draining). Scale events are the dashboard's annotations.",
        "short",
        query(f"sum by (jobqueue) (arqfleet_replicas_desired{{{QUEUE}}})", "{{jobqueue}} desired"),
        query(f"sum by (jobqueue) (arqfleet_replicas_current{{{QUEUE}}})", "{{jobqueue}} current"),
        query(
            f"count by (jobqueue) (arqfleet_worker_draining{{{QUEUE}}} == 0)",
            "{{jobqueue}} serving",
        ),
    )
    yield bars(
        "Scale events",
        "Replica changes by direction and reason (QueueDepth, LatencyTarget, QueueEmpty, ...).",
        "short",
        query(scale_events_expr(), "{{jobqueue}} {{direction}} {{reason}}"),
    )
    yield graph(
        "Redis reachable and scaling limited",
        "Redis reachable: 1 when the operator's last probe answered (0 freezes the replicas). "
        "Limited: 1 while min/maxReplicas or a step policy holds the replicas back.",
        "short",
        query(
            f"min by (jobqueue) (arqfleet_redis_reachable{{{QUEUE}}})",
            "{{jobqueue}} Redis reachable",
        ),
        query(f"max by (jobqueue) (arqfleet_scaling_limited{{{QUEUE}}})", "{{jobqueue}} limited"),
    )
    yield graph(
        "Jobs in progress per worker",
        "Jobs each worker pod is running now (the scale-down deletes idle pods first).",
        "short",
        query(f"sum by (pod) (arqfleet_worker_jobs_in_progress{{{QUEUE}}})", "{{pod}}"),
    )


def jobs_row() -> Iterator[Panel]:
    yield graph(
        "Jobs finished by outcome",
        "Job tries finished per second: success, failure (not retried), retry, timeout, "
        "cancelled (drain deadline or abort).",
        "suffix: jobs/s",
        query(
            f"sum by (outcome) (rate(arqfleet_worker_jobs_finished_total{{{QUEUE}}}[{RATE}]))",
            "{{outcome}}",
        ),
    )
    yield graph(
        "Dead letters: stored and new",
        "Jobs in the dead-letter store, and jobs that failed for good per function.",
        "short",
        query(f"sum by (jobqueue) (arqfleet_queue_dead_letters{{{QUEUE}}})", "{{jobqueue}} stored"),
        query(
            f"sum by (function) (increase(arqfleet_worker_dead_letters_total{{{QUEUE}}}[{RATE}]))",
            "{{function}} new",
        ),
    )
    yield graph(
        "Job duration",
        "Run time of one try, over every function of the JobQueues on screen.",
        "s",
        *percentiles("arqfleet_worker_job_duration_seconds"),
    )
    yield graph(
        "Queue wait",
        "From when a job became runnable to when a worker started it.",
        "s",
        *percentiles("arqfleet_worker_job_queue_wait_seconds"),
    )
    yield graph(
        "Job duration p90 by function",
        "Which functions are slow.",
        "s",
        query(
            "histogram_quantile(0.9, sum by (le, function) "
            f"(rate(arqfleet_worker_job_duration_seconds_bucket{{{QUEUE}}}[{RATE}])))",
            "{{function}}",
        ),
    )
    yield graph(
        "Worker Redis errors",
        "Redis commands of the worker runtime that failed, by operation.",
        "suffix: /s",
        query(
            f"sum by (operation) (rate(arqfleet_worker_redis_errors_total{{{QUEUE}}}[{RATE}]))",
            "{{operation}}",
        ),
    )


def operator_row() -> Iterator[Panel]:
    yield graph(
        "Scaling loop lag",
        "How late queue polls start against their schedule (all JobQueues of the operator).",
        "s",
        *(
            query(
                f"histogram_quantile({q}, sum by (le) "
                f"(rate(arqfleet_scaling_loop_lag_seconds_bucket[{RATE}])))",
                f"p{round(q * 100)}",
            )
            for q in (0.5, 0.9, 0.99)
        ),
    )
    yield graph(
        "Redis probe duration p90",
        "One probe round (every queue on one Redis, one pipeline), per Redis (a hash of its URL).",
        "s",
        query(
            "histogram_quantile(0.9, sum by (le, redis) "
            f"(rate(arqfleet_probe_duration_seconds_bucket[{RATE}])))",
            "{{redis}}",
        ),
    )
    yield graph(
        "Operator errors",
        "Failed reconciles and scaling polls per second, by error type.",
        "suffix: /s",
        query(
            f"sum by (error) (rate(arqfleet_reconcile_errors_total[{RATE}]))",
            "reconcile {{error}}",
        ),
        query(f"sum by (error) (rate(arqfleet_scaling_errors_total[{RATE}]))", "scaling {{error}}"),
    )
    yield graph(
        "Operator up",
        'Prometheus\'s scrape of the operator (job="arqfleet-operator").',
        "short",
        query('up{job="arqfleet-operator"}', "{{instance}}"),
    )


def variables() -> list[Builder[models.VariableModel]]:
    return [
        builders.DatasourceVariable("datasource").label("Data source").type("prometheus"),
        builders.QueryVariable("namespace")
        .label("Namespace")
        .datasource(DATASOURCE)
        .query("label_values(arqfleet_replicas_desired, namespace)")
        .refresh(models.VariableRefresh.ON_TIME_RANGE_CHANGED)
        .sort(models.VariableSort.ALPHABETICAL_ASC),
        builders.QueryVariable("jobqueue")
        .label("JobQueue")
        .datasource(DATASOURCE)
        .query('label_values(arqfleet_replicas_desired{namespace="$namespace"}, jobqueue)')
        .refresh(models.VariableRefresh.ON_TIME_RANGE_CHANGED)
        .sort(models.VariableSort.ALPHABETICAL_ASC)
        .multi(True)
        .include_all(True)
        .all_value(".*"),
    ]


def scale_events() -> Annotation:
    return Annotation(
        PrometheusAnnotation(
            name="Scale events",
            icon_color="orange",
            expr=scale_events_expr(),
            title_format="{{jobqueue}} scaled {{direction}}",
            tag_keys="direction,reason",
        )
    )


def build() -> models.Dashboard:
    board = (
        builders.Dashboard("arqfleet / JobQueue")
        .uid(UID)
        .description("An arqfleet JobQueue: its queue in Redis, its worker fleet, its jobs.")
        .tags(["arqfleet", "arq"])
        .time("now-1h", "now")
        .refresh("30s")
        .tooltip(models.DashboardCursorSync.CROSSHAIR)
        .editable()
        .variables(variables())
        .annotation(scale_events())
    )
    rows = [
        ("Queue", queue_row()),
        ("Scaling", scaling_row()),
        ("Jobs", jobs_row()),
        ("Operator", operator_row()),
    ]
    panel_id = 0
    for title, panels in rows:
        panel_id += 1
        board = board.with_row(builders.Row(title).id(panel_id))
        for panel in panels:
            panel_id += 1
            board = board.with_panel(panel.id(panel_id))
    return board.build()


def render() -> str:
    """The dashboard JSON as written to both files (stable key order, trailing newline)."""
    data = json.loads(json.dumps(build(), cls=JSONEncoder))
    return json.dumps(data, indent=2, sort_keys=True) + "\n"


def main() -> int:
    text = render()
    for path in OUTPUTS:
        path.write_text(text)
        print(f"wrote {path.relative_to(REPO_ROOT)}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
