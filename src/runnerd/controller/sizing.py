"""Installs per-job sizing into a controller process (``--enable-sizing``; docs/gpu-sizing.md).

:func:`install` adds the ``RunnerSizingPolicy`` informer and its controller
(:class:`~runnerd.controller.sizingpolicy.SizingPolicies`), puts the sized-job intake
(:class:`~runnerd.controller.sizedintake.SizedIntake`) into the autoscaling's webhook sink (the
safety-net poll reaches it through the sink too), registers ``runnerd_sized_jobs``, and wakes the
safety-net poll on policy and sized-Runner changes, so sized pools without an HRA are polled; a
sized Runner that goes before its job finished makes the poll recheck its repository
(:func:`recheck_if_lost`); then capacity admission (:func:`runnerd.controller.admission.install`,
sharing the policy informer).
:func:`runnerd.controller.app_autoscaling.install_autoscaling` calls it; nothing here imports the app.

:func:`served` is asked first (``runnerd controller``): without the CRD (a chart upgrade does not
install new CRDs) or the right to list policies, the policy informer would never sync and the whole
process would never become ready; sizing is then left off, with an error in the log.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Container

from runnerd.controller.admission import install as install_admission
from runnerd.controller.common import matching_labels
from runnerd.controller.poller import POLL_KEY
from runnerd.controller.process import Autoscaling, Controllers, Sizing
from runnerd.controller.sizedintake import SizedIntake
from runnerd.controller.sizingpolicy import POLICY_INFORMER, SIZING_POLICIES, SizingPolicies
from runnerd.controller.targets import RD_INFORMER
from runnerd.kube.client import KubeClient
from runnerd.reconcile.sizedjob import SizedRunner, is_sized_runner
from runnerd.reconcile.sizingpolicy import PoolKey
from runnerd.runtime import ApiError, Controller, EventType, Informer, InformerEvent

log = logging.getLogger(__name__)


async def served(kube: KubeClient, namespace: str | None) -> bool:
    """Whether RunnerSizingPolicies can be listed (the CRD is installed, the RBAC allows it)."""
    try:
        await kube.list(SIZING_POLICIES, namespace=namespace)
    except ApiError as exc:
        log.error(
            "--enable-sizing: cannot list %s (%s): per-job sizing stays off until a restart; apply the "
            "chart's crds/ (a chart upgrade does not install new CRDs) or set sizing.enabled=false",
            SIZING_POLICIES.plural,
            exc,
        )
        return False
    return True


def install(controllers: Controllers, autoscaling: Autoscaling) -> Sizing:
    """The policy informer and controller, and the intake in ``autoscaling``'s webhook sink."""
    kube, informers = controllers.kube, controllers.informers
    informer = Informer(
        POLICY_INFORMER, kube.list_watcher(SIZING_POLICIES, namespace=controllers.options.namespace)
    )
    informers[POLICY_INFORMER] = informer
    controllers.manager.add_informer(informer)
    runners = informers["runners"]
    policies = SizingPolicies(
        kube=kube,
        policies=informer,
        runners=runners,
        resolver=autoscaling.resolver,
        recorder=controllers.recorder,
    )
    ctl = Controller("runnersizingpolicy", policies.reconcile, workers=1)
    ctl.watch(informer, policies.keys_of_policy)
    ctl.watch(runners, policies.keys_of_runner)
    ctl.watch(informers[RD_INFORMER], policies.keys_of_pool)
    controllers.manager.add_controller(ctl)

    def changed(pool: PoolKey) -> None:
        for key in policies.naming(pool):
            ctl.enqueue(key)

    intake = SizedIntake(
        kube=kube,
        policies=policies,
        recorder=controllers.recorder,
        metrics=autoscaling.metrics,
        hra_targets=autoscaling.sink.targets,
        default_labels=matching_labels(controllers.options),
        gpu=controllers.options.pod.gpu,
        on_change=changed,
    )
    autoscaling.sink.intake = intake
    autoscaling.metrics.watch_sized_jobs(policies.counts)
    autoscaling.poll_controller.watch(informer, lambda obj: [POLL_KEY])
    runners.add_handler(
        lambda event: recheck_if_lost(event, intake.finished, autoscaling.poller.recheck, intake.runner_lost)
    )
    autoscaling.poll_controller.watch(runners, lambda obj: [POLL_KEY] if is_sized_runner(obj) else [])
    install_admission(
        kube=kube,
        manager=controllers.manager,
        informers=informers,
        namespace=controllers.options.namespace,
        pod_options=controllers.options.pod,
        recorder=controllers.recorder,
        metrics=autoscaling.metrics,
    )
    return Sizing(policies=policies, informer=informer, controller=ctl, intake=intake)


def recheck_if_lost(
    event: InformerEvent,
    finished: Container[int],
    recheck: Callable[[str], None],
    lost: Callable[[int], None] = lambda job_id: None,
) -> None:
    """A sized Runner deleted while its job is not known ``finished``: its runner ran another job with
    the same labels (GitHub gives a job to any runner whose labels cover it), or its pod failed, so
    its own job may be queued with no runner. Tell the intake (``lost``: the job's next Runner gets
    a new name) and ``recheck`` its repository: the safety-net poll lists it afresh at its next pass
    and gives such a job a new Runner (the poll's key is enqueued by the watch on sized Runners)."""
    if event.type is not EventType.DELETED:
        return
    runner = SizedRunner.read(event.obj)
    if runner is not None and runner.repository and runner.job_id not in finished:
        lost(runner.job_id)
        recheck(runner.repository)
