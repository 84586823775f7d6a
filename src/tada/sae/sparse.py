"""Sparse selections of SAE latents, and their gradients, without dense ``(batch, latents)`` backward passes.

A selection is a list of ``(row, latent)`` pairs, sorted by row (per-token TopK, BatchTopK over the whole
batch, or AuxK over dead latents). Its values are the ReLU pre-activations at those pairs; the gradient
of a loss through them reaches the encoder only at the selected pairs, so the backward pass costs
``O(selected * d_in)`` rather than a second dense matrix product.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F


@dataclass
class Selection:
    """Kept ``(rows, latents)`` pairs of a batch of ``n_rows`` (``rows`` ascending) and bag offsets per row."""

    rows: torch.Tensor
    latents: torch.Tensor
    offsets: torch.Tensor
    n_rows: int

    @classmethod
    def from_rows(cls, rows: torch.Tensor, latents: torch.Tensor, n_rows: int) -> Selection:
        counts = torch.bincount(rows, minlength=n_rows)
        return cls(rows, latents, torch.cumsum(counts, 0) - counts, n_rows)

    @classmethod
    def per_row_topk(cls, scores: torch.Tensor, k: int) -> Selection:
        """The ``k`` largest entries of every row of ``scores`` (``(n, latents)``)."""
        n = scores.shape[0]
        latents = scores.topk(k, dim=-1, sorted=False).indices.reshape(-1)
        rows = torch.arange(n, device=scores.device).repeat_interleave(k)
        offsets = torch.arange(0, n * k, k, device=scores.device)
        return cls(rows, latents, offsets, n)

    @classmethod
    def batch_topk(cls, scores: torch.Tensor, k: int) -> Selection:
        """The ``k * n`` largest entries of the whole batch (BatchTopK): rows keep different numbers."""
        n, width = scores.shape
        flat = scores.reshape(-1).topk(k * n, sorted=False).indices.sort().values
        return cls.from_rows(flat // width, flat % width, n)


class _KeptPreacts(torch.autograd.Function):
    """``pre[rows, latents]`` with ``pre = relu(x @ weight.T + bias)`` given precomputed (without grad)."""

    @staticmethod
    def forward(ctx, x, weight, bias, pre, rows, latents, offsets):  # type: ignore[override]
        values = pre[rows, latents]
        ctx.save_for_backward(x, weight, rows, latents, offsets, values > 0)
        return values

    @staticmethod
    def backward(ctx, grad):  # type: ignore[override]
        x, weight, rows, latents, offsets, positive = ctx.saved_tensors
        grad = grad * positive
        grad_x = grad_w = grad_b = None
        if ctx.needs_input_grad[0]:
            grad_x = F.embedding_bag(latents, weight, offsets, mode="sum", per_sample_weights=grad)
        if ctx.needs_input_grad[1]:
            pairs = torch.stack([latents, rows])
            sparse = torch.sparse_coo_tensor(
                pairs, grad, (weight.shape[0], x.shape[0]), is_coalesced=False, check_invariants=False
            )
            grad_w = torch.sparse.mm(sparse, x)
        if ctx.needs_input_grad[2]:
            grad_b = torch.zeros(weight.shape[0], dtype=grad.dtype, device=grad.device).index_add_(0, latents, grad)
        return grad_x, grad_w, grad_b, None, None, None, None


def kept_values(
    x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor, pre: torch.Tensor, selection: Selection
) -> torch.Tensor:
    """The selected pre-activations, differentiable in ``x``, ``weight`` and ``bias`` at the selected pairs."""
    return _KeptPreacts.apply(x, weight, bias, pre, selection.rows, selection.latents, selection.offsets)


def decode_selection(values: torch.Tensor, selection: Selection, w_dec: torch.Tensor) -> torch.Tensor:
    """``sum_j values_j * W_dec[latent_j]`` per row (no decoder bias)."""
    return F.embedding_bag(selection.latents, w_dec, selection.offsets, mode="sum", per_sample_weights=values)
