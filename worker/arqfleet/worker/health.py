"""The worker's own view of its health: draining, stopping, and when Redis last answered.

Decides what /healthz and /readyz answer, as pure functions of this state and a monotonic `now`
passed in. It must not do I/O: the arq poll loop, the heartbeat and the dead-letter writer report
Redis successes and failures here, and the HTTP server only reads.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field

from prometheus_client import Counter

logger = logging.getLogger("arqfleet.worker")


@dataclass
class Health:
    """Mutable runtime state shared by the worker, the heartbeat and the HTTP server."""

    redis_stale_seconds: float
    # Start-up counts as a Redis answer: the pool's connection ping just succeeded (or the
    # process is retrying it), and liveness must not kill a pod that is still connecting.
    redis_last_ok: float = field(default_factory=time.monotonic)
    redis_reachable: bool = False
    redis_was_lost: bool = False  # an outage was logged, so its end is news too
    draining: bool = False
    stopping: bool = False
    redis_errors: dict[str, Counter] = field(default_factory=dict)

    def redis_ok(self, now: float | None = None) -> None:
        """A Redis command of ours just succeeded."""
        self.redis_last_ok = time.monotonic() if now is None else now
        if not self.redis_reachable:
            self.redis_reachable = True
            # The first answer at start-up is expected (and arq logs its own connection line):
            # only the end of an outage is worth an INFO line.
            if self.redis_was_lost:
                logger.info("redis is reachable again")
            else:
                logger.debug("redis is reachable")

    def redis_failed(self, operation: str, exc: BaseException) -> None:
        """A Redis command of ours failed; counted by operation, logged once per outage."""
        counter = self.redis_errors.get(operation)
        if counter is not None:
            counter.inc()
        if self.redis_reachable:
            logger.warning("redis is unreachable (%s): %s: %s", operation, type(exc).__name__, exc)
            self.redis_was_lost = True
        self.redis_reachable = False

    def healthy(self, now: float) -> tuple[bool, str]:
        """Liveness: this handler runs (so the loop turns) and Redis answered recently."""
        age = now - self.redis_last_ok
        if age > self.redis_stale_seconds:
            return False, f"redis has not answered for {age:.1f}s"
        return True, "ok"

    def ready(self, now: float) -> tuple[bool, str]:
        """Readiness: not draining, and Redis reachable now."""
        if self.draining:
            return False, "draining"
        if not self.redis_reachable:
            return False, "redis unreachable"
        return self.healthy(now)
