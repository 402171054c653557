#!/usr/bin/env bash
# README command (a): set up .venv and run the main job (train on the world, sample, report).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup_env.sh
exec .venv/bin/python experiments/main.py "$@"
