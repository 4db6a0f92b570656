"""How long a trial takes to start training, measured in the trial's process and reported as metrics.

- `startup_seconds`: from the trial function's start in its process to the end of its first
  optimizer step: torch's import and CUDA's start (in a process's first trial; Tune reuses a trial's
  process on one machine), the data's load, the model, compilation and the first step. Not counted:
  the start of the process itself, which Ray may have made earlier and kept idle in its pool, so that
  its age would count the time it waited.
- `first_epoch_extra_seconds`: what the trial's first epoch in this process took beyond the same
  number of steps at the second epoch's pace: compilation, the loader processes' start, CUDA's lazy
  initialisation. Known from the second epoch on.
- `compile_seconds`: the seconds torch.compile spent compiling for this trial (tracing and code
  generation, forward and backward), as torch counts them; only for a compiled trial. Near zero
  when the compiled code was already in the process or in the compile cache (compile_cache.py).

Needs only torch and the standard library (the GPU check runs `fit` without Ray).
"""

from __future__ import annotations

import time

import torch

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
        self.first_epoch: tuple[float, int] | None = None  # (training seconds, steps) of its first epoch here
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
