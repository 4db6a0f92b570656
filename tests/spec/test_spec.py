"""Tests of the sweep spec: loading, validation messages, overrides and the resolved form.

Pure Python and fast: spec validation must never need torch, ray or mlflow.
"""

from __future__ import annotations

import json
import pickle
import re
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import yaml

from xsweep.spec import Spec, SpecError, load_spec, parse_spec, set_dotted

REPO = Path(__file__).resolve().parents[2]
EXAMPLE_SPECS = sorted((REPO / "search_spaces").glob("*.yaml"))


@pytest.fixture
def spec_file(tmp_path, monkeypatch):
    """Writes YAML text to ./spec.yaml in a fresh folder, so messages start with 'spec.yaml:'."""
    monkeypatch.chdir(tmp_path)

    def write(text: str | bytes) -> str:
        path = tmp_path / "spec.yaml"
        if isinstance(text, bytes):
            path.write_bytes(text)
        else:
            path.write_text(textwrap.dedent(text))
        return "spec.yaml"

    return write


@pytest.fixture
def errors(spec_file):
    """The SpecError lines of loading YAML text (which must be invalid)."""

    def load(text: str, overrides: tuple[str, ...] = ()) -> list[str]:
        with pytest.raises(SpecError) as info:
            load_spec(spec_file(text), overrides=overrides)
        return info.value.lines

    return load


# ---- the example specs ----

def test_the_named_example_specs_exist():
    names = {path.name for path in EXAMPLE_SPECS}
    assert {"smoke.yaml", "xception_ablation.yaml", "cifar10.yaml", "imagenet.yaml",
            "paper_ablation.yaml", "paper_ablation_cifar10.yaml"} <= names


@pytest.mark.parametrize("path", EXAMPLE_SPECS, ids=lambda path: path.name)
def test_example_spec_validates(path):
    spec = load_spec(path)
    assert spec.source == str(path)
    assert spec.text == path.read_text()
    # The resolved form is itself a valid spec describing the same sweep.
    assert parse_spec(spec.resolved(), source="resolved").resolved() == spec.resolved()


@pytest.mark.parametrize("path", EXAMPLE_SPECS, ids=lambda path: path.name)
def test_example_smoke_overrides_in_comments_validate(path):
    """The `--set ...` smoke examples written in a spec's comments must work as written."""
    comments = "\n".join(line for line in path.read_text().splitlines() if line.lstrip().startswith("#"))
    overrides = re.findall(r"--set (\S+)", comments)
    spec = load_spec(path, overrides=overrides)
    if overrides:
        assert spec.overrides == tuple(overrides)
        assert "train.epochs=1" in overrides and spec.train.epochs == 1


def test_smoke_spec_is_what_the_tests_rely_on():
    spec = load_spec(REPO / "search_spaces" / "smoke.yaml")
    assert (spec.data.dataset, spec.data.image_size) == ("digits", 32)
    assert (spec.model.width, spec.model.middle_blocks, spec.train.epochs, spec.train.batch_size) == (0.125, 1, 2, 64)
    assert (spec.search.algorithm, spec.search.num_samples, spec.search.max_concurrent) == ("optuna-tpe", 4, 2)
    assert list(spec.search.space) == ["train.lr", "model.residual", "model.activation"]
    assert spec.search.space["train.lr"].model_dump(exclude_none=True) == {"kind": "loguniform", "low": 0.01, "high": 0.2}
    assert spec.search.space["model.activation"].values == ["none", "relu"]
    assert (spec.scheduler.kind, spec.resources.cpus_per_trial, spec.storage.path, spec.tracking.uri) == (
        "fifo", 1, "results", None)


# ---- broken specs: every line, exactly ----

def bad(yaml_text: str, *lines: str, id: str):
    """A broken spec (name: t is prepended unless the text mentions name) and its messages."""
    text = textwrap.dedent(yaml_text).lstrip("\n")
    if not re.search(r"^name:", text, re.M) and "# no name" not in text:
        text = "name: t\n" + text
    return pytest.param(text, list(lines), id=id)


BROKEN = [
    # -- enums
    bad("data: {dataset: mnist}",
        "spec.yaml: data.dataset: 'mnist' is not allowed (one of digits, cifar10, cifar100, imagefolder, synthetic)",
        id="enum-dataset"),
    bad("model: {activation: gelu}",
        "spec.yaml: model.activation: 'gelu' is not allowed (one of none, relu, elu)", id="enum-activation"),
    bad("train: {optimizer: adam}",
        "spec.yaml: train.optimizer: 'adam' is not allowed (one of sgd, rmsprop, adamw)", id="enum-optimizer"),
    bad("train: {lr_schedule: step}",
        "spec.yaml: train.lr_schedule: 'step' is not allowed (one of constant, paper, cosine)", id="enum-lr-schedule"),
    bad("train: {device: gpu}",
        "spec.yaml: train.device: 'gpu' is not allowed (one of auto, cpu, cuda)", id="enum-device"),
    bad("search: {algorithm: bayes}",
        "spec.yaml: search.algorithm: 'bayes' is not allowed "
        "(one of optuna-tpe, random, grid, optuna-gp, optuna-cmaes, qmc, nsga2)", id="enum-algorithm"),
    bad("search: {metric: accuracy}",
        "spec.yaml: search.metric: 'accuracy' is not allowed "
        "(one of val_accuracy, val_loss, val_top5_accuracy, train_accuracy, train_loss, step_seconds, params, gflops)", id="enum-metric"),
    bad("search: {mode: maximize}",
        "spec.yaml: search.mode: 'maximize' is not allowed (one of max, min)", id="enum-mode"),
    bad("scheduler: {kind: median}",
        "spec.yaml: scheduler.kind: 'median' is not allowed (one of fifo, asha, hyperband)", id="enum-scheduler"),
    bad("model: {activation: null}",
        "spec.yaml: model.activation: null is not allowed (one of none, relu, elu)", id="enum-null-is-not-none"),
    # -- numeric bounds
    bad("data: {image_size: 16}",
        "spec.yaml: data.image_size: must be between 32 and 1024 (got 16)", id="bound-image-size"),
    bad("data: {val_fraction: 1}",
        "spec.yaml: data.val_fraction: must be > 0 and < 1 (got 1)", id="bound-val-fraction"),
    bad("data: {synthetic_size: 8, synthetic_classes: 1}",
        "spec.yaml: data.synthetic_size: must be >= 16 (got 8)",
        "spec.yaml: data.synthetic_classes: must be >= 2 (got 1)", id="bound-synthetic"),
    bad("model: {width: 5, middle_blocks: 33, dropout: 1.0}",
        "spec.yaml: model.width: must be > 0 and <= 4 (got 5)",
        "spec.yaml: model.middle_blocks: must be between 0 and 32 (got 33)",
        "spec.yaml: model.dropout: must be >= 0 and < 1 (got 1)", id="bound-model"),
    bad("train: {epochs: 0, batch_size: 65537}",
        "spec.yaml: train.epochs: must be between 1 and 10000 (got 0)",
        "spec.yaml: train.batch_size: must be between 1 and 65536 (got 65537)", id="bound-epochs-batch"),
    bad("train: {lr: -0.1}", "spec.yaml: train.lr: must be > 0 (got -0.1)", id="bound-lr"),
    bad("train: {momentum: 1, weight_decay: -1e-5, seed: -1, threads: 0}",
        "spec.yaml: train.momentum: must be >= 0 and < 1 (got 1)",
        "spec.yaml: train.weight_decay: must be >= 0 (got -1e-05)",
        "spec.yaml: train.seed: must be >= 0 (got -1)",
        "spec.yaml: train.threads: must be >= 1 (got 0)", id="bound-train-misc"),
    bad("search: {num_samples: 0, max_concurrent: 0, repeats: 0, seed: -1}",
        "spec.yaml: search.num_samples: must be >= 1 (got 0)",
        "spec.yaml: search.max_concurrent: must be >= 1 (got 0)",
        "spec.yaml: search.repeats: must be >= 1 (got 0)",
        "spec.yaml: search.seed: must be >= 0 (got -1)", id="bound-search"),
    bad("scheduler: {grace_period: 0, reduction_factor: 1.5}",
        "spec.yaml: scheduler.grace_period: must be >= 1 (got 0)",
        "spec.yaml: scheduler.reduction_factor: must be >= 2 (got 1.5)", id="bound-scheduler"),
    bad("resources: {cpus_per_trial: 0, gpus_per_trial: -1}",
        "spec.yaml: resources.cpus_per_trial: must be > 0 (got 0)",
        "spec.yaml: resources.gpus_per_trial: must be >= 0 (got -1)", id="bound-resources"),
    bad("failure: {max_failures: -2}",
        "spec.yaml: failure.max_failures: must be >= -1 (got -2)", id="bound-max-failures"),
    bad("resources: {gpus_per_trial: 1.5}",
        "spec.yaml: resources.gpus_per_trial: fractions are allowed only below 1 "
        "(got 1.5; use a whole number of GPUs above 1)", id="gpus-fraction-above-one"),
    # -- unknown keys
    bad("trian: {lr: 0.1}",
        "spec.yaml: trian: unknown field (did you mean train?)", id="unknown-top-typo"),
    bad("colour: red",
        "spec.yaml: colour: unknown field (top-level fields: name, data, model, train, search, "
        "scheduler, resources, failure, tracking, storage, ablation)", id="unknown-top-no-match"),
    bad("epochs: 3", "spec.yaml: epochs: unknown field (did you mean train.epochs?)", id="unknown-top-is-a-field"),
    bad("train: {lrr: 0.1}", "spec.yaml: train.lrr: unknown field (did you mean train.lr?)", id="unknown-section-typo"),
    bad("resources: {gpus: 1}",
        "spec.yaml: resources.gpus: unknown field (did you mean resources.gpus_per_trial?)", id="unknown-prefix"),
    bad("train: {LR: 0.1}", "spec.yaml: train.LR: unknown field (did you mean train.lr?)", id="unknown-section-case"),
    bad("train: {residual: false}",
        "spec.yaml: train.residual: unknown field (did you mean model.residual?)", id="unknown-wrong-section"),
    bad("data: {colour: red}",
        "spec.yaml: data.colour: unknown field (fields of data: dataset, root, image_size, val_fraction, "
        "augment, recipe, synthetic_size, synthetic_classes)", id="unknown-section-no-match"),
    bad("search: {space: {train.lrr: {loguniform: [0.01, 0.1]}}}",
        "spec.yaml: search.space.train.lrr: unknown field (did you mean train.lr?)", id="unknown-space-typo"),
    bad("search: {space: {lr: {loguniform: [0.01, 0.1]}}}",
        "spec.yaml: search.space.lr: unknown field (did you mean train.lr?)", id="unknown-space-no-section"),
    bad("search: {space: {colour: {choice: [red]}}}",
        "spec.yaml: search.space.colour: unknown field (a field of data, model, train, such as train.lr)",
        id="unknown-space-no-match"),
    bad("search: {space: {scheduler.grace_period: {int: [1, 3]}}}",
        "spec.yaml: search.space.scheduler.grace_period: only fields of data, model, train can be searched "
        "(scheduler.grace_period is one setting for the whole sweep)", id="space-not-a-trial-field"),
    # -- name
    bad("# no name\ndata: {dataset: digits}",
        "spec.yaml: name: required field is missing (a short name such as my-sweep)", id="name-missing"),
    bad("name:\n", "spec.yaml: name: required field is missing (a short name such as my-sweep)", id="name-null"),
    bad("name: my sweep",
        "spec.yaml: name: 'my sweep' is not allowed (1-64 letters, digits, '_', '.' or '-'; "
        "it names folders and the MLflow experiment)", id="name-space"),
    bad("name: ..",
        "spec.yaml: name: '..' is not allowed (1-64 letters, digits, '_', '.' or '-'; "
        "it names folders and the MLflow experiment)", id="name-dot-dot"),
    bad(f"name: {'x' * 65}", "spec.yaml: name: is too long: 65 characters (at most 64)", id="name-too-long"),
    bad("name: 2024", "spec.yaml: name: expected text (got 2024)", id="name-number"),
    # -- wrong types, YAML 1.1 bools
    bad("train: {lr: abc}", "spec.yaml: train.lr: expected a number (got 'abc')", id="type-number"),
    bad("model: {residual: yes please}",
        "spec.yaml: model.residual: expected true or false (got 'yes please')", id="type-bool"),
    bad("model: {residual: 1}", "spec.yaml: model.residual: expected true or false (got 1)", id="type-bool-from-int"),
    bad("train: {epochs: 2.5}", "spec.yaml: train.epochs: expected a whole number (got 2.5)", id="type-whole"),
    bad("train: {epochs: yes}", "spec.yaml: train.epochs: expected a whole number (got true)", id="bool-as-int"),
    bad("train: {lr: on}", "spec.yaml: train.lr: expected a number (got true)", id="bool-as-float"),
    bad("train: {threads: many}",
        "spec.yaml: train.threads: expected a whole number or null (got 'many')", id="type-nullable"),
    bad("train: {lr: .inf}", "spec.yaml: train.lr: expected a finite number (got .inf)", id="type-infinite"),
    bad("tracking: {experiment: 12}",
        "spec.yaml: tracking.experiment: expected text or null (got 12)", id="type-text"),
    bad("tracking: {experiment: ''}",
        "spec.yaml: tracking.experiment: must not be empty (leave the field out or write null for the default)",
        id="empty-text"),
    bad("train: [lr, 0.1]", "spec.yaml: train: expected a mapping of fields (got ['lr', 0.1])", id="section-list"),
    bad("# no name\n- name: t\n- data: {}",
        "spec.yaml: expected a mapping of sections (name:, data:, train:, ...) at the top level "
        "(got [{name: 't'}, {data: {}}])", id="top-level-list"),
    # -- space entries
    bad("search: {space: {train.lr: {logunform: [0.01, 0.1]}}}",
        "spec.yaml: search.space.train.lr: unknown kind 'logunform' (did you mean loguniform?)", id="kind-typo"),
    bad("search: {space: {train.lr: {gaussian: [0, 1]}}}",
        "spec.yaml: search.space.train.lr: unknown kind 'gaussian' (one of loguniform, uniform, int, choice)",
        id="kind-unknown"),
    bad("search: {space: {train.lr: {loguniform: [0.01, 0.1], choice: [0.1]}}}",
        "spec.yaml: search.space.train.lr: needs exactly one kind, got loguniform and choice "
        "(one of loguniform, uniform, int, choice)", id="kind-two"),
    bad("search: {space: {train.lr: 0.1}}",
        "spec.yaml: search.space.train.lr: expected {kind: ...} with kind one of loguniform, uniform, int, "
        "choice (got 0.1; to fix one value, set train.lr in its section instead)", id="entry-scalar"),
    bad("search: {space: {model.residual: [true, false]}}",
        "spec.yaml: search.space.model.residual: expected {kind: ...} with kind one of loguniform, uniform, "
        "int, choice (got [true, false]; for a list of values write {choice: [true, false]})", id="entry-list"),
    bad("search: {space: {train.lr: {loguniform: [0, 0.1]}}}",
        "spec.yaml: search.space.train.lr: loguniform needs 0 < low < high (got [0, 0.1])", id="loguniform-zero"),
    bad("search: {space: {model.width: {uniform: [2, 0.5]}}}",
        "spec.yaml: search.space.model.width: uniform needs low < high (got [2, 0.5])", id="uniform-reversed"),
    bad("search: {space: {train.batch_size: {int: [16, 64.5]}}}",
        "spec.yaml: search.space.train.batch_size: high: expected a whole number (got 64.5)", id="int-not-whole"),
    bad("search: {space: {train.lr: {loguniform: [abc, 0.1]}}}",
        "spec.yaml: search.space.train.lr: low: expected a number (got 'abc')", id="range-not-number"),
    bad("search: {space: {train.lr: {loguniform: 0.1}}}",
        "spec.yaml: search.space.train.lr: loguniform takes [low, high] (got 0.1)", id="range-not-pair"),
    bad("search: {space: {model.dropout: {uniform: [0.5, 2]}}}",
        "spec.yaml: search.space.model.dropout: high: must be >= 0 and < 1 (got 2)", id="range-outside-field"),
    bad("search: {space: {model.activation: {choice: [none, gelu]}}}",
        "spec.yaml: search.space.model.activation: 'gelu' is not allowed (one of none, relu, elu)",
        id="choice-invalid-enum"),
    bad("search: {space: {train.lr: {choice: [0.1, -1, x]}}}",
        "spec.yaml: search.space.train.lr: must be > 0 (got -1)",
        "spec.yaml: search.space.train.lr: expected a number (got 'x')", id="choice-invalid-numbers"),
    bad("search: {space: {model.activation: {choice: []}}}",
        "spec.yaml: search.space.model.activation: choice needs at least one value "
        "(e.g. choice: [none, relu, elu])", id="choice-empty"),
    bad("search: {space: {model.activation: {choice: relu}}}",
        "spec.yaml: search.space.model.activation: choice takes a list of values (got 'relu')", id="choice-not-list"),
    bad("search: {space: {train.lr: {choice: [0.1, 0.2, 1e-1]}}}",
        "spec.yaml: search.space.train.lr: choice lists 0.1 more than once (list each value once)",
        id="choice-duplicate"),
    bad("search: {space: {model.activation: {loguniform: [0.1, 1]}}}",
        "spec.yaml: search.space.model.activation: model.activation takes choice only "
        "(got loguniform; e.g. choice: [none, relu, elu])", id="enum-takes-choice-only"),
    bad("search: {space: {model.residual: {int: [0, 1]}}}",
        "spec.yaml: search.space.model.residual: model.residual takes choice only "
        "(got int; e.g. choice: [true, false])", id="bool-takes-choice-only"),
    bad("search: {space: {train.batch_size: {loguniform: [16, 256]}}}",
        "spec.yaml: search.space.train.batch_size: train.batch_size takes whole numbers, so loguniform "
        "cannot search it (use int: [low, high] or choice: [...])", id="int-field-float-kind"),
    # -- data-parallel trials: the global batch splits evenly over the workers
    bad("resources: {workers_per_trial: 3}",
        "spec.yaml: train.batch_size: 64 does not split evenly over resources.workers_per_trial (3) workers "
        "(use a multiple of 3: it is the global batch)", id="workers-uneven-batch"),
    bad("resources: {workers_per_trial: 2}\nsearch: {space: {train.batch_size: {choice: [32, 48, 51]}}}",
        "spec.yaml: search.space.train.batch_size: 51 does not split evenly over resources.workers_per_trial (2) "
        "workers (use a multiple of 2: it is the global batch)", id="workers-uneven-batch-choice"),
    bad("resources: {workers_per_trial: 2}\nsearch: {space: {train.batch_size: {int: [16, 64]}}}",
        "spec.yaml: search.space.train.batch_size: a range cannot be split over resources.workers_per_trial (2) "
        "workers: search a choice of multiples of 2", id="workers-batch-range"),
    bad("resources: {workers_per_trial: 0}",
        "spec.yaml: resources.workers_per_trial: must be between 1 and 1024 (got 0)", id="workers-zero"),
    bad("search: {space: [train.lr]}",
        "spec.yaml: search.space: expected a mapping of field path to {kind: ...} (got ['train.lr'])",
        id="space-not-mapping"),
    # -- grid, repeats
    bad("""
        search:
          algorithm: grid
          space:
            train.lr: {loguniform: [0.01, 0.1]}
            model.residual: {choice: [true, false]}
        """,
        "spec.yaml: search.space.train.lr: grid search needs choice entries; train.lr is loguniform "
        "(use choice: [...])", id="grid-non-choice"),
    bad("""
        search:
          algorithm: grid
          num_samples: 10
          space:
            model.residual: {choice: [true, false]}
            model.activation: {choice: [none, relu, elu]}
            train.lr: {choice: [0.01, 0.03, 0.1, 0.3]}
        """,
        "spec.yaml: search.num_samples: grid has 24 configurations but num_samples is 10 "
        "(a grid runs each configuration once: set num_samples: 24 or remove it)", id="grid-num-samples-small"),
    bad("""
        search:
          algorithm: grid
          num_samples: 30
          space: {model.residual: {choice: [true, false]}}
        """,
        "spec.yaml: search.num_samples: grid has 2 configurations but num_samples is 30 "
        "(a grid runs each configuration once: set num_samples: 2 or remove it)", id="grid-num-samples-large"),
    bad("search: {algorithm: grid}",
        "spec.yaml: search.space: grid search needs at least one choice entry "
        "(e.g. model.residual: {choice: [true, false]})", id="grid-empty-space"),
    bad("search: {repeats: 3, space: {train.seed: {choice: [1, 2]}}}",
        "spec.yaml: search.space.train.seed: cannot be searched when search.repeats > 1 "
        "(repeats set the seed to train.seed + repeat index; remove one)", id="seed-with-repeats"),
    # -- cross-field
    bad("train: {epochs: 2}\nscheduler: {kind: asha, grace_period: 5}",
        "spec.yaml: scheduler.grace_period: must be <= train.epochs (got 5; train.epochs is 2)", id="grace-epochs"),
    bad("scheduler: {kind: asha, grace_period: 5}\nsearch: {space: {train.epochs: {int: [3, 20]}}}",
        "spec.yaml: scheduler.grace_period: must be <= train.epochs "
        "(got 5; search.space can set train.epochs to 3)", id="grace-searched-epochs"),
    bad("train: {device: cuda}",
        "spec.yaml: train.device: cuda needs resources.gpus_per_trial > 0 (e.g. 1, or 0.5 to share a GPU)",
        id="cuda-without-gpus"),
    bad("search: {space: {train.device: {choice: [cpu, cuda]}}}",
        "spec.yaml: search.space.train.device: cuda needs resources.gpus_per_trial > 0 "
        "(e.g. 1, or 0.5 to share a GPU)", id="cuda-searched-without-gpus"),
    bad("data: {dataset: imagefolder}",
        "spec.yaml: data.root: required when data.dataset is imagefolder (the path of the image folder)",
        id="imagefolder-without-root"),
    bad("search: {metric: val_accuracy, mode: min}",
        "spec.yaml: search.mode: min with metric val_accuracy would search for the worst model (use mode: max)",
        id="metric-mode"),
    bad("search: {metric: val_loss}",
        "spec.yaml: search.mode: max with metric val_loss would search for the worst model (use mode: min)",
        id="metric-mode-default"),
    # -- tracking and storage
    bad("tracking: {uri: 'ftp://host/x'}",
        "spec.yaml: tracking.uri: 'ftp://host/x' is not a supported tracking URI (one of sqlite:///mlflow.db, "
        "file:./mlruns, http(s)://host:port, postgresql://..., mysql://..., databricks)", id="uri-scheme"),
    bad("tracking: {uri: mlruns}",
        "spec.yaml: tracking.uri: 'mlruns' is not a supported tracking URI (one of sqlite:///mlflow.db, "
        "file:./mlruns, http(s)://host:port, postgresql://..., mysql://..., databricks)", id="uri-plain-path"),
    bad("tracking: {uri: 'sqlite://mlflow.db'}",
        "spec.yaml: tracking.uri: 'sqlite://mlflow.db' needs three slashes and a file (sqlite:///mlflow.db "
        "for a relative path, sqlite:////abs/mlflow.db for an absolute one)", id="uri-sqlite-slashes"),
    bad("tracking: {uri: 'http://'}",
        "spec.yaml: tracking.uri: 'http://' has no host (such as http://localhost:5000)", id="uri-no-host"),
    bad("storage: {path: 's3://'}",
        "spec.yaml: storage.path: 's3://' has no bucket (s3://bucket/prefix)", id="s3-no-bucket"),
    bad("storage: {path: 's3:///prefix'}",
        "spec.yaml: storage.path: 's3:///prefix' has no bucket (s3://bucket/prefix)", id="s3-empty-bucket"),
    bad("storage: {path: 'gs://bucket/x'}",
        "spec.yaml: storage.path: 'gs://bucket/x' is not supported "
        "(a local folder, an NFS path or s3://bucket/prefix)", id="storage-scheme"),
    bad("storage: {endpoint_url: 'http://minio:9000'}",
        "spec.yaml: storage.endpoint_url: only used with an s3:// storage.path (storage.path is 'results')",
        id="endpoint-without-s3"),
    bad("storage: {path: 's3://b/p', endpoint_url: 'minio:9000'}",
        "spec.yaml: storage.endpoint_url: 'minio:9000' is not an http(s) URL (such as http://minio:9000)",
        id="endpoint-not-url"),
    # -- many problems at once, in document order, cross-field checks last
    bad("""
        name: bad name
        train:
          optimizer: adam
          lrr: 0.1
          lr: -1
          device: cuda
        model: {residual: maybe}
        search:
          metric: val_loss
          space:
            model.activation: {choice: [none, gelu]}
        extra: 1
        """,
        "spec.yaml: name: 'bad name' is not allowed (1-64 letters, digits, '_', '.' or '-'; "
        "it names folders and the MLflow experiment)",
        "spec.yaml: train.optimizer: 'adam' is not allowed (one of sgd, rmsprop, adamw)",
        "spec.yaml: train.lrr: unknown field (did you mean train.lr?)",
        "spec.yaml: train.lr: must be > 0 (got -1)",
        "spec.yaml: model.residual: expected true or false (got 'maybe')",
        "spec.yaml: search.space.model.activation: 'gelu' is not allowed (one of none, relu, elu)",
        "spec.yaml: extra: unknown field (top-level fields: name, data, model, train, search, scheduler, "
        "resources, failure, tracking, storage, ablation)",
        "spec.yaml: train.device: cuda needs resources.gpus_per_trial > 0 (e.g. 1, or 0.5 to share a GPU)",
        "spec.yaml: search.mode: max with metric val_loss would search for the worst model (use mode: min)",
        id="many-at-once"),
    bad("""
        train:
          lr: 0.1
          epochs: 3
          lr: 0.2
        """,
        "spec.yaml:5:3: duplicate key 'lr' (first at line 3; remove one)", id="duplicate-key"),
]


@pytest.mark.parametrize(("text", "expected"), BROKEN)
def test_broken_spec_messages(errors, text, expected):
    assert errors(text) == expected


def test_broken_spec_table_is_large():
    assert len(BROKEN) >= 30


def test_every_message_is_one_line():
    raw = {"name": "t", "train": {"lr": "a\nb"}, "data": {"a\nb": 1}}
    with pytest.raises(SpecError) as info:
        parse_spec(raw, source="spec.yaml")
    assert info.value.lines == ["spec.yaml: train.lr: expected a number (got 'a\\nb')",
                                "spec.yaml: data.'a\\nb': unknown field (fields of data: dataset, root, "
                                "image_size, val_fraction, augment, recipe, synthetic_size, synthetic_classes)"]


# ---- YAML quirks that are accepted ----

def test_yaml_quirks_accepted(spec_file):
    spec = load_spec(spec_file("""
        name: quirks
        data:             # every field commented out: all defaults
        train:
          lr: 1e-3        # PyYAML reads this as the string '1e-3'
          weight_decay: 4E-5
          epochs: 4.0     # a whole float is a whole number
          amp: yes        # YAML 1.1 bool
          compile: 'false'
        search:
          space:
            train.lr: {loguniform: [1e-4, 1e-1]}
            train.momentum: {choice: [0, 0.9]}
        """))
    assert spec.train.lr == 0.001 and isinstance(spec.train.lr, float)
    assert spec.train.weight_decay == 4e-5
    assert spec.train.epochs == 4 and isinstance(spec.train.epochs, int)
    assert spec.train.amp is True and spec.train.compile is False
    assert spec.search.space["train.lr"].as_yaml() == {"loguniform": [1e-4, 0.1]}
    assert spec.search.space["train.momentum"].values == [0.0, 0.9]  # float field: 0 becomes 0.0
    assert spec.data.dataset == "digits"


def test_yaml_bom_accepted(spec_file):
    assert load_spec(spec_file("\ufeffname: bom\n".encode())).name == "bom"


def test_optional_sections_and_nullable_fields(spec_file):
    spec = load_spec(spec_file("""
        name: n
        data: {dataset: imagefolder, root: /data/x}
        train: {threads: null, device: cuda}
        resources: {gpus_per_trial: 0.25}
        tracking: {uri: 'postgresql+psycopg2://u:p@db:5432/mlflow', experiment: null}
        storage: {path: 's3://bucket/sweeps', endpoint_url: 'http://minio:9000'}
        """))
    assert spec.data.root == "/data/x" and spec.experiment == "n"
    assert spec.storage.endpoint_url == "http://minio:9000"


@pytest.mark.parametrize("uri", ["sqlite:///mlflow.db", "sqlite:////tmp/m.db", "file:./mlruns", "file:///tmp/x",
                                 "http://localhost:5000", "https://mlflow.example.com",
                                 "postgresql://u:p@h:5432/db", "databricks", "databricks://profile"])
def test_tracking_uris_accepted(uri):
    assert parse_spec({"name": "t", "tracking": {"uri": uri}}, source="s").tracking.uri == uri


@pytest.mark.parametrize("path", ["results", "/mnt/nfs/sweeps", "./out/x", "s3://bucket", "s3://bucket/a/b"])
def test_storage_paths_accepted(path):
    assert parse_spec({"name": "t", "storage": {"path": path}}, source="s").storage.path == path


# ---- file-level errors ----

def test_missing_file(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    with pytest.raises(SpecError) as info:
        load_spec("spec.yaml")
    assert info.value.lines == ["spec.yaml: cannot read file: no such file (check the path)"]


def test_folder_instead_of_file(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "specs").mkdir()
    with pytest.raises(SpecError) as info:
        load_spec(Path("specs"))
    assert info.value.lines == ["specs: cannot read file: it is a folder (give the path of a .yaml spec file)"]


def test_not_utf8(errors):
    assert errors(b"name: \xff\n") == ["spec.yaml: cannot read file: not UTF-8 text (undecodable byte at offset 6)"]


def test_yaml_syntax_error_has_line_and_column(errors):
    assert errors("name: t\ntrain:\n  lr: 0.1\n   epochs: 2\n") == [
        "spec.yaml:4:10: YAML syntax error: mapping values are not allowed here"]


def test_yaml_syntax_error_points_at_the_cause(errors):
    assert errors("name: t\ntrain: {lr: 0.1\nmodel: {}\n") == [
        "spec.yaml:3:6: YAML syntax error: expected ',' or '}', but got ':' "
        "(while parsing a flow mapping at line 2, column 8)"]


@pytest.mark.parametrize("text", ["", "\n\n", "# only a comment\n", "---\n"])
def test_empty_file(errors, text):
    assert errors(text) == ["spec.yaml: the file is empty (a spec needs at least name: my-sweep)"]


def test_file_errors_come_with_override_errors(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    with pytest.raises(SpecError) as info:
        load_spec("nope.yaml", overrides=["train.lr"])
    assert info.value.lines == ["nope.yaml: cannot read file: no such file (check the path)",
                                "--set train.lr: missing '=' (write path=value, e.g. train.lr=0.1)"]


def test_loading_writes_nothing(spec_file, tmp_path):
    path = spec_file("name: t\nsearch: {space: {train.lr: {loguniform: [0.01, 0.1]}}}\n")
    before = sorted(tmp_path.rglob("*"))
    load_spec(path, overrides=["train.epochs=1"])
    assert sorted(tmp_path.rglob("*")) == before


# ---- --set overrides ----

def test_overrides_apply_with_yaml_types():
    spec = load_spec(REPO / "search_spaces" / "smoke.yaml", overrides=[
        "train.lr=0.1", "model.residual=false", "train.epochs=1", "search.space={}",
        "scheduler.kind=asha", "tracking.uri=", "name=smoke-2", "train.weight_decay=1e-4"])
    assert spec.train.lr == 0.1 and spec.model.residual is False and spec.train.epochs == 1
    assert spec.search.space == {} and spec.scheduler.kind == "asha" and spec.tracking.uri is None
    assert spec.name == "smoke-2" and spec.train.weight_decay == 1e-4
    assert spec.text == (REPO / "search_spaces" / "smoke.yaml").read_text()  # the file as written
    assert spec.overrides[0] == "train.lr=0.1"


def test_overrides_create_missing_sections_and_set_space_entries(spec_file):
    spec = load_spec(spec_file("name: t\ntrain:\nsearch: {space: {train.lr: {loguniform: [0.01, 0.1]}}}\n"),
                     overrides=["train.seed=3", "resources.cpus_per_trial=2",
                                "search.space.model.activation={choice: [none, elu]}",
                                "search.space.model.residual.choice=[true, false]",
                                "search.space.train.lr=null"])
    assert spec.train.seed == 3 and spec.resources.cpus_per_trial == 2.0
    assert {path: entry.as_yaml() for path, entry in spec.search.space.items()} == {
        "model.activation": {"choice": ["none", "elu"]}, "model.residual": {"choice": [True, False]}}


def test_override_recomputes_grid_size():
    spec = load_spec(REPO / "search_spaces" / "paper_ablation.yaml",
                     overrides=["search.space.train.lr.choice=[0.05]", "search.repeats=1"])
    assert (spec.grid_size(), spec.search.num_samples, spec.total_trials()) == (6, 6, 6)


def test_bad_overrides_are_reported_against_the_override(spec_file):
    with pytest.raises(SpecError) as info:
        load_spec(spec_file("name: t\ntrain: {lr: 0.1}\n"), overrides=[
            "train.lr", "=1", "train..lr=1", "train.lr=[0.1", "name.x=1",
            "train.epochs=0", "train.lrr=1", "search.space.train.lr={loguniform: [1, 0.1]}"])
    assert info.value.lines == [
        "--set train.lr: missing '=' (write path=value, e.g. train.lr=0.1)",
        "--set =1: the field path has an empty part (write path=value, e.g. train.lr=0.1)",
        "--set train..lr=1: the field path has an empty part (write path=value, e.g. train.lr=0.1)",
        "--set train.lr: '[0.1' is not a valid YAML value (expected ',' or ']', but got '<stream end>' "
        "(while parsing a flow sequence at line 1, column 1))",
        "--set name.x: name is 't', not a mapping",
        "--set train.epochs: must be between 1 and 10000 (got 0)",
        "--set train.lrr: unknown field (did you mean train.lr?)",
        "--set search.space.train.lr: loguniform needs 0 < low < high (got [1, 0.1])",
    ]


def test_parse_spec_takes_overrides_and_leaves_raw_alone():
    raw = {"name": "t", "train": {"lr": 0.1}}
    spec = parse_spec(raw, source="dict", overrides=["train.lr=0.2"])
    assert spec.train.lr == 0.2 and raw == {"name": "t", "train": {"lr": 0.1}}
    assert yaml.safe_load(spec.text) == raw


# ---- the resolved spec ----

def test_resolved_fills_every_default():
    resolved = parse_spec({"name": "t"}, source="s").resolved()
    assert resolved["train"] == {
        "epochs": 10, "batch_size": 64, "lr": 0.045, "optimizer": "sgd", "momentum": 0.9, "weight_decay": 1e-5,
        "lr_schedule": "paper", "seed": 0, "device": "auto", "amp": False, "channels_last": True,
        "threads": 1, "compile": "auto", "sync_bn": False}
    assert resolved["resources"] == {"cpus_per_trial": 1, "gpus_per_trial": 0, "workers_per_trial": 1}
    assert resolved["tracking"] == {"uri": None, "experiment": "t"}
    assert resolved["search"]["num_samples"] == 8 and resolved["search"]["space"] == {}
    assert set(resolved) == {"name", "data", "model", "train", "search", "scheduler", "resources",
                             "failure", "tracking", "storage"}
    assert yaml.safe_load(yaml.safe_dump(resolved)) == resolved == json.loads(json.dumps(resolved))


@pytest.mark.parametrize(("written", "expected"), [
    ({}, 3),                                                      # the default 10 epochs
    ({"train": {"epochs": 2}}, 1),                                # never below 1
    ({"train": {"epochs": 9}, "scheduler": {"kind": "asha", "grace_period": None}}, 3),
    ({"search": {"space": {"train.epochs": {"int": [7, 30]}}}}, 2),  # a third of the shortest trial
    ({"train": {"epochs": 9}, "scheduler": {"kind": "asha", "grace_period": 1}}, 1),  # what is written wins
])
def test_asha_grace_period_defaults_to_a_third_of_the_epochs(written, expected):
    spec = parse_spec({"name": "t", "scheduler": {"kind": "asha"}} | written, source="s")
    assert spec.scheduler.grace_period == expected
    assert spec.resolved()["scheduler"]["grace_period"] == expected


@pytest.mark.parametrize(("cpus", "workers", "threads", "expected"), [
    (1, 1, None, 1), (3.5, 1, None, 3), (0.5, 1, None, 1), (4, 1, 2, 2),
    (8, 2, None, 4), (2, 4, None, 1), (8, 2, 3, 3),  # a data-parallel trial: threads per worker
])
def test_threads_resolve_from_cpus(cpus, workers, threads, expected):
    spec = parse_spec({"name": "t", "resources": {"cpus_per_trial": cpus, "workers_per_trial": workers},
                       "train": {"threads": threads}}, source="s")
    assert spec.resolved()["train"]["threads"] == expected
    assert spec.base_trial_config()["train"]["threads"] == expected
    assert spec.train.threads == threads  # the model keeps what was written


@pytest.mark.parametrize(("workers", "written", "expected"), [(1, None, False), (2, None, True), (2, False, False)])
def test_sync_bn_is_on_by_default_only_for_data_parallel_trials(workers, written, expected):
    spec = parse_spec({"name": "t", "resources": {"workers_per_trial": workers}, "train": {"sync_bn": written}},
                      source="s")
    assert spec.resolved()["train"]["sync_bn"] is expected


def test_base_trial_config_and_set_dotted():
    spec = parse_spec({"name": "t", "model": {"width": 0.5}}, source="s")
    config = spec.base_trial_config()
    assert set(config) == {"data", "model", "train", "resources"} and config["model"]["width"] == 0.5
    set_dotted(config, "train.lr", 0.2)
    set_dotted(config, "model.residual", False)
    assert config["train"]["lr"] == 0.2 and config["model"]["residual"] is False
    assert spec.base_trial_config()["train"]["lr"] == 0.045  # a fresh copy each time
    with pytest.raises(KeyError, match="optim is not a section"):
        set_dotted(config, "optim.lr", 0.1)


def test_sha256_ignores_key_order_comments_and_written_defaults():
    a = parse_spec({"name": "t", "train": {"lr": 0.1, "epochs": 3}, "model": {"residual": False}}, source="a")
    b = parse_spec({"model": {"residual": False}, "train": {"epochs": 3, "lr": 0.1}, "name": "t"},
                   source="b", text="# a comment\n")
    c = parse_spec({**b.resolved()}, source="c")
    d = parse_spec({"name": "t", "train": {"lr": "1e-1", "epochs": 3.0}, "model": {"residual": False}}, source="d")
    assert len({a.sha256(), b.sha256(), c.sha256(), d.sha256()}) == 1
    assert len(a.sha256()) == 64 and a.sha256() == a.sha256()
    changed = parse_spec({"name": "t", "train": {"lr": 0.2, "epochs": 3}, "model": {"residual": False}}, source="e")
    assert changed.sha256() != a.sha256()


def test_total_trials_and_grid_size():
    random = parse_spec({"name": "t", "search": {"algorithm": "random", "num_samples": 5, "repeats": 3}}, source="s")
    assert (random.grid_size(), random.total_trials()) == (None, 15)
    grid = parse_spec({"name": "t", "search": {"algorithm": "grid", "repeats": 3, "space": {
        "model.residual": {"choice": [True, False]}, "model.activation": {"choice": ["none", "relu", "elu"]}}}},
        source="s")
    assert (grid.grid_size(), grid.search.num_samples, grid.total_trials()) == (6, 6, 18)
    explicit = parse_spec({"name": "t", "search": {"algorithm": "grid", "num_samples": 2,
                                                   "space": {"model.residual": {"choice": [True, False]}}}}, source="s")
    assert explicit.total_trials() == 2


def test_experiment_defaults_to_name():
    assert parse_spec({"name": "t"}, source="s").experiment == "t"
    assert parse_spec({"name": "t", "tracking": {"experiment": "xception"}}, source="s").experiment == "xception"


def test_spec_is_frozen():
    spec = parse_spec({"name": "t"}, source="s")
    with pytest.raises(Exception):
        spec.name = "u"  # type: ignore[misc]
    assert isinstance(spec, Spec)


# ---- SpecError ----

def test_spec_error_lines_and_pickling():
    error = SpecError(["a: x", "b: y"])
    assert error.lines == ["a: x", "b: y"] and str(error) == "a: x\nb: y"
    copy = pickle.loads(pickle.dumps(error))
    assert copy.lines == error.lines and str(copy) == str(error)


def test_spec_module_imports_no_heavy_frameworks():
    """Validation must stay instant: importing the spec may not pull in torch, ray or mlflow."""
    code = ("import sys, xsweep.spec; heavy = [m for m in ('torch', 'ray', 'mlflow', 'optuna') "
            "if m in sys.modules]; print(heavy); sys.exit(1 if heavy else 0)")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stdout + result.stderr


def test_a_bare_override_string_is_one_override():
    assert parse_spec({"name": "t"}, source="s", overrides="train.lr=0.2").overrides == ("train.lr=0.2",)
