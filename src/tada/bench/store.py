"""The benchmark's results store: one SQLite file, written as each unit of work finishes.

A unit (a fit, a calibration, one concept's alpha-0 clips for a chunk of prompts, or one
variant's clips at a chunk of alphas for a chunk of prompts) is written in one transaction
together with its clips, so a run killed at any moment keeps every finished unit and a rerun
with the same settings skips them. The file records the settings it was made with; a rerun
with settings that would change the results is refused in one line rather than mixed in.

Tables: ``meta`` (the settings), ``units`` (key, kind, variant, concept, JSON result, seconds,
worker), ``clips`` (variant, concept, alpha, prompt, seed, preservation, the scorer embedding
as float16 bytes) and ``alignment`` (one row per clip and alignment metric).
"""

from __future__ import annotations

import json
import sqlite3
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import TadaError

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


class BenchStore:
    """The SQLite file of one benchmark run (``DIR/bench.sqlite``)."""

    def __init__(self, path: str | Path, settings: dict[str, Any]):
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.db = sqlite3.connect(self.path, timeout=60)
        self.db.execute("PRAGMA journal_mode=WAL")
        self.db.execute("PRAGMA synchronous=NORMAL")
        self.db.executescript(SCHEMA)
        self.settings = self._claim(settings)

    def _claim(self, settings: dict[str, Any]) -> dict[str, Any]:
        wanted = json.loads(json.dumps(settings, sort_keys=True))
        row = self.db.execute("SELECT value FROM meta WHERE key = 'settings'").fetchone()
        if row is None:
            with self.db:
                self.db.execute("INSERT INTO meta VALUES ('settings', ?)", (json.dumps(wanted, sort_keys=True),))
            return wanted
        stored = json.loads(row[0])
        changed = sorted(k for k in set(stored) | set(wanted) if stored.get(k) != wanted.get(k))
        if changed:
            first = changed[0]
            raise TadaError(
                f"{self.path} holds a benchmark run with other settings ({first}: {stored.get(first)!r} there, "
                f"{wanted.get(first)!r} now{', and ' + str(len(changed) - 1) + ' more' if len(changed) > 1 else ''}); "
                "rerun with the same settings to resume, or give another --out"
            )
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
        """Record a finished unit and its clips in one transaction (all of it lands, or none)."""
        clips = list(clips)
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
                (key, kind, variant, concept, json.dumps(result), seconds, len(clips), worker, time.time()),
            )

    def units(self, kind: str | None = None) -> list[dict[str, Any]]:
        query = "SELECT key, kind, variant, concept, seconds, clips, worker, finished FROM units"
        rows = self.db.execute(query + (" WHERE kind = ?" if kind else ""), (kind,) if kind else ()).fetchall()
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
