#!/usr/bin/env bash
# Cross-builds EdgeBench for aarch64-unknown-linux-gnu (Raspberry Pi 4,
# Cortex-A72) and runs the kernels' tests under qemu-aarch64 as an A72
# (NEON, no dot-product instructions).
#
#   tools/cross-aarch64.sh --install   # the Debian packages below (sudo)
#   tools/cross-aarch64.sh kernels     # kernel tests, built and run under qemu (default)
#   tools/cross-aarch64.sh build       # the release binary (about 30 min on 2 cores)
#   tools/cross-aarch64.sh smoke       # `suites list` of that binary under qemu
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
# cortex-a72).
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
ARGS=(--release --target "$TARGET" --target-dir "$TARGET_DIR")

case ${1:-kernels} in
kernels)
    # only this crate: rayon, matrixmultiply and libc, no inference engine
    $CARGO test "${ARGS[@]}" -p edgebench-kernels
    ;;
build)
    $CARGO build "${ARGS[@]}"
    ;;
smoke)
    $CARGO_TARGET_AARCH64_UNKNOWN_LINUX_GNU_RUNNER "$TARGET_DIR/$TARGET/release/edgebench" suites list
    ;;
*)
    echo "usage: $0 [--install | kernels | build | smoke]" >&2
    exit 2
    ;;
esac
