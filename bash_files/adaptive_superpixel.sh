#!/usr/bin/env bash
# Rounds 1..ROUNDS-1: adaptive superpixels from the previous round's model, class-balanced
# selection, answers, sieving, labels, TFRecords, training, evaluation; then the results table
# and AL curve. Run bash_files/warm_up.sh first. Settings: bash_files/settings.sh.
# Re-running after an interruption resumes where it stopped.
set -euo pipefail
cd "$(dirname "$0")/.."
source bash_files/settings.sh

init_experiment
lock_job
# The val TFRecords as in warm_up.sh: rebuilt if CACHE_DIR changed or a shard was damaged.
py scripts/build_tfrecords.py --job_dir "$JOB_DIR" --splits val --skip_existing
# Base maps live in the cache: made again (identically) if this job moved to another WORK_DIR.
py scripts/extract_superpixels.py --job_dir "$JOB_DIR"
for ((t = 1; t < ROUNDS; t++)); do
  run_round_stages "$t" regions  # the round's adaptive (or base, oracle) maps first
done
