#!/usr/bin/env bash
# Cross-builds EdgeBench for aarch64-unknown-linux-gnu (Raspberry Pi 4,
# Cortex-A72) and runs the kernels' tests under qemu-aarch64 as an A72
# (NEON, no dot-product instructions).
#
#   tools/cross-aarch64.sh --install   # the Debian packages below (sudo)
#   tools/cross-aarch64.sh kernels     # kernel tests, built and run under qemu (default)
#   tools/cross-aarch64.sh build       # the release binary (about 30 min on 2 cores)
#   tools/cross-aarch64.sh smoke       # `suites list` of that binary under qemu
#   tools/cross-aarch64.sh main-job    # that binary's main job under qemu, gated by the
#                                      # host binary against reports/baselines/default
#   tools/cross-aarch64.sh reference [TEST...]
#                                      # reference-model tests built and run under qemu
#                                      # (default: all of REFERENCE_TESTS below)
#
# Toolchain, either of:
#   rustup target add aarch64-unknown-linux-gnu
#   apt-get install rustc-web cargo-web libstd-rust-web-dev:arm64   # Debian 12, after
#                                                                  # dpkg --add-architecture arm64
# and in both cases:
#   apt-get install gcc-aarch64-linux-gnu qemu-user
#
# Environment: TARGET_DIR (default target-aarch64, kept apart from the host
# build, whose build scripts another rustc would rebuild), QEMU_CPU (default
# cortex-a72), HOST_EDGEBENCH (the host's release binary that gates the main
# job; default target/release/edgebench), MAIN_JOB_OUT (default
# target-aarch64/ci-reports), HOST_RUN (a host run of the same job, e.g.
# target/ci-reports/runs/ci-default: main-job then also compares every
# metric of metrics.csv with it).
set -euo pipefail

cd "$(dirname "$0")/.."
TARGET=aarch64-unknown-linux-gnu
TARGET_DIR=${TARGET_DIR:-target-aarch64}
SYSROOT=/usr/aarch64-linux-gnu

if [[ ${1:-} == --install ]]; then
    sudo dpkg --add-architecture arm64
    sudo apt-get update
    sudo apt-get install -y gcc-aarch64-linux-gnu qemu-user
    if ! command -v rustup >/dev/null; then
        sudo apt-get install -y rustc-web cargo-web libstd-rust-web-dev:arm64
    else
        rustup target add "$TARGET"
    fi
    exit 0
fi

# A rustc that has the target's standard library: rustup's, else Debian's.
CARGO=cargo
if ! [[ -d $(rustc --print target-libdir --target "$TARGET" 2>/dev/null) ]] &&
    [[ -d $(/usr/bin/rustc --print target-libdir --target "$TARGET" 2>/dev/null) ]]; then
    CARGO=/usr/bin/cargo
    export RUSTC=/usr/bin/rustc
    # and the same toolchain's rustdoc for the doc-tests, when it has one
    if [[ -x /usr/bin/rustdoc ]]; then
        export RUSTDOC=/usr/bin/rustdoc
    fi
fi
export CARGO_TARGET_AARCH64_UNKNOWN_LINUX_GNU_LINKER=aarch64-linux-gnu-gcc
export CC_aarch64_unknown_linux_gnu=aarch64-linux-gnu-gcc
# The cross toolchain's loader with the cross toolchain's libc. Without
# LD_LIBRARY_PATH the loader from $SYSROOT reads the host's ld.so.cache,
# which (with libc6:arm64 installed) names /lib/aarch64-linux-gnu/libc.so.6
# of another glibc build; the two disagree on the loader's private data
# and the first pthread_create loops forever in its stack cache.
export CARGO_TARGET_AARCH64_UNKNOWN_LINUX_GNU_RUNNER="qemu-aarch64 -cpu ${QEMU_CPU:-cortex-a72} -L $SYSROOT -E LD_LIBRARY_PATH=$SYSROOT/lib"
RUNNER=($CARGO_TARGET_AARCH64_UNKNOWN_LINUX_GNU_RUNNER)
ARGS=(--release --target "$TARGET" --target-dir "$TARGET_DIR")
BIN=$TARGET_DIR/$TARGET/release/edgebench
# The tests that check imported models against reference outputs: synthetic
# Llama and BERT checkpoints, optimum's ONNX exports, and SmolLM2-135M and
# all-MiniLM-L6-v2 from ../shared/models (those skip when it is absent).
REFERENCE_TESTS=(llama_reference bert_reference onnx_exports smollm minilm_and_hub gem_pretrained reproduce)

case ${1:-kernels} in
kernels)
    # only this crate: rayon, matrixmultiply and libc, no inference engine
    $CARGO test "${ARGS[@]}" -p edgebench-kernels
    ;;
build)
    $CARGO build "${ARGS[@]}"
    ;;
smoke)
    "${RUNNER[@]}" "$BIN" suites list
    ;;
main-job)
    # The main job of CI (the embedded default over the fixtures of all
    # suites) on the aarch64 binary, then the host binary's gate against the
    # committed baseline: the emulated A72 must score as the host does.
    host=${HOST_EDGEBENCH:-target/release/edgebench}
    out=${MAIN_JOB_OUT:-$TARGET_DIR/ci-reports}
    for exe in "$BIN" "$host"; do
        [[ -x $exe ]] || { echo "$0: $exe not found (build it first)" >&2; exit 2; }
    done
    # Two shards at once, one emulated thread each (qemu runs a guest
    # thread on one host core), merged by the host binary into the run one
    # process makes (the merge checks that the shards are of one run).
    rm -rf "$out/runs/ci-arm" "$out"/runs/ci-arm-shard-*
    pids=()
    for shard in 1/2 2/2; do
        "${RUNNER[@]}" "$BIN" run --quiet --threads 1 --run-id ci-arm --shard "$shard" --out "$out" &
        pids+=($!)
    done
    for pid in "${pids[@]}"; do wait "$pid"; done
    "$host" merge "$out/runs/ci-arm-shard-*" --run-id ci-arm --out "$out" --quiet
    "$host" gate --baseline reports/baselines/default --candidate ci-arm --out "$out"
    if [[ -n ${HOST_RUN:-} ]]; then
        # Equal, or within 1e-5 relative: the NEON and x86 kernels sum in
        # different orders, which moves perplexities by up to ~1e-6 relative
        # (NEON against AVX2 2.5e-7, portable code against AVX2 1.2e-6).
        awk -F, 'NR == FNR { if (FNR > 1) host[$2 "/" $5] = $6; next }
            FNR > 1 {
                k = $2 "/" $5; n++
                if (!(k in host)) { bad++; print "only in the aarch64 run: " k; next }
                a = $6; b = host[k]; seen[k] = 1
                if (a == b) { same++; next }
                d = a - b; d = d < 0 ? -d : d; m = b < 0 ? -b : b; m = m < 1 ? 1 : m
                if (d <= 1e-5 * m) { near++; next }
                bad++; print "differs: " k " aarch64 " a " host " b
            }
            END {
                for (k in host) if (!(k in seen)) { bad++; print "only in the host run: " k }
                printf "aarch64 against host: %d metrics, %d equal, %d within 1e-5 relative, %d differ\n", n, same, near, bad
                exit bad > 0
            }' "$HOST_RUN/metrics.csv" "$out/runs/ci-arm/metrics.csv"
    fi
    ;;
reference)
    shift
    tests=("$@")
    [[ $# -gt 0 ]] || tests=("${REFERENCE_TESTS[@]}")
    $CARGO test "${ARGS[@]}" "${tests[@]/#/--test=}"
    ;;
*)
    echo "usage: $0 [--install | kernels | build | smoke | main-job | reference [TEST...]]" >&2
    exit 2
    ;;
esac
