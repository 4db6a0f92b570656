"""What `xsweep run` and `resume` show while a sweep runs.

    Tune's events --> ConsoleCallback --> Board: what a person wants to know of each trial
                                      --> TableView: one table, redrawn in place (a terminal)
                                      --> LineView: a plain line per event (CI logs, `| tee`, the log)

Trials are named by their MLflow run names and described in the statuses MLflow and the report
use (xsweep.contract), never in Tune's words or keys: Tune's own output goes to the sweep's log
(output.py).
"""

from __future__ import annotations

import contextlib
import os
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from statistics import mean
from typing import TextIO

from ray import tune
from rich import box
from rich.console import Console, ConsoleDimensions, Group
from rich.live import Live
from rich.progress_bar import ProgressBar
from rich.table import Table
from rich.text import Text

from xsweep.contract import (
    COMPLETED,
    DIVERGED,
    FAILED,
    PENDING,
    RUNNING,
    STOPPED,
    TrialReport,
    ended_status,
    status_of,
)
from xsweep.metrics import COST, METRICS, STARTUP, best_scored, better, is_finite_number
from xsweep.spec.trial import trial_name
from xsweep.sweep.interrupt import stop_as_by_ctrl_c
from xsweep.sweep.outcome import seconds_text
from xsweep.sweep.reader import reader_gone

STATUS_STYLES = {PENDING: "dim", RUNNING: "yellow", COMPLETED: "green", STOPPED: "cyan", DIVERGED: "magenta",
                 FAILED: "bold red"}
# Lines of the terminal the table's rows leave to the lines above it, its header and the cursor.
TABLE_MARGIN_LINES = 7
# Errors and warnings of trials shown under the table, the latest ones.
NOTES_SHOWN = 3


def clock(seconds: float | None) -> str:
    """0:07, 12:30, 1:02:03; '-' when unknown."""
    if seconds is None:
        return "-"
    minutes, secs = divmod(round(seconds), 60)
    hours, minutes = divmod(minutes, 60)
    return f"{hours}:{minutes:02d}:{secs:02d}" if hours else f"{minutes}:{secs:02d}"


@dataclass
class TrialRow:
    name: str  # the trial's MLflow run name
    planned_epochs: int
    status: str = PENDING
    epoch: int = 0  # finished epochs
    value: float | None = None  # the metric at the last epoch
    best: float | None = None  # the trial's best value of the metric so far
    device_seconds: float | None = None  # its cost so far (xsweep.metrics COST)
    startup: float | None = None  # seconds from its start to its first training step (xsweep.metrics STARTUP)
    started: float | None = None  # time.monotonic() when this driver started it
    ended: float | None = None
    last_report: float | None = None
    seconds_before: float = 0.0  # time Tune recorded for it before a resume
    epoch_seconds: list[float] = field(default_factory=list)  # each epoch seen, for estimates
    error: str = ""  # the last line of its last error's traceback
    warning: str = ""  # a damaged checkpoint its restore skipped (TrialReport.checkpoint_fallback)

    def elapsed(self, now: float) -> float | None:
        if self.started is None:
            return self.seconds_before or None
        return self.seconds_before + (self.ended or now) - self.started

    def left(self, now: float) -> float | None:
        """Seconds to its last planned epoch, from its mean epoch so far; 0 once ended."""
        if self.status not in (PENDING, RUNNING):
            return 0.0
        if not self.epoch_seconds or self.last_report is None:
            return None
        due = mean(self.epoch_seconds) * (self.planned_epochs - self.epoch)
        return max(0.0, due - (now - self.last_report))


class Board:
    """Every trial of the sweep as the console shows it; updated by the callback, read by views."""

    def __init__(self, *, metric: str, mode: str, total_trials: int, max_concurrent: int, epochs: int):
        self.metric, self.mode = METRICS.get(metric), mode
        self.metric_name = metric
        self.total_trials, self.max_concurrent, self.epochs = total_trials, max_concurrent, epochs
        self.rows: dict[str, TrialRow] = {}  # by Tune's trial id, in the order trials appeared
        self.started = time.monotonic()
        self.lock = threading.Lock()  # the table is drawn from rich's refresh thread

    def row(self, trial) -> TrialRow:
        row = self.rows.get(trial.trial_id)
        if row is None:
            row = TrialRow(name=trial_name(trial.config),
                           planned_epochs=int(trial.config.get("train.epochs", self.epochs)))
            report = TrialReport.from_result(trial.last_result)
            if report is not None:  # a trial restored by `xsweep resume`
                row.status = status_of(trial.status, trial.last_result)
                self._record(row, report, seconds=None)
                # The best of every epoch, which Tune keeps with the trial (its last is above).
                best = (trial.metric_analysis.get(self.metric_name) or {}).get(self.mode)
                if is_finite_number(best) and self.better(best, row.best):
                    row.best = best
                row.seconds_before = float(trial.last_result.get("time_total_s") or 0.0)
            self.rows[trial.trial_id] = row
        return row

    def better(self, a: float | None, b: float | None) -> bool:
        """Whether value a beats b (None never does; anything beats None)."""
        return better(a, b, mode=self.mode)

    def _record(self, row: TrialRow, report: TrialReport, *, seconds: float | None) -> None:
        row.epoch, row.planned_epochs = report.epoch, report.planned_epochs or row.planned_epochs
        row.value = report.value(self.metric_name)
        row.device_seconds = report.value(COST)
        row.startup = report.value(STARTUP)
        if self.better(row.value, row.best):
            row.best = row.value
        if seconds is not None:
            row.epoch_seconds.append(seconds)

    # ---- what the callback tells it -------------------------------------------------------
    def trial_started(self, trial) -> TrialRow:
        row = self.row(trial)
        row.status, row.ended = RUNNING, None
        row.started = row.last_report = time.monotonic()
        return row

    def result(self, trial, result: dict) -> TrialRow:
        row = self.row(trial)
        report = TrialReport.from_result(result)
        if report is not None:
            self._record(row, report, seconds=result.get("time_this_iter_s"))
            row.last_report = time.monotonic()
        return row

    def end(self, trial, status: str, *, error: str = "") -> TrialRow:
        row = self.row(trial)
        row.status, row.ended, row.error = status, time.monotonic(), error
        return row

    # ---- what the views ask ---------------------------------------------------------------
    def best_row(self) -> TrialRow | None:
        return best_scored(self.rows.values(), score=lambda row: row.best, mode=self.mode)[0]

    def running(self) -> frozenset[str]:
        """The Tune ids of the trials training now: started, and neither completed nor failed."""
        return frozenset(trial_id for trial_id, row in self.rows.items() if row.status == RUNNING)

    def count(self, *statuses: str) -> int:
        return sum(row.status in statuses for row in self.rows.values())

    def done(self) -> int:
        return len(self.rows) - self.count(PENDING, RUNNING)

    def time_left(self) -> float | None:
        """The sweep's remaining time if every trial runs all its epochs (ASHA makes it less)."""
        seconds = [s for row in self.rows.values() for s in row.epoch_seconds]
        if not seconds:
            return None
        not_created = max(0, self.total_trials - len(self.rows))
        epochs_left = not_created * self.epochs + sum(row.planned_epochs - row.epoch for row in self.rows.values()
                                                      if row.status in (PENDING, RUNNING))
        return mean(seconds) * epochs_left / self.max_concurrent

    def elapsed(self, now: float) -> float:
        return now - self.started

    def show(self, value: float | None) -> str:
        return self.metric.show(value)

    def progress(self, now: float) -> str:
        """The whole sweep in a line: trials done and running, time elapsed and left."""
        parts = [f"{self.done()}/{self.total_trials} trials done", f"{self.count(RUNNING)} running",
                 f"elapsed {clock(self.elapsed(now))}"]
        left = self.time_left()
        if left:
            parts.append(f"about {clock(left)} left")
        spent = [row.device_seconds for row in self.rows.values() if row.device_seconds is not None]
        if spent:  # as of each trial's last epoch
            parts.append(f"device time {clock(sum(spent))}")
        return " · ".join(parts)

    def best_so_far(self) -> str:
        best = self.best_row()
        if best is None:
            return "best so far: -"
        return f"best so far: {best.name}, {self.metric.label} {self.show(best.best)}"


class LineView:
    """A plain line per event: where the output is not a terminal, with --verbose, and in the log."""

    def __init__(self, board: Board, stream: TextIO):
        self.board, self.stream = board, stream

    def start(self) -> None:
        pass

    def stop(self) -> None:
        pass

    def event(self, row: TrialRow | None, what: str) -> None:
        now = time.monotonic()
        who = f"{row.name}: " if row is not None else ""
        print(f"[{clock(self.board.elapsed(now))}] {who}{what}", file=self.stream, flush=True)


class TerminalConsole(Console):
    """rich measures the terminal at fds 0, 1 and 2, which point at the log while a sweep runs
    (output.py): measure the terminal it writes to instead, resized windows included."""

    @property
    def size(self) -> ConsoleDimensions:
        try:
            return ConsoleDimensions(*os.get_terminal_size(self.file.fileno()))
        except (AttributeError, ValueError, OSError):
            return super().size


class TableView:
    """The trials as one table, redrawn in place (rich's Live) about twice a second."""

    def __init__(self, board: Board, console: Console):
        self.board, self.console = board, console
        # Redirecting sys.stdout is output.py's job (at the level of file descriptors).
        self.live = Live(self, console=console, refresh_per_second=2, transient=False,
                         redirect_stdout=False, redirect_stderr=False)

    def start(self) -> None:
        self.live.start()

    def stop(self) -> None:
        self.live.stop()  # draws the last state once more and leaves it on the screen

    def event(self, row: TrialRow | None, what: str) -> None:
        self.live.refresh()

    def __rich__(self) -> Group:
        with self.board.lock:
            return self.render(time.monotonic())

    def render(self, now: float) -> Group:
        board = self.board
        table = Table(box=box.SIMPLE_HEAD, show_edge=False, pad_edge=False, padding=0)
        table.add_column("trial")  # the one column that wraps, on a narrow terminal
        table.add_column("status", no_wrap=True, min_width=len("completed"))
        table.add_column("epoch", no_wrap=True)
        # "validation accuracy" over two lines: the values are seven characters at most.
        label = board.metric.label
        table.add_column(label, justify="right", width=max(7, *map(len, label.split())))
        table.add_column("best", justify="right", no_wrap=True)
        table.add_column("elapsed", justify="right", no_wrap=True)
        table.add_column("left", justify="right", no_wrap=True)
        rows = list(board.rows.values())
        notes = [Text(f"{row.name}: {row.error}", style="red") if row.error else
                 Text(f"{row.name}: warning: {row.warning}", style="yellow")
                 for row in rows if row.error or row.warning][-NOTES_SHOWN:]
        hidden = self._rows_that_do_not_fit(rows, room=self.console.size.height - TABLE_MARGIN_LINES - len(notes))
        lines = [Text(board.progress(now), style="bold"), Text(board.best_so_far())]
        if hidden:
            lines.append(Text(f"({len(hidden)} earlier trials ended, not shown: `xsweep status` lists all)",
                              style="dim"))
        for row in rows:
            if id(row) in hidden:
                continue
            table.add_row(row.name, Text(row.status, style=STATUS_STYLES.get(row.status, "")), self._epoch(row),
                          board.show(row.value), board.show(row.best), clock(row.elapsed(now)),
                          clock(row.left(now)) if row.status in (PENDING, RUNNING) else "")
        return Group(*lines, table, *notes)

    @staticmethod
    def _rows_that_do_not_fit(rows: list[TrialRow], *, room: int) -> set[int]:
        """The oldest ended rows beyond the room the terminal has (running ones are always shown)."""
        extra = len(rows) - max(3, room)
        ended = [row for row in rows if row.status not in (PENDING, RUNNING)]
        return {id(row) for row in ended[:extra + 1]} if extra > 0 else set()

    @staticmethod
    def _epoch(row: TrialRow) -> Table:
        cell = Table.grid(padding=(0, 1))
        cell.add_row(ProgressBar(total=max(1, row.planned_epochs), completed=row.epoch, width=5),
                     f"{row.epoch}/{row.planned_epochs}")
        return cell


class ConsoleCallback(tune.Callback):
    """Turns Tune's events into the console's board and tells the views.

    Tune pickles its callbacks into the experiment state (what `xsweep resume` restores): only
    the settings travel; the board is rebuilt from Tune's trials and `resume_sweep` attaches
    fresh views.
    """

    def __init__(self, *, metric: str, mode: str, total_trials: int, max_concurrent: int, epochs: int):
        self.settings = {"metric": metric, "mode": mode, "total_trials": total_trials,
                         "max_concurrent": max_concurrent, "epochs": epochs}
        self._init_transient()

    @classmethod
    def for_spec(cls, spec, *, total_trials: int | None = None) -> ConsoleCallback:
        """total_trials: of this run (an extended sweep's new version runs fewer than the spec's)."""
        return cls(metric=spec.search.metric, mode=spec.search.mode,
                   total_trials=total_trials or spec.total_trials(), max_concurrent=spec.search.max_concurrent,
                   epochs=spec.max_epochs())

    def _init_transient(self) -> None:
        self.board = Board(**self.settings)
        self.views: list[LineView | TableView] = []

    def __getstate__(self) -> dict:
        return {"settings": self.settings}

    def __setstate__(self, state: dict) -> None:
        self.__dict__.update(state)
        self._init_transient()

    @contextlib.contextmanager
    def showing(self, *, terminal: TextIO, log: TextIO, verbose: bool = False) -> Iterator[None]:
        """Shows the sweep for the duration of the block: the table on a terminal, else lines.

        `terminal` is the user's standard output, `log` the stream into the sweep's log. With
        `verbose` the log's lines are shown live (output.py), among them this view's own lines.
        """
        # Not rich's own test, which FORCE_COLOR (set by many CI systems) turns into "a terminal".
        redrawable = terminal.isatty() and os.environ.get("TERM", "").lower() not in ("dumb", "unknown")
        if verbose:
            self.views = [LineView(self.board, log)]
        elif redrawable:
            self.views = [TableView(self.board, TerminalConsole(file=terminal)), LineView(self.board, log)]
        else:
            self.views = [LineView(self.board, terminal), LineView(self.board, log)]
        for view in self.views:
            view.start()
        try:
            yield
        finally:
            with self.board.lock:
                views, self.views = self.views, []
            for view in views:
                view.stop()

    def _tell(self, row: TrialRow | None, what: str) -> None:
        for view in self.views:
            view.event(row, what)

    # ---- Tune events -----------------------------------------------------------------------
    def on_step_begin(self, iteration, trials, **info):
        if reader_gone():  # nobody reads what it shows any more: stop as Ctrl-C does (reader.py)
            stop_as_by_ctrl_c()
        # Trials the searcher created but Tune has not started, and after a resume those that
        # had ended: no event announces them.
        with self.board.lock:
            for trial in trials:
                self.board.row(trial)

    def on_trial_start(self, iteration, trials, trial, **info):
        with self.board.lock:
            row = self.board.trial_started(trial)
            number = len(self.board.rows) - self.board.count(PENDING)
        self._tell(row, f"started (trial {number} of {self.board.total_trials})")

    def on_trial_result(self, iteration, trials, trial, result, **info):
        board = self.board
        with board.lock:
            row = board.result(trial, result)
            report = TrialReport.from_result(result)
            fallback = report.checkpoint_fallback if report else None
            new_warning = bool(fallback) and fallback != row.warning
            if new_warning:
                row.warning = fallback
        if new_warning:  # every epoch after such a restore reports it; say it once
            self._tell(None, f"xsweep: warning: trial {row.name}: {fallback}")
        label = board.metric.label
        first_epoch = row.epoch == 1 and row.startup
        started = f"  (first step {seconds_text(row.startup)} after its start)" if first_epoch else ""
        self._tell(row, f"epoch {row.epoch}/{row.planned_epochs}  {label} {board.show(row.value)}"
                        f"  (best {board.show(row.best)}){started}")

    def on_trial_complete(self, iteration, trials, trial, **info):
        self._end(trial, ended_status(trial.last_result))

    def on_trial_error(self, iteration, trials, trial, **info):
        self._end(trial, FAILED, error=_error_line(trial))

    def on_trial_recover(self, iteration, trials, trial, **info):
        with self.board.lock:
            row = self.board.row(trial)
            row.error = f"failed, retrying: {_error_line(trial)}"
        self._tell(row, row.error)

    def _end(self, trial, status: str, *, error: str = "") -> None:
        board = self.board
        with board.lock:
            row = board.end(trial, status, error=error)
            now = time.monotonic()
            progress = f"{board.progress(now)} · {board.best_so_far()}"
        what = f"{status} after {row.epoch}/{row.planned_epochs} epochs in {clock(row.elapsed(now))}"
        if row.best is not None:
            what += f", best {board.metric.label} {board.show(row.best)}"
        if error:
            what += f": {error}"
        self._tell(row, what)
        self._tell(None, progress)


def _error_line(trial) -> str:
    """The last line of a failed trial's traceback (its exception), from the file Tune writes."""
    try:
        text = Path(trial.error_file).read_text(errors="replace") if trial.error_file else ""
    except OSError:
        text = ""
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    return lines[-1][:200] if lines else "see the log"


def first_lines(*, log: str, verbose: bool, copied_to: str | None = None) -> str:
    """Where Ray's and Tune's output goes, said before the sweep starts."""
    copied = f", copied to {copied_to} at the end" if copied_to else ""
    return f"log: {log}  (Ray's and Tune's output{', shown below too' if verbose else '; --verbose shows it'}{copied})"

