"""The tracking writer: a process of its own that performs a sweep's MLflow writes.

Every MLflow write of a sweep (a trial run's name, tags and params, each epoch's metrics, its best
checkpoint, its end) is SQL or HTTP work: about 80 ms of CPU per trial, done before in a thread of
the driver, where it took the driver's CPU and its GIL from Tune's event loop (docs/SCALING.md).
Here the driver only pickles each write, a `functools.partial` of a function in writes.py, onto
the writer's standard input; the writer delivers them in order with delivery.py's retries, and
answers on its standard output: each write delivered, the result of a call (a reserved run's id),
and its log lines, which the driver logs as its own. When the driver goes away, killed or not,
the writer sees its input close and exits at once: what it had not delivered is what Tune's
records still hold, and `xsweep resume` delivers it (callback.py `sync_results`).
"""

from __future__ import annotations

import atexit
import itertools
import logging
import os
import pickle
import queue
import struct
import subprocess
import sys
import threading
from concurrent.futures import Future, ThreadPoolExecutor
from typing import BinaryIO, Callable

log = logging.getLogger("xsweep.tracking")

_HEADER = struct.Struct("!I")  # a frame: its length, then the pickled message


def _frame(message: tuple) -> bytes:
    data = pickle.dumps(message, protocol=pickle.HIGHEST_PROTOCOL)
    return _HEADER.pack(len(data)) + data


def _read_frame(stream: BinaryIO) -> tuple | None:
    """The next message, or None once the other side has closed the pipe."""
    header = stream.read(_HEADER.size)
    if len(header) < _HEADER.size:
        return None
    data = stream.read(_HEADER.unpack(header)[0])
    return pickle.loads(data)


class TrackingWriter:
    """The driver's handle on its writer process; the same calls as delivery.Delivery."""

    def __init__(self) -> None:
        # The writer imports what the driver can: the pickled writes name functions by module.
        env = dict(os.environ, PYTHONPATH=os.pathsep.join(path for path in sys.path if path))
        # A session of its own: Ctrl-C in the terminal signals the terminal's process group, and the
        # writer must outlive it to deliver what the interrupted sweep still sends (the trials' last
        # epochs, the unclaimed runs' deletion). It ends when the driver closes its input, or dies.
        self._process = subprocess.Popen([sys.executable, "-m", "xsweep.tracking.writer"],
                                         stdin=subprocess.PIPE, stdout=subprocess.PIPE, env=env,
                                         start_new_session=True)
        self._outbox: queue.SimpleQueue[bytes | None] = queue.SimpleQueue()
        self._lock = threading.Condition()
        self._pending = 0
        self._calls: dict[int, Future] = {}
        self._call_ids = itertools.count()
        self._gone = False
        self.failures = 0  # failed attempts so far in the writer (each later retried)
        self.busy_seconds = 0.0  # the writer's time in successful writes (benchmarks/sweep_overhead.py)
        threading.Thread(target=self._feed, name="xsweep-tracking-feed", daemon=True).start()
        threading.Thread(target=self._read_messages, name="xsweep-tracking-read", daemon=True).start()
        atexit.register(self.close)

    @property
    def pid(self) -> int:
        return self._process.pid

    # ---- what the driver calls ---------------------------------------------------------------
    def submit(self, what: str, write: Callable[[], None]) -> None:
        """Queue `write` (picklable: a partial of a writes.py function); `what` names it in log lines.
        Pickled here, on the caller's thread, so that a write that cannot be sent fails where it is made."""
        frame = _frame(("write", what, write))
        with self._lock:
            self._pending += 1
        self._outbox.put(frame)

    def call(self, what: str, function: Callable[[], object]) -> Future:
        """Run `function` in the writer beside the queue of writes (not behind it); its result comes
        back in the Future. A failure (the function's, or the writer's end) is the Future's exception."""
        future: Future = Future()
        with self._lock:
            call_id = next(self._call_ids)
            self._calls[call_id] = future
            self._pending += 1
            if self._gone:
                self._fail_calls()
        self._outbox.put(_frame(("call", what, function, call_id)))
        return future

    def pending(self) -> int:
        with self._lock:
            return self._pending

    def flush(self, *, timeout: float) -> int:
        """Wait until every queued write is delivered or `timeout` passes; returns how many are left."""
        with self._lock:
            self._lock.wait_for(lambda: not self._pending or self._gone, timeout=timeout)
            return self._pending

    def close(self, timeout: float = 5.0) -> None:
        """Close the writer's input: it exits, with whatever it had not delivered."""
        self._outbox.put(None)
        try:
            self._process.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self._process.kill()
            self._process.wait()

    # ---- the two threads that talk to the writer ---------------------------------------------
    def _feed(self) -> None:
        stdin = self._process.stdin
        while (frame := self._outbox.get()) is not None:
            try:
                stdin.write(frame)
                stdin.flush()
            except (BrokenPipeError, ValueError):
                return  # the writer is gone; _read_messages says so
        stdin.close()

    def _read_messages(self) -> None:
        while (message := _read_frame(self._process.stdout)) is not None:
            try:
                self._take(message)
            except Exception:  # a bug of ours: said, and this thread goes on answering the rest
                log.exception("tracking: could not take the writer's message %r", message[:1])
        code = self._process.wait()
        with self._lock:
            self._gone = True
            left = self._pending
            self._fail_calls()
            self._lock.notify_all()
        if code != 0 or left:
            log.error("tracking: the writer process ended (exit code %s) with %d writes undelivered", code, left)

    def _take(self, message: tuple) -> None:
        kind, *rest = message
        if kind == "done":
            self.busy_seconds, self.failures = rest
            self._settle()
        elif kind == "log":
            level, name, text = rest
            logging.getLogger(name).log(level, "%s", text)
        else:  # "result" or "error" of a call
            call_id, value = rest
            with self._lock:
                future = self._calls.pop(call_id)
            # Its callbacks run here, and may queue writes (runs.py's deletion of a reserved
            # run nobody claimed) before the call stops counting as pending.
            if kind == "result":
                future.set_result(value)
            else:
                future.set_exception(RuntimeError(value))
            self._settle()

    def _settle(self) -> None:
        with self._lock:
            self._pending -= 1
            self._lock.notify_all()

    def _fail_calls(self) -> None:
        for future in self._calls.values():
            if not future.done():
                future.set_exception(RuntimeError("the tracking writer process has ended"))


_shared: TrackingWriter | None = None
_shared_lock = threading.Lock()


def shared_writer() -> TrackingWriter:
    """The driver's one tracking writer, started on first use: every tracking write of a process
    goes through it in order, so flushing it at the end of a sweep covers callbacks Tune restored
    from its pickles."""
    global _shared
    with _shared_lock:
        if _shared is None:
            _shared = TrackingWriter()
        return _shared


# ---- the writer process ----------------------------------------------------------------------
class _ForwardLogs(logging.Handler):
    """The writer's log lines go to the driver, which logs them where its own lines go."""

    def __init__(self, send: Callable[[tuple], None]) -> None:
        super().__init__(level=logging.WARNING)
        self._send = send

    def emit(self, record: logging.LogRecord) -> None:
        self._send(("log", record.levelno, record.name, record.getMessage()))


def main() -> None:
    from xsweep.defaults import apply_process_defaults
    from xsweep.tracking.delivery import Delivery

    apply_process_defaults()
    # Messages to the driver get the original standard output to themselves; a library that
    # prints would otherwise corrupt them: its lines go to standard error instead.
    out = os.fdopen(os.dup(1), "wb")
    os.dup2(2, 1)
    send_lock = threading.Lock()

    def send(message: tuple) -> None:
        frame = _frame(message)
        with send_lock:
            out.write(frame)
            out.flush()

    logging.getLogger().addHandler(_ForwardLogs(send))
    logging.getLogger().setLevel(logging.WARNING)

    def delivered() -> None:
        send(("done", delivery.busy_seconds, delivery.failures))

    delivery = Delivery(on_delivered=delivered)
    calls = ThreadPoolExecutor(max_workers=1, thread_name_prefix="xsweep-tracking-call")

    def run_call(what: str, function: Callable[[], object], call_id: int) -> None:
        try:
            send(("result", call_id, function()))
        except Exception as exc:  # noqa: BLE001 - the driver decides what a failed call means
            send(("error", call_id, f"{what}: {type(exc).__name__}: {exc}"))

    stdin = sys.stdin.buffer
    while (message := _read_frame(stdin)) is not None:
        if message[0] == "write":
            _, what, write = message
            delivery.submit(what, write)
        else:
            _, what, function, call_id = message
            calls.submit(run_call, what, function, call_id)
    # The driver has gone, or closed this writer: stop at once, whatever is in progress (see the
    # module doc); threads still writing would otherwise race a resumed sweep's writer.
    os._exit(0)


if __name__ == "__main__":
    main()
