"""The sweep file: one YAML spec loaded into a typed, validated, frozen `Spec`.

    spec = load_spec("search_spaces/smoke.yaml", overrides=["train.epochs=1"])

One concern per module: schema (the pydantic models: fields, defaults, bounds), fields (per-field
rules and their one-line messages), space (search.space entries), checks (the whole document and
its cross-field checks), overrides (--set), load (reading the file), trial (a trial's config and
name from the spec and the searched values).
"""

from xsweep.errors import SpecError
from xsweep.spec.load import load_spec, load_spec_text, parse_spec
from xsweep.spec.schema import (
    DataSpec, FailureSpec, ModelSpec, ResourcesSpec, SchedulerSpec, SearchSpec, SpaceEntry, Spec,
    StorageSpec, TrackingSpec, TrainSpec,
)
from xsweep.spec.trial import set_dotted

__all__ = [
    "SpecError", "load_spec", "load_spec_text", "parse_spec", "set_dotted", "Spec", "SpaceEntry",
    "DataSpec", "ModelSpec", "TrainSpec", "SearchSpec", "SchedulerSpec", "ResourcesSpec", "FailureSpec",
    "TrackingSpec", "StorageSpec",
]
