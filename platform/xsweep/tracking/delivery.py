"""Background delivery of tracking writes: in order, retried with backoff, never blocking training.

A tracking server that goes away during a sweep must not stop it, and nothing logged meanwhile may
be lost: writes queue here and a single thread delivers them in order, retrying each with
exponential backoff until the server is back. `flush` waits for the queue to drain at the end.
A sweep's queue runs inside its tracking writer process (writer.py), not in the driver.
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from typing import Callable

from xsweep.tracking.store import auth_problem

log = logging.getLogger("xsweep.tracking")

# Backoff between retries of a failed write: 0.5 s doubling up to 30 s, so a server restart of a
# few seconds is noticed quickly and a long outage costs one request every 30 s.
FIRST_BACKOFF_S = 0.5
MAX_BACKOFF_S = 30.0


class Delivery:
    def __init__(self, *, on_delivered: Callable[[], None] | None = None) -> None:
        self._on_delivered = on_delivered  # called after each write goes through (writer.py)
        self._queue: queue.Queue[tuple[str, Callable[[], None]] | None] = queue.Queue()
        self._pending = 0
        self._lock = threading.Condition()
        self._thread = threading.Thread(target=self._loop, name="xsweep-tracking", daemon=True)
        self._thread.start()
        self.failures = 0  # failed attempts so far (each later retried)
        self.busy_seconds = 0.0  # time spent in successful writes (benchmarks/sweep_overhead.py)

    def submit(self, what: str, write: Callable[[], None]) -> None:
        """Queue `write` (a call to the tracking server); `what` names it in log lines."""
        with self._lock:
            self._pending += 1
        self._queue.put((what, write))

    def pending(self) -> int:
        with self._lock:
            return self._pending

    def flush(self, *, timeout: float) -> int:
        """Wait until every queued write is delivered or `timeout` passes; returns how many are left."""
        with self._lock:
            self._lock.wait_for(lambda: not self._pending, timeout=timeout)
            return self._pending

    def _loop(self) -> None:
        while True:
            item = self._queue.get()
            if item is None:
                return
            what, write = item
            backoff = FIRST_BACKOFF_S
            while True:
                try:
                    started = time.perf_counter()
                    write()
                    self.busy_seconds += time.perf_counter() - started
                    break
                except Exception as exc:  # noqa: BLE001 - any failure is retried; the server may be down
                    self.failures += 1
                    log.warning("tracking: %s failed (%s); retrying in %.1f s", what, _short(exc), backoff)
                    time.sleep(backoff)
                    backoff = min(backoff * 2, MAX_BACKOFF_S)
            with self._lock:
                self._pending -= 1
                self._lock.notify_all()
            if self._on_delivered is not None:
                self._on_delivered()


def _short(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {text[0][:200]}" if text else type(exc).__name__


def retry(what: str, call: Callable[[], object], *, deadline_s: float) -> object:
    """Run a write that the caller must wait for (e.g. opening a run), retrying with backoff.
    Refused credentials are not retried: they will not change while this process runs."""
    backoff = FIRST_BACKOFF_S
    give_up = time.monotonic() + deadline_s
    while True:
        try:
            return call()
        except Exception as exc:  # noqa: BLE001 - retried until the deadline, then re-raised
            if time.monotonic() + backoff > give_up or auth_problem(exc) is not None:
                raise
            log.warning("tracking: %s failed (%s); retrying in %.1f s", what, _short(exc), backoff)
            time.sleep(backoff)
            backoff = min(backoff * 2, MAX_BACKOFF_S)
