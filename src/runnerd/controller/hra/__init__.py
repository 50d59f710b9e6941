"""The HorizontalRunnerAutoscaler controller, in units.

* :mod:`~runnerd.controller.hra.controller`: one reconcile of an HRA (observe → decide → act); the
  decision is :mod:`runnerd.reconcile.hra`.
* :mod:`~runnerd.controller.hra.metric`: the pull-metric observation (GitHub's runs and jobs, the
  target's runners and their busy flags) with its cache and its own call budget.
* :mod:`~runnerd.controller.hra.status`: the background status writer (status fields, conditions,
  Events), so that a burst of reconciles does not wait for its writes.
* :mod:`~runnerd.controller.hra.options`: the autoscaling settings.

The webhook path that writes capacity reservations is :mod:`runnerd.controller.reservations` (and
:mod:`runnerd.controller.reservation_writer`), the safety-net poll :mod:`runnerd.controller.poller`;
:func:`runnerd.controller.app_autoscaling.install_autoscaling` wires all of them into a controller
process. Nothing here imports :mod:`runnerd.controller.app`.
"""
