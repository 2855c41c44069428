#!/usr/bin/env bash
# One command: set everything up (with the browser for end-to-end tests), then run the whole suite.
set -euo pipefail
cd "$(dirname "$0")/.."
# HM tests run when HM's source is at hand: $DMIC_HM_SOURCE (setup.sh reads it), else the shared
# vendor tarball next to the repository (CI); otherwise they skip and say how to enable them.
HM_ARGS=()
if [[ -z "${DMIC_HM_SOURCE:-}" && -f ../shared/vendor/HM-16.25.tar.gz ]]; then
  HM_ARGS=(--with-hm ../shared/vendor/HM-16.25.tar.gz)
fi
scripts/setup.sh --with-test-tools "${HM_ARGS[@]}"
mkdir -p test-artifacts
exec .venv/bin/python -m pytest -q --timeout=900 "$@"
