"""Image-test fixtures: containers that go away (`images`, the project's images built once per
session, is in tests/conftest.py: the node tier runs them too)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.support.containers import Containers


@pytest.fixture
def containers() -> Iterator[Containers]:
    """Start containers through this; each is removed at teardown, pass or fail."""
    started = Containers()
    yield started
    started.remove_all()
