"""Image-test fixtures: the project's images, built once per session, and containers that go away.

`images` runs hack/build-images, which builds nothing when the images' content keys match
(well under a second), and otherwise rebuilds what changed with podman's layer cache; a cold
machine also makes the Debian Python base with mmdebstrap first (about 75 s in all here).
"""

from __future__ import annotations

import subprocess
from collections.abc import Iterator

import pytest

import containerimages
from tests.support.containers import Containers

BUILD_SCRIPT = containerimages.REPO_ROOT / "hack" / "build-images"


@pytest.fixture(scope="session")
def images() -> dict[str, str]:
    """Image tags by name (operator, worker, example), built or found up to date."""
    result = subprocess.run([str(BUILD_SCRIPT)], capture_output=True, text=True, check=False)
    if result.returncode != 0:
        pytest.fail(f"hack/build-images failed ({result.returncode}):\n{result.stderr[-10_000:]}")
    return {name: image.tag for name, image in containerimages.images().items()}


@pytest.fixture
def containers() -> Iterator[Containers]:
    """Start containers through this; each is removed at teardown, pass or fail."""
    started = Containers()
    yield started
    started.remove_all()
