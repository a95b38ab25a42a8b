"""The operator's own Kubernetes client against a real API server that stops answering."""

from __future__ import annotations

import gc
import os
import signal
import time
import warnings

import pytest

from arqfleet.operator.kube import JOBQUEUES, KubeClient
from localcluster import ControlPlane

pytestmark = pytest.mark.cluster


async def test_the_operators_client_times_out_on_a_hung_api_server(kube_crds: ControlPlane) -> None:
    """kubernetes_asyncio waits forever by default: the operator's client must not."""
    kube = await KubeClient.connect(str(kube_crds.kubeconfig), timeout_seconds=1)
    [apiserver] = [p for p in kube_crds.processes if p.name == "kube-apiserver"]
    try:
        assert await kube.get(JOBQUEUES, "default", "nothing-here") is None
        os.kill(apiserver.popen.pid, signal.SIGSTOP)  # accepts connections, answers nothing
        try:
            began = time.monotonic()
            with pytest.raises(TimeoutError):
                await kube.get(JOBQUEUES, "default", "nothing-here")
            waited = time.monotonic() - began
        finally:
            os.kill(apiserver.popen.pid, signal.SIGCONT)
        # Three attempts of 1 s with 0.5 s + 1 s of back-off between them.
        assert 3 <= waited < 10, waited
        assert await kube.get(JOBQUEUES, "default", "nothing-here") is None  # and recovers
    finally:
        await kube.close()
        # aiohttp leaves the sockets of the requests it timed out to the garbage collector;
        # collect them here, where they belong, not in whichever test runs next.
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", ResourceWarning)
            gc.collect()
