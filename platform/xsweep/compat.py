"""Every use of a private Ray or Optuna name, in one place; tests/test_compat.py checks each one.

xsweep pins Ray 2.60 and Optuna 5.0. Where their public API lacks what xsweep needs, the private
name is used here and nowhere else, so that a version bump breaks this one module, loudly, in one
test, instead of a sweep in the middle of the night. Ray is imported inside the functions: the
CLI's submit path uses this module and must not pay for importing Ray Tune.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import optuna
    from ray.tune.search.optuna import OptunaSearch

# ---- Ray's OptunaSearch (ray/tune/search/optuna/optuna_search.py) ------------------------------
# Ray's wrapper keeps its Optuna study and the live Optuna trial of each Tune trial to itself;
# xsweep's searcher tells Optuna about duplicates, pruned and diverged trials through them.


def optuna_study(search: OptunaSearch) -> optuna.Study:
    return search._ot_study


def optuna_trials(search: OptunaSearch) -> dict[str, optuna.trial.Trial]:
    """Tune trial id -> the Optuna trial asked for it and not yet told (a live, mutable dict)."""
    return search._ot_trials


def search_space(search: OptunaSearch) -> dict[str, optuna.distributions.BaseDistribution]:
    """The space the search was built with, by parameter name."""
    return search._space


def completed_trials(search: OptunaSearch) -> set[str]:
    """The Tune trial ids Ray's wrapper has already told Optuna about (a live, mutable set)."""
    return search._completed_trials


# ---- Ray Tune's Tuner (ray/tune/tuner.py) ---------------------------------------------------------


def restored_callback(tuner, kind: type, *, otherwise):
    """The callback of class `kind` that a restored Tuner brought back from its saved state, or a
    new one from `otherwise()` added to it (a sweep saved before that callback existed). Tune has
    no public way to a restored Tuner's callbacks: they are on its private `_local_tuner`."""
    callbacks = tuner._local_tuner.get_run_config().callbacks
    for callback in callbacks:
        if isinstance(callback, kind):
            return callback
    callbacks.append(otherwise())
    return callbacks[-1]


def tune_trials(results) -> list[tuple[str, str]]:
    """(trial id, Tune's status: PENDING, RUNNING, PAUSED, TERMINATED, ERROR) of each trial of a
    ResultGrid, in its order: its Results say neither. The grid keeps its trials on its private
    `_experiment_analysis`."""
    return [(trial.trial_id, trial.status) for trial in results._experiment_analysis.trials]


# ---- Ray's Jobs API client (ray/dashboard/modules/dashboard_sdk.py) ----------------------------


def job_client(address: str, *, timeout_s: float) -> Any:
    """Ray's JobSubmissionClient whose every request has a timeout. Ray's client sends requests
    without one, so a dead head would hang `xsweep submit`; every request goes through the private
    `_do_request`, which forwards keyword arguments to `requests.request`."""
    from ray.job_submission import JobSubmissionClient

    class TimedJobSubmissionClient(JobSubmissionClient):
        def _do_request(self, method, endpoint, **kwargs):
            kwargs.setdefault("timeout", timeout_s)
            return super()._do_request(method, endpoint, **kwargs)

    return TimedJobSubmissionClient(address)


def send_ray_token_if_available() -> None:
    """Send Ray's auth token whenever one is configured, as `ray job submit` does. The public
    client only sends it once token auth was enabled in this process, which only Ray's private
    setup function does."""
    from ray._private.authentication import authentication_token_setup as setup

    setup.maybe_enable_token_auth_if_token_available(warn_if_disabled=False)
