"""The spec's parts on their own: field rules read from the schema, a search-space entry's check,
--set overrides, and a trial's config and name. (tests/test_spec.py checks whole documents.)"""

from __future__ import annotations

import pytest

from xsweep.registry import Registry
from xsweep.spec.fields import OneOf, did_you_mean, section_rules
from xsweep.spec.overrides import apply_overrides, parse_overrides
from xsweep.spec.schema import SchedulerSpec, TrainSpec
from xsweep.spec.space import check_entry
from xsweep.spec.trial import REPEAT_KEY, RUN_ID_KEY, format_value, resolve_trial_config, sampled_params, trial_name


# ---- fields ------------------------------------------------------------------------------------
def test_rules_come_from_the_schemas_bounds_and_defaults():
    lr = section_rules(TrainSpec, "train")["lr"]
    assert (lr.path, lr.kind, lr.default, lr.gt) == ("train.lr", "float", 0.045, 0)
    assert lr.check("1e-3") == (0.001, None)  # PyYAML reads 1e-3 as text
    assert lr.check(-0.1) == (None, "must be > 0 (got -0.1)")
    assert lr.check(True) == (None, "expected a number (got true)")


def test_an_enum_field_backed_by_a_registry_allows_what_is_registered_now():
    registry = Registry("thing")
    rule = section_rules(SchedulerSpec, "scheduler")["kind"]
    assert rule.kind == "enum" and "asha" in rule.allowed()
    probe = OneOf(registry.names)
    assert probe.names() == ()
    registry.add(type("Entry", (), {"name": "late"})())
    assert probe.names() == ("late",)  # read when checked, not when the schema was built


def test_did_you_mean_takes_typos_case_and_unique_prefixes():
    assert did_you_mean("lrr", ["lr", "epochs"]) == "lr"
    assert did_you_mean("LR", ["lr"]) == "lr"
    assert did_you_mean("gpus", ["gpus_per_trial", "cpus_per_trial"]) == "gpus_per_trial"
    assert did_you_mean("xyz", ["lr"]) is None


# ---- a search-space entry ----------------------------------------------------------------------
def test_a_range_entry_is_checked_against_the_field_it_searches():
    entry, problems = check_entry("train.lr", {"loguniform": [0.01, 0.2]})
    assert problems == [] and (entry.kind, entry.low, entry.high) == ("loguniform", 0.01, 0.2)
    _, problems = check_entry("train.lr", {"loguniform": [-1, 0.2]})
    assert problems == [("search.space.train.lr", "loguniform needs 0 < low < high (got [-1, 0.2])")]
    _, problems = check_entry("train.momentum", {"uniform": [0.5, 1.5]})
    assert problems == [("search.space.train.momentum", "high: must be >= 0 and < 1 (got 1.5)")]
    _, problems = check_entry("train.epochs", {"uniform": [1, 5]})
    assert "takes whole numbers" in problems[0][1]


def test_a_choice_entry_checks_each_value_and_repeats():
    entry, problems = check_entry("model.activation", {"choice": ["none", "elu"]})
    assert problems == [] and entry.values == ["none", "elu"]
    _, problems = check_entry("model.activation", {"choice": ["relu", "relu"]})
    assert problems == [("search.space.model.activation", "choice lists 'relu' more than once (list each value once)")]
    _, problems = check_entry("train.lrr", {"choice": [0.1]})
    assert problems == [("search.space.train.lrr", "unknown field (did you mean train.lr?)")]


# ---- --set overrides ---------------------------------------------------------------------------
def test_overrides_are_yaml_values_at_dotted_paths():
    parsed, problems = parse_overrides(["train.lr=0.1", "model.residual=false",
                                        "search.space.train.lr.choice=[0.1, 0.2]"])
    assert problems == []
    raw, paths, problems = apply_overrides({"name": "x", "search": {"space": {"model.width": {"choice": [1]}}}}, parsed)
    assert problems == [] and paths == ["train.lr", "model.residual", "search.space.train.lr"]
    assert raw["train"] == {"lr": 0.1} and raw["model"] == {"residual": False}
    assert raw["search"]["space"] == {"model.width": {"choice": [1]}, "train.lr": {"choice": [0.1, 0.2]}}


def test_a_null_override_removes_a_space_entry_and_bad_overrides_are_one_line_each():
    parsed, _ = parse_overrides(["search.space.model.width=null"])
    raw, _, _ = apply_overrides({"search": {"space": {"model.width": {"choice": [1]}}}}, parsed)
    assert raw["search"]["space"] == {}
    _, problems = parse_overrides(["train.lr", "train..lr=1", "train.lr=[1"])
    assert problems[0] == "--set train.lr: missing '=' (write path=value, e.g. train.lr=0.1)"
    assert problems[1].startswith("--set train..lr=1: the field path has an empty part")
    assert problems[2].startswith("--set train.lr: '[1' is not a valid YAML value")


# ---- a trial's config and name -----------------------------------------------------------------
BASE = {"data": {"dataset": "digits"}, "model": {"residual": True, "activation": "none"},
        "train": {"lr": 0.045, "seed": 7}}


def test_a_trial_config_is_the_base_with_its_searched_values_and_its_seed():
    tune_config = {"train.lr": 0.1, "model.residual": False, REPEAT_KEY: 2, RUN_ID_KEY: "abc"}
    config = resolve_trial_config(BASE, tune_config)
    assert config["train"] == {"lr": 0.1, "seed": 9} and config["model"]["residual"] is False
    assert BASE["train"] == {"lr": 0.045, "seed": 7}  # the base is not changed
    assert sampled_params(tune_config) == {"train.lr": 0.1, "model.residual": False}


def test_a_trial_is_named_by_what_varies():
    assert trial_name({"model.activation": "elu", "train.lr": 0.0470512, "model.residual": True,
                       REPEAT_KEY: 1}) == "lr=0.0471 res=on act=elu s1"
    assert trial_name({}) == "s0"
    assert [format_value(v) for v in (False, 1e-5, 3, "relu")] == ["off", "1e-05", "3", "relu"]


def test_a_path_outside_the_config_is_a_bug_not_a_new_section():
    with pytest.raises(KeyError, match="optim is not a section"):
        resolve_trial_config(BASE, {"optim.lr": 0.1})
