"""The driver: a spec becomes a Ray Tune `Tuner` whose trials are tracked to MLflow.

run (run, resume, and the Tuner), searcher (Optuna under Ray's Searcher: repeats, one MLflow run per
trial, each configuration once), algorithms and schedulers (the registries a spec's search.algorithm
and scheduler.kind name), startup (MLflow prepared while Ray starts), interrupt (Ctrl-C), outcome
(what a sweep ended with, and its summary), finish (the end of a sweep: counts, best trial, tags),
best_model (the registered model), console (the live view), output (Ray's and Tune's output to the
sweep's log), status (`xsweep status`).

Nothing is imported here: the spec reads the registries without pulling in Ray or Optuna.
"""
