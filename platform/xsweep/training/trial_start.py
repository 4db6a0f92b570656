"""How long a trial takes to start training, measured in the trial's process and reported as metrics.

- `startup_seconds`: from the trial's start to the end of its first optimizer step. A process's
  first trial starts when the process does, so Python's start, the imports (torch, Ray), CUDA's
  start, the data's load, compilation and the first step all count; a later trial in the same process
  (Tune reuses a trial's process on one machine) starts when its function is called.
- `first_epoch_extra_seconds`: what the process's first epoch took beyond the same number of steps
  at the second epoch's pace: compilation, cuDNN's autotuning, the loader processes' start, CUDA's
  lazy initialisation. Known from the second epoch on.
- `compile_seconds`: the seconds torch.compile spent compiling for this trial (tracing and code
  generation, forward and backward), as torch counts them; only for a compiled trial. Near zero
  when the compiled code was already in the process or in the compile cache (compile_cache.py).

Needs only torch and the standard library (the GPU check runs `fit` without Ray).
"""

from __future__ import annotations

import os
import time

import torch

# Whether this process has started a trial already: its first trial counts the process's own start.
_trials_started = 0


def process_started() -> float:
    """When this process started, in time.time() seconds: its age from /proc (to 10 ms), else now."""
    try:
        with open("/proc/self/stat") as f:
            # Fields after the command name in parentheses; the 22nd field (index 19 here) is the
            # start in clock ticks after boot.
            ticks = int(f.read().rpartition(")")[2].split()[19])
        with open("/proc/uptime") as f:
            uptime = float(f.read().split()[0])
    except (OSError, ValueError, IndexError):
        return time.time()
    return time.time() - max(0.0, uptime - ticks / os.sysconf("SC_CLK_TCK"))


def trial_began() -> float:
    """When the trial starting now began, in time.time() seconds: the process's start for its
    first trial, now for a later one (see the module's docstring)."""
    global _trials_started
    _trials_started += 1
    return process_started() if _trials_started == 1 else time.time()


def compile_seconds_so_far() -> float:
    """Seconds torch.compile has spent in this process since the last `forget_compile_times`:
    each forward frame's whole compile plus each backward graph's (compiled lazily, at the first
    backward pass)."""
    from torch._dynamo.utils import get_compilation_metrics

    total = 0.0
    for m in get_compilation_metrics():
        total += getattr(m, "entire_frame_compile_time_s", None) or 0.0
        if getattr(m, "is_forward", True) is False:
            total += getattr(m, "inductor_compile_time_s", None) or 0.0
    return total


def forget_compile_times() -> None:
    from torch._dynamo.utils import clear_compilation_metrics

    clear_compilation_metrics()


class StartupClock:
    """The three start-up metrics of one trial (see the module's docstring), for `fit`."""

    def __init__(self, *, began: float, device: torch.device, compiled: bool):
        self.began, self.device, self.compiled = began, device, compiled
        self.first_step_at: float | None = None
        self.first_epoch: tuple[float, int] | None = None  # (training seconds, steps) of the process's first epoch
        self.extra: float | None = None
        if compiled:
            forget_compile_times()

    def first_step_done(self) -> None:
        """Called once, right after the first optimizer step (waits for the GPU to finish it)."""
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)
        self.first_step_at = time.time()

    def epoch_done(self, *, train_seconds: float, steps: int) -> None:
        if self.first_epoch is None:
            self.first_epoch = (train_seconds, steps)
        elif self.extra is None and steps > 0:
            seconds, first_steps = self.first_epoch
            self.extra = seconds - first_steps * train_seconds / steps

    def metrics(self) -> dict[str, float]:
        out = {}
        if self.first_step_at is not None:
            out["startup_seconds"] = self.first_step_at - self.began
        if self.extra is not None:
            out["first_epoch_extra_seconds"] = self.extra
        if self.compiled:
            out["compile_seconds"] = compile_seconds_so_far()
        return out
