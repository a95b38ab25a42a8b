"""Containers of the project's images, run with podman, that tests always remove.

Every podman call goes through `containerimages.podman`, so it uses the project's
hack/containers.conf. `Containers` is what the `containers` fixture yields: each container it
starts is removed at teardown (`podman rm --force`), whether the test passed or not.
"""

from __future__ import annotations

import asyncio
import json
import uuid
from dataclasses import dataclass, field
from typing import Any

import aiohttp

from containerimages import podman
from tests.support.waiting import WaitTimeout, async_wait_for


@dataclass
class Container:
    name: str

    def logs(self) -> str:
        result = podman("logs", self.name, check=False)
        return result.stdout + result.stderr

    def exec(self, *argv: str) -> str:
        """Run a command inside the running container (as its own user); its stdout."""
        return podman("exec", self.name, *argv).stdout

    def state(self) -> dict[str, Any]:
        found: list[dict[str, Any]] = json.loads(podman("container", "inspect", self.name).stdout)
        state: dict[str, Any] = found[0]["State"]
        return state

    def stop(self, grace_seconds: int) -> int:
        """`podman stop`: SIGTERM to PID 1, SIGKILL after `grace_seconds`; the exit code."""
        podman("stop", "--time", str(grace_seconds), self.name, timeout=grace_seconds + 30)
        code: int = self.state()["ExitCode"]
        return code


@dataclass
class Containers:
    started: list[Container] = field(default_factory=list)

    def run(self, image: str, *args: str, options: list[str]) -> Container:
        """`podman run --detach [options] image [args]` under a unique name."""
        container = Container(f"arqfleet-test-{uuid.uuid4().hex[:10]}")
        # Recorded before the run: a container that was created but failed to start is
        # removed at teardown too.
        self.started.append(container)
        podman("run", "--detach", "--name", container.name, *options, image, *args)
        return container

    def remove_all(self) -> None:
        for container in self.started:
            podman("rm", "--force", "--time", "0", "--ignore", container.name, check=False)
        self.started.clear()


async def http_status(url: str) -> int | None:
    """The HTTP status of a GET, or None while nothing answers."""
    try:
        async with (
            aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=2)) as session,
            session.get(url) as response,
        ):
            return response.status
    except aiohttp.ClientError:
        return None


async def wait_http_ok(container: Container, url: str, *, seconds: float) -> None:
    """Wait until `url`, served by `container`, answers 200; fail with its logs if it does not."""

    async def ok() -> bool:
        return await http_status(url) == 200

    try:
        await async_wait_for(ok, timeout=seconds, what=f"200 from {url}")
    except WaitTimeout as error:
        logs = await asyncio.to_thread(container.logs)
        raise WaitTimeout(f"{error}\ncontainer logs:\n{logs}") from error
