"""One HTTP port per pod: /healthz, /readyz and /metrics.

Decides the wire answers: 200 with "ok" or 503 with the reason, and the Prometheus text. The
answers are computed from `Health` and `WorkerMetrics`, never from Redis at request time: a probe
must not add load to Redis or hang on it. The server runs on the worker's event loop, so a
handler that answers at all proves the loop turns; kubelet's probe timeout turns a blocked loop
into a failed probe. Probes are per pod by construction (never arq's shared health-check key).
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable

from aiohttp import web

from arqfleet.worker.health import Health
from arqfleet.worker.metrics import CONTENT_TYPE, WorkerMetrics


def _probe(
    check: Callable[[float], tuple[bool, str]],
) -> Callable[[web.Request], Awaitable[web.Response]]:
    async def handler(_request: web.Request) -> web.Response:
        ok, reason = check(time.monotonic())
        return web.Response(status=200 if ok else 503, text=reason + "\n")

    return handler


def build_app(health: Health, metrics: WorkerMetrics) -> web.Application:
    async def metrics_handler(_request: web.Request) -> web.Response:
        response = web.Response(body=metrics.render())
        # Set verbatim: the exposition content type carries a version parameter aiohttp's
        # content_type setter would not keep.
        response.headers["Content-Type"] = CONTENT_TYPE
        return response

    app = web.Application()
    app.router.add_get("/healthz", _probe(health.healthy))
    app.router.add_get("/readyz", _probe(health.ready))
    app.router.add_get("/metrics", metrics_handler)
    return app


class ProbeServer:
    """The aiohttp runner on `port` (all interfaces: kubelet and Prometheus come from outside)."""

    def __init__(self, health: Health, metrics: WorkerMetrics, port: int) -> None:
        self.port = port
        # No access log: kubelet probes every few seconds would drown the job logs.
        self._runner = web.AppRunner(build_app(health, metrics), access_log=None)

    async def start(self) -> None:
        await self._runner.setup()
        site = web.TCPSite(self._runner, host="0.0.0.0", port=self.port)
        await site.start()

    async def stop(self) -> None:
        await self._runner.cleanup()
