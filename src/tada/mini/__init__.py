"""tada-mini: the project's own small text-to-music diffusion model (see README, "tada-mini")."""

from pathlib import Path

WEIGHTS_DIR = Path(__file__).parent / "weights"
