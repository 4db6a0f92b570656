"""A sweep saved before the search machinery left the driver's room (xsweep.sweep.searcher, ...) still
loads: Tune's pickles name the old module paths, which now import the moved modules."""

from __future__ import annotations

import pickle

from xsweep.search.ablation import ConfirmSearcher
from xsweep.search.searcher import SweepSearcher
from xsweep.sweep.saved_state import MOVED_MODULES, accept_moved_modules


def _saved_under_the_old_path(obj) -> bytes:
    """`obj` pickled as an xsweep whose module was xsweep.sweep.<name> would have pickled it."""
    new = type(obj).__module__
    old = next(before for before, after in MOVED_MODULES.items() if after == new)
    data = pickle.dumps(obj, protocol=0)  # protocol 0 names the module as plain text
    return data.replace(new.encode(), old.encode())


def test_state_naming_a_moved_module_loads_as_the_module_it_moved_to():
    searcher = ConfirmSearcher([{"train.lr": 0.05}], metric="val_accuracy", mode="max")
    saved = _saved_under_the_old_path(searcher)
    accept_moved_modules()
    loaded = pickle.loads(saved)
    assert type(loaded) is ConfirmSearcher and loaded.configurations == [{"train.lr": 0.05}]
    import xsweep.sweep.searcher as old

    assert old.SweepSearcher is SweepSearcher  # the same module object, not a second copy
