"""The sweep spec's schema as pydantic models.

The Field(...) defaults and bounds here are the single source of truth: fields.py reads
them back to check raw YAML and to word its own messages, so a bound changed here changes
both validation and the message. Fields that name a registry entry (a dataset, a metric, a
search algorithm, a trial scheduler) say so with `OneOf(...)`: what they allow is the registry,
read when the spec is checked. Build a Spec through xsweep.spec.load_spec/parse_spec;
constructing these models directly skips the cross-field checks and the friendly messages.
"""

from __future__ import annotations

import hashlib
import json
import math
import re
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

# Aliased: SearchSpec's field `objectives` would shadow the function in its own annotations.
from xsweep.metrics import objectives as searchable_metrics
from xsweep.spec.fields import OneOf
from xsweep.search.algorithms import ALGORITHMS
from xsweep.search.schedulers import SCHEDULERS
from xsweep.training.datasets import DATASETS
from xsweep.training.models import DEFAULT_ARCH, MODELS
from xsweep.training.recipes import RECIPES

# The kinds a search-space entry can take, in the order messages list them.
SPACE_KINDS = ("loguniform", "uniform", "int", "choice")
# The sections one trial's config is made of; only their fields can be searched.
TRIAL_SECTIONS = ("data", "model", "train")
# Spec fields that record where the spec came from rather than what it asks for; they are
# not keys a user writes, and resolved()/sha256() leave them out so that moving a file or
# editing its comments does not change a sweep's identity.
META_FIELDS = ("source", "text", "overrides")

# The name becomes a folder under storage.path and the MLflow experiment name, so it is
# limited to characters every filesystem and URL accepts unquoted.
NAME_CHARS = re.compile(r"[A-Za-z0-9_.-]+")
NAME_MAX_LENGTH = 64  # keeps folder paths and MLflow run names readable


def name_problem(name: str) -> str | None:
    """Why `name` cannot name a sweep, or None if it can (shared by the checker and pydantic)."""
    if not name:
        return "must not be empty (a short name such as my-sweep)"
    if len(name) > NAME_MAX_LENGTH:
        return f"is too long: {len(name)} characters (at most {NAME_MAX_LENGTH})"
    # "." and ".." pass the character set but would make the sweep folder the storage root
    # or its parent.
    if not NAME_CHARS.fullmatch(name) or name in (".", ".."):
        return (f"{name!r} is not allowed (1-{NAME_MAX_LENGTH} letters, digits, '_', '.' or '-'; "
                "it names folders and the MLflow experiment)")
    return None


class _Section(BaseModel):
    # frozen: a loaded spec is the record of what a sweep ran; nobody should edit it in place.
    model_config = ConfigDict(extra="forbid", frozen=True)


class DataSpec(_Section):
    dataset: Annotated[str, OneOf(DATASETS.names)] = "digits"  # training/datasets.py
    # Required for imagefolder; for cifar10/100 null means "./data".
    root: str | None = Field(None, min_length=1)
    # Xception downsamples 32x before global pooling, so smaller images leave nothing to pool;
    # 1024 is far beyond the paper's 299 and guards against a typo costing all GPU memory.
    image_size: int = Field(32, ge=32, le=1024)
    val_fraction: float = Field(0.2, gt=0, lt=1)
    augment: bool = True  # training split only
    # How an image folder's images are cropped and flipped (training/recipes.py): the paper's
    # Inception-style recipe by default. In-memory data sets have their own (loaders.py).
    recipe: Annotated[str, OneOf(RECIPES.names)] = "inception"
    synthetic_size: int = Field(512, ge=16)  # enough for a train/val split of a few batches
    synthetic_classes: int = Field(10, ge=2)  # one class cannot be classified


class ModelSpec(_Section):
    arch: Annotated[str, OneOf(MODELS.names)] = DEFAULT_ARCH  # training/models.py; the rest: the fields it reads
    residual: bool = True
    activation: Literal["none", "relu", "elu"] = "none"  # between depthwise and pointwise conv
    # Channel multiplier; parameters grow about as width**2, so 4 is ~16x the paper's 23M.
    width: float = Field(1.0, gt=0, le=4)
    middle_blocks: int = Field(8, ge=0, le=32)  # the paper uses 8
    dropout: float = Field(0.5, ge=0, lt=1)  # 1 would drop everything


class TrainSpec(_Section):
    epochs: int = Field(10, ge=1, le=10000)
    batch_size: int = Field(64, ge=1, le=65536)
    lr: float = Field(0.045, gt=0)  # the paper's initial rate
    optimizer: Literal["sgd", "rmsprop", "adamw"] = "sgd"
    momentum: float = Field(0.9, ge=0, lt=1)  # 1 never forgets a gradient and diverges
    weight_decay: float = Field(1e-5, ge=0)  # the paper found 4e-5 "quite suboptimal"
    lr_schedule: Literal["constant", "paper", "cosine"] = "paper"  # paper = x0.94 every 2 epochs
    seed: int = Field(0, ge=0)
    device: Literal["auto", "cpu", "cuda"] = "auto"
    amp: bool = False  # on CPU this is bf16 autocast, so it is allowed there too
    channels_last: bool = True
    threads: int | None = Field(None, ge=1)  # per worker; null: its share of resources.cpus_per_trial, >= 1
    # torch.compile of the training step; auto: on a GPU only (training/fit.py `compiles` says why)
    compile: bool | Literal["auto"] = "auto"
    # BatchNorm statistics over the global batch, not each worker's share; null: on when the trial
    # has more than one worker (resources.workers_per_trial), where it is what the 1-worker run does.
    sync_bn: bool | None = None


def grid_size(entries) -> int | None:
    """How many configurations a space of choices holds; None where an entry is a range."""
    entries = list(entries)
    if any(entry.kind != "choice" for entry in entries):
        return None
    return math.prod(len(entry.values or []) for entry in entries)


class SpaceEntry(_Section):
    """One searched field: a range (low, high) for loguniform/uniform/int, or values for choice."""

    kind: Literal["loguniform", "uniform", "int", "choice"]
    low: int | float | None = None
    high: int | float | None = None
    values: list[Any] | None = None

    def as_yaml(self) -> dict[str, list[Any]]:
        """The entry in the form a spec file writes it, e.g. {"loguniform": [0.01, 0.2]}."""
        if self.kind == "choice":
            return {"choice": list(self.values or [])}
        return {self.kind: [self.low, self.high]}


class Objective(_Section):
    """One objective of a search: a metric (xsweep/metrics.py) and which way is better."""

    metric: Annotated[str, OneOf(searchable_metrics)]
    mode: Literal["max", "min"]


class WarmStart(_Section):
    """Another experiment whose finished trials seed a new sweep's searcher (search/history.py)."""

    experiment: str = Field(min_length=1)


class SearchSpec(_Section):
    algorithm: Annotated[str, OneOf(ALGORITHMS.names)] = "optuna-tpe"  # search/algorithms.py
    # For grid, parse_spec fills in the grid size when num_samples is not written.
    num_samples: int = Field(8, ge=1)
    max_concurrent: int = Field(2, ge=1)
    metric: Annotated[str, OneOf(searchable_metrics)] = "val_accuracy"  # xsweep/metrics.py
    mode: Literal["max", "min"] = "max"  # must be the metric's own direction (xsweep/metrics.py)
    space: dict[str, SpaceEntry] = Field(default_factory=dict)  # keyed by dotted path, e.g. train.lr
    repeats: int = Field(1, ge=1)  # seeds per configuration: train.seed + repeat index
    seed: int = Field(0, ge=0)  # the searcher's own seed
    # Several objectives, searched for their Pareto front, e.g. [{metric: val_accuracy, mode: max},
    # {metric: params, mode: min}]. parse_spec sets metric/mode to the first, which is what "best"
    # means wherever one trial is picked (summary, checkpoints, reproduce's default).
    objectives: list[Objective] | None = None
    population_size: int | None = Field(None, ge=2)  # nsga2: trials per generation (null: algorithms.py)
    # {experiment: NAME}: that experiment's finished trials that this space holds seed the search.
    warm_start: WarmStart | None = None

    @property
    def objective_list(self) -> tuple[Objective, ...]:
        """Every objective, the first being metric/mode: one for a one-objective search."""
        return tuple(self.objectives) if self.objectives else (Objective(metric=self.metric, mode=self.mode),)

    @property
    def multi_objective(self) -> bool:
        return len(self.objective_list) > 1


class SchedulerSpec(_Section):
    kind: Annotated[str, OneOf(SCHEDULERS.names)] = "fifo"  # search/schedulers.py
    # Epochs before ASHA may stop a trial. Not written (or null): parse_spec fills in a third of
    # train.epochs, at least 1 -- after a single epoch of a decaying schedule many configurations
    # are still at chance, the eventual best among them (benchmarks/results/search_efficiency.md).
    grace_period: int | None = Field(None, ge=1)
    reduction_factor: float = Field(2, ge=2)  # below 2 ASHA barely stops anything
    # The objective that decides which trials go on; null: parse_spec fills in the first objective.
    metric: Annotated[str | None, OneOf(searchable_metrics)] = None
    # hyperband: successive-halving brackets, each starting to stop trials grace_period x
    # reduction_factor^k epochs in; null: parse_spec fills in every bracket that fits train.epochs.
    brackets: int | None = Field(None, ge=1)

    def mode_of(self, search: SearchSpec) -> str | None:
        """The direction of scheduler.metric: that of the search objective it names."""
        return next((o.mode for o in search.objective_list if o.metric == self.metric), None)


class ResourcesSpec(_Section):
    cpus_per_trial: float = Field(1, gt=0)  # split evenly over the trial's workers
    gpus_per_trial: float = Field(0, ge=0)  # fractions below 1 share a GPU; split over the workers too
    # Data-parallel workers of one trial (DistributedDataParallel under Ray Train), placed by Ray
    # on one node or several; train.batch_size stays the global batch.
    workers_per_trial: int = Field(1, ge=1, le=1024)


class FailureSpec(_Section):
    max_failures: int = Field(2, ge=-1)  # -1 = retry forever, Tune's convention


class TrackingSpec(_Section):
    uri: str | None = Field(None, min_length=1)  # null: MLflow's default, sqlite:///mlflow.db here
    experiment: str | None = Field(None, min_length=1)  # null: the spec's name


class StorageSpec(_Section):
    path: str = Field("results", min_length=1)  # local folder, NFS path or s3://bucket/prefix
    endpoint_url: str | None = Field(None, min_length=1)  # S3-compatible endpoint (MinIO); s3:// only


MAX_CONFIRM_SEEDS = 20  # a sequential design's most seeds per variant: its boundaries are drawn up to there


class SequentialSeeds(_Section):
    """`confirm_seeds: {min: 3, max: 10}`: a sequential confirmation (report/sequential.py), `min`
    seeds for every variant, then one seed a round for the variants whose comparisons are open."""

    min: int = Field(3, ge=2)  # one seed gives no interval
    max: int = Field(10, ge=2, le=MAX_CONFIRM_SEEDS)


class AblationSpec(_Section):
    """An ablation study (spec/ablation.py checks it, search/ablation.py runs it): the `factors`
    compared, each variant (combination of their levels) tuning `tune` with `budget` trials, then
    its best configuration re-trained with `confirm_seeds` seeds, the same for every variant: a
    number (a fixed design), or {min, max} (a sequential one)."""

    factors: list[str]
    tune: list[str]
    budget: int = Field(4, ge=1)
    confirm_seeds: int | SequentialSeeds = 3  # one seed gives no interval: 2 or more (spec/ablation.py)
    # A confirmation seed always draws its trial's initial weights, data order and augmentation;
    # true: it also redraws the validation split (a dataset without a fixed one, such as digits).
    split_seed: bool = False
    reference: dict[str, Any] = Field(default_factory=dict)  # factor -> level; filled in by parse_spec

    @property
    def sequential(self) -> bool:
        return isinstance(self.confirm_seeds, SequentialSeeds)

    @property
    def min_seeds(self) -> int:
        """The seeds every confirmed variant gets."""
        return self.confirm_seeds.min if self.sequential else self.confirm_seeds

    @property
    def max_seeds(self) -> int:
        """The most seeds a confirmed variant can get."""
        return self.confirm_seeds.max if self.sequential else self.confirm_seeds

    def seeds_text(self) -> str:
        """'3 seeds' or '3 to 10 seeds (sequential)'."""
        if self.sequential:
            return f"{self.min_seeds} to {self.max_seeds} seeds (sequential)"
        return f"{self.confirm_seeds} seeds"


class Spec(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str = Field(min_length=1, max_length=NAME_MAX_LENGTH)
    data: DataSpec = Field(default_factory=DataSpec)
    model: ModelSpec = Field(default_factory=ModelSpec)
    train: TrainSpec = Field(default_factory=TrainSpec)
    search: SearchSpec = Field(default_factory=SearchSpec)
    scheduler: SchedulerSpec = Field(default_factory=SchedulerSpec)
    resources: ResourcesSpec = Field(default_factory=ResourcesSpec)
    failure: FailureSpec = Field(default_factory=FailureSpec)
    tracking: TrackingSpec = Field(default_factory=TrackingSpec)
    storage: StorageSpec = Field(default_factory=StorageSpec)
    ablation: AblationSpec | None = None
    source: str = "<spec>"  # the path as given
    text: str = ""  # the file as written, for the MLflow artifact
    overrides: tuple[str, ...] = ()  # the --set lines applied on top of text

    @field_validator("name")
    @classmethod
    def _valid_name(cls, name: str) -> str:
        # A safety net only: parse_spec reports this with the file name before we get here.
        problem = name_problem(name)
        if problem:
            raise ValueError(problem)
        return name

    @property
    def experiment(self) -> str:
        return self.tracking.experiment or self.name

    @property
    def threads(self) -> int:
        """train.threads, or one thread per CPU reserved for each of the trial's workers (at least one)."""
        if self.train.threads is not None:
            return self.train.threads
        return max(1, int(self.resources.cpus_per_trial / self.resources.workers_per_trial))

    @property
    def sync_bn(self) -> bool:
        return self.resources.workers_per_trial > 1 if self.train.sync_bn is None else self.train.sync_bn

    def resolved(self) -> dict[str, Any]:
        """Every field with its default filled in, as plain YAML/JSON types.

        The result is itself a valid spec (parse_spec(spec.resolved()) gives the same
        resolved()); source, text and overrides are left out (see META_FIELDS).
        """
        out = self.model_dump(mode="json", exclude=set(META_FIELDS))
        out["train"]["threads"] = self.threads
        out["train"]["sync_bn"] = self.sync_bn
        out["tracking"]["experiment"] = self.experiment
        out["search"]["space"] = {path: entry.as_yaml() for path, entry in self.search.space.items()}
        # One way to write the objectives, so that parse_spec(resolved()) reads the same spec.
        for field in (("metric", "mode") if self.search.objectives else ("objectives",)):
            del out["search"][field]
        if self.search.warm_start is None:
            del out["search"]["warm_start"]  # as before warm starts existed: the same sweeps hash the same
        if self.ablation is None:
            del out["ablation"]
        if out["data"]["dataset"] != "imagefolder" and "data.dataset" not in self.search.space:
            del out["data"]["recipe"]  # read by image folders only: other sweeps hash as before
        for section, (selector, _) in SELECTED_BY.items():
            for field in unread_fields(section, out[section][selector]):
                del out[section][field]
        if out["model"]["arch"] == DEFAULT_ARCH and "model.arch" not in self.search.space:
            del out["model"]["arch"]  # an Xception sweep hashes the same whether or not it names its arch
        return out

    def base_trial_config(self) -> dict[str, Any]:
        """{"data": ..., "model": ..., "train": ..., "resources": ...} before the searched values are applied."""
        resolved = self.resolved()
        # The resources travel too: a trial needs its worker count, and MLflow logs it as a param.
        config = {section: resolved[section] for section in (*TRIAL_SECTIONS, "resources")}
        # The seed of the validation split (and of synthetic images): train.seed for every trial,
        # so that seed repeats differ in weights, order and augmentation and are measured on one
        # split; None under ablation.split_seed: each trial's own seed (spec/trial.py).
        per_seed = self.ablation is not None and self.ablation.split_seed
        config["data"] = {**config["data"], "split_seed": None if per_seed else self.train.seed}
        return config

    def sha256(self) -> str:
        """Hash of resolved() as canonical JSON: the same sweep gives the same hash whatever
        the key order, comments or defaults written out."""
        canonical = json.dumps(self.resolved(), sort_keys=True, separators=(",", ":"), ensure_ascii=False)
        return hashlib.sha256(canonical.encode("utf-8")).hexdigest()

    def max_epochs(self) -> int:
        """The most epochs any trial may run: train.epochs, or the top of its search space entry."""
        entry = self.search.space.get("train.epochs")
        if entry is None:
            return self.train.epochs
        return int(max(entry.values or [])) if entry.kind == "choice" else int(entry.high)

    def grid_size(self) -> int | None:
        """The configurations of its grid, for an algorithm that runs a grid (None for any other)."""
        if not ALGORITHMS.get(self.search.algorithm).choices_only:
            return None
        return grid_size(self.search.space.values())

    def variant_count(self) -> int:
        """An ablation's variants: every combination of its factors' levels (1 for other sweeps)."""
        if self.ablation is None:
            return 1
        return math.prod(len(self.search.space[path].values or []) for path in self.ablation.factors)

    def total_trials(self) -> int:
        # For grid, num_samples is the grid size (parse_spec fills it in and rejects others); for an
        # ablation, its variants x budget, to which the confirmation phase adds variants x seeds.
        confirm = self.variant_count() * self.ablation.max_seeds if self.ablation else 0  # at most
        return self.search.num_samples * self.search.repeats + confirm


# Sections whose entry a field selects (search.algorithm, scheduler.kind): of the fields that
# some entry reads, the chosen one's are used and the others are left out of the resolved spec
# (and refused when written: see checks.py).
SELECTED_BY = {"search": ("algorithm", ALGORITHMS), "scheduler": ("kind", SCHEDULERS), "model": ("arch", MODELS)}


def unread_fields(section: str, chosen: str) -> set[str]:
    """The fields of `section` that some entry of its registry reads but the `chosen` one does not."""
    _, registry = SELECTED_BY[section]
    return {field for entry in registry for field in entry.fields} - set(registry.get(chosen).fields)


# Section name -> model, in the order sections are documented and resolved.
SECTION_MODELS: dict[str, type[BaseModel]] = {
    name: info.annotation  # type: ignore[misc]
    for name, info in Spec.model_fields.items()
    if isinstance(info.annotation, type) and issubclass(info.annotation, BaseModel)
}
