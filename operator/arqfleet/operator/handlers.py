"""kopf registrations: thin wiring from cluster events to the Reconciler. Nothing decides here.

- JobQueue create/update/resume -> reconcile (render + server-side apply + status).
- Deployment events (ours only, selected server-side by label) -> drift repair or status.
- Worker pod events (ours only) -> status, when a pod fails in a way the spec explains.
- An index of JobQueues, so a Deployment event finds its owner without an API call, and the
  one scaling loop (started at start-up) finds every queue to poll.
No timers, daemons or delete handlers: each would make kopf put a finalizer on every JobQueue,
and deletion is the garbage collector's job through ownerReferences.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from typing import Any, cast

import kopf
from kubernetes_asyncio.client.exceptions import ApiException
from prometheus_client import start_http_server

from arqfleet.operator import constants as c
from arqfleet.operator import metrics
from arqfleet.operator.conditions import timestamp
from arqfleet.operator.kube import KubeClient, is_gone
from arqfleet.operator.reconcile import (
    ApplyRejected,
    JobQueueSnapshot,
    Reconciler,
    SpecError,
    utcnow,
)
from arqfleet.operator.redis_pools import RedisPools
from arqfleet.operator.scaler import Scaler
from arqfleet.operator.scaling_loop import ScalingLoop
from arqfleet.operator.settings import OperatorSettings
from arqfleet.operator.state import Fleet

log = logging.getLogger(__name__)


def emit_event(target: Mapping[str, Any], kind: str, reason: str, message: str) -> None:
    """Post a Kubernetes Event on the JobQueue through kopf's event poster."""
    # kopf only reads apiVersion, kind and metadata from the "body" to build the reference.
    kopf.event(cast(kopf.Body, dict(target)), type=kind, reason=reason, message=message)


def event_poster(kube: KubeClient) -> Callable[[Mapping[str, Any], str, str, str], Awaitable[None]]:
    """Events from outside kopf's handlers (the scaling loop), through our own client. A failed
    post is logged, never raised: an Event must not stop a scale or a status write."""

    async def post(target: Mapping[str, Any], kind: str, reason: str, message: str) -> None:
        try:
            await kube.post_event(target, kind, reason, message, now=timestamp(utcnow()))
        except (ApiException, OSError, TimeoutError) as error:
            log.warning("cannot post Event %s: %s", reason, error)

    return post


def configure_kopf(settings: kopf.OperatorSettings, ours: OperatorSettings) -> None:
    """kopf tuned for arqfleet, in one place."""
    # Progress and diff-base live in annotations under our own prefix; no status.kopf (the
    # status schema is ours and strict) and no finalizer (no delete handlers or timers).
    settings.persistence.progress_storage = kopf.AnnotationsProgressStorage(prefix="arqfleet.io")
    settings.persistence.diffbase_storage = kopf.AnnotationsDiffBaseStorage(
        prefix="arqfleet.io", key="last-handled-configuration"
    )
    # Events only for what a person should read: ours (Created, Repaired, ...) and warnings,
    # never kopf's log lines ("Handler succeeded" on every reconcile) or their details.
    settings.posting.loggers = False
    settings.posting.reporting_component = "arqfleet-operator"
    # One replica with a Recreate strategy (as kopf recommends) instead of peering objects.
    settings.peering.standalone = True
    settings.watching.server_timeout = ours.watch_server_timeout_seconds
    settings.watching.client_timeout = ours.watch_client_timeout_seconds
    settings.watching.connect_timeout = ours.connect_timeout_seconds
    settings.networking.request_timeout = ours.api_request_timeout_seconds
    settings.networking.connect_timeout = ours.connect_timeout_seconds
    # Only our Deployments and worker pods are streamed to us, filtered by the API server.
    settings.watching.label_selectors["apps", "deployments"] = c.MANAGED_SELECTOR
    settings.watching.label_selectors["", "pods"] = c.MANAGED_SELECTOR
    # Resources are discovered once at start-up; watching CRDs for new ones would need a
    # cluster-scoped permission that a namespaced install should not have to grant.
    settings.scanning.disabled = True
    # Retry a failed reconcile soon, then back off: a typo fixed by the user heals quickly.
    settings.execution.default_backoff = 10


@kopf.on.startup()
async def startup(settings: kopf.OperatorSettings, memo: kopf.Memo, **kwargs: Any) -> None:
    ours = OperatorSettings()
    configure_kopf(settings, ours)
    memo.settings = ours
    memo.kube = await KubeClient.connect(
        ours.kubeconfig, timeout_seconds=ours.api_request_timeout_seconds
    )
    memo.redis = RedisPools()
    memo.fleet = Fleet()
    memo.reconciler = Reconciler(
        memo.kube,
        emit_event,
        memo.fleet,
        discovery_cache_seconds=ours.discovery_cache_seconds,
        max_concurrent=ours.max_concurrent_reconciles,
    )
    scaler = Scaler(
        memo.kube,
        event_poster(memo.kube),
        utcnow,
        cron_lead_seconds=ours.cron_wake_lead_seconds,
        queue_status_seconds=ours.queue_status_seconds,
    )
    # kopf hands startup handlers its (still empty) indices; this one fills as JobQueues are
    # listed and watched, and the loop reads it live.
    memo.loop = ScalingLoop(
        kwargs["jobqueues"],
        memo.fleet,
        memo.redis,
        scaler,
        probe_timeout_seconds=ours.probe_timeout_seconds,
        resync=memo.reconciler.resync,
    )
    memo.loop_task = asyncio.get_running_loop().create_task(
        memo.loop.run(), name="arqfleet-scaling-loop"
    )
    if ours.metrics_port:
        start_http_server(ours.metrics_port, registry=metrics.REGISTRY)


@kopf.on.cleanup()
async def cleanup(memo: kopf.Memo, **_: Any) -> None:
    task = getattr(memo, "loop_task", None)
    if task is not None:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
        await memo.loop.stop()
    kube = getattr(memo, "kube", None)
    if kube is not None:
        await kube.close()
    redis = getattr(memo, "redis", None)
    if redis is not None:
        await redis.close()


@kopf.on.probe(id="kubernetes")
async def kubernetes_reachable(memo: kopf.Memo, **_: Any) -> str:
    """Liveness: the API server answers our own client (kopf checks its watchers itself)."""
    version: str = await memo.kube.version()
    return version


@kopf.on.probe(id="scaling")
async def scaling_loop_alive(memo: kopf.Memo, **_: Any) -> dict[str, int]:
    """Liveness: the scaling loop still runs. Users' Redis servers are not part of it: one
    that is down is a condition and a metric on its JobQueues, and restarting the operator
    would not bring it back (it would only pause every other queue)."""
    task: asyncio.Task[None] = memo.loop_task
    if task.done():
        raise RuntimeError("the scaling loop has stopped")
    return {"jobqueues": len(memo.fleet), "probe_rounds_running": memo.loop.rounds_running}


@kopf.index(c.GROUP, c.VERSION, c.PLURAL)
def jobqueues(body: kopf.Body, namespace: str | None, name: str, **_: Any) -> dict[Any, Any]:
    return {(namespace, name): JobQueueSnapshot.from_body(body)}


@kopf.on.resume(c.GROUP, c.VERSION, c.PLURAL)
@kopf.on.create(c.GROUP, c.VERSION, c.PLURAL)
@kopf.on.update(c.GROUP, c.VERSION, c.PLURAL)
async def reconcile_jobqueue(body: kopf.Body, reason: str, memo: kopf.Memo, **_: Any) -> None:
    jq = JobQueueSnapshot.from_body(body)
    reconciler: Reconciler = memo.reconciler
    try:
        ready = await reconciler.reconcile(jq, cause=str(reason))
    except SpecError as error:
        await reconciler.report_spec_error(jq, error)
        raise kopf.PermanentError(str(error)) from error
    except ApplyRejected as error:
        # Reported in the Ready condition and an Event; the next spec change retries.
        raise kopf.PermanentError(str(error)) from error
    except ApiException as error:
        if error.status == 404:
            # Something we had just written vanished under us (a Deployment deleted between
            # its apply and the scale hand-off): look again soon. If the JobQueue itself is
            # gone, kopf stops retrying on its own.
            raise kopf.TemporaryError(
                f"an object vanished mid-reconcile: {error.reason}", delay=1
            ) from error
        if is_gone(error):
            return  # the namespace is being deleted
        raise
    if reconciler.fleet[jq.key].secret_problem is not None:
        # Nothing watches Secrets, so look again later; the condition already says why.
        raise kopf.TemporaryError(ready.message, delay=memo.settings.secret_recheck_seconds)


def owning_jobqueue(
    kwargs: Mapping[str, Any], namespace: str | None, labels: Mapping[str, str]
) -> JobQueueSnapshot | None:
    """The JobQueue an object of ours belongs to, from the index (no API call)."""
    # kopf passes each index as a keyword named after its function.
    index: kopf.Index[Any, JobQueueSnapshot] = kwargs["jobqueues"]
    owner = labels.get(c.LABEL_JOBQUEUE)
    found = list(index.get((namespace, owner), [])) if owner else []
    return found[0] if found else None


@contextlib.asynccontextmanager
async def unless_gone(what: str) -> AsyncIterator[None]:
    """Errors that mean "nothing to do": a bad spec (reported by the JobQueue handler), or a
    JobQueue or namespace deleted while we looked (the garbage collector finishes up)."""
    try:
        yield
    except (SpecError, ApplyRejected):
        return
    except ApiException as error:
        if not is_gone(error):
            raise
        log.debug("%s is gone: %s", what, error.reason)


@kopf.on.event("apps", "v1", "deployments", labels={c.LABEL_MANAGED_BY: c.MANAGED_BY})
async def deployment_changed(
    type: str,
    body: kopf.Body,
    name: str,
    namespace: str | None,
    labels: Mapping[str, str],
    memo: kopf.Memo,
    **kwargs: Any,
) -> None:
    reconciler: Reconciler = memo.reconciler
    async with unless_gone(f"Deployment {namespace}/{name}"):
        jq = owning_jobqueue(kwargs, namespace, labels)
        await reconciler.deployment_event(type, dict(body), jq)


@kopf.on.event("", "v1", "pods", labels={c.LABEL_MANAGED_BY: c.MANAGED_BY})
async def worker_pod_changed(
    type: str,
    body: kopf.Body,
    name: str,
    namespace: str | None,
    labels: Mapping[str, str],
    memo: kopf.Memo,
    **kwargs: Any,
) -> None:
    reconciler: Reconciler = memo.reconciler
    async with unless_gone(f"pod {namespace}/{name}"):
        jq = owning_jobqueue(kwargs, namespace, labels)
        await reconciler.pod_event(dict(body), jq, deleted=type == "DELETED")


@kopf.on.event(c.GROUP, c.VERSION, c.PLURAL)
async def jobqueue_event(
    type: str, name: str, namespace: str | None, memo: kopf.Memo, **_: Any
) -> None:
    """Forget a deleted JobQueue's in-memory state and metric series (an event handler adds
    no finalizer)."""
    if type == "DELETED" and namespace is not None:
        reconciler: Reconciler = memo.reconciler
        reconciler.forget((namespace, name))
        metrics.forget_jobqueue(namespace, name)
