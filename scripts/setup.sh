#!/usr/bin/env bash
# Sets up DMIC Studio on Debian 12 / Ubuntu: system packages, virtual environment, Python
# packages, the libx265 binding, and a check of the shipped model weights. Idempotent: a second
# run only checks (seconds). Usage: scripts/setup.sh [--with-test-tools] [--with-hm PATH]
#   --with-hm PATH  also build the HM reference encoder/decoder (HM 16.25 tarball or folder, your
#                   own copy; or set DMIC_HM_SOURCE) with the project's patch into hm_bin/
#                   (scripts/build_hm.sh: about 2 minutes on 2 cores the first time, cached after)
set -euo pipefail
CALLER_PWD=$PWD
cd "$(dirname "$0")/.."

WITH_TEST_TOOLS=0
HM_SOURCE="${DMIC_HM_SOURCE:-}"
while (( $# )); do
  case "$1" in
    --with-test-tools) WITH_TEST_TOOLS=1 ;;
    --with-hm) [[ $# -ge 2 ]] || { echo "[setup] --with-hm needs a PATH (HM 16.25 tarball or folder)" >&2; exit 2; }
               HM_SOURCE="$2"; shift ;;
    --with-hm=*) HM_SOURCE="${1#--with-hm=}" ;;
    *) echo "[setup] unknown option: $1 (use --with-test-tools, --with-hm PATH)" >&2; exit 2 ;;
  esac
  shift
done

say() { printf '[setup] %s\n' "$*" >&2; }

# --- system packages (only the missing ones) -------------------------------------------------
APT_PACKAGES=(python3 python3-venv python3-dev gcc x265 libx265-dev ffmpeg libde265-examples)
(( WITH_TEST_TOOLS )) && APT_PACKAGES+=(chromium chromium-driver dicom3tools)  # dicom3tools: dciodvfy for the DICOM export test
[[ -n "$HM_SOURCE" ]] && APT_PACKAGES+=(cmake g++ make patch)
missing=()
for pkg in "${APT_PACKAGES[@]}"; do
  dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed" || missing+=("$pkg")
done
if (( ${#missing[@]} )); then
  say "installing system packages: ${missing[*]}"
  SUDO=""; [[ $(id -u) -ne 0 ]] && SUDO="sudo"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq "${missing[@]}" >/dev/null
fi

# --- virtual environment and Python packages -------------------------------------------------
PYTHON="${PYTHON:-python3}"
if [[ ! -x .venv/bin/python ]]; then
  say "creating virtual environment .venv"
  "$PYTHON" -m venv .venv
fi
stamp=.venv/.requirements.sha256
want=$(cat requirements.txt pyproject.toml setup.py dmic_core/codecs/_x265module.c 2>/dev/null | sha256sum | cut -d' ' -f1)
if [[ ! -f $stamp || "$(cat "$stamp")" != "$want" ]] || ! .venv/bin/python -c "import dmic_core.codecs._x265" 2>/dev/null; then
  say "installing Python packages (CPU-only torch)"
  .venv/bin/python -m pip install -q --upgrade pip
  .venv/bin/python -m pip install -q -r requirements.txt
  say "building the libx265 binding and installing dmic_core"
  .venv/bin/python -m pip install -q --no-deps --no-build-isolation -e .
  echo "$want" > "$stamp"
fi

# --- HM reference encoder (optional; built from your own source, cached by a stamp) --------
if [[ -n "$HM_SOURCE" ]]; then
  [[ "$HM_SOURCE" == /* ]] || HM_SOURCE="$CALLER_PWD/$HM_SOURCE"  # relative to the caller's folder
  bash scripts/build_hm.sh "$HM_SOURCE"
fi

# --- shipped model weights (trained here; see assets/*.md for the commands) ------------------
.venv/bin/python -m dmic_core.assets_check
say "ready"
