"""Offline, randomly initialised builds of the three diffusers text-to-audio pipelines.

Nothing here touches the Hugging Face hub: configs are written in code and every tokenizer
is built from one explicit music vocabulary. ``tiny`` builds are small enough for a
2-core CPU yet keep each family's structure (layer counts, attention layout, latent
frame rate), so per-layer steering behaves as on the real model; ``full`` builds are the
published architectures with random weights, for GPU timing. Components are created on
the current default device, so ``with torch.device("meta"): build_pipeline(f, "full")``
counts a full model's parameters without allocating it.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import torch
from diffusers import (
    AceStepPipeline,
    AudioLDM2Pipeline,
    AudioLDM2ProjectionModel,
    AudioLDM2UNet2DConditionModel,
    AutoencoderKL,
    AutoencoderOobleck,
    CosineDPMSolverMultistepScheduler,
    DDIMScheduler,
    DiffusionPipeline,
    FlowMatchEulerDiscreteScheduler,
    StableAudioDiTModel,
    StableAudioPipeline,
    StableAudioProjectionModel,
)
from diffusers.models.transformers.ace_step_transformer import AceStepTransformer1DModel
from diffusers.pipelines.ace_step import AceStepConditionEncoder
from tokenizers import Regex, Tokenizer, normalizers, pre_tokenizers
from tokenizers.models import WordLevel
from torch import nn
from transformers import (
    ClapConfig,
    ClapFeatureExtractor,
    ClapModel,
    GPT2Config,
    GPT2LMHeadModel,
    PreTrainedTokenizerFast,
    Qwen3Config,
    Qwen3Model,
    RobertaTokenizer,
    SpeechT5HifiGan,
    SpeechT5HifiGanConfig,
    T5Config,
    T5EncoderModel,
    T5Tokenizer,
)

FAMILIES = ("ace-step-1.5", "stable-audio", "audioldm2", "tada-mini")
SIZES = ("tiny", "full")

# --------------------------------------------------------------------------- vocabulary

# Lower-case words that music prompts, ACE-Step's prompt template and short lyrics are
# made of. Every family's tokenizer is built from this one list (plus single letters,
# digits and punctuation), so a prompt maps to comparable tokens in all three.
_MUSIC_WORDS = """
pop rock jazz blues classical electronic edm techno house trance dubstep drum bass hip hop
rap trap soul funk disco reggae country folk metal punk grunge indie alternative ambient
lofi chillout chill orchestral cinematic soundtrack score opera gospel latin salsa samba
bossa nova flamenco tango afrobeat kpop jpop synthwave synthpop industrial hardcore emo ska
swing bebop fusion world celtic baroque romantic minimal experimental noise downtempo garage
grime drill dancehall reggaeton bluegrass americana acapella choral lullaby march waltz
polka anthem ballad ragtime motown psychedelic progressive new age dance electro breakbeat
jungle idm glitch shoegaze dream surf rockabilly gothic doom death black thrash
piano violin viola cello double guitar acoustic electric drums kit percussion snare kick
hihat hi hat cymbal cymbals tambourine shaker congas bongos tabla synth synthesizer pad pads
lead arpeggio arpeggiated organ harpsichord accordion harmonica flute clarinet oboe bassoon
saxophone sax trumpet trombone horn horns tuba brass strings string harp ukulele banjo
mandolin sitar marimba xylophone vibraphone glockenspiel bells choir orchestra ensemble
sub bassline beat beats sample samples vocoder turntable scratch whistle claps handclaps
timpani celesta koto erhu guzheng didgeridoo bagpipes steel pedal distorted distortion
reverb delay keys rhodes wurlitzer mellotron fiddle
vocal vocals voice voices singer singing sung sings female male woman women man men child
children boy girl duet harmony harmonies humming whisper whispered falsetto rapping rapper
spoken word chant backing instrumental autotune
happy sad melancholic melancholy uplifting energetic calm peaceful relaxing relaxed dark
bright epic dreamy angry aggressive joyful nostalgic mysterious tense emotional powerful
gentle soft hard heavy light warm cold haunting hopeful playful groovy funky smooth mellow
intense triumphant serene somber eerie spooky upbeat danceable catchy atmospheric ethereal
lush sparse raw gritty clean cheerful sentimental lonely love party moody sexy sweet
bittersweet inspiring motivational dramatic suspenseful sensual hypnotic driving bouncy
quirky tender fierce lively loud quiet deep
fast slow medium mid tempo bpm uptempo allegro andante adagio moderato presto largo rhythm
rhythmic groove syncopated steady building build drop crescendo fade time signature
song songs music track tune melody melodic chord chords progression riff riffs solo intro
outro verse chorus bridge hook break breakdown pre interlude loop key major minor sharp
flat scale note notes bar bars measure
production mix mixed mastered recording recorded live studio stereo mono quality high low
fi analog digital vintage modern retro classic
a an the with and or of in on at by for to from into over under featuring feat plus
without some very more less lots many few no not is are was be it its this that these
style like inspired type genre mood sound sounds sounding background foreground
instruction caption metas fill audio semantic mask based given conditions repaint area
generate tokens extract complete input context languages lyric lyrics timesignature
keyscale duration seconds second en
i you me my we your our he she they love night day heart baby dream fire sky rain sun
moon home life tonight forever yeah oh la na hey go come feel know let
"""
_LETTERS = tuple("abcdefghijklmnopqrstuvwxyz")
_DIGITS = tuple("0123456789")
_PUNCTUATION = tuple(".,!?:;-'\"()[]{}/\\#&+*|_<>=%@~$^`") + ("\n",)

# Tiny text encoders get a round embedding table that the vocabulary must fit in.
_TINY_VOCAB_SIZE = 1024


def music_vocabulary(special_tokens: tuple[str, ...]) -> dict[str, int]:
    """Token -> id for the shared music vocabulary, ``special_tokens`` taking ids 0, 1, ...

    Specials come first because text encoders hard-code where pad/eos/unk live
    (RoBERTa pads with id 1, T5 with id 0).
    """
    tokens = dict.fromkeys((*special_tokens, *_MUSIC_WORDS.split(), *_LETTERS, *_DIGITS, *_PUNCTUATION))
    return {token: i for i, token in enumerate(tokens)}


def _word_level_backend(special_tokens: tuple[str, ...], unk_token: str) -> Tokenizer:
    """Whole-word tokenizer over :func:`music_vocabulary`; anything else becomes ``unk_token``.

    Case is folded, punctuation marks and digits become single tokens and newlines are
    kept as tokens (ACE-Step's prompt template is laid out in lines).
    """
    backend = Tokenizer(WordLevel(music_vocabulary(special_tokens), unk_token=unk_token))
    backend.normalizer = normalizers.Sequence([normalizers.NFKC(), normalizers.Lowercase()])
    backend.pre_tokenizer = pre_tokenizers.Sequence(
        [
            pre_tokenizers.Split(Regex(r"[^\S\n]+"), behavior="removed"),
            pre_tokenizers.Split(Regex(r"\n"), behavior="isolated"),
            pre_tokenizers.Punctuation(behavior="isolated"),
            pre_tokenizers.Digits(individual_digits=True),
        ]
    )
    return backend


def _qwen_tokenizer(model_max_length: int) -> PreTrainedTokenizerFast:
    """Stand-in for the Qwen3 tokenizer: ``<|endoftext|>`` is special and doubles as pad, as in Qwen."""
    specials = ("<|endoftext|>", "<unk>")
    return PreTrainedTokenizerFast(
        tokenizer_object=_word_level_backend(specials, "<unk>"),
        eos_token="<|endoftext|>",
        pad_token="<|endoftext|>",
        unk_token="<unk>",
        model_max_length=model_max_length,
    )


def _t5_tokenizer(model_max_length: int) -> T5Tokenizer:
    """A real ``T5Tokenizer`` (pad 0, eos 1, unk 2, appends ``</s>``) over the music vocabulary."""
    specials = ("<pad>", "</s>", "<unk>")
    return T5Tokenizer(
        tokenizer_object=_word_level_backend(specials, "<unk>"),
        extra_ids=0,
        model_max_length=model_max_length,
    )


def _roberta_tokenizer(model_max_length: int) -> RobertaTokenizer:
    """A real ``RobertaTokenizer`` (``<s> ... </s>``, pad id 1 as CLAP expects) over the music vocabulary."""
    specials = ("<s>", "<pad>", "</s>", "<unk>", "<mask>")
    return RobertaTokenizer(
        tokenizer_object=_word_level_backend(specials, "<unk>"),
        model_max_length=model_max_length,
    )


# --------------------------------------------------------------------------- configs

_TINY_OOBLECK = {
    # 1600 Hz stereo, hop 64: 25 latent frames per second, like ACE-Step's 48 kHz / 1920.
    "encoder_hidden_size": 16,
    "downsampling_ratios": [4, 16],
    "channel_multiples": [1, 2],
    "decoder_channels": 16,
    "decoder_input_channels": 8,
    "audio_channels": 2,
    "sampling_rate": 1600,
}

_CONFIGS: dict[str, dict[str, dict[str, Any]]] = {
    "ace-step-1.5": {
        "tiny": {
            "transformer": {
                "hidden_size": 64,
                "intermediate_size": 192,
                "num_hidden_layers": 8,
                "num_attention_heads": 4,
                "num_key_value_heads": 2,
                "head_dim": 16,
                "in_channels": 24,  # noisy latents + source latents + chunk mask
                "audio_acoustic_hidden_dim": 8,
                "patch_size": 2,
                "sliding_window": 16,
            },
            "condition_encoder": {
                "hidden_size": 64,
                "intermediate_size": 192,
                "text_hidden_dim": 32,
                "timbre_hidden_dim": 8,
                "num_lyric_encoder_hidden_layers": 2,
                "num_timbre_encoder_hidden_layers": 2,
                "num_attention_heads": 4,
                "num_key_value_heads": 2,
                "head_dim": 16,
                "sliding_window": 16,
            },
            "text_encoder": {
                "vocab_size": _TINY_VOCAB_SIZE,
                "hidden_size": 32,
                "intermediate_size": 96,
                "num_hidden_layers": 2,
                "num_attention_heads": 4,
                "num_key_value_heads": 2,
                "head_dim": 8,
                "max_position_embeddings": 4096,
                "tie_word_embeddings": True,
                "rope_parameters": {"rope_type": "default", "rope_theta": 1000000.0},
            },
            "tokenizer": {"model_max_length": 4096},
            "vae": _TINY_OOBLECK,
        },
        "full": {
            # AceStepTransformer1DModel / AceStepConditionEncoder defaults are the 2B turbo/base DiT.
            "transformer": {},
            "condition_encoder": {},
            # Qwen3-Embedding-0.6B.
            "text_encoder": {
                "vocab_size": 151669,
                "hidden_size": 1024,
                "intermediate_size": 3072,
                "num_hidden_layers": 28,
                "num_attention_heads": 16,
                "num_key_value_heads": 8,
                "head_dim": 128,
                "max_position_embeddings": 32768,
                "tie_word_embeddings": True,
                "rope_parameters": {"rope_type": "default", "rope_theta": 1000000.0},
            },
            "tokenizer": {"model_max_length": 32768},
            # 48 kHz stereo, 64-dim latents, hop 1920 (25 latent frames per second).
            "vae": {
                "encoder_hidden_size": 128,
                "downsampling_ratios": [2, 4, 4, 6, 10],
                "channel_multiples": [1, 2, 4, 8, 16],
                "decoder_channels": 128,
                "decoder_input_channels": 64,
                "audio_channels": 2,
                "sampling_rate": 48000,
            },
        },
    },
    "stable-audio": {
        "tiny": {
            "transformer": {
                "sample_size": 128,  # 128 latents * hop 64 / 1600 Hz = 5.12 s maximum
                "in_channels": 8,
                "num_layers": 8,
                "attention_head_dim": 16,
                "num_attention_heads": 4,
                "num_key_value_attention_heads": 2,
                "out_channels": 8,
                "cross_attention_dim": 32,
                "time_proj_dim": 32,
                "global_states_input_dim": 64,  # start + end seconds embeddings
                "cross_attention_input_dim": 32,
            },
            "projection_model": {"text_encoder_dim": 32, "conditioning_dim": 32, "min_value": 0, "max_value": 512},
            "text_encoder": {
                "vocab_size": _TINY_VOCAB_SIZE,
                "d_model": 32,
                "d_ff": 64,
                "d_kv": 8,
                "num_heads": 4,
                "num_layers": 2,
            },
            "tokenizer": {"model_max_length": 64},
            "vae": _TINY_OOBLECK,
        },
        "full": {
            # StableAudioDiTModel defaults are Stable Audio Open 1.0 (1024 latents = 47.55 s).
            "transformer": {},
            "projection_model": {"text_encoder_dim": 768, "conditioning_dim": 768, "min_value": 0, "max_value": 512},
            # T5-base encoder.
            "text_encoder": {
                "vocab_size": 32128,
                "d_model": 768,
                "d_ff": 3072,
                "d_kv": 64,
                "num_heads": 12,
                "num_layers": 12,
            },
            "tokenizer": {"model_max_length": 128},
            # AutoencoderOobleck defaults: 44.1 kHz stereo, 64-dim latents, hop 2048.
            "vae": {},
        },
    },
    "audioldm2": {
        "tiny": {
            # Real layout scaled down: three levels, attention in up_blocks.0/1, each resnet
            # followed by [self-only, GPT-2 cross, T5 cross] transformers (6 per up block).
            "unet": {
                "sample_size": 512,  # default length: 512 * 2 * 16 / 1600 Hz = 10.24 s
                "in_channels": 8,
                "out_channels": 8,
                "block_out_channels": (32, 64, 64),
                "layers_per_block": 1,  # the real 2 makes a 2 s clip take ~0.7 s on 2 cores
                "down_block_types": ("DownBlock2D", "CrossAttnDownBlock2D", "CrossAttnDownBlock2D"),
                "up_block_types": ("CrossAttnUpBlock2D", "CrossAttnUpBlock2D", "UpBlock2D"),
                "cross_attention_dim": ([None, 16, 32],) * 3,
                "attention_head_dim": 4,  # diffusers reads this as the number of heads here
            },
            "vae": {
                "block_out_channels": [32, 64],
                "in_channels": 1,
                "out_channels": 1,
                "down_block_types": ["DownEncoderBlock2D"] * 2,
                "up_block_types": ["UpDecoderBlock2D"] * 2,
                "latent_channels": 8,
                "layers_per_block": 1,
                "scaling_factor": 0.4110932946205139,
            },
            "text_encoder": {
                "text_config": {
                    "vocab_size": _TINY_VOCAB_SIZE,
                    "hidden_size": 32,
                    "intermediate_size": 64,
                    "num_hidden_layers": 2,
                    "num_attention_heads": 2,
                    "max_position_embeddings": 128,
                    "projection_dim": 16,
                },
                # Real input geometry (256-wide spectrogram, 4x4 patches) so that
                # ClapFeatureExtractor's 10 s / 64-mel features fit; only its width is tiny.
                "audio_config": {
                    "depths": [1, 1],
                    "num_attention_heads": [2, 2],
                    "patch_embeds_hidden_size": 16,
                    "hidden_size": 32,
                    "projection_dim": 16,
                },
                "projection_dim": 16,
            },
            "text_encoder_2": {
                "vocab_size": _TINY_VOCAB_SIZE,
                "d_model": 32,
                "d_ff": 64,
                "d_kv": 8,
                "num_heads": 4,
                "num_layers": 2,
                "feed_forward_proj": "gated-gelu",
            },
            # Fed embeddings, never token ids: its vocabulary only sizes the (tied) LM head.
            "language_model": {
                "n_embd": 16,
                "n_head": 2,
                "n_layer": 2,
                "n_positions": 128,
                "vocab_size": _TINY_VOCAB_SIZE,
                "bos_token_id": None,
                "eos_token_id": None,
            },
            "projection_model": {"text_encoder_dim": 16, "text_encoder_1_dim": 32, "langauge_model_dim": 16},
            # 1600 Hz, hop 16: 100 mel frames per second as in the real 16 kHz / 160 vocoder.
            "vocoder": {
                "model_in_dim": 16,
                "sampling_rate": 1600,
                "upsample_initial_channel": 32,
                "upsample_rates": [4, 4],
                "upsample_kernel_sizes": [8, 8],
                "normalize_before": False,
            },
            "tokenizer": {"model_max_length": 77},
            "tokenizer_2": {"model_max_length": 128},
        },
        "full": {
            # cvssp/audioldm2-music ships the same UNet/VAE/vocoder architecture as cvssp/audioldm2
            # (configs below are cvssp/audioldm2's, found by search; the music VAE's learnt
            # scaling_factor may differ, which does not matter for random weights).
            "unet": {
                "sample_size": 256,
                "in_channels": 8,
                "out_channels": 8,
                "block_out_channels": (128, 256, 384, 640),
                "layers_per_block": 2,
                "down_block_types": ("DownBlock2D",) + ("CrossAttnDownBlock2D",) * 3,
                "up_block_types": ("CrossAttnUpBlock2D",) * 3 + ("UpBlock2D",),
                "cross_attention_dim": ([None, 768, 1024],) * 4,
                "attention_head_dim": 8,
            },
            "vae": {
                "block_out_channels": [128, 256, 512],
                "in_channels": 1,
                "out_channels": 1,
                "down_block_types": ["DownEncoderBlock2D"] * 3,
                "up_block_types": ["UpDecoderBlock2D"] * 3,
                "latent_channels": 8,
                "layers_per_block": 2,
                "scaling_factor": 0.4110932946205139,
            },
            # ClapConfig defaults are laion/clap-htsat-unfused (RoBERTa-base text, HTSAT audio).
            "text_encoder": {"text_config": {}, "audio_config": {}},
            # flan-t5-large encoder.
            "text_encoder_2": {
                "vocab_size": 32128,
                "d_model": 1024,
                "d_ff": 2816,
                "d_kv": 64,
                "num_heads": 16,
                "num_layers": 24,
                "feed_forward_proj": "gated-gelu",
                "tie_word_embeddings": False,
            },
            # GPT2Config defaults are gpt2 (base).
            "language_model": {},
            "projection_model": {"text_encoder_dim": 512, "text_encoder_1_dim": 1024, "langauge_model_dim": 768},
            "vocoder": {
                "model_in_dim": 64,
                "sampling_rate": 16000,
                "upsample_initial_channel": 1024,
                "upsample_rates": [5, 4, 2, 2, 2],
                "upsample_kernel_sizes": [16, 16, 8, 4, 4],
                "normalize_before": False,
            },
            "tokenizer": {"model_max_length": 512},
            "tokenizer_2": {"model_max_length": 128},
        },
    },
}

_CONFIGS["tada-mini"] = {
    "tiny": {
        "transformer": {"in_channels": 8, "width": 32, "num_layers": 4, "heads": 2, "mlp_ratio": 2, "max_tokens": 160},
        "autoencoder": {"channels": 16, "latent_channels": 8, "blocks_per_level": 1},
    },
    # The published tada-mini architecture (src/tada/mini/weights), here with random weights.
    # tests/test_mini.py checks it against configs/mini.json.
    "full": {"transformer": {"patch_size": 2}, "autoencoder": {}},
}

# AudioLDM2 feeds the projected text through GPT-2 for this many steps (8 in AudioLDM2).
_AUDIOLDM2_GENERATED_TOKENS = 8


# --------------------------------------------------------------------------- builders


def _seeded(seed: int, factory: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
    """Seed torch, then build: each component's weights depend on ``seed`` only, not on build order."""
    torch.manual_seed(seed)
    return factory(*args, **kwargs)


def _on_cpu(factory: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
    """Build a scheduler on CPU, where its tables must live even when models are built on "meta"."""
    with torch.device("cpu"):
        return factory(*args, **kwargs)


def _build_ace_step(cfg: dict[str, Any], seed: int) -> DiffusionPipeline:
    return AceStepPipeline(
        transformer=_seeded(seed, AceStepTransformer1DModel, **cfg["transformer"]),
        condition_encoder=_seeded(seed, AceStepConditionEncoder, **cfg["condition_encoder"]),
        vae=_seeded(seed, AutoencoderOobleck, **cfg["vae"]),
        text_encoder=_seeded(seed, Qwen3Model, Qwen3Config(**cfg["text_encoder"])),
        tokenizer=_qwen_tokenizer(**cfg["tokenizer"]),
        # ACE-Step computes its own sigmas in [0, 1] and hands them to the scheduler verbatim.
        scheduler=_on_cpu(FlowMatchEulerDiscreteScheduler, num_train_timesteps=1, shift=1.0),
    )


def _build_stable_audio(cfg: dict[str, Any], seed: int) -> DiffusionPipeline:
    return StableAudioPipeline(
        transformer=_seeded(seed, StableAudioDiTModel, **cfg["transformer"]),
        projection_model=_seeded(seed, StableAudioProjectionModel, **cfg["projection_model"]),
        vae=_seeded(seed, AutoencoderOobleck, **cfg["vae"]),
        text_encoder=_seeded(seed, T5EncoderModel, T5Config(**cfg["text_encoder"])),
        tokenizer=_t5_tokenizer(**cfg["tokenizer"]),
        # Defaults are Stable Audio Open's sampler (v-prediction, exponential sigmas 0.3..500).
        scheduler=_on_cpu(CosineDPMSolverMultistepScheduler),
    )


def _build_audioldm2(cfg: dict[str, Any], seed: int) -> DiffusionPipeline:
    language_model = _seeded(seed, GPT2LMHeadModel, GPT2Config(**cfg["language_model"]))
    language_model.config.max_new_tokens = _AUDIOLDM2_GENERATED_TOKENS
    return AudioLDM2Pipeline(
        unet=_seeded(seed, AudioLDM2UNet2DConditionModel, **cfg["unet"]),
        vae=_seeded(seed, AutoencoderKL, **cfg["vae"]),
        text_encoder=_seeded(seed, ClapModel, ClapConfig(**cfg["text_encoder"])),
        text_encoder_2=_seeded(seed, T5EncoderModel, T5Config(**cfg["text_encoder_2"])),
        language_model=language_model,
        projection_model=_seeded(seed, AudioLDM2ProjectionModel, **cfg["projection_model"]),
        vocoder=_seeded(seed, SpeechT5HifiGan, SpeechT5HifiGanConfig(**cfg["vocoder"])),
        tokenizer=_roberta_tokenizer(**cfg["tokenizer"]),
        tokenizer_2=_t5_tokenizer(**cfg["tokenizer_2"]),
        # Only used to re-rank several waveforms per prompt; cvssp/audioldm2's settings.
        feature_extractor=ClapFeatureExtractor(frequency_min=50, truncation="rand_trunc"),
        scheduler=_on_cpu(
            DDIMScheduler,
            beta_start=0.0015,
            beta_end=0.0195,
            beta_schedule="scaled_linear",
            steps_offset=1,
            clip_sample=False,
            set_alpha_to_one=False,
        ),
    )


def _build_tada_mini(cfg: dict[str, Any], seed: int) -> Any:
    from ..mini.autoencoder import MelAutoencoder
    from ..mini.pipeline import TadaMiniPipeline, default_scheduler
    from ..mini.transformer import TadaMiniTransformer

    transformer = _seeded(seed, TadaMiniTransformer, **cfg["transformer"])
    # Trained from zero-initialised output layers (adaLN-zero); a random model with those
    # zeros would ignore its input, so fill them with small random weights here.
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for param in transformer.parameters():
            if not param.is_meta and not param.any():
                param.copy_(torch.randn(param.shape, generator=generator) * 0.05)
    return TadaMiniPipeline(
        transformer=transformer,
        autoencoder=_seeded(seed, MelAutoencoder, **cfg["autoencoder"]),
        scheduler=default_scheduler(),
    )


_BUILDERS: dict[str, Callable[[dict[str, Any], int], DiffusionPipeline]] = {
    "ace-step-1.5": _build_ace_step,
    "stable-audio": _build_stable_audio,
    "audioldm2": _build_audioldm2,
    "tada-mini": _build_tada_mini,
}


def _check_choice(kind: str, value: str, choices: Sequence[str]) -> None:
    if value not in choices:
        raise ValueError(f"unknown {kind} {value!r}; choose one of: {', '.join(choices)}")


def build_pipeline(
    family: str, size: str = "tiny", seed: int = 0, dtype: torch.dtype = torch.float32
) -> DiffusionPipeline:
    """Build ``family``'s diffusers pipeline at ``size`` with random weights, fully offline.

    The same ``seed`` gives bitwise-identical weights. The pipeline comes back in eval
    mode, in ``dtype``, with its progress bar off, on the current default device (CPU
    unless the caller builds under ``with torch.device(...)``).
    """
    _check_choice("family", family, FAMILIES)
    _check_choice("size", size, SIZES)
    pipe = _BUILDERS[family](_CONFIGS[family][size], seed)
    for component in pipe.components.values():
        if isinstance(component, nn.Module):
            if component.dtype != dtype:  # diffusers warns on every dtype cast, needed or not
                component.to(dtype=dtype)
            component.eval()
    pipe.set_progress_bar_config(disable=True)
    return pipe
