#!/usr/bin/env bash
# Runs `edgebench bench eval` with two binaries (a build before a change and
# one after) in turns, ROUNDS times, on the same model and suites, then
# prints each suite's and each task kind's harness share per binary (median
# and range over the rounds) and checks that both binaries wrote the same
# records (calls, replies, token counts) with tools/bench-eval-summary.py.
#
# usage: tools/bench-eval-turns.sh OLD_BIN NEW_BIN MODEL_DIR OUT [ROUNDS] [SUITES]
# env:   DATA (default ../shared/data), LIMIT (default 3)
# Each turn logs the compilers running beside it (timings under a build are noise).
set -euo pipefail
cd "$(dirname "$0")/.."
OLD=$1 NEW=$2 MODEL=$3 OUT=$4 ROUNDS=${5:-3}
SUITES=${6:-lexglue-ecthr-a,lexglue-ecthr-b,lexglue-eurlex}
DATA=${DATA:-../shared/data}
LIMIT=${LIMIT:-3}
mkdir -p "$OUT"
{ date -u; grep -m1 "model name" /proc/cpuinfo; nproc; git rev-parse --short HEAD; } > "$OUT/host.txt"
for r in $(seq 1 "$ROUNDS"); do
  for which in old new; do
    bin=$OLD; [ "$which" = new ] && bin=$NEW
    echo "round $r $which $(date -u +%H:%M:%S) beside: $(pgrep -x -d, 'cargo|rustc' || echo none)" | tee -a "$OUT/turns.log"
    "$bin" bench eval --model "$MODEL" --data-dir "$DATA" --limit "$LIMIT" --suites "$SUITES" \
      --out "$OUT/$which-$r" --json > "$OUT/$which-$r.jsonl"
  done
done
python3 tools/bench-eval-summary.py "$OUT" "$ROUNDS"
