"""One PNG per trace: the queue's depth, and each policy's replicas, over time."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # files only: no display on a build machine
import matplotlib.pyplot as plt

from bench.sim.cluster import Outcome


def plot(outcomes: Sequence[Outcome], path: Path, title: str) -> None:
    figure, (depth, replicas) = plt.subplots(2, 1, sharex=True, figsize=(10, 6))
    first = outcomes[0].timeline
    depth.plot(
        [t / 60 for t, *_ in first], [busy for _, busy, _, _ in first], label="ready + running"
    )
    depth.plot(
        [t / 60 for t, *_ in first], [d for _, _, d, _ in first], label="deferred", alpha=0.6
    )
    depth.set_ylabel("jobs (under policy a)")
    depth.legend(loc="upper right")
    for outcome in outcomes:
        replicas.step(
            [t / 60 for t, *_ in outcome.timeline],
            [r for *_, r in outcome.timeline],
            where="post",
            label=outcome.policy,
        )
    replicas.set_ylabel("replicas")
    replicas.set_xlabel("minutes")
    replicas.legend(loc="upper right")
    depth.set_title(title)
    figure.tight_layout()
    figure.savefig(path, dpi=80)
    plt.close(figure)
