#!/usr/bin/env bash
# Rounds 1..ROUNDS-1: adaptive superpixels from the previous round's model, class-balanced
# selection, answers, sieving, labels, TFRecords, training, evaluation; then the results table
# and AL curve. Run bash_files/warm_up.sh first. Settings: bash_files/settings.sh.
# Re-running after an interruption resumes where it stopped.
set -euo pipefail
cd "$(dirname "$0")/.."
source bash_files/settings.sh

run_rounds 1 "$ROUNDS"
