"""xsweep.training.cost: a model's parameters and forward FLOPs, the `params` and `gflops` objectives."""

import os
import time

import pytest
import torch

from xception import Xception
from xsweep.training.cost import forward_gflops_per_image, parameter_count
from xsweep.training.fit import seed_everything
from xsweep.training.models import build_model


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


# ---- what a trial costs: device-seconds, peak memory, FLOP utilisation, system metrics ----------------

def _config(epochs):
    from test_fit import config  # the tiny synthetic trial of the fit tests

    return config(epochs=epochs)


def test_a_trial_reports_its_device_seconds_memory_and_flop_utilisation_every_epoch():
    from xsweep.training.fit import fit
    from xsweep.training.system import CPU, MEMORY

    reports = []
    started = time.perf_counter()
    fit(_config(2), on_epoch=reports.append)
    took = time.perf_counter() - started
    first, second = (r.metrics for r in reports)
    # Device-seconds count from the start of fit (data and model set-up included) and only grow.
    assert first["epoch_seconds"] < first["device_seconds"] < second["device_seconds"] <= took
    assert second["device_seconds"] - first["device_seconds"] == pytest.approx(second["epoch_seconds"], rel=0.2)
    # The trial's process holds at least torch and the model: tens of MiB, less than the machine.
    assert 50 * 2**20 < second["peak_memory_bytes"] < 24 * 2**30
    # 3 x forward FLOPs x images/s against this CPU's measured GEMM peak: a tiny model on 32x32
    # images uses a small, non-zero part of it.
    expected = 3 * second["gflops"] * 1e9 * second["images_per_second"]
    assert 0 < second["mfu"] < 1
    assert reports[1].peak.startswith("CPU: measured fp32 1024x1024 GEMM peak")
    peak_gflops = float(reports[1].peak.split("peak ")[1].split()[0])
    assert second["mfu"] == pytest.approx(expected / (peak_gflops * 1e9), rel=0.01)
    # One system sample at least per epoch, of the trial's own process.
    for report in reports:
        assert report.system, "no system metrics sampled"
        ms, step, values = report.system[-1]
        assert set(values) == {CPU, MEMORY}
        assert 0 < values[CPU] <= 100 * os.cpu_count() and values[MEMORY] > 50
        assert abs(ms / 1000 - time.time()) < 120 and 0 <= step <= round(report.metrics["device_seconds"]) + 1


def test_a_resumed_trial_goes_on_counting_its_device_seconds(tmp_path):
    from xsweep.training.checkpoint import load_checkpoint, save_checkpoint
    from xsweep.training.fit import fit

    first = []
    fit(_config(1), on_epoch=lambda r: (first.append(r), save_checkpoint(r.state(), tmp_path / "state.pt")))
    resumed = []
    fit(_config(2), resume=load_checkpoint(tmp_path / "state.pt"), on_epoch=resumed.append)
    before = first[0].metrics["device_seconds"]
    (report,) = resumed
    assert report.metrics["device_seconds"] > before + report.metrics["epoch_seconds"] * 0.8
    assert report.system[0][1] >= round(before)  # its system samples go on where they stopped


def test_the_sampler_samples_in_the_background_and_the_peak_table_knows_the_gpus_it_names():
    from xsweep.training.peak import gpu_peak_from_table
    from xsweep.training.system import CPU, SystemSampler

    with SystemSampler(torch.device("cpu"), interval=0.05) as sampler:
        busy_until = time.perf_counter() + 0.5
        while time.perf_counter() < busy_until:
            pass  # one core busy
        samples = sampler.drain()
    assert len(samples) >= 5
    assert 50 < max(values[CPU] for _, _, values in samples) <= 100 * os.cpu_count()

    h200 = gpu_peak_from_table("NVIDIA H200", bf16=True)
    assert h200.flops == 989e12 and "datasheet" in h200.source
    assert gpu_peak_from_table("NVIDIA H100 PCIe", bf16=True).flops == 756e12  # not the SXM card's
    assert gpu_peak_from_table("NVIDIA A100-SXM4-80GB", bf16=False).flops == 19.5e12
    assert gpu_peak_from_table("Tesla V100-SXM2-16GB", bf16=True) is None  # no bf16 units: measured instead
    assert gpu_peak_from_table("Some Future GPU", bf16=True) is None
