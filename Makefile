# Every target self-installs: on a fresh machine `make sweep` or `make test` is the first command.
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV   := .venv
PY     := $(VENV)/bin/python
# The stamp is newer than pyproject.toml once the venv matches it, so a second
# `make setup` with nothing changed does no pip work at all (well under 5 s).
STAMP  := $(VENV)/.setup-stamp

.PHONY: setup system-deps sweep test test-fast ui bench gpu-check clean

setup: $(STAMP)

$(STAMP): pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	# torch/torchvision are pinned in pyproject (an unpinned torch pulls a multi-GB CUDA build).
	$(PY) -m pip install --quiet -e '.[test,bench]'
	touch $(STAMP)

# PostgreSQL (for the team MLflow server tests), Chromium (for the browser tests), g++ and Python's
# headers (for torch.compile).
# Installed from Debian's packages when missing and we are root; otherwise one clear line.
system-deps:
	@bash scripts/system_deps.sh

sweep: setup
	$(VENV)/bin/xsweep run search_spaces/xception_ablation.yaml

# Two test files at a time, each file whole on one worker (its module fixtures are its own): one
# file at a time left a core idle. Files go out slowest first (tests/conftest.py orders them).
test: setup system-deps
	$(PY) -m pytest -n 2 --dist loadfile --no-loadscope-reorder

# Unit tests only: no Ray, MLflow server or PostgreSQL.
test-fast: setup
	$(PY) -m pytest -m "not slow and not cluster"

# The MLflow UI of the store every xsweep command uses ($$MLFLOW_TRACKING_URI, else ./mlflow.db), on loopback only.
ui: setup
	$(VENV)/bin/xsweep ui

# The GPU path on one CUDA GPU: writes benchmarks/results/gpu_check.md. Needs only torch (timm for
# the model comparison), so it runs where nothing else of the project is installed: the repository's
# .venv if there is one, else the machine's python3.
GPU_PY ?= $(if $(wildcard .venv/bin/python),.venv/bin/python,python3)
gpu-check:
	$(GPU_PY) benchmarks/gpu_check.py

# The whole product on one CUDA GPU: sweeps sharing it (1, 0.5, 0.25 GPU per trial), the default
# ablation, its report and the reproduction of its best trial; writes benchmarks/results/gpu_sweep.md
# in under 8 minutes on an H100/H200. Needs xsweep's dependencies: the .venv, or the offline bundle on
# PYTHONPATH. GPU_SWEEP_ARGS: e.g. --budget 300 (seconds; a sweep past its share stops as at Ctrl-C).
.PHONY: gpu-sweep
gpu-sweep:
	$(GPU_PY) benchmarks/gpu_sweep.py $(GPU_SWEEP_ARGS)

# Speed measurements (not tests): each script writes its table to benchmarks/results/.
bench: setup
	$(PY) benchmarks/model_throughput.py
	$(PY) benchmarks/sweep_overhead.py
	$(PY) benchmarks/platform_overhead.py
	$(PY) benchmarks/search_efficiency.py
	$(PY) benchmarks/scale_simulation.py
	$(PY) benchmarks/input_pipeline.py

clean:
	rm -rf results mlruns mlartifacts mlflow.db reports

# The offline bundle for GPU hosts that have torch but no package index: the wheels of what xsweep
# needs beyond the host's packages (scripts/gpu_bundle/host_packages.txt), Ray and MLflow without
# the parts a sweep never loads, in gpu-bundle/ (under 56 MiB), with install.py to install them into
# a folder there. GPU_BUNDLE_PYTHON / GPU_BUNDLE_PLATFORM: the host's Python and wheel platform.
GPU_BUNDLE_PYTHON   ?= 3.12
GPU_BUNDLE_PLATFORM ?= manylinux_2_28_x86_64
.PHONY: gpu-bundle
gpu-bundle: setup
	$(PY) scripts/gpu_bundle/build.py --python $(GPU_BUNDLE_PYTHON) --platform $(GPU_BUNDLE_PLATFORM) --out gpu-bundle
