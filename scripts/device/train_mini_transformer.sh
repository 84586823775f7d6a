#!/usr/bin/env bash
# tada-mini's transformer stage on a lent GPU machine (the workplace's `device` tool).
#
# Here, first:   tada mini train --corpus data/corpus-train --out out/mini --stage autoencoder --stage trainset
#                mkdir -p carry && cp -r out/mini/trainset carry/  (about 50 MB; .git/info/exclude lists /carry/)
#                pip download diffusers==0.42.1 (and nothing else: the machine has torch, transformers,
#                safetensors, matplotlib, tqdm) into .whl/ as the device README says
# There:         run this script with carry=["carry", ".whl"]; LIMIT seconds of training per call
#                (a warm machine keeps /tmp/mini between calls, so a second call resumes).
# Back here:     the EMA transformer arrives in $OUT as <= 15 MB shards; put them in
#                out/mini/transformer/transformer/ and run `tada mini train ... --stage export`.
set -euo pipefail
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl
export PYTHONPATH=/tmp/site:src PYTHONUNBUFFERED=1
WORK=${WORK:-/tmp/mini}
mkdir -p "$WORK"
OUTDIR=${OUT:-/tmp/out}
python3 -m tada.mini.train_transformer --trainset carry/trainset --config configs/mini.json \
    --out "$WORK/transformer" --time-limit "${LIMIT:-480}" --export "$OUTDIR/transformer" \
    2>&1 | tr '\r' '\n' | grep -v '^tada-mini transformer' || true
cp "$WORK/transformer/loss.png" "$OUTDIR/" 2>/dev/null || true
