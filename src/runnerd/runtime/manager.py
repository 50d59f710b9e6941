"""The manager runs informers and controllers, with optional leader election and graceful shutdown.

* Informers run all the time, leader or not, so a replica that takes over has a warm cache.
* Controllers run only while leading, and only once every required informer of the process has synced
  (a controller may read any cache of the process, e.g. the autoscaler reads the scale targets'):
  :attr:`Manager.ready` turns true at that moment. Each leadership term starts them with fresh
  queues, seeded with every cached key; losing the Lease cancels them before the Lease can
  expire, and the manager campaigns again.
* :meth:`Manager.stop` (SIGTERM/SIGINT once :meth:`install_signal_handlers` was called) is graceful:
  controllers stop taking keys, in-flight reconciles get ``shutdown_timeout`` seconds to finish (then
  they are cancelled), the Lease is released so another replica takes over at once, and the
  informers stop.
"""

from __future__ import annotations

import asyncio
import logging
import signal
from collections.abc import Callable

from runnerd.runtime.controller import Controller
from runnerd.runtime.informer import Informer
from runnerd.runtime.leader import LeaderElector, LeadershipLost
from runnerd.runtime.redact import describe_exception

logger = logging.getLogger(__name__)


class Manager:
    """Owns the informers and controllers of one process. See the module docstring."""

    def __init__(self, *, elector: LeaderElector | None = None, shutdown_timeout: float = 30.0) -> None:
        self.elector = elector
        self.shutdown_timeout = shutdown_timeout
        self._informers: list[Informer] = []
        self._controllers: list[Controller] = []
        self._optional: list[Informer] = []
        self._stopping = asyncio.Event()
        self._running = False

    def add_informer(self, informer: Informer, *, required: bool = True) -> Informer:
        """Run ``informer``. ``required=False``: one the process works without (e.g. a resource it may
        not be allowed to list); readiness and the controllers' start do not wait for it."""
        if informer not in self._informers:
            self._informers.append(informer)
        if not required:
            self._optional.append(informer)
        return informer

    def add_controller(self, controller: Controller) -> Controller:
        self._controllers.append(controller)
        return controller

    @property
    def informers(self) -> list[Informer]:
        """Every informer: those added, and those the controllers watch."""
        found = list(self._informers)
        for controller in self._controllers:
            found += [informer for informer in controller.informers if informer not in found]
        return found

    @property
    def required_informers(self) -> list[Informer]:
        """The informers that must sync before anything acts: all but those added ``required=False``
        (and not watched or read by a controller)."""
        needed = {id(i) for c in self._controllers for i in c.informers}
        return [i for i in self.informers if i not in self._optional or id(i) in needed]

    @property
    def ready(self) -> bool:
        """Every required informer has synced (for a readiness probe and the webhook endpoint)."""
        return all(informer.synced for informer in self.required_informers)

    @property
    def leading(self) -> bool:
        """Whether the controllers may run now."""
        return self._running and (self.elector is None or self.elector.is_leader)

    def stop(self) -> None:
        """Asks for a graceful shutdown; :meth:`run` returns when it is done."""
        self._stopping.set()

    def install_signal_handlers(self) -> Callable[[], None]:
        """Calls :meth:`stop` on SIGTERM and SIGINT; returns a function that removes the handlers."""
        loop = asyncio.get_running_loop()
        signals = (signal.SIGTERM, signal.SIGINT)
        for sig in signals:
            loop.add_signal_handler(sig, self._on_signal, sig)

        def remove() -> None:
            for sig in signals:
                loop.remove_signal_handler(sig)

        return remove

    def _on_signal(self, sig: signal.Signals) -> None:
        logger.info("received %s: shutting down", sig.name)
        self.stop()

    async def run(self) -> None:
        """Runs until :meth:`stop` (or cancellation). Raises if an informer or a controller crashes."""
        if self._running:
            raise RuntimeError("the manager is already running")
        self._running = True
        informers = {
            asyncio.create_task(informer.run(), name=f"informer-{informer.name}"): informer
            for informer in self.informers
        }
        main = asyncio.create_task(self._campaign() if self.elector else self._lead(), name="manager")
        try:
            await asyncio.wait({main, *informers}, return_when=asyncio.FIRST_COMPLETED)
            if not main.done():
                crashed = next(task for task in informers if task.done())
                raise RuntimeError(f"informer {informers[crashed].name} stopped") from crashed.exception()
            main.result()
        finally:
            self._running = False
            for task in (main, *informers):
                task.cancel()
            await asyncio.wait({main, *informers})
            logger.info("manager stopped")

    async def _campaign(self) -> None:
        elector = self.elector
        assert elector is not None
        while not self._stopping.is_set():
            term = asyncio.create_task(elector.run(self._lead), name="leader-election")
            stop = asyncio.create_task(self._stopping.wait())
            try:
                await asyncio.wait({term, stop}, return_when=asyncio.FIRST_COMPLETED)
                if not term.done() and not elector.is_leader:
                    term.cancel()  # stopping while only a candidate
                await asyncio.wait({term})
            finally:
                stop.cancel()
                term.cancel()
                await asyncio.wait({term, stop})
            if term.cancelled():
                return
            try:
                term.result()
                return
            except LeadershipLost as exc:
                logger.warning("%s; campaigning again", exc)

    async def _synced_or_stopping(self) -> bool:
        """Waits until every informer has synced (``True``) or a stop was asked for (``False``)."""
        synced: asyncio.Future[object] = asyncio.ensure_future(
            asyncio.gather(*(i.wait_synced() for i in self.required_informers))
        )
        stop: asyncio.Future[object] = asyncio.ensure_future(self._stopping.wait())
        try:
            await asyncio.wait({synced, stop}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for task in (synced, stop):
                task.cancel()
            await asyncio.wait({synced, stop})
        return not synced.cancelled() and not self._stopping.is_set()

    async def _lead(self) -> None:
        if not self._controllers:
            await self._stopping.wait()
            return
        if not await self._synced_or_stopping():
            return
        tasks = {asyncio.create_task(c.run(), name=f"controller-{c.name}"): c for c in self._controllers}
        stop = asyncio.create_task(self._stopping.wait())
        try:
            await asyncio.wait({*tasks, stop}, return_when=asyncio.FIRST_COMPLETED)
            for controller in self._controllers:
                controller.shutdown()
            _, pending = await asyncio.wait(tasks, timeout=self.shutdown_timeout)
            if pending:
                logger.warning(
                    "reconciles still running after %ss: cancelling %s",
                    self.shutdown_timeout,
                    ", ".join(tasks[task].name for task in pending),
                )
        finally:
            stop.cancel()
            for task in tasks:
                task.cancel()
            await asyncio.wait({*tasks, stop})
        for task, controller in tasks.items():
            if not task.cancelled() and (exc := task.exception()) is not None:
                logger.error(
                    "controller %s crashed: %s", controller.name, describe_exception(exc, with_traceback=True)
                )
                raise exc
        if not self._stopping.is_set():
            raise RuntimeError("controllers stopped without a shutdown")
