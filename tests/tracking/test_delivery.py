"""xsweep.tracking.delivery: tracking writes arrive in order, are retried while the server is away,
never block the caller, and a refused credential is not retried."""

from __future__ import annotations

import threading

import pytest
from mlflow.exceptions import MlflowException

from xsweep.tracking import delivery
from xsweep.tracking.delivery import Delivery, retry


@pytest.fixture(autouse=True)
def quick_backoff(monkeypatch):
    monkeypatch.setattr(delivery, "FIRST_BACKOFF_S", 0.01)
    monkeypatch.setattr(delivery, "MAX_BACKOFF_S", 0.02)


def test_writes_arrive_in_order_and_flush_waits_for_them():
    queue, done = Delivery(), []
    gate = threading.Event()
    queue.submit("first", lambda: (gate.wait(10), done.append(1)))
    queue.submit("second", lambda: done.append(2))
    assert queue.pending() == 2 and done == []  # submitting never waits for the server
    gate.set()
    assert queue.flush(timeout=10) == 0 and done == [1, 2]


def test_a_failing_write_is_retried_until_it_goes_through():
    queue, attempts = Delivery(), []

    def flaky():
        attempts.append(1)
        if len(attempts) < 4:
            raise ConnectionError("server away")

    queue.submit("flaky", flaky)
    assert queue.flush(timeout=10) == 0 and len(attempts) == 4 and queue.failures == 3


def test_flush_says_how_many_writes_are_left_when_time_is_up():
    queue, server_back = Delivery(), threading.Event()

    def write():
        if not server_back.is_set():
            raise ConnectionError("down")

    queue.submit("while the server is down", write)
    assert queue.flush(timeout=0.3) == 1
    server_back.set()  # ... and once it is back, nothing was lost
    assert queue.flush(timeout=10) == 0


def test_retry_gives_up_at_its_deadline():
    with pytest.raises(ConnectionError):
        retry("opening a run", lambda: (_ for _ in ()).throw(ConnectionError("down")), deadline_s=0.1)


def test_retry_does_not_retry_refused_credentials():
    attempts = []

    def refused():
        attempts.append(1)
        raise MlflowException("API request to endpoint /api/2.0/mlflow/runs/create failed with error code 401 != 200")

    with pytest.raises(MlflowException):
        retry("opening a run", refused, deadline_s=30)
    assert attempts == [1]
