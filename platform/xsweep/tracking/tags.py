"""The names of what xsweep records in MLflow: its tags, written by runs.py, callback.py and
sweep/outcome.py, read by query.py, the report and reproduce. Renaming one makes older sweeps
unreadable, so these are a format, not an implementation detail."""

TAG_KIND = "xsweep.kind"  # "sweep" | "trial" | "reproduction"
# a trial: xsweep.contract.STATUSES; a sweep: running | finished | interrupted | finished, writes undelivered
TAG_STATUS = "xsweep.status"

# ---- a sweep's parent run
TAG_SWEEP_PATH = "xsweep.sweep_path"
TAG_SPEC_SHA256 = "xsweep.spec_sha256"
TAG_RAY_ADDRESS = "xsweep.ray_address"
TAG_STORAGE_PATH = "xsweep.storage_path"
TAG_GIT_COMMIT = "xsweep.git_commit"
TAG_GIT_DIRTY = "xsweep.git_dirty"
TAG_VERSION_PREFIX = "xsweep.version."  # + ray | torch | mlflow | optuna
TAG_BEST_TRIAL_ID = "xsweep.best_trial_id"
TAG_BEST_RUN_ID = "xsweep.best_run_id"
TAG_BEST_TRIAL_NAME = "xsweep.best_trial_name"
TAG_TRIAL_COUNT_PREFIX = "xsweep.trials."  # + status: how many trials ended so
TAG_REPORT = "xsweep.report"
TAG_SWEEP_VERSION = "xsweep.sweep_version"  # its latest version (xsweep extend); on a trial: the version it ran in

# ---- a trial's child run
TAG_TRIAL_ID = "xsweep.trial_id"
TAG_CONFIG = "xsweep.config"  # the exact config `fit` ran, as JSON: reproduce re-runs a trial from it
TAG_SEARCHED = "xsweep.searched"  # the searched values, as JSON
TAG_NODE_IP = "xsweep.node_ip"
TAG_HOSTNAME = "xsweep.hostname"
TAG_DEVICE = "xsweep.device"
TAG_WORKER_PREFIX = "xsweep.worker."  # + "<rank>.node_ip" / "<rank>.device": a data-parallel trial's workers
TAG_PEAK_FLOPS = "xsweep.peak_flops"  # what the run's `mfu` is measured against, and its source
TAG_CHECKPOINT_FALLBACK = "xsweep.checkpoint_fallback"
TAG_PARETO = "xsweep.pareto"  # "true" | "false": on the Pareto front of a multi-objective sweep
TAG_ABLATION = "xsweep.ablation"  # an ablation sweep's parent: its ablation section (factors, ...), as JSON
TAG_ABLATION_VERDICT_PREFIX = "xsweep.ablation_verdict."  # + "<factor>:<level>" (e.g. model.residual:off): the verdict against the reference
TAG_PHASE = "xsweep.phase"  # an ablation's trial: "tune" or "confirm" (search/ablation.py)
TAG_VARIANT = "xsweep.variant"  # ... and its variant, e.g. "res=off act=relu"
TAG_PARETO_RANK = "xsweep.pareto_rank"  # its place on the front, 1 = best on the first objective

# ---- the registered model's version
TAG_MODEL_TRIAL_RUN_ID = "xsweep.trial_run_id"
TAG_MODEL_BEST_EPOCH = "xsweep.best_epoch"
TAG_MODEL_SWEEP = "xsweep.sweep"  # the sweep (its parent run's name) whose best trial this is
TAG_MODEL_METRIC = "xsweep.metric"  # the sweep's search.metric, and the trial's best value of it
TAG_MODEL_VALUE = "xsweep.value"

# ---- a reproduction's run
TAG_REPRODUCES = "xsweep.reproduces"
TAG_MODE = "xsweep.mode"  # retrain | checkpoint
TAG_VERDICT = "xsweep.verdict"
TAG_DIFFERENCE = "xsweep.difference"
TAG_IDENTICAL = "xsweep.identical"
TAG_SEED_BAND = "xsweep.seed_band"  # a confirmation trial's re-run: "within" or "outside" its variant's seeds
TAG_NOTE = "xsweep.note"
