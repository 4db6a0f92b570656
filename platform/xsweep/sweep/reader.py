"""When whoever reads xsweep's output stops reading (`xsweep run spec | head`).

Python turns the closed pipe into a BrokenPipeError at the next print, which would end the driver
mid-sweep with a traceback and its MLflow parent run left RUNNING. Instead what it prints from then
on goes nowhere, and the console, at Tune's next step, stops the sweep as Ctrl-C stops it
(interrupt.py): its trials in flight 'interrupted', every run ended, `xsweep resume` continuing it.
"""

from __future__ import annotations

import contextlib
import os
import threading
from typing import TextIO

_gone = threading.Event()


def reader_gone() -> bool:
    """Whether xsweep's standard output was closed by its reader."""
    return _gone.is_set()


class ReadOutput:
    """A stream to the user's standard output that outlives its reader: on a closed pipe it notes
    that the reader has gone and drops what is written after."""

    def __init__(self, stream: TextIO):
        self._stream = stream

    def write(self, text: str) -> int:
        self._guarded(self._stream.write, text)
        return len(text)

    def flush(self) -> None:
        self._guarded(self._stream.flush)

    def _guarded(self, call, *args) -> None:
        if _gone.is_set():
            return
        try:
            call(*args)
        except BrokenPipeError:
            self._reader_went_away()

    def _reader_went_away(self) -> None:
        _gone.set()
        # The stream's descriptor to /dev/null: what its buffer still holds is flushed there, not
        # as an "Exception ignored" at exit.
        with contextlib.suppress(OSError, ValueError, AttributeError):
            devnull = os.open(os.devnull, os.O_WRONLY)
            os.dup2(devnull, self._stream.fileno())
            os.close(devnull)

    def __getattr__(self, name: str):  # isatty, fileno, encoding: the stream's
        return getattr(self._stream, name)
