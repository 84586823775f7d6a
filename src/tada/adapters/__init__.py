"""Model adapters: one shared mechanism, one small spec per family."""

from .base import Adapter, GeneratedAudio
from .registry import load_model, model_kinds

__all__ = ["Adapter", "GeneratedAudio", "load_model", "model_kinds"]
