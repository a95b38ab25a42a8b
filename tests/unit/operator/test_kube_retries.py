"""Which API errors the operator's client asks again about (pure classification)."""

from __future__ import annotations

import aiohttp
import pytest
from kubernetes_asyncio.client.exceptions import ApiException

from arqfleet.operator.kube import is_transient


@pytest.mark.parametrize(
    ("error", "transient"),
    [
        pytest.param(ApiException(status=429), True, id="too-many-requests"),
        pytest.param(ApiException(status=503), True, id="unavailable"),
        pytest.param(ApiException(status=500), True, id="internal"),
        pytest.param(TimeoutError(), True, id="timeout"),
        pytest.param(aiohttp.ClientConnectionError(), True, id="connection"),
        pytest.param(ApiException(status=404), False, id="not-found"),
        pytest.param(ApiException(status=409), False, id="conflict-is-the-callers"),
        pytest.param(ApiException(status=422), False, id="invalid"),
        pytest.param(ValueError(), False, id="a-bug"),
    ],
)
def test_transient(error: BaseException, transient: bool) -> None:
    assert is_transient(error) is transient


def test_a_malformed_apply_is_not_retried() -> None:
    error = ApiException(status=500)
    error.body = b'{"message": "failed to create typed patch object: .spec: expected map"}'
    assert is_transient(error) is False
