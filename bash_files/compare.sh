#!/usr/bin/env bash
# Compares acquisition methods: every arm of ARMS runs the warm-up round and ROUNDS-1 further
# rounds for every seed of SEEDS (bash_files/warm_up.sh and adaptive_superpixel.sh with the arm's
# REGIONS / ACQUISITION / SIEVE), plus the fully supervised reference `full` (same model and
# schedule, every ground-truth pixel). Writes under $WORK_DIR/$JOB_NAME/:
#   {arm}_s{seed}/  the jobs;  comparison.csv  comparison.png  comparison.md
# Arms: random (random on base superpixels), class_balanced (on base), uncertainty (on
# adaptive), adaptive (class-balanced on adaptive, no sieving), paper (adaptive + class-balanced
# + sieving), oracle (class-balanced on ground-truth regions), full (the reference).
# The defaults are the benchmark setting past the cold start (README, "Comparing methods"):
# a larger generated pool, every round from the stand-in backbone (scripts/build_standin.py,
# built once when missing), 0.3 % of the pool per round; comparison.md reports the setting's
# properties P1-P8. Every variable of bash_files/settings.sh is a setting here too.
# Re-running resumes.
set -euo pipefail
cd "$(dirname "$0")/.."

# The benchmark setting: where it differs from bash_files/settings.sh.
JOB_NAME="${JOB_NAME:-compare}"
SEEDS="${SEEDS:-0 1 2}"
ARMS="${ARMS:-full random class_balanced adaptive paper}"
SHARE_WARM_UP="${SHARE_WARM_UP:-1}"             # 0: every arm trains its own (identical) warm-up round
ROUNDS="${ROUNDS:-3}"
CLICKS_PER_ROUND="${CLICKS_PER_ROUND:-0.3%}"    # of the train split's base superpixels (P3: <= 1 %)
TRAIN_STEPS="${TRAIN_STEPS:-600}"
BASE_LEARNING_RATE="${BASE_LEARNING_RATE:-0.02}"  # from the stand-in: 0.07 wrecks sparse-label training
STANDIN="${STANDIN:-1}"                         # 1: every round starts from the stand-in backbone
SYNTH_TRAIN="${SYNTH_TRAIN:-400}"               # the embedded pool (DATASET=synthetic, no DATA_DIR)
SYNTH_VAL="${SYNTH_VAL:-100}"
STANDIN_DIR="${STANDIN_DIR:-models}"            # where the stand-in's .npz is kept
STANDIN_FLAGS="${STANDIN_FLAGS:-}"              # e.g. "--steps 3000": see scripts/build_standin.py
NUMERICS_CHECK="${NUMERICS_CHECK:-1}"           # 1: warm-up and reference again with oneDNN flipped (P5)
source bash_files/settings.sh

COMPARE_NAME="$JOB_NAME"
COMPARE_DIR="$WORK_DIR/$COMPARE_NAME"
py scripts/compare.py check --arms "$ARMS" --seeds "$SEEDS"
mkdir -p "$COMPARE_DIR"
start="$(date +%s)"  # every run's wall time is appended (P8 sums them over resumed runs)
trap 'echo "$start $(date +%s)" >> "$COMPARE_DIR/wall_clock.txt"' EXIT
trap 'exit 130' INT TERM  # so that the EXIT trap records a run that is stopped
if [ "$DATASET" = synthetic ] && [ -z "$DATA_DIR" ]; then
  DATA_DIR="datasets/synthetic_${SYNTH_TRAIN}_${SYNTH_VAL}"
  py scripts/make_synthetic.py --dataset_dir "$DATA_DIR" --num_train "$SYNTH_TRAIN" --num_val "$SYNTH_VAL"
fi
if [ -z "$INIT_CHECKPOINT" ] && [ "$STANDIN" = 1 ]; then
  INIT_CHECKPOINT="$(py scripts/build_standin.py --model_variant "$MODEL_VARIANT" --work_dir "$WORK_DIR" \
    --models_dir "$STANDIN_DIR" ${STANDIN_FLAGS})"
fi
ONEDNN="${TF_ENABLE_ONEDNN_OPTS:-1}"  # TensorFlow's default on x86: on
export $SETTINGS TF_CPP_MIN_LOG_LEVEL

for seed in $SEEDS; do
  first=""  # the first arm of this seed: the others share its warm-up round
  for arm in $ARMS; do
    eval "$(py scripts/compare.py arm --name "$arm" --reference_dir "$COMPARE_DIR/full_s$seed")"
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
if [ "$NUMERICS_CHECK" = 1 ]; then
  # P5: the first seed's reference and warm-up round again under the other oneDNN setting.
  other=$((1 - ONEDNN)) seed="${SEEDS%% *}"
  for arm in full random; do
    case " $ARMS " in *" $arm "*) ;; *) continue ;; esac
    eval "$(py scripts/compare.py arm --name "$arm")"
    SEED="$seed" JOB_NAME="$COMPARE_NAME/numerics_onednn$other/${arm}_s${seed}"
    JOB_DIR="$WORK_DIR/$JOB_NAME"
    echo "=== $COMPARE_NAME: numerics check, $arm, seed $seed, TF_ENABLE_ONEDNN_OPTS=$other"
    ROUNDS=1 init_experiment
    if [ "$arm" = full ]; then
      py scripts/build_tfrecords.py --job_dir "$JOB_DIR" --splits val --skip_existing
      py scripts/extract_superpixels.py --job_dir "$JOB_DIR"
      TF_ENABLE_ONEDNN_OPTS="$other" py scripts/train_full.py --job_dir "$JOB_DIR"
    else
      TF_ENABLE_ONEDNN_OPTS="$other" ROUNDS=1 bash bash_files/warm_up.sh
    fi
  done
fi
py scripts/compare.py report --compare_dir "$COMPARE_DIR" --arms "$ARMS" --seeds "$SEEDS" \
  --onednn "$ONEDNN" --running_since "$start" \
  --title "$COMPARE_NAME: $DATASET, $MODEL_VARIANT, $TRAIN_STEPS steps/round, $CLICKS_PER_ROUND clicks/round"
