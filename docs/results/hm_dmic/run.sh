#!/usr/bin/env bash
# DMIC on HM against constant-QP HM (issue 15), the same points with x265 beside it.
set -e
cd "$(dirname "$0")/../.."
V=work_dirs/evaluate/volumes
for codec in x265 hm; do
  OMP_WAIT_POLICY=PASSIVE .venv/bin/dmic sweep $V/phantom-9000.img.nii.gz --label $V/phantom-9000.label.nii.gz \
    --slices 76:85 --methods hevc,dmic --qps 32,37,42,47 --lambdas 0,7,8,9,10,12 \
    --agents assets/agents_pretrained.pt --codec $codec --workers 1 --out docs/results/hm_dmic/$codec
done
