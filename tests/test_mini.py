"""tada-mini: mel front end, models, pipeline, adapter, training stages (tiny configs, CPU)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch

from tada.errors import TadaError
from tada.mini import mel
from tada.mini.autoencoder import MelAutoencoder
from tada.mini.transformer import TadaMiniTransformer

SR = mel.SAMPLE_RATE


def chord_wave(midi: tuple[int, ...], seconds: float = 1.0, seed: int = 0) -> np.ndarray:
    t = np.arange(int(seconds * SR)) / SR
    rng = np.random.default_rng(seed)
    wave = sum(np.sin(2 * np.pi * 440 * 2 ** ((m - 69) / 12) * t + rng.uniform(0, 6)) for m in midi)
    return (0.3 * wave / len(midi)).astype(np.float32)


# -- mel front end ------------------------------------------------------------------------
def test_log_mel_shape_and_griffin_lim_round_trip():
    wave = torch.from_numpy(chord_wave((60, 64, 67)))
    spec = mel.log_mel(wave)
    assert spec.shape == (mel.N_MELS, mel.frames_for(SR))
    audio = mel.mel_to_audio(spec)
    assert audio.shape == (mel.samples_for(spec.shape[-1]),) and torch.isfinite(audio).all()
    # the rebuilt waveform has the same mel spectrum (phase is free, magnitude is not)
    rebuilt = mel.log_mel(audio)[:, 2:-2]
    loud = spec[:, 2:-2] > spec.max() - 6  # bands within ~26 dB of the peak
    assert (rebuilt - spec[:, 2:-2])[loud].abs().mean() < 0.5
    assert torch.equal(audio, mel.mel_to_audio(spec))  # deterministic


def test_mel_stats_normalise_round_trip():
    mels = torch.randn(3, mel.N_MELS, 20) * 2 + 1
    stats = mel.MelStats.measure(mels)
    normal = stats.normalise(mels[0])
    assert torch.allclose(stats.denormalise(normal), mels[0], atol=1e-5)
    assert abs(float(stats.normalise(mels).mean())) < 0.05


# -- models -------------------------------------------------------------------------------
def test_autoencoder_shapes():
    ae = MelAutoencoder(channels=16, latent_channels=4, blocks_per_level=1)
    x = torch.randn(2, mel.N_MELS, 50)
    mean, logvar = ae.encode(x)
    assert mean.shape == (2, 4, 12) and logvar.shape == mean.shape
    assert ae.decode(mean).shape == (2, mel.N_MELS, 48)


def _tiny_transformer(**kw) -> TadaMiniTransformer:
    torch.manual_seed(0)
    model = TadaMiniTransformer(in_channels=4, width=32, num_layers=2, heads=2, mlp_ratio=2, **kw)
    with torch.no_grad():  # leave adaLN-zero's zero output layers, so inputs matter
        for p in model.parameters():
            if not p.any():
                p.normal_(0, 0.05)
    return model.eval()


def test_text_enters_only_through_cross_attention_and_padding_is_ignored():
    model = _tiny_transformer()
    x, t = torch.randn(1, 4, 10), torch.tensor([500.0])
    text = torch.randn(1, 5, 384)
    mask = torch.ones(1, 5, dtype=torch.bool)
    out = model(x, t, text, mask)
    assert not torch.allclose(out, model(x, t, torch.randn(1, 5, 384), mask))
    # padded tokens change nothing
    padded = torch.cat([text, torch.randn(1, 3, 384)], dim=1)
    pmask = torch.cat([mask, torch.zeros(1, 3, dtype=torch.bool)], dim=1)
    assert torch.allclose(out, model(x, t, padded, pmask), atol=1e-6)
    # the cross-attention modules are what diffusers calls cross-attention
    assert all(block.attn2.is_cross_attention and not block.attn1.is_cross_attention for block in model.blocks)


def test_fresh_transformer_predicts_zero_velocity():
    model = TadaMiniTransformer(in_channels=4, width=32, num_layers=1, heads=2)
    out = model(torch.randn(2, 4, 7), torch.tensor([10.0, 900.0]), torch.randn(2, 3, 384))
    assert torch.count_nonzero(out) == 0  # adaLN-zero: training starts from the identity flow


def test_patches_group_consecutive_frames_and_any_length_works():
    torch.manual_seed(0)
    model = TadaMiniTransformer(in_channels=4, width=32, num_layers=1, heads=2, max_tokens=5, patch_size=2)
    torch.nn.init.normal_(model.proj_out.weight)  # not the zero init, so outputs show the layout
    # the same network on unpatched tokens of 8 channels (channel c, frame k of a patch -> channel 2c + k)
    flat = TadaMiniTransformer(in_channels=8, width=32, num_layers=1, heads=2, max_tokens=5)
    flat.load_state_dict(model.state_dict())
    text, t = torch.randn(1, 3, 384), torch.tensor([500.0])
    x = torch.randn(1, 4, 10)
    as_tokens = x.view(1, 4, 5, 2).permute(0, 1, 3, 2).reshape(1, 8, 5)
    expected = flat(as_tokens, t, text).view(1, 4, 2, 5).permute(0, 1, 3, 2).reshape(1, 4, 10)
    assert torch.allclose(model(x, t, text), expected, atol=1e-6)
    # an odd length is zero-padded inside and the padding cut from the output: 9 frames -> 5 tokens
    padded = torch.cat([x[..., :9], torch.zeros(1, 4, 1)], dim=-1)
    assert torch.equal(model(x[..., :9], t, text), model(padded, t, text)[..., :9])
    with pytest.raises(ValueError):
        model(torch.randn(1, 4, 11), t, text)  # 6 tokens > 5


def test_full_size_builder_is_the_training_config():
    """`random-full:tada-mini` (GPU timing, speed checks) has the architecture that configs/mini.json trains."""
    from tada.adapters.builders import _CONFIGS
    from tada.mini.autoencoder import MelAutoencoder

    trained = json.loads(open("configs/mini.json").read())
    built = _CONFIGS["tada-mini"]["full"]
    transformer = TadaMiniTransformer(**built["transformer"])
    autoencoder = MelAutoencoder(**built["autoencoder"])
    for key, value in trained["transformer"]["model"].items():
        assert transformer.config[key] == value, key
    for key, value in trained["autoencoder"]["model"].items():
        assert autoencoder.config[key] == value, key


def test_too_many_tokens_is_refused():
    with pytest.raises(ValueError):
        _tiny_transformer(max_tokens=8)(torch.randn(1, 4, 9), torch.tensor([1.0]), torch.randn(1, 2, 384))


# -- training stages on a tiny fake corpus -----------------------------------------------
TINY_CONFIG = {
    "seed": 0,
    "autoencoder": {
        "model": {"channels": 16, "latent_channels": 4, "blocks_per_level": 1, "downsample": 4},
        "steps": 4,
        "batch_size": 2,
        "crop_frames": 32,
        "lr": 1e-3,
        "min_lr_ratio": 0.1,
        "warmup_steps": 1,
        "kl_weight": 1e-4,
        "grad_clip": 1.0,
        "checkpoint_every": 2,
        "eval_every": 2,
        "val_clips": 2,
    },
    "trainset": {"captions_per_clip": 2},
    "transformer": {
        "model": {"width": 32, "num_layers": 2, "heads": 2, "mlp_ratio": 2, "max_tokens": 40},
        "steps": 4,
        "batch_size": 2,
        "lr": 1e-3,
        "min_lr_ratio": 0.1,
        "warmup_steps": 1,
        "weight_decay": 0.01,
        "grad_clip": 1.0,
        "caption_dropout": 0.5,
        "crop_prob": 0.5,
        "min_crop": 4,
        "ema_decay": 0.9,
        "checkpoint_every": 2,
        "eval_every": 2,
        "val_clips": 2,
    },
}


@pytest.fixture(scope="module")
def fake_corpus(tmp_path_factory) -> Path:
    """Eight 1-second chord clips with real clip specs (for caption wordings)."""
    from tada.data.attributes import sample_spec
    from tada.data.captions import caption
    from tada.data.corpus import label

    root = tmp_path_factory.mktemp("corpus")
    (root / "audio").mkdir()
    lines = []
    for seed in range(8):
        spec = sample_spec(seed)
        path = f"audio/{spec.id}.wav"
        sf.write(root / path, chord_wave((60 + seed, 64 + seed, 67 + seed), seed=seed), SR)
        record = label(spec, path)
        assert record["caption"] == caption(spec)
        lines.append(json.dumps(record))
    (root / "labels.jsonl").write_text("\n".join(lines) + "\n")
    return root


@pytest.fixture(scope="module")
def trained(fake_corpus, tmp_path_factory):
    from tada.mini.train import train

    out = tmp_path_factory.mktemp("mini")
    config = out / "config.json"
    config.write_text(json.dumps(TINY_CONFIG))
    model = train(fake_corpus, config, out / "run", progress=False)
    return out / "run", config, model


def test_training_stages_produce_a_loadable_model(trained):
    run, _, model = trained
    assert (model / "model_index.json").is_file() and (run / "autoencoder" / "loss.png").is_file()
    provenance = json.loads((model / "training.json").read_text())
    assert provenance["transformer"]["steps"] == 4 and provenance["autoencoder"]["steps"] == 4
    from tada.mini.autoencoder import MelAutoencoder

    ae = MelAutoencoder.from_pretrained(model / "autoencoder")
    assert ae.config.scaling_factor > 0 and len(ae.config.mel_mean) == mel.N_MELS
    # the training set carries latents at unit scale and the pruned text encoder
    from tada.mini.data import TrainSet

    data = TrainSet(run / "trainset")
    assert data.latents.shape[:2] == (8, 4) and len(data.token_ids) == 8 * 2 + 1
    assert len(data.token_ids[-1]) == 2  # the empty caption: [CLS] [SEP]


def test_pruned_text_encoder_matches_minilm(trained, fake_corpus):
    from tada.mini.data import TrainSet, caption_variants
    from tada.text_encoder import token_states

    run, _, _ = trained
    data = TrainSet(run / "trainset")
    states, masks = data.token_states()
    records = sorted(
        (json.loads(line) for line in (fake_corpus / "labels.jsonl").read_text().splitlines()), key=lambda r: r["seed"]
    )
    wordings = caption_variants(records, 2)
    for clip, variant in ((0, 0), (5, 1)):
        row = clip * 2 + variant
        full, mask = token_states([wordings[clip][variant]])
        pruned = states[row][masks[row]]
        assert pruned.shape[0] == int(mask.sum())
        error = (pruned - full[0, : pruned.shape[0]]).norm(dim=-1) / full[0, : pruned.shape[0]].norm(dim=-1)
        assert error.max() < 5e-3  # float16 weights only
    assert wordings[0][0] == records[0]["caption"] and wordings[0][1] != wordings[0][0]


def test_resumed_transformer_training_is_bitwise_identical(trained, tmp_path):
    from tada.mini.train import read_config
    from tada.mini.train_transformer import TransformerTrainer

    run, config_path, _ = trained
    config = read_config(config_path)
    straight = TransformerTrainer(run / "trainset", config["transformer"], 0, tmp_path / "a", progress=False)
    straight.run()
    first = TransformerTrainer(run / "trainset", config["transformer"], 0, tmp_path / "b", progress=False)
    first.run(until_step=3)
    resumed = TransformerTrainer(run / "trainset", config["transformer"], 0, tmp_path / "b", progress=False)
    assert resumed.resume() and resumed.step == 3
    resumed.run()
    for a, b in zip(straight.model.state_dict().values(), resumed.model.state_dict().values()):
        assert torch.equal(a, b)


def test_extending_a_finished_run_equals_training_the_extended_config_from_scratch(trained, tmp_path):
    from tada.errors import TadaError
    from tada.mini.train import read_config
    from tada.mini.train_transformer import TransformerTrainer

    run, config_path, _ = trained
    short = read_config(config_path)["transformer"]
    long = {**short, "steps": short["steps"] + 3, "decay_steps": short["steps"]}
    scratch = TransformerTrainer(run / "trainset", long, 0, tmp_path / "a", progress=False)
    scratch.run()
    TransformerTrainer(run / "trainset", short, 0, tmp_path / "b", progress=False).run()
    extended = TransformerTrainer(run / "trainset", long, 0, tmp_path / "b", progress=False)
    assert extended.resume() and extended.step == short["steps"] and not extended.done
    extended.run()
    for a, b in zip(scratch.model.state_dict().values(), extended.model.state_dict().values()):
        assert torch.equal(a, b)
    # more steps with the decay moved (the past would change), or any other change: refused
    for changed in ({**short, "steps": short["steps"] + 3}, {**long, "lr": short["lr"] * 2}):
        with pytest.raises(TadaError, match="different run"):
            TransformerTrainer(run / "trainset", changed, 0, tmp_path / "b", progress=False).resume()


def test_fine_tune_starts_from_the_given_weights(trained, tmp_path):
    from tada.errors import TadaError
    from tada.mini.train import read_config
    from tada.mini.train_transformer import TransformerTrainer

    run, config_path, _ = trained
    config = read_config(config_path)["transformer"]
    base = run / "transformer" / "transformer"
    tuned = TransformerTrainer(run / "trainset", {**config, "init_from": str(base)}, 0, tmp_path / "a", progress=False)
    from tada.mini.transformer import TadaMiniTransformer

    start = TadaMiniTransformer.from_pretrained(base).state_dict()
    for part in (tuned.model.model, tuned.model.ema):  # the live weights and their average both start there
        assert all(torch.equal(v, start[k]) for k, v in part.state_dict().items())
    fresh = TransformerTrainer(run / "trainset", config, 0, tmp_path / "b", progress=False)
    assert not all(torch.equal(v, start[k]) for k, v in fresh.model.model.state_dict().items())
    wider = {**config, "model": {**config["model"], "width": 64}, "init_from": str(base)}
    with pytest.raises(TadaError, match="another shape"):
        TransformerTrainer(run / "trainset", wider, 0, tmp_path / "c", progress=False)
    with pytest.raises(TadaError, match="not a transformer directory"):
        TransformerTrainer(
            run / "trainset", {**config, "init_from": str(tmp_path / "none")}, 0, tmp_path / "d", progress=False
        )


def test_short_captions_name_only_true_attributes(fake_corpus):
    from tada.data.attributes import ClipSpec
    from tada.data.captions import INSTRUMENT_WORDS, MOOD_WORDS, short_caption
    from tada.mini.data import caption_variants

    records = [json.loads(line) for line in (fake_corpus / "labels.jsonl").read_text().splitlines()]
    wordings = caption_variants(records, 2, short=3)
    assert all(len(w) == 5 for w in wordings)
    other_mood = {"major": "minor", "minor": "major"}
    for record, words in zip(records, wordings):
        spec = ClipSpec.from_json(record["spec"])
        assert words[2:] == [short_caption(spec, v) for v in range(3)]  # fixed by the seed
        for text in words[2:]:
            lowered = text.lower()
            for phrase in sorted((p for ps in INSTRUMENT_WORDS.values() for p in ps), key=len, reverse=True):
                lowered = lowered.replace(phrase, "")  # "bright synth lead" names an instrument, not a mood
            assert not any(w in lowered.replace(",", " ").split() for w in MOOD_WORDS[other_mood[spec.mode]])
            assert " song" not in lowered  # never the benchmark's "happy song, ..." decorations
    texts = {short_caption(ClipSpec.from_json(r["spec"]), v) for r in records for v in range(3)}
    assert len(texts) > 12  # varied, not one template


@pytest.fixture(scope="module")
def twin_corpus(fake_corpus, tmp_path_factory) -> Path:
    """The fake corpus plus each clip's mode twin (a minor chord where the original has major)
    and each vocal clip's gender twin (the chord a fourth lower)."""
    from tada.data.attributes import ClipSpec
    from tada.data.corpus import gender_twin, label, mode_twin

    root = tmp_path_factory.mktemp("twins")
    (root / "audio").mkdir()
    lines = []
    for line in (fake_corpus / "labels.jsonl").read_text().splitlines():
        record = json.loads(line)
        twin = mode_twin(ClipSpec.from_json(record["spec"]))
        path = f"audio/{twin.id}.wav"
        (root / record["path"]).write_bytes((fake_corpus / record["path"]).read_bytes())
        sf.write(root / path, chord_wave((60 + record["seed"], 63 + record["seed"], 67 + record["seed"])), SR)
        lines += [line, json.dumps(label(twin, path, record["id"]))]
        if record["vocals"]:
            voiced = gender_twin(ClipSpec.from_json(record["spec"]))
            path = f"audio/{voiced.id}.wav"
            sf.write(root / path, chord_wave((55 + record["seed"], 59 + record["seed"], 62 + record["seed"])), SR)
            lines.append(json.dumps(label(voiced, path, record["id"], "gender")))
    (root / "labels.jsonl").write_text("\n".join(reversed(lines)) + "\n")  # the stage sorts them
    return root


def _twin_trainset(trained, twin_corpus, tmp_path, mode_twins: bool, gender_twins: bool = False) -> Path:
    from tada.mini.train import read_config, trainset_stage

    run, config_path, _ = trained
    config = read_config(config_path)
    config["trainset"] = {**config["trainset"], "mode_twins": mode_twins, "gender_twins": gender_twins}
    tmp_path.mkdir(parents=True)
    (tmp_path / "autoencoder").symlink_to(run / "autoencoder")
    return trainset_stage(twin_corpus, config, tmp_path)


def test_trainset_pairs_twins_only_when_asked(trained, twin_corpus, tmp_path):
    from tada.data.corpus import label_order
    from tada.mini.data import TrainSet, caption_variants

    plain = TrainSet(_twin_trainset(trained, twin_corpus, tmp_path / "plain", False))
    assert plain.latents.shape[0] == 8 and plain.pairs.shape == (0, 2)
    data = TrainSet(_twin_trainset(trained, twin_corpus, tmp_path / "twins", True))
    assert data.latents.shape[0] == 16 and data.info["mode_twin_pairs"] == 8 and data.info["gender_twin_pairs"] == 0
    assert data.pairs.tolist() == [[r, r + 1] for r in range(0, 16, 2)]  # each twin right after its clip
    records = sorted(
        (json.loads(line) for line in (twin_corpus / "labels.jsonl").read_text().splitlines()), key=label_order
    )
    first, second = caption_variants(records[:2], 2)
    assert first[0] != second[0] and len(first[0].split()) == len(second[0].split())  # mood word only

    voiced = [r for r in records if r.get("twin_kind") == "gender"]
    both = TrainSet(_twin_trainset(trained, twin_corpus, tmp_path / "both", True, True))
    assert len(voiced) >= 2 and both.latents.shape[0] == 16 + len(voiced)
    assert (both.info["mode_twin_pairs"], both.info["gender_twin_pairs"]) == (8, len(voiced))
    ids = [r["id"] for r in records]
    assert sorted(map(tuple, both.pairs.tolist())) == sorted(
        (ids.index(r["twin_of"]), ids.index(r["id"])) for r in records if "twin_of" in r
    )
    for r in voiced:  # a vocal clip has two twins: its mode twin, then its gender twin
        original = ids.index(r["twin_of"])
        assert ids.index(r["id"]) == original + 2 and r["vocals"]["gender"] != records[original]["vocals"]["gender"]
    gender_only = TrainSet(_twin_trainset(trained, twin_corpus, tmp_path / "voices", False, True))
    assert gender_only.info["gender_twin_pairs"] == len(voiced) and gender_only.info["mode_twin_pairs"] == 0


def test_paired_batches_share_noise_and_captions(trained, twin_corpus, tmp_path):
    from tada.mini.train import read_config
    from tada.mini.train_transformer import TransformerTrainer

    trainset = _twin_trainset(trained, twin_corpus, tmp_path / "run", True)
    config = {**read_config(trained[1])["transformer"], "batch_size": 6, "paired_share": 0.7, "twin_contrast": 0.5}
    trainer = TransformerTrainer(trainset, config, 0, tmp_path / "out", progress=False)
    assert trainer.pairs_per_batch == 2 and 0 not in trainer.train_rows and 1 not in trainer.train_rows
    rows, share = trainer._batch_rows(torch.Generator().manual_seed(0))
    assert share.tolist() == [0, 1, 2, 3, 2, 3]
    pairs = {tuple(p) for p in trainer.data.pairs.tolist()}
    assert all((int(a), int(b)) in pairs for a, b in zip(rows[2:4], rows[4:]))

    seen = {}

    class Capture(torch.nn.Module):
        def forward(self, xt, timestep, encoder_hidden_states, encoder_attention_mask):
            seen.update(xt=xt, sigma=timestep / 1000.0)
            return torch.zeros_like(xt)

    x0 = trainer.latents[rows]
    captions = rows * trainer.data.per_clip
    trainer._loss(Capture(), x0, captions, torch.Generator().manual_seed(1), share)
    sigma, xt = seen["sigma"], seen["xt"]
    assert torch.equal(sigma[2:4], sigma[4:]) and sigma[0] != sigma[1]
    expected = (1 - sigma[2:4, None, None]) * (x0[4:] - x0[2:4])  # same noise: only the clean latents differ
    assert torch.allclose(xt[4:] - xt[2:4], expected, atol=1e-5)
    # the contrast pass: both twins from one midpoint input, only the caption differs
    contrast = trainer._twin_contrast(Capture(), x0, captions, share, torch.Generator().manual_seed(2))
    xt = seen["xt"]
    assert torch.equal(xt[:2], xt[2:]) and torch.equal(seen["sigma"][:2], seen["sigma"][2:])
    assert torch.allclose(contrast, (x0[4:] - x0[2:4]).square().mean())  # equal predictions miss all of b - a
    dropped = captions.clone()
    dropped[[2, 4]] = trainer.data.null_caption  # the first pair's captions dropped (pairs share dropout)
    contrast = trainer._twin_contrast(Capture(), x0, dropped, share, torch.Generator().manual_seed(2))
    assert seen["xt"].shape[0] == 2 and torch.allclose(contrast, (x0[5] - x0[3]).square().mean())  # second pair only
    dropped[[3, 5]] = trainer.data.null_caption
    assert trainer._twin_contrast(Capture(), x0, dropped, share, torch.Generator().manual_seed(2)).item() == 0.0
    trainer.run(until_step=2)  # trains and checkpoints with pairs
    assert trainer.step == 2 and trainer.history[-1]["twin_contrast"] > 0
    with pytest.raises(TadaError, match="needs twins"):
        TransformerTrainer(trained[0] / "trainset", {**config, "batch_size": 4}, 0, tmp_path / "plain", progress=False)


def test_paired_fine_tune_exports_with_its_base_run(trained, twin_corpus, tmp_path):
    from safetensors.torch import load_file

    from tada.mini.train import PROVENANCE, read_config, train

    run, config_path, model = trained
    config = read_config(config_path)
    config["trainset"]["mode_twins"] = True
    config["transformer"].update(batch_size=4, paired_share=0.5, init_from=str(model / "transformer"))

    def write(autoencoder):
        (tmp_path / "config.json").write_text(json.dumps({**config, "autoencoder": autoencoder}))
        return tmp_path / "config.json"

    with pytest.raises(TadaError, match="must keep its base model's latents"):  # would train a new latent space
        read_config(write(config["autoencoder"]))
    with pytest.raises(TadaError, match="not a tada-mini autoencoder folder"):
        train(twin_corpus, write({"from": str(tmp_path / "nowhere")}), tmp_path / "run", progress=False)
    tuned = train(twin_corpus, write({"from": str(model / "autoencoder")}), tmp_path / "run", progress=False)
    provenance, base = (json.loads((m / PROVENANCE).read_text()) for m in (tuned, model))
    assert provenance["trainset"]["mode_twin_pairs"] == 8 and provenance["transformer"]["steps"] == 4
    assert provenance["init_from"] == base
    assert provenance["autoencoder"] == {"from": str(model / "autoencoder"), **base["autoencoder"]}
    weights = "autoencoder/diffusion_pytorch_model.safetensors"
    mine, theirs = load_file(str(tuned / weights)), load_file(str(model / weights))
    assert mine.keys() == theirs.keys() and all(torch.equal(mine[k], theirs[k]) for k in mine)  # the base's, as is


def test_decoder_fine_tune_keeps_encoder_latents_and_transformer(trained, fake_corpus, tmp_path):
    from safetensors.torch import load_file

    from tada.mini.train import PROVENANCE, read_config, train

    run, config_path, model = trained
    config = read_config(config_path)
    decoder = {k: v for k, v in config["autoencoder"].items() if k not in ("model", "kl_weight")}
    config["autoencoder"] = {"from": str(model / "autoencoder"), "decoder": {**decoder, "steps": 3}}
    config["transformer"] = {"from": str(model / "transformer")}
    (tmp_path / "config.json").write_text(json.dumps(config))
    tuned = train(fake_corpus, tmp_path / "config.json", tmp_path / "run", progress=False)
    assert not (tmp_path / "run" / "trainset").exists()  # the transformer is taken as it is: nothing to encode

    def weights(folder, part):
        return load_file(str(folder / part / "diffusion_pytorch_model.safetensors"))

    mine, base = weights(tuned, "autoencoder"), weights(model, "autoencoder")
    assert mine.keys() == base.keys()
    encoder = [k for k in mine if k.startswith("encoder.")]
    assert encoder and all(torch.equal(mine[k], base[k]) for k in encoder)  # the latent space, bitwise
    assert any(not torch.equal(mine[k], base[k]) for k in mine if k.startswith("decoder."))
    a, b = (json.loads((m / "autoencoder" / "config.json").read_text()) for m in (tuned, model))
    assert (a["scaling_factor"], a["mel_mean"], a["mel_std"]) == (b["scaling_factor"], b["mel_mean"], b["mel_std"])
    mine, base = weights(tuned, "transformer"), weights(model, "transformer")
    assert mine.keys() == base.keys() and all(torch.equal(mine[k], base[k]) for k in mine)
    provenance = json.loads((tuned / PROVENANCE).read_text())
    assert provenance["autoencoder"]["decoder"]["steps"] == 3 and provenance["autoencoder"]["steps"] == 4
    assert provenance["transformer"] == {"from": str(model / "transformer")}
    assert provenance["init_from"] == json.loads((model / PROVENANCE).read_text())
    # a transformer taken as it is cannot sit on a newly trained autoencoder, nor a decoder config be incomplete
    (tmp_path / "bad.json").write_text(json.dumps({**config, "autoencoder": read_config(config_path)["autoencoder"]}))
    with pytest.raises(TadaError, match="must keep its base model's latents"):
        read_config(tmp_path / "bad.json")
    config["autoencoder"]["decoder"].pop("lr")
    (tmp_path / "bad.json").write_text(json.dumps(config))
    with pytest.raises(TadaError, match=r"autoencoder.decoder.*missing keys \['lr'\]"):
        read_config(tmp_path / "bad.json")


@pytest.mark.parametrize("path", sorted(str(p) for p in Path("configs").glob("mini*.json")))
def test_committed_training_configs_read(path):
    from tada.mini.train import read_config

    transformer = read_config(path)["transformer"]
    assert transformer.get("steps", 0) > 0 or Path(transformer["from"]).is_dir()


# -- pipeline, adapter and CLI ----------------------------------------------------------------
def test_pipeline_round_trip_and_steering_surface(trained, tmp_path):
    from tada.adapters import load_model
    from tada.mini.pipeline import TadaMiniPipeline

    _, _, model_dir = trained
    pipe = TadaMiniPipeline.from_pretrained(model_dir)
    copy_dir = pipe.save_pretrained(tmp_path / "copy")
    adapter, again = load_model(f"tada-mini:{model_dir}"), load_model(f"tada-mini:{copy_dir}")
    a = adapter.generate(["a happy piano song", "sad rock"], seconds=1.0, steps=3, seed=7)
    b = again.generate(["a happy piano song", "sad rock"], seconds=1.0, steps=3, seed=7)
    assert a.samples.shape == (2, 1, SR) and np.array_equal(a.samples, b.samples)
    assert adapter.layout.order == ("uncond", "cond") and adapter.width == 32
    kinds = {s.kind for s in adapter.sites.values()}
    assert kinds == {"attn", "xattn", "xattn_in"} and "xattn.1" in adapter.sites


def test_missing_bundled_weights_and_bad_directories_are_one_line_errors(tmp_path, monkeypatch):
    import tada.mini
    from tada.adapters import load_model

    monkeypatch.setattr(tada.mini, "WEIGHTS_DIR", tmp_path / "nothing")
    with pytest.raises(TadaError, match="weights are not in this installation"):
        load_model("tada-mini")
    with pytest.raises(TadaError, match="no model directory"):
        load_model(f"tada-mini:{tmp_path / 'absent'}")
    (tmp_path / "empty").mkdir()
    with pytest.raises(TadaError, match="not a tada-mini model directory"):
        load_model(f"tada-mini:{tmp_path / 'empty'}")


def test_generation_length_limits(trained):
    from tada.adapters import load_model

    adapter = load_model(f"tada-mini:{trained[2]}")
    assert adapter.generate("a jazz song", seconds=0.5, steps=2).samples.shape == (1, 1, SR // 2)
    with pytest.raises(TadaError, match="generates between"):
        adapter.generate("a jazz song", seconds=30, steps=2)


def test_cli_generates_with_tada_mini(trained, tmp_path):
    from conftest import run_cli

    out = tmp_path / "clip.wav"
    result = run_cli(
        "generate",
        f"tada-mini:{trained[2]}",
        "--prompt",
        "a calm piano piece",
        "--seconds",
        "1",
        "--steps",
        "2",
        "--out",
        str(out),
    )
    assert result.returncode == 0, result.stderr
    audio, rate = sf.read(out)
    assert rate == SR and len(audio) == SR and np.isfinite(audio).all()


# -- signal checks (used by the tada-mini acceptance benchmark) ----------------------------
def test_signal_checks_on_synthetic_audio():
    from tada import signal_checks

    t = np.arange(5 * SR) / SR

    def clicks(bpm: float, per_beat: int) -> np.ndarray:  # accented beats, weaker subdivisions
        wave = np.zeros_like(t)
        for i, at in enumerate(np.arange(0, 5, 60 / bpm / per_beat)):
            wave[int(at * SR) : int(at * SR) + 200] += np.hanning(200) * (1.0 if i % per_beat == 0 else 0.4)
        return wave

    for bpm in (70, 150):  # slow and fast: no pull towards 120 BPM
        # eighth notes, as corpus music has them: the autocorrelation alone reads 70 BPM at
        # double tempo, the onset rate picks the beat level
        assert abs(signal_checks.tempo_bpm(clicks(bpm, 2), SR) / bpm - 1) < 0.05, bpm
        assert abs(signal_checks.tempo_bpm(clicks(bpm, 1), SR, metrical_level=False) / bpm - 1) < 0.05, bpm
    assert abs(signal_checks.tempo_bpm(clicks(70, 2), SR, metrical_level=False) / 140 - 1) < 0.05
    assert signal_checks.onset_rate(clicks(150, 2), SR) == pytest.approx(5.0, abs=0.4)  # 25 clicks in 5 s
    major, minor = chord_wave((48, 52, 55), 2.0), chord_wave((48, 51, 55), 2.0)
    assert signal_checks.mode(major, SR) == "major" and signal_checks.mode(minor, SR) == "minor"
    high, low = chord_wave((69,), 1.0), chord_wave((45,), 1.0)  # 440 Hz and 110 Hz
    assert abs(signal_checks.median_f0(high, SR) - 440) < 10 and abs(signal_checks.median_f0(low, SR) - 110) < 5
    # an 82 Hz bass line is below the vocal floor: it reads at the floor, its own pitch only with a lower one
    bass = chord_wave((40,), 1.0)
    assert abs(signal_checks.median_f0(bass, SR) - signal_checks.VOCAL_FMIN) < 3
    assert abs(signal_checks.median_f0(bass, SR, fmin=65) - 82.4) < 3
    assert np.isnan(signal_checks.median_f0(np.zeros(SR, np.float32), SR))  # silence is unvoiced


def harmonic_note(midi: int, seconds: float, level: float = 0.3) -> np.ndarray:
    """A voice-like tone: six harmonics at 1/h amplitude."""
    t = np.arange(int(seconds * SR)) / SR
    f0 = 440 * 2 ** ((midi - 69) / 12)
    return (level * sum(np.sin(2 * np.pi * h * f0 * t) / h for h in range(1, 7))).astype(np.float32)


def test_pitch_register_follows_the_voice_over_a_shared_bass():
    from tada import signal_checks

    assert signal_checks.pitch_register(harmonic_note(57, 1.0), SR) == pytest.approx(220, rel=0.03)
    assert signal_checks.pitch_register(harmonic_note(45, 1.0), SR) == pytest.approx(110, rel=0.03)
    # an 82 Hz bass holds all four seconds, a voice sings over its second half only: the
    # median stays on the bass for both voices, the register moves with the voice
    bass = harmonic_note(40, 4.0, level=0.1)
    silent = np.zeros(2 * SR, np.float32)
    high, low = (bass + np.concatenate([silent, harmonic_note(m, 2.0)]) for m in (64, 52))  # 330 / 165 Hz
    assert signal_checks.median_f0(high, SR, fmin=65) == pytest.approx(
        signal_checks.median_f0(low, SR, fmin=65), rel=0.05
    )
    up, down = signal_checks.pitch_register(high, SR), signal_checks.pitch_register(low, SR)
    assert up > 1.3 * down, (up, down)
    assert up == pytest.approx(np.sqrt(82.4 * 329.6), rel=0.1)  # half the frames on each
    from scipy.signal import resample_poly

    at_44k = resample_poly(high, 441, 160).astype(np.float32)  # any input rate reads the same
    assert signal_checks.pitch_register(at_44k, 44100) == pytest.approx(up, rel=0.03)
    assert np.isnan(signal_checks.pitch_register(np.zeros(SR, np.float32), SR))  # nothing sounds
