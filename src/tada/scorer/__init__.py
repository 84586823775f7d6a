"""The offline text-audio scorer: alignment to text probes and perceptual preservation distance.

``Scorer.load()`` reads the weights shipped in ``tada/scorer/weights``; ``tada scorer
train`` makes new ones from a labelled corpus.
"""

from .api import Scorer

__all__ = ["Scorer"]
