"""Validation of a raw spec (the parsed YAML mapping) into the values the Spec model is built from.

The document is walked in order, so problems come out in the order they appear in the file;
then the cross-field checks run, section by section. Every problem is collected rather than
stopping at the first, so one run of `xsweep validate` shows all that needs fixing.
Problems are (dotted field path, message) pairs; xsweep.spec adds the file name.
"""

from __future__ import annotations

import re
import urllib.parse
from typing import Any

from xsweep.metrics import METRICS
from xsweep.spec.fields import did_you_mean, key_text, number_text, section_rules, show
from xsweep.spec.schema import (
    SECTION_MODELS,
    SELECTED_BY,
    TRIAL_SECTIONS,
    Spec,
    SpaceEntry,
    grid_size,
    name_problem,
    unread_fields,
)
from xsweep.spec.ablation import check_ablation, variant_count
from xsweep.spec.objectives import check_objectives
from xsweep.spec.space import Problem, check_space, leaf_match
from xsweep.search.algorithms import ALGORITHMS
from xsweep.search.schedulers import SCHEDULERS
from xsweep.tracking.uri import uri_problem
from xsweep.training.datasets import DATASETS
from xsweep.training.models import MODELS

INVALID = object()  # stands for a value that failed its own check: cross-field checks skip it
NAME_EXAMPLE = "a short name such as my-sweep"
STORAGE_FORMS = "a local folder, an NFS path or s3://bucket/prefix"
_URL_SCHEME = re.compile(r"([A-Za-z][A-Za-z0-9+.-]*)://(.*)")


def check(raw: Any) -> tuple[dict[str, Any] | None, list[Problem]]:
    """(values for Spec.model_validate, []) if raw is a valid spec, else (None, problems)."""
    if raw is None:
        return None, [("", "the file is empty (a spec needs at least name: my-sweep)")]
    if not isinstance(raw, dict):
        return None, [("", f"expected a mapping of sections (name:, data:, train:, ...) at the top "
                           f"level (got {show(raw)})")]
    checked = _Checked()
    if raw.get("name") is None:
        checked.problems.append(("name", f"required field is missing ({NAME_EXAMPLE})"))
    for key, value in raw.items():
        if key == "name":
            checked.check_name(value)
        elif key in SECTION_MODELS:
            checked.check_section(key, value)
        elif key == "ablation":
            checked.ablation_raw = value  # checked with the cross fields: it refers to search.space
        else:
            checked.problems.append((key_text(key), _unknown_top_level(key_text(key))))
    checked.check_cross_fields()
    if checked.problems:
        return None, checked.problems
    return checked.values(), []


def _unknown_top_level(key: str) -> str:
    guess = did_you_mean(key, ["name", *SECTION_MODELS, "ablation"]) or leaf_match(key, all_field_paths())
    if guess:
        return f"unknown field (did you mean {guess}?)"
    return f"unknown field (top-level fields: name, {', '.join(SECTION_MODELS)}, ablation)"


def all_field_paths() -> list[str]:
    return [f"{section}.{field}" for section, model in SECTION_MODELS.items() for field in model.model_fields]


class _Checked:
    """The clean values and problems found so far."""

    def __init__(self) -> None:
        self.problems: list[Problem] = []
        self.name: str | None = None
        self.clean: dict[str, dict[str, Any]] = {section: {} for section in SECTION_MODELS}
        self.invalid: set[str] = set()  # paths given with a bad value; a section name for a whole section
        self.space: dict[str, SpaceEntry] = {}  # the valid entries
        self.space_keys: set[str] = set()  # every path the space names, valid or not
        self.space_complete = True  # false when search.space or any entry had a problem
        self.objectives: list[dict[str, str]] | None = None  # search.objectives, when written and valid
        self.ablation_raw: Any = None  # the ablation section as written (None: not an ablation)
        self.ablation: dict[str, Any] | None = None  # ... once checked (spec/ablation.py)

    # ---- single fields, in document order ----

    def check_name(self, value: Any) -> None:
        if value is None:
            return  # reported as missing
        name, problem = section_rules(Spec, "")["name"].parse(value)
        problem = problem or name_problem(name)
        if problem:
            self.problems.append(("name", problem))
        else:
            self.name = name

    def check_section(self, section: str, raw: Any) -> None:
        if raw is None:
            return  # `train:` with every field commented out: all defaults
        if not isinstance(raw, dict):
            self.problems.append((section, f"expected a mapping of fields (got {show(raw)})"))
            self.invalid.add(section)
            return
        rules = section_rules(SECTION_MODELS[section], section)
        for key, value in raw.items():
            path = f"{section}.{key_text(key)}"
            if section == "search" and key == "space":
                self._check_space(value)
            elif section == "search" and key == "warm_start":
                problem = _warm_start_problem(value)
                if problem:
                    self.problems.append((path, problem))
                    self.invalid.add(path)
                else:
                    self.clean[section][key] = value
            elif section == "search" and key == "objectives":
                self.objectives, problems = check_objectives(value)
                self.problems += problems
                if problems:
                    self.invalid.add(path)
            elif key in rules:
                clean, problem = rules[key].check(value)
                if problem is None and clean is not None and path in FIELD_CHECKS:
                    problem = FIELD_CHECKS[path](clean)
                if problem:
                    self.problems.append((path, problem))
                    self.invalid.add(path)
                else:
                    self.clean[section][key] = clean
            else:
                self.problems.append((path, _unknown_in_section(section, key_text(key))))

    def _check_space(self, raw: Any) -> None:
        self.space, problems = check_space(raw)
        self.problems += problems
        self.space_complete = not problems
        if isinstance(raw, dict):
            self.space_keys = {key for key in raw if isinstance(key, str)}

    # ---- reading values back for the cross-field checks ----

    def value(self, path: str) -> Any:
        """A field's clean value, its default if it was not written, or INVALID."""
        section, field = path.split(".")
        if section in self.invalid or path in self.invalid:
            return INVALID
        if field in self.clean[section]:
            return self.clean[section][field]
        return section_rules(SECTION_MODELS[section], section)[field].default

    def possible(self, path: str) -> list[Any]:
        """The values of a data/model/train field that trials may run with: the space's
        choices or range ends when it is searched, else the fixed value; [] if unknown."""
        if path in self.space:
            entry = self.space[path]
            return list(entry.values or []) if entry.kind == "choice" else [entry.low, entry.high]
        value = self.value(path)
        return [] if path in self.space_keys or value is INVALID else [value]

    def where(self, path: str) -> str:
        """Where to report a problem with a trial field: its space entry if it has one."""
        return f"search.space.{path}" if path in self.space_keys else path

    # ---- cross-field checks, section by section ----

    def check_cross_fields(self) -> None:
        for name in self.possible("data.dataset"):
            needs = DATASETS.get(name).requires_root if name in DATASETS else None
            if needs and None in self.possible("data.root"):
                self.problems.append((self.where("data.root"), f"required when data.dataset is {name} ({needs})"))
        if "recipe" in self.clean["data"] and "imagefolder" not in self.possible("data.dataset"):
            self.problems.append(("data.recipe", "only an imagefolder data set has a recipe (in-memory data sets "
                                                 "are padded, cropped and flipped a batch at a time): remove it"))
        if self.value("resources.gpus_per_trial") == 0 and "cuda" in self.possible("train.device"):
            self.problems.append((self.where("train.device"), "cuda needs resources.gpus_per_trial > 0 "
                                                              "(e.g. 1, or 0.5 to share a GPU)"))
        self._check_image_size()
        self._check_workers()
        self._check_search()
        self._check_classes_needed()
        if self.ablation_raw is not None:
            self.ablation, problems = check_ablation(self.ablation_raw, self)
            self.problems += problems
        for section, (selector, registry) in SELECTED_BY.items():
            self._check_fields_read(section, selector, registry)
        grace, epochs = self.value("scheduler.grace_period"), self.possible("train.epochs")
        if grace not in (None, INVALID) and epochs and grace > min(epochs):
            if "train.epochs" in self.space:
                allowed = f"search.space can set train.epochs to {min(epochs)}"
            else:
                allowed = f"train.epochs is {min(epochs)}"
            self.problems.append(("scheduler.grace_period",
                                  f"must be <= train.epochs (got {grace}; {allowed})"))
        path, endpoint = self.value("storage.path"), self.value("storage.endpoint_url")
        if endpoint not in (None, INVALID) and path is not INVALID and not path.startswith("s3://"):
            self.problems.append(("storage.endpoint_url", "only used with an s3:// storage.path "
                                                          f"(storage.path is {show(path)})"))

    def _check_image_size(self) -> None:
        """Every network a trial may train takes the images: Inception V3 needs 75x75 or more."""
        sizes = [size for size in self.possible("data.image_size") if isinstance(size, int)]
        for name in self.possible("model.arch"):
            least = MODELS.get(name).min_image_size if name in MODELS else 0
            if sizes and min(sizes) < least:
                self.problems.append((self.where("data.image_size"), f"{name} needs images of at least "
                                      f"{least}x{least} (got {min(sizes)}; set data.image_size: {least} or more)"))

    def _check_workers(self) -> None:
        """A data-parallel trial splits train.batch_size evenly over its workers."""
        workers = self.value("resources.workers_per_trial")
        if workers in (None, INVALID) or workers == 1:
            return
        sizes = self.possible("train.batch_size")
        if "train.batch_size" in self.space and self.space["train.batch_size"].kind != "choice":
            sizes = []  # a searched range: refused below, as every value in it would have to divide
            self.problems.append(("search.space.train.batch_size", f"a range cannot be split over "
                                  f"resources.workers_per_trial ({workers}) workers: search a choice of "
                                  f"multiples of {workers}"))
        uneven = [size for size in sizes if isinstance(size, int) and size % workers]
        if uneven:
            self.problems.append((self.where("train.batch_size"),
                                  f"{uneven[0]} does not split evenly over resources.workers_per_trial "
                                  f"({workers}) workers (use a multiple of {workers}: it is the global batch)"))

    def objective_metrics(self) -> list[str]:
        """The metrics searched on, the first being the one that picks "the best trial"."""
        if self.objectives is not None:
            return [o["metric"] for o in self.objectives]
        metric = self.value("search.metric")
        return [] if metric is INVALID else [metric]

    def _check_search(self) -> None:
        written = [f"search.{f}" for f in ("metric", "mode") if f in self.clean["search"]
                   or f"search.{f}" in self.invalid]
        if written and (self.objectives is not None or "search.objectives" in self.invalid):
            self.problems.append(("search.objectives", f"written beside {' and '.join(written)} (a search has "
                                  "either one metric and mode, or a list of objectives: remove one)"))
        metric, mode = self.value("search.metric"), self.value("search.mode")
        if INVALID not in (metric, mode):
            best = METRICS.get(metric).mode
            if mode != best:
                self.problems.append(("search.mode", f"{mode} with metric {metric} would search for "
                                                     f"the worst model (use mode: {best})"))
        algorithm = self.value("search.algorithm")
        if algorithm is not INVALID and ALGORITHMS.get(algorithm).choices_only:
            self._check_grid(algorithm)
        if algorithm is not INVALID and ALGORITHMS.get(algorithm).needs_a_range and self.space_complete and \
                all(entry.kind == "choice" for entry in self.space.values()):
            self.problems.append(("search.algorithm", f"{algorithm} searches ranges, and search.space has none "
                                  "(add one, such as train.lr: {loguniform: [0.01, 0.1]}, or use optuna-tpe)"))
        several = len(self.objective_metrics()) > 1
        if algorithm is not INVALID and several and not ALGORITHMS.get(algorithm).multi_objective:
            able = [a.name for a in ALGORITHMS if a.multi_objective]
            self.problems.append(("search.algorithm", f"{algorithm} searches one objective, and search.objectives "
                                  f"has {len(self.objective_metrics())} (use one of {', '.join(able)})"))
        self._check_scheduler_metric()
        repeats = self.value("search.repeats")
        if repeats is not INVALID and repeats > 1 and "train.seed" in self.space_keys:
            self.problems.append(("search.space.train.seed", "cannot be searched when search.repeats > 1 "
                                  "(repeats set the seed to train.seed + repeat index; remove one)"))

    def _check_classes_needed(self) -> None:
        """A metric measured only with enough classes (top-5 accuracy) needs data that has them;
        an image folder's classes are counted when the sweep starts (sweep/run.py)."""
        for metric in self.objective_metrics():
            need = METRICS.get(metric).min_classes
            for name in self.possible("data.dataset") if need else []:
                classes = DATASETS.get(name).classes if name in DATASETS else None
                if name == "synthetic":
                    classes = min(self.possible("data.synthetic_classes"), default=None)
                if isinstance(classes, int) and classes < need:
                    self.problems.append(("search.metric" if self.objectives is None else "search.objectives",
                                          f"{metric} needs data with at least {need} classes, and {name} has "
                                          f"{classes} (use val_accuracy)"))

    def _check_scheduler_metric(self) -> None:
        metric, searched = self.value("scheduler.metric"), self.objective_metrics()
        if metric not in (None, INVALID) and searched and metric not in searched:
            self.problems.append(("scheduler.metric", f"{metric} is not an objective of the search "
                                  f"(one of {', '.join(searched)})"))

    def _check_fields_read(self, section: str, selector: str, registry) -> None:
        """Every field written in `section` is read by the entry `section.selector` names: a setting
        the chosen algorithm or scheduler ignores would otherwise be silently without effect."""
        name = self.value(f"{section}.{selector}")
        if name is INVALID:
            return
        if f"{section}.{selector}" in self.space_keys:
            return  # each value searched reads its own fields
        unread = unread_fields(section, name)
        searched = [path.split(".", 1)[1] for path in self.space_keys
                    if section in TRIAL_SECTIONS and path.startswith(f"{section}.")]
        for field in [*self.clean[section], *searched]:
            if field in unread:
                readers = [entry.name for entry in registry if field in entry.fields]
                self.problems.append((self.where(f"{section}.{field}"), f"{section}.{selector} {name} does not "
                                      f"use it (remove it, or use {' or '.join(readers)})"))

    def _check_grid(self, algorithm: str) -> None:
        for path, entry in self.space.items():
            if entry.kind != "choice":
                self.problems.append((f"search.space.{path}", f"{algorithm} search needs choice entries; {path} "
                                                              f"is {entry.kind} (use choice: [...])"))
        if not self.space_complete or "search" in self.invalid:
            return  # the size of a grid with a broken entry is unknown
        if not self.space:
            self.problems.append(("search.space", f"{algorithm} search needs at least one choice entry "
                                                  "(e.g. model.residual: {choice: [true, false]})"))
            return
        num_samples = self.clean["search"].get("num_samples")
        size = self.grid_size()
        if num_samples is not None and size is not None and num_samples != size:
            self.problems.append(("search.num_samples", f"grid has {size} configurations but num_samples is "
                                  f"{num_samples} (a grid runs each configuration once: set num_samples: "
                                  f"{size} or remove it)"))

    def grid_size(self) -> int | None:
        return grid_size(self.space.values())

    # ---- the result ----

    def values(self) -> dict[str, Any]:
        out: dict[str, Any] = {"name": self.name}
        out.update({section: dict(fields) for section, fields in self.clean.items()})
        out["search"]["space"] = self.space
        if self.objectives is not None:
            out["search"]["metric"], out["search"]["mode"] = self.objectives[0]["metric"], self.objectives[0]["mode"]
            # One objective in list form is the one-objective search: one way to record it.
            out["search"]["objectives"] = self.objectives if len(self.objectives) > 1 else None
        algorithm = ALGORITHMS.get(self.value("search.algorithm"))
        if self.ablation is not None:
            out["ablation"] = self.ablation
            out["search"]["num_samples"] = variant_count(self.ablation, self.space) * self.ablation["budget"]
        if algorithm.choices_only and "num_samples" not in self.clean["search"]:
            out["search"]["num_samples"] = self.grid_size()
        # The fields the chosen algorithm and scheduler read and the spec left out: their entries' defaults.
        shape = {"epochs": self.possible("train.epochs"), "objective": self.objective_metrics()[0],
                 "num_samples": out["search"].get("num_samples", self.value("search.num_samples"))}
        for section, entry in (("search", algorithm), ("scheduler", SCHEDULERS.get(self.value("scheduler.kind")))):
            values = {field: self.value(f"{section}.{field}") for field in entry.fields}
            out[section].update({field: value for field, value in entry.defaults(values, **shape).items()
                                 if values.get(field) is None})
        return out


def _unknown_in_section(section: str, key: str) -> str:
    fields = list(SECTION_MODELS[section].model_fields)
    local = did_you_mean(key, fields)
    guess = f"{section}.{local}" if local else leaf_match(f"{section}.{key}", all_field_paths())
    if guess:
        return f"unknown field (did you mean {guess}?)"
    return f"unknown field (fields of {section}: {', '.join(fields)})"


# ---- checks a single field needs beyond its type and bounds; each returns a message or None ----

def _warm_start_problem(value: Any) -> str | None:
    if value is None:
        return None
    if not isinstance(value, dict) or set(value) != {"experiment"} or not isinstance(value["experiment"], str) \
            or not value["experiment"]:
        return f"expected {{experiment: NAME}}, the MLflow experiment whose trials seed the search (got {show(value)})"
    return None


def _gpus_problem(gpus: float) -> str | None:
    if gpus > 1 and not gpus.is_integer():
        return (f"fractions are allowed only below 1 (got {number_text(gpus)}; "
                "use a whole number of GPUs above 1)")
    return None


def _storage_path_problem(path: str) -> str | None:
    url = _URL_SCHEME.fullmatch(path)
    if url and url[1].lower() != "s3":
        return f"{show(path)} is not supported ({STORAGE_FORMS})"
    if url and not url[2].split("/", 1)[0]:
        return f"{show(path)} has no bucket (s3://bucket/prefix)"
    if not url and path.lower().startswith("s3:"):
        return f"{show(path)} is not an S3 URL (s3://bucket/prefix)"
    return None


def _endpoint_url_problem(url: str) -> str | None:
    parts = urllib.parse.urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.netloc:
        return f"{show(url)} is not an http(s) URL (such as http://minio:9000)"
    return None


FIELD_CHECKS = {
    "resources.gpus_per_trial": _gpus_problem,
    "tracking.uri": uri_problem,
    "storage.path": _storage_path_problem,
    "storage.endpoint_url": _endpoint_url_problem,
}
