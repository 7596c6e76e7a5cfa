#!/usr/bin/env bash
# Create or update the project-local environment .venv (idempotent: a second run installs nothing).
# torch is pinned first so that no dependency can pull a newer torch or CUDA packages.
set -euo pipefail
cd "$(dirname "$0")/.."
TORCH_VERSION="${ROBUST_SEG_TORCH:-2.13.0}"
PYTHON="${PYTHON:-python3}"
STAMP=.venv/.robust_seg-installed
FINGERPRINT="torch=${TORCH_VERSION} $(sha256sum pyproject.toml | cut -c1-16)"
if [[ -f "$STAMP" && "$(cat "$STAMP")" == "$FINGERPRINT" ]]; then
    exit 0
fi
echo "setting up .venv (first run: about a minute) ..." >&2
[[ -x .venv/bin/python ]] || "$PYTHON" -m venv .venv
.venv/bin/python -m pip install --quiet --disable-pip-version-check "torch==${TORCH_VERSION}"
# mmcv-lite + robust_seg.compat.mmcv_ops instead of compiling mmcv (see README, "Why mmcv-lite").
.venv/bin/python -m pip install --quiet --disable-pip-version-check "torch==${TORCH_VERSION}" -e ".[test]"
echo "$FINGERPRINT" > "$STAMP"
echo "environment ready: .venv" >&2
