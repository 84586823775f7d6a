"""The benchmark's results store: one SQLite file, written as each unit of work finishes.

A unit (a fit, a calibration, one concept's alpha-0 clips for a chunk of prompts, or one
variant's clips at a chunk of alphas for a chunk of prompts) is written in one transaction
together with its clips, so a run killed at any moment keeps every finished unit and a rerun
with the same settings skips them. The file records the settings it was made with; a rerun
with settings that would change the results is refused in one line rather than mixed in.

Tables: ``meta`` (the settings), ``units`` (key, kind, variant, concept, JSON result, seconds,
worker), ``clips`` (variant, concept, alpha, prompt, seed, preservation, the scorer embedding
as float16 bytes) and ``alignment`` (one row per clip and alignment metric).

The SQLite file is the run's index; its durable record is the journal beside it: ``units/``
holds ``settings.json`` and one safetensors file per finished unit (``units/<key>.safetensors``,
its clips as tensors, the rest as metadata), written atomically as the unit lands. The journal
is made of small files that never change once written, so it is what a run directory commits
to git: a fresh clone has no ``bench.sqlite``, and opening the store rebuilds it from the
journal, row for row (and forgets any unit the index holds without a file, so it runs again).
"""

from __future__ import annotations

import json
import re
import sqlite3
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import TadaError
from ..files import write_safetensors, write_text

UNIT_FORMAT = "tada/bench-unit"
UNIT_FORMAT_VERSION = "1"
_KEY = re.compile(r"[A-Za-z0-9_.+-]+(/[A-Za-z0-9_.+-]+)*")

SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS units (
    key TEXT PRIMARY KEY, kind TEXT NOT NULL, variant TEXT, concept TEXT,
    result TEXT NOT NULL, seconds REAL NOT NULL, clips INTEGER NOT NULL, worker TEXT, finished REAL NOT NULL
);
CREATE TABLE IF NOT EXISTS clips (
    variant TEXT NOT NULL, concept TEXT NOT NULL, alpha REAL NOT NULL, prompt INTEGER NOT NULL,
    seed INTEGER NOT NULL, preservation REAL NOT NULL, embedding BLOB NOT NULL,
    PRIMARY KEY (variant, concept, alpha, prompt, seed)
);
CREATE TABLE IF NOT EXISTS alignment (
    variant TEXT NOT NULL, concept TEXT NOT NULL, alpha REAL NOT NULL, prompt INTEGER NOT NULL,
    seed INTEGER NOT NULL, metric TEXT NOT NULL, value REAL NOT NULL,
    PRIMARY KEY (variant, concept, alpha, prompt, seed, metric)
);
"""


@dataclass
class ClipRow:
    """One scored clip: which sweep point it is, and what the metrics said."""

    variant: str
    concept: str
    alpha: float
    prompt: int
    seed: int
    preservation: float
    embedding: np.ndarray
    alignment: dict[str, float] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        return {
            "variant": self.variant,
            "concept": self.concept,
            "alpha": self.alpha,
            "prompt": self.prompt,
            "seed": self.seed,
            "preservation": self.preservation,
            "embedding": np.asarray(self.embedding, dtype=np.float32).tolist(),
            "alignment": dict(self.alignment),
        }


@dataclass
class SweepRows:
    """A variant's clips on one concept as arrays over (alpha, prompt, seed)."""

    alphas: np.ndarray
    prompts: np.ndarray
    seeds: np.ndarray
    preservation: np.ndarray
    alignment: dict[str, np.ndarray]
    embeddings: np.ndarray  # (A, P, S, d)
    complete: bool


@dataclass
class StoredUnit:
    """A finished unit as the store keeps it."""

    key: str
    kind: str
    result: dict[str, Any]
    clips: list[ClipRow]
    variant: str | None
    concept: str | None
    seconds: float
    worker: str
    finished: float


class BenchStore:
    """The SQLite file of one benchmark run (``DIR/bench.sqlite``)."""

    def __init__(self, path: str | Path, settings: dict[str, Any]):
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.db = sqlite3.connect(self.path, timeout=60)
        self.db.execute("PRAGMA journal_mode=WAL")
        self.db.execute("PRAGMA synchronous=NORMAL")
        self.db.executescript(SCHEMA)
        self.journal = self.path.parent / "units"
        self.settings = self._claim(settings)
        self.sync()

    def _claim(self, settings: dict[str, Any]) -> dict[str, Any]:
        """The run's settings: those the index or (in a fresh clone) the journal holds, which must
        equal ``settings``; a new run records ``settings`` in both."""
        wanted = json.loads(json.dumps(settings, sort_keys=True))
        row = self.db.execute("SELECT value FROM meta WHERE key = 'settings'").fetchone()
        journal = self.journal / "settings.json"
        try:
            stored = json.loads(row[0]) if row else json.loads(journal.read_text()) if journal.is_file() else wanted
        except json.JSONDecodeError as exc:
            raise TadaError(f"{journal} is not readable JSON ({exc}); restore it from git") from None
        changed = sorted(k for k in set(stored) | set(wanted) if stored.get(k) != wanted.get(k))
        if changed:
            first = changed[0]
            raise TadaError(
                f"{self.path.parent} holds a benchmark run with other settings ({first}: {stored.get(first)!r} there, "
                f"{wanted.get(first)!r} now{', and ' + str(len(changed) - 1) + ' more' if len(changed) > 1 else ''}); "
                "rerun with the same settings to resume, or give another --out"
            )
        if row is None:
            with self.db:
                self.db.execute("INSERT INTO meta VALUES ('settings', ?)", (json.dumps(stored, sort_keys=True),))
        if not journal.is_file():
            write_text(journal, json.dumps(stored, sort_keys=True, indent=1) + "\n")
        return stored

    def close(self) -> None:
        self.db.close()

    def __enter__(self) -> BenchStore:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- units --------------------------------------------------------------------------
    def done(self, key: str) -> bool:
        return self.db.execute("SELECT 1 FROM units WHERE key = ?", (key,)).fetchone() is not None

    def result(self, key: str) -> dict[str, Any] | None:
        row = self.db.execute("SELECT result FROM units WHERE key = ?", (key,)).fetchone()
        return None if row is None else json.loads(row[0])

    def finish(
        self,
        key: str,
        kind: str,
        result: dict[str, Any],
        clips: Iterable[ClipRow] = (),
        *,
        variant: str | None = None,
        concept: str | None = None,
        seconds: float = 0.0,
        worker: str = "",
    ) -> None:
        """Record a finished unit and its clips: its journal file (atomically), then the index (in one
        transaction); a kill between the two is levelled by :meth:`sync` on the next open."""
        clips = list(clips)
        if not _KEY.fullmatch(key) or ".." in key.split("/"):
            raise TadaError(f"benchmark unit key {key!r} is not a safe relative name")
        unit = StoredUnit(key, kind, result, clips, variant, concept, seconds, worker, time.time())
        self._write_unit(unit)
        self._insert(unit)

    def _insert(self, unit: StoredUnit) -> None:
        clips = unit.clips
        with self.db:
            self.db.executemany(
                "INSERT OR REPLACE INTO clips VALUES (?, ?, ?, ?, ?, ?, ?)",
                [
                    (
                        c.variant,
                        c.concept,
                        float(c.alpha),
                        int(c.prompt),
                        int(c.seed),
                        float(c.preservation),
                        np.asarray(c.embedding, dtype=np.float16).tobytes(),
                    )
                    for c in clips
                ],
            )
            self.db.executemany(
                "INSERT OR REPLACE INTO alignment VALUES (?, ?, ?, ?, ?, ?, ?)",
                [
                    (c.variant, c.concept, float(c.alpha), int(c.prompt), int(c.seed), m, float(v))
                    for c in clips
                    for m, v in c.alignment.items()
                ],
            )
            self.db.execute(
                "INSERT OR REPLACE INTO units VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (
                    unit.key,
                    unit.kind,
                    unit.variant,
                    unit.concept,
                    json.dumps(unit.result, sort_keys=True),
                    unit.seconds,
                    len(clips),
                    unit.worker,
                    unit.finished,
                ),
            )

    # -- the journal ----------------------------------------------------------------------
    def unit_file(self, key: str) -> Path:
        return self.journal / f"{key}.safetensors"

    def _write_unit(self, unit: StoredUnit) -> None:
        """One unit as a safetensors file: its clips as tensors (embeddings as the float16 the
        index stores), everything else as JSON metadata."""
        import torch

        clips = unit.clips
        groups = sorted({(c.variant, c.concept) for c in clips})
        metrics = sorted({m for c in clips for m in c.alignment})
        tensors: dict[str, torch.Tensor] = {
            "group": torch.tensor([groups.index((c.variant, c.concept)) for c in clips], dtype=torch.int64),
            "alpha": torch.tensor([float(c.alpha) for c in clips], dtype=torch.float64),
            "prompt": torch.tensor([int(c.prompt) for c in clips], dtype=torch.int64),
            "seed": torch.tensor([int(c.seed) for c in clips], dtype=torch.int64),
            "preservation": torch.tensor([float(c.preservation) for c in clips], dtype=torch.float64),
            "alignment": torch.tensor(
                [[float(c.alignment.get(m, np.nan)) for m in metrics] for c in clips], dtype=torch.float64
            ).reshape(len(clips), len(metrics)),
        }
        if clips:
            tensors["embedding"] = torch.from_numpy(
                np.stack([np.asarray(c.embedding, dtype=np.float16).reshape(-1) for c in clips])
            )
        write_safetensors(
            self.unit_file(unit.key),
            tensors,
            {
                "format": UNIT_FORMAT,
                "format_version": UNIT_FORMAT_VERSION,
                "key": unit.key,
                "kind": unit.kind,
                "variant": json.dumps(unit.variant),
                "concept": json.dumps(unit.concept),
                "result": json.dumps(unit.result, sort_keys=True),
                "seconds": repr(float(unit.seconds)),
                "worker": unit.worker,
                "finished": repr(float(unit.finished)),
                "groups": json.dumps(groups),
                "metrics": json.dumps(metrics),
            },
        )

    def _read_unit(self, path: Path) -> StoredUnit:
        from ..artifacts import read_artifact

        def build(tensors: dict[str, Any], meta: dict[str, str]) -> StoredUnit:
            groups, metrics = json.loads(meta["groups"]), json.loads(meta["metrics"])
            columns = zip(
                tensors["group"].tolist(),
                tensors["alpha"].tolist(),
                tensors["prompt"].tolist(),
                tensors["seed"].tolist(),
                tensors["preservation"].tolist(),
                tensors["alignment"].tolist(),
            )
            embedding = tensors["embedding"].numpy() if "embedding" in tensors else None
            clips = [
                ClipRow(
                    *groups[group],
                    alpha,
                    prompt,
                    seed,
                    preservation,
                    embedding[i],
                    {m: v for m, v in zip(metrics, values) if not np.isnan(v)},
                )
                for i, (group, alpha, prompt, seed, preservation, values) in enumerate(columns)
            ]
            return StoredUnit(
                meta["key"],
                meta["kind"],
                json.loads(meta["result"]),
                clips,
                json.loads(meta["variant"]),
                json.loads(meta["concept"]),
                float(meta["seconds"]),
                meta["worker"],
                float(meta["finished"]),
            )

        return read_artifact(path, UNIT_FORMAT, UNIT_FORMAT_VERSION, ("key", "kind", "result"), "benchmark unit", build)

    def sync(self) -> None:
        """Level the index with the journal, which is the record: index the journal's units the
        SQLite file lacks (a fresh clone of a run, or a kill between the two writes, since the file
        is written first), and forget indexed units that have no file, so they run again and
        their file is written."""
        stored = {row[0] for row in self.db.execute("SELECT key FROM units")}
        on_disk = set()
        for path in sorted(self.journal.rglob("*.safetensors")) if self.journal.is_dir() else []:
            named = path.relative_to(self.journal).as_posix().removesuffix(".safetensors")
            on_disk.add(named)
            if named in stored:
                continue
            unit = self._read_unit(path)
            if unit.key != named:
                raise TadaError(f"{path} holds unit {unit.key!r}, which belongs at {self.unit_file(unit.key)}")
            self._insert(unit)
        lost = sorted(stored - on_disk)
        if lost:
            with self.db:
                self.db.executemany("DELETE FROM units WHERE key = ?", [(k,) for k in lost])

    def units(self, kind: str | None = None) -> list[dict[str, Any]]:
        query = "SELECT key, kind, variant, concept, seconds, clips, worker, finished FROM units"
        query += (" WHERE kind = ?" if kind else "") + " ORDER BY key"
        rows = self.db.execute(query, (kind,) if kind else ()).fetchall()
        names = ("key", "kind", "variant", "concept", "seconds", "clips", "worker", "finished")
        return [dict(zip(names, row)) for row in rows]

    # -- clips --------------------------------------------------------------------------
    def sweep(
        self,
        variant: str,
        concept: str,
        alphas: Sequence[float],
        prompts: int,
        seeds: Sequence[int],
        metrics: Sequence[str],
        baseline_variant: str = "baseline",
    ) -> SweepRows:
        """The clips of ``variant`` on ``concept`` at ``alphas`` (alpha 0 from the concept's baseline clips).

        Missing clips are NaN and ``complete`` is False.
        """
        alphas = np.asarray(sorted(float(a) for a in alphas))
        seed_list = [int(s) for s in seeds]
        a_index = {round(float(a), 9): i for i, a in enumerate(alphas)}
        s_index = {s: i for i, s in enumerate(seed_list)}
        shape = (len(alphas), prompts, len(seed_list))
        preservation = np.full(shape, np.nan)
        alignment = {m: np.full(shape, np.nan) for m in metrics}
        embeddings: np.ndarray | None = None

        def place(rows: Iterable[tuple], zero_only: bool) -> None:
            nonlocal embeddings
            for alpha, prompt, seed, pres, blob in rows:
                i = a_index.get(0.0 if zero_only else round(alpha, 9))
                if i is None or prompt >= prompts or seed not in s_index:
                    continue
                emb = np.frombuffer(blob, dtype=np.float16).astype(np.float32)
                if embeddings is None:
                    embeddings = np.full((*shape, emb.shape[0]), np.nan, dtype=np.float32)
                j = s_index[seed]
                preservation[i, prompt, j] = pres
                embeddings[i, prompt, j] = emb

        select = "SELECT alpha, prompt, seed, preservation, embedding FROM clips WHERE variant = ? AND concept = ?"
        place(self.db.execute(select, (baseline_variant, concept)), zero_only=True)
        place(self.db.execute(select, (variant, concept)), zero_only=False)
        select = "SELECT alpha, prompt, seed, metric, value FROM alignment WHERE variant = ? AND concept = ?"
        for name, zero_only in ((baseline_variant, True), (variant, False)):
            for alpha, prompt, seed, metric, value in self.db.execute(select, (name, concept)):
                i = a_index.get(0.0 if zero_only else round(alpha, 9))
                if metric in alignment and i is not None and prompt < prompts and seed in s_index:
                    alignment[metric][i, prompt, s_index[seed]] = value
        if embeddings is None:
            embeddings = np.full((*shape, 1), np.nan, dtype=np.float32)
        complete = bool(np.isfinite(preservation).all() and all(np.isfinite(v).all() for v in alignment.values()))
        return SweepRows(
            alphas, np.arange(prompts), np.asarray(seed_list), preservation, alignment, embeddings, complete
        )
