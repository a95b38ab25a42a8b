"""What `operator_scale.py` reads to measure: /proc figures of a process, Prometheus text (the
operator's /metrics and the kube-apiserver's), and the apiserver's audit log of one user.

All readers are passive: none of them makes a request the benchmark would then count, except
the two /metrics scrapes, which the report names.
"""

from __future__ import annotations

import json
import math
import os
import re
import ssl
import urllib.request
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

from localcluster import ControlPlane

CLOCK_TICKS = os.sysconf("SC_CLK_TCK")
SCRAPE_TIMEOUT = 30.0  # the apiserver's /metrics is a few MB; a loaded 2-core VM is slow
WRITE_VERBS = frozenset({"create", "update", "patch", "delete", "deletecollection"})
# apiserver_request_total spells verbs in capitals, and server-side apply as its own APPLY.
METRIC_WRITE_VERBS = frozenset({"POST", "PUT", "PATCH", "APPLY", "DELETE", "DELETECOLLECTION"})

_SAMPLE = re.compile(r"^([a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{(.*)\})?\s+(\S+)")
_LABEL = re.compile(r'([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)"')


# -- /proc ---------------------------------------------------------------------------------


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of `pid`: its own work, whatever else the machine runs."""
    # Fields after the ")" that closes the command name start at field 3 (state);
    # utime and stime are fields 14 and 15.
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / CLOCK_TICKS


def memory_bytes(pid: int) -> tuple[int, int]:
    """(VmRSS, VmHWM): resident memory now and its peak over the process's life."""
    values = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        key, _, rest = line.partition(":")
        if key in ("VmRSS", "VmHWM"):
            values[key] = int(rest.split()[0]) * 1024  # reported in kB
    return values["VmRSS"], values["VmHWM"]


# -- Prometheus text -----------------------------------------------------------------------


def samples(text: str, name: str) -> list[tuple[dict[str, str], float]]:
    """Every sample of the series `name` (exact name) with its labels."""
    found = []
    for line in text.splitlines():
        if not line.startswith(name):
            continue
        match = _SAMPLE.match(line)
        if match is None or match.group(1) != name:
            continue
        found.append((dict(_LABEL.findall(match.group(2) or "")), float(match.group(3))))
    return found


def total(text: str, name: str) -> float:
    return sum(value for _, value in samples(text, name))


def buckets(text: str, name: str) -> dict[float, float]:
    """A histogram's cumulative buckets (upper bound -> count), summed over its other labels."""
    summed: dict[float, float] = defaultdict(float)
    for labels, value in samples(text, f"{name}_bucket"):
        summed[float(labels["le"])] += value
    return dict(summed)


def bucket_delta(before: dict[float, float], after: dict[float, float]) -> dict[float, float]:
    return {le: after[le] - before.get(le, 0.0) for le in after}


def quantile(cumulative: dict[float, float], q: float) -> float:
    """Prometheus's histogram_quantile: linear within the bucket that holds the q-th sample.

    In the +Inf bucket it returns the largest finite bound (a lower bound of the truth)."""
    bounds = sorted(cumulative)
    count = cumulative[bounds[-1]] if bounds else 0.0
    if count <= 0:
        return math.nan
    rank = q * count
    lower, below = 0.0, 0.0
    for bound in bounds:
        if cumulative[bound] >= rank:
            if math.isinf(bound):
                return lower
            inside = cumulative[bound] - below
            return lower + (bound - lower) * ((rank - below) / inside if inside else 1.0)
        lower, below = bound, cumulative[bound]
    return lower


def share_within(cumulative: dict[float, float], bound: float) -> float:
    """The fraction of observations <= `bound` (a bucket bound), exact from the buckets."""
    count = cumulative.get(math.inf, 0.0)
    return cumulative.get(bound, 0.0) / count if count else math.nan


# -- the kube-apiserver's /metrics ---------------------------------------------------------


def admin_context(plane: ControlPlane) -> ssl.SSLContext:
    """TLS with the control plane's CA and its admin client certificate (system:masters)."""
    context = ssl.create_default_context(cafile=str(plane.certs / "ca.crt"))
    context.load_cert_chain(str(plane.certs / "admin.crt"), str(plane.certs / "admin.key"))
    return context


def apiserver_requests(plane: ControlPlane) -> Counter[tuple[str, str]]:
    """apiserver_request_total summed by (verb, resource[/subresource]) over codes and scopes."""
    url = f"{plane.server}/metrics"
    with urllib.request.urlopen(url, context=admin_context(plane), timeout=SCRAPE_TIMEOUT) as r:
        text = r.read().decode()
    counts: Counter[tuple[str, str]] = Counter()
    for labels, value in samples(text, "apiserver_request_total"):  # integers, as floats
        resource = labels.get("resource") or "(non-resource)"
        if labels.get("subresource"):
            resource += "/" + labels["subresource"]
        counts[labels.get("verb", "?"), resource] += int(value)
    return counts


# -- the audit log (the operator's user only) ----------------------------------------------


@dataclass(frozen=True)
class Call:
    """One request the audited user made, as the audit log's ResponseComplete event has it."""

    at: float  # epoch seconds (the apiserver's clock, the same machine's)
    verb: str  # get, list, watch, create, update, patch, delete
    namespace: str
    resource: str  # resource[/subresource]

    @property
    def write(self) -> bool:
        return self.verb in WRITE_VERBS


@dataclass
class AuditTail:
    """Reads the audit log incrementally: the whole file at 1,000 queues is tens of MB."""

    path: Path
    user: str
    calls: list[Call] = field(default_factory=list)
    _offset: int = 0
    _partial: bytes = b""

    def read(self) -> list[Call]:
        """Take in what was appended since the last read; returns every call so far."""
        if not self.path.exists():
            return self.calls
        with self.path.open("rb") as log:
            log.seek(self._offset)
            data = log.read()
        self._offset += len(data)
        lines = (self._partial + data).split(b"\n")
        self._partial = lines.pop()  # a line the apiserver is still writing
        for line in lines:
            call = _parse_call(json.loads(line), self.user) if line.strip() else None
            if call is not None:
                self.calls.append(call)
        return self.calls

    def between(self, start: float, end: float) -> list[Call]:
        return [call for call in self.read() if start <= call.at < end]


def _parse_call(event: dict[str, Any], user: str) -> Call | None:
    if event.get("user", {}).get("username") != user:
        return None
    ref = event.get("objectRef") or {}
    if not ref.get("resource"):
        return None  # discovery and /version: not about any queue
    resource = ref["resource"] + (f"/{ref['subresource']}" if ref.get("subresource") else "")
    stamp = datetime.fromisoformat(str(event["stageTimestamp"]).replace("Z", "+00:00"))
    return Call(stamp.timestamp(), str(event["verb"]), ref.get("namespace", ""), resource)
