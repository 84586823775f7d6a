"""tada-mini's denoiser: a diffusion transformer over latent frames, text through cross-attention only.

Each block: adaptive-LayerNorm self-attention over the audio tokens, cross-attention
from the audio tokens to MiniLM's token states (the only way text enters the model, as
in ACE-Step), and an adaptive-LayerNorm MLP. Timestep conditioning is adaLN-single
(PixArt-alpha): one MLP maps the timestep to shift/scale/gate vectors, and each block
adds its own learned offset. Attention modules are diffusers' :class:`Attention`, so
cross-attention blocks carry ``is_cross_attention`` and receive the text as the
``encoder_hidden_states`` keyword, exactly like the other families' denoisers.

The model predicts the flow-matching velocity ``noise - latent`` at ``timestep`` =
sigma * 1000 (diffusers' ``FlowMatchEulerDiscreteScheduler`` convention). With
``patch_size`` p, each audio token is p consecutive latent frames (as DiT patchifies
images): p times fewer tokens, so training and sampling cost about 1/p as much. A length
that is not a multiple of p is zero-padded at the end and the padding cut from the output.
"""

from __future__ import annotations

import math

import torch
from diffusers import ConfigMixin, ModelMixin
from diffusers.configuration_utils import register_to_config
from diffusers.models.attention_processor import Attention, AttnProcessor2_0
from torch import nn
from torch.nn import functional as F

from ..text_encoder import TEXT_DIM


def timestep_embedding(timestep: torch.Tensor, dim: int, max_period: float = 10_000.0) -> torch.Tensor:
    """Sinusoidal embedding of timesteps on the 0-1000 scale, ``(batch, dim)``."""
    half = dim // 2
    freqs = torch.exp(-math.log(max_period) * torch.arange(half, device=timestep.device, dtype=torch.float32) / half)
    args = timestep.float()[:, None] * freqs[None]
    return torch.cat([torch.cos(args), torch.sin(args)], dim=-1)


class FeedForward(nn.Module):
    def __init__(self, width: int, mult: int):
        super().__init__()
        self.proj_in = nn.Linear(width, width * mult)
        self.proj_out = nn.Linear(width * mult, width)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.proj_out(F.gelu(self.proj_in(x), approximate="tanh"))


class TadaMiniBlock(nn.Module):
    def __init__(self, width: int, heads: int, text_dim: int, mlp_ratio: int):
        super().__init__()
        head_dim = width // heads
        self.norm1 = nn.LayerNorm(width, elementwise_affine=False, eps=1e-6)
        self.attn1 = Attention(width, heads=heads, dim_head=head_dim, bias=True, processor=AttnProcessor2_0())
        self.norm2 = nn.LayerNorm(width, eps=1e-6)
        self.attn2 = Attention(
            width, cross_attention_dim=text_dim, heads=heads, dim_head=head_dim, bias=True, processor=AttnProcessor2_0()
        )
        self.norm3 = nn.LayerNorm(width, elementwise_affine=False, eps=1e-6)
        self.ff = FeedForward(width, mlp_ratio)
        self.modulation = nn.Parameter(torch.randn(6, width) / width**0.5)

    def forward(self, x: torch.Tensor, t_mod: torch.Tensor, text: torch.Tensor, text_bias: torch.Tensor | None):
        shift1, scale1, gate1, shift2, scale2, gate2 = (t_mod + self.modulation[None]).unbind(dim=1)
        h = self.norm1(x) * (1 + scale1[:, None]) + shift1[:, None]
        x = x + gate1[:, None] * self.attn1(h)
        x = x + self.attn2(self.norm2(x), encoder_hidden_states=text, attention_mask=text_bias)
        h = self.norm3(x) * (1 + scale2[:, None]) + shift2[:, None]
        return x + gate2[:, None] * self.ff(h)


class TadaMiniTransformer(ModelMixin, ConfigMixin):
    """``forward(hidden_states (B, C, T), timestep (B,), encoder_hidden_states (B, L, 384),
    encoder_attention_mask (B, L) bool) -> velocity (B, C, T)``."""

    _supports_gradient_checkpointing = False

    @register_to_config
    def __init__(
        self,
        in_channels: int = 32,
        width: int = 256,
        num_layers: int = 8,
        heads: int = 4,
        mlp_ratio: int = 4,
        text_dim: int = TEXT_DIM,
        max_tokens: int = 160,
        patch_size: int = 1,
    ):
        super().__init__()
        self.proj_in = nn.Linear(in_channels * patch_size, width)
        self.position = nn.Parameter(torch.randn(1, max_tokens, width) * 0.02)
        self.time_mlp = nn.Sequential(nn.Linear(256, width), nn.SiLU(), nn.Linear(width, width))
        self.time_mod = nn.Sequential(nn.SiLU(), nn.Linear(width, 6 * width))
        self.text_norm = nn.LayerNorm(text_dim)
        self.blocks = nn.ModuleList(TadaMiniBlock(width, heads, text_dim, mlp_ratio) for _ in range(num_layers))
        self.norm_out = nn.LayerNorm(width, elementwise_affine=False, eps=1e-6)
        self.out_mod = nn.Parameter(torch.randn(2, width) / width**0.5)
        self.proj_out = nn.Linear(width, in_channels * patch_size)
        nn.init.zeros_(self.time_mod[-1].weight)
        nn.init.zeros_(self.time_mod[-1].bias)
        nn.init.zeros_(self.proj_out.weight)
        nn.init.zeros_(self.proj_out.bias)

    @property
    def max_frames(self) -> int:
        """The longest latent sequence the position table covers."""
        return self.config.max_tokens * self.config.patch_size

    def forward(
        self,
        hidden_states: torch.Tensor,
        timestep: torch.Tensor,
        encoder_hidden_states: torch.Tensor,
        encoder_attention_mask: torch.Tensor | None = None,
    ) -> torch.Tensor:
        batch, channels, frames = hidden_states.shape
        patch = self.config.patch_size
        tokens = -(-frames // patch)
        if frames > self.max_frames:
            raise ValueError(f"{frames} latent frames exceed the model's {self.max_frames}")
        if timestep.ndim == 0:
            timestep = timestep.expand(batch)
        patches = F.pad(hidden_states, (0, tokens * patch - frames)).view(batch, channels, tokens, patch)
        patches = patches.permute(0, 2, 1, 3).reshape(batch, tokens, channels * patch)
        x = self.proj_in(patches) + self.position[:, :tokens]
        temb = self.time_mlp(timestep_embedding(timestep, 256).to(x.dtype))
        t_mod = self.time_mod(temb).view(batch, 6, -1)
        text = self.text_norm(encoder_hidden_states.to(x.dtype))
        bias = None
        if encoder_attention_mask is not None:  # additive: 0 on real tokens, large negative on padding
            bias = torch.zeros(encoder_attention_mask.shape, dtype=x.dtype, device=x.device)
            bias = bias.masked_fill(~encoder_attention_mask.bool(), torch.finfo(x.dtype).min / 2)[:, None, :]
        for block in self.blocks:
            x = block(x, t_mod, text, bias)
        shift, scale = (self.out_mod[None] + temb[:, None]).unbind(dim=1)
        x = self.norm_out(x) * (1 + scale[:, None]) + shift[:, None]
        out = self.proj_out(x).view(batch, tokens, channels, patch).permute(0, 2, 1, 3)
        return out.reshape(batch, channels, tokens * patch)[..., :frames]
