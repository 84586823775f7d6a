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
from .plan import DIRECTIONS, SWITCH, BenchSettings, Unit
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

    def local_sites(self, concept: str) -> list[str]:
        """The layers a localised variant acts on: the top of the concept's impact table (input patching)."""
        from ..localize import ImpactTable

        return ImpactTable.load(impact_path(self.out, concept)).top(self.settings.top, "input")

    def adopt_artifacts(self, directory: str | Path) -> list[str]:
        """Copy fitted artifacts found under ``directory`` (any layout: each file's metadata says its
        method, concept and scope) into the run, for the variants that lack one, when they were fitted on
        as many base prompts as this run fits on and (localised ones) on the layers this run localises to;
        returns what was taken. Needs the localise stage done (for the layers)."""
        from ..methods import load_artifact

        def layers(sites: list[str]) -> set[str]:
            return {s.rsplit(".", 1)[-1] for s in sites}

        taken = []
        for path in sorted(Path(directory).rglob("*.safetensors")):
            try:
                artifact = load_artifact(path)
            except TadaError:
                continue
            concept = artifact.concept
            if concept not in self.settings.concepts:
                continue
            # methods record their scope; a CAA vector records only its sites: local if they are this
            # run's localised layers
            scope = getattr(artifact, "scope", None) or artifact.settings.get("scope")
            if scope is None:
                scope = "local" if layers(list(artifact.sites)) == layers(self.local_sites(concept)) else "global"
            scope = "local" if scope in ("localised", "local") else "global"
            variant = f"{artifact.method}-{scope}"
            if variant not in self.settings.variants:
                continue
            n_pairs = (getattr(artifact, "prompt_set", None) or {}).get("n_pairs")
            if n_pairs is not None and int(n_pairs) != self.settings.fit_pairs:
                continue
            if scope == "local" and layers(list(artifact.sites)) != layers(self.local_sites(concept)):
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
                        sites = sites or self.local_sites(c)
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

    def run(
        self, executor: Any, stages: Sequence[str] = STAGES, progress: bool = True, adopt: Sequence[Path] = ()
    ) -> dict[str, int]:
        """Run the pending units of each stage in order; returns how many units each stage ran.
        ``adopt``: folders of fitted artifacts to reuse where they match (see :meth:`adopt_artifacts`)."""
        ran: dict[str, int] = {}
        for stage in stages:
            if stage == "fit":
                for folder in adopt:
                    taken = self.adopt_artifacts(folder)
                    if taken and progress:
                        more = ", ..." if len(taken) > 4 else ""
                        tqdm.write(f"artifacts from {folder}: {len(taken)} ({', '.join(taken[:4])}{more})")
            units = self.pending(stage)
            ran[stage] = len(units)
            if not units:
                continue
            with tqdm(total=len(units), desc=f"bench {stage}", unit="unit", disable=not progress) as bar:
                for result in executor.run(units):
                    self.record(result)
                    bar.update()
        return ran
