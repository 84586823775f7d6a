"""Stage 1 of tada-mini: the mel autoencoder, trained on the corpus's log-mels (CPU is enough).

L1 reconstruction of per-band normalised log-mels on random crops, plus a small KL term;
held-out reconstruction error on whole clips every ``eval_every`` steps. When done, the
latent scaling factor (1 / standard deviation of the latent means over the corpus) is
measured and the model is saved with the corpus's mel statistics in its config.

A *decoder fine-tune* (``base`` given) starts from a trained autoencoder and trains its
decoder alone: the encoder, the mel statistics and the latent scaling factor stay bitwise
those of the base, so the latents a transformer was trained on are unchanged and only what
generation's latents decode to gets better.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from ..errors import TadaError
from ..training.loop import TrainingLoop
from .autoencoder import MelAutoencoder
from .mel import MelStats

KEYS = (
    "model",
    "steps",
    "batch_size",
    "crop_frames",
    "lr",
    "min_lr_ratio",
    "warmup_steps",
    "kl_weight",
    "grad_clip",
    "checkpoint_every",
    "eval_every",
    "val_clips",
)
# a decoder fine-tune: no model (it is the base's) and no KL term (the encoder does not train)
DECODER_KEYS = tuple(k for k in KEYS if k not in ("model", "kl_weight"))


class AutoencoderTrainer(TrainingLoop):
    title = "tada-mini autoencoder"

    def __init__(
        self,
        mels: torch.Tensor,
        clip_ids: list[str],
        config: dict[str, Any],
        seed: int,
        out: str | Path,
        device: str = "cpu",
        progress: bool = True,
        base: MelAutoencoder | None = None,
    ):
        """``mels``: the corpus's log-mels ``(clips, n_mels, frames)`` (:func:`tada.mini.data.corpus_mels`);
        ``base``: a trained autoencoder whose decoder alone is fine-tuned (config keys ``DECODER_KEYS``)."""
        self.config = {**config, "seed": seed}
        run = {"stage": "decoder" if base is not None else "autoencoder", "config": self.config, "clips": clip_ids}
        if base is not None:
            run["base_config"] = {k: v for k, v in base.config.items() if not k.startswith("_")}
        super().__init__(out, run, progress)
        self.device = torch.device(device)
        down = base.downsample if base is not None else int(config["model"].get("downsample", 4))
        self.mels = mels[..., : mels.shape[-1] - mels.shape[-1] % down]
        n_val = int(config["val_clips"])
        if len(clip_ids) <= n_val + config["batch_size"]:
            raise TadaError(
                f"{len(clip_ids)} clips are too few for {n_val} held-out clips and batches of {config['batch_size']}"
            )
        self.val_rows = list(range(n_val))
        self.train_rows = list(range(n_val, len(clip_ids)))
        torch.manual_seed(seed)
        if base is None:
            self.stats = MelStats.measure(self.mels[self.train_rows])
            self.model = MelAutoencoder(
                **config["model"], mel_mean=list(self.stats.mean), mel_std=list(self.stats.std)
            ).to(self.device)
            trained = self.model.parameters()
        else:
            self.stats = base.stats
            self.model = MelAutoencoder.from_config(base.config).to(self.device)
            self.model.load_state_dict(base.state_dict())
            self.model.encoder.requires_grad_(False)
            trained = self.model.decoder.parameters()
        self.decoder_only = base is not None
        self.optimizer = torch.optim.AdamW(trained, lr=config["lr"], weight_decay=0.0)

    def _normalised(self, rows: list[int], start: int | None = None, frames: int | None = None) -> torch.Tensor:
        mel = self.mels[rows].float()
        if frames is not None:
            mel = mel[..., start : start + frames]
        return self.stats.normalise(mel).to(self.device)

    def train_step(self, generator: torch.Generator) -> dict[str, float]:
        config = self.config
        rows = [
            self.train_rows[i]
            for i in torch.randint(len(self.train_rows), (config["batch_size"],), generator=generator).tolist()
        ]
        crop = int(config["crop_frames"])
        down = self.model.downsample
        start = int(torch.randint(0, self.mels.shape[-1] - crop + 1, (1,), generator=generator)) // down * down
        x = self._normalised(rows, start, crop)
        self.model.train()
        if self.decoder_only:
            self.model.encoder.eval()
        recon, mean, logvar = self.model(x, generator=_device_generator(generator, self.device))
        l1 = (recon - x).abs().mean()
        kl = 0.5 * (mean.square() + logvar.exp() - 1.0 - logvar).mean()
        loss = l1 + config.get("kl_weight", 0.0) * kl
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(self.model.parameters(), config["grad_clip"])
        self.optimizer.step()
        return {"l1": float(l1.detach()), "kl": float(kl.detach())}

    @torch.no_grad()
    def evaluate(self) -> dict[str, float]:
        """Held-out L1 of whole clips through the latent means (what generation decodes)."""
        self.model.eval()
        errors = []
        for start in range(0, len(self.val_rows), 32):
            x = self._normalised(self.val_rows[start : start + 32])
            errors.append((self.model.decode(self.model.encode(x)[0]) - x).abs().mean(dim=(1, 2)))
        return {"val_l1": float(torch.cat(errors).mean())}

    @torch.no_grad()
    def latents(self) -> torch.Tensor:
        """Every clip's latent mean (unscaled), ``(clips, C, frames // 4)``, on the CPU."""
        self.model.eval()
        out = []
        for start in range(0, self.mels.shape[0], 32):
            out.append(
                self.model.encode(self._normalised(list(range(start, min(start + 32, self.mels.shape[0])))))[0].cpu()
            )
        return torch.cat(out)

    def finish(self) -> None:
        if not self.decoder_only:  # a decoder fine-tune keeps its base's latents, so its scale too
            latents = self.latents()
            self.model.register_to_config(scaling_factor=float(1.0 / latents.std()))
        self.model.save_pretrained(self.out / "model")


def _device_generator(generator: torch.Generator, device: torch.device) -> torch.Generator:
    """A generator on ``device`` seeded from the step's CPU generator (reparameterisation noise)."""
    seed = int(torch.randint(0, 2**62, (1,), generator=generator))
    return torch.Generator(device=device).manual_seed(seed)
