"""The driver: a spec becomes a Ray Tune `Tuner` whose trials are tracked to MLflow.

run (run, resume, and the Tuner), extend and versions (a sweep's later versions), phases (an
ablation's phase 2), startup (MLflow prepared while Ray starts), interrupt and reader (Ctrl-C, and
an output nobody reads), outcome (what a sweep ended with, and its summary), finish (the end of a
sweep: counts, best trial, tags), front (the Pareto front), best_model (the registered model),
console (the live view), output (Ray's and Tune's output to the sweep's log), status
(`xsweep status`). What the trials are, the driver asks search/.
"""
