"""Fixtures shared by the workload controllers' unit tests (the fakes are in ``fakes.py``)."""

from __future__ import annotations

import pytest

from tests.unit.controller.fakes import Clock, FakeGitHub, FakeKube, FakeRecorder


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def github() -> FakeGitHub:
    return FakeGitHub()


@pytest.fixture
def kube() -> FakeKube:
    return FakeKube()


@pytest.fixture
def recorder() -> FakeRecorder:
    return FakeRecorder()
