"""`xsweep extend` of an ablation: add a factor level, or confirmation seeds, and train only what is
missing, as the sweep's next version (versions.py) under the same MLflow parent run:

    xsweep extend SWEEP --set ablation.confirm_seeds=5
    xsweep extend SWEEP --set 'search.space.model.width={choice: [0.25, 0.5, 1.0]}'

Phase 1 tunes the new variants only (a new level makes new combinations); phase 2 confirms them over
every seed, and the earlier variants, with the configurations they picked, over the new seeds only.
Everything else stays as it was, so that every trial of the verdict is comparable with every other.
"""

from __future__ import annotations

from xsweep.errors import SpecError
from xsweep.spec import Spec
from xsweep.spec.ablation import same_level
from xsweep.search.ablation import all_variants
from xsweep.tracking.writes import flatten

# What an extended ablation may change: the factors' levels (added, never removed) and the seeds.
CHANGEABLE = ("ablation.confirm_seeds", "search.num_samples")  # num_samples follows from the levels
HOW = "an extended ablation adds factor levels (search.space.<factor>) or ablation.confirm_seeds, nothing else"


def check_extension(old: Spec, new: Spec) -> tuple[list[dict], int]:
    """(the new spec's variants that the old one lacks, the first new seed repeat), or a SpecError
    in one line naming the field."""
    if old.ablation.sequential or new.ablation.sequential:
        raise SpecError(["ablation.confirm_seeds: a sequential confirmation cannot be extended (its rounds "
                         "and boundaries are planned to its max; start a new sweep with the levels and a larger max)"])
    before, after = flatten(old.resolved()), flatten(new.resolved())
    factors = [f"search.space.{path}" for path in old.ablation.factors]
    for key in sorted(set(before) | set(after)):
        if before.get(key) == after.get(key) or key in CHANGEABLE or key in factors:
            continue
        raise SpecError([f"--set {key}: {HOW} (start a new sweep to change {key})"])
    for path in old.ablation.factors:
        levels, kept = old.search.space[path].values or [], new.search.space[path].values or []
        gone = [v for v in levels if not any(same_level(v, k) for k in kept)]
        if gone:
            raise SpecError([f"--set search.space.{path}: an extended ablation keeps every level it had "
                             f"(add levels, do not remove {', '.join(map(str, gone))})"])
    seeds_before, seeds_after = old.ablation.confirm_seeds, new.ablation.confirm_seeds
    if seeds_after < seeds_before:
        raise SpecError([f"--set ablation.confirm_seeds: {seeds_after} is fewer than the {seeds_before} seeds "
                         "the sweep has confirmed (raise it, or leave it)"])
    known = [v for v in all_variants(old)]
    added = [v for v in all_variants(new) if not any(_same_variant(v, k) for k in known)]
    if not added and seeds_after == seeds_before:
        raise SpecError([f"--set: nothing to train ({HOW})"])
    return added, seeds_before + 1


def _same_variant(a: dict, b: dict) -> bool:
    return a.keys() == b.keys() and all(same_level(a[k], b[k]) for k in a)
