#!/usr/bin/env python3
"""Reference blocks of every quantized GGUF tensor type EdgeBench reads, dequantized by the
`gguf` package's numpy dequantizers (`gguf.quants.dequantize`).

Writes, per type, into tests/fixtures/reference-models/gguf-types/:
  <TYPE>.blocks.bin  the raw block bytes (deterministic pseudo-random, plus edge cases)
  <TYPE>.f32.bin     gguf's dequantized values, little-endian f32, in storage order

Edge cases: an all-zero block, an all-0xFF block (extreme codes, NaN-free scales), and for the
scales (d, dmin): negative, zero, negative zero, subnormal and large binary16 values; the other
blocks use realistic f16 scales (1e-4 .. 1e-1, either sign).

With --check-gguf QUANT.gguf --against SOURCE.gguf it instead dequantizes every tensor of
QUANT.gguf with gguf's numpy code and prints its relative RMS error to the same tensor of
SOURCE.gguf, exiting 1 when a matrix's error is above --max-rel (what `edgebench quantize`
writes must read back through gguf's own dequantizers).

Usage:
  python3 tools/make-reference-gguf-types.py
  python3 tools/make-reference-gguf-types.py --check-gguf q.gguf --against src.gguf
"""

import argparse
import os
import sys

import numpy as np
from gguf import GGMLQuantizationType as T
from gguf.constants import GGML_QUANT_SIZES
from gguf.quants import dequantize

OUT = os.path.join(os.path.dirname(__file__), "..", "tests", "fixtures", "reference-models", "gguf-types")

# type -> (blocks, byte offsets of the f16 scales inside a block)
TYPES = {
    T.Q4_0: (16, [0]),
    T.Q4_1: (16, [0, 2]),
    T.Q5_0: (16, [0]),
    T.Q5_1: (16, [0, 2]),
    T.Q8_0: (16, [0]),
    T.Q2_K: (6, [80, 82]),
    T.Q3_K: (6, [108]),
    T.Q4_K: (6, [0, 2]),
    T.Q5_K: (6, [0, 2]),
    T.Q6_K: (6, [208]),
}

# binary16 scale values of the edge-case blocks
EDGE_SCALES = [-0.0625, 0.0, -0.0, 2.0**-24 * 3, 2.0**-14, 1000.0, -0.5, 65504.0]


def f16_bytes(v):
    return np.array([v], dtype=np.float16).view(np.uint8)


def make(ty, n_blocks, offsets, rng):
    _, size = GGML_QUANT_SIZES[ty]
    blocks = rng.integers(0, 256, size=(n_blocks, size), dtype=np.uint8)
    blocks[0, :] = 0
    blocks[1, :] = 0xFF
    for b in range(n_blocks):
        for j, off in enumerate(offsets):
            if b == 1:
                v = 0.25 if j == 0 else -0.125  # 0xFF bytes would be NaN scales
            elif b < 4:
                v = EDGE_SCALES[(2 * b + j) % len(EDGE_SCALES)]
            elif b == 4:
                v = EDGE_SCALES[(5 + j) % len(EDGE_SCALES)]
            else:
                v = float(rng.choice([-1, 1]) * 10 ** rng.uniform(-4, -1))
            blocks[b, off : off + 2] = f16_bytes(v)
    return blocks


def write_reference():
    os.makedirs(OUT, exist_ok=True)
    rng = np.random.default_rng(20261207)
    for ty, (n_blocks, offsets) in TYPES.items():
        blocks = make(ty, n_blocks, offsets, rng)
        values = dequantize(blocks.reshape(-1), ty).astype("<f4")
        assert np.isfinite(values).all(), ty.name
        with open(os.path.join(OUT, f"{ty.name}.blocks.bin"), "wb") as f:
            f.write(blocks.tobytes())
        with open(os.path.join(OUT, f"{ty.name}.f32.bin"), "wb") as f:
            f.write(values.tobytes())
        print(f"{ty.name}: {n_blocks} blocks, {values.size} values")


def check_gguf(quant, source, max_rel):
    from gguf import GGUFReader

    src = {t.name: t for t in GGUFReader(source).tensors}
    worst = 0.0
    bad = []
    for t in GGUFReader(quant).tensors:
        q = dequantize(t.data, t.tensor_type).astype(np.float64).reshape(-1)
        s = src[t.name]
        ref = dequantize(s.data, s.tensor_type).astype(np.float64).reshape(-1)
        rel = np.sqrt(np.mean((q - ref) ** 2) / max(np.mean(ref**2), 1e-30))
        print(f"{t.name:32s} {t.tensor_type.name:5s} rel rms error {rel:.4f}")
        if len(t.shape) >= 2:
            worst = max(worst, rel)
            if rel > max_rel:
                bad.append(t.name)
    print(f"worst matrix: {worst:.4f} (limit {max_rel})")
    if bad:
        print("above the limit:", ", ".join(bad))
        sys.exit(1)


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--check-gguf")
    ap.add_argument("--against")
    ap.add_argument("--max-rel", type=float, default=0.1)
    a = ap.parse_args()
    if a.check_gguf:
        check_gguf(a.check_gguf, a.against, a.max_rel)
    else:
        write_reference()


if __name__ == "__main__":
    main()
