"""What `xsweep reproduce` prints of a comparison: its table, through the metric table and rich as
`xsweep status` prints, and its verdict lines. tests/test_reproduce.py runs the whole command."""

from __future__ import annotations

import re

from xsweep.reproduce import Comparison, SeedBand, compare, print_table, verdict_line

LOGGED = {1: {"val_accuracy": 0.5, "train_loss": 1.25}, 2: {"val_accuracy": 0.625, "train_loss": 0.75}}
REPRODUCED = {1: {"val_accuracy": 0.5, "train_loss": 1.25}, 2: {"val_accuracy": 0.5, "train_loss": 0.76}}


def _rows(out: str) -> list[list[str]]:
    return [line.split() for line in out.splitlines() if re.match(r"\s+\d+\s", line)]


def test_the_table_shows_each_epochs_logged_reproduced_and_difference_per_metric(capsys):
    print_table(LOGGED, REPRODUCED, columns=["val_accuracy", "train_loss"])
    out = capsys.readouterr().out
    assert "val_accuracy (%)" in out and "train_loss" in out and "train_loss (%)" not in out
    assert _rows(out) == [["1", "50.00", "50.00", "same", "1.250000", "1.250000", "same"],
                          ["2", "62.50", "50.00", "-12.50", "0.750000", "0.760000", "+1.00e-02"]]


def test_a_value_missing_on_one_side_is_a_dash(capsys):
    print_table({1: {"val_loss": float("nan")}}, {1: {"val_loss": float("nan")}, 2: {"val_loss": 0.5}},
                columns=["val_loss"])
    assert _rows(capsys.readouterr().out) == [["1", "nan", "nan", "same"], ["2", "-", "0.500000", "-"]]


def test_a_narrow_terminal_cuts_no_number(capsys, monkeypatch):
    monkeypatch.setenv("COLUMNS", "30")
    print_table(LOGGED, REPRODUCED, columns=["val_accuracy", "train_loss", "val_loss"])
    out = capsys.readouterr().out
    assert "…" not in out and _rows(out)[1][:7] == ["2", "62.50", "50.00", "-12.50", "0.750000", "0.760000",
                                                     "+1.00e-02"]


def test_the_verdict_line_shows_percentages_as_the_metric_table_does():
    same = compare(LOGGED, LOGGED, metric="val_accuracy", epoch=2, tolerance=0.5)
    assert verdict_line(same) == ("verdict: pass - identical: every compared metric reproduced bit for bit "
                                  "(val_accuracy logged 62.50%, reproduced 62.50%)")
    differs = compare(LOGGED, REPRODUCED, metric="val_accuracy", epoch=2, tolerance=0.5)
    assert verdict_line(differs) == ("verdict: fail - val_accuracy at epoch 2: logged 62.50%, reproduced 50.00% "
                                     "(difference -12.5 pp, tolerance 0.5 pp)")
    loss = Comparison(metric="val_loss", epoch=2, logged=0.123456789, reproduced=0.1234568, tolerance=0.001,
                      identical=False)
    assert verdict_line(loss) == ("verdict: pass - val_loss at epoch 2: logged 0.123457, reproduced 0.123457 "
                                  "(difference +1.1e-08, tolerance 0.001)")


def test_the_seed_band_line_names_the_band_and_where_the_re_run_fell():
    band = SeedBand("res=off", "val_accuracy", [0.61, 0.64])
    assert band.line(0.625) == ("seed band: the 2 confirmation seeds of variant res=off ended at 61.00% to 64.00% "
                                "val_accuracy; the re-run's 62.50% is within the seed band")
    assert not band.holds(0.66)
