"""The labelled corpus: ``audio/<id>.wav`` clips plus ``labels.jsonl``, built in parallel.

Clip ``i`` of a corpus made with ``seed=S`` has seed ``S + i`` and is fully determined
by it, so disjoint seed ranges give disjoint training and held-out sets. With
``mode_twins`` every clip also gets its *mode twin* (``<id>-twin``): the same piece in the
other mode of the same tonic (see :func:`mode_twin`), a pair whose only difference in sound
is major vs minor and in caption the mood words. With ``gender_twins`` every clip with
vocals also gets its *gender twin* (``<id>-gender``, :func:`gender_twin`): the same piece
sung or rapped by the other gender's voice. A twin's record names its original
(``twin_of``) and, for a gender twin, ``"twin_kind": "gender"``. Workers write
each WAV atomically; the parent appends its label line only after the WAV is in place.
A killed run, started again, keeps every clip that has both and renders the rest. A run into
an existing corpus with other settings adds its clips to the ones already there.
"""

from __future__ import annotations

import json
import multiprocessing as mp
import os
import time
from collections.abc import Iterator
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np
import soundfile as sf
from tqdm.auto import tqdm

from ..errors import TadaError
from ..validate import MAX_SEED
from .attributes import SAMPLE_RATE, TWIN_KINDS, ClipSpec, sample_spec
from .captions import caption
from .render import Renderer, check_soundfont, check_tools

LABELS = "labels.jsonl"
TWIN_SUFFIX = "-twin"
GENDER_TWIN_SUFFIX = "-gender"
OTHER_MODE = {"major": "minor", "minor": "major"}
OTHER_GENDER = {"female": "male", "male": "female"}
_renderer: Renderer | None = None
_init_error: Exception | None = None


def clip_id(seed: int) -> str:
    return f"clip-{seed:09d}"


def mode_twin(spec: ClipSpec) -> ClipSpec:
    """The same clip in the other mode on the same tonic (C major <-> C minor). Every part's
    notes are drawn from the clip seed and role, never the mode, so rhythm, scale degrees,
    voicing, instruments, tempo and voice stay; only the scale maps the degrees to other
    pitches (the third, sixth and seventh move by a semitone). Its captions, also fixed by the
    seed, keep their template and differ only in the mood word (and a named key's mode)."""
    return replace(spec, id=spec.id + TWIN_SUFFIX, mode=OTHER_MODE[spec.mode])


def gender_twin(spec: ClipSpec) -> ClipSpec:
    """The same clip with the other gender's voice: the accompaniment is note for note the same
    (nothing else is drawn from the gender); the vocal line keeps its words and rhythm and is
    sung or rapped by a voice of the other gender in that gender's register. Its captions keep
    their template and differ only in the voice words (each gender's word lists are parallel)."""
    if spec.vocals is None:
        raise TadaError(f"{spec.id} has no vocals, so it has no gender twin")
    vocals = {**spec.vocals, "gender": OTHER_GENDER[spec.vocals["gender"]]}
    return replace(spec, id=spec.id + GENDER_TWIN_SUFFIX, vocals=vocals)


def twin_kind(record: dict[str, Any]) -> str | None:
    """``"mode"`` or ``"gender"`` for a twin's record, None for an original clip."""
    if "twin_of" not in record:
        return None
    return record.get("twin_kind", "mode")


def label(spec: ClipSpec, path: str, twin_of: str | None = None, kind: str = "mode") -> dict[str, Any]:
    """The labels.jsonl record of one clip (``spec`` keeps what re-rendering needs)."""
    record = {
        "id": spec.id,
        "path": path,
        "caption": caption(spec),
        "bpm": spec.bpm,
        "mode": spec.mode,
        "genre": spec.genre,
        "instruments": spec.instruments,
        "vocals": spec.vocals,
        "seed": spec.seed,
        "spec": spec.to_json(),
    }
    if twin_of:
        record["twin_of"] = twin_of
        if kind != "mode":  # mode twins predate the field: its absence means a mode twin
            record["twin_kind"] = kind
    return record


def render_spec(spec: ClipSpec, soundfont: str | None = None) -> np.ndarray:
    """Render one clip specification in this process (e.g. a clip with an instrument swapped)."""
    global _renderer
    if _renderer is None or (soundfont and _renderer.soundfont != soundfont):
        _renderer = Renderer(soundfont)
    return _renderer.render(spec)


def _init_worker(soundfont: str | None) -> None:
    """Load the renderer once per worker. A pool restarts a worker whose initializer raises, forever
    (a hang), so a failure is kept and raised by the worker's first job, which ends the pool."""
    global _renderer, _init_error
    try:
        _renderer = Renderer(soundfont)
    except Exception as exc:
        _init_error = exc


_TWIN_MAKERS = {"mode": mode_twin, "gender": gender_twin}


def _make_clip(job: tuple[int, str | None, str]) -> dict[str, Any]:
    seed, kind, out = job
    if _init_error is not None:
        raise _init_error
    spec = sample_spec(seed, clip_id(seed))
    original = spec.id
    if kind:
        spec = _TWIN_MAKERS[kind](spec)
    relative = f"audio/{spec.id}.wav"
    target = Path(out) / relative
    tmp = target.with_name(target.name + ".tmp.wav")
    sf.write(tmp, render_spec(spec), SAMPLE_RATE, subtype="PCM_16")
    os.replace(tmp, target)
    return label(spec, relative, original if kind else None, kind or "mode")


def _record_problem(record: Any) -> str | None:
    """Why a parsed label line is not a clip record (None if it is): the corpus code needs its
    ``id`` and ``path`` to find the clip and its ``seed`` (and twin kind) to order it."""
    if not isinstance(record, dict):
        return "not a JSON object"
    missing = [key for key in ("id", "path", "seed") if key not in record]
    if missing:
        return f"missing {', '.join(missing)}"
    if not isinstance(record["id"], str) or not isinstance(record["path"], str):
        return "id and path must be strings"
    if not isinstance(record["seed"], int) or isinstance(record["seed"], bool):
        return "seed must be an integer"
    if twin_kind(record) not in (None, *TWIN_KINDS):
        return f"unknown twin_kind {record['twin_kind']!r}"
    return None


def read_labels(out: str | Path) -> list[dict[str, Any]]:
    """Complete label lines whose audio exists. A torn last line (from a kill) is dropped; any other
    line that is not a clip record is refused with its line number, since a rewrite would lose it."""
    path = Path(out) / LABELS
    if not path.is_file():
        return []
    try:
        lines = path.read_bytes().decode("utf-8").splitlines()
    except (OSError, UnicodeDecodeError) as exc:
        raise TadaError(f"cannot read {path} as UTF-8 text ({exc})") from None
    records = []
    for number, line in enumerate(lines, 1):
        if not line.strip():
            continue
        try:
            record = json.loads(line)
        except json.JSONDecodeError:
            if number == len(lines):
                continue
            raise TadaError(f"{path}:{number} is not a valid label line (not JSON)") from None
        problem = _record_problem(record)
        if problem:
            raise TadaError(f"{path}:{number} is not a valid label line ({problem})")
        if (Path(out) / record["path"]).is_file():
            records.append(record)
    return records


@dataclass
class CorpusReport:
    clips: int
    rendered: int
    audio_seconds: float
    wall_seconds: float

    @property
    def realtime_factor(self) -> float:
        return self.audio_seconds / self.wall_seconds if self.wall_seconds else float("inf")


def _write_labels(out: Path, records: list[dict[str, Any]]) -> None:
    tmp = out / (LABELS + ".tmp")
    tmp.write_text("".join(json.dumps(r) + "\n" for r in records), encoding="utf-8")
    os.replace(tmp, out / LABELS)


def _jobs(todo: list[tuple[int, str | None]], out: Path) -> Iterator[tuple[int, str | None, str]]:
    for seed, kind in todo:
        yield seed, kind, str(out)


def label_order(record: dict[str, Any]) -> tuple[int, int]:
    """Labels are kept sorted by seed, each original followed by its mode twin, then its gender twin."""
    kind = twin_kind(record)
    return record["seed"], 0 if kind is None else 1 + TWIN_KINDS.index(kind)


def _check_settings(n: int, seed: int, workers: int) -> None:
    """Refuse impossible settings before any work: clip seeds ``seed .. seed + n - 1`` must all be
    seeds every generator accepts (0 .. 2**32 - 1, numpy's and torch's range), so a clip's seed can
    seed anything downstream and stays exact in any JSON reader."""
    if n < 1:
        raise TadaError(f"--n must be at least 1 (the number of clips to render), got {n}")
    if workers < 1:
        raise TadaError(f"--workers must be at least 1 (the number of rendering processes), got {workers}")
    if not 0 <= seed <= MAX_SEED - (n - 1):
        raise TadaError(
            f"--seed must be between 0 and {MAX_SEED - (n - 1)} with --n {n}, got {seed} "
            f"(clip seeds SEED .. SEED + N - 1 must fit the 32-bit seed range of numpy and torch)"
        )


def _check_out(out: Path) -> None:
    """Refuse an output path that cannot hold a corpus, in one line rather than an OSError later."""
    if out.exists() and not out.is_dir():
        raise TadaError(f"--out {out} is a file; the corpus is a directory (audio/ and {LABELS})")
    if (out / "audio").exists() and not (out / "audio").is_dir():
        raise TadaError(f"{out / 'audio'} is a file; a corpus keeps its clips in that directory")
    if (out / LABELS).is_dir():
        raise TadaError(f"{out / LABELS} is a directory; a corpus keeps its labels in that file")


def make_corpus(
    n: int,
    seed: int,
    out: str | Path,
    workers: int = 2,
    soundfont: str | None = None,
    progress: bool = True,
    mode_twins: bool = False,
    gender_twins: bool = False,
) -> CorpusReport:
    """Render clips with seeds ``seed .. seed + n - 1`` into ``out`` (resuming if partly done),
    with ``mode_twins`` also each clip's :func:`mode_twin`, with ``gender_twins`` each vocal
    clip's :func:`gender_twin`. Twins rendered by an earlier run are kept either way.

    Clips already in ``out`` from runs with other settings (another seed range, other twins) are
    kept too, never dropped: a clip's id fixes its content, so the union is a consistent corpus,
    whereas refusing would stop the common "make 100 more" run and dropping lost finished work."""
    _check_settings(n, seed, workers)
    out = Path(out)
    _check_out(out)
    wanted: dict[str, tuple[int, str | None]] = {clip_id(s): (s, None) for s in range(seed, seed + n)}
    if mode_twins:
        wanted.update({clip_id(s) + TWIN_SUFFIX: (s, "mode") for s in range(seed, seed + n)})
    if gender_twins:  # drawing a spec costs microseconds; only clips with vocals have a gender twin
        wanted.update(
            {
                clip_id(s) + GENDER_TWIN_SUFFIX: (s, "gender")
                for s in range(seed, seed + n)
                if sample_spec(s).vocals is not None
            }
        )
    done = {r["id"]: r for r in read_labels(out)}  # every existing clip, whatever run made it
    todo = [job for cid, job in wanted.items() if cid not in done]
    if todo:
        soundfont = check_tools(soundfont)  # fail fast, with one clear line, if FluidSynth or espeak-ng is missing
        check_soundfont(soundfont)  # and before any worker starts, if the soundfont does not load
    try:
        (out / "audio").mkdir(parents=True, exist_ok=True)
        _write_labels(out, list(done.values()))
    except OSError as exc:
        raise TadaError(f"cannot write the corpus in {out} ({exc.strerror}: {exc.filename})") from None
    start = time.perf_counter()
    if todo:
        # spawn, not fork: a forked child of a process that already runs FluidSynth threads can deadlock
        context = mp.get_context("spawn")
        with (
            context.Pool(workers, initializer=_init_worker, initargs=(soundfont,)) as pool,
            (out / LABELS).open("a", encoding="utf-8") as labels,
        ):
            results = pool.imap_unordered(_make_clip, _jobs(todo, out), chunksize=2)
            for record in tqdm(results, total=len(todo), desc="rendering corpus", unit="clip", disable=not progress):
                labels.write(json.dumps(record) + "\n")
                labels.flush()
    wall = time.perf_counter() - start
    records = sorted(read_labels(out), key=label_order)
    _write_labels(out, records)
    seconds = len(todo) * sample_spec(seed).seconds
    return CorpusReport(len(records), len(todo), seconds, wall)
