"""The Pareto front of a multi-objective sweep, recorded where its users look: every trial run
tagged with whether it is on the front (and its place there), and the front as a table on the
parent run (pareto_front.csv). The front is over the completed trials, by each objective's final
value: what the searcher was told, and what the trained model ends with."""

from __future__ import annotations

import csv
import io

from xsweep.contract import COMPLETED, ended_status
from xsweep.metrics import METRICS
from xsweep.pareto import ARTIFACT, pareto_front
from xsweep.spec.trial import RUN_ID_KEY, sampled_params, trial_name
from xsweep.tracking.runs import set_tags
from xsweep.tracking.tags import TAG_PARETO, TAG_PARETO_RANK


def record_pareto_front(results, spec, *, client, parent_run_id: str) -> list[dict]:
    """Tag every trial run, log pareto_front.csv on the parent run, and return the front's rows
    (rank, trial, run_id, each objective's value, the searched values), best first on the first
    objective."""
    objectives = spec.search.objective_list
    completed = [r for r in results if ended_status(r.metrics, errored=r.error is not None) == COMPLETED]
    front = pareto_front(completed, values=lambda r: [r.metrics.get(o.metric) for o in objectives],
                         modes=[o.mode for o in objectives])
    rank = {id(r): number for number, r in enumerate(front, 1)}
    for result in results:
        run_id = result.config.get(RUN_ID_KEY)
        if run_id:
            on_front = id(result) in rank
            tags = {TAG_PARETO: str(on_front).lower()}
            if on_front:
                tags[TAG_PARETO_RANK] = rank[id(result)]
            set_tags(client, run_id, tags)
    rows = [{"rank": number, "trial": trial_name(r.config), "run_id": r.config.get(RUN_ID_KEY),
             **{o.metric: float(r.metrics[o.metric]) for o in objectives}, **sampled_params(r.config)}
            for number, r in enumerate(front, 1)]
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
