"""The package's shape: its rooms keep to their side of the driver/trial split, importing a module
changes nothing global, no module imports another that imports it back, and no two functions of
one name do different things."""

from __future__ import annotations

import ast
import json
import os
import subprocess
import sys
from collections import defaultdict
from pathlib import Path

import pytest


PACKAGE = Path(__file__).resolve().parent.parent / "platform" / "xsweep"


def _modules() -> list[str]:
    names = []
    for path in sorted(PACKAGE.rglob("*.py")):
        parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
        names.append(".".join(parts[:-1] if parts[-1] == "__init__" else parts))
    return names


def _source(module: str) -> Path:
    path = PACKAGE.parent / module.replace(".", "/")
    return path / "__init__.py" if path.is_dir() else path.with_suffix(".py")


def _python(code: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300,
                          env=dict(os.environ))


def _imported_after(modules: list[str], *, watch: tuple[str, ...]) -> list[str]:
    code = f"""
import importlib, json, sys
for name in {modules!r}:
    importlib.import_module(name)
print(json.dumps(sorted(m for m in {watch!r} if m in sys.modules)))
"""
    proc = _python(code)
    assert proc.returncode == 0, proc.stderr
    return json.loads(proc.stdout.strip().splitlines()[-1])


def test_nothing_under_training_imports_mlflow():
    training = [m for m in _modules() if m.startswith("xsweep.training")]
    assert _imported_after(training, watch=("mlflow",)) == []


def test_nothing_under_tracking_imports_torch():
    tracking = [m for m in _modules() if m.startswith("xsweep.tracking")]
    assert _imported_after(tracking, watch=("torch",)) == []


def _imports_in(module: str) -> set[str]:
    """Every module `module`'s code imports, at the top or inside functions."""
    names = set()
    for node in _executed(ast.parse(_source(module).read_text())):
        if isinstance(node, ast.Import):
            names |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module)
    return names


@pytest.mark.parametrize(("room", "never"), [("xsweep.training", "mlflow"), ("xsweep.tracking", "torch")])
def test_no_function_of_a_room_imports_the_other_sides_library_either(room, never):
    offending = {m: sorted(n for n in _imports_in(m) if n.split(".")[0] == never)
                 for m in _modules() if m.startswith(room)}
    assert {m: names for m, names in offending.items() if names} == {}


def test_the_search_machinery_never_imports_the_driver():
    # search/ chooses trials; sweep/ runs them and calls search/, never the other way round.
    offending = {m: sorted(n for n in _imports_in(m) if n.startswith("xsweep.sweep"))
                 for m in _modules() if m.startswith("xsweep.search")}
    assert {m: names for m, names in offending.items() if names} == {}


def test_the_spec_imports_nothing_heavy():
    # `xsweep validate` must stay instant: the registries it reads import their libraries lazily.
    assert _imported_after(["xsweep.spec", "xsweep.cli"], watch=("torch", "ray", "mlflow", "optuna")) == []


# What importing a module could change for the rest of the process: the environment, and the
# global settings of the libraries xsweep configures somewhere.
SNAPSHOT = """
import json, logging, os, signal, warnings
import matplotlib
import optuna
def snapshot():
    loggers = {name: logging.getLogger(name).level for name in
               ["", "optuna", "mlflow", "ray", "ray.tune", "mlflow.store.db.utils",
                *logging.root.manager.loggerDict]}
    return {"environ": dict(os.environ), "loggers": loggers,
            "optuna": optuna.logging.get_verbosity(), "backend": matplotlib.get_backend(),
            "rcParams": {k: repr(v) for k, v in matplotlib.rcParams.items()},
            "sigint": repr(signal.getsignal(signal.SIGINT)), "warnings": repr(warnings.filters)}
"""


def test_importing_any_module_changes_nothing_global():
    # The libraries are imported first: what they do on import is theirs; what xsweep's modules
    # do on top is what this compares.
    code = SNAPSHOT + f"""
import importlib, sys
import torch, ray, ray.tune, mlflow, mlflow.pytorch, matplotlib.figure, sklearn, scipy.stats, pydantic
before = snapshot()
for name in {_modules()!r}:
    importlib.import_module(name)
after = snapshot()
changed = {{key: sorted(set(after[key].items()) ^ set(before[key].items())) if isinstance(after[key], dict)
           else [before[key], after[key]] for key in before if after[key] != before[key]}}
print(json.dumps(changed, default=str))
"""
    proc = _python(code)
    assert proc.returncode == 0, proc.stderr
    # New loggers appear as modules import logging.getLogger(...); their levels are NOTSET.
    changed = json.loads(proc.stdout.strip().splitlines()[-1])
    new_loggers = [entry for entry in changed.pop("loggers", []) if entry[1] != 0]
    assert changed == {} and new_loggers == []


def _import_graph() -> dict[str, set[str]]:
    """module -> the xsweep modules it imports, at the top or inside functions alike."""
    known = set(_modules())
    graph: dict[str, set[str]] = {}
    for module in known:
        imported = set()
        for node in _executed(ast.parse(_source(module).read_text())):
            if isinstance(node, ast.Import):
                imported |= {alias.name for alias in node.names}
            elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                # `from xsweep.report import data` imports the module xsweep.report.data
                imported |= {node.module} | {f"{node.module}.{alias.name}" for alias in node.names}
        graph[module] = {name for name in imported if name in known and name != module}
    return graph


def _executed(tree: ast.AST):
    """Every node of a module but those under `if TYPE_CHECKING:`, which never run (annotations)."""
    for node in ast.iter_child_nodes(tree):
        if isinstance(node, ast.If) and ast.unparse(node.test) in ("TYPE_CHECKING", "typing.TYPE_CHECKING"):
            yield from (n for child in node.orelse for n in ast.walk(child))
            continue
        yield node
        yield from _executed(node)


def _cycle(graph: dict[str, set[str]]) -> list[str] | None:
    state: dict[str, str] = {}
    stack: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node], _ = "open", stack.append(node)
        for child in sorted(graph[node]):
            if state.get(child) == "open":
                return stack[stack.index(child):] + [child]
            if child not in state and (found := visit(child)):
                return found
        state[node], _ = "done", stack.pop()
        return None

    for node in sorted(graph):
        if node not in state and (found := visit(node)):
            return found
    return None


def test_no_import_cycles_even_through_deferred_imports():
    graph = _import_graph()
    assert graph["xsweep.cli"], "the graph reader found no imports at all"
    assert _cycle(graph) is None, " -> ".join(_cycle(graph))


def test_the_cycle_finder_finds_a_cycle():
    assert _cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert _cycle({"a": {"b"}, "b": set()}) is None


# Names that several modules or classes define on purpose, each doing the same kind of thing.
SHARED_NAMES = {
    "main": "a script's entry point",
    "to_json": "a saved record's JSON form (sweep/record.py)",
    "from_json": "a saved record read back from its JSON form (sweep/record.py)",
    "write": "a file-like object's write",
    "flush": "push out what is buffered: a file-like object's bytes, the tracking writes queued",
    "close": "let go of what an object holds open: a pipe, the tracking writer, reserved runs",
    "submit": "hand work over to run elsewhere: a write to the tracking queue, the sweep to Ray's Jobs API",
    "pending": "how many tracking writes are queued and not yet delivered",
    "call": "run a function elsewhere and give back its result: in the tracking writer, on Ray's Jobs API",
    "check": "(clean value, problem) of what the user wrote: one spec field, or the whole spec",
    "show": "a value as the user reads it",
    "value": "the value of a named entry: a metric of an epoch's report, a field of a spec being checked",
    "better": "whether one metric value beats another (the console's board: in the sweep's mode)",
    "elapsed": "seconds something has run at `now`: a trial, the sweep",
    "grid_size": "how many configurations a grid holds (a space's, a spec's)",
    "variant_count": "how many variants an ablation has (its spec's)",
    "_init_transient": "a Tune callback's state that is not pickled, made again where it is unpickled",
    "start": "a console view's hook (LineView, TableView)",
    "event": "a console view's hook (LineView, TableView)",
    "stop": "a console view's hook (LineView, TableView)",
}


def _own_methods(cls: ast.ClassDef) -> list[str]:
    """The class's methods that are names of its own: not dunders (Python's protocols) and not
    properties (read as attributes, like a record's fields)."""
    return [node.name for node in cls.body if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef))
            and not (node.name.startswith("__") and node.name.endswith("__"))
            and not any(ast.unparse(d).endswith("property") for d in node.decorator_list)]


def _overrides(module: str, cls: ast.ClassDef, name: str) -> bool:
    """Whether a base class of `cls` defines `name`: an override (a Tune hook, torch's forward)
    names what its base names. A class with no bases has only object's methods to override, dunders."""
    import importlib

    if not cls.bases:
        return False
    return any(name in vars(base) for base in getattr(importlib.import_module(module), cls.name).__mro__[1:])


def test_no_two_functions_of_one_name():
    # Every top-level function and class, and every method: (module, its class or None).
    defined = defaultdict(list)
    for module in _modules():
        for node in ast.parse(_source(module).read_text()).body:
            if isinstance(node, (ast.FunctionDef, ast.ClassDef)):
                defined[node.name].append((module, None))
            if isinstance(node, ast.ClassDef):
                for name in _own_methods(node):
                    defined[name].append((module, node))
    # Only names found twice in the source import their classes (importing Ray and torch takes seconds).
    twice = {name: [f"{module}.{cls.name}" if cls else module for module, cls in where
                    if cls is None or not _overrides(module, cls, name)]
             for name, where in defined.items() if len(where) > 1 and name not in SHARED_NAMES}
    assert {name: where for name, where in twice.items() if len(where) > 1} == {}


def test_the_public_api_is_the_five_functions_and_importing_it_is_cheap():
    proc = _python("""
import json, sys, xsweep
heavy = sorted(m for m in ("torch", "ray", "mlflow", "optuna") if m in sys.modules)
api = {name: getattr(xsweep, name).__module__ for name in xsweep.__all__}
print(json.dumps([heavy, api]))
""")
    assert proc.returncode == 0, proc.stderr
    heavy, api = json.loads(proc.stdout.strip().splitlines()[-1])
    assert heavy == []  # `import xsweep` (and so every CLI command) pays for nothing it does not use
    assert api == {"load_spec": "xsweep.spec.load", "run_sweep": "xsweep.sweep.run",
                   "resume_sweep": "xsweep.sweep.run", "reproduce": "xsweep.reproduce",
                   "make_report": "xsweep.report.make"}


def _private_uses(module: str, source: str) -> list[str]:
    """Private names of other xsweep modules that `module` uses: imported by name (`from xsweep.x
    import _y`) or reached on an imported module (`x._y`). A module's privates are its own business."""
    tree = ast.parse(source)
    names_module: dict[str, str] = {}  # a local name -> the xsweep module it is
    used = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names_module |= {alias.asname: alias.name for alias in node.names
                             if alias.asname and alias.name.startswith("xsweep")}
        elif isinstance(node, ast.ImportFrom) and (node.module or "").startswith("xsweep"):
            for alias in node.names:
                if alias.name.startswith("_") and not alias.name.startswith("__"):
                    used.append(f"{node.module}.{alias.name}")
                names_module[alias.asname or alias.name] = f"{node.module}.{alias.name}"
    for node in ast.walk(tree):
        if (isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name) and node.value.id in names_module
                and node.attr.startswith("_") and not node.attr.startswith("__")
                and names_module[node.value.id] != module):
            used.append(f"{names_module[node.value.id]}.{node.attr}")
    return used


def test_no_module_uses_another_modules_private_functions():
    used = {module: _private_uses(module, _source(module).read_text()) for module in _modules()}
    assert {module: names for module, names in used.items() if names} == {}


def test_the_private_use_finder_finds_both_ways_in():
    source = "from xsweep.sweep import run as sweep_run\nfrom xsweep.spec.load import _parse\nsweep_run._tuner()\n"
    assert _private_uses("xsweep.sweep.extend", source) == ["xsweep.spec.load._parse", "xsweep.sweep.run._tuner"]
