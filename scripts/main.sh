#!/usr/bin/env bash
# The main job on the embedded default: sets up .venv if needed, then evaluates the shipped small model
# on the synthetic dataset (extra arguments are Hydra overrides, e.g. attack.eps=[8/255]).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
exec .venv/bin/python -m robust_seg.evaluate experiment=embedded_default "$@"
