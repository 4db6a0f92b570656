"""`xsweep report`: the statistics against scipy, the analysis on hand-made runs, and end to end on a
real grid-with-repeats smoke sweep: every section, numbers recomputed here from MLflow, the HTML
rendered in headless Chromium with every image loaded, the artifacts on the sweep's parent run."""

from __future__ import annotations

import json
import math
import subprocess
from pathlib import Path

import numpy as np
import pytest
from scipy import stats

from xsweep.report import stats as st
from xsweep.report.analysis import factor_table, lr_groups
from xsweep.report.sections import blocks, summarize

from conftest import SPECS, run_xsweep
from sweeps_by_hand import grid, sweep, trial

A = [0.912, 0.887, 0.905, 0.93, 0.899, 0.921]
B = [0.874, 0.882, 0.861, 0.91, 0.869, 0.893]


# ---- statistics against scipy ----------------------------------------------------------------------
def test_mean_ci_is_scipys_t_interval():
    ci = st.mean_ci(A)
    low, high = stats.t.interval(0.95, len(A) - 1, loc=np.mean(A), scale=stats.sem(A))
    assert ci.estimate == pytest.approx(np.mean(A), abs=1e-12)
    assert (ci.low, ci.high) == pytest.approx((low, high), abs=1e-12)
    assert ci.n == 6 and ci.df == 5


def test_paired_difference_is_scipys_paired_t_test():
    diff = st.paired_difference(A, B)
    ref = stats.ttest_rel(A, B)
    ref_ci = ref.confidence_interval(0.95)
    assert diff.estimate == pytest.approx(np.mean(np.subtract(A, B)), abs=1e-12)
    assert (diff.low, diff.high) == pytest.approx((ref_ci.low, ref_ci.high), abs=1e-12)
    assert diff.p_value == pytest.approx(ref.pvalue, rel=1e-9)
    assert diff.n == 6


def test_welch_difference_is_scipys_welch_test():
    a, b = A, B[:4]
    diff = st.welch_difference(a, b)
    ref = stats.ttest_ind(a, b, equal_var=False)
    ref_ci = ref.confidence_interval(0.95)
    assert diff.estimate == pytest.approx(np.mean(a) - np.mean(b), abs=1e-12)
    assert (diff.low, diff.high) == pytest.approx((ref_ci.low, ref_ci.high), abs=1e-12)
    assert diff.p_value == pytest.approx(ref.pvalue, rel=1e-9)
    assert diff.df == pytest.approx(ref.df, rel=1e-12)
    assert (diff.n, diff.n_b) == (6, 4)


def test_too_few_values_give_no_interval():
    assert math.isnan(st.mean_ci([0.5]).low) and st.mean_ci([0.5]).estimate == 0.5
    assert st.mean_ci([]).n == 0
    assert math.isnan(st.paired_difference([0.9], [0.8]).high)
    assert math.isnan(st.welch_difference([0.9, 0.8], [0.7]).low)
    with pytest.raises(ValueError):
        st.paired_difference([0.9, 0.8], [0.7])


def test_identical_values_give_a_point_interval():
    ci = st.paired_difference([0.9, 0.8, 0.7], [0.8, 0.7, 0.6])
    assert (ci.low, ci.high) == pytest.approx((0.1, 0.1)) and ci.excludes_zero


def test_verdicts_name_the_winner_with_a_positive_interval():
    win = st.Interval(0.012, 0.004, 0.020, 6)
    assert st.verdict("no activation", "ReLU", win) == "no activation beats ReLU by 1.2 pp, 95% CI [0.4, 2.0], n = 6"
    lose = st.Interval(-0.012, -0.020, -0.004, 6)
    assert st.verdict("ReLU", "no activation", lose) == "no activation beats ReLU by 1.2 pp, 95% CI [0.4, 2.0], n = 6"
    tie = st.Interval(0.003, -0.01, 0.016, 3)
    assert st.verdict("a", "b", tie).startswith("no significant difference at n = 3")
    assert st.verdict("a", "b", st.Interval(0.1, math.nan, math.nan, 1)) == "too few runs to tell at n = 1 (an interval needs 3)"
    welch = st.Interval(0.05, 0.01, 0.09, 4, n_b=5)
    assert st.verdict("a", "b", welch).endswith("n = 4 and 5")


# ---- the analysis on hand-made runs ----------------------------------------------------------------
def test_grid_pairs_share_every_other_value_and_the_seed():
    trials = grid()
    data = sweep(trials)
    finished = [t for t in trials if t.finished]
    table = factor_table(data, finished, "model.residual")
    (comparison,) = table["comparisons"]
    on = {(t.searched["model.activation"], t.searched["train.lr"], t.seed): t.final("val_accuracy")
          for t in trials if t.searched["model.residual"]}
    off = {(t.searched["model.activation"], t.searched["train.lr"], t.seed): t.final("val_accuracy")
           for t in trials if not t.searched["model.residual"]}
    keys = sorted(on)
    ref = stats.ttest_rel([on[k] for k in keys], [off[k] for k in keys]).confidence_interval(0.95)
    assert comparison["test"] == "paired" and comparison["n"] == 8
    assert (comparison["ci_low"], comparison["ci_high"]) == pytest.approx((ref.low, ref.high), abs=1e-12)
    assert comparison["verdict"].startswith("residual on beats residual off by")


def test_each_factor_level_shows_its_device_time_per_trial_beside_its_accuracy():
    from xsweep.report.render import to_markdown

    # Residual trials cost 30 s each, plain ones 20 s; a diverged trial's time counts in the sweep's
    # total but not in its level's mean of completed trials.
    trials = [trial(t.run_id.removeprefix("run"), res=t.searched["model.residual"], act=t.searched["model.activation"],
                    lr=t.searched["train.lr"], seed=t.seed, acc=t.final("val_accuracy"),
                    device_seconds=30.0 if t.searched["model.residual"] else 20.0) for t in grid()]
    trials[0] = trial(0, res=True, act="none", lr=0.01, seed=0, acc=float("nan"), status="diverged", device_seconds=5.0)
    summary = summarize(sweep(trials), workdir="/nowhere")
    on, off = summary["factors"][0]["levels"]
    assert (on["label"], on["device_seconds"], off["device_seconds"]) == ("residual on", 30.0, 20.0)
    assert summary["sweep"]["device_seconds"] == 5 + 7 * 30 + 8 * 20
    text = to_markdown(blocks(summary, {}))
    assert "| level | mean (%) | 95% CI (%) | n | device time per trial |" in text
    assert f"| residual on | {100 * on['mean']:.2f} |" in text and "| 7 | 30 s |" in text
    assert "Cost: 6.2 min of device time over all trials" in text
    # A sweep that recorded no cost (from before it was measured) says n/a, and no total.
    old = to_markdown(blocks(summarize(sweep(grid()), workdir="/nowhere"), {}))
    assert "| 8 | n/a |" in old and "Cost:" not in old


def test_the_report_says_how_fast_trials_started_training():
    from xsweep.report.render import to_markdown

    # Sixteen trials: the first of its process started slowly and compiled; the others found its code.
    trials = grid()
    for i, t in enumerate(trials):
        t.latest.update(startup_seconds=40.0 if i == 0 else 2.0 + i / 8,
                        first_epoch_extra_seconds=30.0 if i == 0 else 1.0, compile_seconds=35.0 if i == 0 else 0.5)
    summary = summarize(sweep(trials), workdir="/nowhere")
    assert summary["startup"]["startup_seconds"] == {"n": 16, "median": 3.0625, "min": 2.125, "max": 40.0}
    text = to_markdown(blocks(summary, {}))
    assert ("Start-up: a trial's first training step came 3.1 s (median of 16 trials; 2.1 to 40.0 s) after its "
            "start") in text
    assert "torch.compile took 0.5 s (median of 16 trials; 0.5 to 35.0 s)" in text
    assert "| first step (s) |" in text and f"| {trials[0].run_id} |" in text and "| 40.0 |" in text
    # A sweep that logged none of them says nothing of its start-up.
    assert "Start-up:" not in to_markdown(blocks(summarize(sweep(grid()), workdir="/nowhere"), {}))


def test_diverged_trials_are_listed_and_left_out_and_lose_their_partner():
    trials = grid()
    trials[0] = trial(0, res=True, act="none", lr=0.01, seed=0, acc=float("nan"), status="diverged")
    data = sweep(trials)
    summary = summarize(data, workdir="/nowhere")
    assert summary["trials"]["finished"] == 15
    assert [e["run_id"] for e in summary["trials"]["excluded"]] == ["run0"]
    residual = summary["factors"][0]
    on = residual["levels"][0]
    assert on["n"] == 7 and "run0" not in on["run_ids"]
    assert on["mean"] == pytest.approx(np.mean([t.final("val_accuracy") for t in trials[1:8]]))
    comparison = residual["comparisons"][0]
    assert comparison["n"] == 7 and comparison["without_partner"] == 1
    assert summary["best"]["run_id"] != "run0"


def test_tpe_sweeps_compare_unpaired_and_bin_a_continuous_learning_rate():
    rng = np.random.default_rng(1)
    trials = [trial(i, res=bool(i % 2), act=("none", "relu")[i // 2 % 2], lr=float(10 ** rng.uniform(-2, -0.5)),
                     seed=0, acc=float(rng.uniform(0.5, 0.9))) for i in range(9)]
    data = sweep(trials, algorithm="optuna-tpe", lr_entry='{"loguniform": [0.01, 0.3]}')
    groups = lr_groups(data, trials)
    assert groups["mode"] == "bins" and [len(g["run_ids"]) for g in groups["groups"]] == [3, 3, 3]
    assert "terciles" in groups["text"]
    table = factor_table(data, trials, "model.residual")
    comparison = table["comparisons"][0]
    on = [t.final("val_accuracy") for t in trials if t.searched["model.residual"]]
    off = [t.final("val_accuracy") for t in trials if not t.searched["model.residual"]]
    ref = stats.ttest_ind(on, off, equal_var=False).confidence_interval(0.95)
    assert comparison["test"] == "welch" and (comparison["n"], comparison["n_b"]) == (4, 5)
    assert (comparison["ci_low"], comparison["ci_high"]) == pytest.approx((ref.low, ref.high), abs=1e-12)
    few = lr_groups(data, trials[:4])
    assert few["mode"] == "all" and "compares all" in few["text"]
    for t in trials:
        del t.searched["train.lr"]
    assert lr_groups(sweep(trials, lr_entry=None), trials)["mode"] == "fixed"
    assert lr_groups(sweep(grid()), grid())["mode"] == "grid"


# ---- end to end ---------------------------------------------------------------------------------------
# 2 residual x 2 activation x 2 seeds = 8 trials of 2 epochs, at one learning rate.
GRID = ["--set", "search.algorithm=grid", "--set", "search.num_samples=4", "--set", "search.repeats=2",
        "--set", "train.lr=0.05", "--set",
        'search.space={"model.residual": {"choice": [true, false]}, "model.activation": {"choice": ["none", "relu"]}}']
CHROMIUM, CHROMEDRIVER = "/usr/bin/chromium", "/usr/bin/chromedriver"


def report(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    """`xsweep report ...`, as a user runs it."""
    return run_xsweep("report", *args, cwd=cwd, timeout=300)


@pytest.fixture(scope="module")
def reported(tmp_path_factory):
    """A finished grid sweep and its report, made by the CLI into the default folder."""
    workdir = tmp_path_factory.mktemp("report")
    proc = run_xsweep("run", str(SPECS / "smoke.yaml"), *GRID, cwd=workdir)
    assert proc.returncode == 0, proc.stderr[-4000:]
    proc = report("smoke", cwd=workdir)
    assert proc.returncode == 0, proc.stderr[-4000:]
    (out,) = (workdir / "reports").iterdir()
    return workdir, out


def _mlflow(workdir: Path):
    from mlflow.tracking import MlflowClient

    client = MlflowClient(tracking_uri=f"sqlite:///{workdir / 'mlflow.db'}")
    exp = client.get_experiment_by_name("smoke")
    (sweep,) = client.search_runs([exp.experiment_id], filter_string="tags.`xsweep.kind` = 'sweep'")
    children = client.search_runs([exp.experiment_id],
                                  filter_string=f"tags.`mlflow.parentRunId` = '{sweep.info.run_id}'")
    return client, sweep, children


def _ci(values):
    values = np.asarray(values)
    half = stats.t.ppf(0.975, len(values) - 1) * values.std(ddof=1) / np.sqrt(len(values))
    return values.mean(), values.mean() - half, values.mean() + half


@pytest.mark.slow
@pytest.mark.cluster
def test_report_has_every_section(reported):
    _, out = reported
    md = (out / "report.md").read_text()
    for heading in ("## 1. Learning curves", "### By residual (the Figure 9 analogue)",
                    "### By activation (the Figure 10 analogue)", "## 2. Final validation accuracy per factor",
                    "### residual (model.residual)", "### activation (model.activation)",
                    "## 3. Hyperparameter importance", "### Accuracy against learning rate, per variant",
                    "## 4. Best trial and how to reproduce it", "## All trials"):
        assert heading in md, heading
    for png in ("curves-residual.png", "curves-activation.png", "accuracy-vs-lr.png"):
        assert f"]({png})" in md and (out / png).stat().st_size > 1000
    assert "Verdict: " in md and "Excluded: none." in md


@pytest.mark.slow
@pytest.mark.cluster
def test_report_numbers_are_those_of_the_mlflow_runs(reported):
    workdir, out = reported
    client, sweep, children = _mlflow(workdir)
    summary = json.loads((out / "report.json").read_text())
    md = (out / "report.md").read_text()
    final = {}
    for run in children:
        assert run.data.tags["xsweep.status"] == "completed"
        history = client.get_metric_history(run.info.run_id, "val_accuracy")
        final[run.info.run_id] = max(history, key=lambda m: m.step).value
    searched = {r.info.run_id: json.loads(r.data.tags["xsweep.searched"]) for r in children}
    seed = {r.info.run_id: json.loads(r.data.tags["xsweep.config"])["train"]["seed"] for r in children}
    assert summary["sweep"]["run_id"] == sweep.info.run_id and summary["trials"]["finished"] == len(children) == 8

    labels = {"model.residual": {True: "residual on", False: "residual off"},
              "model.activation": {"none": "no activation", "relu": "ReLU"}}
    for factor in summary["factors"]:
        path = factor["path"]
        levels = list(labels[path])
        assert [lv["value"] for lv in factor["levels"]] == levels
        for lv in factor["levels"]:
            values = [final[r] for r in final if searched[r][path] == lv["value"]]
            mean, low, high = _ci(values)
            assert lv["n"] == len(values) == 4
            assert (lv["mean"], lv["ci_low"], lv["ci_high"]) == pytest.approx((mean, low, high), abs=1e-9)
            row = f"| {lv['label']} | {100 * mean:.2f} | [{100 * low:.2f}, {100 * high:.2f}] | 4 |"
            assert row in md, row
        # Pairs share the other factor and the seed (one learning rate here).
        other = next(p for p in labels if p != path)
        key = {r: (searched[r][other], seed[r]) for r in final}
        a = {key[r]: final[r] for r in final if searched[r][path] == levels[0]}
        b = {key[r]: final[r] for r in final if searched[r][path] == levels[1]}
        diffs = [a[k] - b[k] for k in sorted(a)]
        ref = stats.ttest_rel([a[k] for k in sorted(a)], [b[k] for k in sorted(a)])
        mean, low, high = _ci(diffs)
        (c,) = factor["comparisons"]
        assert c["test"] == "paired" and c["n"] == 4
        assert (c["difference"], c["ci_low"], c["ci_high"]) == pytest.approx((mean, low, high), abs=1e-9)
        assert c["p_value"] == pytest.approx(ref.pvalue, rel=1e-6)
        row = (f"| {labels[path][levels[0]]} - {labels[path][levels[1]]} | {100 * mean:.2f} | "
               f"[{100 * low:.2f}, {100 * high:.2f}] | 4 | paired |")
        assert row in md, row
        assert f"Verdict: {c['verdict']}." in md
        significant = low > 0 or high < 0
        assert c["verdict"].startswith("no significant difference at n = 4") != significant

    importance = summary["importance"]
    assert importance["error"] is None, importance["error"]
    assert set(importance["values"]) == {"model.residual", "model.activation"}
    assert sum(importance["values"].values()) == pytest.approx(1.0)

    # How fast the trials started training: the median of the runs' own start-up.
    startups = sorted(run.data.metrics["startup_seconds"] for run in children)
    assert summary["startup"]["startup_seconds"]["median"] == pytest.approx((startups[3] + startups[4]) / 2)
    assert "Start-up: a trial's first training step came" in md

    best = sweep.data.tags["xsweep.best_run_id"]
    assert summary["best"]["run_id"] == best
    assert f"xsweep reproduce --experiment smoke --run {best}" in md


@pytest.mark.slow
@pytest.mark.cluster
def test_report_html_renders_in_chromium_with_every_image(reported, tmp_path):
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    _, out = reported
    html = (out / "report.html").read_text()
    assert 'src="data:image/png;base64,' in html and 'src="http' not in html
    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for flag in ("--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync",
                 f"--user-data-dir={tmp_path / 'chromium-profile'}", "--window-size=1200,900"):
        options.add_argument(flag)
    driver = webdriver.Chrome(service=Service(CHROMEDRIVER), options=options)
    try:
        driver.get((out / "report.html").as_uri())
        widths = driver.execute_script(
            "return Array.from(document.images).map(i => i.complete ? i.naturalWidth : 0)")
        title = driver.title
        driver.save_screenshot(str(tmp_path / "report.png"))
    finally:
        driver.quit()
    assert len(widths) == len(list(out.glob("*.png"))) >= 3
    assert all(w > 0 for w in widths), widths
    assert title == "Ablation report: smoke"
    assert (tmp_path / "report.png").stat().st_size > 0


@pytest.mark.slow
@pytest.mark.cluster
def test_report_is_logged_to_the_sweeps_parent_run(reported):
    workdir, out = reported
    client, sweep, _ = _mlflow(workdir)
    logged = {Path(f.path).name for f in client.list_artifacts(sweep.info.run_id, "report")}
    assert {"report.html", "report.md", "report.json"} | {p.name for p in out.glob("*.png")} <= logged
    assert sweep.data.tags.get("xsweep.report") == "report/report.html"


@pytest.mark.slow
@pytest.mark.cluster
def test_report_folder_sweep_flag_and_user_errors(reported, tmp_path, monkeypatch):
    from xsweep.errors import ReportError
    from xsweep.report.make import make_report

    workdir, out = reported
    _, sweep, _ = _mlflow(workdir)
    assert out.name == f"smoke-{sweep.info.run_id[:8]}"
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    again = make_report(experiment="smoke", sweep=sweep.info.run_id, out=tmp_path / "again", workdir=workdir,
                        log_artifacts=False)
    assert json.loads((again / "report.json").read_text()) == json.loads((out / "report.json").read_text())
    assert "\nPED-ANOVA (optuna.importance." in (out / "report.md").read_text()  # the default evaluator
    proc = report("smoke", "--importance", "fanova", "--out", str(tmp_path / "fanova"), "--no-log", cwd=workdir)
    assert proc.returncode == 0, proc.stderr[-4000:]
    asked = (tmp_path / "fanova" / "report.md").read_text()
    assert "\nfANOVA (optuna.importance." in asked and "PED-ANOVA" not in asked
    with pytest.raises(ReportError, match="^importance: no evaluator 'anova' .pick one of ped-anova, fanova"):
        make_report(experiment="smoke", importance="anova", workdir=workdir)

    proc = report("nope", cwd=workdir)  # the CLI: exit 2 and one line
    assert proc.returncode == 2
    (line,) = proc.stderr.strip().splitlines()
    assert line.startswith("xsweep: EXPERIMENT: no experiment 'nope' in sqlite:///")
    assert "smoke" in line.split("known: ")[1]

    with pytest.raises(ReportError, match="^--sweep: no run 0+ in"):
        make_report(experiment="smoke", sweep="0" * 32, workdir=workdir)
    with pytest.raises(ReportError, match="^--sweep: run .* is not a sweep of experiment 'smoke'"):
        make_report(experiment="smoke", sweep=summary_best(out), workdir=workdir)
    with pytest.raises(ReportError, match="^--tracking-uri: no MLflow store"):
        make_report(experiment="smoke", tracking_uri=f"sqlite:///{tmp_path / 'missing' / 'mlflow.db'}",
                    workdir=workdir)
    assert not (tmp_path / "missing").exists()


def summary_best(out: Path) -> str:
    return json.loads((out / "report.json").read_text())["best"]["run_id"]


def test_the_cli_has_the_report_command():
    from xsweep.cli import build_parser, cmd_report

    args = build_parser().parse_args(["report", "exp", "--sweep", "abc", "--out", "d", "--tracking-uri", "u"])
    assert (args.experiment, args.sweep, args.out, args.tracking_uri, args.func) == ("exp", "abc", "d", "u", cmd_report)


def _visible_tick_labels(ax):
    from matplotlib.backends.backend_agg import FigureCanvasAgg

    FigureCanvasAgg(ax.figure).draw()
    low, high = ax.get_xlim()
    ticks = ax.xaxis.get_major_ticks() + ax.xaxis.get_minor_ticks()
    return [t.label1 for t in ticks if t.label1.get_visible() and t.label1.get_text() and low <= t.get_loc() <= high]


def test_accuracy_against_learning_rate_has_log_ticks_whose_labels_do_not_overprint():
    from xsweep.report.figures import accuracy_vs_lr

    # A handful of close learning rates, as a small TPE sweep samples them.
    lrs = [0.0470512, 0.0501234, 0.0523871, 0.0611112, 0.0139921, 0.0198877]
    points = [{"lr": lr, "accuracy": 0.9, "run_id": str(i)} for i, lr in enumerate(lrs)]
    variants = [{"label": "all trials", "points": points, "means": [{"lr": lr, "mean": 0.9, "n": 1} for lr in lrs]}]
    ax = accuracy_vs_lr(variants).axes[0]
    assert ax.get_xscale() == "log"
    labels = _visible_tick_labels(ax)
    texts = [label.get_text() for label in labels]
    assert texts and not any("0.047" in text or "0.050" in text for text in texts), texts  # no tick per trial
    boxes = [label.get_window_extent() for label in labels]
    overlaps = [(texts[i], texts[j]) for i in range(len(boxes)) for j in range(i + 1, len(boxes))
                if boxes[i].overlaps(boxes[j])]
    assert overlaps == []
