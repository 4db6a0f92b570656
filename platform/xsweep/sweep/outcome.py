"""What a sweep ended with: counts per status and the best trial, and the summary it prints.

Free of heavy imports: the driver imports it before Ray starts; finish.py computes it, the driver
prints it.
"""

from __future__ import annotations

import os
import statistics
from dataclasses import dataclass, field

from xsweep.contract import COMPLETED, STOPPED
from xsweep.metrics import ACCURACY, best_value
from xsweep.sweep.best_model import BEST_ALIAS
from xsweep.sweep.front import front_lines
from xsweep.sweep.record import BestTrial
from xsweep.text import counted
from xsweep.tracking.store import store_flag
from xsweep.tracking.ui import runs_url
from xsweep.tracking.uri import redact


@dataclass
class SweepOutcome:
    sweep_path: str
    parent_run_id: str
    experiment: str
    counts: dict[str, int] = field(default_factory=dict)
    best: BestTrial | None = None
    interrupted: bool = False
    # A multi-objective sweep's objectives (Objective: metric, mode) and its Pareto front's rows.
    objectives: tuple = ()
    front: list[dict] | None = None
    version: int = 1  # of an extended sweep: the one this run of the driver ran
    totals: dict[str, int] = field(default_factory=dict)  # counts over every version
    phases: dict[str, dict] | None = None  # an ablation's counts per phase: {"tune": {...}, "confirm": {...}}
    verdicts: list[str] = field(default_factory=list)  # an ablation's verdicts, one line per comparison
    cost: dict | None = None  # {"device_seconds", "trials", "devices"}: sweep_cost
    already_finished: bool = False  # `xsweep resume` of a sweep that had finished: nothing ran
    tracking_uri: str = ""  # the sweep's store, for the commands the summary suggests
    experiment_id: str = ""  # for the link to its runs on a tracking server's UI
    startup: dict | None = None  # the trials' seconds to their first step: startup_spread
    notes: list[str] = field(default_factory=list)  # what the end of the sweep did that a user should know

    @property
    def exit_code(self) -> int:
        if self.already_finished:
            return 0
        if self.interrupted:
            return 130
        return 0 if self.counts.get(COMPLETED, 0) + self.counts.get(STOPPED, 0) else 1


def best_of_history(frame, *, metric: str, mode: str) -> float | None:
    """The best value a trial's metric reached at any epoch, from Tune's history of its results."""
    if frame is None or metric not in frame:
        return None
    return best_value(frame[metric].tolist(), mode=mode)


def sweep_cost(trials) -> dict | None:
    """The cost of a sweep from (device-seconds, device) per trial: {"device_seconds" (summed),
    "trials", "devices"}; trials that reported no cost are left out; None when none did."""
    spent = [(seconds, device or "?") for seconds, device in trials if seconds is not None]
    if not spent:
        return None
    return {"device_seconds": sum(s for s, _ in spent), "trials": len(spent),
            "devices": sorted({device for _, device in spent})}


def startup_spread(values) -> dict | None:
    """The trials' seconds from their start to their first training step (xsweep.metrics STARTUP):
    {"median", "min", "max", "trials"} of those that reported it; None when none did."""
    known = sorted(v for v in values if v is not None)
    if not known:
        return None
    return {"median": statistics.median(known), "min": known[0], "max": known[-1], "trials": len(known)}


def startup_line(startup: dict) -> str:
    """"start-up:   first step 2.1s after a trial's start (median of 12 trials; 0.4s to 21s)"."""
    low, high = seconds_text(startup["min"]), seconds_text(startup["max"])
    return (f"start-up:   first step {seconds_text(startup['median'])} after a trial's start (median of "
            f"{counted(startup['trials'], 'trial')}; {low} to {high})")


def seconds_text(value: float | None) -> str:
    """3.2s, 41s; '-' when unknown."""
    if value is None:
        return "-"
    return f"{value:.1f}s" if value < 10 else f"{value:.0f}s"


def cost_line(cost: dict) -> str:
    """"cost:       1.52 GPU-hours (5470 device-seconds) over 12 trials on cuda:NVIDIA H200"."""
    seconds = cost["device_seconds"]
    gpu = all(d.startswith("cuda") for d in cost["devices"])
    hours = f"{seconds / 3600:.3g} {'GPU' if gpu else 'device'}-hours ({seconds:.0f} device-seconds)"
    return f"cost:       {hours} over {counted(cost['trials'], 'trial')} on {', '.join(cost['devices'])}"


def registered_line(model: dict, *, experiment: str, metric: str) -> str:
    """Which version of the registered model the sweep's best is, and where the alias `best` is."""
    line = f"  registered model '{experiment}' version {model['version']}"
    kept = model.get("alias_kept_by")
    if kept is None:
        return f"{line} (alias {BEST_ALIAS})"
    return (f"{line}; alias {BEST_ALIAS} stays on version {kept['version']} ({metric} {kept['value']:.4f}, "
            f"sweep {kept['sweep']}), which this one did not beat")


def print_summary(outcome: SweepOutcome) -> None:
    for note in outcome.notes:
        print(note)
    counts = ", ".join(f"{n} {status}" for status, n in sorted(outcome.counts.items())) or "no trials"
    ended = 'interrupted' if outcome.interrupted else 'finished'
    if outcome.phases:
        tune, confirm = ([", ".join(f"{n} {s}" for s, n in sorted(c.items())) or "no trials"]
                         for c in (outcome.phases["tune"], outcome.phases["confirm"]))
        print(f"\nsweep {ended}: phase 1 (tune) {tune[0]}; phase 2 (confirm) {confirm[0]}")
    elif outcome.version > 1:
        totals = ", ".join(f"{n} {status}" for status, n in sorted(outcome.totals.items()))
        print(f"\nsweep version {outcome.version} {ended}: {counts}; all versions: {totals}")
    else:
        print(f"\nsweep {ended}: {counts}")
    if outcome.best:
        b = outcome.best
        which = " (of an earlier version)" if b.earlier else ""
        if b.variant:  # an ablation: the best confirmed variant, then which of its trials
            v = b.variant
            print(f"best variant: {v['label']}, mean final {ACCURACY} {100 * v['mean']:.2f} % over "
                  f"{counted(v['n'], 'seed')} (phase 2); its trial with the best {b.metric} is registered")
        print(f"best trial{which}: {b.name}  {b.metric} = {b.value:.4f}  (trial {b.trial_id}, run {b.run_id})")
        for path, value in sorted(b.searched.items()):
            print(f"  {path} = {value}")
        if b.model:
            print(registered_line(b.model, experiment=outcome.experiment, metric=b.metric))
    if outcome.front is not None:
        print("\n".join(front_lines(outcome.front, outcome.objectives)))
    for line in outcome.verdicts:
        print(line)
    if outcome.cost:
        print(cost_line(outcome.cost))
    if outcome.startup:
        print(startup_line(outcome.startup))
    # The commands open the sweep's store from here by themselves, or are told where it is.
    store = store_flag(outcome.tracking_uri, workdir=os.getcwd())
    print(f"results:    {outcome.sweep_path}")
    if outcome.tracking_uri.startswith(("http://", "https://")) and outcome.experiment_id:
        where = runs_url(redact(outcome.tracking_uri), outcome.experiment_id)
    else:
        where = f"xsweep ui{store}"
    print(f"MLflow:     experiment '{outcome.experiment}', parent run {outcome.parent_run_id}  ({where})")
    if outcome.best:
        print(f"reproduce:  xsweep reproduce --experiment {outcome.experiment}{store}"
              + (" [--pick N: the front's N-th trial]" if outcome.front else ""))
    if outcome.interrupted:
        print(f"resume:     xsweep resume {outcome.sweep_path}")
