#!/usr/bin/env bash
# The budget map's larger-scale point: the same arms at one budget with the scenes at 256x512
# instead of 128x256, superpixels of the same size in pixels (one per 256 px, so thin classes
# are a few pixels wide instead of one) and the training crop scaled with the image (257), so
# that a crop sees the same share of a scene. Resumable like the map (same archive logic):
#   bash docs/benchmark_scale/run.sh                 # BUDGET: the map's crossover (3 %)
#   BUDGET=3% bash docs/benchmark_scale/run.sh
set -euo pipefail
cd "$(dirname "$0")/../.."
export SYNTH_HEIGHT=256 SYNTH_WIDTH=512 TRAIN_CROP_SIZE="${TRAIN_CROP_SIZE:-257}"
MAP_NAME=budget_scale OUT_DIR=docs/benchmark_scale BUDGETS="${BUDGET:-3%}" TITLE="scenes at 256x512" \
  bash docs/benchmark_budget/run.sh
