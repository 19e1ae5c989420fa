# Settings shared by warm_up.sh and adaptive_superpixel.sh. Every one is a variable that the
# environment overrides, e.g. `ROUNDS=4 ACQUISITION=uncertainty bash bash_files/warm_up.sh`.
# The defaults run the embedded synthetic street scenes with the light backbone on a CPU; every
# setting, its allowed values and what it does on a running job: docs/settings.md.
# >>> generated from the table in deeplab/experiment/settings.py by `python -m deeplab.experiment.settings --write`: change a default there, not here
# NAME=value lines (data, never run as code) into the variables of those NAMEs that the
# environment leaves unset or empty (only_unset) or into all of them
read_settings() {
  local name value
  while IFS='=' read -r name value; do
    if [ -n "$name" ] && { [ "${1:-}" != only_unset ] || [ -z "${!name:-}" ]; }; then
      printf -v "$name" '%s' "$value"
    fi
  done
}
if [ -n "${SETTINGS_PROFILE:-}" ]; then  # a named profile first (docs/settings.md, "Profiles")
  profile_values="$("${PYTHON:-python}" -m deeplab.experiment.settings --profile "$SETTINGS_PROFILE" --values)"
  read_settings only_unset <<< "$profile_values"
fi
WORK_DIR="${WORK_DIR:-work_dirs}"  # where jobs and the cache live
JOB_NAME="${JOB_NAME:-demo}"  # the job's folder under WORK_DIR
DATASET="${DATASET:-synthetic}"  # cityscapes | pascal_voc_seg | synthetic | camvid | folder: the data set's layout
DATA_DIR="${DATA_DIR:-}"  # data root in that layout (empty: datasets/<name>; never written into)
IMAGE_SCALE="${IMAGE_SCALE:-1.0}"  # the scale the job sees the data at: images (bilinear) and labels (nearest) resized once into the cache; evaluation at that scale too
EVAL_SPLIT="${EVAL_SPLIT:-val}"  # the split every round and the reference are evaluated on (CamVid's test, where present: figures on images no setting was chosen on; choose settings on val)
ROUNDS="${ROUNDS:-3}"  # rounds, the warm-up included (more may be added to a job)
CLICKS_PER_ROUND="${CLICKS_PER_ROUND:-1000}"  # clicks (regions asked) per round, or P% of the train split's base superpixels (paper: 0.2%)
SUPERPIXEL_METHOD="${SUPERPIXEL_METHOD:-seeds}"  # slic | seeds: base superpixels
NUM_SUPERPIXELS="${NUM_SUPERPIXELS:-0}"  # base superpixels per image; 0: one per superpixel_size_px
REGIONS="${REGIONS:-adaptive}"  # adaptive | base | oracle: the regions asked after the warm-up
ACQUISITION="${ACQUISITION:-class_balanced}"  # random | uncertainty | class_balanced: the score after the warm-up
SIEVE="${SIEVE:-1}"  # drop the pixels of large regions the answer probably does not fit
REVIEW_SHARE="${REVIEW_SHARE:-0.0}"  # share of each round's answers asked again of another annotator (0: off)
ORACLE_NOISE="${ORACLE_NOISE:-0.0}"  # the simulated annotator answers another class with this probability
COST_MODEL="${COST_MODEL:-click}"  # click | measured: what a region costs (click: one, the paper's; measured: a fit of answer times)
CLICK_COST_MODEL="${CLICK_COST_MODEL:-}"  # with COST_MODEL=measured: the fit (scripts/fit_cost_model.py)
EPS="${EPS:-0.1}"  # adaptive merge: Jensen-Shannon distance below which neighbours merge
MERGE_MODEL="${MERGE_MODEL:-}"  # a finished training folder whose model merges instead of the previous round's (a bound)
PROPAGATE="${PROPAGATE:-0}"  # each answer also labels the unasked regions near it that the model finds alike and predicts as the answer (from round 1; marked in the source maps, never in the ledger)
PROPAGATE_EPS="${PROPAGATE_EPS:-0.2}"  # propagation: Jensen-Shannon distance below which a region counts as alike (chosen on CamVid train: docs/benchmark_camvid/implied_labels.md)
PROPAGATE_HOPS="${PROPAGATE_HOPS:-1}"  # propagation: how many neighbour steps away from an answered region
SELF_TRAIN="${SELF_TRAIN:-0}"  # the previous round's most confident pixels, class by class, join the labels outside every answered region (from round 1)
SELF_TRAIN_SHARE="${SELF_TRAIN_SHARE:-0.2}"  # self-training: the share of each class's predicted pixels taken, the most confident first
SEED="${SEED:-0}"  # the job's seed: selection, initialisation, augmentation
MODEL_VARIANT="${MODEL_VARIANT:-xception_light}"  # xception_41 | xception_65 | xception_71 | xception_light: the backbone (xception_65 for the paper)
TRAIN_STEPS="${TRAIN_STEPS:-300}"  # training steps per round
TRAIN_CROP_SIZE="${TRAIN_CROP_SIZE:-129}"  # training crop (square; 4k+1 keeps strides aligned)
TRAIN_BATCH_SIZE="${TRAIN_BATCH_SIZE:-8}"  # training batch (over all replicas)
BASE_LEARNING_RATE="${BASE_LEARNING_RATE:-0.07}"  # poly schedule's start: 0.07 from scratch, 0.007 from ImageNet weights
BATCH_NORM_DECAY="${BATCH_NORM_DECAY:-0.9}"  # batch norm's moving-average decay (0.9997 from ImageNet weights)
MIN_SCALE_FACTOR="${MIN_SCALE_FACTOR:-0.5}"  # training augmentation: smallest random image scale
MAX_SCALE_FACTOR="${MAX_SCALE_FACTOR:-2.0}"  # training augmentation: largest random image scale
CLASS_WEIGHTS="${CLASS_WEIGHTS:-none}"  # none | median_frequency | sqrt_median_frequency: per-class loss weights from the round's training labels (median_frequency: SegNet's for CamVid; sqrt_median_frequency: its square root, milder)
INIT_CHECKPOINT="${INIT_CHECKPOINT:-}"  # initial weights: converted ImageNet weights (.npz) or a TF1 checkpoint
WARM_START="${WARM_START:-0}"  # each round starts from the previous round's weights
FINE_TUNE_BATCH_NORM="${FINE_TUNE_BATCH_NORM:-1}"  # 0: freeze batch norm's statistics (small batches)
INFERENCE_SCALE="${INFERENCE_SCALE:-1.0}"  # image scale of acquisition-time inference (paper: 0.5)
NUM_WORKERS="${NUM_WORKERS:-2}"  # processes for the per-image stages (or Ray CPUs)
EXECUTOR="${EXECUTOR:-local}"  # local | ray: where the per-image stages run (ray: RAY_ADDRESS for a cluster)
CACHE_DIR="${CACHE_DIR:-}"  # superpixel maps and val TFRecords, shared by jobs (empty: $WORK_DIR/cache)
SAVE_INTERVAL_SECS="${SAVE_INTERVAL_SECS:-1200.0}"  # a checkpoint at least this often while training
DETERMINISTIC="${DETERMINISTIC:-1}"  # deterministic kernels: a seed repeats a run bit for bit
ANNOTATOR="${ANNOTATOR:-oracle}"  # oracle | human | label_studio: who answers (oracle: reads the ground truth; human: people on the web page; label_studio: people in Label Studio)
ANNOTATE_HOST="${ANNOTATE_HOST:-127.0.0.1}"  # the page's address; another than 127.0.0.1 needs the printed token
ANNOTATE_PORT="${ANNOTATE_PORT:-8765}"  # the page's port; 0: any free port
PRESELECT="${PRESELECT:-0}"  # the page pre-selects the model's dominant class
LEASE_SECS="${LEASE_SECS:-300.0}"  # a region handed to one person is held for them this long
LABEL_STUDIO_URL="${LABEL_STUDIO_URL:-http://localhost:8080}"  # ANNOTATOR=label_studio: the Label Studio server the queries go to
LABEL_STUDIO_KEY_FILE="${LABEL_STUDIO_KEY_FILE:-}"  # a file holding Label Studio's API key (empty: the LABEL_STUDIO_API_KEY variable; the key is never saved)
LABEL_STUDIO_PYTHON="${LABEL_STUDIO_PYTHON:-}"  # the Python of Label Studio's own environment, which runs its client (empty: the one scripts/label_studio.py installs)
LABEL_STUDIO_ROOT="${LABEL_STUDIO_ROOT:-/}"  # the server's LABEL_STUDIO_LOCAL_FILES_DOCUMENT_ROOT: image URLs are paths below it
LABEL_STUDIO_POLL_SECS="${LABEL_STUDIO_POLL_SECS:-5.0}"  # how often the answers stage asks Label Studio for new answers
DROP_MISSING_ANSWERED="${DROP_MISSING_ANSWERED:-0}"  # 1: go on without answered images removed from DATA_DIR (their clicks stay spent)
STANDIN="${STANDIN:-1}"  # compare.sh: with INIT_CHECKPOINT empty, every round starts from the stand-in backbone (0: from scratch)
PYTHON="${PYTHON:-python}"  # the interpreter the drivers run
LOCK_WAIT_SECS="${LOCK_WAIT_SECS:-120}"  # a driver started while its job's last driver, killed, still has a stage ending waits this long for it
SETTINGS="WORK_DIR JOB_NAME DATASET DATA_DIR IMAGE_SCALE EVAL_SPLIT ROUNDS CLICKS_PER_ROUND
  SUPERPIXEL_METHOD NUM_SUPERPIXELS REGIONS ACQUISITION SIEVE REVIEW_SHARE ORACLE_NOISE
  COST_MODEL CLICK_COST_MODEL EPS MERGE_MODEL PROPAGATE PROPAGATE_EPS PROPAGATE_HOPS SELF_TRAIN
  SELF_TRAIN_SHARE SEED MODEL_VARIANT TRAIN_STEPS TRAIN_CROP_SIZE TRAIN_BATCH_SIZE
  BASE_LEARNING_RATE BATCH_NORM_DECAY MIN_SCALE_FACTOR MAX_SCALE_FACTOR CLASS_WEIGHTS
  INIT_CHECKPOINT WARM_START FINE_TUNE_BATCH_NORM INFERENCE_SCALE NUM_WORKERS EXECUTOR CACHE_DIR
  SAVE_INTERVAL_SECS DETERMINISTIC ANNOTATOR ANNOTATE_HOST ANNOTATE_PORT PRESELECT LEASE_SECS
  LABEL_STUDIO_URL LABEL_STUDIO_KEY_FILE LABEL_STUDIO_PYTHON LABEL_STUDIO_ROOT
  LABEL_STUDIO_POLL_SECS DROP_MISSING_ANSWERED STANDIN PYTHON LOCK_WAIT_SECS"
TF_NOISE='All log messages before absl::InitializeLog|cudart_stub\.cc.*Could not find cuda drivers|cuda_platform\.cc.*failed call to cuInit|oneDNN custom operations are on'  # TensorFlow's start-up notices (deeplab/parallel.py)
init_experiment() {
  py scripts/init_experiment.py --job_dir "$JOB_DIR" --work_dir "$WORK_DIR" --dataset="$DATASET" --dataset_dir="$DATA_DIR" \
    --image_scale="$IMAGE_SCALE" --eval_split="$EVAL_SPLIT" --rounds="$ROUNDS" \
    --clicks_per_round="$CLICKS_PER_ROUND" --superpixel_method="$SUPERPIXEL_METHOD" \
    --num_superpixels="$NUM_SUPERPIXELS" --regions="$REGIONS" --acquisition="$ACQUISITION" \
    --sieve="$SIEVE" --review_share="$REVIEW_SHARE" --oracle_noise="$ORACLE_NOISE" \
    --cost_model="$COST_MODEL" --click_cost_model="$CLICK_COST_MODEL" --eps="$EPS" \
    --merge_model="$MERGE_MODEL" --propagate="$PROPAGATE" --propagate_eps="$PROPAGATE_EPS" \
    --propagate_hops="$PROPAGATE_HOPS" --self_train="$SELF_TRAIN" \
    --self_train_share="$SELF_TRAIN_SHARE" --seed="$SEED" --model_variant="$MODEL_VARIANT" \
    --train_steps="$TRAIN_STEPS" --train_crop_size="$TRAIN_CROP_SIZE" \
    --train_batch_size="$TRAIN_BATCH_SIZE" --base_learning_rate="$BASE_LEARNING_RATE" \
    --batch_norm_decay="$BATCH_NORM_DECAY" --min_scale_factor="$MIN_SCALE_FACTOR" \
    --max_scale_factor="$MAX_SCALE_FACTOR" --class_weights="$CLASS_WEIGHTS" \
    --init_checkpoint="$INIT_CHECKPOINT" --warm_start="$WARM_START" \
    --fine_tune_batch_norm="$FINE_TUNE_BATCH_NORM" --inference_scale="$INFERENCE_SCALE" \
    --num_workers="$NUM_WORKERS" --executor="$EXECUTOR" --cache_dir="$CACHE_DIR" \
    --save_interval_secs="$SAVE_INTERVAL_SECS" --deterministic="$DETERMINISTIC" \
    --annotator="$ANNOTATOR" --annotate_host="$ANNOTATE_HOST" \
    --annotate_port="$ANNOTATE_PORT" --preselect="$PRESELECT" --lease_secs="$LEASE_SECS" \
    --label_studio_url="$LABEL_STUDIO_URL" --label_studio_key_file="$LABEL_STUDIO_KEY_FILE" \
    --label_studio_python="$LABEL_STUDIO_PYTHON" --label_studio_root="$LABEL_STUDIO_ROOT" \
    --label_studio_poll_secs="$LABEL_STUDIO_POLL_SECS" \
    --drop_missing_answered="$DROP_MISSING_ANSWERED"
}
# <<< end of the generated block
JOB_DIR="$WORK_DIR/$JOB_NAME"
# One driver per job (after init_experiment has checked JOB_NAME): a second driver started on the
# same job stops at once. The lock is the job's one lock (job.lock, which a script run by hand takes
# too), opened here on descriptor 9, which this shell and the scripts it starts hold (AL_JOB_LOCK_FD
# names it to them), so a killed driver leaves none behind, and an orphaned script keeps it until it
# has ended (scripts end with their driver: deeplab.cli.follow_driver). scripts/lock_driver.py takes
# it (deeplab/experiment/locks.py): a driver started while the holder is a driver of this machine
# that no longer runs (killed, its stage still shutting down) waits for the lock, up to
# LOCK_WAIT_SECS, instead of refusing.
lock_job() {
  exec 9>> "$JOB_DIR/job.lock"
  export AL_JOB_LOCK_FD=9
  "$PYTHON" scripts/lock_driver.py --driver_fd 9 --job_dir "$JOB_DIR" --driver_pid $$ \
    --wait_secs "$LOCK_WAIT_SECS"
}
# What both round drivers do before their rounds: the job checked (or made), its lock taken, the
# evaluation split's TFRecords (EVAL_SPLIT; rebuilt if CACHE_DIR changed or a shard was damaged)
# and the base maps (they live in the cache: made again, identically, if the job moved to another
# WORK_DIR).
prepare_job() {
  init_experiment
  lock_job
  py scripts/build_tfrecords.py --job_dir "$JOB_DIR" --splits "$EVAL_SPLIT" --skip_existing
  py scripts/extract_superpixels.py --job_dir "$JOB_DIR"
}
# The round drivers (warm_up.sh: round 0; adaptive_superpixel.sh: rounds 1..ROUNDS-1): rounds
# $1..$2-1, each round's stages in one process (scripts/run_round.py, each stage as its own script
# would run it; from round 1 the round's adaptive, base or oracle maps first), its results.csv and
# al_curve.png written; then the results table, once (the warm-up's only while round 1 has not
# started: past it, adaptive_superpixel.sh prints it, and a resumed run prints it once too).
run_rounds() {
  local first="$1" last="$2" t regions
  prepare_job
  for ((t = first; t < last; t++)); do
    regions="$([ "$t" = 0 ] || echo regions,)"
    py scripts/run_round.py --job_dir "$JOB_DIR" --round "$t" \
      --stages "${regions}select,annotate,data,train,eval" --record_results
  done
  if [ "$last" -lt "$ROUNDS" ]; then
    py scripts/record_results.py --job_dir "$JOB_DIR" --unless_started "$last"
  else
    py scripts/record_results.py --job_dir "$JOB_DIR"
  fi
}

# TensorFlow's start-up notices on a machine without a GPU (the absl pre-init line, the CUDA
# stub, "failed call to cuInit", the oneDNN banner) are kept out of the drivers' output; every
# other line of stderr passes (TF_NOISE, in the generated block above). TF_CPP_MIN_LOG_LEVEL=0
# shows TensorFlow's own logging again.
export TF_CPP_MIN_LOG_LEVEL="${TF_CPP_MIN_LOG_LEVEL:-1}"
# STAGE_LOG (a file): every script's wall time, CPU time and peak memory appended to it
# (deeplab/experiment/stage_log.py; bash_files/paper_check.sh reads it).
py() {
  # STAGE_LOG: one record per script; run_round.py writes one per stage itself
  if [ -n "${STAGE_LOG:-}" ] && [ "$1" != scripts/run_round.py ]; then
    set -- -m deeplab.experiment.stage_log --log "$STAGE_LOG" -- "$@"
  fi
  # the filter ignores Ctrl-C: it passes the script's last lines ("stopped: ...") and ends with it
  "$PYTHON" "$@" 2> >(trap '' INT; grep --line-buffered -v -E "$TF_NOISE" >&2)
}
export AL_DRIVER_PID=$$  # a script this shell starts ends when it does (deeplab/cli.py follow_driver)

# Progress bars: refresh at most every 10 s when the output is a log file, not a terminal.
[ -t 2 ] || export TQDM_MININTERVAL="${TQDM_MININTERVAL:-10}"
