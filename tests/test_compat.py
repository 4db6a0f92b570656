"""xsweep.compat: every private Ray or Optuna name it uses still exists, and still means what
xsweep relies on, in the pinned versions. A version bump that changes one fails here, by name."""

from __future__ import annotations

import inspect
from importlib.metadata import version

import optuna
import pytest
from ray.tune.search.optuna import OptunaSearch

from xsweep import compat


def test_the_pins_are_the_versions_installed():
    # What this file checks is the pinned versions' behaviour (pyproject.toml).
    assert (version("ray"), version("optuna")) == ("2.60.0", "5.0.0")


@pytest.fixture
def search():
    space = {"x": optuna.distributions.CategoricalDistribution([1, 2, 3])}
    search = OptunaSearch(space=space, metric="m", mode="max", sampler=optuna.samplers.RandomSampler(seed=0))
    search.suggest("trial-a")
    return search, space


def test_optuna_search_keeps_its_study_and_live_trials(search):
    search, _ = search
    study, trials = compat.optuna_study(search), compat.optuna_trials(search)
    assert isinstance(study, optuna.Study)
    assert isinstance(trials["trial-a"], optuna.trial.Trial) and trials["trial-a"].params["x"] in (1, 2, 3)
    # Live: what xsweep pops and tells is what Ray's wrapper sees.
    study.tell(trials.pop("trial-a"), state=optuna.trial.TrialState.FAIL)
    assert "trial-a" not in compat.optuna_trials(search)
    assert [t.state for t in study.trials] == [optuna.trial.TrialState.FAIL]


def test_optuna_search_keeps_its_space_and_completed_trials(search):
    search, space = search
    assert compat.search_space(search) == space
    search.on_trial_complete("trial-a", result={"m": 1.0})
    assert compat.completed_trials(search) == {"trial-a"}
    # A trial told once is not told again by Ray's wrapper: xsweep adds to the same set.
    compat.completed_trials(search).add("trial-b")
    search.on_trial_complete("trial-b", result={"m": 1.0})


def test_the_job_client_sends_every_request_through_do_request_with_a_timeout():
    from ray.dashboard.modules.dashboard_sdk import SubmissionClient

    signature = inspect.signature(SubmissionClient._do_request)
    assert list(signature.parameters)[:3] == ["self", "method", "endpoint"]
    assert any(p.kind is inspect.Parameter.VAR_KEYWORD for p in signature.parameters.values())


def test_a_dead_jobs_api_times_out_instead_of_hanging():
    import socket
    import time

    with socket.socket() as listener:  # accepts connections, never answers
        listener.bind(("127.0.0.1", 0))
        listener.listen()
        port = listener.getsockname()[1]
        started = time.monotonic()
        with pytest.raises(Exception, match="(?i)timed out|timeout"):
            compat.job_client(f"http://127.0.0.1:{port}", timeout_s=1.0)
        assert time.monotonic() - started < 30


def test_rays_token_setup_takes_what_xsweep_passes():
    from ray._private.authentication import authentication_token_setup as setup

    parameters = inspect.signature(setup.maybe_enable_token_auth_if_token_available).parameters
    assert "warn_if_disabled" in parameters
