"""tada-mini: the project's own small text-to-music diffusion model (model card: docs/tada-mini.md)."""

from pathlib import Path

WEIGHTS_DIR = Path(__file__).parent / "weights"
