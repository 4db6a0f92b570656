"""Several objectives in a spec (`search.objectives`), the scheduler's one metric, Hyperband's
brackets and NSGA-II's generation: what they resolve to, and each bad input as one line."""

from __future__ import annotations

import pytest

from conftest import run_xsweep
from xsweep.spec import SpecError, load_spec_text, parse_spec

TWO = "objectives: [{metric: val_accuracy, mode: max}, {metric: params, mode: min}]"


def load(text: str):
    return load_spec_text("name: t\n" + text, source="s.yaml")


def refusal(text: str) -> str:
    with pytest.raises(SpecError) as refused:
        load(text)
    return str(refused.value)


def test_two_objectives_resolve_with_the_first_as_the_metric_and_read_back_the_same():
    spec = load(f"search: {{algorithm: nsga2, num_samples: 20, {TWO}}}\nscheduler: {{kind: asha}}\ntrain: {{epochs: 6}}")
    assert spec.search.multi_objective
    assert [(o.metric, o.mode) for o in spec.search.objective_list] == [("val_accuracy", "max"), ("params", "min")]
    assert (spec.search.metric, spec.search.mode) == ("val_accuracy", "max")  # what "best" means
    resolved = spec.resolved()
    assert "metric" not in resolved["search"] and "mode" not in resolved["search"]  # one way to write it
    assert resolved["search"]["population_size"] == 5  # a quarter of 20 trials
    assert resolved["scheduler"]["metric"] == "val_accuracy"  # ASHA judges by the first objective
    assert parse_spec(resolved, source="r").resolved() == resolved


def test_a_left_out_mode_is_the_metrics_own_direction_and_one_objective_is_the_plain_form():
    spec = load("search: {objectives: [{metric: params}]}")
    assert not spec.search.multi_objective
    assert (spec.search.metric, spec.search.mode) == ("params", "min")
    assert spec.resolved()["search"]["metric"] == "params" and "objectives" not in spec.resolved()["search"]
    assert spec.sha256() == load("search: {metric: params, mode: min}").sha256()


def test_the_scheduler_may_judge_by_another_objective():
    spec = load(f"search: {{{TWO}}}\nscheduler: {{kind: asha, metric: params}}")
    assert (spec.scheduler.metric, spec.scheduler.mode_of(spec.search)) == ("params", "min")


@pytest.mark.parametrize("epochs, grace, factor, brackets", [(3, 1, 2, 2), (4, 1, 2, 3), (9, 1, 3, 3), (10, 3, 2, 2)])
def test_hyperband_fills_in_every_bracket_that_fits(epochs, grace, factor, brackets):
    spec = load(f"train: {{epochs: {epochs}}}\nscheduler: {{kind: hyperband, grace_period: {grace}, "
                f"reduction_factor: {factor}}}")
    assert spec.scheduler.brackets == brackets


@pytest.mark.parametrize("text, message", [
    ("search: {objectives: [{metric: accuracy}]}",
     "search.objectives: objective 1: metric 'accuracy' is not allowed (one of val_accuracy, val_loss, val_top5_accuracy, "
     "train_accuracy, train_loss, step_seconds, params, gflops)"),
    ("search: {objectives: [{metric: val_accuracy}, {metric: params, mode: smallest}]}",
     "search.objectives: objective 2: mode 'smallest' is not allowed (one of max, min)"),
    ("search: {objectives: [{metric: params}, {metric: gflops}, {metric: params, mode: min}]}",
     "search.objectives: objective 3: params is already objective 1 (name each metric once)"),
    ("search: {objectives: [{metric: val_accuracy}, {metric: params, mode: max}]}",
     "search.objectives: objective 2: mode max with metric params would search for the worst model (use mode: min)"),
    ("search: {metric: val_loss, mode: min, objectives: [{metric: params}, {metric: val_accuracy}]}",
     "search.objectives: written beside search.metric and search.mode (a search has either one metric and mode, "
     "or a list of objectives: remove one)"),
    ("search: {objectives: {metric: params}}",
     "search.objectives: expected a list of objectives such as [{metric: val_accuracy, mode: max}, "
     "{metric: params, mode: min}] (got {metric: 'params'})"),
    ("search: {objectives: [{metric: params, weight: 2}]}",
     "search.objectives: objective 1: unknown field weight (an objective has metric and mode)"),
    (f"search: {{algorithm: optuna-cmaes, {TWO}, space: {{train.lr: {{loguniform: [0.01, 0.1]}}}}}}",
     "search.algorithm: optuna-cmaes searches one objective, and search.objectives has 2 "
     "(use one of optuna-tpe, random, grid, optuna-gp, qmc, nsga2)"),
    (f"search: {{{TWO}}}\nscheduler: {{kind: asha, metric: val_loss}}",
     "scheduler.metric: val_loss is not an objective of the search (one of val_accuracy, params)"),
    ("scheduler: {kind: asha, brackets: 2}",
     "scheduler.brackets: scheduler.kind asha does not use it (remove it, or use hyperband)"),
    ("search: {population_size: 10}",
     "search.population_size: search.algorithm optuna-tpe does not use it (remove it, or use nsga2)"),
])
def test_bad_objectives_and_scheduler_settings_are_one_line_each(text, message):
    assert refusal(text) == f"s.yaml: {message}"


def test_validate_refuses_a_bad_objective_with_exit_2_and_one_line(tmp_path):
    spec = tmp_path / "bad.yaml"
    spec.write_text("name: bad\nsearch:\n  objectives:\n    - {metric: val_accuracy}\n    - {metric: val_accuracy}\n")
    proc = run_xsweep("validate", str(spec), cwd=tmp_path)
    assert proc.returncode == 2
    assert proc.stderr.strip().splitlines() == [
        f"{spec}: search.objectives: objective 2: val_accuracy is already objective 1 (name each metric once)"]


def test_top5_accuracy_is_a_metric_to_search_on_where_the_data_has_five_classes():
    assert load("search: {metric: val_top5_accuracy}").search.metric == "val_top5_accuracy"
    assert refusal("search: {metric: val_top5_accuracy}\ndata: {dataset: synthetic, synthetic_classes: 3}") == (
        "s.yaml: search.metric: val_top5_accuracy needs data with at least 5 classes, and synthetic has 3 "
        "(use val_accuracy)")
