"""The driver: a spec becomes a Ray Tune `Tuner` whose trials are tracked to MLflow.

run (run, resume, and the Tuner), searcher (Optuna under Ray's Searcher: repeats, one MLflow run per
trial, each configuration once), algorithms and schedulers (the registries a spec's search.algorithm
and scheduler.kind name), startup (MLflow prepared while Ray starts), interrupt (Ctrl-C), outcome
(the end of a sweep: counts, best trial, summary), best_model (the registered model), console (the
live view), status (`xsweep status`).

Nothing is imported here: the spec reads the registries without pulling in Ray or Optuna.
"""
