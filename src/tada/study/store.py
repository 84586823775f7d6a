"""A study's answers: one SQLite file, each answer committed (``synchronous=FULL``) before the page moves on.

Tables: ``raters`` (id, ordinal, name, created, the plan they were given as JSON) and ``answers`` (one row
per rater and trial: kind, item, the stimuli in the order shown, the response as given, which clips were
played, the time on the page). An answer is written once: a second answer to the same trial (a double
click, a page resent after a restart) is kept out and the first one stands. A server killed at any moment
loses no answer the page was told is saved.
"""

from __future__ import annotations

import json
import secrets
import sqlite3
import threading
import time
from dataclasses import asdict
from pathlib import Path
from typing import Any

from .design import Trial

SCHEMA = """
CREATE TABLE IF NOT EXISTS raters (
    id TEXT PRIMARY KEY, ordinal INTEGER NOT NULL UNIQUE, name TEXT NOT NULL, created REAL NOT NULL,
    plan TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS answers (
    rater TEXT NOT NULL REFERENCES raters(id), trial INTEGER NOT NULL, kind TEXT NOT NULL, item TEXT NOT NULL,
    stimuli TEXT NOT NULL, response TEXT NOT NULL, plays TEXT NOT NULL, ms REAL NOT NULL, answered REAL NOT NULL,
    PRIMARY KEY (rater, trial)
);
"""


class AnswerStore:
    """The answers file of a study; safe to share between the server's threads."""

    def __init__(self, path: str | Path):
        self.path = Path(path)
        self._lock = threading.Lock()
        self.db = sqlite3.connect(self.path, timeout=30, check_same_thread=False)
        self.db.execute("PRAGMA journal_mode=WAL")
        self.db.execute("PRAGMA synchronous=FULL")
        with self.db:
            self.db.executescript(SCHEMA)

    def close(self) -> None:
        self.db.close()

    def __enter__(self) -> AnswerStore:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # ---------------------------------------------------------------- raters
    def new_rater(self, name: str, make_plan) -> str:
        """A new rater's id; ``make_plan(ordinal)`` gives their trials, stored with them."""
        with self._lock, self.db:
            (ordinal,) = self.db.execute("SELECT COALESCE(MAX(ordinal) + 1, 0) FROM raters").fetchone()
            rater = secrets.token_urlsafe(9)
            plan = json.dumps([asdict(t) for t in make_plan(ordinal)])
            self.db.execute("INSERT INTO raters VALUES (?, ?, ?, ?, ?)", (rater, ordinal, name, time.time(), plan))
        return rater

    def plan(self, rater: str) -> list[Trial] | None:
        with self._lock:
            row = self.db.execute("SELECT plan FROM raters WHERE id = ?", (rater,)).fetchone()
        if row is None:
            return None
        return [Trial(t["kind"], t["item"], tuple(t["stimuli"])) for t in json.loads(row[0])]

    def raters(self) -> list[dict[str, Any]]:
        with self._lock:
            rows = self.db.execute("SELECT id, ordinal, name, created FROM raters ORDER BY ordinal").fetchall()
        return [dict(zip(("id", "ordinal", "name", "created"), r)) for r in rows]

    # ---------------------------------------------------------------- answers
    def answered(self, rater: str) -> set[int]:
        with self._lock:
            rows = self.db.execute("SELECT trial FROM answers WHERE rater = ?", (rater,)).fetchall()
        return {r[0] for r in rows}

    def add(self, rater: str, index: int, trial: Trial, response: Any, plays: list[int], ms: float) -> bool:
        """Commit one answer; False when that trial already had one (the first stands)."""
        row = (
            rater,
            index,
            trial.kind,
            trial.item,
            json.dumps(list(trial.stimuli)),
            json.dumps(response),
            json.dumps(plays),
            float(ms),
            time.time(),
        )
        with self._lock, self.db:
            cursor = self.db.execute("INSERT OR IGNORE INTO answers VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)", row)
        return cursor.rowcount == 1

    def answers(self) -> list[dict[str, Any]]:
        """Every answer, oldest first, with its JSON columns parsed."""
        with self._lock:
            rows = self.db.execute(
                "SELECT rater, trial, kind, item, stimuli, response, plays, ms, answered FROM answers "
                "ORDER BY answered, rater, trial"
            ).fetchall()
        keys = ("rater", "trial", "kind", "item", "stimuli", "response", "plays", "ms", "answered")
        out = []
        for r in rows:
            answer = dict(zip(keys, r))
            for key in ("stimuli", "response", "plays"):
                answer[key] = json.loads(answer[key])
            out.append(answer)
        return out


__all__ = ["AnswerStore"]
