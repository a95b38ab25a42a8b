"""Pure: which worker pods a scale-down should take first, as pod-deletion-cost annotations.

The ReplicaSet controller deletes pods with a lower `controller.kubernetes.io/pod-deletion-cost`
first (among pods equally ready). A pod's cost is the number of jobs its heartbeat says it is
running, so idle pods go first and the busiest pod last. A pod without a heartbeat has not
started its worker yet (or went quiet): it runs nothing we know of, so it costs nothing.
Only pods whose annotation differs are returned: a steady fleet causes no pod writes.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping

from arqfleet.operator.decision import PodLoad
from arqfleet.operator.state import PodView


def deletion_costs(pods: Mapping[str, PodView], loads: Iterable[PodLoad]) -> dict[str, int]:
    """pod name -> the cost to write, for the pods whose annotation is not that cost yet."""
    running = {load.pod: load.in_flight for load in loads}
    wanted = {}
    for name, pod in pods.items():
        if pod.terminating:
            continue  # going anyway: a write would only race its deletion
        cost = running.get(name, 0)
        if pod.deletion_cost != cost:
            wanted[name] = cost
    return wanted
