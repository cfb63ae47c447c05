#!/usr/bin/env bash
# Regenerates docs/scar.md's table of SCAR's cached-decoding rules: GEM
# assembled from SmolLM2-135M-Instruct and all-MiniLM-L6-v2 with SCAR
# (k, sinks, window from the environment), built once per `recluster_every`,
# scored on the first IMDB reviews of ../shared/data in chunks of CTX tokens:
# the first half one prefill, the second half one token per step on the
# cache (`perplexity --cached`), beside one pass over each chunk.
#
# usage: tools/scar-cache-rules.sh [out-dir]   (after `cargo build --release`)
# env:   SHARED (../shared), THREADS (2), K (16), SINKS (4), WINDOW (64),
#        CTX (512), CHUNKS (2), RULES ("1 0 16 64")
set -euo pipefail
cd "$(dirname "$0")/.."
SHARED=${SHARED:-../shared}
THREADS=${THREADS:-2}
K=${K:-16}
SINKS=${SINKS:-4}
WINDOW=${WINDOW:-64}
CTX=${CTX:-512}
CHUNKS=${CHUNKS:-2}
RULES=${RULES:-1 0 16 64}
OUT=${1:-/tmp/scar-cache-rules}
BIN=./target/release/edgebench
mkdir -p "$OUT"
python3 tools/imdb-text.py "$SHARED/data/dapt-imdb/test.jsonl" "$OUT/imdb.txt"
CSV=$OUT/scar-cache-rules.csv
echo "recluster_every,k,sinks,window,ctx,perplexity_cached,perplexity_one_pass,max_logit_difference,seconds" > "$CSV"
for rule in $RULES; do
  cfg=$OUT/r$rule.toml
  sed -e "s/^k = .*/k = $K/" -e "s/^sinks = .*/sinks = $SINKS/" \
      -e "s/^window = .*/window = $WINDOW/" -e "s/^recluster_every = .*/recluster_every = $rule/" \
      fixtures/gem/gem-smollm2-minilm.toml > "$cfg"
  "$BIN" gem build --from-pretrained --config "$cfg" \
    --pathways-gguf "$SHARED/models/smollm2-135m-instruct/SmolLM2-135M-Instruct.Q4_1.gguf" \
    --router-bert "$SHARED/models/all-minilm-l6-v2" --data-dir "$SHARED/data" \
    --variants full --out "$OUT/m-r$rule" > "$OUT/r$rule.build.log"
  start=$(date +%s.%N)
  res=$("$BIN" --threads "$THREADS" perplexity --model "$OUT/m-r$rule" --text "$OUT/imdb.txt" \
    --ctx "$CTX" --chunks "$CHUNKS" --cached)
  secs=$(echo "$(date +%s.%N) - $start" | bc)
  cached=$(echo "$res" | head -1 | grep -oE '[0-9]+\.[0-9]+' | head -1)
  one=$(echo "$res" | tail -1 | grep -oE 'perplexity [0-9.]+' | grep -oE '[0-9.]+$')
  diff=$(echo "$res" | tail -1 | grep -oE 'difference\| [0-9.NaN]+' | grep -oE '[0-9.NaN]+$')
  echo "$rule,$K,$SINKS,$WINDOW,$CTX,$cached,$one,$diff,$secs" | tee -a "$CSV"
  rm -rf "$OUT/m-r$rule"
done
