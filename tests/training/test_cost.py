"""xsweep.training.cost: a model's parameters and forward FLOPs, the `params` and `gflops` objectives."""

import torch

from xception import Xception
from xsweep.training.cost import forward_gflops_per_image, parameter_count
from xsweep.training.fit import build_model, seed_everything


def test_the_papers_xception_has_its_published_size_and_multiply_adds():
    model = Xception(num_classes=1000)
    # Chollet (2017), Table 3: 22.8 M parameters; timm's legacy_xception card: 8.4 GMACs at 299x299.
    assert round(parameter_count(model) / 1e6, 1) == 22.9  # 22,855,952: the paper rounds down
    gmacs = forward_gflops_per_image(model, in_channels=3, image_size=299) / 2
    assert 8.3 < gmacs < 8.45


def test_flops_grow_with_the_image_and_residual_connections_add_parameters():
    small = forward_gflops_per_image(Xception(num_classes=10, width=0.125, middle_blocks=1), in_channels=3, image_size=32)
    large = forward_gflops_per_image(Xception(num_classes=10, width=0.125, middle_blocks=1), in_channels=3, image_size=64)
    assert 3.5 < large / small < 4.5  # convolutions scale with the pixels
    with_residual = parameter_count(Xception(num_classes=10, width=0.125, residual=True))
    assert with_residual > parameter_count(Xception(num_classes=10, width=0.125, residual=False))


def test_counting_flops_leaves_the_model_and_the_random_state_as_they_were():
    config = {"model": {"residual": True, "activation": "relu", "width": 0.125, "middle_blocks": 1, "dropout": 0.5}}
    model = build_model(config, num_classes=10, in_channels=1)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    seed_everything(0)
    forward_gflops_per_image(model, in_channels=1, image_size=32)
    drawn = torch.rand(3)
    seed_everything(0)
    assert torch.equal(drawn, torch.rand(3))  # no draw from the RNG (dropout is off in eval mode)
    assert model.training
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())  # batch-norm statistics too
