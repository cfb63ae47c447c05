#!/bin/sh
# Regenerates every reference model under tests/fixtures/reference-models/ (tiny random
# checkpoints with real configuration classes, their GGUF twins, ONNX exports and the outputs
# transformers, torch and gguf compute for them). CI only reads the committed files.
#
# Environment that reproduces the committed files byte for byte (CPU only):
#   pip install torch==2.15.0 transformers==5.25.0 tokenizers==0.23.3 gguf==0.19.0 \
#       safetensors numpy sentence-transformers==6.3.0
# and, for the ONNX exports (optimum-onnx 0.1 refuses transformers 4.58 and later), a virtual
# environment beside it, made here on first use.
set -eu
cd "$(dirname "$0")/.."
export PYTHONHASHSEED=0
python3 tools/make-reference-gguf-types.py
python3 tools/make-reference-decoders.py
python3 tools/make-reference-encoders.py
venv=${EDGEBENCH_ONNX_VENV:-${TMPDIR:-/tmp}/edgebench-onnx-venv}
if [ ! -x "$venv/bin/python" ]; then
    python3 -m venv --system-site-packages "$venv"
    "$venv/bin/pip" install --quiet "transformers==4.57.6" "tokenizers==0.22.2" \
        "optimum==2.1.0" "optimum-onnx==0.1.0" "onnx==1.23.2"
fi
"$venv/bin/python" tools/make-reference-onnx.py
git status --short tests/fixtures/reference-models
