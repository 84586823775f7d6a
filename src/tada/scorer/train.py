"""Train the scorer on a labelled corpus: InfoNCE between clips and captions plus attribute heads.

Every random choice is a function of (seed, step): the model is initialised from the
seed, each epoch's clip order from (seed, epoch) and each batch's augmentation from
(seed, step). A run stopped at a checkpoint and started again therefore sees the same
batches and ends with the same weights as one that never stopped. Clips whose corpus
seed lies in ``holdout_seeds`` are never trained on; they give the validation loss and
probe AUCs plotted in ``loss.png``.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F

from ..errors import TadaError
from ..training.config import check_keys, read_json
from ..training.loop import TrainingLoop
from .augment import augment
from .cache import CorpusCache, fingerprint, load_or_build
from .curves import plot_curves
from .features import HOP, SAMPLE_RATE
from .focus import FocusBank, focus_groups, focus_loss
from .labels import Clip, read_labels, targets, vocabularies
from .model import TextAudioScorer
from .probes import TESTS, roc_auc
from .text import SentenceEncoder

TEMPO_CENTER, TEMPO_SCALE = 120.0, 30.0
_CONFIG_KEYS = (
    "seed",
    "model",
    "batch_size",
    "steps",
    "lr",
    "min_lr_ratio",
    "weight_decay",
    "warmup_steps",
    "grad_clip",
    "crop_seconds",
    "gain_db",
    "snr_db",
    "noise_prob",
    "loss_weights",
    "holdout_seeds",
    "checkpoint_every",
    "eval_every",
)
PROVENANCE = "training.json"
_LOSS_KEYS = ("contrastive", "instruments", "genre", "mode", "vocals", "tempo")


def read_config(path: str | Path) -> dict[str, Any]:
    """A training configuration file, checked."""
    return check_config(read_json(path), str(path))


def check_config(config: dict[str, Any], source: str = "config") -> dict[str, Any]:
    """Every key checked, so a typo fails before hours of training rather than after."""
    check_keys(config, _CONFIG_KEYS, source)
    weights = sorted(config["loss_weights"])
    if weights != sorted(_LOSS_KEYS) and weights != sorted((*_LOSS_KEYS, "focus")):
        raise TadaError(f"{source}: loss_weights needs {', '.join(_LOSS_KEYS)} (and optionally focus)")
    return config


def _split(clips: list[Clip], holdout: list[int]) -> tuple[list[int], list[int]]:
    low, high = holdout
    val = [i for i, c in enumerate(clips) if low <= c.seed < high]
    train = [i for i, c in enumerate(clips) if not low <= c.seed < high]
    return train, val


def _ranges(seeds: list[int]) -> list[list[int]]:
    """Sorted integers as half-open ``[start, stop)`` runs."""
    runs: list[list[int]] = []
    for seed in seeds:
        if runs and seed == runs[-1][1]:
            runs[-1][1] = seed + 1
        else:
            runs.append([seed, seed + 1])
    return runs


def _losses(
    model: TextAudioScorer,
    audio: torch.Tensor,
    text: torch.Tensor,
    caption_ids: torch.Tensor,
    target: dict[str, torch.Tensor],
    focus: tuple[torch.Tensor, torch.Tensor] | None = None,
) -> dict[str, torch.Tensor]:
    """Contrastive and attribute losses from unit-norm audio and text embeddings of the same clips, plus
    the probe-ranking loss when ``focus`` gives focus-text sentence embeddings and their clip labels."""
    logits = model.scale() * audio @ text.T
    # Clips sharing a caption are all positives for it: soft targets instead of false negatives.
    same = (caption_ids[:, None] == caption_ids[None, :]).float()
    soft = same / same.sum(dim=1, keepdim=True)
    contrastive = 0.5 * (-(soft * logits.log_softmax(1)).sum(1).mean() - (soft * logits.T.log_softmax(1)).sum(1).mean())
    heads = model.attribute_logits(audio)
    vocal = target["has_vocals"] > 0
    bce = F.binary_cross_entropy_with_logits
    vocals = bce(heads["has_vocals"], target["has_vocals"])
    if vocal.any():
        vocals = (
            vocals
            + bce(heads["vocal_female"][vocal], target["vocal_female"][vocal])
            + bce(heads["vocal_rap"][vocal], target["vocal_rap"][vocal])
        )
    tempo = (target["bpm"] - TEMPO_CENTER) / TEMPO_SCALE
    extra = {}
    if focus is not None:
        sentences, labels = focus
        extra["focus"] = focus_loss(model.scale() * audio @ model.text_embedding(sentences).T, labels)
    return {
        "contrastive": contrastive,
        "instruments": bce(heads["instruments"], target["instruments"]),
        "genre": F.cross_entropy(heads["genre"], target["genre"]),
        "mode": bce(heads["mode_major"], target["mode_major"]),
        "vocals": vocals,
        "tempo": F.smooth_l1_loss(heads["tempo"], tempo),
        **extra,
    }


class Trainer(TrainingLoop):
    title = "scorer"

    def __init__(
        self, corpus: str | Path, config: dict[str, Any], out: str | Path, device: str = "cpu", progress: bool = True
    ):
        self.config, self.device = config, torch.device(device)
        self.clips = read_labels(corpus)
        self.train_idx, self.val_idx = _split(self.clips, config["holdout_seeds"])
        if len(self.train_idx) < config["batch_size"]:
            raise TadaError(
                f"only {len(self.train_idx)} training clips (after holding out seeds "
                f"{config['holdout_seeds']}); batch_size is {config['batch_size']}"
            )
        super().__init__(out, {"config": config, "corpus": fingerprint(corpus)}, progress)
        self.cache: CorpusCache = load_or_build(corpus, self.clips, self.out / "cache", progress)
        instruments, genres = vocabularies(self.clips)
        self.targets = targets(self.clips, instruments, genres)
        torch.manual_seed(config["seed"])
        self.model = TextAudioScorer(**config["model"], instruments=instruments, genres=genres).to(self.device)
        decay = [p for p in self.model.parameters() if p.ndim >= 2]
        rest = [p for p in self.model.parameters() if p.ndim < 2]
        self.optimizer = torch.optim.AdamW(
            [{"params": decay, "weight_decay": config["weight_decay"]}, {"params": rest, "weight_decay": 0.0}],
            lr=config["lr"],
        )
        self.steps_per_epoch = len(self.train_idx) // config["batch_size"]
        self._probe_sentences: torch.Tensor | None = None
        # focus texts, embedded once (frozen MiniLM); only when the config weights them
        self.focus = (
            FocusBank(focus_groups(instruments, genres), SentenceEncoder().encode)
            if config["loss_weights"].get("focus", 0)
            else None
        )
        self.focus_labels = self.focus.labels(self.targets) if self.focus else None  # (clips, groups)

    def _focus(self, rows: list[int], generator: torch.Generator | None):
        """A focus text per group (random, or each group's first without a generator) and the rows' labels."""
        if self.focus is None:
            return None
        return self.focus.draw(generator).to(self.device), self.focus_labels[rows].to(self.device)

    def _batch(self, step: int) -> list[int]:
        epoch, within = divmod(step, self.steps_per_epoch)
        order = torch.randperm(
            len(self.train_idx), generator=torch.Generator().manual_seed(self.config["seed"] * 7919 + epoch)
        )
        size = self.config["batch_size"]
        return [self.train_idx[i] for i in order[within * size : (within + 1) * size].tolist()]

    def train_step(self, generator: torch.Generator) -> dict[str, float]:
        config = self.config
        rows = self._batch(self.step)
        frames = int(config["crop_seconds"] * SAMPLE_RATE / HOP)
        feats = augment(
            self.cache.features[rows],
            frames,
            generator,
            config["gain_db"],
            tuple(config["snr_db"]),
            config["noise_prob"],
        ).to(self.device)
        caption_ids = self.cache.caption_index[rows]
        sentences = self.cache.captions[caption_ids].to(self.device)
        target = {k: v[rows].to(self.device) for k, v in self.targets.items()}
        self.model.train()
        audio, text = self.model.audio_embedding(feats), self.model.text_embedding(sentences)
        parts = _losses(self.model, audio, text, caption_ids.to(self.device), target, self._focus(rows, generator))
        loss = sum(config["loss_weights"][k] * v for k, v in parts.items())
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(self.model.parameters(), config["grad_clip"])
        self.optimizer.step()
        return {"loss": float(loss.detach()), **{k: float(v.detach()) for k, v in parts.items()}}

    @torch.no_grad()
    def evaluate(self) -> dict[str, Any] | None:
        """Validation loss and standard-probe ROC AUCs on the held-out clips (full length, no augmentation)."""
        if not self.val_idx:
            return None
        self.model.eval()
        rows = self.val_idx
        audio = torch.cat(
            [
                self.model.audio_embedding(self.cache.features[rows[i : i + 64]].float().to(self.device))
                for i in range(0, len(rows), 64)
            ]
        )
        caption_ids = self.cache.caption_index[rows]
        target = {k: v[rows].to(self.device) for k, v in self.targets.items()}
        text = self.model.text_embedding(self.cache.captions[caption_ids].to(self.device))
        top1 = float((caption_ids[(audio @ text.T).argmax(1).cpu()] == caption_ids).float().mean())
        if self._probe_sentences is None:
            self._probe_sentences = SentenceEncoder().encode([t.probe for t in TESTS.values()])
        probes = (audio @ self.model.text_embedding(self._probe_sentences.to(self.device)).T).cpu().numpy()
        val_clips = [self.clips[i] for i in rows]
        aucs = {}
        for column, test in enumerate(TESTS.values()):
            pos, neg = test.split(val_clips)
            aucs[test.name] = roc_auc(probes[pos, column], probes[neg, column])
        parts = _losses(self.model, audio, text, caption_ids.to(self.device), target, self._focus(rows, None))
        return {"val_top1": top1, "auc": aucs, **{f"val_{k}": float(v) for k, v in parts.items()}}

    def plot(self, path: Path) -> None:
        plot_curves(self.history, self.evals, path)

    def finish(self) -> None:
        self.export()

    def export(self) -> Path:
        """Write the current weights as a ``from_pretrained`` directory, with their provenance."""
        target = self.out / "model"
        self.model.save_pretrained(str(target))
        (target / PROVENANCE).write_text(json.dumps(self.provenance(), indent=1))
        return target

    def provenance(self) -> dict[str, Any]:
        """What the finished model was trained on: evaluations must use clips outside ``trained_seeds``."""
        seeds = sorted(self.clips[i].seed for i in self.train_idx)
        return {
            "corpus": self.run_id["corpus"],
            "config": self.config,
            "steps": self.step,
            "trained_seeds": _ranges(seeds),
            "final_eval": self.evals[-1] if self.evals else None,
        }


def train(
    corpus: str | Path,
    config: str | Path | dict[str, Any],
    out: str | Path,
    device: str = "cpu",
    until_step: int | None = None,
    time_limit: float | None = None,
    progress: bool = True,
) -> Trainer:
    """Build or reuse the caches, resume from ``out``'s checkpoint if any, and train; returns the trainer."""
    config = check_config(config) if isinstance(config, dict) else read_config(config)
    trainer = Trainer(corpus, config, out, device=device, progress=progress)
    trainer.resume()
    trainer.run(until_step=until_step, time_limit=time_limit)
    return trainer
