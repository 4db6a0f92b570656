"""How a sweep chooses its trials, apart from the driver (sweep/) that runs them.

algorithms (the registry of Optuna samplers a spec's search.algorithm names) and schedulers (that of
scheduler.kind), searcher (Optuna under Ray's Searcher: repeats, one MLflow run per trial, each
configuration once), tpe_window (TPE's cost bounded past 1,000 trials), grid (a grid's end left to
Tune), history (past trials as a new study's evidence), ablation (an ablation's variants, their own
studies and schedulers, and the configurations phase 2 confirms).

Nothing is imported here: the spec reads the registries without pulling in Ray or Optuna.
"""
