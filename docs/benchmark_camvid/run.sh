#!/usr/bin/env bash
# The budget map on real street scenes: CamVid's train split (367 images) is the pool, its val
# split (101) the evaluation, both at IMAGE_SCALE=0.5 (180x240: images bilinear, labels nearest;
# every figure is measured at that scale), in the profile camvid_benchmark of the settings table
# (docs/settings.md; its choices and their ablation: docs/benchmark_camvid/ablation.md).
# The same resumable, archived map as docs/benchmark_budget/run.sh (see there), with the arm
# `adaptive` too and every budget over three seeds:
#   DATA_DIR=../shared/datasets/camvid bash docs/benchmark_camvid/run.sh
#   SEEDS=1 DATA_DIR=... bash docs/benchmark_camvid/run.sh     # a seed on another machine
#   EVAL_SPLIT=test DATA_DIR=... bash docs/benchmark_camvid/run.sh   # the same map evaluated on
#     CamVid's test split (test/, testannot/), in its own folders (work_dirs/budget_camvid_test,
#     docs/benchmark_camvid/test): every setting was chosen on train and val
# Two arms of a seed train at once after their shared warm-up (PARALLEL_ARMS=2: on 2 cores about
# 1.25x the trainings per hour, the same results; docs/measured.md); PARALLEL_ARMS=1 runs them
# one after the other.
set -euo pipefail
cd "$(dirname "$0")/../.."
: "${DATA_DIR:?set DATA_DIR to the CamVid folder (train/, trainannot/, val/, valannot/)}"
export DATASET=camvid DATA_DIR SETTINGS_PROFILE=camvid_benchmark PARALLEL_ARMS="${PARALLEL_ARMS:-2}"
export EVAL_SPLIT="${EVAL_SPLIT:-val}"
held=""; [ "$EVAL_SPLIT" = val ] || held="_$EVAL_SPLIT"
MAP_NAME="budget_camvid$held" OUT_DIR="docs/benchmark_camvid${held:+/$EVAL_SPLIT}" BUDGETS="${BUDGETS:-3% 0.3% 10% 1%}" \
  SEEDS="${SEEDS:-0 1 2}" ARMS="full random class_balanced adaptive paper" \
  TITLE="CamVid at 180x240, camvid_benchmark, evaluated on $EVAL_SPLIT" bash docs/benchmark_budget/run.sh
