"""The paper's published ACE-Step v1 artifacts as tada artifacts (family ``ace-step-v1``).

So far: **CAA** folders (``config.json`` + ``sv.pkl``). ``sv.pkl`` maps ``(step, pass)`` (pass 0: the
conditional guidance pass, 1: the unconditional one), or a plain ``step`` when only the conditional pass was
saved, to ``defaultdict(list)`` of ``"tf0".."tf23"`` to ``[float32 array (2560,)]``: one direction per step,
pass and transformer block. The pickle is read by :func:`~tada.imports.safe_pickle.load_pickle`, which runs
nothing from the file. Blocks ``tfN`` become sites ``xattn.N`` (``transformer_blocks.N.cross_attn``), steps
become the timesteps of the schedule ``config.json`` describes (ACE-Step v1's flow-matching Euler sampler,
1,000 training timesteps, shift 3, in the scale its transformer is called with), so the vectors apply at
the right step whatever the number of steps tada samples with.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ..artifacts import SteeringVector
from ..errors import TadaError
from .safe_pickle import load_pickle

FAMILY, WIDTH, BLOCKS = "ace-step-v1", 2560, 24
TRAIN_TIMESTEPS, SHIFT = 1000, 3.0
PASSES = {0: "conditional", 1: "unconditional"}


def v1_timesteps(steps: int, shift: float = SHIFT, train_timesteps: int = TRAIN_TIMESTEPS) -> torch.Tensor:
    """The timesteps ACE-Step v1's flow-matching Euler sampler calls its transformer with, for ``steps``
    steps: evenly spaced in the shifted-sigma scale between the shifted ends of the training range, and
    shifted once more (``sigma' = shift * sigma / (1 + (shift - 1) * sigma)``), times the training steps."""

    def shifted(sigma: np.ndarray | float) -> np.ndarray:
        return shift * np.asarray(sigma, dtype=np.float64) / (1 + (shift - 1) * np.asarray(sigma, dtype=np.float64))

    sigma_max, sigma_min = shifted(1.0), shifted(1.0 / train_timesteps)
    sigmas = np.linspace(sigma_max * train_timesteps, sigma_min * train_timesteps, steps) / train_timesteps
    return torch.from_numpy(shifted(sigmas) * train_timesteps)


def read_caa(folder: str | Path) -> tuple[dict[str, Any], dict[int, dict[int, dict[int, np.ndarray]]]]:
    """``config.json`` and the vectors of a published CAA folder as ``{pass: {step: {block: (2560,)}}}``."""
    folder = Path(folder)
    config_path, pickle_path = folder / "config.json", folder / "sv.pkl"
    if not pickle_path.is_file():
        raise TadaError(f"{folder} has no sv.pkl: not a published CAA folder")
    config = _optional_config(config_path)
    raw = load_pickle(pickle_path)
    if not isinstance(raw, dict) or not raw:
        raise TadaError(f"{pickle_path}: expected a dict of (step, pass) keys, got {type(raw).__name__}")
    table: dict[int, dict[int, dict[int, np.ndarray]]] = {}
    for key, blocks in raw.items():
        step, which = _key(key, pickle_path)
        if not isinstance(blocks, dict):
            raise TadaError(f"{pickle_path}: the value of key {key!r} is a {type(blocks).__name__}, not a dict")
        for name, vectors in blocks.items():
            block = _block(name, pickle_path)
            if not isinstance(vectors, list) or len(vectors) != 1:
                raise TadaError(f"{pickle_path}: {key!r}/{name}: expected a list of one vector")
            vector = np.asarray(vectors[0])
            if vector.shape != (WIDTH,) or not np.issubdtype(vector.dtype, np.floating):
                raise TadaError(
                    f"{pickle_path}: {key!r}/{name}: expected a float vector of {WIDTH}, got {vector.shape}"
                )
            table.setdefault(which, {}).setdefault(step, {})[block] = vector
    return config, table


def _optional_config(path: Path) -> dict[str, Any]:
    """A published folder's JSON settings (``config.json``, ``train_config.json``); {} when absent."""
    if not path.is_file():
        return {}
    try:
        config = json.loads(path.read_text(encoding="utf-8"))
    except ValueError as err:
        raise TadaError(f"{path} is not valid JSON: {err}") from None
    if not isinstance(config, dict):
        raise TadaError(f"{path} is not a JSON object")
    return config


def _key(key: Any, source: Path) -> tuple[int, int]:
    if isinstance(key, tuple) and len(key) == 2 and all(isinstance(k, int) for k in key):
        step, which = key
    elif isinstance(key, int) and not isinstance(key, bool):
        step, which = key, 0  # only the conditional pass was saved
    else:
        raise TadaError(f"{source}: unexpected key {key!r}; expected (step, pass) or step")
    if which not in PASSES or step < 0:
        raise TadaError(f"{source}: key {key!r} has no step >= 0 and pass 0 or 1")
    return step, which


def import_caa(folder: str | Path) -> dict[str, SteeringVector]:
    """Steering vectors of a published CAA folder, one per guidance pass saved: ``"conditional"`` (the one
    the paper steers with) and, when saved, ``"unconditional"``. Applied as the paper does: added, then
    each token re-normalised to its norm before steering."""
    config, table = read_caa(folder)
    steps = int(config.get("num_inference_steps", 0) or 0)
    concept = str(config.get("concept", "") or "")
    out = {}
    for which, by_step in sorted(table.items()):
        blocks = sorted({b for per_step in by_step.values() for b in per_step})
        if len(by_step) == 1:  # one key: the same vector at every step
            only = next(iter(by_step.values()))
            n = steps or 1
            by_step = {s: only for s in range(n)}
        n_steps = steps or max(by_step) + 1
        missing = sorted(set(range(n_steps)) - set(by_step))
        if missing or max(by_step) >= n_steps:
            raise TadaError(
                f"{folder}: the {PASSES[which]} pass has vectors for steps {sorted(by_step)[:3]}... of "
                f"{n_steps} (config.json's num_inference_steps); steps {missing[:5]} are missing"
            )
        for step, per_block in by_step.items():
            if sorted(per_block) != blocks:
                raise TadaError(f"{folder}: step {step} of the {PASSES[which]} pass lacks some blocks")
        timesteps = v1_timesteps(n_steps, float(config.get("shift", SHIFT)))
        vectors = {
            f"xattn.{b}": torch.from_numpy(np.stack([by_step[s][b] for s in range(n_steps)]).astype(np.float32))
            for b in blocks
        }
        norms = torch.cat([v.double().norm(dim=-1) for v in vectors.values()])
        unit = bool(torch.allclose(norms, torch.ones_like(norms), atol=1e-3))
        out[PASSES[which]] = SteeringVector(
            vectors,
            timesteps,
            FAMILY,
            WIDTH,
            concept=concept,
            operation="add",
            normalisation="unit" if unit else "none",
            prompt_set={"source": "published", "folder": Path(folder).name},
            settings={
                "renorm": True,
                "imported_from": "paper CAA sv.pkl",
                "pass": PASSES[which],
                "num_inference_steps": n_steps,
                "config": config,
            },
        )
    return out


__all__ = ["BLOCKS", "FAMILY", "WIDTH", "import_caa", "read_caa", "v1_timesteps"]


# ------------------------------------------------------------------------------------------- AUSteer
AUSTEER_K = 2048  # the paper's channels per step, over all its layers


def import_austeer(path: str | Path, k: int = AUSTEER_K, raw: Any = None) -> SteeringVector:
    """A published ``austeer.pkl`` (``{step: {"tfN": {"betas": (2560,), "scores": (2560,)}}}``) as an AUSteer
    steering vector: per step, the ``k`` channels of the highest score over every layer in the file (ties
    in layer, then channel order, as the reference ranks them), each at its signed ``beta``; applied added
    and re-normalised, as the paper does. ``raw``: the file's content, if already read with :func:`load_pickle`."""
    from .. import validate

    validate.integer("--k", k, 1, BLOCKS * WIDTH, "channels steered per step")
    path = Path(path)
    raw = load_pickle(path) if raw is None else raw
    if not isinstance(raw, dict) or not raw or not all(isinstance(s, int) for s in raw):
        raise TadaError(f"{path}: expected {{step: {{'tfN': {{'betas', 'scores'}}}}}}, an AUSteer pickle")
    steps = sorted(raw)
    if steps != list(range(len(steps))):
        raise TadaError(f"{path}: steps {steps[:5]}... are not 0 .. {len(steps) - 1}")
    blocks = sorted({_block(name, path) for per_step in raw.values() for name in per_step})
    betas = torch.zeros(len(steps), len(blocks), WIDTH, dtype=torch.float64)
    scores = torch.zeros_like(betas)
    for step in steps:
        if sorted(_block(n, path) for n in raw[step]) != blocks:
            raise TadaError(f"{path}: step {step} lacks some of the layers {blocks}")
        for name, entry in raw[step].items():
            i = blocks.index(_block(name, path))
            for key, target in (("betas", betas), ("scores", scores)):
                value = np.asarray(entry.get(key) if isinstance(entry, dict) else None)
                if value.shape != (WIDTH,) or not np.issubdtype(value.dtype, np.floating):
                    raise TadaError(f"{path}: step {step}, {name}: {key} must be a float vector of {WIDTH}")
                target[step, i] = torch.from_numpy(value.astype(np.float64))
    flat = scores.reshape(len(steps), -1)
    kept = min(k, flat.shape[1])
    chosen = torch.sort(flat, dim=1, descending=True, stable=True).indices[:, :kept]
    mask = torch.zeros_like(flat, dtype=torch.bool).scatter_(1, chosen, True).reshape(betas.shape)
    steered = torch.where(mask, betas, torch.zeros_like(betas)).float()
    return SteeringVector(
        {f"xattn.{b}": steered[:, i] for i, b in enumerate(blocks)},
        v1_timesteps(len(steps)),
        FAMILY,
        WIDTH,
        operation="add",
        normalisation="none",
        prompt_set={"source": "published", "file": path.name},
        settings={"k": kept, "renorm": True, "imported_from": "paper AUSteer austeer.pkl"},
        method="austeer",
    )


def _block(name: Any, source: Path) -> int:
    match = re.fullmatch(r"tf(\d+)", str(name))
    if not match or not 0 <= int(match.group(1)) < BLOCKS:
        raise TadaError(f"{source}: unknown block {name!r} (expected tf0 .. tf{BLOCKS - 1})")
    return int(match.group(1))


# ------------------------------------------------------------------------------------------- SAEs
def import_sae(folder: str | Path, out: str | Path) -> list[Path]:
    """Published SAE hookpoint folders (``transformer_blocks.N.cross_attn/cfg.json + sae.safetensors``,
    sparsify's layout) under ``folder`` (or ``folder`` itself) as tada SAE folders in ``out``: the same
    weights, with tada's record of the site (``xattn.N``), family and width."""
    from ..sae.model import TopKSAE, sae_folders

    written = []
    for hookpoint in sae_folders(folder):
        match = re.fullmatch(r"transformer_blocks\.(\d+)\.cross_attn", hookpoint.name)
        if not match or not 0 <= int(match.group(1)) < BLOCKS:
            raise TadaError(
                f"{hookpoint}: the folder names hookpoint {hookpoint.name!r}; ACE-Step v1's cross-attention "
                f"hookpoints are transformer_blocks.0.cross_attn .. transformer_blocks.{BLOCKS - 1}.cross_attn"
            )
        sae = TopKSAE.from_pretrained(hookpoint)
        if sae.cfg.d_in != WIDTH:
            raise TadaError(f"{hookpoint}: d_in is {sae.cfg.d_in}; ACE-Step v1's cross-attention width is {WIDTH}")
        sae.cfg.tada = {
            **sae.cfg.tada,
            "hookpoint": hookpoint.name,
            "site": f"xattn.{match.group(1)}",
            "family": FAMILY,
            "width": WIDTH,
            "imported_from": "paper SAE (sparsify layout)",
        }
        written.append(sae.save_pretrained(Path(out) / hookpoint.name))
    return written


SCORE_KEYS = ("tfidf", "diff", "mean_pos")


def import_sae_scores(path: str | Path, raw: Any = None) -> tuple[dict[str, torch.Tensor], str]:
    """A published SAE score pickle (``{"tfidf" | "diff" | "mean_pos": tensor (steps, latents), "concept"}``):
    its score tables and concept. The tensors are read by torch's restricted loader (see
    :func:`~tada.imports.safe_pickle.load_pickle`), never by the unrestricted one they were pickled for.
    ``raw``: the file's content, if already read so."""
    path = Path(path)
    raw = load_pickle(path, tensors=True) if raw is None else raw
    if not isinstance(raw, dict) or not any(k in raw for k in SCORE_KEYS):
        raise TadaError(f"{path}: expected a dict with {', '.join(SCORE_KEYS)} and concept, an SAE score pickle")
    tables = {}
    for key in SCORE_KEYS:
        if key in raw:
            value = raw[key]
            if not isinstance(value, torch.Tensor) or value.ndim != 2 or not value.is_floating_point():
                raise TadaError(f"{path}: {key} must be a float tensor (steps, latents)")
            if not torch.isfinite(value).all():
                raise TadaError(f"{path}: {key} holds NaN or infinite values")
            tables[key] = value.detach().clone().contiguous()
    shapes = {tuple(t.shape) for t in tables.values()}
    if len(shapes) != 1:
        raise TadaError(f"{path}: the score tables differ in shape ({sorted(shapes)})")
    return tables, str(raw.get("concept", "") or "")


__all__ += ["AUSTEER_K", "import_austeer", "import_sae", "import_sae_scores"]


# ------------------------------------------------------------------------------------------- Concept Sliders
LORA_FILE, TRAIN_CONFIG = "pytorch_lora_weights.safetensors", "train_config.json"
_LORA_KEY = re.compile(
    r"(?:base_model\.model\.|transformer\.)?(transformer_blocks\.(\d+)\.(?:attn|cross_attn)\.(?:to_q|to_k|to_v|to_out\.0))"
    r"\.(lora_A\.weight|lora_B\.weight|lora\.down\.weight|lora\.up\.weight)"
)
_LORA_PART = {"lora_A.weight": ".lora_A.weight", "lora.down.weight": ".lora_A.weight"}


def import_concept_slider(folder: str | Path) -> Any:
    """A published Concept Slider (a diffusers LoRA ``pytorch_lora_weights.safetensors`` and its
    ``train_config.json``) as a tada concept-slider artifact: the same low-rank weights on the same
    projections of ``transformer_blocks.N.attn`` / ``.cross_attn``, the slider strength as its alpha."""
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    from ..concepts import Concept
    from ..methods.base import MethodArtifact

    folder = Path(folder)
    weights_path, config_path = folder / LORA_FILE, folder / TRAIN_CONFIG
    if not weights_path.is_file():
        raise TadaError(f"{folder} has no {LORA_FILE}: not a published Concept Slider")
    config = _optional_config(config_path)
    try:
        raw = load_file(str(weights_path))
    except (SafetensorError, OSError) as err:
        raise TadaError(f"{weights_path} is not a readable safetensors file ({err})") from None
    tensors, blocks = {}, set()
    for key, value in raw.items():
        match = _LORA_KEY.fullmatch(key)
        if not match:
            raise TadaError(
                f"{weights_path}: unexpected tensor {key!r}; a Concept Slider holds LoRA weights on "
                "transformer_blocks.N.(attn|cross_attn).(to_q|to_k|to_v|to_out.0)"
            )
        path, block, part = match.groups()
        if not 0 <= int(block) < BLOCKS:
            raise TadaError(f"{weights_path}: {key!r} names block {block}; ACE-Step v1 has 0 .. {BLOCKS - 1}")
        suffix = _LORA_PART.get(part, ".lora_B.weight")
        tensors[f"transformer.{path}{suffix}"] = value.float().contiguous()
        blocks.add(int(block))
    if not tensors:
        raise TadaError(f"{weights_path} holds no LoRA weights")
    lora_alpha = float(config.get("lora_alpha", config.get("alpha", 1.0)))
    concept = str(config.get("concept", "") or folder.name)
    from ..methods.concept_slider import LoRA

    LoRA.from_tensors(tensors, lora_alpha)  # every pair complete and of one rank, or one clear line
    return MethodArtifact(
        "concept-slider",
        FAMILY,
        WIDTH,
        [f"xattn.{b}" for b in sorted(blocks)],
        Concept(concept),
        tensors,
        {"lora_alpha": lora_alpha, "imported_from": "paper Concept Slider", "train_config": config},
        {"source": "published", "folder": folder.name},
    )


__all__ += ["import_concept_slider"]


# ------------------------------------------------------------------------------------------- token embedding
TEXT_WIDTH = 768  # UMT5-base


def import_token_embedding(path: str | Path, model: Any) -> Any:
    """A published token-embedding direction (``<concept>_direction.pt``: ``{"direction": (768,), ...}``,
    a zip ``torch.save``, read by ``torch.load(weights_only=True)``, torch's restricted unpickler) as a tada
    token-embedding artifact for ``model`` (an ``ace-step-v1`` adapter).

    The paper adds ``alpha * d`` to the UMT5 states at the generic word. ACE-Step v1 reads those states
    only through its linear ``genre_embedder`` (768 -> 2560) into the cross-attention context, so the same
    edit is ``alpha * W d`` added to every cross-attention layer's context at that word's tokens: that is
    the artifact, exact for this model's weights (the projection's bias is untouched by a difference)."""
    from ..concepts import CONCEPTS, Concept
    from ..methods.base import MethodArtifact

    path = Path(path)
    if getattr(model, "family", None) != FAMILY:
        raise TadaError(
            "a token-embedding direction is mapped through ACE-Step v1's text projection: give --model ace-step-v1:PATH"
        )
    try:
        payload = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:  # noqa: BLE001 - torch's refusals and format errors come in many types
        first = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        raise TadaError(
            f"{path}: refused or unreadable by torch's restricted loader (nothing was run): {first}"
        ) from None
    direction = payload.get("direction") if isinstance(payload, dict) else None
    if not isinstance(direction, torch.Tensor) or direction.shape != (TEXT_WIDTH,) or not direction.is_floating_point():
        raise TadaError(f"{path}: expected {{'direction': a float tensor ({TEXT_WIDTH},)}}, a token-embedding file")
    concept_name = str(payload.get("concept", "") or path.stem.removesuffix("_direction"))
    concept = CONCEPTS.get(concept_name)
    if concept is None or not concept.generic_word:
        concept = Concept(concept_name, generic_word=str(payload.get("generic_word", "") or ""))
    projection = model.parts.transformer.genre_embedder.weight.detach().float().cpu()
    mapped = projection @ direction.float()
    sites = [s.alias for s in model.sites.values() if s.kind == "xattn_in"]
    return MethodArtifact(
        "token-embedding",
        FAMILY,
        WIDTH,
        sites,
        concept,
        {f"direction/{alias}": mapped.clone() for alias in sites},
        {"imported_from": "paper token embedding", "text_direction": direction.float().tolist()},
        {"source": "published", "file": path.name},
    )


__all__ += ["import_token_embedding"]


def sae_vector_from_scores(
    tables: dict[str, torch.Tensor], concept: str, sae_folder: str | Path, top: int, rule: str = "tfidf"
) -> SteeringVector:
    """The paper's SAE steering vector from imported scores and the SAE of one hookpoint folder: per step,
    the sum of the decoder rows of the ``top`` features that score highest under ``rule`` (as ``tada fit
    --method sae`` builds its own), applied added and re-normalised."""
    from .. import validate
    from ..methods.sae import decoder_sum, top_features
    from ..sae.model import TopKSAE

    validate.integer("--top", top, 1, 1_000_000, "features kept per step")
    if rule not in tables:
        raise TadaError(f"the scores hold {', '.join(tables)}, not {rule!r}")
    sae = TopKSAE.from_pretrained(sae_folder)
    site = sae.cfg.tada.get("site") or _hookpoint_site(Path(sae_folder).name)
    scores = tables[rule].double()
    if scores.shape[1] != sae.cfg.num_latents:
        raise TadaError(
            f"the scores rank {scores.shape[1]} features but the SAE in {sae_folder} has {sae.cfg.num_latents}: "
            "give the SAE of the layer these scores were measured on"
        )
    picked = top_features(scores, top)
    return SteeringVector(
        {site: decoder_sum(sae, picked)},
        v1_timesteps(scores.shape[0]),
        FAMILY,
        WIDTH,
        concept=concept,
        operation="add",
        normalisation="none",
        prompt_set={"source": "published"},
        settings={"top": top, "score": rule, "features": {site: picked.tolist()}, "renorm": True},
        method="sae",
    )


def _hookpoint_site(name: str) -> str:
    match = re.fullmatch(r"transformer_blocks\.(\d+)\.cross_attn", name)
    if not match:
        raise TadaError(f"cannot tell the layer of SAE folder {name!r}; import the SAE with `tada import` first")
    return f"xattn.{match.group(1)}"


__all__ += ["sae_vector_from_scores"]
