#!/usr/bin/env bash
# The budget map in this folder: the command that drew it, resumable across machines.
#   bash docs/benchmark_budget/run.sh          # from the repository root; hours on 2 CPU cores
# 1. Restores results.tar.gz (the small files of every finished job: config, manifests, ledgers,
#    selections, evaluations) into $WORK_DIR/budget_map when that folder is missing, so that
#    compare.sh skips what is finished (checkpoints are not kept: only whole budgets are
#    archived, and a budget that did not finish runs again from its warm-up round).
# 2. Runs the map: BUDGETS="10% 3% 1% 0.3%", SEEDS="0 1", arms full random class_balanced paper
#    (SEEDS=0 first and SEEDS=1 later, on another machine: a budget whose report was written is
#    archived, and its seeds join the report when the next seed finishes).
# 3. Archives the finished budgets again, draws the map of what the archive holds (from a copy:
#    budget_map.csv, .md, .png) and copies it and every finished budget's comparison.* here.
# A third seed where a budget's paired signs disagree (it joins the map, see budget_map.py):
#   EXTRA="3%:2" bash docs/benchmark_budget/run.sh
# P5 at a budget (the first seed's arms and reference again with oneDNN off, a job of its own,
# budget_map_onednn0; its arms join that budget's report as numerics_onednn0/):
#   NUMERICS="3%" bash docs/benchmark_budget/run.sh
set -euo pipefail
cd "$(dirname "$0")/../.."
HERE="${OUT_DIR:-docs/benchmark_budget}"  # OUT_DIR, MAP_NAME: another map (docs/benchmark_scale)
case "$HERE" in /*) ;; *) HERE="$PWD/$HERE" ;; esac
mkdir -p "$HERE"
MAP_NAME="${MAP_NAME:-budget_map}"
WORK_DIR="${WORK_DIR:-work_dirs}"
MAP="$WORK_DIR/$MAP_NAME"
BUDGETS="${BUDGETS:-10% 3% 1% 0.3%}"
ARMS="${ARMS:-full random class_balanced paper}"  # another map may add arms (docs/benchmark_camvid)
if [ ! -d "$MAP" ] && [ -f "$HERE/results.tar.gz" ]; then
  mkdir -p "$MAP" && tar xzf "$HERE/results.tar.gz" -C "$MAP"
fi
if [ "${RUN:-1}" = 1 ]; then  # RUN=0: only draw the map and archive what is there
  JOB_NAME="$MAP_NAME" WORK_DIR="$WORK_DIR" BUDGETS="$BUDGETS" SEEDS="${SEEDS:-0 1}" ARMS="$ARMS" \
    bash bash_files/compare.sh
  for extra in ${EXTRA:-}; do  # budget:seed
    JOB_NAME="$MAP_NAME" WORK_DIR="$WORK_DIR" BUDGETS="${extra%%:*}" SEEDS="${extra##*:}" \
      ARMS="$ARMS" bash bash_files/compare.sh
  done
  for budget in ${NUMERICS:-}; do
    TF_ENABLE_ONEDNN_OPTS=0 JOB_NAME="${MAP_NAME}_onednn0" WORK_DIR="$WORK_DIR" BUDGETS="$budget" \
      SEEDS=0 ARMS="$ARMS" bash bash_files/compare.sh
  done
fi
# P5's jobs into their budget's folder, where the report finds them (copied again each time: P5
# compares the last round they reached).
for folder in "$WORK_DIR/${MAP_NAME}_onednn0"/budget_*/; do
  [ -d "$folder" ] || continue
  into="$MAP/$(basename "$folder")/numerics_onednn0"
  for job in "$folder"*_s*/; do
    if [ -f "$job/results.csv" ]; then
      mkdir -p "$into" && rm -rf "${into:?}/$(basename "$job")" && cp -r "$job" "$into/"
    fi
  done
done
# The small files of the references and of every finished budget (one with its comparison.md).
(cd "$MAP" && {
  ls -d full_s*
  for b in budget_*; do if [ -f "$b/comparison.md" ]; then echo "$b"; fi; done
} | xargs -I{} find {} -type f \( -name "*.json" -o -name "*.csv" -o -name "*.md" -o -name "*.txt" \
      -o -name ledger.jsonl \) -not -path "*/probs/*" -not -path "*/maps/*" -not -path "*/labels/*" \
  | sort > "$HERE/.results.list")
tar czf "$HERE/results.tar.gz.tmp" -C "$MAP" -T "$HERE/.results.list" && mv "$HERE/results.tar.gz.tmp" "$HERE/results.tar.gz"
rm -f "$HERE/.results.list"
# The map of what the archive holds (a budget still running is left out), drawn from a copy.
copy="$(mktemp -d)" && trap 'rm -rf "$copy"' EXIT
mkdir "$copy/budget_map" && tar xzf "$HERE/results.tar.gz" -C "$copy/budget_map"
python scripts/compare.py budget_map --compare_dir "$copy/budget_map" --budgets "$BUDGETS" --arms "$ARMS" > /dev/null
sed -i "s|$copy/budget_map|$MAP|g" "$copy"/budget_map/budget_map.md
cp "$copy"/budget_map/budget_map.{csv,md,png} "$HERE/"
# Each budget's report again over every seed it holds (and P5's jobs where they ran).
for b in "$copy"/budget_map/budget_*/; do
  [ -f "$b/comparison.md" ] || continue
  budget="$(basename "$b" | sed 's/^budget_//; s/pct$/%/')"
  seeds="$(python scripts/compare.py budget_seeds --compare_dir "$b" --arms "$ARMS")"
  python scripts/compare.py report --compare_dir "$b" --reference_dir "$copy/budget_map" --arms "$ARMS" \
    --seeds "$seeds" --title "$MAP_NAME: ${TITLE:-the benchmark setting}, $budget clicks/round" > /dev/null
  mkdir -p "$HERE/$(basename "$b")"
  cp "$b"/comparison.{csv,md,png} "$HERE/$(basename "$b")/"
done
