"""What a sweep keeps in its folder's xsweep.json, typed: read and written here only.

    {"spec_text", "spec_source", "overrides", "parent_run_id", "experiment_id", "workdir", "tracking_uri",
     "versions": [{"version": 2, "overrides": [...], "trials": 4, "earlier": {...}}, ...],
     "ablation": {"1": {...AblationState...}, ...}}

Version 1 is the record's own spec_text and overrides; `xsweep extend` appends the later ones
(versions.py). `earlier` is what the versions (or an ablation's phase) before ended with, so that
the counts and the best trial a later version prints stay those of the whole sweep. Keys a record
written by an older xsweep lacks read as their defaults.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field

from xsweep.cluster.storage import Storage, read_sweep_record, write_sweep_record
from xsweep.spec import Spec, load_spec_text
from xsweep.tracking.store import resolve_uri


@dataclass
class BestTrial:
    """The best trial of a sweep, as its summary prints it and a later version compares against it."""
    trial_id: str | None
    run_id: str | None
    name: str | None
    metric: str
    value: float
    searched: dict = field(default_factory=dict)
    config: dict | None = None  # the exact config it trained with
    variant: dict | None = None  # an ablation's best variant: {"label", "mean", "n"} over phase 2's seeds
    model: dict | None = None  # its registered model: {"version", "alias_kept_by"} (best_model.py)
    earlier: bool = False  # of an earlier version of the sweep

    def to_json(self) -> dict:
        return asdict(self)

    @classmethod
    def from_json(cls, data: dict | None) -> BestTrial | None:
        if not data:
            return None
        known = cls.__dataclass_fields__
        return cls(**{key: value for key, value in data.items() if key in known})


@dataclass
class Earlier:
    """What the sweep ended with before this version (or, in an ablation's phase 2, before it)."""
    counts: dict[str, int] = field(default_factory=dict)  # trials per status
    best: BestTrial | None = None
    phase: str | None = None  # "tune": this is an ablation's phase 2, after phase 1
    phase_counts: dict[str, int] | None = None  # phase 1's own counts
    run_ids: list[str] = field(default_factory=list)  # phase 1's trial runs, owned too (no orphans)

    def to_json(self) -> dict:
        data = {"counts": self.counts, "best": self.best.to_json() if self.best else None,
                "phase": self.phase, "phase_counts": self.phase_counts, "run_ids": self.run_ids}
        return {key: value for key, value in data.items() if value not in (None, [])}

    @classmethod
    def from_json(cls, data: dict | None) -> Earlier:
        data = data or {}
        return cls(counts=dict(data.get("counts", {})), best=BestTrial.from_json(data.get("best")),
                   phase=data.get("phase"), phase_counts=data.get("phase_counts"),
                   run_ids=list(data.get("run_ids", [])))


@dataclass
class Version:
    version: int
    overrides: list[str]
    earlier: Earlier = field(default_factory=Earlier)
    trials: int | None = None  # how many trials the version runs itself (None: its spec's)

    def to_json(self) -> dict:
        data = {"version": self.version, "overrides": self.overrides, "earlier": self.earlier.to_json()}
        return data if self.trials is None else dict(data, trials=self.trials)

    @classmethod
    def from_json(cls, data: dict) -> Version:
        return cls(version=data["version"], overrides=list(data["overrides"]),
                   earlier=Earlier.from_json(data.get("earlier")), trials=data.get("trials"))


@dataclass
class AblationState:
    """A version's ablation (phases.py): phase 1's variants, then phase 2's plan once it starts, so that
    `xsweep resume` continues phase 2 with the same plan, or phase 1 and then phase 2."""
    variants: list[dict] | None = None  # phase 1's (None: every variant)
    earlier_picked: list[dict] = field(default_factory=list)  # what earlier versions confirmed
    first_new_seed: int = 1
    phase: str | None = None  # "confirm" once phase 2 is planned
    picked: list[dict] = field(default_factory=list)
    missing: list[str] = field(default_factory=list)
    items: list[dict] = field(default_factory=list)
    earlier: Earlier | None = None  # what phase 2's summary adds to

    def to_json(self) -> dict:
        data = asdict(self)
        data["earlier"] = self.earlier.to_json() if self.earlier else None
        return {key: value for key, value in data.items() if value is not None}

    @classmethod
    def from_json(cls, data: dict) -> AblationState:
        known = {key: value for key, value in data.items() if key in cls.__dataclass_fields__}
        return cls(**dict(known, earlier=Earlier.from_json(data["earlier"]) if data.get("earlier") else None))


@dataclass
class SweepRecord:
    spec_text: str
    spec_source: str
    overrides: list[str]
    parent_run_id: str
    experiment_id: str
    workdir: str
    tracking_uri: str | None = None  # absent in records of the first xsweep versions
    later_versions: list[Version] = field(default_factory=list)  # `xsweep extend`'s, 2, 3, ...
    ablation: dict[int, AblationState] = field(default_factory=dict)

    def to_json(self) -> dict:
        data = {"spec_text": self.spec_text, "spec_source": self.spec_source, "overrides": self.overrides,
                "parent_run_id": self.parent_run_id, "experiment_id": self.experiment_id, "workdir": self.workdir,
                "tracking_uri": self.tracking_uri}
        if self.later_versions:
            data["versions"] = [v.to_json() for v in self.later_versions]
        if self.ablation:
            data["ablation"] = {str(version): state.to_json() for version, state in self.ablation.items()}
        return {key: value for key, value in data.items() if value is not None}

    @classmethod
    def from_json(cls, data: dict) -> SweepRecord:
        return cls(spec_text=data["spec_text"], spec_source=data["spec_source"], overrides=list(data["overrides"]),
                   parent_run_id=data["parent_run_id"], experiment_id=data["experiment_id"],
                   workdir=data["workdir"], tracking_uri=data.get("tracking_uri"),
                   later_versions=[Version.from_json(v) for v in data.get("versions", [])],
                   ablation={int(version): AblationState.from_json(state)
                             for version, state in data.get("ablation", {}).items()})

    # ---- versions ----------------------------------------------------------------------------
    def versions(self) -> list[Version]:
        """Every version of the sweep, the first included, oldest first."""
        return [Version(version=1, overrides=list(self.overrides)), *self.later_versions]

    def latest(self) -> Version:
        return self.versions()[-1]

    def spec_of(self, version: Version | None = None) -> Spec:
        """The spec a version ran (the latest when `version` is None)."""
        version = version or self.latest()
        return load_spec_text(self.spec_text, source=self.spec_source, overrides=version.overrides)

    def tracking_uri_for(self, spec: Spec) -> str:
        """The tracking store the sweep wrote to: the URI the record holds, or for a record without one,
        the one rule (tracking/store.py) applied in the folder the sweep was run from."""
        return self.tracking_uri or resolve_uri(spec.tracking.uri, workdir=self.workdir)

    # ---- an ablation's state -----------------------------------------------------------------
    def ablation_state(self, version: int) -> AblationState:
        """The version's ablation state (created empty when missing)."""
        return self.ablation.setdefault(version, AblationState())

    def every_picked(self) -> list[dict]:
        """The configurations every version so far picked to confirm, oldest first."""
        return [config for version in sorted(self.ablation) for config in self.ablation[version].picked]


def load_record(storage: Storage, sweep: str) -> SweepRecord | None:
    """The sweep folder's record; None when the folder has none (not a sweep)."""
    data = read_sweep_record(storage, sweep)
    return None if data is None else SweepRecord.from_json(data)


def save_record(storage: Storage, sweep: str, record: SweepRecord) -> None:
    write_sweep_record(storage, sweep, record.to_json())
