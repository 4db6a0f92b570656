"""The scale benchmark's measurements, one module each (tune_rate, tpe_cost, mlflow_rates,
checkpoint_storage) with what they share in common.py. benchmarks/scale_simulation.py runs them all
and writes benchmarks/results/scale_simulation.md; each module also runs alone and prints its section:

    .venv/bin/python benchmarks/scale/tpe_cost.py --quick
"""
