#!/usr/bin/env bash
# Warm-up round (round 0): base superpixels if missing, random selection, answers, labels,
# TFRecords, training, evaluation. Settings: bash_files/settings.sh (override by environment).
# Re-running after an interruption resumes where it stopped.
set -euo pipefail
cd "$(dirname "$0")/.."
source bash_files/settings.sh

init_experiment
lock_job
py scripts/build_tfrecords.py --job_dir "$JOB_DIR" --splits val --skip_existing
py scripts/extract_superpixels.py --job_dir "$JOB_DIR"
run_round_stages 0
