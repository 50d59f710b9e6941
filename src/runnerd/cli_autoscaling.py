"""The ``runnerd controller`` autoscaling flags onto a built process (before its manager runs).

``--reservation-journal`` (off by default: today's intake) answers a webhook delivery once its
reservation is journalled in a small ConfigMap, and lets the leader fold the journal into the HRA
(:mod:`runnerd.controller.journal`); the chart's RBAC then needs ConfigMap create/list/watch/delete
in the watched namespaces.
"""

from __future__ import annotations

import argparse

from runnerd.controller.app import install_journal
from runnerd.controller.process import Controllers


def add_journal_flag(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--reservation-journal",
        action="store_true",
        help="answer a webhook once its reservation is journalled (a ConfigMap); the leader folds the"
        " journal into the HRA at most once a second",
    )


def configure_autoscaling(controllers: Controllers, args: argparse.Namespace) -> None:
    """The autoscaling flags onto the built autoscaling's options (before the manager runs)."""
    autoscaling = controllers.autoscaling
    assert autoscaling is not None
    autoscaling.options.default_scale_down_delay = args.default_scale_down_delay
    autoscaling.options.poll = not args.disable_webhook_poll
    autoscaling.options.poll_bound = args.webhook_poll_bound
    autoscaling.options.poll_max_calls_per_hour = args.webhook_poll_max_calls_per_hour
    autoscaling.options.observe_max_calls_per_hour = args.github_observe_max_calls_per_hour
    autoscaling.options.count_jobs_twice = args.count_jobs_twice
    autoscaling.options.runner_groups_visibility = args.use_runner_groups_visibility
    if getattr(args, "reservation_journal", False):
        install_journal(controllers)
