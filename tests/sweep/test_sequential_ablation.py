"""A sequential confirmation end to end on a real embedded Ray and MLflow (sqlite): one comparison
decided at `min` seeds, another that needs every seed up to `max`, and only the variants of the open
one given the extra seed; interrupted in its second round and resumed where it stopped. Each seed
also redraws the validation split (ablation.split_seed).

The factor is train.weight_decay with three levels against 0 (the reference):
* 10 shrinks every weight by half a step: the network never learns (chance, 10 %), a difference of
  about 80 pp that the first look decides;
* 1e-30 adds nothing a float32 weight can hold, so it trains bit for bit the network 0 trains: a
  difference of exactly zero that no number of seeds can decide.
"""

from __future__ import annotations

import json
import re
import signal
import subprocess
from collections import defaultdict

import pytest

from conftest import SPECS, XSWEEP, run_xsweep, sweep_runs

pytestmark = [pytest.mark.slow, pytest.mark.cluster]
TRAIN_SEED = 0  # smoke.yaml's

SPEC = [str(SPECS / "smoke.yaml"), "--set", "search.num_samples=null", "--set", "train.epochs=5",
        "--set", "ablation={factors: [train.weight_decay], tune: [train.momentum], budget: 1, "
                 "confirm_seeds: {min: 3, max: 4}, split_seed: true}",
        "--set", "search.space={train.weight_decay: {choice: [0.0, 1.0e-30, 10.0]}, train.momentum: {choice: [0.9]}}"]


@pytest.fixture(scope="module")
def sequential(tmp_path_factory):
    """The sweep, stopped by Ctrl-C once its second round (seed 4) trains, then resumed."""
    workdir = tmp_path_factory.mktemp("sequential")
    proc = subprocess.Popen([str(XSWEEP), "run", *SPEC], cwd=workdir, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True)
    try:
        lines = []
        for line in proc.stdout:
            lines.append(line)
            if " s4: epoch 1/5" in line:
                proc.send_signal(signal.SIGINT)
                break
        rest, _ = proc.communicate(timeout=300)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    interrupted = "".join(lines) + rest
    assert proc.returncode == 130, interrupted[-3000:]
    resumed = run_xsweep("resume", "smoke", cwd=workdir)
    assert resumed.returncode == 0, resumed.stdout[-3000:] + resumed.stderr[-3000:]
    return workdir, interrupted, resumed.stdout


def test_only_the_variants_of_the_open_comparison_get_more_seeds(sequential):
    workdir, interrupted, resumed = sequential
    assert "phase 2 (confirm): 3 variants x 3 to 4 seeds (sequential) = 9 to 12 trials" in interrupted
    assert "sweep finished: phase 1 (tune) 3 completed; phase 2 (confirm) 11 completed" in resumed
    _, _, children = sweep_runs(workdir, "smoke")
    assert "re-trains each variant's best with 3 to 4 seeds (sequential), each drawing its own validation split" \
        in interrupted
    seeds = defaultdict(list)
    for child in children:
        config = json.loads(child.data.tags["xsweep.config"])  # what the trial trained
        seed = child.info.run_name.rsplit(" s", 1)[1]
        # Seed k trains with train.seed + k and validates on the split that seed draws; phase 1
        # tunes every variant on train.seed's split (seed 0).
        assert config["data"]["split_seed"] == config["train"]["seed"] == TRAIN_SEED + int(seed)
        if child.data.tags["xsweep.phase"] == "confirm":
            seeds[child.data.tags["xsweep.variant"]].append(seed)
    # Each trial once: the resumed round went on where it stopped, it was not planned again.
    assert {variant: sorted(s) for variant, s in seeds.items()} == {
        "wd=0": ["1", "2", "3", "4"], "wd=1e-30": ["1", "2", "3", "4"], "wd=10": ["1", "2", "3"]}


def test_the_verdicts_say_which_look_decided_and_the_report_names_the_method(sequential):
    workdir, _, resumed = sequential
    decided = next(line for line in resumed.splitlines() if "against weight_decay=0" in line and "=10 " in line)
    assert "weight_decay=0 beats weight_decay=10 by" in decided and "n = 3, decided after 3 seeds" in decided
    same = next(line for line in resumed.splitlines() if line.startswith("verdict, weight_decay=1e-30"))
    assert "no significant difference at n = 4 after 4 seeds, the design's max" in same
    assert "= 0.0 pp" in same
    lines = resumed.splitlines()
    price = lines[lines.index(decided) + 1]  # what the verdict cost, under it
    assert re.fullmatch(r"  price: [0-9.e-]+ device-hours on the variants it compares \(phase 1 [0-9.e-]+, "
                        r"phase 2 [0-9.e-]+\)", price), price
    proc = run_xsweep("report", "smoke", "--out", str(workdir / "report"), cwd=workdir)
    assert proc.returncode == 0, proc.stderr[-3000:]
    report = (workdir / "report" / "report.md").read_text()
    assert "Pocock-type alpha spending (Lan & DeMets 1983), Holm across the family (Maurer & Bretz 2013)" in report
    assert "decided after 3 seeds" in report
    assert "initial weights, data order, augmentation and validation split (ablation.split_seed)" in report


def test_a_sequential_confirmation_cannot_be_extended(sequential):
    workdir, _, _ = sequential
    proc = run_xsweep("extend", "smoke", "--set", "ablation.confirm_seeds={min: 3, max: 6}", cwd=workdir)
    assert proc.returncode == 2, proc.stdout[-2000:] + proc.stderr[-2000:]
    (line,) = proc.stderr.strip().splitlines()
    assert "ablation.confirm_seeds: a sequential confirmation cannot be extended" in line
