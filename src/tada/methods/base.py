"""The one interface every steering method implements, and the artifact they share.

A :class:`Method` fits an artifact from a concept (a preset, templates, or a CSV of
prompt pairs) and knows how that artifact steers a model at a strength ``alpha``.
Artifacts are safetensors files whose metadata says which method made them, for which
model family and width, at which sites, for which concept (with its positive, negative
and neutral decorations) and with which settings; :func:`tada.methods.load_artifact`
reads any of them without executing code.

Every method is *global* (all cross-attention layers) or *localised* (the sites the
fit was given); prompt-level and score-space methods then change only those layers'
text input, activation methods only those layers' output, Concept Sliders put their
LoRA only in those layers.
"""

from __future__ import annotations

import json
import math
from abc import ABC, abstractmethod
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

import torch

from .. import __version__
from ..artifacts import read_artifact, write_artifact
from ..concepts import Concept
from ..engine import SteeringHandle
from ..errors import ArtifactError, TadaError
from ..schedules import Schedule

FORMAT = "tada/steering"
FORMAT_VERSION = "1"
_REQUIRED = ("format", "format_version", "method", "family", "width", "sites", "concept")


@dataclass
class FitRequest:
    """What ``tada fit`` hands a method: the concept, its prompt pairs, the sites (None: global)
    and the sampler settings pairs are generated with."""

    concept: Concept
    pairs: list[tuple[str, str]]
    prompt_set: dict[str, Any]
    sites: list[str] | None = None
    seconds: float | None = None
    steps: int | None = None
    guidance: float | None = None
    seed: int = 0
    batch_pairs: int = 4
    work_dir: Path | None = None
    out: Path | None = None
    progress: bool = True
    options: dict[str, Any] = field(default_factory=dict)

    @property
    def scope(self) -> str:
        return "global" if self.sites is None else "localised"

    def generation(self, model: Any) -> dict[str, Any]:
        """Seconds, steps and guidance with the model's defaults filled in."""
        return model.sampler_settings(self.seconds, self.steps, self.guidance)


@dataclass
class ApplyOptions:
    """Options of ``apply`` beyond the strength; a method refuses the ones it has no use for."""

    sites: Sequence[str] | str | None = None
    mode: str | None = None
    renorm: bool | None = None
    schedule: Schedule | None = None

    def given(self) -> list[str]:
        return [name for name, value in self.__dict__.items() if value is not None]

    def refuse(self, method: str, allowed: Sequence[str]) -> None:
        extra = [name for name in self.given() if name not in allowed]
        if extra:
            raise TadaError(
                f"{method} artifacts take no {', '.join(extra)} option (they take: {', '.join(allowed) or 'none'})"
            )


class Method(ABC):
    """A steering method: what it changes, its strength convention, how it fits and applies."""

    name: ClassVar[str]
    changes: ClassVar[str]  # activations | conditioning | score | weights
    summary: ClassVar[str]
    alpha_convention: ClassVar[str]
    alpha_range: ClassVar[tuple[float, float]] = (-1.0e4, 1.0e4)

    def check_alpha(self, alpha: float) -> float:
        alpha = float(alpha)
        low, high = self.alpha_range
        if not math.isfinite(alpha) or not low <= alpha <= high:
            raise TadaError(f"{self.name} takes alpha in [{low:g}, {high:g}] ({self.alpha_convention}); got {alpha:g}")
        return alpha

    def checked(
        self, artifact: Any, model: Any, alpha: float, options: ApplyOptions, allowed: Sequence[str] = ()
    ) -> float:
        """The prologue of every ``apply``: alpha in range, no option the method has no use for, and an
        artifact made for this model; returns alpha as a float."""
        alpha = self.check_alpha(alpha)
        options.refuse(self.name, allowed)
        artifact.check_model(model)
        return alpha

    def new_artifact(
        self,
        model: Any,
        request: FitRequest,
        sites: Sequence[str],
        tensors: dict[str, torch.Tensor] | None = None,
        settings: dict[str, Any] | None = None,
    ) -> MethodArtifact:
        """This method's artifact for ``model`` and ``request`` (its scope recorded in the settings),
        written to ``request.out`` when the request names a file."""
        artifact = MethodArtifact(
            self.name,
            model.family,
            model.width,
            list(sites),
            request.concept,
            dict(tensors or {}),
            {"scope": request.scope, **(settings or {})},
            request.prompt_set,
        )
        if request.out is not None:
            artifact.save(request.out)
        return artifact

    def line(self) -> str:
        """One line for ``tada methods``."""
        return f"{self.name:<15} {self.summary} alpha: {self.alpha_convention}"

    @abstractmethod
    def fit(self, model: Any, request: FitRequest) -> Any:
        """Fit an artifact (written to ``request.out`` when given)."""

    @abstractmethod
    def apply(self, artifact: Any, model: Any, alpha: float, options: ApplyOptions) -> SteeringHandle:
        """Steer ``model`` with ``artifact`` at ``alpha`` until the handle is removed."""

    def claims(self, artifact: Any, model: Any) -> dict[str, str]:
        """What the artifact rewrites on ``model``: ``{resource: "add" | "replace"}``. Two artifacts
        that claim one resource compose only if both merely add to it."""
        return {}


@dataclass
class MethodArtifact:
    """The artifact of any method without a file format of its own: tensors plus metadata."""

    method: str
    family: str
    width: int
    sites: list[str]
    decorations: Concept
    tensors: dict[str, torch.Tensor] = field(default_factory=dict)
    settings: dict[str, Any] = field(default_factory=dict)
    prompt_set: dict[str, Any] = field(default_factory=dict)

    @property
    def concept(self) -> str:
        return self.decorations.name

    @property
    def scope(self) -> str:
        return str(self.settings.get("scope", "global"))

    def metadata(self) -> dict[str, str]:
        return {
            "format": FORMAT,
            "format_version": FORMAT_VERSION,
            "tada_version": __version__,
            "method": self.method,
            "family": self.family,
            "width": str(self.width),
            "sites": json.dumps(self.sites),
            "concept": self.decorations.to_json(),
            "settings": json.dumps(self.settings, sort_keys=True),
            "prompt_set": json.dumps(self.prompt_set, sort_keys=True),
        }

    def save(self, path: str | Path) -> Path:
        return write_artifact(path, {k: v.detach().cpu() for k, v in self.tensors.items()}, self.metadata())

    save_pretrained = save

    @classmethod
    def load(cls, path: str | Path) -> MethodArtifact:
        def build(tensors: dict[str, torch.Tensor], meta: dict[str, str]) -> MethodArtifact:
            sites = json.loads(meta["sites"])
            if not isinstance(sites, list) or not all(isinstance(s, str) for s in sites):
                raise ValueError("sites")
            return cls(
                meta["method"],
                meta["family"],
                int(meta["width"]),
                sites,
                Concept.from_json(meta["concept"]),
                dict(tensors),
                json.loads(meta.get("settings", "{}")),
                json.loads(meta.get("prompt_set", "{}")),
            )

        return read_artifact(Path(path), FORMAT, FORMAT_VERSION, _REQUIRED, "steering artifact", build)

    from_pretrained = load

    def check_model(self, model: Any) -> None:
        if self.family != model.family or self.width != model.width:
            raise ArtifactError(
                f"this {self.method} artifact was made for {self.family} (width {self.width}) "
                f"but the model is {model.family} (width {model.width})"
            )

    def apply(self, model: Any, alpha: float, **options: Any) -> SteeringHandle:
        """Steer ``model`` until the returned handle is removed (or its ``with`` block ends)."""
        from . import get_method

        return get_method(self.method).apply(self, model, alpha, ApplyOptions(**options))
