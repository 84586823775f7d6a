"""A TopK sparse autoencoder, stored in the per-hookpoint layout of EleutherAI sparsify and the paper's SAEs.

``encode`` keeps, per token, the ``k`` largest ReLU pre-activations ``relu(W_enc (x - b_dec) + b_enc)``;
``decode`` sums the kept latents' decoder rows and adds ``b_dec``. A directory holds one folder per
hookpoint (the denoiser-relative module path, ``layers.3.cross_attn``), each with ``cfg.json`` and
``sae.safetensors`` (``encoder.weight [L, d]``, ``encoder.bias [L]``, ``W_dec [L, d]``, ``b_dec [d]``):
``sparsify.Sae.load_from_disk`` opens tada's folders and :meth:`TopKSAE.from_pretrained` opens theirs.
Loading reads JSON and safetensors only; nothing in a file is executed.

An SAE trained with BatchTopK also stores the mean smallest kept activation of its last training steps
as ``threshold`` in ``cfg.json``: ``encode(x, mode="threshold")`` keeps every latent above it (the
BatchTopK paper's inference), while the default stays per-token TopK, as the reference steers.
"""

from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from safetensors import SafetensorError, safe_open
from torch import nn

from ..errors import ArtifactError, TadaError
from ..files import write_safetensors, write_text

CONFIG_FILE = "cfg.json"
WEIGHTS_FILE = "sae.safetensors"
TENSORS = ("encoder.weight", "encoder.bias", "W_dec", "b_dec")
ENCODE_MODES = ("topk", "threshold")
MAX_LATENTS = 1 << 24


@dataclass
class SAEConfig:
    """The fields of sparsify's ``cfg.json`` (and the paper's extra ones), plus tada's own under ``tada``."""

    d_in: int
    k: int
    expansion_factor: int = 4
    num_latents: int = 0
    normalize_decoder: bool = True
    batch_topk: bool = False
    sample_topk: bool = False
    input_unit_norm: bool = False
    multi_topk: bool = False
    activation: str = "topk"
    threshold: float | None = None
    tada: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.num_latents == 0:
            self.num_latents = self.d_in * self.expansion_factor
        if not 1 <= self.d_in <= MAX_LATENTS or not 1 <= self.num_latents <= MAX_LATENTS:
            raise TadaError(
                f"an SAE needs 1 <= d_in, num_latents <= {MAX_LATENTS}; got {self.d_in}, {self.num_latents}"
            )
        if not 1 <= self.k <= self.num_latents:
            raise TadaError(f"k must be in [1, num_latents = {self.num_latents}]; got {self.k}")
        if self.activation != "topk":
            raise TadaError(f"tada runs TopK SAEs only; this one uses activation {self.activation!r}")
        if self.threshold is not None and not math.isfinite(self.threshold):
            raise TadaError(f"the BatchTopK threshold must be a finite number; got {self.threshold}")

    def to_json(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_json(cls, data: dict[str, Any], where: str) -> SAEConfig:
        if not isinstance(data, dict) or "d_in" not in data or "k" not in data:
            raise ArtifactError(f"{where} is not an SAE config (it needs at least d_in and k)")
        known = {f.name for f in fields(cls)}
        try:
            return cls(**{key: value for key, value in data.items() if key in known})
        except (TypeError, ValueError) as exc:
            raise ArtifactError(f"{where}: {exc}") from None


class TopKSAE(nn.Module):
    """``encoder`` (``nn.Linear``), ``W_dec`` with unit-norm rows, ``b_dec``: sparsify's parameter names."""

    def __init__(self, cfg: SAEConfig, dtype: torch.dtype = torch.float32, device: str | torch.device = "cpu"):
        super().__init__()
        self.cfg = cfg
        self.encoder = nn.Linear(cfg.d_in, cfg.num_latents, dtype=dtype, device=device)
        self.encoder.bias.data.zero_()
        self.W_dec = nn.Parameter(self.encoder.weight.data.clone())
        self.b_dec = nn.Parameter(torch.zeros(cfg.d_in, dtype=dtype, device=device))
        if cfg.normalize_decoder:
            self.normalise_decoder()

    # -- shape ------------------------------------------------------------------------------------
    @property
    def d_in(self) -> int:
        return self.cfg.d_in

    @property
    def num_latents(self) -> int:
        return self.cfg.num_latents

    @property
    def k(self) -> int:
        return self.cfg.k

    @property
    def hookpoint(self) -> str:
        return str(self.cfg.tada.get("hookpoint", ""))

    # -- inference --------------------------------------------------------------------------------
    def _unit(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor | None]:
        if not self.cfg.input_unit_norm:
            return x, None
        norm = x.norm(dim=-1, keepdim=True).clamp_min(1e-12)
        return x / norm, norm

    def pre_acts(self, x: torch.Tensor) -> torch.Tensor:
        """Dense ReLU pre-activations, ``(..., num_latents)``: what concept features are scored on."""
        x, _ = self._unit(x.to(self.encoder.weight.dtype))
        return F.relu(F.linear(x - self.b_dec, self.encoder.weight, self.encoder.bias))

    def encode(self, x: torch.Tensor, mode: str = "topk") -> tuple[torch.Tensor, torch.Tensor]:
        """The kept latents as ``(values, indices)``, each ``(..., k)``; with ``mode="threshold"`` (BatchTopK
        SAEs) every latent above the stored threshold is kept and the rest are returned as zeros."""
        pre = self.pre_acts(x)
        if mode == "topk":
            values, indices = pre.topk(self.k, dim=-1, sorted=False)
            return values, indices
        if mode == "threshold":
            if self.cfg.threshold is None:
                raise TadaError("this SAE has no BatchTopK threshold; encode with mode='topk'")
            kept = torch.where(pre > self.cfg.threshold, pre, torch.zeros_like(pre))
            width = int((kept > 0).sum(dim=-1).max().clamp_min(1))
            return kept.topk(width, dim=-1, sorted=False)
        raise TadaError(f"unknown encode mode {mode!r}; choose one of {', '.join(ENCODE_MODES)}")

    def decode(self, values: torch.Tensor, indices: torch.Tensor, norm: torch.Tensor | None = None) -> torch.Tensor:
        shape = values.shape[:-1]
        flat = F.embedding_bag(
            indices.reshape(-1, indices.shape[-1]),
            self.W_dec,
            per_sample_weights=values.reshape(-1, values.shape[-1]).to(self.W_dec.dtype),
            mode="sum",
        )
        out = flat.reshape(*shape, self.d_in) + self.b_dec
        return out if norm is None else out * norm

    def forward(self, x: torch.Tensor, mode: str = "topk") -> torch.Tensor:
        """The reconstruction of ``x`` (any leading shape)."""
        _, norm = self._unit(x.to(self.encoder.weight.dtype))
        values, indices = self.encode(x, mode)
        return self.decode(values, indices, norm)

    def fvu(self, x: torch.Tensor, mode: str = "topk") -> float:
        """Fraction of variance unexplained over the rows of ``x`` (``(n, d_in)``)."""
        x = x.to(self.encoder.weight.dtype)
        error = (x - self(x, mode)).pow(2).sum()
        return float(error / (x - x.mean(0)).pow(2).sum().clamp_min(1e-30))

    # -- decoder geometry -------------------------------------------------------------------------
    @torch.no_grad()
    def normalise_decoder(self) -> None:
        self.W_dec.data /= self.W_dec.data.norm(dim=1, keepdim=True).clamp_min(torch.finfo(self.W_dec.dtype).eps)

    @torch.no_grad()
    def remove_parallel_gradient(self) -> None:
        """Drop the part of each decoder row's gradient along that row (it would only change its norm)."""
        if self.W_dec.grad is None:
            return
        along = (self.W_dec.grad * self.W_dec.data).sum(dim=1, keepdim=True)
        self.W_dec.grad -= along * self.W_dec.data

    # -- files ------------------------------------------------------------------------------------
    def save_pretrained(self, directory: str | Path) -> Path:
        """Write ``cfg.json`` and ``sae.safetensors`` into ``directory`` (a hookpoint folder)."""
        directory = Path(directory)
        directory.mkdir(parents=True, exist_ok=True)
        tensors = {name: tensor.detach().contiguous() for name, tensor in self.state_dict().items()}
        write_safetensors(directory / WEIGHTS_FILE, tensors)
        write_text(directory / CONFIG_FILE, json.dumps(self.cfg.to_json(), indent=1))
        return directory

    save = save_pretrained

    @classmethod
    def from_pretrained(cls, directory: str | Path, device: str | torch.device = "cpu") -> TopKSAE:
        """Open one hookpoint folder written by tada, by sparsify, or published with the paper."""
        directory = Path(directory)
        config_path, weights_path = directory / CONFIG_FILE, directory / WEIGHTS_FILE
        if not config_path.is_file() or not weights_path.is_file():
            raise ArtifactError(f"{directory} is not an SAE folder (it needs {CONFIG_FILE} and {WEIGHTS_FILE})")
        try:
            data = json.loads(config_path.read_text())
        except (OSError, ValueError) as exc:
            raise ArtifactError(f"{config_path} is not readable JSON ({exc})") from None
        tada = data.get("tada") if isinstance(data.get("tada"), dict) else {}
        data["tada"] = {**tada, "hookpoint": tada.get("hookpoint", directory.name)}
        cfg = SAEConfig.from_json(data, str(config_path))
        try:
            with safe_open(str(weights_path), framework="pt", device="cpu") as f:
                names = set(f.keys())
                missing = [n for n in TENSORS if n not in names]
                if missing:
                    raise ArtifactError(f"{weights_path} lacks {', '.join(missing)}")
                tensors = {n: f.get_tensor(n) for n in TENSORS}
        except (SafetensorError, OSError) as exc:
            raise ArtifactError(f"{weights_path} is not a readable safetensors file ({exc})") from None
        expected = {
            "encoder.weight": (cfg.num_latents, cfg.d_in),
            "encoder.bias": (cfg.num_latents,),
            "W_dec": (cfg.num_latents, cfg.d_in),
            "b_dec": (cfg.d_in,),
        }
        for name, shape in expected.items():
            if tuple(tensors[name].shape) != shape:
                raise ArtifactError(
                    f"{weights_path}: {name} has shape {tuple(tensors[name].shape)}, cfg.json says {shape}"
                )
            if not torch.isfinite(tensors[name]).all():
                raise ArtifactError(f"{weights_path}: {name} holds NaN or infinite values")
        sae = cls(cfg, dtype=tensors["W_dec"].dtype, device=device)
        sae.load_state_dict(tensors)
        return sae.to(device)


def sae_folders(path: str | Path) -> list[Path]:
    """The hookpoint folders under ``path`` (itself, if it is one), in name order."""
    path = Path(path)
    if (path / CONFIG_FILE).is_file():
        return [path]
    if not path.is_dir():
        raise TadaError(f"{path}: no such SAE directory")
    found = sorted(p for p in path.iterdir() if (p / CONFIG_FILE).is_file())
    if not found:
        raise TadaError(f"{path} holds no SAE (no <hookpoint>/{CONFIG_FILE})")
    return found


def load_saes(path: str | Path, device: str | torch.device = "cpu") -> dict[str, TopKSAE]:
    """Every SAE in a directory, keyed by hookpoint."""
    return {folder.name: TopKSAE.from_pretrained(folder, device) for folder in sae_folders(path)}
