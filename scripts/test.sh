#!/usr/bin/env bash
# One command: set everything up (with the browser for end-to-end tests), then run the whole suite.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh --with-test-tools
mkdir -p test-artifacts
exec .venv/bin/python -m pytest -q --timeout=900 "$@"
