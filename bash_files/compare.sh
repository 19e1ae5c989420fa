#!/usr/bin/env bash
# Compares acquisition methods: every arm of ARMS runs the warm-up round and ROUNDS-1 further
# rounds for every seed of SEEDS (bash_files/warm_up.sh and adaptive_superpixel.sh with the arm's
# REGIONS / ACQUISITION / SIEVE), plus the fully supervised reference `full` (same model and
# schedule, every ground-truth pixel). Writes under $WORK_DIR/$JOB_NAME/:
#   {arm}_s{seed}/  the jobs;  comparison.csv  comparison.png  comparison.md
# Arms: random (random on base superpixels), class_balanced (on base), uncertainty (on
# adaptive), adaptive (class-balanced on adaptive, no sieving), paper (adaptive + class-balanced
# + sieving), oracle (class-balanced on ground-truth regions), full (the reference).
# The defaults are the label-limited benchmark setting (README, "Comparing methods"); every
# variable of bash_files/settings.sh is a setting here too. Re-running resumes.
set -euo pipefail
cd "$(dirname "$0")/.."

# The benchmark setting: where it differs from bash_files/settings.sh.
JOB_NAME="${JOB_NAME:-compare}"
SEEDS="${SEEDS:-0 1}"
ARMS="${ARMS:-full random class_balanced adaptive paper}"
SHARE_WARM_UP="${SHARE_WARM_UP:-1}"             # 0: every arm trains its own (identical) warm-up round
ROUNDS="${ROUNDS:-4}"
CLICKS_PER_ROUND="${CLICKS_PER_ROUND:-0.5%}"    # of the train split's base superpixels
TRAIN_STEPS="${TRAIN_STEPS:-300}"
BASE_LEARNING_RATE="${BASE_LEARNING_RATE:-0.07}"
source bash_files/settings.sh

COMPARE_NAME="$JOB_NAME"
COMPARE_DIR="$WORK_DIR/$COMPARE_NAME"
py scripts/compare.py check --arms "$ARMS" --seeds "$SEEDS"
export $SETTINGS TF_CPP_MIN_LOG_LEVEL

for seed in $SEEDS; do
  first=""  # the first arm of this seed: the others share its warm-up round
  for arm in $ARMS; do
    eval "$(py scripts/compare.py arm --name "$arm")"
    SEED="$seed" JOB_NAME="$COMPARE_NAME/${arm}_s${seed}"
    JOB_DIR="$WORK_DIR/$JOB_NAME"
    echo "=== $COMPARE_NAME: arm $arm, seed $seed ($JOB_DIR)"
    init_experiment
    if [ "$arm" = full ]; then
      py scripts/build_tfrecords.py --job_dir "$JOB_DIR" --splits val --skip_existing
      py scripts/extract_superpixels.py --job_dir "$JOB_DIR"
      py scripts/train_full.py --job_dir "$JOB_DIR"
      continue
    fi
    if [ -n "$first" ] && [ "$SHARE_WARM_UP" = 1 ]; then
      py scripts/compare.py share --source "$first" --job_dir "$JOB_DIR"
    else
      first="$JOB_DIR"
    fi
    bash bash_files/warm_up.sh
    bash bash_files/adaptive_superpixel.sh
  done
done
py scripts/compare.py report --compare_dir "$COMPARE_DIR" --arms "$ARMS" --seeds "$SEEDS" \
  --title "$COMPARE_NAME: $DATASET, $MODEL_VARIANT, $TRAIN_STEPS steps/round, $CLICKS_PER_ROUND clicks/round"
