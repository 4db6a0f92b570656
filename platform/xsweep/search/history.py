"""Trials a sweep did not run itself, given to its searcher as evidence: the earlier versions of an
extended sweep (`xsweep extend`), or another experiment's finished trials (`search.warm_start`).

A past trial counts as evidence only if the new sweep could have run it: every field outside the
new space is what the new spec fixes it to (a new searched field must take, in the old trial, a
value within its new range; a removed one must equal its new fixed value), and its searched values
lie within the new space. The others stay in MLflow as history, and the caller says how many.
Each configuration becomes one Optuna trial (the mean over its seeds when repeated), so that the
sampler learns from it and the searcher never trains it again.
"""

from __future__ import annotations

import json
import math
from collections import defaultdict
from dataclasses import dataclass, field

from xsweep.contract import COMPLETED, DIVERGED, FAILED, STOPPED
from xsweep.spec.trial import set_dotted
from xsweep.tracking.tags import TAG_CONFIG, TAG_STATUS

# How a trial ran, not what it computed: they may differ between a past trial and the new sweep.
# Its seeds too: another seed's weights, data order and validation split are a repeat's noise.
NOT_COMPARED = ("train.threads", "train.device", "train.compile", "train.seed", "data.split_seed")


@dataclass
class Evidence:
    carried: dict[str, dict] = field(default_factory=dict)  # configuration key -> {params, state, values}
    outside: int = 0  # past trials the new space or spec does not hold
    unfinished: int = 0  # past trials that had not ended (they may be trained again)


def _dotted(config: dict, path: str):
    node = config
    for part in path.split("."):
        if not isinstance(node, dict) or part not in node:
            return _MISSING
        node = node[part]
    return node


_MISSING = object()


def _comparable(config: dict, *, searched: list[str]) -> str:
    """The config without the searched fields and the fields of NOT_COMPARED, as canonical JSON."""
    trimmed = json.loads(json.dumps(config))
    for path in (*searched, *NOT_COMPARED):
        if _dotted(trimmed, path) is not _MISSING:
            set_dotted(trimmed, path, None)
    return json.dumps(trimmed, sort_keys=True)


def gather(runs, *, space: dict, base_config: dict, objectives: list[str], key) -> Evidence:
    """The evidence past trial runs give a search over `space` (Optuna distributions by dotted
    path) whose trials start from `base_config`; `key(params)` names a configuration as the
    searcher does."""
    evidence = Evidence()
    expected = _comparable(base_config, searched=list(space))
    by_key: dict[str, list] = defaultdict(list)
    for run in runs:
        status = run.data.tags.get(TAG_STATUS)
        if status not in (COMPLETED, STOPPED, DIVERGED, FAILED):
            evidence.unfinished += 1
            continue
        try:
            config = json.loads(run.data.tags.get(TAG_CONFIG) or "")
        except json.JSONDecodeError:
            evidence.outside += 1
            continue
        params = {path: _dotted(config, path) for path in space}
        if (_comparable(config, searched=list(space)) != expected
                or any(v is _MISSING or not _contains(space[p], v) for p, v in params.items())):
            evidence.outside += 1
            continue
        values = [run.data.metrics.get(m) for m in objectives]
        by_key[key(params)].append((params, status, values))
    for k, members in by_key.items():
        finished = [v for _, s, v in members if s == COMPLETED and all(_finite(x) for x in v)]
        if finished:
            means = [sum(v[i] for v in finished) / len(finished) for i in range(len(objectives))]
            state = "complete"
        else:
            means, state = None, "pruned" if any(s == STOPPED for _, s, _ in members) else "fail"
        evidence.carried[k] = {"params": members[0][0], "state": state, "values": means}
    return evidence


def _finite(value) -> bool:
    return isinstance(value, (int, float)) and math.isfinite(value)


def _contains(distribution, value) -> bool:
    import optuna

    if isinstance(distribution, optuna.distributions.CategoricalDistribution):
        return value in distribution.choices
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return False
    return distribution.low <= value <= distribution.high


def add_to_study(study, evidence: Evidence, *, space: dict) -> None:
    """Each carried configuration as a finished Optuna trial of `study`."""
    import optuna

    states = {"complete": optuna.trial.TrialState.COMPLETE, "pruned": optuna.trial.TrialState.PRUNED,
              "fail": optuna.trial.TrialState.FAIL}
    multi = len(study.directions) > 1
    for entry in evidence.carried.values():
        values = entry["values"]
        study.add_trial(optuna.trial.create_trial(
            params=entry["params"], distributions=space, state=states[entry["state"]],
            values=values if multi or values is None else None,
            value=values[0] if values is not None and not multi else None,
            user_attrs={"xsweep_history": True}))


def warm_start(spec, *, uri: str, space: dict, key):
    """(trial runs, Evidence) of the experiment `search.warm_start` names, for a search over `space`
    whose configurations `key` names (as for gather), checked before anything is written: an
    experiment that is not there, or none of whose trials this sweep could have run, is one line
    (SpecError, exit 2)."""
    from xsweep.errors import SpecError
    from xsweep.tracking.query import search_all
    from xsweep.tracking.store import open_store, sqlite_file
    from xsweep.tracking.tags import TAG_KIND
    from xsweep.tracking.uri import redact

    name = spec.search.warm_start.experiment
    where = f"{spec.source}: search.warm_start.experiment"
    database = sqlite_file(uri)
    if database is not None and not database.exists():  # nothing to seed from, and nothing to create
        raise SpecError([f"{where}: no experiment '{name}' in {redact(uri)}: it has no database yet "
                         "(name one whose sweeps ran there)"])
    client = open_store(uri, flag="tracking.uri")
    experiment = client.get_experiment_by_name(name)
    if experiment is None or experiment.lifecycle_stage != "active":
        raise SpecError([f"{where}: no experiment '{name}' in {redact(uri)} (name one whose sweeps ran there)"])
    runs = search_all(client, [experiment.experiment_id], f"tags.`{TAG_KIND}` = 'trial'")
    evidence = gather(runs, space=space, base_config=spec.base_trial_config(),
                      objectives=[o.metric for o in spec.search.objective_list], key=key)
    if not evidence.carried:
        raise SpecError([f"{where}: '{name}' has no ended trial this sweep could have run ({len(runs)} trial(s), "
                         f"{evidence.outside} with other settings or outside search.space; warm-start from a sweep "
                         "of the same spec, its space widened or narrowed at most)"])
    return runs, evidence
