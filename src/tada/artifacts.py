"""Steering vectors as self-describing ``safetensors`` files.

A file holds one vector table per site (``vector/<alias>``, shape ``(timesteps, dim)``)
and the timesteps they were measured at, plus string metadata: format version, model
family and width, sites, operation, normalisation, concept and prompt set. Loading
parses tensors and JSON only; it never executes code.
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import torch
from safetensors import SafetensorError, safe_open
from safetensors.torch import load_file

from . import __version__
from .concepts import Concept
from .engine import Site, SteeringHandle
from .errors import ArtifactError, TadaError
from .files import write_safetensors
from .interventions import AddVector, Intervention, ProjectOut, Renormalize, TimestepTable
from .schedules import ALWAYS, Schedule

FORMAT = "tada/steering-vector"
FORMAT_VERSION = "1"
OPERATIONS = ("add", "project")
MAX_ALPHA = 1.0e4
_REQUIRED = ("format", "format_version", "family", "width", "sites", "operation", "normalisation")
T = TypeVar("T")


def check_alpha(alpha: float) -> float:
    """Steering strengths must be finite and within +-MAX_ALPHA."""
    alpha = float(alpha)
    if not math.isfinite(alpha) or abs(alpha) > MAX_ALPHA:
        raise TadaError(f"alpha {alpha:g} is out of range: use a finite value within +-{MAX_ALPHA:g}")
    return alpha


def write_artifact(path: str | Path, tensors: dict[str, torch.Tensor], metadata: dict[str, str]) -> Path:
    """Write a safetensors file atomically and reproducibly: a killed save never leaves a half-written artifact."""
    return write_safetensors(path, tensors, metadata)


def read_artifact(
    path: Path,
    fmt: str,
    version: str,
    required: Iterable[str],
    kind: str,
    build: Callable[[dict[str, torch.Tensor], dict[str, str]], T],
) -> T:
    """``build(tensors, metadata)`` of a tada artifact of format ``fmt``; one clear error line for anything else."""
    if not path.is_file():
        raise ArtifactError(f"no {kind} file at {path}")
    try:
        tensors = load_file(str(path))
        with safe_open(str(path), framework="pt") as handle:
            meta = handle.metadata() or {}
    except (SafetensorError, OSError, ValueError) as exc:
        raise ArtifactError(f"{path} is not a readable safetensors file ({exc})") from None
    if meta.get("format") != fmt:
        raise ArtifactError(f"{path} is not a tada {kind} (format {meta.get('format')!r})")
    missing = [key for key in required if key not in meta]
    if missing:
        raise ArtifactError(f"{path} lacks metadata: {', '.join(missing)}")
    if meta["format_version"] != version:
        raise ArtifactError(f"{path} has format version {meta['format_version']}; this tada reads {version}")
    try:
        return build(tensors, meta)
    except (KeyError, ValueError, TypeError) as exc:
        raise ArtifactError(f"{path} is corrupt: missing or unreadable entry {exc}") from None
    except ArtifactError as exc:
        raise ArtifactError(f"{path}: {exc}") from None


@dataclass
class SteeringVector:
    """Per-site, per-timestep directions for one concept, tied to one model family and width."""

    vectors: dict[str, torch.Tensor]
    timesteps: torch.Tensor
    family: str
    width: int
    concept: str = ""
    operation: str = "add"
    normalisation: str = "unit"
    prompt_set: dict[str, Any] = field(default_factory=dict)
    settings: dict[str, Any] = field(default_factory=dict)
    method: str = "caa"
    decorations: Concept | None = None
    _tables: dict[str, TimestepTable] = field(default_factory=dict, init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        if self.operation not in OPERATIONS:
            raise ArtifactError(f"unknown operation {self.operation!r}; choose one of {', '.join(OPERATIONS)}")
        if not self.vectors:
            raise ArtifactError("a steering vector needs at least one site")
        if self.timesteps.ndim != 1 or self.timesteps.shape[0] == 0:
            raise ArtifactError(f"the timestep table must be a non-empty list, got shape {tuple(self.timesteps.shape)}")
        n = self.timesteps.shape[0]
        for alias, vec in self.vectors.items():
            if vec.ndim != 2 or vec.shape[0] != n:
                raise ArtifactError(f"vector for site {alias} has shape {tuple(vec.shape)}; expected ({n}, dim)")
            if not torch.isfinite(vec).all():
                raise ArtifactError(f"vector for site {alias} contains NaN or infinite values")
        if not torch.isfinite(self.timesteps).all():
            raise ArtifactError("timesteps contain NaN or infinite values")

    @property
    def sites(self) -> list[str]:
        return list(self.vectors)

    def _check_unit_norm(self) -> None:
        """A file that says its vectors are unit-norm must hold unit-norm vectors (alpha means nothing else)."""
        if self.normalisation != "unit":
            return
        for alias, vec in self.vectors.items():
            norms = vec.double().norm(dim=-1)
            if not torch.allclose(norms, torch.ones_like(norms), atol=1e-3):
                raise ArtifactError(
                    f"vector for site {alias} is marked unit-norm but has norms {float(norms.min()):.3g} to "
                    f"{float(norms.max()):.3g}; the file is inconsistent"
                )

    # -- files ---------------------------------------------------------------------
    def metadata(self) -> dict[str, str]:
        return {
            "format": FORMAT,
            "format_version": FORMAT_VERSION,
            "tada_version": __version__,
            "family": self.family,
            "width": str(self.width),
            "sites": json.dumps(self.sites),
            "operation": self.operation,
            "normalisation": self.normalisation,
            "concept": self.concept,
            "prompt_set": json.dumps(self.prompt_set),
            "settings": json.dumps(self.settings),
            "method": self.method,
            **({"decorations": self.decorations.to_json()} if self.decorations is not None else {}),
        }

    def save(self, path: str | Path) -> Path:
        """Write atomically: a killed save never leaves a half-written artifact."""
        tensors = {f"vector/{alias}": vec.detach().float() for alias, vec in self.vectors.items()}
        tensors["timesteps"] = self.timesteps.detach().double()
        return write_artifact(path, tensors, self.metadata())

    save_pretrained = save

    @classmethod
    def load(cls, path: str | Path) -> SteeringVector:
        def build(tensors: dict[str, torch.Tensor], meta: dict[str, str]) -> SteeringVector:
            sites = json.loads(meta["sites"])
            vector = cls(
                {alias: tensors[f"vector/{alias}"] for alias in sites},
                tensors["timesteps"],
                meta["family"],
                int(meta["width"]),
                meta.get("concept", ""),
                meta["operation"],
                meta["normalisation"],
                json.loads(meta.get("prompt_set", "{}")),
                json.loads(meta.get("settings", "{}")),
                meta.get("method", "caa"),  # files from before the method registry are CAA
                Concept.from_json(meta["decorations"]) if "decorations" in meta else None,
            )
            vector._check_unit_norm()
            return vector

        return read_artifact(Path(path), FORMAT, FORMAT_VERSION, _REQUIRED, "steering vector", build)

    from_pretrained = load

    # -- use -------------------------------------------------------------------------
    def check_model(self, model: Any, where: str = "steering vector") -> None:
        """Fail with one line naming both models if this vector was made for another."""
        if self.family != model.family or self.width != model.width:
            raise ArtifactError(
                f"{where} was made for {self.family} (width {self.width}) "
                f"but the model is {model.family} (width {model.width})"
            )

    def table(self, alias: str) -> TimestepTable:
        """The site's interpolating table, built once so its lookups stay cached across runs."""
        if alias not in self._tables:
            self._tables[alias] = TimestepTable(
                self.timesteps, self.vectors[alias], unit_norm=self.normalisation == "unit"
            )
        return self._tables[alias]

    def interventions(
        self,
        model: Any,
        alpha: float,
        sites: Iterable[str] | str | None = None,
        mode: str | None = None,
        renorm: bool | None = None,
        schedule: Schedule | None = None,
    ) -> dict[Site, list[Intervention]]:
        """The intervention plan this vector gives at strength ``alpha`` on ``model``: on the conditional
        rows unless ``mode`` says otherwise, re-normalised if ``renorm`` (default: as the file's settings
        say, off for files that say nothing), at every step unless ``schedule`` gates it."""
        mode = "cond" if mode is None else mode
        renorm = bool(self.settings.get("renorm", False)) if renorm is None else renorm
        schedule = ALWAYS if schedule is None else schedule
        self.check_model(model)
        alpha = check_alpha(alpha)
        if sites is None:
            aliases = self.sites
        else:
            aliases = [a.strip() for a in sites.split(",")] if isinstance(sites, str) else list(sites)
            unknown = [a for a in aliases if a not in self.vectors]
            if unknown:
                raise TadaError(f"the vector has no site {', '.join(unknown)}; it has {', '.join(self.sites)}")
        plan: dict[Site, list[Intervention]] = {}
        for alias in aliases:
            site = model.site(alias)
            op: Intervention
            if self.operation == "add":
                op = AddVector(self.table(alias), alpha, rows=mode, schedule=schedule)
            else:
                op = ProjectOut(self.table(alias), alpha, rows=mode, schedule=schedule)
            plan[site] = [op, Renormalize(rows=mode, schedule=schedule)] if renorm else [op]
        return plan

    def apply(self, model: Any, alpha: float, **kwargs: Any) -> SteeringHandle:
        """Steer ``model`` until the returned handle is removed (or its ``with`` block ends)."""
        return model.engine.add(self.interventions(model, alpha, **kwargs))

    def claims(self, model: Any) -> dict[str, str]:
        """Additions to the sites' outputs compose with anything."""
        return {f"output:{alias}": "add" for alias in self.sites}
