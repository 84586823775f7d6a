"""Training tada-mini end to end: ``tada mini train --corpus DIR --config configs/mini.json --out DIR``.

Four stages, each resumable and skipped once done, in ``out``:

1. ``autoencoder``  mel autoencoder on the corpus's log-mels    -> ``autoencoder/model``
2. ``trainset``     latents + caption wordings + cut-down MiniLM -> ``trainset/`` (carryable)
3. ``transformer``  flow-matching DiT on the training set        -> ``transformer/transformer``
4. ``export``       the pipeline as a ``from_pretrained`` folder -> ``model/`` (+ ``training.json``)

Stage 3 is the long one; it also runs alone on a GPU machine from the training set
(``python -m tada.mini.train_transformer``), and its output comes back to stage 4 here.

Either model can instead be taken from an earlier run: ``"autoencoder": {"from": DIR}``
(optionally with ``"decoder": {...}``, a decoder-only fine-tune of it, see
:mod:`tada.mini.train_autoencoder`) and ``"transformer": {"from": DIR}``, which skips
stages 2 and 3 (it needs its autoencoder "from" too: the latents it was trained on).
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import torch
from tqdm.auto import tqdm

from ..errors import TadaError
from ..training.config import check_keys, read_json
from ..training.schedule import OPTIONAL_KEYS
from . import train_autoencoder, train_transformer

STAGES = ("autoencoder", "trainset", "transformer", "export")
TOP_KEYS = ("seed", "autoencoder", "trainset", "transformer")
TRAINSET_KEYS = ("captions_per_clip",)
TRAINSET_OPTIONAL = ("short_captions_per_clip", "mode_twins", "gender_twins")  # default 0 / false / false
PROVENANCE = "training.json"
# {"from": DIR} instead of training settings: take a trained autoencoder (a tada-mini model's
# ``autoencoder`` folder) as it is; a fine-tune must, to stay in its base model's latent space
AE_FROM = "from"
DECODER = "decoder"  # inside a "from" autoencoder: fine-tune its decoder alone with these settings


def read_config(path: str | Path) -> dict[str, Any]:
    config = read_json(path)
    check_keys(config, TOP_KEYS, str(path))
    if AE_FROM in config["autoencoder"]:
        check_keys(config["autoencoder"], (AE_FROM,), f"{path} [autoencoder]", (DECODER,))
        if DECODER in config["autoencoder"]:
            check_keys(
                config["autoencoder"][DECODER],
                train_autoencoder.DECODER_KEYS,
                f"{path} [autoencoder.decoder]",
                OPTIONAL_KEYS,
            )
    else:
        check_keys(config["autoencoder"], train_autoencoder.KEYS, f"{path} [autoencoder]", OPTIONAL_KEYS)
    check_keys(config["trainset"], TRAINSET_KEYS, f"{path} [trainset]", TRAINSET_OPTIONAL)
    if AE_FROM in config["transformer"]:
        check_keys(config["transformer"], (AE_FROM,), f"{path} [transformer]")
    else:
        check_keys(
            config["transformer"],
            train_transformer.KEYS,
            f"{path} [transformer]",
            OPTIONAL_KEYS + train_transformer.OPTIONAL,
        )
    reused = config["transformer"].get("init_from") or config["transformer"].get(AE_FROM)
    if reused and AE_FROM not in config["autoencoder"]:
        raise TadaError(
            f"{path}: a transformer trained before (init_from or from) must keep its base model's "
            'latents: set "autoencoder" to {"from": "<base model>/autoencoder"}'
        )
    return config


def _transformer_from(config: dict[str, Any]) -> Path | None:
    """The transformer taken as it is from an earlier run, or None when this run trains one."""
    source = config["transformer"].get(AE_FROM)
    return Path(source) if source else None


def _records(corpus: str | Path, mode_twins: bool = False, gender_twins: bool = False) -> list[dict[str, Any]]:
    """The corpus's labelled clips by seed, each followed by its twins of the kinds asked for
    (mode twins with ``mode_twins``, gender twins with ``gender_twins``)."""
    from ..data.corpus import label_order, read_labels, twin_kind

    kept = {None} | {kind for kind, wanted in (("mode", mode_twins), ("gender", gender_twins)) if wanted}
    records = [r for r in read_labels(corpus) if twin_kind(r) in kept]
    if not records:
        raise TadaError(f"{corpus} has no labelled clips (make one with `tada data make`)")
    if any("spec" not in r for r in records):
        raise TadaError(f"{corpus}/labels.jsonl lacks clip specs; regenerate it with `tada data make`")
    return sorted(records, key=label_order)


def _trainset_records(corpus: str | Path, config: dict[str, Any]) -> list[dict[str, Any]]:
    """The clips the config's training set holds: originals and the twins it asks for."""
    section = config["trainset"]
    return _records(corpus, bool(section.get("mode_twins", False)), bool(section.get("gender_twins", False)))


def autoencoder_stage(
    corpus: str | Path,
    config: dict[str, Any],
    out: Path,
    device: str = "cpu",
    time_limit: float | None = None,
    progress: bool = True,
) -> bool:
    """Train the autoencoder (or copy the one the config names); whether the stage is done."""
    from .data import corpus_mels

    section = config["autoencoder"]
    if AE_FROM in section and DECODER not in section:
        _copy_autoencoder(Path(section[AE_FROM]), out / "autoencoder" / "model")
        return True
    base = _base_autoencoder(Path(section[AE_FROM])) if AE_FROM in section else None
    # a new autoencoder learns from the original clips; a decoder fine-tune from the clips the
    # training set holds (twins too), the audio generation is asked to decode
    records = _trainset_records(corpus, config) if base is not None else _records(corpus)
    mels = corpus_mels(corpus, records, out / "cache", progress)
    trainer = train_autoencoder.AutoencoderTrainer(
        mels,
        [r["id"] for r in records],
        section[DECODER] if base is not None else section,
        config["seed"],
        out / "autoencoder",
        device=device,
        progress=progress,
        base=base,
    )
    trainer.resume()
    if not (trainer.done and (out / "autoencoder" / "model").is_dir()):
        trainer.run(time_limit=time_limit)
    return trainer.done


def _base_autoencoder(source: Path):
    """The autoencoder a config takes "from", loaded (or refused in one line)."""
    from .autoencoder import MelAutoencoder

    if not (source / "config.json").is_file():
        raise TadaError(f"autoencoder 'from' {source} is not a tada-mini autoencoder folder (no config.json)")
    return MelAutoencoder.from_pretrained(source)


def _copy_autoencoder(source: Path, target: Path) -> None:
    if target.is_dir():
        return
    _base_autoencoder(source)  # loads, or fails here rather than in a later stage
    shutil.copytree(source, target)


def _autoencoder_provenance(config: dict[str, Any], out: Path) -> dict[str, Any]:
    """Steps and last evaluation of the autoencoder trained here, or where a copied one came from
    (with its own run's record when the folder it came from is an exported model's)."""
    source = config["autoencoder"].get(AE_FROM)
    trained = None
    if source is None or DECODER in config["autoencoder"]:
        state = json.loads((out / "autoencoder" / "checkpoint" / "state.json").read_text())
        trained = {"steps": state["step"], "final_eval": (state["evals"] or [None])[-1]}
    if source is None:
        return trained
    base = Path(source).parent / PROVENANCE
    record = {AE_FROM: str(source), **(json.loads(base.read_text())["autoencoder"] if base.is_file() else {})}
    if trained:  # the base's record, and the decoder fine-tune done here
        record = {**record, DECODER: trained}
    return record


def trainset_stage(corpus: str | Path, config: dict[str, Any], out: Path, progress: bool = True) -> Path:
    from ..data.corpus import twin_kind
    from .autoencoder import MelAutoencoder
    from .data import TRAINSET_INFO, caption_variants, corpus_mels, write_trainset

    target = out / "trainset"
    if (target / TRAINSET_INFO).is_file() or _transformer_from(config):
        return target  # done, or not needed: the transformer is taken as it is
    model_dir = out / "autoencoder" / "model"
    if not model_dir.is_dir():
        raise TadaError(f"no trained autoencoder in {model_dir}: run the autoencoder stage first")
    records = _trainset_records(corpus, config)
    autoencoder = MelAutoencoder.from_pretrained(model_dir).eval()
    mels = corpus_mels(corpus, records, out / "cache", progress)
    batches = tqdm(range(0, len(mels), 32), desc="clip latents", unit="batch", disable=not progress)
    with torch.no_grad():  # encode() drops the frames beyond a multiple of the downsampling
        latents = (
            torch.cat([autoencoder.encode(autoencoder.stats.normalise(mels[i : i + 32].float()))[0] for i in batches])
            * autoencoder.config.scaling_factor
        )
    captions = caption_variants(
        records, config["trainset"]["captions_per_clip"], config["trainset"].get("short_captions_per_clip", 0)
    )
    row = {r["id"]: i for i, r in enumerate(records)}
    pairs = [(row[r["twin_of"]], i) for i, r in enumerate(records) if r.get("twin_of") in row]
    kinds = [twin_kind(records[i]) for _, i in pairs]
    info = {
        "corpus_ids": [records[0]["id"], records[-1]["id"]],
        "seeds": [records[0]["seed"], records[-1]["seed"]],
        "latent_std": float(latents.std()),
        "mode_twin_pairs": kinds.count("mode"),
        "gender_twin_pairs": kinds.count("gender"),
    }
    return write_trainset(target, latents, captions, info, pairs, kinds)


def transformer_stage(
    config: dict[str, Any],
    out: Path,
    device: str = "cpu",
    time_limit: float | None = None,
    until_step: int | None = None,
    progress: bool = True,
) -> bool:
    """Train the transformer (nothing to do when the config takes one "from" a run); whether it is done."""
    if _transformer_from(config):
        return True
    trainer = train_transformer.TransformerTrainer(
        out / "trainset", config["transformer"], config["seed"], out / "transformer", device=device, progress=progress
    )
    trainer.resume()
    if not (trainer.done and (out / "transformer" / "transformer").is_dir()):
        trainer.run(until_step=until_step, time_limit=time_limit)
    return trainer.done


def export_stage(config: dict[str, Any], out: Path, target: Path | None = None) -> Path:
    from .autoencoder import MelAutoencoder
    from .pipeline import TadaMiniPipeline, default_scheduler
    from .transformer import TadaMiniTransformer

    transformer_dir = _transformer_from(config) or out / "transformer" / "transformer"
    autoencoder_dir = out / "autoencoder" / "model"
    for needed in (transformer_dir, autoencoder_dir):
        if not needed.is_dir():
            raise TadaError(f"{needed} is missing: finish the earlier stages first")
    pipe = TadaMiniPipeline(
        TadaMiniTransformer.from_pretrained(transformer_dir),
        MelAutoencoder.from_pretrained(autoencoder_dir),
        default_scheduler(),
    )
    target = target or out / "model"
    pipe.save_pretrained(target)
    provenance = {"config": config, "autoencoder": _autoencoder_provenance(config, out)}
    if _transformer_from(config):
        provenance["transformer"] = {AE_FROM: str(transformer_dir)}
        base = str(transformer_dir)
    else:
        state = json.loads((out / "transformer" / "checkpoint" / "state.json").read_text())
        provenance["trainset"] = json.loads((out / "trainset" / "trainset.json").read_text())
        provenance["transformer"] = {"steps": state["step"], "final_eval": (state["evals"] or [None])[-1]}
        base = config["transformer"].get("init_from")
    if base and (Path(base).parent / PROVENANCE).is_file():  # keep the record of the run it came from
        provenance["init_from"] = json.loads((Path(base).parent / PROVENANCE).read_text())
    (target / PROVENANCE).write_text(json.dumps(provenance, indent=1) + "\n")
    return target


def train(
    corpus: str | Path,
    config_path: str | Path,
    out: str | Path,
    stages: tuple[str, ...] = STAGES,
    device: str = "cpu",
    time_limit: float | None = None,
    until_step: int | None = None,
    progress: bool = True,
) -> Path | None:
    """Run ``stages`` in order; the exported model directory, ``out`` when the requested stages are all
    done without export, or None when a stage stopped early (time limit, ``until_step``) at a checkpoint."""
    config = read_config(config_path)
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    for stage in stages:
        if stage not in STAGES:
            raise TadaError(f"unknown stage {stage!r}; stages are {', '.join(STAGES)}")
    if "autoencoder" in stages:
        if not autoencoder_stage(corpus, config, out, device, time_limit, progress):
            return None
    if "trainset" in stages:
        trainset_stage(corpus, config, out, progress)
    if "transformer" in stages:
        if not transformer_stage(config, out, device, time_limit, until_step, progress):
            return None
    if "export" in stages:
        return export_stage(config, out)
    return out
