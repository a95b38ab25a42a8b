"""The shipped alert rules and Grafana dashboard, read the way tests need them.

Where the files are, which alerts and queries they hold, which metric names the operator and
the workers really export, the substitutions that turn a dashboard query into PromQL a
Prometheus server takes, and what the Helm chart renders from them. Nothing here starts a
server.
"""

from __future__ import annotations

import copy
import json
import re
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from arqfleet.operator import metrics as operator_metrics
from arqfleet.worker.metrics import WorkerMetrics
from tests.support.kube import REPO_ROOT

RULES = REPO_ROOT / "deploy" / "prometheus-rules.yaml"
CHART_RULES = REPO_ROOT / "charts" / "arqfleet" / "files" / "prometheus-rules.yaml"
RULE_TESTS = sorted((REPO_ROOT / "tests" / "rules").glob("*.test.yaml"))
RUNBOOK = REPO_ROOT / "docs" / "runbook.md"
RUNBOOK_URL = "https://github.com/arqfleet/arqfleet/blob/main/docs/runbook.md"
CHART = REPO_ROOT / "charts" / "arqfleet"
DASHBOARD = REPO_ROOT / "deploy" / "grafana-dashboard.json"
CHART_DASHBOARD = REPO_ROOT / "charts" / "arqfleet" / "files" / "dashboard.json"

_METRIC = re.compile(r"\barqfleet_[a-z_]+")
_LABEL_VALUES = re.compile(r"^label_values\((?P<selector>.+),\s*(?P<label>\w+)\)$")


def load_rules(path: Path = RULES) -> dict[str, Any]:
    rules: dict[str, Any] = yaml.safe_load(path.read_text())
    return rules


def alerting_rules(rules: dict[str, Any]) -> list[dict[str, Any]]:
    return [rule for group in rules["groups"] for rule in group["rules"] if "alert" in rule]


def with_for(rules: dict[str, Any], duration: str) -> dict[str, Any]:
    """A copy of `rules` in which every `for:` is `duration` and nothing else differs."""
    copied = copy.deepcopy(rules)
    for group in copied["groups"]:
        for rule in group["rules"]:
            if "for" in rule:
                rule["for"] = duration
    return copied


def without_for(rules: dict[str, Any]) -> dict[str, Any]:
    copied = copy.deepcopy(rules)
    for group in copied["groups"]:
        for rule in group["rules"]:
            rule.pop("for", None)
    return copied


def _sample_names(family_name: str, family_type: str) -> set[str]:
    """The series names Prometheus stores for one prometheus_client metric family."""
    if family_type == "counter":
        return {f"{family_name}_total"}
    if family_type == "histogram":
        return {f"{family_name}_{suffix}" for suffix in ("bucket", "count", "sum")}
    return {family_name}


def exported_metric_names() -> set[str]:
    """Every arqfleet_* series name the operator and a worker export (labelled families that
    have no children yet are included: their names are known before the first sample)."""
    worker = WorkerMetrics(["job"], in_progress=lambda: 0.0, draining=lambda: 0.0)
    names: set[str] = set()
    for registry in (operator_metrics.REGISTRY, worker.registry):
        for family in registry.collect():
            names |= _sample_names(family.name, family.type)
    return names


def metric_names(expr: str) -> set[str]:
    """The arqfleet_* metric names a PromQL expression reads."""
    return set(_METRIC.findall(expr))


def github_anchor(heading: str) -> str:
    """The anchor GitHub gives a Markdown heading: lower case, punctuation dropped, spaces to
    hyphens."""
    return re.sub(r"[^\w\- ]", "", heading.strip().lower()).replace(" ", "-")


def runbook_sections() -> list[str]:
    """The level-2 headings of docs/runbook.md (one per alert)."""
    return [line[3:].strip() for line in RUNBOOK.read_text().splitlines() if line.startswith("## ")]


# -- the dashboard ----------------------------------------------------------------------------


@dataclass(frozen=True)
class DashboardQuery:
    """One PromQL query of the dashboard: a panel's target or an annotation."""

    where: str  # the panel title, or "annotation: <name>"
    ref: str
    expr: str


def load_dashboard(path: Path = DASHBOARD) -> dict[str, Any]:
    board: dict[str, Any] = json.loads(path.read_text())
    return board


def panels(board: dict[str, Any]) -> list[dict[str, Any]]:
    """Every panel that is not a row, including those inside collapsed rows."""
    found: list[dict[str, Any]] = []
    for panel in board["panels"]:
        if panel["type"] == "row":
            found.extend(panel.get("panels") or [])
        else:
            found.append(panel)
    return found


def dashboard_queries(board: dict[str, Any]) -> list[DashboardQuery]:
    queries = [
        DashboardQuery(panel["title"], target["refId"], target["expr"])
        for panel in panels(board)
        for target in panel.get("targets") or []
    ]
    queries += [
        DashboardQuery(f"annotation: {a['name']}", "", a["expr"])
        for a in board["annotations"]["list"]
        if a.get("expr")
    ]
    return queries


def variable_queries(board: dict[str, Any]) -> dict[str, tuple[str, str]]:
    """name -> (series selector, label) of each `label_values(selector, label)` variable."""
    found = {}
    for variable in board["templating"]["list"]:
        if variable["type"] == "query":
            match = _LABEL_VALUES.match(variable["query"])
            assert match, f"variable {variable['name']}: not label_values(): {variable['query']}"
            found[variable["name"]] = (match["selector"], match["label"])
    return found


def substitute(text: str, values: dict[str, str]) -> str:
    """Replace Grafana's $name and ${name} variables by `values` (a value for each one)."""

    def value(match: re.Match[str]) -> str:
        name = match["braced"] or match["plain"]
        if name not in values:
            raise KeyError(f"no value for ${name} in {text!r}")
        return values[name]

    return re.sub(r"\$\{(?P<braced>\w+)\}|\$(?P<plain>\w+)", value, text)


def chart_template(template: str, *values: str) -> dict[str, Any]:
    """The one object `helm template` renders from charts/arqfleet/templates/<template> with
    `--set` `values` (helm is the one hack/setup installs beside the venv's python)."""
    helm = Path(sys.executable).parent / "helm"
    argv = [str(helm), "template", "rel", str(CHART), "--show-only", f"templates/{template}"]
    for value in values:
        argv += ["--set", value]
    rendered = subprocess.run(argv, capture_output=True, text=True, check=True, timeout=60)
    found: dict[str, Any] = yaml.safe_load(rendered.stdout)
    return found
