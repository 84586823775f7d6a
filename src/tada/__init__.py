"""tada: steer text-to-music diffusion models from the inside."""

__version__ = "0.1.0"

from .errors import TadaError  # noqa: E402

__all__ = ["TadaError", "__version__"]
