"""The procedural corpus: determinism, resume, labels that agree with the audio."""

from __future__ import annotations

import json
from dataclasses import replace

import librosa
import numpy as np
import pytest
import soundfile as sf

from tada import signal_checks
from tada.data.attributes import GENRES, INSTRUMENTS, SAMPLE_RATE, Part, sample_spec
from tada.data.captions import GENRE_WORDS, caption
from tada.data.corpus import LABELS, make_corpus, read_labels, render_spec
from tada.data.render import Renderer, render_vocals
from tada.errors import TadaError


def test_same_seed_same_clip_across_renderers():
    spec = sample_spec(11)
    first = Renderer().render(spec)
    Renderer().render(sample_spec(3))  # history must not matter
    again = Renderer().render(spec)
    assert first.shape == (int(spec.seconds * SAMPLE_RATE),) and first.dtype == np.float32
    assert np.array_equal(first, again) and np.abs(first).max() > 0.1
    assert sample_spec(11) == spec and sample_spec(12) != spec


def test_corpus_labels_and_resume(tmp_path):
    out = tmp_path / "corpus"
    report = make_corpus(6, 100, out, workers=2, progress=False)
    assert report.clips == report.rendered == 6
    records = read_labels(out)
    assert [r["seed"] for r in records] == list(range(100, 106))
    for record in records:
        assert set(record) >= {"id", "path", "caption", "bpm", "mode", "genre", "instruments", "vocals", "seed"}
        audio, rate = sf.read(out / record["path"])
        assert rate == SAMPLE_RATE and audio.ndim == 1 and len(audio) == 5 * SAMPLE_RATE
        assert record["vocals"] is None or set(record["vocals"]) == {"gender", "style"}
    victim = records[2]
    original = sf.read(out / victim["path"], dtype="int16")[0]
    (out / victim["path"]).unlink()
    lines = (out / LABELS).read_text().splitlines()
    (out / LABELS).write_text("\n".join(lines[:4]) + "\n" + lines[4][:25])  # a torn line, as after a kill
    report = make_corpus(6, 100, out, workers=1, progress=False)
    assert report.rendered == 3 and report.clips == 6  # clip 2 (no audio), 4 (torn), 5 (lost line)
    assert np.array_equal(sf.read(out / victim["path"], dtype="int16")[0], original)
    assert [json.loads(line)["seed"] for line in (out / LABELS).read_text().splitlines()] == list(range(100, 106))


@pytest.mark.parametrize("bpm", [70, 100, 128, 160])
def test_drum_tempo_matches_label(bpm):
    spec = replace(sample_spec(5), genre="rock", bpm=bpm, parts=(Part("drums", "drums"),), vocals=None, seconds=8.0)
    audio = render_spec(spec)
    onset = librosa.onset.onset_strength(y=audio, sr=SAMPLE_RATE)
    tempo = float(np.atleast_1d(librosa.feature.tempo(onset_envelope=onset, sr=SAMPLE_RATE))[0])
    ratios = [tempo / (bpm * k) for k in (0.5, 1.0, 2.0)]
    assert min(abs(r - 1) for r in ratios) < 0.06, (bpm, tempo)


def test_female_voices_sit_higher_than_male():
    medians = {}
    for gender in ("female", "male"):
        f0s = []
        for seed in range(4):
            spec = replace(sample_spec(seed), vocals={"gender": gender, "style": "sung"})
            voice = render_vocals(spec)
            f0, voiced, _ = librosa.pyin(voice, fmin=70, fmax=500, sr=SAMPLE_RATE, frame_length=1024)
            f0s.append(np.nanmedian(f0[voiced]))
        medians[gender] = f0s
    assert all(f > m for f, m in zip(medians["female"], medians["male"])), medians


def test_rap_is_denser_than_singing():
    def onsets(style: str) -> int:
        spec = replace(sample_spec(7), bpm=100, vocals={"gender": "male", "style": style})
        voice = render_vocals(spec)
        return len(librosa.onset.onset_detect(y=voice, sr=SAMPLE_RATE))

    assert onsets("rap") > 1.5 * onsets("sung")


def test_attributes_cover_every_concept_and_captions_name_them():
    specs = [sample_spec(s) for s in range(600)]
    instruments = {i for s in specs for i in s.instruments}
    assert {"piano", "violin", "acoustic guitar", "electric guitar", "drums"} <= instruments
    assert {s.genre for s in specs} == set(GENRES)
    assert {s.mode for s in specs} == {"major", "minor"}
    assert min(s.bpm for s in specs) <= 70 and max(s.bpm for s in specs) >= 170
    vocals = {(s.vocals["gender"], s.vocals["style"]) for s in specs if s.vocals}
    assert vocals == {("female", "sung"), ("male", "sung"), ("female", "rap"), ("male", "rap")}
    piano_share = {g: np.mean(["piano" in s.instruments for s in specs if s.genre == g]) for g in GENRES}
    assert min(piano_share.values()) > 0.15  # piano is not tied to a genre
    texts = [caption(s) for s in specs]
    assert len(set(texts)) > 590
    for spec, text in zip(specs, texts):
        low = text.lower()
        assert any(w.lower() in low for w in GENRE_WORDS[spec.genre])
        for other in ("jazz", "rock", "classical", "electronic"):
            if other != spec.genre:
                assert other not in low, (spec.genre, text)
    assert all(name in INSTRUMENTS for s in specs for p in s.parts for name in [p.instrument])


def test_every_chord_carries_the_mode():
    from tada.data.compose import PROGRESSIONS, chord_pitches

    for mode, third in (("major", 4), ("minor", 3)):
        for tonic in range(12):
            spec = replace(sample_spec(1), mode=mode, tonic=tonic)
            for prog in PROGRESSIONS[mode]:
                assert prog[0] == 0  # opens on the tonic
                for degree in prog:
                    root, mid, _ = chord_pitches(spec, degree)
                    assert (mid - root) % 12 == third, (mode, tonic, prog, degree)


def test_every_genre_sounds_the_modes_third_in_every_bar():
    # On the composed notes, not the chord table: a genre whose comping drops the third
    # (power chords) would make its clips' mode inaudible.
    from tada.data.attributes import GENRES
    from tada.data.compose import Grid, chord_pitches, compose, progression

    for genre in GENRES:
        for mode, third in (("major", 4), ("minor", 3)):
            spec = replace(
                sample_spec(3),
                genre=genre,
                mode=mode,
                tonic=5,
                vocals=None,
                parts=tuple(p for p in sample_spec(3).parts if p.role == "chords"),
            )
            grid, prog = Grid(spec), progression(spec)
            notes = compose(spec)
            for bar in range(grid.n_bars):
                start, end = bar * grid.bar, (bar + 1) * grid.bar
                root = chord_pitches(spec, prog[bar % len(prog)])[0]
                classes = {(n.pitch - root) % 12 for n in notes if start <= n.start < min(end, spec.seconds)}
                if classes:
                    assert third in classes, (genre, mode, bar, sorted(classes))
                    # and no triad of the other quality hides in the voicing (as in a maj7 chord)
                    other = (0, 7 - third, 7)  # minor triad (0, 3, 7) in major, major (0, 4, 7) in minor
                    for r in range(12):
                        assert not {(r + t) % 12 for t in other} <= classes, (genre, mode, bar, sorted(classes))


def test_mode_twin_changes_only_the_scale():
    from tada.data.compose import compose, vocal_line
    from tada.data.corpus import mode_twin

    for seed in range(6):
        spec = replace(sample_spec(seed), vocals={"gender": "female", "style": "sung"})
        twin = mode_twin(spec)
        assert twin.mode != spec.mode and twin.tonic == spec.tonic and twin.id == spec.id + "-twin"
        a, b = compose(spec), compose(twin)
        assert [(n.start, n.end, n.velocity) for n in a] == [(n.start, n.end, n.velocity) for n in b]
        moved = [(n.pitch - m.pitch) % 12 for n, m in zip(a, b)]  # a range limit may fold a note an octave
        assert set(moved) <= {0, 1, 11} and any(moved)  # thirds, sixths, sevenths move a semitone
        voice_a, voice_b = vocal_line(spec), vocal_line(twin)
        assert [(v.word, v.start) for v in voice_a] == [(v.word, v.start) for v in voice_b]
        words = caption(spec).split(), caption(twin).split()
        assert len(words[0]) == len(words[1]) and sum(x != y for x, y in zip(*words)) <= 2  # mood word, key mode


def test_gender_twin_changes_only_the_voice():
    from tada.data.compose import compose, vocal_line
    from tada.data.corpus import gender_twin

    for seed in range(8):
        for gender, style in (("female", "sung"), ("male", "rap")):
            spec = replace(sample_spec(seed), vocals={"gender": gender, "style": style})
            twin = gender_twin(spec)
            assert twin.id == spec.id + "-gender" and twin.vocals == {
                "gender": "male" if gender == "female" else "female",
                "style": style,
            }
            assert compose(spec) == compose(twin)  # the accompaniment, note for note
            voice_a, voice_b = vocal_line(spec), vocal_line(twin)
            assert [(v.word, v.start) for v in voice_a] == [(v.word, v.start) for v in voice_b]
            if seed < 3:  # the voices themselves: the female one sounds higher (isolated voice's register)
                female, male = (spec, twin) if gender == "female" else (twin, spec)
                hz = [signal_checks.pitch_register(render_vocals(s), SAMPLE_RATE) for s in (female, male)]
                assert hz[0] > 1.3 * hz[1], hz
            words = caption(spec).split(), caption(twin).split()
            changed = [(x, y) for x, y in zip(*words) if x != y]
            assert len(words[0]) == len(words[1]) and 1 <= len(changed) <= 2  # the voice words only
            assert any({x.strip(".,;"), y.strip(".,;")} & {"female", "male", "woman", "man"} for x, y in changed)
    with pytest.raises(TadaError, match="no vocals"):
        gender_twin(replace(sample_spec(0), vocals=None))


def test_corpus_with_gender_twins(tmp_path):
    from tada.data.corpus import twin_kind

    out = tmp_path / "corpus"
    seeds = [s for s in range(400, 440) if sample_spec(s).vocals][:1] + [
        s for s in range(400, 440) if not sample_spec(s).vocals
    ][:1]
    first = min(seeds)
    n = max(seeds) - first + 1
    assert n <= 6, "keep the test small"
    report = make_corpus(n, first, out, workers=1, progress=False, mode_twins=True, gender_twins=True)
    voiced = [s for s in range(first, first + n) if sample_spec(s).vocals]
    assert report.clips == 2 * n + len(voiced)
    records = read_labels(out)
    kinds = [(r["seed"], twin_kind(r)) for r in records]
    expected = [(s, k) for s in range(first, first + n) for k in (None, "mode", *(["gender"] if s in voiced else []))]
    assert kinds == expected  # each original, then its mode twin, then its gender twin
    by_id = {r["id"]: r for r in records}
    for twin in (r for r in records if twin_kind(r) == "gender"):
        original = by_id[twin["twin_of"]]
        assert twin["vocals"]["gender"] != original["vocals"]["gender"]
        assert (twin["bpm"], twin["mode"], twin["instruments"]) == (
            original["bpm"],
            original["mode"],
            original["instruments"],
        )
        a, b = sf.read(out / original["path"])[0], sf.read(out / twin["path"])[0]
        assert a.shape == b.shape and not np.array_equal(a, b)


def test_corpus_with_mode_twins(tmp_path):
    out = tmp_path / "corpus"
    make_corpus(2, 300, out, workers=1, progress=False)
    report = make_corpus(2, 300, out, workers=1, progress=False, mode_twins=True)
    assert report.rendered == 2 and report.clips == 4  # only the twins are new
    records = read_labels(out)
    assert [(r["seed"], r.get("twin_of")) for r in records] == [
        (300, None),
        (300, "clip-000000300"),
        (301, None),
        (301, "clip-000000301"),
    ]
    for original, twin in zip(records[::2], records[1::2]):
        assert {original["mode"], twin["mode"]} == {"major", "minor"}
        assert (original["bpm"], original["instruments"], original["vocals"]) == (
            twin["bpm"],
            twin["instruments"],
            twin["vocals"],
        )
        a, b = sf.read(out / original["path"])[0], sf.read(out / twin["path"])[0]
        assert a.shape == b.shape and not np.array_equal(a, b)
    assert make_corpus(2, 300, out, workers=1, progress=False).clips == 4  # a rerun without the flag keeps them
