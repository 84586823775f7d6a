"""Stage 3 of tada-mini: the flow-matching diffusion transformer, trained on a training set.

Reads only the training set of :mod:`tada.mini.data` (latents, caption token ids, the
cut-down MiniLM), so it runs wherever torch, transformers, diffusers and safetensors are:
on this project's CPU machines in the background, or on a GPU (bf16 autocast) when one is
lent. Rectified flow: ``x_t = (1 - s) x_0 + s * noise`` with ``s`` drawn logit-normal
(Esser et al. 2024), target velocity ``noise - x_0``, MSE. Each step picks one of the
clip's caption wordings, or the empty caption with probability ``caption_dropout`` (so
classifier-free guidance has an unconditional model). With probability ``crop_prob`` a
batch is a random shorter window, so clips shorter than the corpus's 5 s work too. An
exponential moving average of the weights is what gets exported. With ``init_from`` (a
transformer directory an earlier run exported) the run starts from those weights, a
fine-tune with its own steps and learning rate. With ``paired_share`` that share of each
batch is twin pairs, each pair sharing its noise, noise level, caption wording and caption
dropout: mode twins (the same piece in major and in minor, captions differing only in the
mood word; see :func:`tada.data.corpus.mode_twin`) and gender twins (the same piece with a
female and with a male voice, captions differing only in the voice words;
:func:`tada.data.corpus.gender_twin`), drawn uniformly from every pair the training set has. With
``twin_contrast`` (a weight) each pair
also goes through the model once more from one shared input, the noised midpoint of the
two twins, under each twin's caption; the difference of the two predicted velocities is
pulled towards the twins' velocity difference. The input then cannot tell which twin it
is, so only the caption (the mood or voice word) can make the two predictions differ: the
gradient goes to the text path alone, which plain pairs leave to the noisy input.

Run standalone (``python -m tada.mini.train_transformer --trainset DIR --config F --out DIR``)
on a machine that has no audio libraries.
"""

from __future__ import annotations

import argparse
import copy
import json
from pathlib import Path
from typing import Any

import torch
from torch import nn

from ..errors import TadaError
from ..training.loop import TrainingLoop
from .data import TrainSet
from .transformer import TadaMiniTransformer

KEYS = (
    "model",
    "steps",
    "batch_size",
    "lr",
    "min_lr_ratio",
    "warmup_steps",
    "weight_decay",
    "grad_clip",
    "caption_dropout",
    "crop_prob",
    "min_crop",
    "ema_decay",
    "checkpoint_every",
    "eval_every",
    "val_clips",
)
# init_from: a from_pretrained transformer directory to start from (a fine-tune);
# paired_share: share of each batch drawn as twin pairs (default 0; needs a trainset with twins);
# twin_contrast: weight of the pairs' midpoint contrast loss (default 0)
OPTIONAL = ("init_from", "paired_share", "twin_contrast")


class _WithEma(nn.Module):
    """The trained model and its moving average, checkpointed together."""

    def __init__(self, model: nn.Module):
        super().__init__()
        self.model = model
        self.ema = copy.deepcopy(model).requires_grad_(False)

    @torch.no_grad()
    def update(self, decay: float) -> None:
        for ema, live in zip(self.ema.parameters(), self.model.parameters()):
            ema.lerp_(live, 1.0 - decay)


def _pretrained_state(directory: str | Path, model: nn.Module) -> dict[str, torch.Tensor]:
    """The weights of an exported transformer, refused in one line if its shape differs from ``model``'s."""
    if not Path(directory).is_dir():
        raise TadaError(f"init_from: {directory} is not a transformer directory")
    state = TadaMiniTransformer.from_pretrained(directory).state_dict()
    own = model.state_dict()
    if state.keys() != own.keys() or any(state[k].shape != own[k].shape for k in own):
        raise TadaError(f"init_from: the transformer in {directory} has another shape than this config's model")
    return state


class TransformerTrainer(TrainingLoop):
    title = "tada-mini transformer"

    def __init__(
        self,
        trainset: str | Path,
        config: dict[str, Any],
        seed: int,
        out: str | Path,
        device: str = "cpu",
        progress: bool = True,
    ):
        self.config = {**config, "seed": seed}
        self.data = TrainSet(trainset)
        super().__init__(out, {"stage": "transformer", "config": self.config, "trainset": self.data.info}, progress)
        self.device = torch.device(device)
        self.states, self.masks = self.data.token_states(self.device)
        self.latents = self.data.latents.to(self.device)
        clips = self.latents.shape[0]
        n_val = int(config["val_clips"])
        if clips <= n_val + config["batch_size"]:
            raise TadaError(
                f"{clips} clips are too few for {n_val} held-out clips and batches of {config['batch_size']}"
            )
        self.val_rows = torch.arange(n_val)
        pairs = self.data.pairs
        held = pairs.min(dim=1).values < n_val  # a held-out clip's twins are held out too
        leaks = torch.zeros(clips, dtype=torch.bool)
        leaks[pairs[held].flatten()] = True
        self.train_rows = torch.tensor([r for r in range(n_val, clips) if not leaks[r]], dtype=torch.long)
        self.train_pairs = pairs[~held]  # (P, 2): original, twin
        self.pairs_per_batch = round(config.get("paired_share", 0.0) * config["batch_size"] / 2)
        if self.pairs_per_batch and not len(self.train_pairs):
            raise TadaError(
                "paired_share needs twins in the training set (trainset: mode_twins or gender_twins, "
                "corpus: `tada data make --mode-twins --gender-twins`)"
            )
        if not 0 <= 2 * self.pairs_per_batch <= config["batch_size"]:
            raise TadaError(f"paired_share must be between 0 and 1, not {config.get('paired_share')}")
        torch.manual_seed(seed)
        model = TadaMiniTransformer(in_channels=self.latents.shape[1], **config["model"])
        if config.get("init_from"):
            model.load_state_dict(_pretrained_state(config["init_from"], model))
        model = model.to(self.device)
        self.model = _WithEma(model)
        decay = [p for n, p in model.named_parameters() if p.ndim >= 2 and "position" not in n]
        rest = [p for n, p in model.named_parameters() if not (p.ndim >= 2 and "position" not in n)]
        self.optimizer = torch.optim.AdamW(
            [{"params": decay, "weight_decay": config["weight_decay"]}, {"params": rest, "weight_decay": 0.0}],
            lr=config["lr"],
        )
        self.autocast = self.device.type == "cuda"

    # -- batches ---------------------------------------------------------------------
    def _text(self, captions: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Token states ``(B, L, 384)`` and mask of the given caption indices, L the batch's longest."""
        captions = captions.to(self.device)
        mask = self.masks[captions]
        width = int(mask.sum(dim=1).max())
        return self.states[captions, :width], mask[:, :width]

    def _noise(self, shape: torch.Size, generator: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
        """Logit-normal noise levels ``(B,)`` and Gaussian noise of ``shape`` (B first)."""
        sigma = torch.sigmoid(torch.randn(shape[0], generator=generator)).to(self.device)
        return sigma, torch.randn(shape, generator=generator).to(self.device)

    def _loss(
        self,
        network: nn.Module,
        x0: torch.Tensor,
        captions: torch.Tensor,
        generator: torch.Generator,
        share: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """Flow-matching MSE; row ``i`` draws the noise and noise level of row ``share[i]``."""
        sigma, noise = self._noise(x0.shape, generator)
        if share is not None:
            share = share.to(self.device)
            sigma, noise = sigma[share], noise[share]
        xt = (1 - sigma[:, None, None]) * x0 + sigma[:, None, None] * noise
        states, mask = self._text(captions)
        with torch.autocast(self.device.type, dtype=torch.bfloat16, enabled=self.autocast):
            velocity = network(xt, sigma * 1000.0, encoder_hidden_states=states, encoder_attention_mask=mask)
        return (velocity.float() - (noise - x0)).square().mean()

    def _batch_rows(self, generator: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
        """A batch's clip rows (single clips, then pair firsts, then their twins) and which row
        each takes its random draws from (itself, or for a twin its pair's first)."""
        pairs, singles = self.pairs_per_batch, self.config["batch_size"] - 2 * self.pairs_per_batch
        rows = self.train_rows[torch.randint(len(self.train_rows), (singles,), generator=generator)]
        if not pairs:  # no draw at all, so runs without pairs repeat the batches of earlier versions
            return rows, torch.arange(singles)
        drawn = self.train_pairs[torch.randint(len(self.train_pairs), (pairs,), generator=generator)]
        share = torch.cat([torch.arange(singles + pairs), torch.arange(singles, singles + pairs)])
        return torch.cat([rows, drawn[:, 0], drawn[:, 1]]), share

    def _twin_contrast(
        self,
        network: nn.Module,
        x0: torch.Tensor,
        captions: torch.Tensor,
        share: torch.Tensor,
        generator: torch.Generator,
    ) -> torch.Tensor:
        """Mean square error of the velocity difference the twins' captions make from their shared midpoint.
        Pairs whose captions were dropped (a pair shares its dropout) carry no caption to tell the
        twins apart, so they are left out; zero when every pair was dropped."""
        seconds = torch.nonzero(share != torch.arange(len(share))).flatten()
        firsts = share[seconds]
        sigma, noise = self._noise((len(firsts), *x0.shape[1:]), generator)  # drawn for every pair
        kept = captions[firsts] != self.data.null_caption
        if not kept.any():
            return x0.new_zeros(())
        firsts, seconds, kept = firsts[kept], seconds[kept], kept.to(self.device)
        sigma, noise = sigma[kept], noise[kept]
        a, b = x0[firsts.to(self.device)], x0[seconds.to(self.device)]
        xt = (1 - sigma[:, None, None]) * (a + b) / 2 + sigma[:, None, None] * noise
        states, mask = self._text(torch.cat([captions[firsts], captions[seconds]]))
        with torch.autocast(self.device.type, dtype=torch.bfloat16, enabled=self.autocast):
            velocity = network(
                xt.repeat(2, 1, 1), sigma.repeat(2) * 1000.0, encoder_hidden_states=states, encoder_attention_mask=mask
            ).float()
        # targets noise - a and noise - b: their difference is b - a whatever the noise
        return ((velocity[: len(firsts)] - velocity[len(firsts) :]) - (b - a)).square().mean()

    def train_step(self, generator: torch.Generator) -> dict[str, float]:
        config = self.config
        rows, share = self._batch_rows(generator)
        wording = torch.randint(self.data.per_clip, (len(rows),), generator=generator)[share]
        captions = rows * self.data.per_clip + wording
        dropped = (torch.rand(len(rows), generator=generator) < config["caption_dropout"])[share]
        captions = torch.where(dropped, torch.full_like(captions, self.data.null_caption), captions)
        x0 = self.latents[rows.to(self.device)]
        if float(torch.rand(1, generator=generator)) < config["crop_prob"]:
            frames = x0.shape[-1]
            length = int(torch.randint(config["min_crop"], frames + 1, (1,), generator=generator))
            start = int(torch.randint(0, frames - length + 1, (1,), generator=generator))
            x0 = x0[..., start : start + length]
        self.model.model.train()
        loss = self._loss(self.model.model, x0, captions, generator, share)
        record = {"mse": float(loss.detach())}
        if config.get("twin_contrast") and self.pairs_per_batch:
            contrast = self._twin_contrast(self.model.model, x0, captions, share, generator)
            record["twin_contrast"] = float(contrast.detach())
            loss = loss + config["twin_contrast"] * contrast
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(self.model.model.parameters(), config["grad_clip"])
        self.optimizer.step()
        self.model.update(config["ema_decay"])
        return record

    @torch.no_grad()
    def evaluate(self) -> dict[str, float]:
        """Held-out flow-matching loss of the EMA model at fixed noise levels (comparable across steps)."""
        generator = torch.Generator().manual_seed(12345)
        self.model.ema.eval()
        x0 = self.latents[self.val_rows.to(self.device)]
        captions = self.val_rows * self.data.per_clip
        losses = [
            float(self._loss(self.model.ema, x0[i : i + 64], captions[i : i + 64].to(self.device), generator))
            for i in range(0, len(x0), 64)
        ]
        return {"val_mse_ema": sum(losses) / len(losses)}

    def finish(self) -> None:
        """The EMA transformer as a ``from_pretrained`` directory (``out/transformer``)."""
        self.model.ema.save_pretrained(self.out / "transformer")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--trainset", required=True)
    parser.add_argument("--config", required=True, help="tada-mini config JSON (its 'transformer' and 'seed')")
    parser.add_argument("--out", required=True)
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--time-limit", type=float, default=None, help="seconds, then checkpoint and stop")
    parser.add_argument("--until-step", type=int, default=None)
    parser.add_argument(
        "--export", default=None, help="also write the EMA transformer here (from_pretrained folder), finished or not"
    )
    parser.add_argument("--max-shard-size", default="15MB", help="weight file size limit for --export")
    args = parser.parse_args(argv)
    config = json.loads(Path(args.config).read_text())
    if args.device == "cuda":
        torch.backends.cuda.matmul.allow_tf32 = True
    trainer = TransformerTrainer(args.trainset, config["transformer"], config["seed"], args.out, device=args.device)
    trainer.resume()
    trainer.run(until_step=args.until_step, time_limit=args.time_limit)
    if args.export:
        trainer.model.ema.save_pretrained(args.export, max_shard_size=args.max_shard_size)
    print(
        json.dumps(
            {
                "step": trainer.step,
                "last": trainer.history[-1] if trainer.history else None,
                "evals": trainer.evals[-3:],
            }
        )
    )


if __name__ == "__main__":
    main()
