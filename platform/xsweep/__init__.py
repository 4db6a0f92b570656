"""xsweep: hyperparameter searches and ablation studies of Xception on Ray Tune, Optuna and MLflow.

What the `xsweep` command does, from Python (a notebook, a script):

    import xsweep

    spec = xsweep.load_spec("search_spaces/smoke.yaml", overrides=["train.epochs=1"])
    outcome = xsweep.run_sweep(spec)               # or xsweep.resume_sweep("results/smoke-...")
    folder = xsweep.make_report(spec=spec)         # the spec's experiment in its store
    exit_code = xsweep.reproduce(spec=spec)        # or experiment="smoke", tracking_uri=...

A problem the caller can fix raises `xsweep.errors.UserError`, its message naming the keyword argument
(`tracking_uri: ...`) where the CLI's names the flag.

The functions are loaded when first used (PEP 562): `import xsweep`, which every CLI command does,
must not import MLflow, Ray or torch before a command needs them.
"""

import functools
import importlib

__all__ = ["load_spec", "run_sweep", "resume_sweep", "reproduce", "make_report"]

_HOME = {
    "load_spec": "xsweep.spec",
    "run_sweep": "xsweep.sweep.run",
    "resume_sweep": "xsweep.sweep.run",
    "reproduce": "xsweep.reproduce",
    "make_report": "xsweep.report.make",
}


def __getattr__(name: str):
    if name in _HOME:
        return _in_python_words(getattr(importlib.import_module(_HOME[name]), name))
    if name == "__version__":
        return _version()
    raise AttributeError(f"module 'xsweep' has no attribute {name!r}")


def _in_python_words(function):
    """`function` raising its user errors in the Python API's words (errors.in_python_words)."""
    from xsweep.errors import UserError, in_python_words

    @functools.wraps(function)
    def called(*args, **kwargs):
        try:
            return function(*args, **kwargs)
        except UserError as error:
            raise in_python_words(error) from error.__cause__

    return called


def _version() -> str:
    """The installed distribution's version; a checkout run without installing it (a GPU host with the
    offline bundle) has none."""
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("xsweep")
    except PackageNotFoundError:
        return "unknown (not installed: run from a checkout)"


def __dir__() -> list[str]:
    return sorted([*globals(), *__all__])
