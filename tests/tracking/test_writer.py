"""xsweep.tracking.writer: the driver's tracking writes run in a process of their own, in order,
retried there with the retry's warning logged by the driver, and that process never outlives its
driver, even one killed outright."""

from __future__ import annotations

import logging
import os
import signal
import subprocess
import sys
import textwrap
import time
from functools import partial
from pathlib import Path

import pytest

from xsweep.tracking.writer import TrackingWriter


# The writes below run in the writer's process: module-level, so that they pickle by name.
def append_pid(path: str, what: str) -> None:
    with open(path, "a") as out:
        out.write(f"{what} {os.getpid()}\n")


def fail_twice_then_append(path: str, what: str) -> None:
    attempts = Path(path + ".attempts")
    attempts.write_text(attempts.read_text() + "x" if attempts.exists() else "x")
    if len(attempts.read_text()) <= 2:
        raise ConnectionError("server away")
    append_pid(path, what)


def raise_value_error() -> None:
    raise ValueError("no such experiment")


@pytest.fixture
def writer():
    writer = TrackingWriter()
    yield writer
    writer.close()


def test_writes_run_in_the_writer_process_in_the_order_they_were_queued(writer, tmp_path):
    log = str(tmp_path / "writes.log")
    for i in range(50):
        writer.submit(f"write {i}", partial(append_pid, log, str(i)))
    assert writer.flush(timeout=60) == 0
    lines = [line.split() for line in Path(log).read_text().splitlines()]
    assert [what for what, _ in lines] == [str(i) for i in range(50)]
    assert {int(pid) for _, pid in lines} == {writer.pid} != {os.getpid()}  # not the driver's CPU


def test_a_failed_write_is_retried_in_the_writer_and_the_driver_logs_why(writer, tmp_path, caplog):
    log = str(tmp_path / "writes.log")
    with caplog.at_level(logging.WARNING, logger="xsweep.tracking"):
        writer.submit("metrics of epoch 1", partial(fail_twice_then_append, log, "epoch-1"))
        writer.submit("metrics of epoch 2", partial(append_pid, log, "epoch-2"))
        assert writer.flush(timeout=60) == 0
    assert [line.split()[0] for line in Path(log).read_text().splitlines()] == ["epoch-1", "epoch-2"]
    assert writer.failures == 2
    retried = [r.getMessage() for r in caplog.records if "metrics of epoch 1 failed" in r.getMessage()]
    assert len(retried) == 2 and "ConnectionError: server away" in retried[0]


def test_a_call_returns_its_value_or_its_failure(writer):
    assert writer.call("the pid", os.getpid).result(timeout=60) == writer.pid
    assert writer.call("its CPU time", time.process_time).result(timeout=60) > 0  # how benchmarks read it
    failed = writer.call("finding the experiment", raise_value_error)
    with pytest.raises(RuntimeError, match="finding the experiment: ValueError: no such experiment"):
        failed.result(timeout=60)
    assert writer.flush(timeout=60) == 0  # a call counts as pending until it has answered


def test_the_writer_does_not_outlive_a_killed_driver(tmp_path):
    driver = subprocess.Popen([sys.executable, "-c", textwrap.dedent(f"""
        import functools, sys, time
        sys.path[:0] = {sys.path!r}
        from xsweep.tracking.writer import TrackingWriter
        writer = TrackingWriter()
        writer.submit("a slow write", functools.partial(time.sleep, 300))
        print(writer.pid, flush=True)
        time.sleep(300)
    """)], stdout=subprocess.PIPE, text=True)
    try:
        writer_pid = int(driver.stdout.readline())
        assert _alive(writer_pid)
        driver.send_signal(signal.SIGKILL)  # no atexit, no close: the writer only sees its input end
        driver.wait(timeout=30)
        deadline = time.monotonic() + 30
        while _alive(writer_pid) and time.monotonic() < deadline:
            time.sleep(0.1)
        assert not _alive(writer_pid), "the tracking writer outlived its killed driver"
    finally:
        if driver.poll() is None:
            driver.kill()
            driver.wait()


def _alive(pid: int) -> bool:
    """Whether the process runs (a zombie, dead but not yet reaped by init, does not)."""
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except FileNotFoundError:
        return False
    return state != "Z"
