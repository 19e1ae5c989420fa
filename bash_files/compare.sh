#!/usr/bin/env bash
# Compares acquisition methods: every arm of ARMS runs the warm-up round and ROUNDS-1 further
# rounds for every seed of SEEDS (bash_files/warm_up.sh and adaptive_superpixel.sh with the arm's
# REGIONS / ACQUISITION / SIEVE), plus the fully supervised reference `full` (same model and
# schedule, every ground-truth pixel). Writes under $WORK_DIR/$JOB_NAME/:
#   {arm}_s{seed}/  the jobs;  comparison.csv  comparison.png  comparison.md
# Arms: random (random on base superpixels), class_balanced (on base), uncertainty (on
# adaptive), adaptive (class-balanced on adaptive, no sieving), paper (adaptive + class-balanced
# + sieving), oracle (class-balanced on ground-truth regions), merge_bound, paper_propagate,
# paper_self_train and paper_both (paper with PROPAGATE / SELF_TRAIN / both: docs/method.md
# sections 12-13), full (the reference).
# The defaults are the benchmark setting past the cold start (docs/benchmark.md):
# a larger generated pool, every round from the stand-in backbone (scripts/build_standin.py,
# built once when missing), 0.3 % of the pool per round; comparison.md reports the setting's
# properties P1-P9. Every variable of bash_files/settings.sh is a setting here too.
# With BUDGETS (per-round budgets in the CLICKS_PER_ROUND form) it draws the budget map: the
# arms at every budget under budget_<b>/ (each with its comparison.*), the reference once
# (full_s{seed}/, shared), then budget_map.csv, .md and .png; NUMERICS_CHECK is not run.
# Re-running resumes. The driver is Python (deeplab/experiment/compare_driver.py, which lists its
# own variables: SEEDS, ARMS, BUDGETS, PARALLEL_ARMS, SHARE_WARM_UP, NUMERICS_CHECK, NUMERICS_ARMS,
# SYNTH_TRAIN/VAL/HEIGHT/WIDTH, STANDIN_DIR, STANDIN_FLAGS; SETTINGS_PROFILE defaults to benchmark).
set -euo pipefail
cd "$(dirname "$0")/.."
source bash_files/settings.sh  # PYTHON
exec "$PYTHON" scripts/compare.py run
