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


# Names that several modules define on purpose, each doing the same kind of thing.
SHARED_NAMES = {
    "main": "a script's entry point",
}


def test_no_two_functions_of_one_name():
    defined = defaultdict(list)
    for module in _modules():
        for node in ast.parse(_source(module).read_text()).body:
            if isinstance(node, (ast.FunctionDef, ast.ClassDef)):
                defined[node.name].append(module)
    twice = {name: where for name, where in defined.items() if len(where) > 1 and name not in SHARED_NAMES}
    assert twice == {}


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
