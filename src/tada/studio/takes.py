"""The studio's engine, without a user interface: sliders made of steering artifacts, takes rendered
from them, their scores, a history, grids of alphas rendered ahead, and takes exported as a WAV and
a JSON that ``tada steer --replay`` turns back into the same clip.

A *take* is one prompt and seed rendered twice: unsteered (the reference) and with every slider at
its alpha (the steered clip), from the same noise. The reference depends only on the prompt, seed
and generation settings, so moving a slider re-renders only the steered clip.
"""

from __future__ import annotations

import json
import time
from collections import OrderedDict
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from .. import __version__, validate
from ..errors import ArtifactError, TadaError
from ..files import write_text, write_wav

TAKE_FORMAT = "tada/take"
TAKE_VERSION = "1"
REFERENCES_KEPT = 16  # unsteered clips kept in memory, newest first
GRID_KEPT = 4  # grids of alphas kept in memory


@dataclass(frozen=True)
class SliderSetting:
    """One slider of a take: the artifact file and its strength."""

    path: str
    alpha: float


@dataclass(frozen=True)
class TakeSettings:
    """Everything that decides a take's audio; saved beside an exported take for ``tada steer --replay``."""

    model: str
    prompt: str
    seed: int = 0
    seconds: float | None = None
    steps: int | None = None
    guidance: float | None = None
    sliders: tuple[SliderSetting, ...] = ()

    def check(self) -> None:
        if not isinstance(self.prompt, str) or not self.prompt.strip():
            raise TadaError("the prompt is empty: describe the music, e.g. 'lofi hip hop beat, with piano'")
        validate.generation(self.seconds, self.steps, self.guidance, self.seed)
        for s in self.sliders:
            if not np.isfinite(s.alpha):
                raise TadaError(f"slider {Path(s.path).name}: alpha must be a finite number, got {s.alpha}")

    @property
    def reference_key(self) -> tuple:
        """What the unsteered clip depends on."""
        return (self.model, self.prompt, self.seed, self.seconds, self.steps, self.guidance)

    def with_alpha(self, path: str, alpha: float) -> TakeSettings:
        """These settings with one slider moved (added if it is not there)."""
        sliders, found = [], False
        for s in self.sliders:  # the others keep their order (the order artifacts are applied in)
            if s.path != path:
                sliders.append(s)
            elif not found:
                found = True
                if alpha != 0:
                    sliders.append(SliderSetting(path, float(alpha)))
        if not found and alpha != 0:
            sliders.append(SliderSetting(path, float(alpha)))
        return TakeSettings(self.model, self.prompt, self.seed, self.seconds, self.steps, self.guidance, tuple(sliders))

    # -- the file ---------------------------------------------------------------------
    def to_json(self) -> dict[str, Any]:
        record = asdict(self)
        record["sliders"] = [asdict(s) for s in self.sliders]
        return {"format": TAKE_FORMAT, "format_version": TAKE_VERSION, "tada_version": __version__, **record}

    @classmethod
    def from_json(cls, record: dict[str, Any], where: str = "take") -> TakeSettings:
        if not isinstance(record, dict) or record.get("format") != TAKE_FORMAT:
            raise TadaError(f"{where} is not a tada take (no format {TAKE_FORMAT!r})")
        if record.get("format_version") != TAKE_VERSION:
            raise TadaError(f"{where} is a take of format version {record.get('format_version')!r}; this tada reads 1")
        try:
            sliders = tuple(SliderSetting(str(s["path"]), float(s["alpha"])) for s in record.get("sliders", []))
            settings = cls(
                model=str(record["model"]),
                prompt=str(record["prompt"]),
                seed=int(record.get("seed", 0)),
                seconds=None if record.get("seconds") is None else float(record["seconds"]),
                steps=None if record.get("steps") is None else int(record["steps"]),
                guidance=None if record.get("guidance") is None else float(record["guidance"]),
                sliders=sliders,
            )
        except (KeyError, TypeError, ValueError) as exc:
            raise TadaError(f"{where} is not a readable take ({type(exc).__name__}: {exc})") from None
        settings.check()
        return settings

    @classmethod
    def load(cls, path: str | Path) -> TakeSettings:
        path = Path(path)
        try:
            record = json.loads(path.read_text())
        except OSError as exc:
            raise TadaError(f"cannot read the take {path}: {exc.strerror or exc}") from None
        except json.JSONDecodeError as exc:
            raise TadaError(f"{path} is not JSON ({exc.msg}, line {exc.lineno})") from None
        return cls.from_json(record, str(path))


@dataclass
class Take:
    """A rendered take: both clips ``(channels, frames)``, and how the steered one scores."""

    settings: TakeSettings
    reference: np.ndarray
    steered: np.ndarray
    sample_rate: int
    probes: dict[str, dict[str, float]] = field(default_factory=dict)  # probe text -> {reference, steered}
    preservation: float = 0.0  # scorer distance of the steered clip to the reference
    render_seconds: float = 0.0  # generating the steered clip (and scoring, when render scored it)
    scored: bool = False

    def export(self, directory: str | Path, name: str = "take") -> dict[str, Path]:
        """``NAME.wav`` (steered), ``NAME-reference.wav`` and ``NAME.json`` (settings and scores)."""
        directory = Path(directory)
        record = self.settings.to_json()
        record["scores"] = {"probes": self.probes, "preservation": self.preservation}
        return {
            "steered": write_wav(directory / f"{name}.wav", self.steered.T, self.sample_rate),
            "reference": write_wav(directory / f"{name}-reference.wav", self.reference.T, self.sample_rate),
            "settings": write_text(directory / f"{name}.json", json.dumps(record, indent=1) + "\n"),
        }


@dataclass
class Slider:
    """An artifact the studio can steer with, and the range its slider spans."""

    path: str
    artifact: Any
    low: float
    high: float

    @property
    def label(self) -> str:
        """The file's name, its method and scope, and its concept: "piano-caa (caa, local; piano)"."""
        scope = getattr(self.artifact, "scope", None)
        concept = self.artifact.concept or "custom"
        return f"{Path(self.path).stem} ({self.artifact.method}{', ' + scope if scope else ''}; {concept})"

    @property
    def probe(self) -> str | None:
        decorations = getattr(self.artifact, "decorations", None)
        return getattr(decorations, "probe", None) or None


def default_range(artifact: Any) -> tuple[float, float]:
    """A slider's span: the method's own limits, capped at +-10 (CAA's unit vectors and the trained
    sliders steer audibly well inside it; prompt switching spans its full -1 .. 1)."""
    from ..methods import get_method

    low, high = get_method(artifact.method).alpha_range
    return max(low, -10.0), min(high, 10.0)


class Studio:
    """Renders takes on one model; keeps recent references, grids and the history of takes."""

    def __init__(
        self, model_id: str, adapter: Any = None, scorer: Any = None, dtype: str = "float32", device: str = "cpu"
    ):
        from ..adapters import load_model

        self.model_id = model_id
        self.adapter = adapter if adapter is not None else load_model(model_id, dtype=dtype, device=device)
        self._scorer = scorer
        self.sliders: dict[str, Slider] = {}
        self.problems: list[str] = []  # artifacts a folder held that cannot steer this model, one line each
        self.history: list[Take] = []
        self._references: OrderedDict[tuple, np.ndarray] = OrderedDict()
        self._grids: OrderedDict[tuple, dict[float, Take]] = OrderedDict()

    @property
    def scorer(self) -> Any:
        if self._scorer is None:
            from ..scorer import Scorer

            self._scorer = Scorer.load()
        return self._scorer

    # -- sliders ------------------------------------------------------------------------
    def add_artifact(self, path: str | Path, low: float | None = None, high: float | None = None) -> Slider:
        """A slider from an artifact file; one clear line (``TadaError``) when it cannot steer this model."""
        from ..methods import load_artifact

        path = str(Path(path))
        artifact = load_artifact(path)
        try:
            artifact.check_model(self.adapter)
        except ArtifactError as exc:
            raise ArtifactError(f"{Path(path).name}: {exc}") from None
        d_low, d_high = default_range(artifact)
        low, high = d_low if low is None else float(low), d_high if high is None else float(high)
        if not low < high:
            raise TadaError(f"{Path(path).name}: the slider's range must run from low to high, got {low} .. {high}")
        slider = Slider(path, artifact, low, high)
        self.sliders[path] = slider
        return slider

    def add_folder(self, directory: str | Path) -> list[Slider]:
        """Every artifact under ``directory`` that steers this model; the others go to :attr:`problems`."""
        directory = Path(directory)
        if not directory.is_dir():
            raise TadaError(f"no artifact folder at {directory}")
        added = []
        for path in sorted(directory.rglob("*.safetensors")):
            try:
                added.append(self.add_artifact(path))
            except TadaError as exc:
                self.problems.append(str(exc))
        return added

    def slider(self, path: str) -> Slider:
        """The slider of an artifact added before; one clear line when there is none."""
        if path not in self.sliders:
            raise TadaError(f"no slider for {path}: add the artifact first (unknown artifact)")
        return self.sliders[path]

    # -- rendering ----------------------------------------------------------------------
    def _generate(self, settings: TakeSettings) -> tuple[np.ndarray, int]:
        audio = self.adapter.generate(
            settings.prompt,
            seconds=settings.seconds,
            steps=settings.steps,
            guidance=settings.guidance,
            seed=settings.seed,
        )
        return audio.samples[0], audio.sample_rate

    def reference(self, settings: TakeSettings) -> np.ndarray:
        """The unsteered clip of these settings (rendered once, then kept)."""
        key = settings.reference_key
        if key not in self._references:
            self._references[key] = self._generate(TakeSettings(*key))[0]
            while len(self._references) > REFERENCES_KEPT:
                self._references.popitem(last=False)
        self._references.move_to_end(key)
        return self._references[key]

    def _items(self, settings: TakeSettings) -> list[tuple[Any, float]]:
        chosen = [(self.slider(s.path), float(s.alpha)) for s in settings.sliders]  # every path must be known
        return [(slider.artifact, alpha) for slider, alpha in chosen if alpha != 0]

    def render(self, settings: TakeSettings, score: bool = True, remember: bool = True) -> Take:
        """Both clips of a take and, with ``score``, each slider's probe score on both and the
        preservation distance. A take with every slider at 0 is its reference, bitwise."""
        from ..methods import steering

        settings.check()
        if settings.model != self.model_id:
            raise TadaError(f"this take is for {settings.model}; the studio runs {self.model_id}")
        items = self._items(settings)
        start = time.perf_counter()
        reference = self.reference(settings)
        if items:
            with steering(self.adapter, items):
                steered, _ = self._generate(settings)
        else:
            steered = reference.copy()
        take = Take(settings, reference, steered, self.adapter.sample_rate)
        if score:
            self.score(take)
        take.render_seconds = time.perf_counter() - start
        if remember:
            self.history.append(take)
        return take

    def score(self, take: Take) -> Take:
        """Fill in ``take``'s preservation distance and each slider's probe scores (once)."""
        if take.scored:
            return take
        sr = take.sample_rate
        probes = [p for p in dict.fromkeys(self.sliders[s.path].probe for s in take.settings.sliders) if p]
        feats = self.scorer.clip_features([take.reference, take.steered], sr)
        take.preservation = float(self.scorer.feature_distance(feats[0], feats[1]))
        if probes:
            similarity = self.scorer.embed_features(feats) @ self.scorer.embed_text(probes).T
            take.probes = {
                p: {"reference": float(similarity[0, i]), "steered": float(similarity[1, i])}
                for i, p in enumerate(probes)
            }
        take.scored = True
        return take

    # -- grids: alphas rendered ahead, for instant scrubbing -------------------------------
    def render_grid(
        self, settings: TakeSettings, path: str, alphas: list[float], progress: Any = None
    ) -> dict[float, Take]:
        """The take at each alpha of one slider (the others as in ``settings``), kept for :meth:`from_grid`."""
        settings.check()  # before the first of many renders
        self.slider(path)
        if not alphas:
            raise TadaError("a grid needs at least one alpha")
        key = (settings.with_alpha(path, 0.0), path)
        grid = self._grids.get(key, {})
        for alpha in alphas:
            if float(alpha) not in grid:
                grid[float(alpha)] = self.render(settings.with_alpha(path, float(alpha)), remember=False)
            if progress is not None:
                progress(alpha)
        self._grids[key] = grid
        self._grids.move_to_end(key)
        while len(self._grids) > GRID_KEPT:
            self._grids.popitem(last=False)
        return grid

    def from_grid(self, settings: TakeSettings, path: str, alpha: float) -> Take | None:
        """The pre-rendered take nearest ``alpha`` on a grid of these settings, or None without one."""
        grid = self._grids.get((settings.with_alpha(path, 0.0), path))
        if not grid:
            return None
        return grid[min(grid, key=lambda a: abs(a - float(alpha)))]

    # -- history ------------------------------------------------------------------------
    def restore(self, index: int) -> TakeSettings:
        """The settings of take ``index`` of the history (0 is the first)."""
        if not 0 <= index < len(self.history):
            raise TadaError(f"no take {index} in the history ({len(self.history)} takes)")
        return self.history[index].settings
