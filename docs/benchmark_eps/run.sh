#!/usr/bin/env bash
# The EPS ablation of docs/benchmark_eps/ (seed 0): the default EPS (0.1) with full, random and
# paper, then EPS 0.05 and 0.2 beside copies of the first job's full_s0 and random_s0 (a job on
# base regions does not depend on EPS, so the copies resume). Run from the repository root.
set -euo pipefail
JOB_NAME=eps010 SEEDS=0 ARMS="full random paper" NUMERICS_CHECK=0 bash bash_files/compare.sh
for e in 005:0.05 020:0.2; do
  name=eps${e%%:*} val=${e##*:}
  mkdir -p work_dirs/$name
  for a in full_s0 random_s0; do
    [ -d work_dirs/$name/$a ] || cp -a work_dirs/eps010/$a work_dirs/$name/$a
  done
  JOB_NAME=$name EPS=$val SEEDS=0 ARMS="full random paper" NUMERICS_CHECK=0 bash bash_files/compare.sh
done
