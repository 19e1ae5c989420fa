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
# Re-running resumes.
set -euo pipefail
cd "$(dirname "$0")/.."

# The benchmark setting: the profile `benchmark` of the settings table (docs/settings.md:
# CLICKS_PER_ROUND=0.3% of the base superpixels, P3: <= 1 %; TRAIN_STEPS=600; from the stand-in
# BASE_LEARNING_RATE=0.02, as 0.07 wrecks sparse-label training), then the driver's own.
# SETTINGS_PROFILE=camvid_benchmark: the real street scenes' setting (docs/benchmark_camvid/).
SETTINGS_PROFILE="${SETTINGS_PROFILE:-benchmark}"
SEEDS="${SEEDS-0 1 2}"                          # unset: the default; set but empty: refused
ARMS="${ARMS-full random class_balanced adaptive paper}"
SHARE_WARM_UP="${SHARE_WARM_UP:-1}"             # 0: every arm trains its own (identical) warm-up round
SYNTH_TRAIN="${SYNTH_TRAIN:-400}"               # the embedded pool (DATASET=synthetic, no DATA_DIR)
SYNTH_VAL="${SYNTH_VAL:-100}"
SYNTH_HEIGHT="${SYNTH_HEIGHT:-128}"             # its image size (superpixels stay one per 256 px)
SYNTH_WIDTH="${SYNTH_WIDTH:-256}"
STANDIN_DIR="${STANDIN_DIR:-models}"            # where the stand-in's .npz is kept
STANDIN_FLAGS="${STANDIN_FLAGS:-}"              # e.g. "--steps 3000": see scripts/build_standin.py
NUMERICS_CHECK="${NUMERICS_CHECK:-1}"           # 1: the first seed's arms again with oneDNN flipped (P5)
NUMERICS_ARMS="${NUMERICS_ARMS:-random class_balanced paper}"  # the arms P5 runs again (those in ARMS)
BUDGETS="${BUDGETS:-}"                          # the budget map: per-round budgets, e.g. "0.3% 1% 3% 10%"
PARALLEL_ARMS="${PARALLEL_ARMS:-1}"             # arms of a seed run at once after their shared warm-up,
                                                # each appending to logs/{job}.log (same results; docs/measured.md)
source bash_files/settings.sh

COMPARE_NAME="$JOB_NAME"
COMPARE_DIR="$WORK_DIR/$COMPARE_NAME"
py scripts/compare.py check --arms "$ARMS" --seeds "$SEEDS" --budgets "$BUDGETS"
case "$PARALLEL_ARMS" in
  [1-9]|[1-9][0-9]) ;;
  *) echo "error: PARALLEL_ARMS must be a whole number from 1 to 99 (arms run at once), got '$PARALLEL_ARMS'" >&2
     exit 2 ;;
esac
mkdir -p "$COMPARE_DIR"
start="$(date +%s)"  # every run's wall time is appended (P8 sums them over resumed runs)
# Arms running in the background (PARALLEL_ARMS > 1) end with this driver: their drivers and the
# scripts those started (which follow their own driver) are stopped.
stop_tree() {
  local child
  for child in $(pgrep -P "$1" 2> /dev/null); do stop_tree "$child"; done
  kill "$1" 2> /dev/null || true
}
on_exit() {
  local pid
  for pid in $(jobs -rp); do stop_tree "$pid"; done
  echo "$start $(date +%s)" >> "$COMPARE_DIR/wall_clock.txt"
}
trap on_exit EXIT
trap 'exit 130' INT TERM  # so that the EXIT trap records a run that is stopped
if [ "$DATASET" = synthetic ] && [ -z "$DATA_DIR" ]; then
  DATA_DIR="datasets/synthetic_${SYNTH_TRAIN}_${SYNTH_VAL}"
  [ "${SYNTH_HEIGHT}x${SYNTH_WIDTH}" = 128x256 ] || DATA_DIR="${DATA_DIR}_${SYNTH_HEIGHT}x${SYNTH_WIDTH}"
  py scripts/make_synthetic.py --dataset_dir "$DATA_DIR" --num_train "$SYNTH_TRAIN" --num_val "$SYNTH_VAL" \
    --height "$SYNTH_HEIGHT" --width "$SYNTH_WIDTH"
fi
if [ -z "$INIT_CHECKPOINT" ] && [ "$STANDIN" = 1 ]; then
  INIT_CHECKPOINT="$(py scripts/build_standin.py --model_variant "$MODEL_VARIANT" --work_dir "$WORK_DIR" \
    --models_dir "$STANDIN_DIR" ${STANDIN_FLAGS})"
fi
ONEDNN="${TF_ENABLE_ONEDNN_OPTS:-1}"  # TensorFlow's default on x86: on
export $SETTINGS TF_CPP_MIN_LOG_LEVEL

# The reference reads no budget: with BUDGETS it runs once per seed (at CLICKS_PER_ROUND) and
# every budget's report compares against it.
run_reference() {
  local seed="$1" values
  values="$(py scripts/compare.py arm --name full)"
  read_settings <<< "$values"
  SEED="$seed" JOB_NAME="$COMPARE_NAME/full_s${seed}"
  JOB_DIR="$WORK_DIR/$JOB_NAME"
  echo "=== $COMPARE_NAME: reference, seed $seed ($JOB_DIR)"
  init_experiment
  py scripts/build_tfrecords.py --job_dir "$JOB_DIR" --splits val --skip_existing
  py scripts/extract_superpixels.py --job_dir "$JOB_DIR"
  py scripts/train_full.py --job_dir "$JOB_DIR"
}

# The arms of ARMS (but the reference) for every seed, under $COMPARE_NAME/$1 ("": the
# comparison's own folder) at CLICKS_PER_ROUND.
run_arms() {
  local sub="$1" seed arm first values
  for seed in $SEEDS; do
    first=""  # the first arm of this seed: the others share its warm-up round
    for arm in $ARMS; do
      [ "$arm" = full ] && continue
      values="$(py scripts/compare.py arm --name "$arm" --reference_dir "$COMPARE_DIR/full_s$seed")"
      read_settings <<< "$values"
      SEED="$seed" JOB_NAME="$COMPARE_NAME/${sub:+$sub/}${arm}_s${seed}"
      JOB_DIR="$WORK_DIR/$JOB_NAME"
      echo "=== $COMPARE_NAME: ${sub:+$sub, }arm $arm, seed $seed ($JOB_DIR)"
      init_experiment
      if [ -n "$first" ] && [ "$SHARE_WARM_UP" = 1 ]; then
        py scripts/compare.py share --source "$first" --job_dir "$JOB_DIR"
      else
        first="$JOB_DIR"
      fi
      if [ "$PARALLEL_ARMS" = 1 ]; then
        bash bash_files/warm_up.sh
        bash bash_files/adaptive_superpixel.sh
        continue
      fi
      # the shared warm-up first (the other arms copy it), then the arm in the background
      [ "$first" != "$JOB_DIR" ] || [ "$SHARE_WARM_UP" != 1 ] || bash bash_files/warm_up.sh
      while [ "$(jobs -rp | wc -l)" -ge "$PARALLEL_ARMS" ]; do arm_finished; done
      log="$COMPARE_DIR/logs/${JOB_NAME#"$COMPARE_NAME"/}.log"
      mkdir -p "$(dirname "$log")"
      echo "    running in the background; its output: $log"
      (bash bash_files/warm_up.sh && bash bash_files/adaptive_superpixel.sh) >> "$log" 2>&1 &
      running["$!"]="$log"
    done
    while [ "$(jobs -rp | wc -l)" -gt 0 ]; do arm_finished; done
  done
}

# PARALLEL_ARMS > 1: waits for one background arm; its last lines (the results table) are
# printed; a failed arm stops the comparison once the others have ended (re-running resumes).
declare -A running=()
arm_finished() {
  local pid status=0
  wait -n -p pid || status=$?
  [ -n "${pid:-}" ] || return 0
  local log="${running[$pid]}"
  unset "running[$pid]"
  if [ "$status" = 0 ]; then
    echo "=== $COMPARE_NAME: finished, $log"
    # its results table: the log's last lines from the table's header on
    awk '/^round +clicks/ { table = "" } { table = table $0 "\n" } END { printf "%s", table }' "$log"
  else
    echo "error: an arm failed (exit $status); the last lines of $log:" >&2
    tail -n 15 "$log" >&2
    while [ "$(jobs -rp | wc -l)" -gt 0 ]; do wait -n || true; done
    exit "$status"
  fi
}

if [ -z "$BUDGETS" ]; then
  for seed in $SEEDS; do
    case " $ARMS " in *" full "*) run_reference "$seed" ;; esac
    run_arms ""
  done
else
  case " $ARMS " in *" full "*) for seed in $SEEDS; do run_reference "$seed"; done ;; esac
  for budget in $BUDGETS; do
    sub="$(py scripts/compare.py budget_folder --budget "$budget")"
    CLICKS_PER_ROUND="$budget" run_arms "$sub"
    # the report covers every seed of the budget: a seed added later (SEEDS=2) joins the others
    seeds="$(py scripts/compare.py budget_seeds --compare_dir "$COMPARE_DIR/$sub" --arms "$ARMS" --seeds "$SEEDS")"
    py scripts/compare.py report --compare_dir "$COMPARE_DIR/$sub" --reference_dir "$COMPARE_DIR" \
      --arms "$ARMS" --seeds "$seeds" --onednn "$ONEDNN" \
      --title "$COMPARE_NAME: $DATASET, $MODEL_VARIANT, $TRAIN_STEPS steps/round, $budget clicks/round" \
      > /dev/null
  done
  py scripts/compare.py budget_map --compare_dir "$COMPARE_DIR" --budgets "$BUDGETS" \
    --arms "$ARMS" --running_since "$start"
  exit 0
fi
if [ "$NUMERICS_CHECK" = 1 ]; then
  # P5: the first seed's arms of NUMERICS_ARMS (those in ARMS), every round, again under the
  # other oneDNN setting (merge_bound still reads the main run's reference).
  other=$((1 - ONEDNN))
  arms=""
  for arm in $NUMERICS_ARMS; do case " $ARMS " in *" $arm "*) arms="$arms $arm" ;; esac; done
  if [ -n "$arms" ]; then
    echo "=== $COMPARE_NAME: numerics check, seed ${SEEDS%% *}, TF_ENABLE_ONEDNN_OPTS=$other"
    TF_ENABLE_ONEDNN_OPTS="$other" SEEDS="${SEEDS%% *}" ARMS="$arms" run_arms "numerics_onednn$other"
  fi
fi
py scripts/compare.py report --compare_dir "$COMPARE_DIR" --arms "$ARMS" --seeds "$SEEDS" \
  --onednn "$ONEDNN" --running_since "$start" \
  --title "$COMPARE_NAME: $DATASET, $MODEL_VARIANT, $TRAIN_STEPS steps/round, $CLICKS_PER_ROUND clicks/round"
