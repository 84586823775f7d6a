"""tada-mini's training data: clip log-mels for the autoencoder, then the carryable training set.

The *training set* (``trainset/``) is everything the transformer stage reads, small enough
to travel to a GPU machine (about 50 MB for 6,000 clips): the autoencoder's scaled
latents of every clip (float16), several caption wordings per clip as MiniLM token ids,
and MiniLM itself cut down to the word pieces those captions use (float16 weights; token
states differ from the full float32 encoder by about 0.1% in norm). No audio, no
librosa: the transformer stage needs torch, transformers, diffusers and safetensors only.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load_file

from ..data.attributes import TWIN_KINDS
from ..errors import TadaError
from ..training.files import read_stamp, save_stamped

MELS = "mels.safetensors"
LATENTS = "latents.safetensors"
TEXT_DIR = "text_encoder"
TRAINSET_INFO = "trainset.json"


# -- clip log-mels (autoencoder stage; needs the corpus audio) -------------------------
def _clip_mel(path: str) -> torch.Tensor:
    from ..scorer.features import load_16k
    from .mel import log_mel

    return log_mel(load_16k(path)).half()


def corpus_mels(
    corpus: str | Path, records: list[dict[str, Any]], cache: str | Path, progress: bool = True
) -> torch.Tensor:
    """Log-mels ``(clips, 256, frames)`` float16 of every labelled clip, cached by a fingerprint of the labels."""
    from ..training.parallel import map_files
    from . import mel

    cache = Path(cache)
    cache.mkdir(parents=True, exist_ok=True)
    digest = hashlib.sha256(json.dumps([r["id"] for r in records]).encode())
    digest.update((Path(corpus) / "labels.jsonl").read_bytes())
    digest.update(json.dumps([mel.SAMPLE_RATE, mel.N_FFT, mel.HOP, mel.N_MELS, mel.F_MAX, mel.LOG_FLOOR]).encode())
    stamp = digest.hexdigest()[:16]
    path = cache / MELS
    if read_stamp(path) != stamp:
        mels = map_files(_clip_mel, [str(Path(corpus) / r["path"]) for r in records], "clip mels", progress)
        frames = min(m.shape[-1] for m in mels)
        save_stamped(path, {"mels": torch.stack([m[..., :frames] for m in mels])}, stamp)
    return load_file(str(path))["mels"]


# -- caption wordings -> MiniLM token ids, and the cut-down encoder ----------------------
def caption_variants(records: list[dict[str, Any]], per_clip: int, short: int = 0) -> list[list[str]]:
    """``per_clip`` wordings of each clip's attributes (the first is the corpus caption),
    then ``short`` short captions that name only some of them."""
    from ..data.attributes import ClipSpec
    from ..data.captions import caption, short_caption

    out = []
    for record in records:
        spec = ClipSpec.from_json(record["spec"])
        out.append(
            [
                record["caption"],
                *(caption(spec, v) for v in range(1, per_clip)),
                *(short_caption(spec, v) for v in range(short)),
            ]
        )
    return out


def prune_text_encoder(texts: list[str], directory: str | Path) -> list[list[int]]:
    """Write MiniLM with only the word pieces ``texts`` use (plus the special tokens) to
    ``directory`` (float16), and return each text's token ids in the pruned vocabulary."""
    from ..text_encoder import MAX_TOKENS, load_minilm

    tokenizer, model = load_minilm()
    ids = tokenizer(texts, truncation=True, max_length=MAX_TOKENS)["input_ids"]
    used = sorted({t for row in ids for t in row} | set(tokenizer.all_special_ids))
    remap = {old: new for new, old in enumerate(used)}
    state = {k: v.detach().clone() for k, v in model.state_dict().items()}
    state["embeddings.word_embeddings.weight"] = state["embeddings.word_embeddings.weight"][used]
    config = model.config.to_dict()
    config["vocab_size"] = len(used)
    config["pad_token_id"] = remap[tokenizer.pad_token_id]
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    (directory / "config.json").write_text(json.dumps(config, indent=1))
    save_stamped(
        directory / "model.safetensors",
        {k: v.half() for k, v in state.items()},
        metadata={"format": "pt", "original_ids": json.dumps(used)},
    )
    return [[remap[t] for t in row] for row in ids]


def load_pruned_encoder(directory: str | Path, device: str | torch.device = "cpu"):
    """The cut-down MiniLM written by :func:`prune_text_encoder`, in float32, frozen."""
    from transformers import BertConfig, BertModel

    directory = Path(directory)
    config = BertConfig(
        **{
            k: v
            for k, v in json.loads((directory / "config.json").read_text()).items()
            if k not in ("architectures", "transformers_version")
        }
    )
    state = {k: v.float() for k, v in load_file(str(directory / "model.safetensors")).items()}
    model = BertModel(config, add_pooling_layer="pooler.dense.weight" in state)
    missing, unexpected = model.load_state_dict(state, strict=False)
    if [k for k in missing if "position_ids" not in k] or unexpected:
        raise TadaError(f"text encoder in {directory} does not match BERT: missing {missing}, unexpected {unexpected}")
    return model.eval().requires_grad_(False).to(device)


def write_trainset(
    directory: str | Path,
    latents: torch.Tensor,
    captions: list[list[str]],
    info: dict[str, Any],
    twins: list[tuple[int, int]] = (),
    kinds: list[str] = (),
) -> Path:
    """The transformer stage's whole input: latents, caption token ids, the cut-down encoder,
    and which clips are twins of each other (row pairs, original first; a clip may have a
    mode twin and a gender twin) and each pair's kind (``TWIN_KINDS``; mode when not given)."""
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    per_clip = len(captions[0])
    flat = [text for wordings in captions for text in wordings] + [""]  # last: the unconditional prompt
    ids = prune_text_encoder(flat, directory / TEXT_DIR)
    lengths = torch.tensor([len(row) for row in ids], dtype=torch.int32)
    tokens = torch.tensor([t for row in ids for t in row], dtype=torch.int32)
    pairs = torch.tensor(list(twins), dtype=torch.int32).reshape(-1, 2)
    kinds = list(kinds) or ["mode"] * len(pairs)
    if len(kinds) != len(pairs):
        raise TadaError(f"{len(pairs)} twin pairs but {len(kinds)} kinds")
    pair_kinds = torch.tensor([TWIN_KINDS.index(k) for k in kinds], dtype=torch.int32)
    save_stamped(
        directory / LATENTS,
        {
            "latents": latents.half(),
            "tokens": tokens,
            "lengths": lengths,
            "twin_pairs": pairs,
            "twin_kinds": pair_kinds,
        },
        metadata={"captions_per_clip": str(per_clip)},
    )
    (directory / TRAINSET_INFO).write_text(
        json.dumps({**info, "clips": int(latents.shape[0]), "captions_per_clip": per_clip}, indent=1)
    )
    return directory


class TrainSet:
    """A training set read back: latents ``(clips, C, T)`` float32, each caption's token ids,
    ``pairs``: ``(P, 2)`` rows of twin clips, original first (none: ``(0, 2)``), and
    ``pair_kinds``: each pair's index in ``TWIN_KINDS`` (0 mode, 1 gender)."""

    def __init__(self, directory: str | Path):
        directory = Path(directory)
        if not (directory / TRAINSET_INFO).is_file():
            raise TadaError(
                f"{directory} is not a tada-mini training set (no {TRAINSET_INFO}); "
                "build one with `tada mini train --stage trainset`"
            )
        self.directory = directory
        self.info = json.loads((directory / TRAINSET_INFO).read_text())
        tensors = load_file(str(directory / LATENTS))
        self.latents = tensors["latents"].float()
        if "twin_pairs" in tensors:
            self.pairs = tensors["twin_pairs"].long().reshape(-1, 2)
        elif "twin" in tensors:  # training sets written before gender twins: each clip's one twin row, or -1
            twin = tensors["twin"].long()
            firsts = torch.nonzero(twin > torch.arange(len(twin))).flatten()
            self.pairs = torch.stack([firsts, twin[firsts]], dim=1)
        else:
            self.pairs = torch.zeros(0, 2, dtype=torch.long)
        self.pair_kinds = (
            tensors["twin_kinds"].long() if "twin_kinds" in tensors else torch.zeros(len(self.pairs), dtype=torch.long)
        )
        offsets = torch.cat([torch.zeros(1, dtype=torch.long), tensors["lengths"].long().cumsum(0)])
        tokens = tensors["tokens"].long()
        self.token_ids = [tokens[offsets[i] : offsets[i + 1]] for i in range(len(offsets) - 1)]
        self.per_clip = int(self.info["captions_per_clip"])
        if len(self.token_ids) != self.latents.shape[0] * self.per_clip + 1:
            raise TadaError(f"{directory}: {len(self.token_ids)} captions for {self.latents.shape[0]} clips")

    @property
    def null_caption(self) -> int:
        """Index of the empty caption (the unconditional prompt of classifier-free guidance)."""
        return len(self.token_ids) - 1

    @torch.no_grad()
    def token_states(
        self, device: str | torch.device = "cpu", batch: int = 256, captions: list[int] | None = None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Every caption's (or only ``captions``', in that order) MiniLM token states padded to the
        longest, ``(captions, L, 384)``, and the mask of real tokens ``(captions, L)``; a batch of
        captions is then one index."""
        encoder = load_pruned_encoder(self.directory / TEXT_DIR, device)
        token_ids = self.token_ids if captions is None else [self.token_ids[c] for c in captions]
        width = max(len(r) for r in token_ids)
        ids = torch.zeros(len(token_ids), width, dtype=torch.long)
        mask = torch.zeros(len(token_ids), width, dtype=torch.bool)
        for i, r in enumerate(token_ids):
            ids[i, : len(r)], mask[i, : len(r)] = r, True
        ids, mask = ids.to(device), mask.to(device)
        states = torch.zeros(*ids.shape, encoder.config.hidden_size, device=device)
        # shortest captions first, each batch cut to its own longest: half the work of padding all to the longest
        order = torch.argsort(mask.sum(dim=1)).to(device)
        for start in range(0, len(order), batch):
            rows = order[start : start + batch]
            cut = int(mask[rows].sum(dim=1).max())
            states[rows, :cut] = encoder(
                input_ids=ids[rows, :cut], attention_mask=mask[rows, :cut].long()
            ).last_hidden_state.float()
        return states * mask[..., None], mask
