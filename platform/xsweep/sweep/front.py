"""The Pareto front of a multi-objective sweep, recorded where its users look: every trial run
tagged with whether it is on the front (and its place there), and the front as a table on the
parent run (pareto_front.csv). The front is over the completed trials, by each objective's final
value (MLflow's latest, step = epoch): what the searcher was told, and what the model ends with."""

from __future__ import annotations

import csv
import io
import json

from xsweep.contract import COMPLETED
from xsweep.metrics import METRICS
from xsweep.pareto import ARTIFACT, pareto_front
from xsweep.tracking.query import child_runs
from xsweep.tracking.writes import set_tags
from xsweep.tracking.tags import TAG_PARETO, TAG_PARETO_RANK, TAG_SEARCHED, TAG_STATUS, TAG_SWEEP_VERSION


def record_pareto_front(spec, *, client, parent_run_id: str) -> list[dict]:
    """Tag every trial run of the sweep (all its versions), log pareto_front.csv on the parent run,
    and return the front's rows (rank, trial, run_id, version, each objective's value, the
    searched values), best first on the first objective. Read from MLflow, which holds every
    version's trials (called once their last writes are delivered)."""
    objectives = spec.search.objective_list
    trials = child_runs(client, client.get_run(parent_run_id))
    completed = [run for run in trials if run.data.tags.get(TAG_STATUS) == COMPLETED]
    front = pareto_front(completed, values=lambda run: [run.data.metrics.get(o.metric) for o in objectives],
                         modes=[o.mode for o in objectives])
    rank = {run.info.run_id: number for number, run in enumerate(front, 1)}
    for run in trials:
        tags = {TAG_PARETO: str(run.info.run_id in rank).lower()}
        if run.info.run_id in rank:
            tags[TAG_PARETO_RANK] = rank[run.info.run_id]
        set_tags(client, run.info.run_id, tags)
    rows = [{"rank": number, "trial": run.info.run_name, "run_id": run.info.run_id,
             "version": int(run.data.tags.get(TAG_SWEEP_VERSION, "1")),
             **{o.metric: run.data.metrics[o.metric] for o in objectives},
             **json.loads(run.data.tags.get(TAG_SEARCHED) or "{}")}
            for number, run in enumerate(front, 1)]
    client.log_text(parent_run_id, to_csv(rows), ARTIFACT)
    return rows


def to_csv(rows: list[dict]) -> str:
    if not rows:
        return "rank\n"
    out = io.StringIO()
    writer = csv.DictWriter(out, fieldnames=list(rows[0]), lineterminator="\n")
    writer.writeheader()
    writer.writerows(rows)
    return out.getvalue()


def front_lines(rows: list[dict], objectives) -> list[str]:
    """The front as the summary prints it: one line per trial, each objective in its unit."""
    names = ", ".join(f"{o.metric} {o.mode}" for o in objectives)
    lines = [f"Pareto front ({names}): {len(rows)} trial(s), table {ARTIFACT} on the parent run"]
    for row in rows:
        values = "  ".join(f"{o.metric} {METRICS.get(o.metric).show(row[o.metric])}" for o in objectives)
        lines.append(f"  {row['rank']}. {row['trial']}  {values}")
    return lines
