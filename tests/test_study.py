"""tada study: clips to a blind study, the server's pages and answers, and the analysis (no browser here;
tests/test_study_browser.py drives the pages in Chromium)."""

from __future__ import annotations

import json
import socket
import urllib.error
import urllib.request
from collections import Counter

import numpy as np
import pytest
import soundfile as sf
from study_clips import CONDITIONS, StudyProcess, bench_folder, clip_folder

from tada.errors import TadaError
from tada.study.analyze import analyze, report_markdown, write_analysis
from tada.study.clips import find_items
from tada.study.design import ANCHOR, HIDDEN_REFERENCE, Study, StudySettings
from tada.study.make import make_study
from tada.study.server import StudyServer
from tada.study.store import AnswerStore


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


# ---------------------------------------------------------------------------------------------- clips
def test_item_folders_are_read_with_their_reference_conditions_and_change(tmp_path):
    items = find_items(clip_folder(tmp_path / "clips"))
    assert [i.name for i in items] == ["item0", "item1"]
    assert sorted(items[0].conditions) == sorted(CONDITIONS)
    assert items[0].reference.name == "reference.wav" and items[0].change == "toward more piano"


def test_a_benchmark_run_becomes_items_per_concept_direction_and_strength(tmp_path):
    items = {i.name: i for i in find_items(bench_folder(tmp_path / "run"))}
    assert sorted(items) == sorted(
        f"{c}-{d}-{s}" for c in ("piano", "tempo") for d in ("up", "down") for s in ("mid", "strong")
    )
    # each variant's own alphas, paired by rank of |alpha| within a direction
    assert items["piano-up-mid"].conditions["sae-global"].name == "alpha+3.wav"
    assert items["piano-up-strong"].conditions["caa-local"].name == "alpha+4.wav"
    assert items["piano-down-strong"].conditions["caa-local"].name == "alpha-6.5.wav"
    assert items["piano-up-mid"].change == "toward “with piano”"
    assert items["piano-down-mid"].change == "away from “with piano”"
    assert items["tempo-down-mid"].change == "toward “slow song”"
    assert items["tempo-up-mid"].reference.parts[-3:] == ("tempo", "baseline", "alpha+0.wav")
    assert {i.name for i in find_items(tmp_path / "run" / "audio")} == set(items)  # the audio folder itself


@pytest.mark.parametrize(
    "layout, message",
    [
        ({}, "no study items"),
        ({"a/x.wav": 1}, "no reference.wav"),
        ({"a/reference.wav": 1}, "only reference.wav"),
        ({"a/reference.wav": 1, "a/x.wav": 1, "a/item.json": "[1"}, "is not a JSON object"),
    ],
)
def test_a_folder_that_is_not_a_clip_folder_is_one_clear_line(tmp_path, layout, message):
    for name, content in layout.items():
        path = tmp_path / name
        path.parent.mkdir(parents=True, exist_ok=True)
        if name.endswith(".wav"):
            sf.write(path, np.zeros(100, np.float32), 16000)
        else:
            path.write_text(content)
    with pytest.raises(TadaError, match=message):
        find_items(tmp_path)
    with pytest.raises(TadaError, match="no folder of clips"):
        find_items(tmp_path / "absent")


# ---------------------------------------------------------------------------------------------- make
def _rms(x):
    return float(np.sqrt(np.mean(np.square(x))))


def test_make_writes_anonymous_loudness_matched_clips_and_an_anchor_without_highs(tmp_path):
    study = make_study(clip_folder(tmp_path / "clips"), tmp_path / "study")
    again = Study.load(tmp_path / "study")
    assert again.to_json() == study.to_json()
    for item in again.items.values():
        tokens = [item.reference, item.anchor, *item.conditions.values()]
        levels = []
        for token in tokens:
            assert not any(c in token for c in (*CONDITIONS, "reference", "anchor"))  # opaque names
            audio, sr = sf.read(again.clip_path(token))
            levels.append(_rms(audio))
            assert np.abs(audio).max() <= 0.99
        assert np.allclose(levels, levels[0], rtol=1e-4)  # one level per item: loudness is no cue
        anchor, sr = sf.read(again.clip_path(item.anchor))
        spectrum = np.abs(np.fft.rfft(anchor)) ** 2
        freqs = np.fft.rfftfreq(anchor.size, 1 / sr)
        assert spectrum[freqs > 3600].sum() < 1e-9 * spectrum.sum()
        reference, _ = sf.read(again.clip_path(item.reference))
        assert spectrum[freqs > 3600].sum() < np.abs(np.fft.rfft(reference))[freqs > 3600].sum() ** 2
    meta = again.clips[again.items["item0"].conditions["caa-local"]]
    assert meta["condition"] == "caa-local" and meta["source"].endswith("item0/caa-local.wav")


def test_make_is_reproducible_and_never_overwrites_a_study(tmp_path):
    clips = clip_folder(tmp_path / "clips")
    make_study(clips, tmp_path / "a", StudySettings(seed=3))
    make_study(clips, tmp_path / "b", StudySettings(seed=3))
    files = sorted(p.relative_to(tmp_path / "a") for p in (tmp_path / "a").rglob("*") if p.is_file())
    assert files and all((tmp_path / "a" / f).read_bytes() == (tmp_path / "b" / f).read_bytes() for f in files)
    before = (tmp_path / "a" / "study.json").read_bytes()
    with pytest.raises(TadaError, match="already holds a study"):
        make_study(clips, tmp_path / "a", StudySettings(seed=4))
    assert (tmp_path / "a" / "study.json").read_bytes() == before


def test_make_keeps_only_the_conditions_asked_for_and_refuses_unknown_ones(tmp_path):
    clips = clip_folder(tmp_path / "clips")
    study = make_study(clips, tmp_path / "s", conditions=["caa-local", "sae-local"], change="more strings")
    assert all(sorted(i.conditions) == ["caa-local", "sae-local"] for i in study.items.values())
    assert {i.change for i in study.items.values()} == {"more strings"}
    with pytest.raises(TadaError, match="unknown condition.*nope"):
        make_study(clips, tmp_path / "t", conditions=["nope"])
    with pytest.raises(TadaError, match="--mushra-size must be"):
        make_study(clips, tmp_path / "u", StudySettings(mushra_size=0))


def test_an_unreadable_clip_is_named_in_one_line(tmp_path):
    clips = clip_folder(tmp_path / "clips", items=1)
    (clips / "item0" / "caa-local.wav").write_bytes(b"not audio")
    with pytest.raises(TadaError, match="caa-local.wav is not a readable audio file"):
        make_study(clips, tmp_path / "s")


# ---------------------------------------------------------------------------------------------- design
def test_every_rater_gets_a_blind_randomised_plan_that_can_be_rebuilt(tmp_path):
    study = make_study(clip_folder(tmp_path / "clips", items=3), tmp_path / "s", StudySettings(checks=2))
    plans = [study.plan(k) for k in range(40)]
    assert plans[5] == Study.load(tmp_path / "s").plan(5)  # rebuilt exactly
    assert len({tuple(p) for p in plans}) == 40  # orders differ between raters
    for plan in plans:
        kinds = [t.kind for t in plan]
        assert kinds[0] == "ab" and kinds.count("check") == 2 and kinds.count("ab") == len(study.pairs)
        assert kinds.index("mushra") > max(i for i, k in enumerate(kinds) if k != "mushra")  # A/B block first
        for t in plan:
            if t.kind == "check":
                assert ANCHOR in t.stimuli and len(t.stimuli) == 2
            if t.kind == "mushra":
                assert {HIDDEN_REFERENCE, ANCHOR} <= set(t.stimuli)
    first_sides = Counter(t.stimuli[0] < t.stimuli[1] for p in plans for t in p if t.kind == "ab")
    assert 0.35 < first_sides[True] / sum(first_sides.values()) < 0.65  # sides drawn, not fixed


def test_raters_share_out_the_trials_evenly_when_each_hears_a_few(tmp_path):
    settings = StudySettings(ab_trials=4, mushra_pages=1, mushra_size=2, checks=0)
    study = make_study(clip_folder(tmp_path / "clips", items=4), tmp_path / "s", settings)
    assert len(study.pairs) == 12 and len(study.pages) == 8  # 3 conditions: 3 pairs and 2 pages per item
    counts = Counter()
    for k in range(6):
        plan = study.plan(k)
        assert [t.kind for t in plan].count("ab") == 4 and [t.kind for t in plan].count("mushra") == 1
        counts.update((t.item, *sorted(t.stimuli)) for t in plan if t.kind == "ab")
    assert len(counts) == 12 and set(counts.values()) == {2}  # 6 raters x 4 = every pair twice


# ---------------------------------------------------------------------------------------------- server
def _get(url: str, headers: dict | None = None):
    request = urllib.request.Request(url, headers=headers or {})
    try:
        with urllib.request.urlopen(request, timeout=10) as r:
            return r.status, r.read(), dict(r.headers)
    except urllib.error.HTTPError as err:
        return err.code, err.read(), dict(err.headers)


def _post(url: str, data: bytes, kind: str = "application/json"):
    request = urllib.request.Request(url, data=data, headers={"Content-Type": kind}, method="POST")
    try:
        with urllib.request.urlopen(request, timeout=10) as r:
            return r.status, r.read(), r.url
    except urllib.error.HTTPError as err:
        return err.code, err.read(), url


def _start(base: str, name: str = "ann") -> str:
    status, _, url = _post(base + "start", f"name={name}".encode(), "application/x-www-form-urlencoded")
    assert status == 200 and "/r/" in url  # urllib followed the redirect to the first page
    return url.rsplit("/r/", 1)[1]


def _answer(plan_trial, index: int, prefer=None) -> dict:
    if plan_trial.kind == "mushra":
        ratings = [100 if s == HIDDEN_REFERENCE else 10 if s == ANCHOR else 60 for s in plan_trial.stimuli]
        response = {"ratings": ratings}
    else:
        winner = prefer(plan_trial.stimuli) if prefer else plan_trial.stimuli[0]
        response = {"choice": plan_trial.stimuli.index(winner)}
    return {"trial": index, "response": response, "plays": [1] * len(plan_trial.stimuli), "ms": 1234.0}


@pytest.fixture
def study(tmp_path):
    return make_study(clip_folder(tmp_path / "clips"), tmp_path / "study", StudySettings(checks=1))


def test_the_server_gives_pages_that_name_no_condition_and_stores_each_answer(study):
    with StudyServer(study, port=free_port(), quiet=True) as server:
        status, page, _ = _get(server.url)
        assert status == 200 and b'id="tada-start"' in page
        rater = _start(server.url)
        plan = server.store.plan(rater)
        status, page, _ = _get(f"{server.url}r/{rater}")
        assert status == 200 and b"Page 1 of" in page and b"toward more piano" in page
        for secret in (*CONDITIONS, HIDDEN_REFERENCE, ANCHOR, "reference.wav", "item0"):
            assert secret.encode() not in page
        token = page.split(b"/clips/")[1][:16].decode()
        status, audio, headers = _get(f"{server.url}clips/{token}.wav", {"Range": "bytes=4-11"})
        assert status == 206 and audio == study.clip_path(token).read_bytes()[4:12]
        assert headers["Content-Range"].endswith(f"/{study.clip_path(token).stat().st_size}")
        status, reply, _ = _post(f"{server.url}r/{rater}/answer", json.dumps(_answer(plan[0], 0)).encode())
        assert status == 200 and json.loads(reply) == {"ok": True, "saved": True, "next": f"/r/{rater}"}
        again = _answer(plan[0], 0)
        again["response"]["choice"] = 1 - again["response"]["choice"]
        status, reply, _ = _post(f"{server.url}r/{rater}/answer", json.dumps(again).encode())
        assert status == 200 and json.loads(reply)["saved"] is False  # the first answer stands
        _, page, _ = _get(f"{server.url}r/{rater}")
        assert b"Page 2 of" in page
    stored = AnswerStore(study.answers_path).answers()
    assert len(stored) == 1 and stored[0]["response"] == _answer(plan[0], 0)["response"]
    assert stored[0]["stimuli"] == list(plan[0].stimuli) and stored[0]["ms"] == 1234.0


@pytest.mark.parametrize(
    "change, status, message",
    [
        (lambda a: a.update(trial=999), 400, "no trial 999"),
        (lambda a: a.update(response={"choice": 2}), 400, "choose A or B"),
        (lambda a: a.update(response=None), 400, "the answer is missing"),
        (lambda a: a.update(plays=[0, 1]), 400, "play every clip"),
        (lambda a: a.update(plays="x"), 400, "malformed play counts"),
    ],
)
def test_a_bad_answer_is_refused_with_a_message_and_the_server_goes_on(study, change, status, message):
    with StudyServer(study, port=free_port(), quiet=True) as server:
        rater = _start(server.url)
        plan = server.store.plan(rater)
        answer = _answer(plan[0], 0)
        change(answer)
        code, reply, _ = _post(f"{server.url}r/{rater}/answer", json.dumps(answer).encode())
        assert code == status and message in json.loads(reply)["error"]
        assert _post(f"{server.url}r/{rater}/answer", b"{not json")[0] == 400
        assert _post(f"{server.url}r/AAAAAAAAAAAA/answer", json.dumps(_answer(plan[0], 0)).encode())[0] == 404
        assert _get(f"{server.url}r/AAAAAAAAAAAA")[0] == 404
        assert _get(f"{server.url}clips/0123456789abcdef.wav")[0] == 404
        assert _get(f"{server.url}study.json")[0] == 404  # the design is never served
        assert _get(server.url)[0] == 200
    assert AnswerStore(study.answers_path).answers() == []


def test_mushra_ratings_are_checked(study):
    with StudyServer(study, port=free_port(), quiet=True) as server:
        rater = _start(server.url)
        plan = server.store.plan(rater)
        index = next(i for i, t in enumerate(plan) if t.kind == "mushra")
        answer = _answer(plan[index], index)
        answer["response"]["ratings"][0] = 101
        code, reply, _ = _post(f"{server.url}r/{rater}/answer", json.dumps(answer).encode())
        assert code == 400 and "0 to 100" in json.loads(reply)["error"]
        answer["response"]["ratings"] = answer["response"]["ratings"][:-1]
        code, reply, _ = _post(f"{server.url}r/{rater}/answer", json.dumps(answer).encode())
        assert code == 400 and "rate all" in json.loads(reply)["error"]


def test_a_taken_port_and_a_missing_study_are_one_line_each(study, tmp_path):
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        with pytest.raises(TadaError, match="already taken"):
            StudyServer(study, port=taken.getsockname()[1], quiet=True)
    with pytest.raises(TadaError, match="is not a study"):
        Study.load(tmp_path)


def test_killing_the_server_loses_no_submitted_answer(study):
    server = StudyProcess(study.folder, free_port()).start()
    base = server.url
    rater = _start(base)
    plan = AnswerStore(study.answers_path).plan(rater)
    for i in range(3):
        assert _post(f"{base}r/{rater}/answer", json.dumps(_answer(plan[i], i)).encode())[0] == 200
    server.kill()
    assert len(AnswerStore(study.answers_path).answers()) == 3
    server.start()
    try:
        _, page, _ = _get(f"{base}r/{rater}")
        assert f"Page 4 of {len(plan)}".encode() in page  # the rater goes on where they stopped
        assert _post(f"{base}r/{rater}/answer", json.dumps(_answer(plan[3], 3)).encode())[0] == 200
    finally:
        server.stop()
    assert [a["trial"] for a in AnswerStore(study.answers_path).answers()] == [0, 1, 2, 3]


# ---------------------------------------------------------------------------------------------- analysis
def _simulate(study: Study, raters: int, prefer, attentive=lambda k: True) -> None:
    """Raters answering every page: A/B by ``prefer(stimuli)``; checks failed by inattentive raters."""
    with AnswerStore(study.answers_path) as store:
        for k in range(raters):
            rater = store.new_rater(f"r{k}", study.plan)
            for i, trial in enumerate(store.plan(rater)):
                answer = _answer(trial, i, prefer)
                if trial.kind == "check" and not attentive(k):
                    answer["response"]["choice"] = trial.stimuli.index(ANCHOR)
                store.add(rater, i, trial, answer["response"], answer["plays"], answer["ms"])


RANK = {"caa-local": 0, "sae-local": 1, "prompt-switch-global": 2, ANCHOR: 9}


def test_analysis_recovers_the_preferred_condition_and_sets_inattentive_raters_aside(study, tmp_path):
    _simulate(study, 6, lambda s: min(s, key=RANK.get), attentive=lambda k: k != 5)
    result = analyze(study, replicates=200)
    assert [r["condition"] for r in result.preference] == ["caa-local", "sae-local", "prompt-switch-global"]
    best, worst = result.preference[0], result.preference[-1]
    assert best["win_rate"] == 1.0 and worst["win_rate"] == 0.0
    assert best["beats_average_interval"][0] > 0.5 > worst["beats_average_interval"][1]
    assert best["win_rate_interval"][0] > 0.5
    aside = [r for r in result.raters if r["set_aside"]]
    assert [r["name"] for r in aside] == ["r5"] and "attention checks" in aside[0]["set_aside"]
    assert result.counts["raters_kept"] == 5
    quality = {r["condition"]: r for r in result.quality}
    assert quality[HIDDEN_REFERENCE]["mean"] == 100 and quality[ANCHOR]["mean"] == 10
    assert quality["caa-local"]["mean"] == 60 and quality["caa-local"]["interval"] == [60, 60]
    assert result.agreement["ab_alpha"] == pytest.approx(1.0)  # everyone agrees
    assert result.agreement["ab_pairwise_agreement"] == 1.0
    folder = write_analysis(study, result)
    assert "| CAA (loc.) |" in (folder / "report.md").read_text()
    data = json.loads((folder / "results.json").read_text())
    assert data["preference"][0]["condition"] == "caa-local"
    assert (folder / "preference.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert len(analyze(study, replicates=200, keep_all=True).raters) == 6


def test_raters_who_disagree_give_low_agreement_and_a_tied_preference(study):
    _simulate(study, 8, lambda s: min(s, key=RANK.get))
    with AnswerStore(study.answers_path) as store:  # eight more who prefer the reverse order
        for k in range(8):
            rater = store.new_rater(f"x{k}", study.plan)
            for i, trial in enumerate(store.plan(rater)):
                answer = _answer(trial, i, lambda s: max(s, key=lambda c: RANK[c] if c != ANCHOR else -1))
                store.add(rater, i, trial, answer["response"], answer["plays"], answer["ms"])
    result = analyze(study, replicates=200)
    assert result.agreement["ab_alpha"] < 0.1
    for row in result.preference:
        assert row["win_rate"] == pytest.approx(0.5)
        low, high = row["beats_average_interval"]
        if row["condition"] == "sae-local":  # the middle of both orders: 0.5 whichever raters are drawn
            assert low == pytest.approx(0.5) and high == pytest.approx(0.5)
        else:
            assert low < 0.4 and high > 0.6


def test_a_rater_who_misses_the_hidden_reference_is_set_aside(study):
    with AnswerStore(study.answers_path) as store:
        rater = store.new_rater("deaf", study.plan)
        for i, trial in enumerate(store.plan(rater)):
            answer = _answer(trial, i)
            if trial.kind == "mushra":
                answer["response"]["ratings"] = [50] * len(trial.stimuli)
            store.add(rater, i, trial, answer["response"], answer["plays"], answer["ms"])
    result = analyze(study, replicates=50, keep_all=False)
    assert "hidden reference below 90" in result.raters[0]["set_aside"]
    assert result.counts["raters_kept"] == 0 and result.preference == []
    assert "0 of 1 raters kept" in report_markdown(study, result)


def test_analysing_a_study_without_answers_is_one_line(study):
    with pytest.raises(TadaError, match="no answers yet"):
        analyze(study)
    AnswerStore(study.answers_path).close()
    with pytest.raises(TadaError, match="no answers yet"):
        analyze(study)


def test_the_commands_make_and_analyze_a_study(tmp_path):
    from conftest import run_cli

    clips = bench_folder(tmp_path / "run")
    made = run_cli("study", "make", "--clips", str(clips), "--out", str(tmp_path / "s"), "--ab-trials", "3")
    assert made.returncode == 0, made.stderr
    assert "8 items, 2 conditions, 8 A/B pairs, 8 MUSHRA pages; each rater gets 13 pages" in made.stdout
    study = Study.load(tmp_path / "s")
    _simulate(study, 3, lambda s: "caa-local" if "caa-local" in s else min(s, key=lambda c: c == ANCHOR))
    done = run_cli("study", "analyze", str(tmp_path / "s"), "--replicates", "100")
    assert done.returncode == 0, done.stderr
    assert "| CAA (loc.) | 9 | 1.00 [" in done.stdout and "3 of 3 raters kept" in done.stdout
    assert (tmp_path / "s" / "analysis" / "preference.png").is_file()
