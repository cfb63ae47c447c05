#!/usr/bin/env bash
# Regenerates the measurements of docs/scar.md: perplexity of GEM assembled
# from SmolLM2-135M-Instruct (pathways) and all-MiniLM-L6-v2 (router) with
# dense attention, the paper's SCAR and a grid of (sinks, window, k), at
# n = 512 and 2048 (llama-perplexity's convention: chunks of n tokens, each
# scoring its second half), on the first IMDB reviews of ../shared/data.
# Attention times come from `edgebench bench ops` (run it separately).
#
# usage: tools/scar-tradeoff.sh [out-dir]   (after `cargo build --release`)
# env:   SHARED (default ../shared), THREADS (default 2)
# Prints one CSV row per configuration and context; writes them to
# <out-dir>/scar-tradeoff.csv. Each model is built, measured and removed.
set -euo pipefail
cd "$(dirname "$0")/.."
SHARED=${SHARED:-../shared}
THREADS=${THREADS:-2}
OUT=${1:-/tmp/scar-tradeoff}
BIN=./target/release/edgebench
GGUF=$SHARED/models/smollm2-135m-instruct/SmolLM2-135M-Instruct.Q4_1.gguf
BERT=$SHARED/models/all-minilm-l6-v2
mkdir -p "$OUT"

python3 tools/imdb-text.py "$SHARED/data/dapt-imdb/test.jsonl" "$OUT/imdb.txt"

# name, variant, k, sinks, window, cluster_on
GRID=(
  "dense no-scar 16 0 0 hidden"
  "paper-k16 full 16 0 0 hidden"
  "paper-k8 full 8 0 0 hidden"
  "k16-s4 full 16 4 0 hidden"
  "k16-w64 full 16 0 64 hidden"
  "k16-s4-w64 full 16 4 64 hidden"
  "k8-s4-w64 full 8 4 64 hidden"
  "k16-s4-w256 full 16 4 256 hidden"
  "k16-s4-w64-keys full 16 4 64 keys"
)
CSV=$OUT/scar-tradeoff.csv
echo "config,k,sinks,window,cluster_on,ctx,perplexity,tokens_scored,seconds" > "$CSV"
for row in "${GRID[@]}"; do
  read -r name variant k sinks window on <<<"$row"
  cfg=$OUT/$name.toml
  sed -e "s/^k = .*/k = $k/" -e "s/^sinks = .*/sinks = $sinks/" \
      -e "s/^window = .*/window = $window/" -e "s/^cluster_on = .*/cluster_on = \"$on\"/" \
      fixtures/gem/gem-smollm2-minilm.toml > "$cfg"
  "$BIN" gem build --from-pretrained --config "$cfg" --pathways-gguf "$GGUF" \
    --router-bert "$BERT" --data-dir "$SHARED/data" --variants "$variant" \
    --out "$OUT/m-$name" > "$OUT/$name.build.log"
  dir=$OUT/m-$name
  [ "$variant" = full ] || dir=$OUT/m-$name-$variant
  for ctx in 512 2048; do
    start=$(date +%s.%N)
    line=$("$BIN" --threads "$THREADS" perplexity --model "$dir" --text "$OUT/imdb.txt" --ctx "$ctx" | grep -i perplexity | tail -1)
    secs=$(echo "$(date +%s.%N) - $start" | bc)
    ppl=$(echo "$line" | grep -oE '[0-9]+\.[0-9]+' | head -1)
    toks=$(echo "$line" | grep -oE 'over [0-9]+' | grep -oE '[0-9]+')
    echo "$name,$k,$sinks,$window,$on,$ctx,$ppl,${toks:-},$secs" | tee -a "$CSV"
  done
  rm -rf "$OUT/m-$name" "$OUT/m-$name-$variant"
done
