#!/usr/bin/env bash
# Installs the system packages the tests need (PostgreSQL, Chromium, tmux, a C++ compiler and Python's
# headers for torch.compile) from Debian when missing.
set -euo pipefail

missing=()
ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1 || missing+=(postgresql)
command -v chromium >/dev/null 2>&1 || missing+=(chromium)
command -v chromedriver >/dev/null 2>&1 || missing+=(chromium-driver)
command -v docker-compose >/dev/null 2>&1 || missing+=(docker-compose)  # tests/test_docker.py: compose config
command -v tmux >/dev/null 2>&1 || missing+=(tmux)  # tests/test_console.py: a real terminal for `xsweep run`
# torch.compile (train.compile, tests/test_train.py) builds C++ kernels that include Python.h.
command -v g++ >/dev/null 2>&1 || missing+=(g++)
py=.venv/bin/python
if [ -x "$py" ] && ! "$py" -c 'import os, sys, sysconfig
sys.exit(not os.path.exists(os.path.join(sysconfig.get_paths()["include"], "Python.h")))'; then
    missing+=("python$("$py" -c 'import sys; print("%d.%d" % sys.version_info[:2])')-dev")
fi

if [ ${#missing[@]} -eq 0 ]; then
    exit 0
fi
if [ "$(id -u)" -ne 0 ]; then
    echo "system-deps: missing ${missing[*]}; install them with: sudo apt-get install ${missing[*]}" >&2
    exit 2
fi
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq
apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
# Debian's postgresql package starts a cluster on install where systemd runs; the tests start
# their own server in a temp folder, so nothing else is needed here.
