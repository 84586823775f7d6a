"""The offline scorer: features, API on a random tiny model, training resume, CLI. No real training."""

from __future__ import annotations

import json
import subprocess

import numpy as np
import pytest
import soundfile as sf
import torch
from conftest import run_cli
from safetensors.torch import load_file

from tada.errors import TadaError
from tada.scorer import Scorer, features
from tada.scorer.model import TextAudioScorer
from tada.scorer.probes import roc_auc
from tada.scorer.train import train

SR = features.SAMPLE_RATE
TINY = {"channels": [4, 8], "embed_dim": 16, "text_hidden": 16}


def tone(freq: float, seconds: float = 1.0, sr: int = SR, seed: int = 0) -> np.ndarray:
    t = np.arange(int(seconds * sr)) / sr
    noise = np.random.default_rng(seed).normal(0, 0.01, t.shape)
    return (0.3 * np.sin(2 * np.pi * freq * t) + noise).astype(np.float32)


@pytest.fixture(scope="module")
def weights(tmp_path_factory):
    torch.manual_seed(0)
    model = TextAudioScorer(**TINY, instruments=["piano", "violin"], genres=["jazz", "rock"]).eval()
    path = tmp_path_factory.mktemp("scorer") / "weights"
    model.save_pretrained(str(path))
    return path


@pytest.fixture(scope="module")
def scorer(weights):
    return Scorer.load(weights)


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    """Ten 1.5 s synthetic clips (sine tones) with labels in the generator's format."""
    root = tmp_path_factory.mktemp("corpus")
    (root / "audio").mkdir()
    lines = []
    for i in range(10):
        piano = i % 2 == 0
        path = f"audio/clip-{i}.wav"
        sf.write(root / path, tone(220 * (1 + i % 4), 1.5, seed=i), SR)
        genre, instrument = ("jazz", "piano") if piano else ("rock", "violin")
        vocals = {"gender": "female" if i % 2 else "male", "style": "rap" if i % 4 else "sung"}
        lines.append(
            {
                "id": f"clip-{i}",
                "path": path,
                "caption": f"A {'fast' if i % 3 else 'slow'} {genre} song, {instrument}",
                "bpm": 80 + 10 * i,
                "mode": "major" if i % 2 else "minor",
                "genre": genre,
                "instruments": ["piano"] if piano else ["violin", "drums"],
                "vocals": None if i % 3 == 0 else vocals,
                "seed": i,
            }
        )
    (root / "labels.jsonl").write_text("".join(json.dumps(line) + "\n" for line in lines))
    return root


def tiny_config(**overrides):
    config = json.loads(open("configs/scorer.json").read())
    config.update(
        model=TINY,
        batch_size=4,
        steps=3,
        warmup_steps=1,
        checkpoint_every=1,
        eval_every=2,
        holdout_seeds=[0, 2],
        crop_seconds=1.0,
        **overrides,
    )
    return config


# -- features ----------------------------------------------------------------------------
def test_features_shape_and_determinism():
    wave = features.to_mono_16k(tone(440), SR)
    feats = features.clip_features(wave)
    assert feats.shape == (features.N_MELS + features.N_CHROMA, SR // features.HOP + 1)
    assert torch.equal(feats, features.clip_features(wave)) and torch.isfinite(feats).all()
    stereo = np.stack([tone(440), tone(440)])
    assert torch.allclose(features.clip_features(features.to_mono_16k(stereo, SR)), feats)
    chroma = features.chroma(wave)
    assert chroma.max() <= 1 and chroma.mean(-1).argmax() == 9  # A
    assert features.chroma(torch.zeros(SR)).abs().max() == 0


def test_chroma_resolves_the_third_of_a_low_chord():
    # C major vs C minor voiced at C3 (131 Hz), where an STFT chroma smears semitones
    t = np.arange(2 * SR) / SR

    def chord(*midi):
        return features.to_mono_16k(sum(np.sin(2 * np.pi * 440 * 2 ** ((m - 69) / 12) * t) for m in midi) / 3, SR)

    major = features.chroma(chord(48, 52, 55)).mean(-1)
    minor = features.chroma(chord(48, 51, 55)).mean(-1)
    assert set(major.topk(3).indices.tolist()) == {0, 4, 7} and set(minor.topk(3).indices.tolist()) == {0, 3, 7}
    assert major[3] < 0.05 and minor[4] < 0.05  # the other third is not lit by leakage


def test_other_rates_are_resampled():
    wave = features.to_mono_16k(tone(440, sr=44_100), 44_100)
    assert wave.shape == (SR,)
    mel = features.log_mel(wave)
    peak = features.log_mel(features.to_mono_16k(tone(440), SR)).mean(-1).argmax()
    assert mel.mean(-1).argmax() == peak


@pytest.mark.parametrize(
    "audio, message",
    [
        (np.zeros(0, np.float32), "empty"),
        (np.full(SR, np.nan, np.float32), "NaN"),
        (np.zeros(100, np.float32), "at least"),
        (np.zeros((SR, 2), np.float32), "channels"),
    ],
)
def test_bad_audio_is_refused(audio, message):
    with pytest.raises(TadaError, match=message):
        features.to_mono_16k(audio, SR)


# -- API -----------------------------------------------------------------------------------
def test_similarity_shape_and_range(scorer):
    clips = [tone(220), tone(440, 2.0), tone(880)]
    sims = scorer.similarity(clips, SR, ["a piano song", "a fast track"])
    assert sims.shape == (3, 2) and (sims.abs() <= 1 + 1e-5).all()
    batch = scorer.embed_audio(np.stack([tone(220), tone(880)])[:, None, :], SR)
    assert torch.allclose(batch, scorer.embed_audio([tone(220), tone(880)], SR), atol=1e-5)
    assert torch.allclose(scorer.embed_audio(tone(220), SR), scorer.embed_audio(torch.from_numpy(tone(220)), SR))
    assert torch.equal(scorer.embed_text("a piano song"), scorer.embed_text(["a piano song"]))
    with pytest.raises(TadaError, match="empty"):
        scorer.embed_text(["a piano song", "  "])


def test_preservation_distance(scorer):
    a, b = tone(220, 2.0), tone(660, 2.0, seed=1)
    assert scorer.preservation_distance(a, a.copy(), SR) == 0.0
    d_ab, d_ba = scorer.preservation_distance(a, b, SR), scorer.preservation_distance(b, a, SR)
    assert d_ab > 0 and d_ab == d_ba


def test_file_helpers(scorer, tmp_path):
    path = tmp_path / "a.wav"
    sf.write(path, tone(330, sr=22_050), 22_050, subtype="FLOAT")
    expected = scorer.embed_audio(tone(330, sr=22_050), 22_050)
    assert torch.allclose(scorer.embed_files([path]), expected)
    assert scorer.preservation_distance_files(path, path) == 0.0
    with pytest.raises(TadaError, match="does not exist"):
        scorer.embed_files([tmp_path / "missing.wav"])


def test_save_load_round_trip_is_bitwise(weights, scorer, tmp_path):
    scorer.model.save_pretrained(str(tmp_path / "again"))
    again = Scorer.load(tmp_path / "again")
    for (name, a), (_, b) in zip(scorer.model.state_dict().items(), again.model.state_dict().items()):
        assert torch.equal(a, b), name
    assert torch.equal(
        load_file(str(weights / "diffusion_pytorch_model.safetensors"))["logit_scale"], scorer.model.logit_scale.data
    )
    with pytest.raises(TadaError, match="no scorer weights"):
        Scorer.load(tmp_path / "nowhere")


def test_roc_auc():
    assert roc_auc(np.array([2.0, 3.0]), np.array([0.0, 1.0])) == 1.0
    assert roc_auc(np.array([1.0]), np.array([1.0])) == 0.5


# -- training --------------------------------------------------------------------------------
def test_training_resumes_to_the_same_weights(corpus, tmp_path):
    torch.set_num_threads(1)
    straight = train(corpus, tiny_config(), tmp_path / "straight", progress=False)
    assert straight.step == 3 and (tmp_path / "straight" / "model" / "config.json").is_file()
    assert (tmp_path / "straight" / "loss.png").is_file() and straight.evals
    provenance = json.loads((tmp_path / "straight" / "model" / "training.json").read_text())
    assert provenance["trained_seeds"] == [[2, 10]]

    first = train(corpus, tiny_config(), tmp_path / "resumed", until_step=2, progress=False)
    assert first.step == 2 and not (tmp_path / "resumed" / "model").exists()
    resumed = train(corpus, tiny_config(), tmp_path / "resumed", progress=False)
    assert resumed.step == 3
    for name, tensor in straight.model.state_dict().items():
        assert torch.equal(tensor, resumed.model.state_dict()[name]), name
    assert [h["loss"] for h in straight.history] == [h["loss"] for h in resumed.history]
    with pytest.raises(TadaError, match="different run"):
        train(corpus, tiny_config(seed=1), tmp_path / "resumed", progress=False)


def test_focus_texts_cover_the_concepts_and_never_the_evaluation_wordings():
    from tada.concepts import CONCEPTS
    from tada.scorer.focus import focus_groups
    from tada.scorer.probes import TESTS

    groups = {
        g.name: g
        for g in focus_groups(
            ["acoustic guitar", "electric guitar", "piano", "violin"], ["classical", "electronic", "jazz", "rock"]
        )
    }
    for name in (
        "mood:major",
        "mood:minor",
        "tempo:fast",
        "tempo:slow",
        "voice:female",
        "voice:male",
        "voice:rap",
        "voice:sung",
        "instrument:piano",
        "instrument:violin",
        "instrument:acoustic guitar",
        "instrument:electric guitar",
        "genre:jazz",
        "genre:rock",
        "genre:classical",
        "genre:electronic",
    ):
        assert len(groups[name].texts) >= 5, name
    texts = {t.lower() for g in groups.values() for t in g.texts}
    evaluation = {c.probe.lower() for c in CONCEPTS.values()} | {
        p.lower() for t in TESTS.values() for p in t.paraphrases
    }
    assert not texts & evaluation
    assert "an uplifting song" in texts and "a uplifting song" not in texts  # articles agree
    # every extra synonym list reaches a group (a misspelt key would silently drop it)
    from tada.scorer.focus import MORE_WORDS

    assert set(MORE_WORDS) <= set(groups)
    assert all(word in " ".join(groups[name].texts) for name, words in MORE_WORDS.items() for word in words)
    # vocal style texts never name a gender, so the gender probes do not learn the style direction
    for name in ("voice:sung", "voice:rap"):
        assert not any(w in t.split() for t in groups[name].texts for w in ("female", "male", "woman", "man"))


def test_focus_labels_follow_the_clip_attributes():
    from tada.scorer.focus import FocusBank, focus_groups

    groups = focus_groups(["piano"], ["jazz", "rock"])
    bank = FocusBank(groups, lambda texts: torch.zeros(len(texts), 4))
    target = {
        "mode_major": torch.tensor([1.0, 0.0, 1.0]),
        "bpm": torch.tensor([140.0, 70.0, 100.0]),
        "vocal_female": torch.tensor([1.0, 0.0, -1.0]),
        "vocal_rap": torch.tensor([0.0, 1.0, -1.0]),
        "has_vocals": torch.tensor([1.0, 1.0, 0.0]),
        "instruments": torch.tensor([[1.0], [0.0], [1.0]]),
        "genre": torch.tensor([0, 1, 1]),
    }
    labels = bank.labels(target)
    column = {g.name: i for i, g in enumerate(groups)}
    expect = {
        "mood:major": [1, 0, 1],
        "mood:minor": [0, 1, 0],
        "tempo:fast": [1, 0, -1],
        "tempo:slow": [0, 1, -1],
        "voice:female": [1, 0, -1],
        "voice:male": [0, 1, -1],
        "voice:rap": [0, 1, -1],
        "voice:sung": [1, 0, -1],
        "vocals:none": [0, 0, 1],
        "instrument:piano": [1, 0, 1],
        "genre:jazz": [1, 0, 0],
        "genre:rock": [0, 1, 1],
    }
    for name, values in expect.items():
        assert labels[:, column[name]].tolist() == values, name
    # draws are reproducible per generator and differ from the fixed evaluation texts somewhere
    assert torch.equal(bank.draw(torch.Generator().manual_seed(3)), bank.draw(torch.Generator().manual_seed(3)))


def test_focus_loss_rewards_ranking_the_labelled_clips_first():
    from tada.scorer.focus import focus_loss

    labels = torch.tensor([[1.0, -1.0], [0.0, 1.0], [1.0, 0.0]])
    right = torch.tensor([[5.0, 0.0], [-5.0, 5.0], [5.0, -5.0]])
    assert focus_loss(right, labels) < 0.01
    assert focus_loss(-right, labels) > 5.0
    # clips labelled -1 and groups without a (has, opposite) pair take no part
    assert focus_loss(right, torch.tensor([[1.0, -1.0], [1.0, -1.0], [1.0, -1.0]])) == 0.0
    assert torch.allclose(
        focus_loss(right.clone().index_put_((torch.tensor(0), torch.tensor(1)), torch.tensor(99.0)), labels),
        focus_loss(right, labels),
    )


def test_training_with_the_focus_loss_runs_and_reports_it(corpus, tmp_path):
    config = tiny_config()
    config["loss_weights"] = {**config["loss_weights"], "focus": 1.0}
    trainer = train(corpus, config, tmp_path / "focus", progress=False)
    assert all(np.isfinite(h["focus"]) for h in trainer.history)
    assert "val_focus" in trainer.evals[-1]


# -- CLI --------------------------------------------------------------------------------------
def one_error_line(result: subprocess.CompletedProcess, fragment: str) -> None:
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert result.returncode == 2 and len(lines) == 1 and lines[0].startswith("error: "), result.stderr
    assert fragment in lines[0]


def test_cli_score(weights, tmp_path):
    a, b = tmp_path / "a.wav", tmp_path / "b.wav"
    sf.write(a, tone(220), SR)
    sf.write(b, tone(440), SR)
    result = run_cli(
        "score", str(a), str(b), "--text", "a piano song", "--text", "a fast track", "--json", "--weights", str(weights)
    )
    assert result.returncode == 0, result.stderr
    rows = json.loads(result.stdout)
    assert [(r["audio"], r["text"]) for r in rows] == [
        (str(a), "a piano song"),
        (str(a), "a fast track"),
        (str(b), "a piano song"),
        (str(b), "a fast track"),
    ]
    assert all(-1 <= r["similarity"] <= 1 for r in rows)
    table = run_cli("score", str(a), "--text", "a piano song", "--weights", str(weights))
    assert table.returncode == 0 and table.stdout.splitlines()[0].split() == ["similarity", "text", "audio"]


def test_cli_score_errors(weights, tmp_path):
    good, bad = tmp_path / "good.wav", tmp_path / "bad.wav"
    sf.write(good, tone(220), SR)
    bad.write_bytes(b"not audio at all")
    one_error_line(
        run_cli("score", str(tmp_path / "missing.wav"), "--text", "x", "--weights", str(weights)), "does not exist"
    )
    one_error_line(run_cli("score", str(good), "--text", " ", "--weights", str(weights)), "empty")
    one_error_line(run_cli("score", str(bad), "--text", "a piano song", "--weights", str(weights)), "cannot read")
    one_error_line(run_cli("score", str(good), "--text", "x", "--weights", str(tmp_path)), "no scorer weights")


def test_encoder_margins_are_positive_minus_negative_similarity():
    from tada.concepts import CONCEPTS
    from tada.scorer.probes import TESTS, encoder_margins

    guitar = CONCEPTS["guitar"]
    acoustic, electric = guitar.positive.format(p="music"), guitar.negative.format(p="music")

    def encode(texts):  # acoustic prompt -> e0, electric prompt -> e1, any probe -> 0.6 e0 + 0.8 e1
        rows = {acoustic: [1.0, 0.0], electric: [0.0, 1.0]}
        return np.array([rows.get(t, [0.6, 0.8]) for t in texts])

    margins = encoder_margins(encode)
    assert set(margins["guitar"]) == {TESTS["guitar"].probe, *TESTS["guitar"].paraphrases}
    assert all(m == pytest.approx(0.6 - 0.8) for m in margins["guitar"].values())
