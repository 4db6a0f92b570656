"""The `ablation:` section: what it resolves to (variants, trial counts, the paper's reference) and
each bad input as one line naming the field and the fix."""

from __future__ import annotations

import pytest

from conftest import run_xsweep
from xsweep.spec import SpecError, load_spec_text, parse_spec

SPACE = """search:
  space:
    train.lr: {loguniform: [0.01, 0.2]}
    model.residual: {choice: [true, false]}
    model.activation: {choice: [none, relu, elu]}
"""
ABLATION = """ablation:
  factors: [model.residual, model.activation]
  tune: [train.lr]
"""


def load(text: str = "", *, space: str = SPACE, ablation: str = ABLATION):
    return load_spec_text(f"name: t\n{space}{ablation}{text}", source="s.yaml")


def refusal(text: str = "", **parts) -> list[str]:
    with pytest.raises(SpecError) as refused:
        load(text, **parts)
    return str(refused.value).splitlines()


def test_an_ablation_resolves_to_its_variants_budget_and_the_papers_reference():
    spec = load()
    assert spec.variant_count() == 6
    assert spec.ablation.budget == 4 and spec.ablation.confirm_seeds == 3  # the defaults
    assert spec.search.num_samples == 24  # phase 1: 6 variants x 4
    assert spec.total_trials() == 24 + 18  # phase 2: 6 variants x 3 seeds
    # The paper's Xception: residual connections, nothing between depthwise and pointwise.
    assert spec.ablation.reference == {"model.residual": True, "model.activation": "none"}
    resolved = spec.resolved()
    assert parse_spec(resolved, source="r").resolved() == resolved


def test_a_spec_without_ablation_hashes_as_before():
    plain = load_spec_text(f"name: t\n{SPACE}", source="s.yaml")
    assert "ablation" not in plain.resolved()
    assert plain.variant_count() == 1


def test_a_written_reference_and_a_factor_the_paper_does_not_know():
    spec = load(space=SPACE + "    model.width: {choice: [0.5, 0.25]}\n",
                ablation="ablation: {factors: [model.residual, model.width], tune: [train.lr, model.activation], "
                         "reference: {model.residual: false}}\n")
    assert spec.ablation.reference == {"model.residual": False, "model.width": 0.5}  # its first level


@pytest.mark.parametrize(("parts", "expected"), [
    (dict(space=SPACE + "    model.width: {uniform: [0.25, 0.5]}\n",
          ablation="ablation: {factors: [model.residual, model.activation, model.width], tune: [train.lr]}\n"),
     "s.yaml: ablation.factors: model.width is a uniform entry of search.space; a factor's levels are a choice: [...]"),
    (dict(ablation="ablation: {factors: [model.residual, model.activation], tune: [train.lr, model.residual]}\n"),
     "s.yaml: ablation.tune: model.residual is also a factor (a field is either compared or tuned)"),
    (dict(ablation=ABLATION + "  reference: {model.activation: tanh}\n"),
     "s.yaml: ablation.reference: model.activation: 'tanh' is not one of its levels ('none', 'relu', 'elu')"),
    (dict(ablation=ABLATION + "  reference: {train.lr: 0.1}\n"),
     "s.yaml: ablation.reference: train.lr is not a factor (one of model.residual, model.activation)"),
    (dict(ablation="ablation: {factors: [model.width, model.residual, model.activation], tune: [train.lr]}\n"),
     "s.yaml: ablation.factors: model.width is not in search.space (add it there as {choice: [...]})"),
    (dict(ablation="ablation: {factors: [model.residual], tune: [train.lr]}\n"),
     "s.yaml: search.space.model.activation: neither an ablation factor nor tuned (add it to ablation.factors "
     "or ablation.tune, or fix its value outside search.space)"),
    (dict(ablation="ablation: {factors: [model.residual, model.activation]}\n"),
     "s.yaml: ablation.tune: required (the search.space entries tuned within each variant, e.g. [train.lr])"),
    (dict(ablation=ABLATION + "  budget: 1\n", text="scheduler: {kind: asha, grace_period: 1}\n"),
     "s.yaml: ablation.budget: 1 trial(s) per variant leave asha nothing to compare within a variant "
     "(at least scheduler.reduction_factor = 2, or scheduler.kind: fifo)"),
    (dict(ablation=ABLATION + "  confirm_seeds: 1\n"), "s.yaml: ablation.confirm_seeds: must be >= 2 (got 1)"),
    (dict(space=SPACE + "  num_samples: 10\n"),
     "s.yaml: search.num_samples: an ablation's phase 1 runs ablation.budget x 6 variants = 24 trials "
     "(remove it, or set 24)"),
    (dict(space=SPACE + "  repeats: 2\n"),
     "s.yaml: search.repeats: an ablation repeats seeds in its confirmation phase (remove it; "
     "set ablation.confirm_seeds)"),
    (dict(ablation=ABLATION + "  confirm_seeds: {min: 5, max: 3}\n"),
     "s.yaml: ablation.confirm_seeds: min 5 is more than max 3 (min <= max)"),
    (dict(ablation=ABLATION + "  confirm_seeds: {min: 1, max: 5}\n"),
     "s.yaml: ablation.confirm_seeds: min must be >= 2 (got 1): one seed gives no interval"),
    (dict(ablation=ABLATION + "  confirm_seeds: {min: 3, max: 50}\n"),
     "s.yaml: ablation.confirm_seeds: max 50 is above 20, the most a sequential design plans for (lower it)"),
    (dict(ablation=ABLATION + "  confirm_seeds: {min: 3}\n"),
     "s.yaml: ablation.confirm_seeds: a sequential confirmation needs both min and max, e.g. {min: 3, max: 10} "
     "(got {min: 3})"),
    (dict(ablation=ABLATION + "  seeds: 3\n"),
     "s.yaml: ablation.seeds: unknown field (an ablation has factors, tune, budget, confirm_seeds, split_seed, "
     "reference)"),
    (dict(ablation=ABLATION + "  split_seed: yes please\n"), "s.yaml: ablation.split_seed: expected true or false "
                                                             "(got 'yes please')"),
])
def test_each_bad_ablation_is_one_line_naming_the_field(parts, expected):
    assert refusal(**parts) == [expected]


def test_split_seed_is_refused_where_the_data_has_a_fixed_validation_set(tmp_path):
    (tmp_path / "images").mkdir()
    path = tmp_path / "a.yaml"
    path.write_text(f"name: a\ndata: {{dataset: imagefolder, root: {tmp_path / 'images'}}}\n{SPACE}{ABLATION}"
                    "  split_seed: true\n")
    proc = run_xsweep("validate", str(path), cwd=tmp_path)
    assert (proc.returncode, proc.stdout) == (2, "")
    assert proc.stderr.splitlines() == [f"{path}: ablation.split_seed: imagefolder has a fixed validation set "
                                        "(data.root/val), which no seed redraws (remove split_seed)"]
    proc = run_xsweep("validate", str(path), "--set", "data.dataset=digits", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr  # digits' split is drawn by a seed: each seed may redraw it


def test_validate_says_where_an_ablations_trials_go(tmp_path):
    path = tmp_path / "a.yaml"
    path.write_text(f"name: a\n{SPACE}{ABLATION}")
    proc = run_xsweep("validate", str(path), cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == f"{path}: ok (42 trials: 6 variants x (4 tuning + 3 confirming), experiment 'a')"
    proc = run_xsweep("validate", str(path), "--set", "ablation.confirm_seeds={min: 3, max: 10}", cwd=tmp_path)
    assert proc.stdout.strip() == (f"{path}: ok (up to 84 trials: 6 variants x (4 tuning + 3 to 10 confirming, "
                                   "sequential), experiment 'a')")
    proc = run_xsweep("validate", str(path), "--set", "ablation.factors=[train.lr]", cwd=tmp_path)
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
    assert proc.stderr.splitlines()[0].startswith("--set ablation.factors: train.lr is a loguniform entry")


def test_null_takes_a_written_field_out_so_a_plain_spec_becomes_an_ablation():
    text = f"name: t\n{SPACE}  num_samples: 4\n"
    with pytest.raises(SpecError):
        load_spec_text(text, source="s.yaml", overrides=["ablation={factors: [model.residual, model.activation], tune: [train.lr]}"])
    ablation = "{factors: [model.residual, model.activation], tune: [train.lr]}"
    spec = load_spec_text(text, source="s.yaml", overrides=["search.num_samples=null", f"ablation={ablation}"])
    assert spec.search.num_samples == 24
