# Every target self-installs: on a fresh machine `make sweep` or `make test` is the first command.
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV   := .venv
PY     := $(VENV)/bin/python
# The stamp is newer than pyproject.toml once the venv matches it, so a second
# `make setup` with nothing changed does no pip work at all (well under 5 s).
STAMP  := $(VENV)/.setup-stamp

.PHONY: setup system-deps sweep test test-fast ui bench clean

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

test: setup system-deps
	$(PY) -m pytest

# Unit tests only: no Ray, MLflow server or PostgreSQL.
test-fast: setup
	$(PY) -m pytest -m "not slow and not cluster"

# The MLflow UI of the store every xsweep command uses ($$MLFLOW_TRACKING_URI, else ./mlflow.db), on loopback only.
ui: setup
	$(VENV)/bin/xsweep ui

# Speed measurements (not tests): each script writes its table to benchmarks/results/.
bench: setup
	$(PY) benchmarks/model_throughput.py
	$(PY) benchmarks/sweep_overhead.py
	$(PY) benchmarks/platform_overhead.py
	$(PY) benchmarks/search_efficiency.py
	$(PY) benchmarks/scale_simulation.py

clean:
	rm -rf results mlruns mlartifacts mlflow.db reports
