"""What a person sees while `xsweep run` works: xsweep's own table on a terminal, a line per event
where the output is not one, and Ray's and Tune's output in the sweep's log instead of either.

The terminal is real: tmux runs `xsweep run` in a pane and `tmux capture-pane` reads the screen.
"""

from __future__ import annotations

import os
import pickle
import re
import shlex
import subprocess
import sys
import time
import uuid
from pathlib import Path
from types import SimpleNamespace

import pytest

from conftest import SPECS, XSWEEP, run_xsweep

# A run name of the smoke sweep, as MLflow shows it.
RUN_NAME = re.compile(r"lr=[0-9.e-]+ res=(?:on|off) act=(?:none|relu) s0")
# What the console never shows: Tune's boxes and internal keys, Ray's worker chatter.
NOISE = ("Trial status:", "TERMINATED", "xsweep/run_id", "checkpoint_dir_name", "Checkpoint successfully created",
         "deduplicates logs", "╭", "View detailed results here")
EXITED = "[xsweep exited "


def _log_named_in(first_lines: str) -> Path:
    match = re.search(r"^log: (\S+)", first_lines, re.MULTILINE)
    assert match, first_lines
    return Path(match.group(1))


def _noise_in(text: str) -> list[str]:
    return [noise for noise in NOISE if noise in text]


# ---- a real terminal: tmux ---------------------------------------------------------------------
class Tmux:
    """A tmux server of our own (its own socket), one detached session, 80 x 24 like a fresh xterm."""

    def __init__(self, folder: Path):
        self.socket = f"xsweep-test-{os.getpid()}-{uuid.uuid4().hex[:8]}"
        self.socket_path: Path | None = None
        self.folder = folder

    def _tmux(self, *args: str) -> str:
        return subprocess.run(["tmux", "-L", self.socket, "-f", "/dev/null", *args], check=True,
                              capture_output=True, text=True, timeout=30).stdout

    def start(self, command: str) -> None:
        # The pane stays after the command ends, with its exit code, so the last screen can be read.
        shell = f"cd {shlex.quote(str(self.folder))} && {command}; echo \"{EXITED}$?]\"; sleep 3600"
        self._tmux("-u", "new-session", "-d", "-s", "sweep", "-x", "80", "-y", "24", shell)
        self.socket_path = Path(self._tmux("display-message", "-p", "#{socket_path}").strip())

    def screen(self) -> str:
        return self._tmux("capture-pane", "-p", "-t", "sweep")

    def everything(self) -> str:
        """The screen and what scrolled off it, wrapped lines joined."""
        return self._tmux("capture-pane", "-p", "-J", "-S", "-", "-t", "sweep")

    def stop(self) -> None:
        subprocess.run(["tmux", "-L", self.socket, "kill-server"], capture_output=True, timeout=30)
        if self.socket_path is not None:
            self.socket_path.unlink(missing_ok=True)  # tmux leaves it behind


@pytest.fixture(scope="module")
def terminal_run(tmp_path_factory):
    """`xsweep run` of the smoke sweep in a real terminal: every distinct screen while it ran, then
    everything the terminal holds once it exited."""
    folder = tmp_path_factory.mktemp("console-tty")
    tmux = Tmux(folder)
    tmux.start(f"{shlex.quote(str(XSWEEP))} run {shlex.quote(str(SPECS / 'smoke.yaml'))}")
    screens: list[str] = []
    try:
        deadline = time.monotonic() + 600
        while time.monotonic() < deadline:
            screen = tmux.screen()
            if not screens or screen != screens[-1]:
                screens.append(screen)
            if EXITED in screen:
                break
            time.sleep(0.2)
        else:
            pytest.fail("xsweep run did not exit in 10 minutes:\n" + tmux.everything())
        final = tmux.everything()
    finally:
        tmux.stop()
    return folder, screens, final


@pytest.mark.slow
@pytest.mark.cluster
def test_the_terminal_shows_one_table_of_the_trials_by_run_name(terminal_run):
    _, screens, final = terminal_run
    assert f"{EXITED}0]" in final, final
    # While it ran: the table, redrawn in place, with a running trial, an estimate of what is left.
    live = [s for s in screens if re.search(r"\brunning\b", s) and RUN_NAME.search(s)]
    assert live, "no screen showed a running trial:\n" + "\n----\n".join(screens[-5:])
    assert any(re.search(r"about \d+:\d\d left", s) for s in screens), screens[-1]
    header = re.compile(r"^trial\s+status\s+epoch\s+accuracy\s+best\s+elapsed\s+left\s*$", re.MULTILINE)
    assert all(len(header.findall(s)) <= 1 for s in screens), "the table was printed again, not redrawn"
    # At the end: every trial by its MLflow run name, completed, its two epochs as a full bar.
    assert len(header.findall(final)) == 1, final
    rows = [line for line in final.splitlines() if RUN_NAME.match(line)]
    assert len(rows) == 4, final
    for row in rows:
        assert re.search(r"\bcompleted\s+━+\s+2/2\s+\d+\.\d\d%\s+\d+\.\d\d%\s+\d+:\d\d\b", row), row
    assert re.search(r"^4/4 trials done · 0 running · elapsed \d+:\d\d", final, re.MULTILINE), final
    assert re.search(rf"^best so far: {RUN_NAME.pattern}, validation accuracy \d+\.\d\d%", final, re.MULTILINE)


@pytest.mark.slow
@pytest.mark.cluster
def test_the_terminal_shows_no_tune_or_ray_output_and_names_the_log(terminal_run):
    _, screens, final = terminal_run
    for text in [*screens, final]:
        assert not _noise_in(text), text
    first_lines = final[:final.index("trials done")]
    log = _log_named_in(first_lines)
    text = log.read_text()
    assert "Checkpoint successfully created" in text and "Trial status:" in text, text[-3000:]


@pytest.mark.slow
@pytest.mark.cluster
def test_the_summary_follows_the_table(terminal_run):
    _, _, final = terminal_run
    table = final.index("best so far:")
    assert final.index("sweep finished: 4 completed") > table
    assert re.search(rf"^best trial: {RUN_NAME.pattern}\s+val_accuracy = 0\.\d+", final, re.MULTILINE), final
    assert "reproduce:  xsweep reproduce --experiment smoke" in final
    # How fast the trials started, beside what they cost (the table has no room for it at 80 columns).
    assert re.search(r"^start-up:   first step \d+(\.\d)?s after a trial's start \(median of 4 trials; "
                     r"\d+(\.\d)?s to \d+(\.\d)?s\)", final, re.MULTILINE), final


# ---- not a terminal: CI logs, `| tee` ----------------------------------------------------------
@pytest.mark.slow
@pytest.mark.cluster
def test_piped_output_is_a_plain_line_per_event(smoke_sweep):
    _, proc, log_text = smoke_sweep  # `xsweep run search_spaces/smoke.yaml`, its output piped (tests/conftest.py)
    out = proc.stdout
    assert proc.returncode == 0, out[-3000:] + proc.stderr[-3000:]
    assert not _noise_in(out + proc.stderr), out + proc.stderr
    assert "\x1b[" not in out  # no escape codes in a CI log
    lines = out.splitlines()
    for event in (r"started \(trial \d of 4\)", r"epoch 1/2  validation accuracy \d+\.\d\d%  \(best \d+\.\d\d%\)  "
                  r"\(first step \d+(\.\d)?s after its start\)",
                  r"epoch 2/2  validation accuracy", r"completed after 2/2 epochs in \d+:\d\d"):
        found = [line for line in lines if re.match(rf"\[\d+:\d\d\] {RUN_NAME.pattern}: {event}", line)]
        assert len(found) == 4, (event, out)
    # The sweep's device time so far (every trial's device-seconds) beside its wall-clock time.
    assert re.search(r"^\[\d+:\d\d\] 4/4 trials done · 0 running · elapsed \d+:\d\d · device time \d+:\d\d · "
                     r"best so far: ", out, re.MULTILINE)
    assert "sweep finished: 4 completed" in out and "best trial:" in out
    log = _log_named_in(out)
    assert log.parent.name == re.search(r"^sweep (\S+): ", out, re.M)[1]  # in the sweep's own folder
    assert "Checkpoint successfully created" in log_text  # what the log held when the run ended


@pytest.mark.slow
@pytest.mark.cluster
def test_verbose_shows_ray_and_tune_output_live(tmp_path):
    proc = run_xsweep("run", str(SPECS / "smoke.yaml"), "--verbose", cwd=tmp_path)
    out = proc.stdout
    assert proc.returncode == 0, out[-3000:] + proc.stderr[-3000:]
    summary = out.index("sweep finished: 4 completed")
    shown = out[:summary]
    assert "Checkpoint successfully created" in shown and "Trial status:" in shown, out[-3000:]
    assert re.search(rf"^\[\d+:\d\d\] {RUN_NAME.pattern}: completed after 2/2 epochs", shown, re.MULTILINE)
    assert "Trial status:" in _log_named_in(out).read_text()  # the log holds it all the same


# ---- the parts, without Ray ---------------------------------------------------------------------
def _restored_trial(trial_id: str, lr: float, *, last: float, best: float):
    """A finished trial as Tune hands it back to `xsweep resume`."""
    from xsweep.contract import TrialReport

    result = TrialReport(epoch=2, planned_epochs=2, metrics={"val_accuracy": last, "device_seconds": 70.0}).to_result()
    config = {"train.lr": lr, "model.residual": True, "model.activation": "elu", "xsweep/repeat": 0}
    return SimpleNamespace(trial_id=trial_id, config=config, status="TERMINATED",
                           last_result={**result, "time_total_s": 75.0},
                           metric_analysis={"val_accuracy": {"max": best, "min": last}})


def test_a_resumed_sweep_shows_the_trials_that_had_finished():
    from rich.console import Console

    from xsweep.sweep.console import ConsoleCallback, TableView

    callback = ConsoleCallback(metric="val_accuracy", mode="max", total_trials=3, max_concurrent=2, epochs=2)
    restored = pickle.loads(pickle.dumps(callback))  # as Tune's experiment state holds it
    restored.on_step_begin(0, [_restored_trial("a", 0.047, last=0.80, best=0.97)])
    console = Console(width=100, height=30, record=True, color_system=None)
    console.print(TableView(restored.board, console))
    screen = console.export_text()
    assert re.search(r"^lr=0.047 res=on act=elu s0\s+completed\s+━+\s+2/2\s+80\.00%\s+97\.00%\s+1:15\s*$",
                     screen, re.MULTILINE), screen
    assert "1/3 trials done · 0 running · elapsed 0:00 · device time 1:10\n" in screen
    assert "best so far: lr=0.047 res=on act=elu s0, validation accuracy 97.00%" in screen


def test_the_callback_pickles_without_its_views():
    import io

    from xsweep.sweep.console import ConsoleCallback

    callback = ConsoleCallback(metric="val_loss", mode="min", total_trials=4, max_concurrent=2, epochs=3)
    with callback.showing(terminal=io.StringIO(), log=io.StringIO()):
        state = pickle.dumps(callback)  # Tune saves its state while the sweep runs
    restored = pickle.loads(state)
    assert restored.views == [] and restored.board.rows == {}
    assert restored.board.metric.label == "validation loss" and restored.board.mode == "min"


OUTPUT_CHILD = """
import os, sys, pathlib
from xsweep.sweep.output import output_to_log
with output_to_log(pathlib.Path(sys.argv[1]), verbose=sys.argv[2] == "verbose") as streams:
    print("from python's stdout")
    print("from python's stderr", file=sys.stderr)
    os.write(1, b"from fd 1\\n")
    os.write(2, b"from fd 2\\n")
    print("into the log", file=streams.log)
    print("for the user", file=streams.stdout)
    print("a warning for the user", file=streams.stderr)
print("after the block")
raise SystemExit("an error after it")
"""


@pytest.mark.parametrize("mode", ["quiet", "verbose"])
def test_every_output_of_the_process_goes_to_the_log_until_the_block_ends(tmp_path, mode):
    log = tmp_path / "sweep" / "output.log"
    proc = subprocess.run([sys.executable, "-c", OUTPUT_CHILD, str(log), mode], capture_output=True, text=True,
                          timeout=60)
    everything = ["from python's stdout", "from python's stderr", "from fd 1", "from fd 2", "into the log"]
    text = log.read_text()
    assert all(line in text for line in everything), text
    assert "for the user" not in text and "after the block" not in text
    assert proc.stderr == "a warning for the user\nan error after it\n"
    shown = proc.stdout.splitlines()
    assert "for the user" in shown and shown[-1] == "after the block"
    if mode == "verbose":
        assert set(everything) <= set(shown), proc.stdout
    else:
        assert shown == ["for the user", "after the block"]
