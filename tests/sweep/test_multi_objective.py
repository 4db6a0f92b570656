"""A two-objective smoke sweep end to end, on a real embedded Ray and MLflow (sqlite): NSGA-II
proposes, Hyperband's brackets stop trials by the first objective, and the Pareto front lands in
the trial runs' tags, the parent run's pareto_front.csv, the summary, the report, and
`xsweep reproduce --pick`."""

from __future__ import annotations

import csv
import io

import pytest

from conftest import SPECS, run_xsweep, sweep_runs
from xsweep.pareto import pareto_front

pytestmark = [pytest.mark.slow, pytest.mark.cluster]

EPOCHS, SAMPLES = 3, 6
OBJECTIVES = [("val_accuracy", "max"), ("params", "min")]


@pytest.fixture(scope="module")
def two_objectives(tmp_path_factory):
    workdir = tmp_path_factory.mktemp("pareto")
    proc = run_xsweep(
        "run", str(SPECS / "smoke.yaml"), "--set", "search.algorithm=nsga2",
        "--set", "search.objectives=[{metric: val_accuracy, mode: max}, {metric: params, mode: min}]",
        "--set", f"search.num_samples={SAMPLES}", "--set", f"train.epochs={EPOCHS}",
        "--set", "scheduler.kind=hyperband", cwd=workdir)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    client, parent, children = sweep_runs(workdir, "smoke")
    return workdir, proc, client, parent, children


def _expected_front(children):
    completed = [c for c in children if c.data.tags["xsweep.status"] == "completed"]
    return pareto_front(completed, values=lambda c: [c.data.metrics.get(m) for m, _ in OBJECTIVES],
                        modes=[mode for _, mode in OBJECTIVES])


def test_every_trial_is_tagged_on_or_off_the_front_and_the_parent_holds_the_table(two_objectives):
    _, proc, client, parent, children = two_objectives
    assert len(children) == SAMPLES
    front = _expected_front(children)
    assert front
    assert {c.info.run_id: c.data.tags["xsweep.pareto"] for c in children} == {
        c.info.run_id: "true" if c in front else "false" for c in children}
    assert [c.data.tags["xsweep.pareto_rank"] for c in front] == [str(n) for n in range(1, len(front) + 1)]
    for child in children:  # each trial logged the model's own cost, the second objective
        assert child.data.metrics["params"] > 0 and child.data.metrics["gflops"] > 0

    table = client.download_artifacts(parent.info.run_id, "pareto_front.csv")
    rows = list(csv.DictReader(io.StringIO(open(table).read())))
    assert [r["run_id"] for r in rows] == [c.info.run_id for c in front]
    assert [float(r["params"]) for r in rows] == [c.data.metrics["params"] for c in front]
    assert {"rank", "trial", "val_accuracy", "train.lr", "model.residual", "model.activation"} <= set(rows[0])

    assert "objectives: val_accuracy (max), params (min), for their Pareto front; hyperband stops trials by " \
           "val_accuracy alone (scheduler.metric)" in proc.stdout
    assert f"Pareto front (val_accuracy max, params min): {len(front)} trial(s)" in proc.stdout


def test_hyperband_stops_trials_only_at_its_rungs(two_objectives):
    _, _, client, parent, children = two_objectives
    assert parent.data.params["scheduler.brackets"] == "2"  # 1 and 2 epochs of 3: Li et al.'s s_max + 1
    for child in children:
        epochs = tuple(sorted(m.step for m in client.get_metric_history(child.info.run_id, "val_accuracy")))
        status = child.data.tags["xsweep.status"]
        assert (status, epochs) in {("completed", (1, 2, 3)), ("stopped", (1,)), ("stopped", (1, 2))}, (status, epochs)


def test_the_report_has_a_pareto_section_with_the_front(two_objectives):
    workdir, _, _, _, children = two_objectives
    proc = run_xsweep("report", "smoke", "--no-log", cwd=workdir)
    assert proc.returncode == 0, proc.stderr
    (markdown,) = workdir.glob("reports/*/report.md")
    text = markdown.read_text()
    section = text.split("Pareto front\n", 1)[1].split("\n## ", 1)[0]
    assert "![the completed trials and their Pareto front](pareto-front.png)" in section
    assert (markdown.parent / "pareto-front.png").stat().st_size > 10_000
    front = _expected_front(children)
    table = [line for line in section.splitlines() if line.startswith("| ") and "run id" not in line]
    assert [line.split(" | ")[0].strip("| ") for line in table] == [str(n) for n in range(1, len(front) + 1)]
    assert [line.rstrip(" |").rsplit(" | ", 1)[1] for line in table] == [c.info.run_id for c in front]


def test_reproduce_picks_a_front_member_and_refuses_a_place_past_its_end(two_objectives):
    workdir, _, _, parent, children = two_objectives
    front = _expected_front(children)
    proc = run_xsweep("reproduce", "--experiment", "smoke", "--pick", "1", cwd=workdir)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
    assert f"(run {front[0].info.run_id}, experiment 'smoke')" in proc.stdout
    assert "verdict: pass" in proc.stdout
    proc = run_xsweep("reproduce", "--experiment", "smoke", "--pick", str(len(front) + 1), cwd=workdir)
    assert proc.returncode == 2
    assert proc.stderr.strip().splitlines() == [
        f"xsweep: --pick: the Pareto front of sweep {parent.info.run_name} has {len(front)} trial(s) "
        f"(pick 1 to {len(front)}; 1 is the best on the first objective)"]
