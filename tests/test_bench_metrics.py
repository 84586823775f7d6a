"""The benchmark's per-clip metrics: alignment plug-ins (a tiny random CLAP built here, the scorer) and quality."""

from __future__ import annotations

import importlib.util
import os

import numpy as np
import pytest
import torch

from tada.bench.metrics import (
    DEFAULT_K,
    MUQ_MISSING,
    QUALITY_FIRST_SEED,
    ClapAlignment,
    MuqAlignment,
    QualityReference,
    ScorerAlignment,
    alignment_plugins,
    frechet_distance,
    frechet_gaussians,
    render_heldout_clips,
    typicality,
)
from tada.errors import ArtifactError, TadaError

TEXT = "a piano song"
WORDS = "<s> <pad> </s> <unk> <mask> a piano song violin sad happy fast slow jazz rock".split()
RATE = 48_000  # the tiny extractor's rate, as LAION's


def tone(f0: float, sr: int, seconds: float = 0.8) -> np.ndarray:
    """A decaying two-partial tone, defined in continuous time: the same signal at any rate (partials < 4 kHz)."""
    t = np.arange(int(seconds * sr)) / sr
    return (0.3 * np.sin(2 * np.pi * f0 * t) + 0.2 * np.sin(2 * np.pi * 3.1 * f0 * t) * np.exp(-2 * t)).astype(
        np.float32
    )


def one_line(exc: pytest.ExceptionInfo) -> str:
    message = str(exc.value)
    assert "\n" not in message and message
    return message


# --------------------------------------------------------------------------- a tiny CLAP


@pytest.fixture(scope="module")
def clap_dir(tmp_path_factory):
    """A random CLAP (RoBERTa-like text tower, HTSAT audio tower) saved with its processor, all tiny."""
    from tokenizers import Tokenizer, normalizers, pre_tokenizers
    from tokenizers.models import WordLevel
    from transformers import ClapConfig, ClapFeatureExtractor, ClapModel, ClapProcessor, RobertaTokenizer

    backend = Tokenizer(WordLevel({word: i for i, word in enumerate(WORDS)}, unk_token="<unk>"))
    backend.normalizer = normalizers.Lowercase()
    backend.pre_tokenizer = pre_tokenizers.Whitespace()
    tokenizer = RobertaTokenizer(tokenizer_object=backend, model_max_length=32)
    # 1 s windows, 16 mel bands: 101 frames, resized by the model to its 64-wide spectrogram "image".
    extractor = ClapFeatureExtractor(
        feature_size=16, sampling_rate=RATE, hop_length=480, max_length_s=1, fft_window_size=1024,
        truncation="rand_trunc",
    )  # fmt: skip
    config = ClapConfig(
        text_config={
            "vocab_size": len(WORDS),
            "hidden_size": 16,
            "intermediate_size": 32,
            "num_hidden_layers": 1,
            "num_attention_heads": 2,
            "max_position_embeddings": 40,
            "projection_dim": 8,
        },
        audio_config={
            "depths": [1, 1],
            "num_attention_heads": [2, 2],
            "patch_embeds_hidden_size": 8,
            "hidden_size": 16,
            "projection_dim": 8,
            "spec_size": 64,
            "num_mel_bins": 16,
            "window_size": 8,
        },
        projection_dim=8,
    )
    torch.manual_seed(0)
    path = tmp_path_factory.mktemp("clap") / "tiny-clap"
    ClapModel(config).eval().save_pretrained(str(path))
    ClapProcessor(feature_extractor=extractor, tokenizer=tokenizer).save_pretrained(str(path))
    return path


@pytest.fixture(scope="module")
def clap(clap_dir):
    return ClapAlignment.from_pretrained(clap_dir, batch_size=4)


def hand_cosine(clap: ClapAlignment, clips: list[np.ndarray], text: str) -> np.ndarray:
    """The cosine from the processor's outputs through get_audio_features / get_text_features, by hand."""
    audio = clap.processor(audio=clips, sampling_rate=RATE, return_tensors="pt")
    words = clap.processor(text=[text], return_tensors="pt")
    with torch.no_grad():
        a = clap.model.get_audio_features(input_features=audio["input_features"], is_longer=audio["is_longer"])
        t = clap.model.get_text_features(input_ids=words["input_ids"], attention_mask=words["attention_mask"])
    a, t = getattr(a, "pooler_output", a), getattr(t, "pooler_output", t)
    a, t = a / a.norm(dim=-1, keepdim=True), t / t.norm(dim=-1, keepdim=True)
    return (a @ t.T)[:, 0].double().numpy()


def test_clap_scores_are_the_cosine_of_the_model_features(clap):
    rng = np.random.default_rng(0)
    clips = [tone(220, RATE), tone(440, RATE), tone(880, RATE), rng.normal(0, 0.1, RATE).astype(np.float32)]
    scores = clap.score(clips, RATE, TEXT)
    assert scores.shape == (4,)
    assert np.all(np.abs(scores) <= 1.0)
    np.testing.assert_allclose(scores, hand_cosine(clap, clips, TEXT), rtol=0, atol=1e-5)
    assert np.min(np.abs(np.diff(np.sort(scores)))) > 1e-3  # different clips, different scores
    twins = clap.score([clips[0], clips[1], clips[0]], RATE, TEXT)
    np.testing.assert_allclose(twins[0], twins[2], rtol=0, atol=1e-7)
    assert clap.name == "clap" and clap.fingerprint() == clap.fingerprint() and len(clap.fingerprint()) == 16


def test_clap_scores_do_not_depend_on_the_batch(clap_dir, clap):
    clips = [tone(f, RATE, s) for f, s in ((220, 0.8), (330, 2.5), (550, 1.0), (700, 0.3), (990, 1.7))]
    one_at_a_time = ClapAlignment.from_pretrained(clap_dir, batch_size=1)
    batched = clap.score(clips, RATE, TEXT)
    np.testing.assert_allclose(one_at_a_time.score(clips, RATE, TEXT), batched, rtol=0, atol=1e-5)
    np.testing.assert_allclose(clap.score(clips[::-1], RATE, TEXT)[::-1], batched, rtol=0, atol=1e-5)


def test_a_long_clip_is_the_mean_of_its_windows_every_time(clap):
    long = tone(330, RATE, 2.5)  # 1 s windows at 0, 0.75 and 1.5 s
    windows = [long[s : s + RATE] for s in (0, 36_000, 72_000)]
    expected = clap.embed_audio(windows, RATE).mean(dim=0)
    expected = expected / expected.norm()
    embedding = clap.embed_audio([long], RATE)[0]
    torch.testing.assert_close(embedding, expected, rtol=0, atol=1e-6)
    assert clap.score([long], RATE, TEXT)[0] == clap.score([long], RATE, TEXT)[0]  # no random crop


def test_clap_mixes_stereo_to_mono_and_resamples(clap):
    left, right = tone(220, RATE), tone(500, RATE)
    stereo = np.stack([left, right])
    np.testing.assert_allclose(
        clap.score([stereo], RATE, TEXT), clap.score([(left + right) / 2], RATE, TEXT), rtol=0, atol=1e-6
    )
    at_16k, at_48k = clap.score([tone(220, 16_000)], 16_000, TEXT), clap.score([left], RATE, TEXT)
    other = clap.score([tone(440, RATE)], RATE, TEXT)
    assert abs(at_16k[0] - at_48k[0]) < 0.05 * abs(other[0] - at_48k[0])
    assert float(clap.embed_audio([tone(220, 16_000)], 16_000) @ clap.embed_audio([left], RATE).T) > 0.999
    torch_clip = clap.score([torch.from_numpy(left)], RATE, TEXT)
    np.testing.assert_allclose(torch_clip, at_48k, rtol=0, atol=1e-7)


def test_clap_refuses_what_it_cannot_load_in_one_line(tmp_path):
    with pytest.raises(TadaError) as exc:
        ClapAlignment.from_pretrained("laion/larger_clap_music")  # offline (conftest) and not cached
    message = one_line(exc)
    assert "laion/larger_clap_music" in message and "directory" in message and "HF_HUB_OFFLINE" in message
    (tmp_path / "empty").mkdir()
    with pytest.raises(TadaError) as exc:
        ClapAlignment.from_pretrained(tmp_path / "empty")
    assert "cannot load a CLAP model from" in one_line(exc)
    (tmp_path / "weights.bin").write_bytes(b"x")
    with pytest.raises(TadaError, match="is a file"):
        ClapAlignment.from_pretrained(tmp_path / "weights.bin")


def test_bad_audio_and_text_are_refused(clap):
    with pytest.raises(TadaError, match="empty"):
        clap.score([tone(220, RATE)], RATE, "  ")
    with pytest.raises(TadaError, match="NaN"):
        clap.score([np.full(RATE, np.nan, np.float32)], RATE, TEXT)
    with pytest.raises(TadaError, match="channels"):
        clap.score([np.zeros((RATE, 2), np.float32)], RATE, TEXT)  # (samples, channels): the wrong way round
    assert clap.score([], RATE, TEXT).shape == (0,)


# --------------------------------------------------------------------------- MuQ-MuLan


@pytest.mark.skipif(importlib.util.find_spec("muq") is not None, reason="the muq package is installed here")
def test_muq_without_the_package_fails_in_one_line(tmp_path):
    with pytest.raises(TadaError) as exc:
        MuqAlignment.from_pretrained(tmp_path)
    assert one_line(exc) == MUQ_MISSING
    with pytest.raises(TadaError) as exc:
        alignment_plugins(["muq"], muq=tmp_path)
    assert one_line(exc) == MUQ_MISSING


@pytest.mark.skipif(
    importlib.util.find_spec("muq") is None or not os.environ.get("TADA_TEST_MUQ"),
    reason="MuQ-MuLan's call path needs the muq package and its weights (TADA_TEST_MUQ=DIR); neither is here",
)
def test_muq_scores_with_real_weights():
    muq = MuqAlignment.from_pretrained(os.environ["TADA_TEST_MUQ"])
    scores = muq.score([tone(220, 24_000, 3.0), tone(440, 44_100, 3.0)], 24_000, TEXT)
    assert scores.shape == (2,) and np.all(np.abs(scores) <= 1.0 + 1e-6)


# --------------------------------------------------------------------------- the scorer, and choosing plug-ins


@pytest.fixture(scope="module")
def scorer(tmp_path_factory):
    from tada.scorer import Scorer
    from tada.scorer.model import TextAudioScorer

    torch.manual_seed(0)
    model = TextAudioScorer(channels=[4, 8], embed_dim=16, text_hidden=16, instruments=["piano"], genres=["jazz"])
    path = tmp_path_factory.mktemp("scorer") / "weights"
    model.eval().save_pretrained(str(path))
    return Scorer.load(path)


def test_the_probe_is_the_scorer_similarity(scorer):
    clips = [tone(220, 16_000, 1.0), tone(660, 16_000, 1.0)]
    probe = ScorerAlignment(scorer)
    scores = probe.score(clips, 16_000, TEXT)
    assert probe.name == "probe" and scores.shape == (2,)
    np.testing.assert_allclose(scores, scorer.similarity(clips, 16_000, TEXT)[:, 0].numpy(), rtol=0, atol=1e-6)
    assert probe.fingerprint() == scorer.fingerprint
    # the benchmark embeds each clip once and scores from the embeddings: the same numbers, bitwise
    assert np.array_equal(probe.from_embeddings(scorer.embed_audio(clips, 16_000), TEXT), scores)


def test_alignment_plugins_by_name(scorer, clap_dir):
    plugins = alignment_plugins(["clap", "probe", "clap"], scorer, clap=clap_dir)
    assert [p.name for p in plugins] == ["clap", "probe"]
    assert isinstance(plugins[0], ClapAlignment) and isinstance(plugins[1], ScorerAlignment)
    for names, kwargs, message in (
        (["probe", "fad"], {}, "unknown alignment metric 'fad'"),
        (["clap"], {}, "needs a CLAP model"),
        ([], {}, "at least one"),
    ):
        with pytest.raises(TadaError) as exc:
            alignment_plugins(names, scorer, **kwargs)
        assert message in one_line(exc)
    with pytest.raises(TadaError, match="needs tada's scorer"):
        alignment_plugins(["probe"])


# --------------------------------------------------------------------------- quality


DIM = 32
STD = np.linspace(1.0, 0.05, DIM)  # anisotropic, so principal axes matter


def gaussian(n: int, seed: int, shift: float = 0.0) -> np.ndarray:
    rotation = np.linalg.qr(np.random.default_rng(99).normal(size=(DIM, DIM)))[0]
    points = np.random.default_rng(seed).normal(size=(n, DIM)) * STD
    return (points + shift) @ rotation.T + 0.5


@pytest.fixture(scope="module")
def reference_set():
    return gaussian(600, 1)


@pytest.fixture(scope="module")
def reference(reference_set):
    return QualityReference.from_embeddings(reference_set, "scorer-fp", k=8)


def test_frechet_gaussians_matches_the_closed_form_for_diagonal_covariances():
    rng = np.random.default_rng(0)
    m1, m2 = rng.normal(size=6), rng.normal(size=6)
    v1, v2 = rng.uniform(0.1, 2.0, 6), rng.uniform(0.1, 2.0, 6)
    closed = np.sum((m1 - m2) ** 2) + np.sum((np.sqrt(v1) - np.sqrt(v2)) ** 2)
    assert frechet_gaussians(m1, np.diag(v1), m2, np.diag(v2)) == pytest.approx(closed, rel=1e-9)
    assert frechet_gaussians(m1, np.diag(v1), m1, np.diag(v1)) == pytest.approx(0.0, abs=1e-12)
    singular = np.diag([1.0, 0.5, 0.0, 0.0, 0.0, 0.0])  # fewer samples than dimensions: regularised, still ~0
    assert frechet_gaussians(m1, singular, m1, singular) == pytest.approx(0.0, abs=1e-6)


def test_frechet_distance_to_the_reference(reference_set, reference):
    assert frechet_distance(reference_set, reference) == pytest.approx(0.0, abs=1e-9)
    assert frechet_distance(reference_set, reference, k=DIM) == pytest.approx(0.0, abs=1e-9)
    sample = gaussian(32, 2)
    near = frechet_distance(sample, reference)
    shifted = [frechet_distance(gaussian(32, 2, shift=s), reference) for s in (0.5, 1.0, 2.0, 4.0)]
    assert 0 <= near < shifted[0] < shifted[1] < shifted[2] < shifted[3]
    # the full space (k = dim) is a rotation of the embedding space: FD of the raw moments
    raw = frechet_gaussians(sample.mean(0), np.cov(sample, rowvar=False), reference.mean, reference.covariance)
    assert frechet_distance(sample, reference, k=DIM) == pytest.approx(raw, rel=1e-6)
    # ... and there it is symmetric (n = 40 > dim, so both covariances are regular)
    a, b = gaussian(40, 3), gaussian(40, 4, shift=0.3)
    ab = frechet_distance(a, QualityReference.from_embeddings(b, "s", k=8), k=DIM)
    ba = frechet_distance(b, QualityReference.from_embeddings(a, "s", k=8), k=DIM)
    assert ab == pytest.approx(ba, rel=1e-6) and ab > 0
    with pytest.raises(TadaError, match="at least 2 clips"):
        frechet_distance(sample[:1], reference)


def test_typicality(reference_set, reference):
    own = typicality(reference_set, reference)
    assert own.shape == (600,)
    assert own.mean() == pytest.approx(-(600 - 1) / 600, abs=1e-9)  # in-sample: exactly -(n-1)/n
    assert typicality(gaussian(200, 5), reference).mean() == pytest.approx(-1.0, abs=0.15)  # fresh clips alike
    far = typicality(gaussian(32, 6, shift=3.0), reference)
    assert far.max() < -5 * abs(own.mean())
    direction = np.random.default_rng(7).normal(size=DIM)
    line = reference.mean + np.outer(np.linspace(0, 3, 7), direction / np.linalg.norm(direction))
    assert np.all(np.diff(typicality(line, reference)) < 0)  # monotone in the distance from the mean
    assert typicality(torch.from_numpy(line[0]), reference).shape == (1,)
    # a clip that leaves the reference off its top-k axes: invisible to the top-k term alone, not to the residual
    sideways = reference.mean + 5.0 * reference.components[:, -1]
    assert typicality(sideways, reference, residual=False)[0] == pytest.approx(0.0, abs=1e-9)
    assert typicality(sideways, reference)[0] < -3
    top_only = typicality(reference_set, reference, residual=False)
    assert top_only.mean() == pytest.approx(-(600 - 1) / 600, abs=1e-9)
    assert np.all(np.diff(typicality(line, reference, residual=False)) < 0)
    full = typicality(reference_set, reference, k=DIM)  # all axes: the plain Mahalanobis distance per dimension
    assert full.mean() == pytest.approx(-(600 - 1) / 600, abs=1e-9)
    np.testing.assert_allclose(typicality(reference_set, reference, k=DIM, residual=False), full, rtol=1e-12)


def test_k_is_bounded_by_what_the_reference_resolves(reference_set):
    small = QualityReference.from_embeddings(reference_set[:5], "s", k=4)
    assert small.max_k == 4
    for bad in (0, 5, DIM + 1):
        with pytest.raises(TadaError, match="k"):
            typicality(reference_set[:3], small, k=bad)
    with pytest.raises(TadaError, match="resolves 4"):
        QualityReference.from_embeddings(reference_set[:5], "s")  # DEFAULT_K = 16
    with pytest.raises(TadaError, match="dimensions"):
        frechet_distance(np.zeros((4, DIM + 1)), small)


def test_reference_files_round_trip(reference, tmp_path):
    path = reference.save(tmp_path / "ref.safetensors")
    again = QualityReference.load(path)
    for field in ("mean", "covariance", "components", "variances"):
        np.testing.assert_array_equal(getattr(again, field), getattr(reference, field))
    assert (again.n, again.k, again.scorer_fingerprint, again.seeds) == (600, 8, "scorer-fp", None)
    assert again.fingerprint == reference.fingerprint
    assert again.save(tmp_path / "again.safetensors").read_bytes() == path.read_bytes()
    (tmp_path / "junk.safetensors").write_bytes(b"not a file")
    with pytest.raises(ArtifactError) as exc:
        QualityReference.load(tmp_path / "junk.safetensors")
    one_line(exc)
    from tada.files import write_safetensors

    write_safetensors(tmp_path / "other.safetensors", {"x": torch.zeros(1)}, {"format": "tada/other"})
    with pytest.raises(ArtifactError, match="not a tada quality reference"):
        QualityReference.load(tmp_path / "other.safetensors")


def test_build_records_the_scorer_the_seeds_and_n(scorer):
    clips = [tone(110 * (1 + i), 16_000, 1.0) for i in range(6)]
    ref = QualityReference.build(scorer, clips, 16_000, seeds=range(QUALITY_FIRST_SEED, QUALITY_FIRST_SEED + 6), k=3)
    assert ref.dim == 16 and ref.n == 6 and ref.k == 3
    assert ref.fingerprint.startswith(f"scorer={scorer.fingerprint};seeds=20000000-20000005;n=6;seconds=none;k=3;")
    np.testing.assert_allclose(ref.mean, scorer.embed_audio(clips, 16_000).double().numpy().mean(0), atol=1e-12)
    ref.check_scorer(scorer)
    with pytest.raises(TadaError, match="built with scorer"):
        QualityReference.from_embeddings(ref.components.T[:5], "another", k=3).check_scorer(scorer)
    assert DEFAULT_K == 16


def test_heldout_clips_are_rendered_from_untrained_seeds(scorer):
    with pytest.raises(TadaError, match="overlap the corpus seeds"):
        render_heldout_clips(2, first_seed=5_999)
    from tada.data.render import check_tools

    try:
        check_tools()
    except TadaError as exc:
        pytest.skip(f"rendering tools missing: {exc}")
    clips = render_heldout_clips(2, seconds=1.0)
    assert [c.shape for c in clips] == [(16_000,), (16_000,)] and clips[0].dtype == np.float32
    np.testing.assert_array_equal(render_heldout_clips(1, seconds=1.0)[0], clips[0])  # a seed fixes its clip
    assert not np.array_equal(clips[0], clips[1])
    ref = QualityReference.from_heldout(scorer, n=3, seconds=1.0, k=2)
    assert ref.seeds == (QUALITY_FIRST_SEED, QUALITY_FIRST_SEED + 1, QUALITY_FIRST_SEED + 2) and ref.seconds == 1.0
    assert ";seeds=20000000-20000002;n=3;seconds=1;k=2;" in ref.fingerprint
