"""Ctrl-C during a sweep: stop gracefully, and remember that it happened.

Tune's own Ctrl-C handling saves the experiment and returns normally, with the trials it stopped
marked TERMINATED, exactly like finished ones: after the fact a sweep whose trials had all
started could not tell "interrupted" from "finished". So the driver takes SIGINT itself, notes
it, and passes it on to Tune as SIGUSR1, Tune's other graceful-stop signal. A second Ctrl-C
aborts at once, as in Tune. A standard output closed by its reader (reader.py) stops a sweep the same way.
"""

from __future__ import annotations

import contextlib
import os
import signal
import threading


class Interrupt:
    def __init__(self):
        self.requested = False

    def _on_sigint(self, signum, frame) -> None:
        if self.requested:
            raise KeyboardInterrupt
        self.requested = True
        os.kill(os.getpid(), signal.SIGUSR1)


_active: list[Interrupt] = []  # the graceful interrupt taking SIGINT in this process, if any


def stop_as_by_ctrl_c() -> None:
    """Stop the sweep training in this process as a first Ctrl-C would, once. From Tune's loop
    (the main thread, where the handler is put back): outside a sweep's training, nothing."""
    if _active and not _active[-1].requested:
        os.kill(os.getpid(), signal.SIGINT)


@contextlib.contextmanager
def graceful_interrupt():
    """Yields an `Interrupt` whose `requested` says whether Ctrl-C came during the block."""
    interrupt = Interrupt()
    if threading.current_thread() is not threading.main_thread() or not hasattr(signal, "SIGUSR1"):
        yield interrupt  # signals can only be handled on the main thread (and POSIX)
        return
    previous_handler = signal.signal(signal.SIGINT, interrupt._on_sigint)
    _active.append(interrupt)
    previous_env = os.environ.get("TUNE_DISABLE_SIGINT_HANDLER")
    os.environ["TUNE_DISABLE_SIGINT_HANDLER"] = "1"  # Tune must leave our SIGINT handler in place
    try:
        yield interrupt
    finally:
        _active.remove(interrupt)
        signal.signal(signal.SIGINT, previous_handler)
        if previous_env is None:
            os.environ.pop("TUNE_DISABLE_SIGINT_HANDLER", None)
        else:
            os.environ["TUNE_DISABLE_SIGINT_HANDLER"] = previous_env
