"""Reading sweeps back from MLflow: the queries report, reproduce, status and the summary share.

The layout they read (written by runs.py): an experiment per spec name; each sweep a parent run
tagged xsweep.kind=sweep, its params the flattened resolved spec; each trial a child run tagged
xsweep.kind=trial, with its status, searched values and full config as tags, and its per-epoch
metrics (step = epoch).
"""

from __future__ import annotations

from mlflow.entities import Run
from mlflow.tracking import MlflowClient

from xsweep.errors import UserError
from xsweep.metrics import best_scored, best_value
from xsweep.tracking.tags import TAG_KIND
from xsweep.tracking.uri import redact

PAGE = 1000  # runs per search request (MLflow's maximum for search_runs)


def find_experiment(client: MlflowClient, name: str, *, uri: str, flag: str, error: type[UserError]):
    """The active experiment of that name, or one line naming the flag and the experiments there are."""
    experiment = client.get_experiment_by_name(name)
    if experiment is None or experiment.lifecycle_stage != "active":
        known = sorted(e.name for e in client.search_experiments(max_results=20))
        raise error(f"{flag}: no experiment '{name}' in {redact(uri)} "
                    f"(known: {', '.join(known) or 'none'}; pass the sweep's experiment name)")
    return experiment


def search_all(client: MlflowClient, experiment_ids: list[str], filter_string: str,
               order_by: list[str] | None = None) -> list[Run]:
    """Every run matching the filter, page by page (one search returns at most PAGE)."""
    runs, token = [], None
    while True:
        page = client.search_runs(experiment_ids, filter_string=filter_string, order_by=order_by,
                                  max_results=PAGE, page_token=token)
        runs.extend(page)
        token = page.token
        if not token:
            return runs


def latest_sweep(client: MlflowClient, experiment_id: str) -> Run | None:
    """The experiment's most recently started sweep run, if it has one."""
    found = client.search_runs([experiment_id], filter_string=f"tags.`{TAG_KIND}` = 'sweep'",
                               order_by=["attributes.start_time DESC"], max_results=1)
    return found[0] if found else None


def child_runs(client: MlflowClient, sweep: Run, *, kind: str | None = "trial") -> list[Run]:
    """The sweep's child runs of that kind (every child if None), oldest first."""
    query = f"tags.`mlflow.parentRunId` = '{sweep.info.run_id}'"
    if kind is not None:
        query += f" and tags.`{TAG_KIND}` = '{kind}'"
    return search_all(client, [sweep.info.experiment_id], query, order_by=["attributes.start_time ASC"])


def best_at_any_epoch(client: MlflowClient, runs: list[Run], *, metric: str, mode: str) -> Run | None:
    """The run with the best value of `metric` at any epoch (the epoch its best checkpoint holds),
    as the sweep's own summary ranks trials."""
    def history_best(run: Run) -> float | None:
        return best_value([m.value for m in client.get_metric_history(run.info.run_id, metric)], mode=mode)

    return best_scored(runs, score=history_best, mode=mode)[0]
