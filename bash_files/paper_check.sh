#!/usr/bin/env bash
# The paper's setting on this machine, for a person with a GPU to run as is: what it costs.
# Generates PAPER_TRAIN + PAPER_VAL street scenes of PAPER_HEIGHT x PAPER_WIDTH (Cityscapes'
# 1024x2048) when no DATA_DIR is given (DATASET=cityscapes DATA_DIR=... uses real Cityscapes),
# trains the full Xception-65 at crop 769, batch 4, for TRAIN_STEPS steps, runs the warm-up
# round and one adaptive round with every stage at the paper's settings (SEEDS, 8192
# superpixels per image, INFERENCE_SCALE=0.5), trains the warm-up round a second time with
# the same seed, and prints (scripts/paper_check.py): training and inference images/s, peak
# memory, the per-image time of every stage, and whether the two same-seed runs trained the
# same weights. The generated scenes are kept in $WORK_DIR/paper_data/. Writes $WORK_DIR/$JOB_NAME/ (main/, repeat/, stages.jsonl, paper_check.json);
# a run starts that folder afresh, so that every stage is timed doing its work.
#   bash bash_files/paper_check.sh                                  # generated scenes
#   DATASET=cityscapes DATA_DIR=/data/cityscapes TRAIN_STEPS=500 bash bash_files/paper_check.sh
#   INIT_CHECKPOINT=models/xception_65_imagenet.npz bash bash_files/paper_check.sh
# Every variable of bash_files/settings.sh is a setting here too.
set -euo pipefail
cd "$(dirname "$0")/.."

PAPER_TRAIN="${PAPER_TRAIN:-16}"                # generated scenes (no DATA_DIR)
PAPER_VAL="${PAPER_VAL:-4}"
PAPER_HEIGHT="${PAPER_HEIGHT:-1024}"
PAPER_WIDTH="${PAPER_WIDTH:-2048}"
INFERENCE_IMAGES="${INFERENCE_IMAGES:-8}"       # val images timed in inference
# The profile `paper_check` of the settings table (docs/settings.md): xception_65, crop 769,
# batch 4, 100 steps, SEEDS with 8192 superpixels, INFERENCE_SCALE=0.5, 0.2 % of the base
# superpixels per round, 2 rounds; from INIT_CHECKPOINT (ImageNet weights) `paper_check_imagenet`
# also takes the paper's learning rate 0.007 and BN decay 0.9997.
SETTINGS_PROFILE=paper_check
[ -z "${INIT_CHECKPOINT:-}" ] || SETTINGS_PROFILE=paper_check_imagenet
ROUNDS=2
source bash_files/settings.sh

CHECK_DIR="$WORK_DIR/$JOB_NAME"
if [ "$DATASET" = synthetic ] && [ -z "$DATA_DIR" ]; then
  DATA_DIR="$WORK_DIR/paper_data/synthetic_${PAPER_TRAIN}_${PAPER_VAL}_${PAPER_HEIGHT}x${PAPER_WIDTH}"
  py scripts/make_synthetic.py --dataset_dir "$DATA_DIR" --num_train "$PAPER_TRAIN" \
    --num_val "$PAPER_VAL" --height "$PAPER_HEIGHT" --width "$PAPER_WIDTH"
fi
if [ -e "$CHECK_DIR" ] && [ -n "$(ls -A "$CHECK_DIR")" ] && [ ! -e "$CHECK_DIR/stages.jsonl" ]; then
  echo "error: $CHECK_DIR exists and is not a paper check's folder (no stages.jsonl); a check" \
    "starts its folder afresh: give another JOB_NAME" >&2
  exit 2
fi
rm -rf "$CHECK_DIR"
mkdir -p "$CHECK_DIR"
: > "$CHECK_DIR/stages.jsonl"
CACHE_DIR="$CHECK_DIR/cache"  # its own: no stage skips work that an earlier job did
export $SETTINGS TF_CPP_MIN_LOG_LEVEL
echo "=== paper check: $MODEL_VARIANT, crop $TRAIN_CROP_SIZE, batch $TRAIN_BATCH_SIZE, $TRAIN_STEPS steps ($DATA_DIR)"
JOB_NAME="$JOB_NAME/main" STAGE_LOG="$CHECK_DIR/stages.jsonl" bash bash_files/warm_up.sh
JOB_NAME="$JOB_NAME/main" STAGE_LOG="$CHECK_DIR/stages.jsonl" bash bash_files/adaptive_superpixel.sh
echo "=== paper check: the warm-up round again, same seed"
JOB_NAME="$JOB_NAME/repeat" ROUNDS=1 STAGE_LOG="$CHECK_DIR/repeat_stages.jsonl" bash bash_files/warm_up.sh
py scripts/paper_check.py --check_dir "$CHECK_DIR" --inference_images "$INFERENCE_IMAGES"
