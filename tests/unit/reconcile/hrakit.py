"""Shared inputs for the HRA decision and capacity reservation tests."""

from __future__ import annotations

import datetime as dt

from runnerd.api import CapacityReservation, parse_time

NOW = parse_time("2026-11-27T09:00:00Z")
MIN = dt.timedelta(minutes=1)
SEC = dt.timedelta(seconds=1)


def res(
    exp: dt.timedelta | None = 5 * MIN,
    replicas: int | None = 1,
    name: str | None = None,
    eff: dt.timedelta = -MIN,
) -> CapacityReservation:
    return CapacityReservation(
        name=name,
        effective_time=NOW + eff,
        expiration_time=None if exp is None else NOW + exp,
        replicas=replicas,
    )
