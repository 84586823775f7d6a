"""Sparse autoencoders on cross-attention outputs: cache, train, score concept features, report."""

from .model import SAEConfig, TopKSAE, load_saes, sae_folders

__all__ = ["SAEConfig", "TopKSAE", "load_saes", "sae_folders"]
