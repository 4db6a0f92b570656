"""The trial process: everything that runs where a trial trains. Imports torch, never MLflow.

fit (one trial's epochs, reported through a callback), optim (optimizers and learning-rate
schedules), datasets (the registry a spec's data.dataset names), sources (whether a dataset's files
are there; no torch, so the driver can check before anything starts), loaders (tensors and
DataLoaders), checkpoint (atomic, checksummed files), trainable (the thin Ray Tune wrapper).
"""
