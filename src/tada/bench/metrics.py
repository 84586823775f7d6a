"""Per-clip metrics of the benchmark: text alignment plug-ins and a quality proxy.

**Alignment.** An :class:`Alignment` scores clips against one text: ``score(clips, sr,
text)`` is an array ``(n,)`` of cosine similarities in [-1, 1], and ``fingerprint()``
names the weights, so a resumed benchmark never mixes two models' scores. Three are
provided; :func:`alignment_plugins` builds them by name:

* ``probe`` (:class:`ScorerAlignment`): tada's offline scorer, always available;
* ``clap`` (:class:`ClapAlignment`): a LAION CLAP checkpoint through transformers
  (the paper's is ``laion/larger_clap_music``);
* ``muq`` (:class:`MuqAlignment`): MuQ-MuLan (``OpenMuQ/MuQ-MuLan-large``), when the
  ``muq`` package is installed.

Clips are float arrays ``(samples,)`` or ``(channels, samples)``; each model gets their
mono mix, resampled to its own rate.

**Quality.** The paper rates quality with Audiobox Aesthetics, which is not available
offline. Here quality is measured against *held-out corpus audio*: clips rendered by the
procedural corpus (:mod:`tada.data`) from seeds no shipped model trained on. A
:class:`QualityReference` holds the mean and covariance of the scorer's audio embeddings
of such clips, and their principal axes. Two measures compare generated clips with it,
both built on the top ``k`` principal components (``DEFAULT_K = 16``), because a
benchmark cell of ~32 clips cannot estimate a 256 x 256 covariance (16 components hold
about 88% of the variance of the shipped scorer's embeddings of corpus audio):

* :func:`frechet_distance`: the Fréchet distance between the Gaussian of a set of clips
  and the reference Gaussian (the FAD idea, on the scorer's embeddings): a set measure;
* :func:`typicality`: minus each clip's squared Mahalanobis distance from the reference
  Gaussian (its top ``k`` axes, plus one shared variance for the rest: probabilistic PCA),
  per dimension: a per-clip measure (about -1 for a corpus clip; higher is better).

**Held-out seeds.** tada-mini trained on corpus seeds 0-5,999 and the shipped scorer on
500-5,999 (``training.json`` of each; docs/tada-mini.md, docs/scorer.md); every range the
project renders for evaluation lies far above (docs/corpus.md: 10,000,000 for scorer
evaluation and calibration, 900,000 for the pitch calibration, 600,000 for localisation's
caption pool, 50,000,000 for the rendering benchmark). The quality reference uses its own
range, from ``QUALITY_FIRST_SEED = 20,000,000``; seeds below ``TRAINED_SEED_END`` are refused.
"""

from __future__ import annotations

import hashlib
import json
import math
from abc import ABC, abstractmethod
from collections.abc import Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from .. import __version__, validate
from ..artifacts import read_artifact, write_artifact
from ..errors import ArtifactError, TadaError
from ..fingerprint import weights_fingerprint
from ..scorer.features import to_mono

Clip = np.ndarray | torch.Tensor

MUQ_MISSING = (
    "MuQ-MuLan alignment needs the muq package (pip install muq) and its weights "
    "(OpenMuQ/MuQ-MuLan-large) in a local directory"
)
CLAP_CHECKPOINT = "laion/larger_clap_music"
MUQ_CHECKPOINT = "OpenMuQ/MuQ-MuLan-large"
ALIGNMENTS = ("probe", "clap", "muq")

QUALITY_FIRST_SEED = 20_000_000
TRAINED_SEED_END = 6_000  # seeds 0-5,999: tada-mini's corpora; the shipped scorer's 500-5,999 lie inside
DEFAULT_K = 16
DEFAULT_REFERENCE_CLIPS = 256
FORMAT = "tada/quality-reference"
FORMAT_VERSION = "1"
_REQUIRED = ("format", "format_version", "scorer_fingerprint", "n", "k", "seeds", "seconds")
_VARIANCE_FLOOR = 1e-10  # a principal variance below this share of the largest is a direction the set never varies in


# --------------------------------------------------------------------------- audio


def _mono(clip: Clip, sr: int, rate: int) -> np.ndarray:
    """One clip as mono float32 at ``rate`` (the scorer's own conversion: channels averaged, soxr)."""
    return to_mono(clip, sr, rate)


def _window_starts(length: int, window: int) -> list[int]:
    """Starts of the fewest ``window``-long windows that cover ``length`` samples, evenly spaced, first at 0 and
    last ending at the end (they overlap unless ``window`` divides ``length``); one start for a short clip."""
    if length <= window:
        return [0]
    count = math.ceil(length / window)
    return [int(s) for s in np.round(np.linspace(0, length - window, count))]


def _pooled(output: Any) -> torch.Tensor:
    """``get_*_features`` returns a tensor in transformers 4 and a model output with ``pooler_output`` in 5."""
    return output if isinstance(output, torch.Tensor) else output.pooler_output


# --------------------------------------------------------------------------- alignment


class Alignment(ABC):
    """Text-audio alignment of clips: ``score`` gives one cosine similarity in [-1, 1] per clip."""

    name: str = ""

    def score(self, clips: Sequence[Clip], sr: int, text: str) -> np.ndarray:
        """Cosine similarity ``(n,)`` of each clip (``(samples,)`` or ``(channels, samples)``, rate ``sr``) with
        ``text``; an empty list gives an empty array."""
        if isinstance(clips, (np.ndarray, torch.Tensor)) and clips.ndim < 3:
            clips = [clips]  # one clip, not a batch of rows
        clips = list(clips)
        validate.integer("sample rate", sr, 1, 10_000_000, "samples per second")
        if not isinstance(text, str) or not text.strip():
            raise TadaError("alignment text is empty: give a description such as 'a piano song'")
        if not clips:
            return np.zeros(0)
        scores = np.asarray(self._score(clips, int(sr), text), dtype=np.float64).reshape(-1)
        if scores.shape != (len(clips),):
            raise TadaError(f"the {self.name} alignment gave {scores.shape[0]} scores for {len(clips)} clips")
        return scores

    @abstractmethod
    def _score(self, clips: list[Clip], sr: int, text: str) -> np.ndarray: ...

    @abstractmethod
    def fingerprint(self) -> str:
        """A short, stable identity of the weights (a resumed benchmark checks it)."""


class ScorerAlignment(Alignment):
    """``probe``: cosine similarity of clip and text on tada's offline scorer (:meth:`Scorer.similarity`)."""

    name = "probe"

    def __init__(self, scorer):
        self.scorer = scorer

    def _score(self, clips: list[Clip], sr: int, text: str) -> np.ndarray:
        return self.from_embeddings(self.scorer.embed_audio(clips, sr), text)

    def from_embeddings(self, embeddings: torch.Tensor, text: str) -> np.ndarray:
        """The scores of clips whose :meth:`Scorer.embed_audio` embeddings ``(n, dim)`` are at hand
        (the benchmark embeds each clip once for every metric)."""
        return (embeddings @ self.scorer.embed_text(text).T)[:, 0].double().numpy()

    def fingerprint(self) -> str:
        return self.scorer.fingerprint


class ClapAlignment(Alignment):
    """``clap``: a CLAP model (transformers' ``ClapModel`` and ``ClapProcessor``).

    The paper scores with LAION's music CLAP, ``laion/larger_clap_music``: put its files
    (config, weights, preprocessor and tokenizer files) in a directory and load it with
    :meth:`from_pretrained`. Clips are mixed to mono and resampled to the feature
    extractor's rate (48 kHz for LAION's checkpoints). A clip longer than the extractor's
    window (10 s) is cut into the fewest evenly spaced windows that cover it, and its
    embedding is the normalised mean of theirs: the extractor's own handling of long audio
    (a random crop, or random crops fused) would make a clip's score vary from call to call.
    For the same reason ``is_longer`` is set false for every window (the extractor marks a
    random clip of each batch "longer" when none is, which a fusion model would read).
    Audio and text embeddings are L2-normalised; the score is their cosine.
    """

    name = "clap"

    def __init__(self, model, processor, batch_size: int = 16, device: str | torch.device = "cpu"):
        self.device = torch.device(device)
        self.model = model.to(self.device).eval()
        self.processor = processor
        self.batch_size = validate.integer("CLAP batch size", batch_size, 1, 4096, "windows per forward pass")
        self._fingerprint: str | None = None

    @classmethod
    def from_pretrained(
        cls, path_or_id: str | Path, batch_size: int = 16, device: str | torch.device = "cpu"
    ) -> ClapAlignment:
        """A CLAP model and processor from a local directory, or a hub id already in the Hugging Face cache."""
        from huggingface_hub import constants
        from transformers import ClapModel, ClapProcessor

        source = str(path_or_id)
        local = Path(source).expanduser()
        if local.is_file():
            raise TadaError(f"CLAP weights {local} is a file; pass the directory holding config.json and the weights")
        try:
            processor = ClapProcessor.from_pretrained(str(local) if local.is_dir() else source)
            model = ClapModel.from_pretrained(str(local) if local.is_dir() else source)
        except (OSError, ValueError) as exc:
            if local.is_dir():
                reason = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
                raise TadaError(f"cannot load a CLAP model from {local}: {reason}") from None
            where = (
                "not in the Hugging Face cache (downloads are off: HF_HUB_OFFLINE is set)"
                if constants.HF_HUB_OFFLINE
                else "not loadable from the Hugging Face hub"
            )
            raise TadaError(
                f"no CLAP model at {source!r}: not a local directory, and {where}; put the files of "
                f"{CLAP_CHECKPOINT} (config.json, model weights, preprocessor and tokenizer files) in a directory "
                "and pass its path"
            ) from None
        return cls(model, processor, batch_size=batch_size, device=device)

    @property
    def sampling_rate(self) -> int:
        return int(self.processor.feature_extractor.sampling_rate)

    @torch.inference_mode()
    def embed_audio(self, clips: Sequence[Clip], sr: int) -> torch.Tensor:
        """Unit-norm audio embeddings ``(clips, dim)``; windows of all clips are run ``batch_size`` at a time."""
        if not clips:
            return torch.empty(0, self.model.config.projection_dim)
        extractor = self.processor.feature_extractor
        rate = self.sampling_rate
        window = int(extractor.nb_max_samples)
        pieces: list[np.ndarray] = []
        owners: list[int] = []
        for index, clip in enumerate(clips):
            wave = _mono(clip, sr, rate)
            for start in _window_starts(len(wave), window):
                pieces.append(wave[start : start + window])
                owners.append(index)
        rows = []
        for start in range(0, len(pieces), self.batch_size):
            inputs = extractor(pieces[start : start + self.batch_size], sampling_rate=rate, return_tensors="pt")
            features = inputs["input_features"].to(self.device, torch.float32)
            is_longer = torch.zeros(features.shape[0], 1, dtype=torch.bool, device=self.device)
            rows.append(_pooled(self.model.get_audio_features(input_features=features, is_longer=is_longer)))
        windows = F.normalize(torch.cat(rows).float(), dim=-1)
        owner = torch.tensor(owners, device=windows.device)
        sums = torch.zeros(len(clips), windows.shape[1], device=windows.device).index_add_(0, owner, windows)
        return F.normalize(sums, dim=-1).cpu()

    @torch.inference_mode()
    def embed_text(self, text: str) -> torch.Tensor:
        """The unit-norm text embedding ``(1, dim)``."""
        tokens = self.processor.tokenizer([text], padding=True, truncation=True, return_tensors="pt")
        tokens = {key: value.to(self.device) for key, value in tokens.items() if key in ("input_ids", "attention_mask")}
        return F.normalize(_pooled(self.model.get_text_features(**tokens)).float(), dim=-1).cpu()

    def _score(self, clips: list[Clip], sr: int, text: str) -> np.ndarray:
        return (self.embed_audio(clips, sr) @ self.embed_text(text).T)[:, 0].double().numpy()

    def fingerprint(self) -> str:
        if self._fingerprint is None:
            self._fingerprint = weights_fingerprint(self.model)
        return self._fingerprint


def _require_muq():
    try:
        from muq import MuQMuLan
    except ImportError:
        raise TadaError(MUQ_MISSING) from None
    return MuQMuLan


class MuqAlignment(Alignment):
    """``muq``: MuQ-MuLan (``OpenMuQ/MuQ-MuLan-large``) through the ``muq`` package.

    As the package documents it: ``MuQMuLan.from_pretrained(directory)``, mono audio at
    24 kHz as a ``(batch, samples)`` tensor through ``model(wavs=...)``, texts through
    ``model(texts=[...])``, and ``model.calc_similarity(audio, text)`` (a dot product;
    the embeddings are L2-normalised first, so it is the cosine). The model splits long
    audio into its own 10 s windows. Clips of equal length are batched together.
    """

    name = "muq"
    SAMPLE_RATE = 24_000

    def __init__(self, model, batch_size: int = 8, device: str | torch.device = "cpu"):
        self.device = torch.device(device)
        self.model = model.to(self.device).eval()
        self.batch_size = validate.integer("MuQ batch size", batch_size, 1, 4096, "clips per forward pass")
        self._fingerprint: str | None = None

    @classmethod
    def from_pretrained(cls, path: str | Path, batch_size: int = 8, device: str | torch.device = "cpu") -> MuqAlignment:
        """MuQ-MuLan from a local directory of its weights; one clear line if the package or the weights are missing."""
        muq_mulan = _require_muq()
        directory = Path(path).expanduser()
        if not directory.is_dir():
            raise TadaError(f"no MuQ-MuLan weights directory at {directory} (download {MUQ_CHECKPOINT} there)")
        try:
            model = muq_mulan.from_pretrained(str(directory))
        except (OSError, ValueError, RuntimeError) as exc:
            reason = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
            raise TadaError(f"cannot load MuQ-MuLan from {directory}: {reason}") from None
        return cls(model, batch_size=batch_size, device=device)

    @torch.inference_mode()
    def embed_audio(self, clips: Sequence[Clip], sr: int) -> torch.Tensor:
        """Unit-norm audio embeddings ``(clips, dim)``; clips of equal length are run together, ``batch_size`` at a
        time."""
        if not clips:
            raise TadaError("no audio clips given")
        waves = [_mono(clip, sr, self.SAMPLE_RATE) for clip in clips]
        out: torch.Tensor | None = None
        for length in sorted({len(w) for w in waves}):
            same = [i for i, w in enumerate(waves) if len(w) == length]
            for start in range(0, len(same), self.batch_size):
                rows = same[start : start + self.batch_size]
                batch = torch.from_numpy(np.stack([waves[i] for i in rows])).to(self.device)
                embeds = F.normalize(self.model(wavs=batch).float(), dim=-1).cpu()
                if out is None:
                    out = torch.empty(len(waves), embeds.shape[1])
                out[rows] = embeds
        assert out is not None
        return out

    @torch.inference_mode()
    def embed_text(self, text: str) -> torch.Tensor:
        """The unit-norm text embedding ``(1, dim)``."""
        return F.normalize(self.model(texts=[text]).float(), dim=-1).cpu()

    def _score(self, clips: list[Clip], sr: int, text: str) -> np.ndarray:
        audio, text_embed = self.embed_audio(clips, sr), self.embed_text(text)
        with torch.inference_mode():
            similarity = self.model.calc_similarity(audio.to(self.device), text_embed.to(self.device))
        return similarity.reshape(len(clips), -1)[:, 0].double().cpu().numpy()

    def fingerprint(self) -> str:
        if self._fingerprint is None:
            self._fingerprint = weights_fingerprint(self.model)
        return self._fingerprint


def alignment_plugins(
    names: Sequence[str],
    scorer=None,
    clap: str | Path | None = None,
    muq: str | Path | None = None,
    device: str | torch.device = "cpu",
) -> list[Alignment]:
    """The alignment plug-ins called ``names`` (``probe``, ``clap``, ``muq``), in the order given, each once.

    ``probe`` uses ``scorer``; ``clap`` loads the CLAP directory (or cached hub id) ``clap``;
    ``muq`` the MuQ-MuLan directory ``muq`` and needs the ``muq`` package.
    """
    wanted = list(dict.fromkeys(str(name).strip().lower() for name in names))
    if not wanted or "" in wanted:
        raise TadaError(f"name at least one alignment metric ({', '.join(ALIGNMENTS)})")
    unknown = [name for name in wanted if name not in ALIGNMENTS]
    if unknown:
        raise TadaError(f"unknown alignment metric {unknown[0]!r}: choose from {', '.join(ALIGNMENTS)}")
    if "probe" in wanted and scorer is None:
        raise TadaError("the probe alignment needs tada's scorer: load one with Scorer.load()")
    if "clap" in wanted and not clap:
        raise TadaError(f"the clap alignment needs a CLAP model: a local directory holding {CLAP_CHECKPOINT}")
    if "muq" in wanted:
        _require_muq()
        if not muq:
            raise TadaError(f"the muq alignment needs a local directory holding the weights of {MUQ_CHECKPOINT}")
    plugins: list[Alignment] = []
    for name in wanted:
        if name == "probe":
            plugins.append(ScorerAlignment(scorer))
        elif name == "clap":
            plugins.append(ClapAlignment.from_pretrained(clap, device=device))
        else:
            plugins.append(MuqAlignment.from_pretrained(muq, device=device))
    return plugins


# --------------------------------------------------------------------------- held-out corpus audio


def _check_seeds(first_seed: int, n: int) -> None:
    validate.integer("n", n, 1, 1_000_000, "clips to render")
    validate.integer("first seed", first_seed, 0, validate.MAX_SEED - (n - 1), f"the seeds are first ... first+{n - 1}")
    if first_seed < TRAINED_SEED_END:
        raise TadaError(
            f"seeds {first_seed}-{first_seed + n - 1} overlap the corpus seeds tada-mini and the scorer trained on "
            f"(0-{TRAINED_SEED_END - 1}); held-out audio starts at {TRAINED_SEED_END} (default {QUALITY_FIRST_SEED})"
        )


def render_heldout_clips(
    n: int,
    first_seed: int = QUALITY_FIRST_SEED,
    seconds: float | None = None,
    soundfont: str | None = None,
) -> list[np.ndarray]:
    """``n`` corpus clips of seeds ``first_seed ... first_seed + n - 1``, mono float32 at 16 kHz.

    Each is rendered as ``tada data make`` renders it (FluidSynth and espeak-ng, from the
    seed alone), in this process, ``seconds`` long (default the corpus's 5 s, tada-mini's
    clip length; a longer clip is the same piece composed further). Needs the rendering
    tools (``make setup``); a missing one fails with one line. Measured on the project's
    2-core machine, shared with other jobs: 0.26-0.28 s per 5 s clip (over 128 and 512
    clips), and the scorer embeds one in 0.13-0.15 s, so the default reference of 256 clips
    takes under 2 minutes to build.
    """
    from ..data.attributes import CLIP_SECONDS, sample_spec
    from ..data.corpus import clip_id, render_spec
    from ..data.render import check_tools

    _check_seeds(first_seed, n)
    seconds = (
        CLIP_SECONDS
        if seconds is None
        else validate.finite("seconds", seconds, 0.0, validate.MAX_SECONDS, "the clip length", low_open=True)
    )
    soundfont = check_tools(soundfont)
    return [
        render_spec(replace(sample_spec(seed, clip_id(seed)), seconds=float(seconds)), soundfont)
        for seed in range(first_seed, first_seed + n)
    ]


# --------------------------------------------------------------------------- quality


def _seed_ranges(seeds: Sequence[int]) -> list[list[int]]:
    """Sorted seeds as inclusive ``[first, last]`` runs."""
    runs: list[list[int]] = []
    for seed in sorted(set(int(s) for s in seeds)):
        if runs and seed == runs[-1][1] + 1:
            runs[-1][1] = seed
        else:
            runs.append([seed, seed])
    return runs


def _as_embeddings(embeddings: np.ndarray | torch.Tensor, dim: int) -> np.ndarray:
    array = embeddings.detach().cpu().double().numpy() if isinstance(embeddings, torch.Tensor) else embeddings
    array = np.asarray(array, dtype=np.float64)
    if array.ndim == 1:
        array = array[None]
    if array.ndim != 2 or array.shape[1] != dim:
        raise TadaError(f"embeddings of shape {array.shape} do not match the reference's {dim} dimensions")
    if not np.isfinite(array).all():
        raise TadaError("embeddings contain NaN or infinite values")
    return array


def _sym(matrix: np.ndarray) -> np.ndarray:
    return (matrix + matrix.T) / 2


@dataclass(frozen=True, eq=False)
class QualityReference:
    """Mean, covariance and principal axes of the scorer's audio embeddings of held-out corpus audio.

    ``components`` holds the eigenvectors of ``covariance`` as columns, by decreasing
    ``variances``. ``k`` is the number of principal components :func:`frechet_distance` and
    :func:`typicality` use unless told otherwise. ``seeds`` are the corpus seeds of the
    clips (None for clips from elsewhere) and ``seconds`` their length.
    """

    mean: np.ndarray
    covariance: np.ndarray
    components: np.ndarray
    variances: np.ndarray
    n: int
    scorer_fingerprint: str
    seeds: tuple[int, ...] | None = None
    seconds: float | None = None
    k: int = DEFAULT_K

    def __post_init__(self) -> None:
        self.check_k(self.k)

    # -- construction ------------------------------------------------------------
    @classmethod
    def from_embeddings(
        cls,
        embeddings: np.ndarray | torch.Tensor,
        scorer_fingerprint: str,
        seeds: Sequence[int] | None = None,
        seconds: float | None = None,
        k: int = DEFAULT_K,
    ) -> QualityReference:
        """The reference of ``embeddings`` ``(n, dim)`` (sample covariance, ``n - 1`` in the denominator)."""
        array = np.asarray(
            embeddings.detach().cpu().double().numpy() if isinstance(embeddings, torch.Tensor) else embeddings,
            dtype=np.float64,
        )
        if array.ndim != 2 or array.shape[0] < 2:
            raise TadaError(f"a quality reference needs embeddings (clips, dim) of at least 2 clips; got {array.shape}")
        array = _as_embeddings(array, array.shape[1])
        if seeds is not None and len(seeds) != array.shape[0]:
            raise TadaError(f"{len(seeds)} seeds given for {array.shape[0]} reference clips")
        mean = array.mean(axis=0)
        covariance = _sym(np.cov(array, rowvar=False))
        variances, components = np.linalg.eigh(covariance)
        order = np.argsort(variances)[::-1]
        variances, components = np.clip(variances[order], 0.0, None), components[:, order]
        # An eigenvector's sign is arbitrary: fix it (largest entry positive) so equal data give equal files.
        signs = np.sign(components[np.abs(components).argmax(axis=0), np.arange(components.shape[1])])
        components = components * np.where(signs == 0, 1.0, signs)
        return cls(
            mean=mean,
            covariance=covariance,
            components=components,
            variances=variances,
            n=int(array.shape[0]),
            scorer_fingerprint=str(scorer_fingerprint),
            seeds=None if seeds is None else tuple(int(s) for s in seeds),
            seconds=None if seconds is None else float(seconds),
            k=k,
        )

    @classmethod
    def build(
        cls,
        scorer,
        clips: Sequence[Clip],
        sr: int,
        seeds: Sequence[int] | None = None,
        seconds: float | None = None,
        k: int = DEFAULT_K,
    ) -> QualityReference:
        """The reference of ``clips`` (at rate ``sr``) embedded by ``scorer`` (:meth:`Scorer.embed_audio`)."""
        embeddings = scorer.embed_audio(list(clips), sr)
        return cls.from_embeddings(embeddings, scorer.fingerprint, seeds=seeds, seconds=seconds, k=k)

    @classmethod
    def from_heldout(
        cls,
        scorer,
        n: int = DEFAULT_REFERENCE_CLIPS,
        first_seed: int = QUALITY_FIRST_SEED,
        seconds: float | None = None,
        k: int = DEFAULT_K,
        soundfont: str | None = None,
    ) -> QualityReference:
        """Render ``n`` held-out corpus clips (:func:`render_heldout_clips`) and build the reference of them."""
        from ..data.attributes import CLIP_SECONDS, SAMPLE_RATE

        seconds = CLIP_SECONDS if seconds is None else seconds
        if n < k + 1:
            raise TadaError(f"a reference of {n} clips cannot give {k} principal components; render at least {k + 1}")
        clips = render_heldout_clips(n, first_seed, seconds, soundfont)
        seeds = range(first_seed, first_seed + n)
        return cls.build(scorer, clips, SAMPLE_RATE, seeds=seeds, seconds=seconds, k=k)

    # -- facts ------------------------------------------------------------------
    @property
    def dim(self) -> int:
        return int(self.mean.shape[0])

    @property
    def max_k(self) -> int:
        """How many principal components the reference resolves: at most ``n - 1``, and only non-zero variances."""
        top = float(self.variances[0]) if self.variances.size else 0.0
        resolved = int(np.count_nonzero(self.variances > _VARIANCE_FLOOR * top)) if top > 0 else 0
        return min(resolved, self.n - 1)

    def check_k(self, k: int) -> int:
        validate.integer("k", k, 1, self.dim, "principal components of the reference embeddings")
        if k > self.max_k:
            raise TadaError(
                f"k={k} principal components asked of a quality reference that resolves {self.max_k} "
                f"({self.n} clips): use k <= {self.max_k} or a larger reference"
            )
        return int(k)

    @property
    def fingerprint(self) -> str:
        """Which scorer, seeds, clip count, clip length and k made this reference, and a hash of its statistics."""
        digest = hashlib.sha256()
        for array in (self.mean, self.covariance):
            digest.update(np.ascontiguousarray(array, dtype="<f8").tobytes())
        seeds = "none" if self.seeds is None else ",".join(f"{a}-{b}" for a, b in _seed_ranges(self.seeds))
        seconds = "none" if self.seconds is None else f"{self.seconds:g}"
        return (
            f"scorer={self.scorer_fingerprint};seeds={seeds};n={self.n};seconds={seconds};k={self.k};"
            f"stats={digest.hexdigest()[:12]}"
        )

    def check_scorer(self, scorer) -> None:
        """Refuse a scorer other than the one whose embeddings made this reference."""
        if scorer.fingerprint != self.scorer_fingerprint:
            raise TadaError(
                f"the quality reference was built with scorer {self.scorer_fingerprint}, not this scorer "
                f"({scorer.fingerprint}): build the reference again with it"
            )

    def project(self, embeddings: np.ndarray | torch.Tensor, k: int | None = None) -> np.ndarray:
        """Coordinates ``(n, k)`` of embeddings on the top ``k`` principal axes, about the reference mean."""
        k = self.check_k(self.k if k is None else k)
        return (_as_embeddings(embeddings, self.dim) - self.mean) @ self.components[:, :k]

    # -- files ------------------------------------------------------------------
    def save(self, path: str | Path) -> Path:
        """A safetensors file (written atomically, reproducibly) with the statistics and their provenance."""
        meta = {
            "format": FORMAT,
            "format_version": FORMAT_VERSION,
            "tada_version": __version__,
            "scorer_fingerprint": self.scorer_fingerprint,
            "n": str(self.n),
            "k": str(self.k),
            "seeds": json.dumps(None if self.seeds is None else _seed_ranges(self.seeds)),
            "seconds": json.dumps(self.seconds),
            "fingerprint": self.fingerprint,
        }
        tensors = {
            "mean": torch.from_numpy(np.ascontiguousarray(self.mean, dtype=np.float64)),
            "covariance": torch.from_numpy(np.ascontiguousarray(self.covariance, dtype=np.float64)),
            "components": torch.from_numpy(np.ascontiguousarray(self.components, dtype=np.float64)),
            "variances": torch.from_numpy(np.ascontiguousarray(self.variances, dtype=np.float64)),
        }
        return write_artifact(path, tensors, meta)

    @classmethod
    def load(cls, path: str | Path) -> QualityReference:
        def build(tensors: dict[str, torch.Tensor], meta: dict[str, str]) -> QualityReference:
            arrays = {key: tensors[key].double().numpy() for key in ("mean", "covariance", "components", "variances")}
            dim = arrays["mean"].shape
            if (
                len(dim) != 1
                or arrays["covariance"].shape != dim * 2
                or arrays["components"].shape != dim * 2
                or arrays["variances"].shape != dim
            ):
                raise ArtifactError("its mean, covariance, components and variances do not fit one another")
            runs = json.loads(meta["seeds"])
            seeds = None if runs is None else tuple(s for a, b in runs for s in range(int(a), int(b) + 1))
            seconds = json.loads(meta["seconds"])
            try:
                return cls(
                    **arrays,
                    n=int(meta["n"]),
                    scorer_fingerprint=meta["scorer_fingerprint"],
                    seeds=seeds,
                    seconds=None if seconds is None else float(seconds),
                    k=int(meta["k"]),
                )
            except TadaError as exc:
                raise ArtifactError(str(exc)) from None

        return read_artifact(Path(path), FORMAT, FORMAT_VERSION, _REQUIRED, "quality reference", build)


def frechet_gaussians(
    mean1: np.ndarray, cov1: np.ndarray, mean2: np.ndarray, cov2: np.ndarray, eps: float = 1e-6
) -> float:
    """Fréchet (2-Wasserstein) distance between two Gaussians:
    ``|mu1 - mu2|^2 + Tr(S1 + S2 - 2 (S1 S2)^(1/2))``.

    The square root is ``scipy.linalg.sqrtm``. A singular covariance (fewer samples than
    dimensions) makes the product's root ill-conditioned, so when either covariance has an
    eigenvalue below ``eps`` times the mean variance, ``eps`` times the mean variance is
    added to both diagonals (as pytorch-fid does). An imaginary part left by round-off is
    dropped; a large one is an error. The result is clipped at 0 (round-off can leave
    -1e-16 for identical Gaussians).
    """
    from scipy import linalg

    mean1, mean2 = np.atleast_1d(np.asarray(mean1, np.float64)), np.atleast_1d(np.asarray(mean2, np.float64))
    cov1, cov2 = _sym(np.atleast_2d(np.asarray(cov1, np.float64))), _sym(np.atleast_2d(np.asarray(cov2, np.float64)))
    dim = mean1.shape[0]
    if mean2.shape != (dim,) or cov1.shape != (dim, dim) or cov2.shape != (dim, dim):
        raise TadaError(f"Gaussians of different shapes: {mean1.shape}, {cov1.shape} and {mean2.shape}, {cov2.shape}")
    scale = max(float(np.trace(cov1)), float(np.trace(cov2))) / dim or 1.0
    offset = eps * scale
    if min(np.linalg.eigvalsh(cov1)[0], np.linalg.eigvalsh(cov2)[0]) < offset:
        cov1 = cov1 + offset * np.eye(dim)
        cov2 = cov2 + offset * np.eye(dim)
    root = linalg.sqrtm(cov1 @ cov2)
    if np.iscomplexobj(root):
        if np.abs(root.imag).max() > 1e-3 * max(np.abs(root.real).max(), scale):
            raise TadaError("the covariances' product has no real square root (a covariance is not positive)")
        root = root.real
    if not np.isfinite(root).all():
        raise TadaError("the Fréchet distance is not finite: the covariances are degenerate")
    diff = mean1 - mean2
    distance = float(diff @ diff + np.trace(cov1) + np.trace(cov2) - 2.0 * np.trace(root))
    return max(distance, 0.0)


def frechet_distance(embeddings: np.ndarray | torch.Tensor, reference: QualityReference, k: int | None = None) -> float:
    """Fréchet distance between the Gaussian of ``embeddings`` ``(n, dim)`` and the reference's, on the reference's
    top ``k`` principal axes (default ``reference.k``; ``k = reference.dim`` is the full space, a rotation of it).

    There the reference Gaussian is ``N(0, diag(variances[:k]))``. The set needs at least 2
    clips; with ``n <= k`` its covariance is singular and :func:`frechet_gaussians` regularises it.
    """
    k = reference.check_k(reference.k if k is None else k)
    coords = reference.project(embeddings, k)
    if coords.shape[0] < 2:
        raise TadaError("a Fréchet distance needs at least 2 clips")
    cov = np.atleast_2d(np.cov(coords, rowvar=False))
    return frechet_gaussians(coords.mean(axis=0), cov, np.zeros(k), np.diag(reference.variances[:k]))


def typicality(
    embeddings: np.ndarray | torch.Tensor,
    reference: QualityReference,
    k: int | None = None,
    residual: bool = True,
) -> np.ndarray:
    """Per-clip quality proxy ``(n,)``: minus each embedding's squared Mahalanobis distance from the reference
    Gaussian, divided by the number of dimensions it is measured in; higher is better, about -1 for a corpus clip.

    The Gaussian is the reference's probabilistic PCA (Tipping and Bishop): its top ``k``
    principal axes with their own variances, and one shared variance ``s2`` (the mean of the
    other ``dim - k`` variances, the maximum-likelihood value) for everything off them::

        typicality(x) = -(sum_i z_i^2 / var_i + |r|^2 / s2) / dim

    with ``z`` the coordinates of ``x - mean`` on the top axes and ``r`` the rest of it. This is
    the clip's own term of the Gaussian log-likelihood, ``log p(x) = const - d_M(x)^2 / 2``,
    whose set-level comparison is the Fréchet distance: FD asks whether a set of clips is
    distributed like the corpus, typicality how corpus-like each clip is, so it can be
    averaged per steering strength next to alignment. A reference clip's expected squared
    distance is ``dim (n - 1) / n``, hence about -1; steering that pushes clips off the
    music moves their embeddings away from the corpus and lowers it.

    ``residual=False`` keeps only the top-``k`` term, divided by ``k``. That alone misses
    clips that leave the music sideways. Measured with the shipped scorer against a
    reference of 256 held-out clips (k = 16), means over 32 clips of each kind: unseen held-out music
    -0.99 with the top-k term alone, white noise -0.75 and near-silence -0.76 (better than
    music: their embeddings fall off the corpus's principal axes, not along them); with the
    residual term music -1.19, music clipped -1.69, music with noise at 5 dB SNR -2.84,
    white noise -3.79, near-silence -4.34.
    """
    k = reference.check_k(reference.k if k is None else k)
    offset = _as_embeddings(embeddings, reference.dim) - reference.mean
    coords = offset @ reference.components[:, :k]
    top = (coords**2 / reference.variances[:k]).sum(axis=1)
    if not residual or k == reference.dim:
        return -top / (reference.dim if residual else k)
    rest = float(reference.variances[k:].sum())
    if rest <= _VARIANCE_FLOOR * float(reference.variances[0]):
        raise TadaError(
            f"the quality reference ({reference.n} clips) has no variance beyond its top {k} components: "
            "use a smaller k or a larger reference"
        )
    shared = rest / (reference.dim - k)
    off_axes = offset - coords @ reference.components[:, :k].T
    return -(top + (off_axes**2).sum(axis=1) / shared) / reference.dim
