#!/usr/bin/env bash
# Propagation and confident pixels on real street scenes (docs/method.md sections 12-13): the
# arms paper_propagate, paper_self_train and paper_both beside paper and random, at equal clicks,
# in the CamVid map's own comparison folder (work_dirs/budget_camvid), so that they share its
# reference, its warm-up rounds and its paper and random jobs: the paired differences against
# paper and random are over the very same jobs. Budgets: 3 % (the crossover on the generated
# scenes) and 1 % (below it); three seeds. Run it after docs/benchmark_camvid/run.sh (or on another
# machine with its results restored); it resumes like every comparison:
#   DATA_DIR=../shared/datasets/camvid bash docs/benchmark_camvid/run_implied.sh
# Each budget's comparison.md reports the paired differences (paper_both - paper, ...) and, per
# arm, the labels each mechanism gave per click and the share of them that is wrong; this
# script archives them in docs/benchmark_camvid/implied/.
set -euo pipefail
cd "$(dirname "$0")/../.."
: "${DATA_DIR:?set DATA_DIR to the CamVid folder (train/, trainannot/, val/, valannot/)}"
export DATASET=camvid DATA_DIR SETTINGS_PROFILE=camvid_benchmark PARALLEL_ARMS="${PARALLEL_ARMS:-2}"
export EVAL_SPLIT="${EVAL_SPLIT:-val}"  # test: beside run.sh's map on the test split
held=""; [ "$EVAL_SPLIT" = val ] || held="_$EVAL_SPLIT"
MAP_NAME="budget_camvid$held" OUT_DIR="docs/benchmark_camvid/implied$held" BUDGETS="${BUDGETS:-3% 1%}" \
  SEEDS="${SEEDS:-0 1 2}" ARMS="full random paper paper_propagate paper_self_train paper_both" \
  TITLE="CamVid at 180x240, camvid_benchmark, evaluated on $EVAL_SPLIT: propagation and confident pixels" \
  bash docs/benchmark_budget/run.sh
