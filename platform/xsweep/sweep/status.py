"""`xsweep status`: a table of a sweep's trials, read from Tune's records on storage."""

from __future__ import annotations

import math

from xsweep.cluster.storage import Storage, read_sweep_record
from xsweep.spec.trial import trial_name


def print_status(storage: Storage, sweep: str) -> None:
    from ray.tune import ExperimentAnalysis

    from xsweep.spec import load_spec_text

    record = read_sweep_record(storage, sweep)
    spec = load_spec_text(record["spec_text"], source=record["spec_source"], overrides=record["overrides"])
    analysis = ExperimentAnalysis(f"{storage.tune_path}/{sweep}", storage_filesystem=storage.filesystem)
    metric = spec.search.metric
    rows = []
    for trial in sorted(analysis.trials, key=lambda t: t.trial_id):
        last = trial.last_result or {}
        history = analysis.trial_dataframes.get(trial.trial_id)
        values = [] if history is None or metric not in history else [
            v for v in history[metric].tolist() if isinstance(v, float) and math.isfinite(v)
        ]
        best = (max(values) if spec.search.mode == "max" else min(values)) if values else None
        rows.append((
            trial.trial_id,
            trial_name(trial.config),
            trial.status.lower() + (" (diverged)" if last.get("diverged") else ""),
            f"{int(last.get('epoch', 0))}/{spec.train.epochs}",
            "-" if best is None else f"{best:.4f}",
        ))
    header = ("trial", "name", "status", "epochs", f"best {metric}")
    widths = [max(len(str(r[i])) for r in [header, *rows]) for i in range(len(header))]
    print(f"sweep {sweep} ({storage.root}/{sweep}): {len(rows)} of {spec.total_trials()} trials")
    for row in [header, *rows]:
        print("  ".join(str(cell).ljust(width) for cell, width in zip(row, widths)))
