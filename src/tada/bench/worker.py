"""Doing one unit of a benchmark run: the same code in the driver's process and in a Ray actor.

A :class:`Worker` loads the model, the scorer and the alignment plug-ins once, then runs
units (see :mod:`tada.bench.plan`) and returns their results; it never writes to the results
store (the driver does, so one writer keeps the SQLite file consistent). What it does write
are files other units read: fitted artifacts, impact tables and each concept's alpha-0 audio,
under the run directory, each atomically.
"""

from __future__ import annotations

import os
import socket
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ..concepts import CONCEPTS, concept_pairs, twin_pairs
from ..errors import TadaError
from ..files import write_safetensors, write_wav
from .metrics import ScorerAlignment
from .plan import DIRECTIONS, START_ALPHA, BenchSettings, Unit, Variant, linear_grid, signed, switch_grid
from .prompts import test_prompts, tuning_prompts
from .store import ClipRow

MAX_PROBES = 10
BASELINE_FORMAT = "tada/bench-baseline"


@dataclass
class UnitResult:
    key: str
    kind: str
    concept: str
    variant: str | None
    result: dict[str, Any]
    clips: list[ClipRow] = field(default_factory=list)
    seconds: float = 0.0
    worker: str = ""


def artifact_path(out: Path, concept: str, variant: str) -> Path:
    return out / "artifacts" / concept / f"{variant}.safetensors"


def impact_path(out: Path, concept: str) -> Path:
    return out / "impact" / f"{concept}.safetensors"


def baseline_path(out: Path, concept: str, chunk: tuple[int, int]) -> Path:
    return out / "work" / "baseline" / concept / f"prompts-{chunk[0]:03d}-{chunk[1]:03d}.safetensors"


def example_path(out: Path, concept: str, variant: str, alpha: float) -> Path:
    return out / "audio" / concept / variant / f"alpha{alpha:+.4g}.wav"


class Worker:
    """Runs units for one benchmark run directory; loads what it needs on first use."""

    def __init__(
        self,
        settings: BenchSettings | dict[str, Any],
        out: str | Path,
        threads: int | None = None,
        clap: str | None = None,
        muq: str | None = None,
        device: str = "cpu",
    ):
        self.settings = settings if isinstance(settings, BenchSettings) else BenchSettings(**settings)
        self.out = Path(out)
        self.device = device
        self.clap, self.muq = clap, muq
        if threads:
            torch.set_num_threads(int(threads))
        self.name = f"{socket.gethostname()}:{os.getpid()}"
        self._model: Any = None
        self._scorer: Any = None
        self._alignments: list[Any] | None = None
        self._tuning_cache: dict[str, tuple[list[str], list[int], list[torch.Tensor]]] = {}

    # -- what it loads ----------------------------------------------------------------
    @property
    def model(self) -> Any:
        if self._model is None:
            from ..adapters import load_model

            self._model = load_model(self.settings.model, dtype=self.settings.dtype, device=self.device)
        return self._model

    @property
    def scorer(self) -> Any:
        if self._scorer is None:
            from ..scorer import Scorer

            self._scorer = Scorer.load(None if self.settings.scorer == "shipped" else self.settings.scorer, self.device)
        return self._scorer

    @property
    def alignments(self) -> list[Any]:
        if self._alignments is None:
            from .metrics import alignment_plugins

            self._alignments = alignment_plugins(self.settings.metrics, self.scorer, clap=self.clap, muq=self.muq)
        return self._alignments

    def generation(self) -> dict[str, Any]:
        return self.settings.generation()

    def generate(self, prompts: Sequence[str], seeds: Sequence[int]) -> np.ndarray:
        """Clips ``(n, channels, frames)``, generated ``batch`` at a time."""
        batch, out = self.settings.batch, []
        for i in range(0, len(prompts), batch):
            result = self.model.generate(
                list(prompts[i : i + batch]), seed=list(seeds[i : i + batch]), **self.generation()
            )
            out.append(result.samples)
        return np.concatenate(out)

    # -- dispatch -----------------------------------------------------------------------
    def run(self, unit: Unit) -> UnitResult:
        start = time.perf_counter()
        handler = getattr(self, f"_{unit.kind}", None)
        if handler is None:
            raise TadaError(f"unknown benchmark unit kind {unit.kind!r}")
        result, clips = handler(unit)
        return UnitResult(
            unit.key, unit.kind, unit.concept, unit.variant, result, clips, time.perf_counter() - start, self.name
        )

    # -- quality reference ---------------------------------------------------------------------
    def _reference(self, unit: Unit) -> tuple[dict[str, Any], list[ClipRow]]:
        from .metrics import QualityReference

        path = self.out / "quality-reference.safetensors"
        if not path.is_file():
            seconds = self.model.sampler_settings(self.settings.seconds, None, None)["seconds"]
            QualityReference.from_heldout(self.scorer, n=self.settings.reference_clips, seconds=seconds).save(path)
        return {"reference": path.name, "clips": self.settings.reference_clips}, []

    # -- localise -------------------------------------------------------------------------
    def _localise(self, unit: Unit) -> tuple[dict[str, Any], list[ClipRow]]:
        from ..localize import localize

        concept = CONCEPTS[unit.concept]
        path = impact_path(self.out, unit.concept)
        if not path.is_file():
            localize(
                self.model,
                twin_pairs(unit.concept, self.settings.localise_pairs),
                concept.probe,
                self.scorer,
                concept=unit.concept,
                work_dir=self.out / "work" / "localise" / unit.concept,
                out=path,
                progress=False,
                **self.generation(),
            )
        return {"table": str(path.relative_to(self.out))}, []

    # -- fit --------------------------------------------------------------------------------
    def _fit(self, unit: Unit) -> tuple[dict[str, Any], list[ClipRow]]:
        from ..methods import FitRequest, get_method, load_artifact

        variant = Variant.parse(unit.variant or "")
        path = artifact_path(self.out, unit.concept, variant.name)
        sites = unit.payload.get("sites")
        if not path.is_file():
            options: dict[str, Any] = {}
            if variant.method == "sae":
                if not self.settings.sae:
                    raise TadaError("the sae variants need trained SAEs: give --sae DIR (written by `tada sae train`)")
                options["sae"] = self.settings.sae
            n = self.settings.fit_pairs
            request = FitRequest(
                CONCEPTS[unit.concept],
                concept_pairs(unit.concept, n),
                {"source": "preset", "concept": unit.concept, "n_pairs": n},
                sites=sites,
                work_dir=self.out / "work" / "fit" / unit.concept / variant.name,
                out=path,
                progress=False,
                options=options,
                **self.generation(),
            )
            get_method(variant.method).fit(self.model, request)
        artifact = load_artifact(path)
        return {"artifact": str(path.relative_to(self.out)), "sites": list(artifact.sites)}, []

    def artifact(self, concept: str, variant: str) -> Any:
        from ..methods import load_artifact

        path = artifact_path(self.out, concept, variant)
        if not path.is_file():
            raise TadaError(f"{path} is missing: the fit stage of this run has not finished")
        return load_artifact(path)

    # -- distances on the tuning prompts ---------------------------------------------------------
    def _tuning(self, concept: str) -> tuple[list[str], list[int], list[torch.Tensor]]:
        """The tuning prompts in the concept's neutral wrap, their seeds, and their unsteered clips'
        scorer features (generated once per concept and worker: the target and every calibration
        of the concept measure against the same clips)."""
        if concept not in self._tuning_cache:
            wrap = CONCEPTS[concept]
            prompts = [wrap.neutral_prompt(p) for p in tuning_prompts(self.settings.tuning_prompts)]
            seeds = [self.settings.tuning_seed + i for i in range(len(prompts))]
            feats = self.scorer.clip_features(list(self.generate(prompts, seeds)), self.model.sample_rate)
            self._tuning_cache[concept] = (prompts, seeds, feats)
        return self._tuning_cache[concept]

    def _distance(
        self, artifact: Any, alpha: float, prompts: list[str], seeds: list[int], plain: list[torch.Tensor]
    ) -> float:
        """Mean preservation distance of the steered tuning clips to the plain ones (inf if the audio blew up)."""
        try:
            with artifact.apply(self.model, alpha):
                steered = self.generate(prompts, seeds)
        except TadaError as exc:
            if "non-finite" in str(exc):
                return float("inf")
            raise
        feats = self.scorer.clip_features(list(steered), self.model.sample_rate)
        return float(np.mean([self.scorer.feature_distance(f, p) for f, p in zip(feats, plain)]))

    def _target(self, unit: Unit) -> tuple[dict[str, Any], list[ClipRow]]:
        """The cutoff on the tuning prompts: how far the full prompt swap moves the audio, per direction
        (the smaller over prompt switching's global and local variants, as in the paper)."""
        prompts, seeds, plain = self._tuning(unit.concept)
        result: dict[str, Any] = {}
        for direction in DIRECTIONS:
            sign = 1.0 if direction == "pos" else -1.0
            per_variant = {
                v: self._distance(self.artifact(unit.concept, v), sign, prompts, seeds, plain)
                for v in unit.payload["switch"]
            }
            result[direction] = {"target": min(per_variant.values()), "by_variant": per_variant}
        return result, []

    def _calibrate(self, unit: Unit) -> tuple[dict[str, Any], list[ClipRow]]:
        """Each direction's alpha grid: search the alpha whose tuning clips move as far as the target,
        then ``points`` evenly spaced alphas up to ``overshoot`` times it (inside the method's range)."""
        from ..calibration import alpha_at_distance
        from ..methods import get_method

        variant = Variant.parse(unit.variant or "")
        steps = self.model.sampler_settings(None, self.settings.steps, None)["steps"]
        if not variant.calibrated:
            grid = switch_grid(self.settings.points, int(steps))
            return {d: {"grid": signed(grid, d), "reached": True, "probes": []} for d in DIRECTIONS}, []
        artifact = self.artifact(unit.concept, variant.name)
        low, high = get_method(variant.method).alpha_range
        prompts, seeds, plain = self._tuning(unit.concept)
        result: dict[str, Any] = {}
        for direction in DIRECTIONS:
            target = float(unit.payload["targets"][direction])
            limit = high if direction == "pos" else -low
            sign = 1.0 if direction == "pos" else -1.0
            probes: list[tuple[float, float]] = []

            def probe(a: float, sign: float = sign, probes: list = probes) -> float:
                d = self._distance(artifact, sign * a, prompts, seeds, plain)
                probes.append((a, d))
                return d

            a = min(START_ALPHA.get(variant.method, 1.0), limit)
            d = probe(a)
            if d >= target:  # already past: halve until below
                while d >= target and len(probes) < MAX_PROBES:
                    a /= 2
                    d = probe(a)
            else:  # double until past (or the method's range ends)
                while d < target and a < limit and len(probes) < MAX_PROBES:
                    a = min(2 * a, limit)
                    d = probe(a)
            finite = sorted((p for p in probes if np.isfinite(p[1])), key=lambda p: p[0])
            if not finite:
                raise TadaError(
                    f"{variant.name} on {unit.concept}: every probed strength gave non-finite audio (smallest {a:g})"
                )
            alphas, distances = [p[0] for p in finite], [p[1] for p in finite]
            # a probe that blew up lies past the target: interpolate up to the last finite one
            star, reached = alpha_at_distance(alphas, distances, target)
            alpha_max = min(star * self.settings.overshoot, limit) if reached else max(alphas)
            result[direction] = {
                "target": target,
                "probes": probes,
                "alpha": star,
                "reached": bool(reached),
                "grid": signed(linear_grid(alpha_max, self.settings.points), direction),
            }
        return result, []

    # -- clips on the test prompts --------------------------------------------------------------------
    def _chunk(self, unit: Unit) -> tuple[list[str], list[int], list[tuple[int, int]]]:
        """The chunk's prompts in the concept's neutral wrap, one per (prompt, seed), and their indices."""
        lo, hi = unit.payload["chunk"]
        wrap = CONCEPTS[unit.concept]
        bases = test_prompts(self.settings.prompts)[lo:hi]
        index = [(p, s) for p in range(lo, hi) for s in self.settings.seed_list]
        prompts = [wrap.neutral_prompt(bases[p - lo]) for p, _ in index]
        return prompts, [s for _, s in index], index

    def _score(
        self,
        clips: np.ndarray,
        plain: list[torch.Tensor] | None,
        concept: str,
        variant: str,
        alpha: float,
        index: list[tuple[int, int]],
    ) -> list[ClipRow]:
        """Every metric of every clip; the scorer transforms each clip once (``plain``: the alpha-0
        clips' scorer features, in the same order, for the preservation distance)."""
        sr = self.model.sample_rate
        probe_text = CONCEPTS[concept].probe
        feats = self.scorer.clip_features(list(clips), sr)
        embeddings = self.scorer.embed_features(feats)
        aligned = {}
        for metric in self.alignments:
            if isinstance(metric, ScorerAlignment) and metric.scorer is self.scorer:  # embeddings at hand
                aligned[metric.name] = metric.from_embeddings(embeddings, probe_text)
            else:
                aligned[metric.name] = np.asarray(metric.score(list(clips), sr, probe_text), dtype=float)
        rows = []
        for i, (p, s) in enumerate(index):
            pres = 0.0 if plain is None else self.scorer.feature_distance(feats[i], plain[i])
            values = {k: float(v[i]) for k, v in aligned.items()}
            rows.append(ClipRow(variant, concept, float(alpha), p, s, pres, embeddings[i].numpy(), values))
        return rows

    def _save_examples(
        self, unit: Unit, clips: np.ndarray, index: list[tuple[int, int]], variant: str, alpha: float
    ) -> None:
        example = (0, self.settings.seed_list[0])
        if example in index:
            clip = clips[index.index(example)]
            # for listening in the report: 16-bit PCM, half the bytes a run commits (the scores use the float clips)
            path = example_path(self.out, unit.concept, variant, alpha)
            write_wav(path, clip.T, self.model.sample_rate, subtype="PCM_16")

    def _baseline(self, unit: Unit) -> tuple[dict[str, Any], list[ClipRow]]:
        prompts, seeds, index = self._chunk(unit)
        clips = self._write_baseline(unit, prompts, seeds)
        self._save_examples(unit, clips, index, "baseline", 0.0)
        return {"clips": len(clips)}, self._score(clips, None, unit.concept, "baseline", 0.0, index)

    def _write_baseline(self, unit: Unit, prompts: list[str], seeds: list[int]) -> np.ndarray:
        """Generate a chunk's alpha-0 clips and keep them (under ``work/``, which git does not carry)."""
        clips = self.generate(prompts, seeds)
        write_safetensors(
            baseline_path(self.out, unit.concept, tuple(unit.payload["chunk"])),
            {"audio": torch.from_numpy(np.ascontiguousarray(clips))},
            {
                "format": BASELINE_FORMAT,
                "format_version": "1",
                "concept": unit.concept,
                "sample_rate": str(self.model.sample_rate),
            },
        )
        return clips

    def _plain(self, unit: Unit) -> np.ndarray:
        """A chunk's alpha-0 clips: from the baseline stage's file, or, where a fresh clone of the
        run lacks it, generated again from the same prompts and seeds."""
        from ..artifacts import read_artifact

        path = baseline_path(self.out, unit.concept, tuple(unit.payload["chunk"]))
        if not path.is_file():
            prompts, seeds, _ = self._chunk(unit)
            return self._write_baseline(unit, prompts, seeds)
        return read_artifact(
            path,
            BASELINE_FORMAT,
            "1",
            ("concept",),
            "benchmark baseline",
            lambda tensors, meta: tensors["audio"].numpy(),
        )

    def _sweep(self, unit: Unit) -> tuple[dict[str, Any], list[ClipRow]]:
        variant = unit.variant or ""
        artifact = self.artifact(unit.concept, variant)
        prompts, seeds, index = self._chunk(unit)
        plain = self.scorer.clip_features(list(self._plain(unit)), self.model.sample_rate)
        rows: list[ClipRow] = []
        blown: list[float] = []
        for alpha in unit.payload["alphas"]:
            try:
                with artifact.apply(self.model, alpha):
                    clips = self.generate(prompts, seeds)
            except TadaError as exc:
                if "non-finite" not in str(exc):
                    raise
                blown.append(alpha)
                continue
            rows += self._score(clips, plain, unit.concept, variant, alpha, index)
            if alpha in unit.payload.get("examples", ()):
                self._save_examples(unit, clips, index, variant, alpha)
        return {"alphas": list(unit.payload["alphas"]), "non_finite": blown}, rows


__all__ = ["UnitResult", "Worker", "artifact_path", "baseline_path", "example_path", "impact_path"]
