"""What a benchmark run is made of: its settings, the steering variants, and the units of work.

A *variant* is a method with a scope: ``caa-global`` acts on every cross-attention layer,
``caa-local`` on the concept's top localised layers (the paper's "loc."). A run goes through
stages, each a list of independent *units* an executor may run in any order or in parallel:

0. ``reference`` the quality reference: scorer embeddings of held-out corpus clips;
1. ``localise``  one concept's impact table (only for local variants without a given table);
2. ``fit``       one variant's artifact for one concept (fitted on the concept's base prompts);
3. ``target``    one concept's cutoff on the tuning prompts: how far a full prompt swap moves the audio;
4. ``calibrate`` one variant's alpha grid per direction on the tuning prompts, reaching that cutoff;
5. ``baseline``  one chunk of test prompts at alpha 0 (the neutral wrap, shared by every variant);
6. ``sweep``     one variant's clips at one direction's alphas for one chunk of test prompts.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np

from ..concepts import CONCEPTS
from ..errors import TadaError
from ..methods import method_names

SCOPES = ("global", "local")
DIRECTIONS = ("pos", "neg")
SWITCH = "prompt-switch"

# the paper's names for its table (MISSION.md section 3)
LABELS = {
    "prompt-switch": "prompt switching",
    "text-embedding": "text-embedding",
    "token-embedding": "token-embedding",
    "freesliders": "FreeSliders",
    "concept-slider": "Concept Sliders",
    "austeer": "AUSteer",
    "caa": "CAA",
    "sae": "SAE",
}

# where the alpha search starts (about the strength at which each method audibly acts on tada-mini)
START_ALPHA = {"caa": 2.0, "austeer": 2.0, "sae": 2.0}


@dataclass(frozen=True)
class Variant:
    method: str
    scope: str

    @property
    def name(self) -> str:
        return f"{self.method}-{self.scope}"

    @property
    def label(self) -> str:
        """The paper's row name: "CAA (loc.)", "CAA (all layers)"."""
        return f"{LABELS.get(self.method, self.method)} ({'loc.' if self.scope == 'local' else 'all layers'})"

    @property
    def calibrated(self) -> bool:
        """Prompt switching has a fixed grid (steps switched); every other method's grid is calibrated."""
        return self.method != SWITCH

    @classmethod
    def parse(cls, name: str) -> Variant:
        method, sep, scope = name.rpartition("-")
        if not sep or scope not in SCOPES or method not in method_names():
            raise TadaError(
                f"unknown variant {name!r}; a variant is METHOD-global or METHOD-local with METHOD one of "
                f"{', '.join(method_names())}"
            )
        return cls(method, scope)


def parse_variants(methods: str, scopes: str = "global,local") -> list[Variant]:
    """``--methods all`` or a comma list of methods (each in every scope of ``scopes``) or of variants."""
    scope_list = [s.strip() for s in scopes.split(",") if s.strip()]
    for scope in scope_list:
        if scope not in SCOPES:
            raise TadaError(f"unknown scope {scope!r}; choose global, local or both")
    names = method_names() if methods.strip() == "all" else [m.strip() for m in methods.split(",") if m.strip()]
    if not names:
        raise TadaError("--methods names no method")
    variants: list[Variant] = []
    for name in names:
        if name in method_names():
            variants += [Variant(name, s) for s in scope_list]
        else:
            variants.append(Variant.parse(name))
    variants = list(dict.fromkeys(variants))
    if not any(v.method == SWITCH for v in variants):
        # prompt switching sets every concept's cutoff (as in the paper): it is always measured
        variants = [Variant(SWITCH, s) for s in scope_list] + variants
    return variants


def parse_concepts(text: str) -> list[str]:
    names = list(CONCEPTS) if text.strip() == "all" else [c.strip() for c in text.split(",") if c.strip()]
    unknown = [c for c in names if c not in CONCEPTS]
    if unknown or not names:
        raise TadaError(f"unknown concept {', '.join(unknown) or '(none)'}; choose from {', '.join(CONCEPTS)} or all")
    return list(dict.fromkeys(names))


@dataclass
class BenchSettings:
    """Everything that decides a run's numbers (stored with the results; a resume must match)."""

    model: str
    concepts: list[str]
    variants: list[str]
    prompts: int = 16
    seeds: int = 2
    points: int = 8  # alphas per direction
    seconds: float | None = None
    steps: int | None = None
    guidance: float | None = None
    batch: int = 16  # clips per denoising batch
    tuning_prompts: int = 6
    fit_pairs: int = 50
    localise_pairs: int = 8
    top: int = 2
    overshoot: float = 1.25  # the grid reaches this multiple of the alpha that meets the cutoff
    metrics: list[str] = field(default_factory=lambda: ["probe"])
    seed_offset: int = 0
    tuning_seed: int = 100_000
    reference_clips: int = 512  # held-out corpus clips the quality reference is made of (0: no quality)
    scorer: str = "shipped"
    sae: str | None = None
    impact: str | None = None
    dtype: str = "float32"  # weights dtype of the model under test

    def check(self) -> None:
        from .. import validate

        validate.integer("prompts", self.prompts, 1, 100, "test prompts")
        validate.integer("seeds", self.seeds, 1, 1000, "noise seeds per prompt")
        validate.integer("points", self.points, 2, 1000, "alphas per direction")
        validate.integer("batch", self.batch, 1, 100_000, "clips per denoising batch")
        validate.integer("tuning_prompts", self.tuning_prompts, 1, 20, "tuning prompts")
        validate.integer("fit_pairs", self.fit_pairs, 1, 50, "fitting prompt pairs")
        validate.integer("top", self.top, 1, 1000, "localised layers")
        validate.integer("reference_clips", self.reference_clips, 0, 1_000_000, "held-out corpus clips")
        if 0 < self.reference_clips <= 16:
            raise TadaError(
                "--reference-clips needs more than 16 clips (the quality reference keeps 16 components), or 0"
            )
        if not self.overshoot >= 1.0:
            raise TadaError(f"--overshoot must be at least 1 (the grid must reach the cutoff); got {self.overshoot}")
        for name in self.variants:
            Variant.parse(name)
        parse_concepts(",".join(self.concepts))
        if "probe" not in self.metrics:
            raise TadaError("the offline scorer's probe alignment is always measured; keep 'probe' in the metrics")

    def as_dict(self) -> dict[str, Any]:
        """The settings a run records. ``dtype`` came later than the first runs, which all used float32:
        it is recorded only when it is something else, so those runs still resume."""
        out = asdict(self)
        if out["dtype"] == "float32":
            del out["dtype"]
        return out

    @property
    def variant_list(self) -> list[Variant]:
        return [Variant.parse(v) for v in self.variants]

    @property
    def seed_list(self) -> list[int]:
        return [self.seed_offset + k for k in range(self.seeds)]

    @property
    def prompts_per_chunk(self) -> int:
        """Test prompts per unit: one denoising batch holds a chunk's prompts times the seeds."""
        return max(1, self.batch // self.seeds)

    def prompt_chunks(self) -> list[tuple[int, int]]:
        step = self.prompts_per_chunk
        return [(i, min(i + step, self.prompts)) for i in range(0, self.prompts, step)]

    def generation(self) -> dict[str, Any]:
        return {"seconds": self.seconds, "steps": self.steps, "guidance": self.guidance}


@dataclass
class Unit:
    """One piece of work: its kind, a key unique in the run, and what the worker needs to do it."""

    kind: str
    key: str
    concept: str
    variant: str | None = None
    payload: dict[str, Any] = field(default_factory=dict)


def switch_grid(points: int, steps: int) -> list[float]:
    """Prompt switching's alphas in one direction: fractions of the final steps switched, ``k/steps``.

    ``points`` evenly spaced ones (at most ``steps``), always ending at the full swap.
    """
    ks = np.unique(np.round(np.linspace(steps / points, steps, min(points, steps))).astype(int))
    return [float(k) / steps for k in ks if k > 0]


def linear_grid(alpha_max: float, points: int) -> list[float]:
    """``points`` evenly spaced alphas from ``alpha_max / points`` to ``alpha_max`` (sign kept)."""
    return [float(alpha_max) * (i + 1) / points for i in range(points)]


def signed(grid: Sequence[float], direction: str) -> list[float]:
    sign = 1.0 if direction == "pos" else -1.0
    return [sign * abs(float(a)) for a in grid]
