"""What a seed repeat (an ablation's confirmation seed) varies in a trial, as `fit` sets it up from
the config the sweep resolves: its initial weights, its data order and its augmentation, always;
its validation split only under ablation.split_seed (digits here, which has no fixed one).

Tiny model (width 0.125, one middle block) and 1 thread, as in test_fit.py.
"""

import torch

from xsweep.spec import load_spec_text
from xsweep.spec.trial import PHASE_KEY, REPEAT_KEY, resolve_trial_config
from xsweep.training.fit import set_up_trial
from xsweep.training.models import build_model

torch.set_num_threads(1)

SPEC = """
name: seeds
data: {dataset: digits}
model: {width: 0.125, middle_blocks: 1}
train: {seed: 7, batch_size: 32, device: cpu, threads: 1, compile: false}
search:
  space:
    model.residual: {choice: [true, false]}
    train.lr: {loguniform: [0.01, 0.1]}
ablation: {factors: [model.residual], tune: [train.lr], budget: 1, confirm_seeds: 2%s}
"""


def confirmation_trial(repeat: int, *, split_seed: bool) -> dict:
    """What a phase-2 trial of seed `repeat` trains: the config `fit` gets."""
    spec = load_spec_text(SPEC % (", split_seed: true" if split_seed else ""), source="seeds.yaml")
    return resolve_trial_config(spec.base_trial_config(), {"model.residual": True, "train.lr": 0.05,
                                                           PHASE_KEY: "confirm", REPEAT_KEY: repeat})


def what_the_trial_draws(config: dict) -> dict:
    """The trial's first weights, first batch, one image augmented eight times, and its validation set."""
    setup = set_up_trial(config)  # seeds every generator from train.seed, as fit does
    model = build_model(config, num_classes=setup.datasets.num_classes, in_channels=setup.datasets.in_channels)
    weights = torch.cat([p.detach().flatten() for p in model.parameters()])
    _, labels = next(iter(setup.train_loader))
    augmented, _ = setup.datasets.train.__getitems__([0] * 8)
    return {"weights": weights, "data order": labels, "augmentation": augmented,
            "validation split": setup.datasets.val.images}


def differs(a: dict, b: dict) -> set[str]:
    return {key for key in a if not torch.equal(a[key], b[key])}


def test_a_confirmation_seed_draws_weights_order_and_augmentation_and_keeps_the_split():
    one, two = confirmation_trial(1, split_seed=False), confirmation_trial(2, split_seed=False)
    assert (one["train"]["seed"], two["train"]["seed"]) == (8, 9)
    assert one["data"]["split_seed"] == two["data"]["split_seed"] == 7  # train.seed's split, recorded per trial
    first, again, second = what_the_trial_draws(one), what_the_trial_draws(one), what_the_trial_draws(two)
    assert differs(first, again) == set()  # a seed draws the same trial every time
    assert differs(first, second) == {"weights", "data order", "augmentation"}


def test_split_seed_also_redraws_the_validation_split_per_seed():
    one, two = confirmation_trial(1, split_seed=True), confirmation_trial(2, split_seed=True)
    assert (one["data"]["split_seed"], two["data"]["split_seed"]) == (8, 9)
    assert differs(what_the_trial_draws(one), what_the_trial_draws(two)) == {
        "weights", "data order", "augmentation", "validation split"}
    # Phase 1 tunes every variant on train.seed's split, as without split_seed.
    tuning = resolve_trial_config(load_spec_text(SPEC % ", split_seed: true", source="seeds.yaml").base_trial_config(),
                                  {"model.residual": True, "train.lr": 0.05, PHASE_KEY: "tune"})
    assert tuning["data"]["split_seed"] == 7
