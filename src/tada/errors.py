"""One exception family for every user-facing failure.

The CLI turns a :class:`TadaError` into a single ``error: ...`` line and a non-zero
exit code, so every message here must make sense on its own, without a traceback.
"""


class TadaError(Exception):
    """A problem the user can fix: bad input, a mismatched artifact, a missing file."""


class ArtifactError(TadaError):
    """An artifact file is unreadable, corrupt, or made for another model."""


class SiteError(TadaError):
    """A site alias or module path that the model does not have."""


class ConceptError(TadaError):
    """An unknown concept preset or an unusable prompt-pair file."""


class ActivationShapeError(TadaError):
    """A cached activation does not fit the run it is patched into (e.g. prompts of different token length)."""
