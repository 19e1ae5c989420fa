#!/usr/bin/env bash
# Warm-up round (round 0): base superpixels if missing, random selection, answers, labels,
# TFRecords, training, evaluation. Settings: bash_files/settings.sh (override by environment).
# Re-running after an interruption resumes where it stopped.
set -euo pipefail
cd "$(dirname "$0")/.."
source bash_files/settings.sh

run_rounds 0 1
