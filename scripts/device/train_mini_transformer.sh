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
python3 -m tada.mini.train_transformer --trainset carry/trainset --config configs/mini.json \
    --out "$WORK/transformer" --time-limit "${LIMIT:-480}" 2>&1 | tr '\r' '\n' | grep -v '^training' || true
python3 - "$WORK" "${OUT:-/tmp/out}" <<'PY'
import json, sys
from pathlib import Path
import torch
from tada.mini.train_transformer import TransformerTrainer
work, out = Path(sys.argv[1]), Path(sys.argv[2])
state = json.loads((work / "transformer" / "checkpoint" / "state.json").read_text())
print(json.dumps({"step": state["step"], "evals": state["evals"][-5:], "last": state["history"][-1]}))
from safetensors.torch import load_file
from tada.mini.transformer import TadaMiniTransformer
config = json.loads(Path("configs/mini.json").read_text())["transformer"]
weights = load_file(str(work / "transformer" / "checkpoint" / "model.safetensors"))
ema = {k.removeprefix("ema."): v for k, v in weights.items() if k.startswith("ema.")}
in_channels = ema["proj_in.weight"].shape[1]
model = TadaMiniTransformer(in_channels=in_channels, **config["model"])
model.load_state_dict(ema)
model.save_pretrained(out / "transformer", max_shard_size="15MB")
(out / "state.json").write_text(json.dumps({"step": state["step"], "evals": state["evals"]}))
PY
cp "$WORK/transformer/loss.png" "${OUT:-/tmp/out}/" 2>/dev/null || true
