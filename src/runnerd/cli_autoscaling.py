"""The ``runnerd controller`` autoscaling flags onto a built process (before its manager runs).

``--reservation-journal`` (the default; ``--reservation-journal=false`` or
``--no-reservation-journal`` turns it off) answers a webhook delivery once its reservation is
journalled in a small ConfigMap, and lets the leader fold the journal into the HRA
(:mod:`runnerd.controller.journal`). The controller then needs ConfigMap create/list/watch/delete in
the watched namespaces, ``runnerd webhook-server`` ConfigMap create; the controller and the webhook
server must agree (the chart sets both from ``reservationJournal.enabled``).
"""

from __future__ import annotations

import argparse

from runnerd.controller.process import Controllers

TRUE, FALSE = ("true", "1", "yes", "on"), ("false", "0", "no", "off")


def flag_value(text: str) -> bool:
    """``--flag=true|false`` (also 1/0, yes/no, on/off)."""
    if text.lower() in TRUE:
        return True
    if text.lower() in FALSE:
        return False
    raise argparse.ArgumentTypeError(f"expected true or false, got {text!r}")


def add_journal_flag(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--reservation-journal",
        nargs="?",
        const=True,
        default=True,
        type=flag_value,
        metavar="true|false",
        help="answer a webhook once its reservation is journalled (a ConfigMap); the leading controller"
        " folds the journal into the HRA at most once a second (default: true; false: each group commit"
        " writes the HRA's list)",
    )
    p.add_argument(
        "--no-reservation-journal",
        dest="reservation_journal",
        action="store_false",
        help="same as --reservation-journal=false",
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
