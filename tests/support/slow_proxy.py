"""A TCP proxy on loopback that delays every chunk it forwards: a slow Redis, for real.

Latency added by the network path (a congested link, an overloaded proxy) cannot be produced
by the Redis server itself; this is that path, made on purpose: every byte really goes through
a socket and really arrives late.
"""

from __future__ import annotations

import asyncio
import contextlib
from dataclasses import dataclass, field

from localcluster import free_port


@dataclass
class SlowProxy:
    target_port: int
    delay_seconds: float
    port: int = field(default_factory=free_port)
    _server: asyncio.Server | None = None
    _tasks: set[asyncio.Task[None]] = field(default_factory=set)

    async def start(self) -> SlowProxy:
        self._server = await asyncio.start_server(self._serve, "127.0.0.1", self.port)
        return self

    async def stop(self) -> None:
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        up_reader, up_writer = await asyncio.open_connection("127.0.0.1", self.target_port)
        pumps = [
            asyncio.create_task(self._pump(reader, up_writer)),
            asyncio.create_task(self._pump(up_reader, writer)),
        ]
        self._tasks.update(pumps)
        await asyncio.gather(*pumps, return_exceptions=True)
        for w in (writer, up_writer):
            w.close()

    async def _pump(self, source: asyncio.StreamReader, sink: asyncio.StreamWriter) -> None:
        with contextlib.suppress(ConnectionError, asyncio.CancelledError):
            while chunk := await source.read(65536):
                await asyncio.sleep(self.delay_seconds)  # the latency this proxy exists to add
                sink.write(chunk)
                await sink.drain()
