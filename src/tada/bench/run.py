"""The driver of ``tada bench``: plans each stage's units, hands them to an executor, stores results.

Every finished unit is written to ``DIR/bench.sqlite`` at once, so a killed run loses at most the
units in flight, and a rerun with the same settings skips what is stored. A stage's units only
depend on earlier stages, so each stage may run its units in parallel (``--executor ray``).
"""

from __future__ import annotations

import shutil
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from tqdm import tqdm

from ..errors import TadaError
from .plan import DIRECTIONS, SWITCH, BenchSettings, Unit, Variant
from .store import BenchStore
from .worker import UnitResult, artifact_path, impact_path

STAGES = ("reference", "localise", "fit", "target", "calibrate", "baseline", "sweep")


def store_path(out: Path) -> Path:
    return Path(out) / "bench.sqlite"


class BenchRun:
    """One run directory: its settings, its store, and the units each stage still needs."""

    def __init__(self, settings: BenchSettings, out: str | Path):
        settings.check()
        self.settings = settings
        self.out = Path(out)
        self.out.mkdir(parents=True, exist_ok=True)
        self.store = BenchStore(store_path(self.out), settings.as_dict())
        self.variants = settings.variant_list
        self.switch = [v.name for v in self.variants if v.method == SWITCH]

    def close(self) -> None:
        self.store.close()

    # -- seeding from existing files -----------------------------------------------------------
    def adopt_impact_tables(self, directory: str | Path) -> list[str]:
        """Copy ``{concept}.safetensors`` impact tables (or ``tables/{concept}.safetensors``, as
        ``tada localize --out`` writes them) into the run, for the concepts that lack one."""
        directory, taken = Path(directory), []
        for concept in self.settings.concepts:
            target = impact_path(self.out, concept)
            if target.is_file():
                continue
            for source in (directory / f"{concept}.safetensors", directory / "tables" / f"{concept}.safetensors"):
                if source.is_file():
                    target.parent.mkdir(parents=True, exist_ok=True)
                    shutil.copyfile(source, target)
                    taken.append(concept)
                    break
        return taken

    def adopt_artifacts(self, directory: str | Path) -> list[str]:
        """Copy fitted artifacts found under ``directory`` (any layout: each file's metadata says its
        method, concept and scope) into the run, for the variants that lack one; returns what was taken."""
        from ..methods import load_artifact

        taken = []
        for path in sorted(Path(directory).rglob("*.safetensors")):
            try:
                artifact = load_artifact(path)
            except TadaError:
                continue
            scope = "local" if artifact.scope in ("localised", "local") else "global"
            variant = f"{artifact.method}-{scope}"
            concept = artifact.concept
            if concept not in self.settings.concepts or variant not in self.settings.variants:
                continue
            target = artifact_path(self.out, concept, variant)
            if not target.is_file():
                target.parent.mkdir(parents=True, exist_ok=True)
                shutil.copyfile(path, target)
                taken.append(f"{concept}/{variant}")
        return taken

    # -- planning -------------------------------------------------------------------------------
    def _result(self, key: str) -> dict[str, Any]:
        result = self.store.result(key)
        if result is None:
            raise TadaError(f"unit {key} has no result yet")
        return result

    def units(self, stage: str) -> list[Unit]:
        s = self.settings
        out: list[Unit] = []
        if stage == "reference":
            if s.reference_clips:
                out = [Unit("reference", "reference", "*")]
        elif stage == "localise":
            if any(v.scope == "local" for v in self.variants):
                out = [Unit("localise", f"localise/{c}", c) for c in s.concepts]
        elif stage == "fit":
            for c in s.concepts:
                sites = None
                for v in self.variants:
                    payload: dict[str, Any] = {}
                    if v.scope == "local":
                        if sites is None:
                            from ..localize import ImpactTable

                            sites = ImpactTable.load(impact_path(self.out, c)).top(s.top, "input")
                        payload["sites"] = sites
                    out.append(Unit("fit", f"fit/{c}/{v.name}", c, v.name, payload))
        elif stage == "target":
            out = [Unit("target", f"target/{c}", c, None, {"switch": self.switch}) for c in s.concepts]
        elif stage == "calibrate":
            for c in s.concepts:
                target = self._result(f"target/{c}")
                targets = {d: target[d]["target"] for d in DIRECTIONS}
                out += [
                    Unit("calibrate", f"calibrate/{c}/{v.name}", c, v.name, {"targets": targets}) for v in self.variants
                ]
        elif stage == "baseline":
            out = [
                Unit("baseline", f"baseline/{c}/{lo}-{hi}", c, None, {"chunk": [lo, hi]})
                for c in s.concepts
                for lo, hi in s.prompt_chunks()
            ]
        elif stage == "sweep":
            for c in s.concepts:
                for v in self.variants:
                    grids = self._result(f"calibrate/{c}/{v.name}")
                    for d in DIRECTIONS:
                        alphas = grids[d]["grid"]
                        examples = [alphas[len(alphas) // 2 - 1], alphas[-1]]
                        out += [
                            Unit(
                                "sweep",
                                f"sweep/{c}/{v.name}/{d}/{lo}-{hi}",
                                c,
                                v.name,
                                {"chunk": [lo, hi], "alphas": alphas, "examples": examples},
                            )
                            for lo, hi in s.prompt_chunks()
                        ]
        else:
            raise TadaError(f"unknown stage {stage!r}")
        return out

    def pending(self, stage: str) -> list[Unit]:
        """The stage's units that have no stored result (a localise unit whose table was adopted
        from ``--impact`` finds it on disk and returns at once)."""
        return [u for u in self.units(stage) if not self.store.done(u.key)]

    def record(self, result: UnitResult) -> None:
        self.store.finish(
            result.key,
            result.kind,
            result.result,
            result.clips,
            variant=result.variant,
            concept=result.concept,
            seconds=result.seconds,
            worker=result.worker,
        )

    def run(self, executor: Any, stages: Sequence[str] = STAGES, progress: bool = True) -> dict[str, int]:
        """Run the pending units of each stage in order; returns how many units each stage ran."""
        ran: dict[str, int] = {}
        for stage in stages:
            units = self.pending(stage)
            ran[stage] = len(units)
            if not units:
                continue
            with tqdm(total=len(units), desc=f"bench {stage}", unit="unit", disable=not progress) as bar:
                for result in executor.run(units):
                    self.record(result)
                    bar.update()
        return ran


def variant_names(variants: Sequence[Variant]) -> list[str]:
    return [v.name for v in variants]
