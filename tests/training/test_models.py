"""The networks a spec's `model.arch` names (training/models.py): each registered one builds and
trains at its smallest image size, and a spec that trains one is refused what it cannot use."""

from __future__ import annotations

import pytest
import torch

from xsweep.spec import SpecError, load_spec_text
from xsweep.training.models import MODELS, build_model, model_args, rebuild_args


def load(text: str):
    return load_spec_text("name: t\n" + text, source="s.yaml")


def refusal(text: str) -> list[str]:
    with pytest.raises(SpecError) as refused:
        load(text)
    return str(refused.value).splitlines()


@pytest.mark.parametrize("arch", MODELS.names())
def test_every_registered_network_trains_a_step_at_its_smallest_image_on_grey_images(arch):
    config = load(f"model: {{arch: {arch}}}\ndata: {{image_size: {MODELS.get(arch).min_image_size}}}").base_trial_config()
    torch.manual_seed(0)
    model = build_model(config, num_classes=10, in_channels=1)
    size = config["data"]["image_size"]
    loss = torch.nn.functional.cross_entropy(model(torch.randn(2, 1, size, size)), torch.tensor([3, 7]))
    loss.backward()
    assert torch.isfinite(loss) and all(p.grad is not None for p in model.parameters() if p.requires_grad)


def test_a_spec_training_inception_v3_is_refused_what_inception_v3_cannot_use():
    assert refusal("model: {arch: inception_v3, width: 0.25}\ndata: {image_size: 75}") == [
        "s.yaml: model.width: model.arch inception_v3 does not use it (remove it, or use xception)"]
    assert refusal("model: {arch: inception_v3}\ndata: {image_size: 75}\n"
                   "search: {space: {model.residual: {choice: [true, false]}}}") == [
        "s.yaml: search.space.model.residual: model.arch inception_v3 does not use it (remove it, or use xception)"]
    assert refusal("model: {arch: inception_v3}") == [  # data.image_size defaults to 32
        "s.yaml: data.image_size: inception_v3 needs images of at least 75x75 (got 32; set data.image_size: 75 "
        "or more)"]
    # Searched, each network reads its own fields, and every one of them must take the images.
    assert refusal("model: {width: 0.25}\nsearch: {space: {model.arch: {choice: [xception, inception_v3]}}}") == [
        "s.yaml: data.image_size: inception_v3 needs images of at least 75x75 (got 32; set data.image_size: 75 "
        "or more)"]


def test_the_arch_is_in_the_resolved_spec_only_where_it_is_not_xception():
    inception = load("model: {arch: inception_v3}\ndata: {image_size: 75}").resolved()["model"]
    assert inception == {"arch": "inception_v3", "dropout": 0.5}  # Xception's fields left out
    # An Xception sweep hashes the same whether or not it names its network (extend compares hashes).
    assert load("model: {arch: xception}").sha256() == load("model: {width: 1.0}").sha256()
    assert "arch" not in load("train: {epochs: 2}").resolved()["model"]


def test_the_rebuild_arguments_count_the_classes_and_channels_the_data_config_names():
    cifar100 = load("data: {dataset: cifar100}").base_trial_config()
    assert rebuild_args(cifar100) == model_args(cifar100, num_classes=100, in_channels=3)
