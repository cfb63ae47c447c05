#!/bin/bash
# Submits an EdgeBench evaluation as a Slurm array of SHARDS tasks and a merge job that
# starts once every task has succeeded (afterok). Usage:
#   RUN_ID=eval-1 MODEL=models/smollm2 EDGEBENCH_DATA=../shared/data SHARDS=8 deploy/slurm/submit.sh
set -euo pipefail
: "${RUN_ID:?set RUN_ID}" "${MODEL:?set MODEL}"
SHARDS=${SHARDS:-4}
OUT=${OUT:-reports}
export RUN_ID MODEL OUT
here=$(dirname "$0")

array=$(sbatch --parsable --array="1-$SHARDS" --export=ALL "$here/edgebench-array.sbatch")
array=${array%%;*} # --parsable prints "id" or "id;cluster"
merge=$(sbatch --parsable --dependency="afterok:$array" --export=ALL \
  --job-name=edgebench-merge --cpus-per-task=1 --mem=2G --output="edgebench-merge-%j.out" \
  --wrap="edgebench merge '$RUN_ID-shard-*' --run-id '$RUN_ID' --out '$OUT' --quiet")
merge=${merge%%;*}
echo "array job $array ($SHARDS shards), merge job $merge: $OUT/runs/$RUN_ID"
