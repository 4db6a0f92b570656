"""Where a sweep's output goes while it runs: xsweep's own view to the terminal, the rest to a log.

Ray's log monitor (trial prints, "Checkpoint successfully created", its log-deduplication notice),
Tune's progress boxes and the loggers of Ray and MLflow all write to the driver's file descriptors
1 and 2, from several threads and from C code. Pointing those descriptors at the log (os.dup2), not
only sys.stdout, is what catches all of it. The view writes to copies of the original descriptors
made beforehand, so the person at the terminal sees xsweep's view and nothing else.

With `verbose`, the descriptors point at a pipe instead, and a thread copies each line from it
both into the log and to the terminal.
"""

from __future__ import annotations

import contextlib
import os
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TextIO

from xsweep.cluster.storage import Storage
from xsweep.sweep.reader import ReadOutput

LOG_NAME = "output.log"
# How long the end of a sweep waits for the verbose copy to show the last lines.
TEE_JOIN_TIMEOUT_S = 5


def log_path(storage: Storage, sweep: str) -> Path:
    """The sweep's log: in its folder, or for an s3:// folder (not a local file) in the temp folder."""
    if storage.is_local:
        return Path(storage.root, sweep, LOG_NAME)
    return Path(tempfile.gettempdir(), "xsweep", sweep, LOG_NAME)


def keep_log(storage: Storage, sweep: str, log: Path) -> None:
    """An s3:// sweep's log, written locally while it ran, copied into its folder at the end."""
    if storage.is_local:
        return
    import pyarrow.fs

    filesystem, destination = storage.fs_path(sweep, LOG_NAME)
    pyarrow.fs.copy_files(str(log), destination, destination_filesystem=filesystem)


@dataclass
class Streams:
    """Where to write while fds 1 and 2 point at the log."""

    stdout: TextIO  # what the user sees: the standard output xsweep was started with
    stderr: TextIO  # and its standard error
    log: TextIO  # into the log (with verbose, shown too)


def _writes_to(stream: TextIO, fd: int) -> bool:
    try:
        return stream.fileno() == fd
    except (AttributeError, OSError, ValueError):  # e.g. a notebook's stream, not a file
        return False


def _user_stream(stream: TextIO, fd: int, saved_fd: int, opened: list[TextIO]) -> TextIO:
    """What the user sees: a stream on the saved copy of fd when `stream` writes to fd (a terminal,
    a pipe); else `stream` itself (a notebook's, which redirecting fd does not touch)."""
    if not _writes_to(stream, fd):
        return stream
    encoding = getattr(stream, "encoding", None) or "utf-8"
    copy = open(os.dup(saved_fd), "w", buffering=1, encoding=encoding, errors="replace")
    opened.append(copy)
    return copy


@contextlib.contextmanager
def output_to_log(log: Path, *, verbose: bool = False) -> Iterator[Streams]:
    """For the duration of the block, fds 1 and 2 write to `log` (appended); yields the streams.

    On leaving (normally or by an exception) fds 1 and 2 are restored before anything else, so an
    error or a traceback printed afterwards reaches the user.
    """
    log.parent.mkdir(parents=True, exist_ok=True)
    # Ray's worker-log prefixes are coloured by default: escape codes in a log file.
    os.environ.setdefault("RAY_COLOR_PREFIX", "0")
    sys.stdout.flush()
    sys.stderr.flush()
    saved = (os.dup(1), os.dup(2))
    opened: list[TextIO] = []
    user_out = ReadOutput(_user_stream(sys.stdout, 1, saved[0], opened))  # `| head` (reader.py)
    user_err = _user_stream(sys.stderr, 2, saved[1], opened)
    log_file = open(log, "ab", buffering=0)
    # A resumed sweep appends to the same log: say where each part starts. (Not the command
    # line: a password given with --set would be in it.)
    log_file.write(f"--- {time.strftime('%Y-%m-%d %H:%M:%S')} ---\n".encode())
    tee = _Tee(log_file.fileno(), saved[0]) if verbose else None
    target = tee.write_fd if tee else log_file.fileno()
    os.dup2(target, 1)
    os.dup2(target, 2)
    into_log = open(1, "w", buffering=1, encoding="utf-8", errors="replace", closefd=False)
    opened.append(into_log)
    try:
        yield Streams(stdout=user_out, stderr=user_err, log=into_log)
    finally:
        for stream in (sys.stdout, sys.stderr, *opened):
            with contextlib.suppress(OSError, ValueError):
                stream.flush()
        os.dup2(saved[0], 1)
        os.dup2(saved[1], 2)
        if tee:
            tee.close()
        for fd in saved:
            os.close(fd)
        for stream in opened:
            with contextlib.suppress(OSError):  # a pipe its reader closed
                stream.close()
        log_file.close()


class _Tee:
    """A pipe whose lines a thread copies into the log and to the terminal (--verbose)."""

    def __init__(self, log_fd: int, terminal_fd: int):
        read_fd, self.write_fd = os.pipe()
        # Copies of its own: the thread may outlive the block if a process it started still
        # holds the pipe, and must never write to a descriptor number reused meanwhile.
        self._thread = threading.Thread(target=self._copy, args=(read_fd, os.dup(log_fd), os.dup(terminal_fd)),
                                        name="xsweep-verbose", daemon=True)
        self._thread.start()

    @staticmethod
    def _copy(read_fd: int, log_fd: int, terminal_fd: int) -> None:
        # Line by line: a line never mixes with what the user streams print meanwhile (the summary).
        with open(read_fd, "rb") as pipe, open(log_fd, "wb", buffering=0) as log, \
                open(terminal_fd, "wb", buffering=0) as terminal:
            for line in pipe:
                for out in (log, terminal):
                    with contextlib.suppress(OSError):
                        out.write(line)

    def close(self) -> None:
        os.close(self.write_fd)  # fds 1 and 2 no longer point at the pipe: the copy reaches its end
        self._thread.join(timeout=TEE_JOIN_TIMEOUT_S)
