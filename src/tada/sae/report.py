"""`tada sae report`: what the top features of trained SAEs respond to, as an HTML page and as markdown.

For every SAE in a directory (one per hookpoint) the report reads the SAE's activation cache once, shard
by shard, encoding each cached vector with the SAE's per-token TopK. That one pass gives, for every
feature, how many cached vectors keep it (value above zero), its mean activation at each cached step
(the timestep profile, the mean over every cached vector of that step, zeros included) and the cached
captions whose vectors activate it most (the maximum over that caption's tokens and cached steps).

Features are ranked by how often they fire, or, with a concept preset, by the concept's score as ``tada
fit --method sae`` computes it: the concept's prompt pairs are generated with the cache's sampler settings
and every feature's dense pre-activations are summed per step (:func:`tada.methods.sae.feature_totals`);
the ranking uses the ``tfidf`` rule averaged over the steps, and ``diff`` and Cohen's d are shown beside
it. The top-activating captions are generated again with the cache's own settings and seed (caption
``i`` from ``seed + i``), each clip once however many features show it, so the page plays what the SAE
saw. ``out`` receives ``index.html``, ``report.md``, ``audio/*.wav`` and ``figures/*.png``.
"""

from __future__ import annotations

import html
import io
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from tqdm.auto import tqdm

from .. import validate
from ..concepts import concept_pairs
from ..engine import Site
from ..errors import TadaError
from ..files import write_bytes, write_text
from ..methods.sae import SCORES, feature_scores, feature_totals, sae_sites
from .cache import ActivationCache
from .model import TopKSAE, load_saes

RANKING_RULE = "tfidf"  # the rule `tada fit --method sae` picks features with by default
SCORING_BATCH_PAIRS = 4  # as `tada fit`: pairs generated together while scoring
ENCODE_BUDGET = 1 << 25  # dense pre-activations held while encoding a chunk of cached vectors (128 MiB)
PASS_NAMES = {"cond": "conditional pass", "uncond": "unconditional pass", "both": "both guidance passes"}
SCORE_NAMES = {"tfidf": "tf-idf", "diff": "diff", "cohen": "Cohen's d"}


# -- reading the cache ------------------------------------------------------------------------------
def open_cache(sae: TopKSAE, cache_dir: str | Path | None) -> ActivationCache:
    """The activation cache an SAE is reported on: ``cache_dir`` if given, else the one it was trained on."""
    where = cache_dir if cache_dir is not None else sae.cfg.tada.get("cache")
    if where is None:
        raise TadaError(
            f"the SAE at {sae.hookpoint} does not name the activation cache it was trained on; give one with --cache"
        )
    try:
        return ActivationCache(where)
    except TadaError as exc:
        hint = "check --cache" if cache_dir is not None else "give the right one with --cache"
        raise TadaError(f"cannot read the activation cache of the SAE at {sae.hookpoint}: {exc}; {hint}") from None


def check_cache_fits(cache: ActivationCache, model: Any, sae: TopKSAE) -> str:
    """The cache's alias of the SAE's hookpoint, once the cache is known to come from ``model`` and to
    hold that hookpoint with all its captions."""
    if cache.config.get("family") != model.family:
        raise TadaError(
            f"{cache.directory} was cached from {cache.config.get('family')}, not {model.family}; "
            "report with the model the SAE was trained on"
        )
    alias = cache.site_alias(sae.hookpoint)
    if len(cache.captions) != cache.config["captions"]:
        raise TadaError(f"{cache.directory} lacks its caption list (captions.txt); rerun `tada sae cache` there")
    return alias


def encode_rows(sae: TopKSAE) -> int:
    """How many cached vectors to encode together so the dense pre-activations stay within budget."""
    return max(16, min(8192, ENCODE_BUDGET // sae.num_latents))


def keep_strongest(
    latent: torch.Tensor, caption: torch.Tensor, value: torch.Tensor, per_latent: int, n_captions: int
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Of (latent, caption, activation) entries, each caption's maximum per latent, then each latent's
    ``per_latent`` strongest captions (ties to the lower caption number), sorted by latent."""
    key = latent * n_captions + caption
    unique, inverse = torch.unique(key, return_inverse=True)
    best = torch.full(unique.shape, float("-inf"), dtype=value.dtype).scatter_reduce(0, inverse, value, "amax")
    latent, caption = unique // n_captions, unique % n_captions  # sorted by latent, then caption
    order = torch.sort(best, descending=True, stable=True).indices
    order = order[torch.sort(latent[order], stable=True).indices]
    latent, caption, best = latent[order], caption[order], best[order]
    _, runs = torch.unique_consecutive(latent, return_counts=True)
    starts = torch.repeat_interleave(torch.cumsum(runs, 0) - runs, runs)
    keep = torch.arange(latent.numel()) - starts < per_latent
    return latent[keep], caption[keep], best[keep]


class StrongestCaptions:
    """Each latent's strongest captions over a stream of (latent, caption, activation) entries. Every chunk
    is reduced on its own (a caption it drops is beaten by ``per_latent`` others there, so it cannot be among
    the strongest overall), and the reduced chunks are merged into the table once they outgrow it."""

    MIN_PENDING = 1 << 16

    def __init__(self, per_latent: int, n_captions: int):
        self.per_latent, self.n_captions = per_latent, n_captions
        empty = torch.zeros(0, dtype=torch.int64)
        self.table: tuple[torch.Tensor, torch.Tensor, torch.Tensor] = (empty, empty, torch.zeros(0))
        self.pending: list[tuple[torch.Tensor, torch.Tensor, torch.Tensor]] = []
        self.pending_size = 0

    def add(self, latent: torch.Tensor, caption: torch.Tensor, value: torch.Tensor) -> None:
        reduced = keep_strongest(latent, caption, value, self.per_latent, self.n_captions)
        self.pending.append(reduced)
        self.pending_size += reduced[0].numel()
        if self.pending_size >= max(self.table[0].numel(), self.MIN_PENDING):
            self._merge()

    def _merge(self) -> None:
        parts = [self.table, *self.pending]
        latent, caption, value = (torch.cat([part[i] for part in parts]) for i in range(3))
        self.table = keep_strongest(latent, caption, value, self.per_latent, self.n_captions)
        self.pending, self.pending_size = [], 0

    def result(self) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """(latent, caption, max activation) of every latent's strongest captions, sorted by latent."""
        self._merge()
        return self.table


@dataclass
class FeatureActivity:
    """What one pass of an SAE over its cache found, for every feature."""

    vectors: int  # cached vectors read
    fires: torch.Tensor  # (latents,) vectors whose kept TopK latents include the feature (above zero)
    steps: list[int]  # the cached denoising steps
    step_mean: torch.Tensor  # (cached steps, latents) mean activation per cached step
    strongest: tuple[torch.Tensor, torch.Tensor, torch.Tensor]  # (latent, caption, max activation)

    def examples(self, feature: int) -> list[tuple[int, float]]:
        """The feature's strongest captions, as (caption number, max activation), strongest first."""
        latent, caption, value = self.strongest
        mine = latent == feature
        order = torch.sort(value[mine], descending=True, stable=True).indices
        return [(int(c), float(v)) for c, v in zip(caption[mine][order], value[mine][order], strict=True)]


@torch.no_grad()
def scan_cache(
    sae: TopKSAE, cache: ActivationCache, alias: str, examples: int, *, progress: bool = True
) -> FeatureActivity:
    """One pass over a cached site: firing counts, per-step mean activations and strongest captions."""
    steps = [int(s) for s in cache.config["cached_steps"]]
    position_of = torch.full((max(steps) + 1,), -1, dtype=torch.int64)
    position_of[torch.tensor(steps)] = torch.arange(len(steps))
    latents, n_captions = sae.num_latents, int(cache.config["captions"])
    fires = torch.zeros(latents, dtype=torch.int64)
    step_sum = torch.zeros(len(steps), latents, dtype=torch.float64)
    step_vectors = torch.zeros(len(steps), dtype=torch.int64)
    strongest = StrongestCaptions(examples, n_captions)
    chunk = encode_rows(sae)
    for acts, labels in cache.shards_of(alias, columns=("caption", "step"), progress=progress):
        for start in range(0, acts.shape[0], chunk):
            x = acts[start : start + chunk].to(sae.W_dec.device)
            caption = labels["caption"][start : start + chunk]
            position = position_of[labels["step"][start : start + chunk]]
            values, indices = sae.encode(x)
            values, indices = values.float().cpu(), indices.cpu()
            fired = values > 0
            row = torch.arange(x.shape[0])[:, None].expand_as(indices)[fired]
            latent, value = indices[fired], values[fired]
            fires += torch.bincount(latent, minlength=latents)
            step_vectors += torch.bincount(position, minlength=len(steps))
            step_sum.view(-1).index_add_(0, position[row] * latents + latent, value.double())
            strongest.add(latent, caption[row], value)
    return FeatureActivity(
        vectors=int(step_vectors.sum()),
        fires=fires,
        steps=steps,
        step_mean=step_sum / step_vectors.clamp_min(1)[:, None],
        strongest=strongest.result(),
    )


# -- ranking ----------------------------------------------------------------------------------------
def sampler_settings(cache: ActivationCache) -> tuple[float, int, float]:
    """Seconds, steps and guidance the cache was generated with."""
    config = cache.config
    return float(config["seconds"]), int(config["steps"]), float(config["guidance"])


def concept_scores(
    model: Any,
    pairs: Sequence[tuple[str, str]],
    chosen: dict[str, tuple[Site, TopKSAE]],
    caches: dict[str, ActivationCache],
    *,
    desc: str,
    progress: bool = True,
) -> dict[str, dict[str, torch.Tensor]]:
    """Per SAE site and score rule, every feature's score averaged over the steps. SAEs whose caches share
    sampler settings are scored on one generation of the pairs."""
    groups: dict[tuple[float, int, float], dict[str, tuple[Site, TopKSAE]]] = {}
    for alias, pair in chosen.items():
        groups.setdefault(sampler_settings(caches[alias]), {})[alias] = pair
    out: dict[str, dict[str, torch.Tensor]] = {}
    for (seconds, steps, guidance), group in groups.items():
        settings = {
            "seconds": seconds,
            "steps": steps,
            "guidance": guidance,
            "seed": 0,
            "batch_pairs": SCORING_BATCH_PAIRS,
        }
        totals, _ = feature_totals(model, pairs, group, settings, desc=desc, progress=progress)
        for alias in group:
            out[alias] = {rule: feature_scores(totals, alias, rule).mean(0).float() for rule in SCORES}
    return out


def rank_features(activity: FeatureActivity, scores: dict[str, torch.Tensor] | None, top: int) -> list[int]:
    """The ``top`` features by the concept's score (descending), or else by how often they fire
    (features that never fire are left out)."""
    if scores is not None:
        order = torch.sort(scores[RANKING_RULE], descending=True, stable=True).indices
    else:
        order = torch.sort(activity.fires, descending=True, stable=True).indices
        order = order[activity.fires[order] > 0]
    return [int(f) for f in order[:top]]


# -- audio and figures ------------------------------------------------------------------------------
def clip_name(caption: int) -> str:
    """The WAV file of one cached caption."""
    return f"caption-{caption:05d}.wav"


def write_clips(
    model: Any, cache: ActivationCache, captions: Sequence[int], folder: Path, *, progress: bool = True
) -> None:
    """Generate the cached captions again with the cache's settings and seeds, in the cache's batch size."""
    seconds, steps, guidance = sampler_settings(cache)
    texts, seed, batch = cache.captions, int(cache.config["seed"]), int(cache.config["batch"])
    starts = range(0, len(captions), batch)
    with model.quiet():
        for start in tqdm(starts, desc="generating examples", unit="batch", disable=not progress):
            chunk = list(captions[start : start + batch])
            audio = model.generate(
                [texts[i] for i in chunk],
                seconds=seconds,
                steps=steps,
                guidance=guidance,
                seed=[seed + i for i in chunk],
            )
            for row, caption in enumerate(chunk):
                audio.save(folder / clip_name(caption), row)


def plot_profile(steps: list[int], means: torch.Tensor, total_steps: int, path: Path, title: str) -> None:
    """A small line plot of one feature's mean activation per cached step."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure
    from matplotlib.ticker import MaxNLocator

    fig = Figure(figsize=(3.4, 1.9), dpi=100)
    FigureCanvasAgg(fig)
    ax = fig.add_subplot()
    ax.plot(steps, means.tolist(), "o-", ms=3, lw=1.2)
    ax.set_xlim(-0.5, total_steps - 0.5)
    ax.set_ylim(bottom=0)
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.set_xlabel(f"denoising step (of {total_steps})", fontsize=7)
    ax.set_ylabel("mean activation", fontsize=7)
    ax.set_title(title, fontsize=8)
    ax.tick_params(labelsize=6)
    fig.tight_layout()
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png")
    write_bytes(path, buffer.getvalue())


def safe_name(text: str) -> str:
    """A site alias as a file name (letters, digits, dots, dashes and underscores)."""
    return re.sub(r"[^A-Za-z0-9._-]+", "_", text)


# -- what the page shows ----------------------------------------------------------------------------
@dataclass
class Example:
    """One caption shown for a feature: its number in the cache, text, max activation and clip."""

    caption_number: int
    caption: str
    activation: float
    audio: str  # path relative to the report


@dataclass
class FeatureView:
    """One shown feature: firing count and share, concept scores (empty without a concept), figure, examples."""

    number: int
    fires: int
    fire_share: float
    scores: dict[str, float]
    profile: str  # path relative to the report
    examples: list[Example]


@dataclass
class SAEView:
    """One SAE's part of the report."""

    alias: str
    hookpoint: str
    summary: list[str]
    ranking: str
    features: list[FeatureView] = field(default_factory=list)


def sae_summary(sae: TopKSAE, cache: ActivationCache, activity: FeatureActivity) -> list[str]:
    """Plain-text lines describing one SAE and the cache it is reported on."""
    config = cache.config
    lines = [f"{sae.num_latents} latents, k {sae.k}, input width {sae.d_in}"]
    held = sae.cfg.tada.get("report", {}).get("held_out")
    if isinstance(held, dict) and {"fvu", "l0", "dead_share"} <= set(held):
        lines.append(
            f"training report: held-out FVU {held['fvu']:.4f}, L0 {held['l0']:.1f}, "
            f"{held['dead_share']:.1%} never fire on its {held.get('vectors', '?')} held-out vectors"
        )
    seen = sae.cfg.tada.get("report", {}).get("training_set")
    if isinstance(seen, dict) and "dead_share" in seen:
        lines.append(f"dead (never firing on the {seen['vectors']} training vectors): {seen['dead_share']:.1%}")
    alive = int((activity.fires > 0).sum())
    rows = PASS_NAMES.get(config["rows"], config["rows"])
    steps = ", ".join(map(str, activity.steps))
    lines.append(
        f"cache {cache.directory}: {config['captions']} captions, {activity.vectors} vectors ({rows}), "
        f"steps {steps} of {config['steps']}, {config['seconds']} s, guidance {config['guidance']}, "
        f"seed {config['seed']} + caption number"
    )
    lines.append(f"{alive} of {sae.num_latents} features fire on some cached vector")
    return lines


def feature_view(
    number: int,
    activity: FeatureActivity,
    scores: dict[str, torch.Tensor] | None,
    captions: list[str],
    audio_folder: str,
    profile: str,
) -> FeatureView:
    """What the report shows of one feature."""
    fires = int(activity.fires[number])
    return FeatureView(
        number=number,
        fires=fires,
        fire_share=fires / max(1, activity.vectors),
        scores={} if scores is None else {rule: float(scores[rule][number]) for rule in SCORES},
        profile=profile,
        examples=[
            Example(caption, captions[caption], value, f"{audio_folder}/{clip_name(caption)}")
            for caption, value in activity.examples(number)
        ],
    )


# -- the report -------------------------------------------------------------------------------------
def attach_caches(
    model: Any, chosen: dict[str, tuple[Site, TopKSAE]], cache_dir: str | Path | None
) -> dict[str, tuple[ActivationCache, str]]:
    """Per SAE site, its activation cache (SAEs sharing a directory share one object) and the cache's alias
    of the SAE's hookpoint; every cache is checked before any long work starts."""
    opened: dict[Path, ActivationCache] = {}
    out = {}
    for alias, (_, sae) in chosen.items():
        cache = open_cache(sae, cache_dir)
        cache = opened.setdefault(cache.directory.resolve(), cache)
        out[alias] = (cache, check_cache_fits(cache, model, sae))
    return out


def audio_folders(caches: list[ActivationCache]) -> dict[Path, str]:
    """Where each cache's clips go, relative to the report: ``audio``, or one folder per cache."""
    directories = list(dict.fromkeys(cache.directory.resolve() for cache in caches))
    if len(directories) == 1:
        return {directories[0]: "audio"}
    return {directory: f"audio/cache-{position}" for position, directory in enumerate(directories)}


def ranking_text(concept: str | None, n_pairs: int) -> str:
    """How the features of every SAE were ranked, for the page."""
    if concept is None:
        return "ranked by how many cached vectors keep them among their top-k latents"
    return (
        f"ranked by the {SCORE_NAMES[RANKING_RULE]} score of concept {concept!r} ({n_pairs} prompt pairs, "
        "mean over the denoising steps)"
    )


def build_view(
    alias: str,
    sae: TopKSAE,
    cache: ActivationCache,
    cache_alias: str,
    scores: dict[str, torch.Tensor] | None,
    ranking: str,
    *,
    top: int,
    examples: int,
    out: Path,
    audio_folder: str,
    progress: bool,
) -> SAEView:
    """Scan one SAE's cache, rank its features and plot the shown ones' timestep profiles."""
    activity = scan_cache(sae, cache, cache_alias, examples, progress=progress)
    view = SAEView(alias, sae.hookpoint, sae_summary(sae, cache, activity), ranking)
    total_steps, captions = int(cache.config["steps"]), cache.captions
    for feature in tqdm(rank_features(activity, scores, top), desc=f"plotting {alias}", disable=not progress):
        profile = f"figures/{safe_name(alias)}-feature-{feature}.png"
        means = activity.step_mean[:, feature]
        plot_profile(activity.steps, means, total_steps, out / profile, f"{alias}, feature {feature}")
        view.features.append(feature_view(feature, activity, scores, captions, audio_folder, profile))
    return view


def write_report(
    sae_dir: str | Path,
    model: Any,
    out: str | Path,
    *,
    concept: str | None = None,
    cache_dir: str | Path | None = None,
    top: int = 12,
    examples: int = 4,
    n_pairs: int = 16,
    progress: bool = True,
) -> Path:
    """Write ``out/index.html`` and ``out/report.md`` on the top features of every SAE in ``sae_dir``;
    returns the HTML page's path."""
    validate.integer("top", top, 1, 100_000, "features shown per SAE")
    validate.integer("examples", examples, 1, 1_000, "captions shown per feature")
    pairs = concept_pairs(concept, n_pairs) if concept is not None else None
    out = Path(out)
    chosen = sae_sites(model, load_saes(sae_dir, device=model.device))
    attached = attach_caches(model, chosen, cache_dir)
    caches = {alias: cache for alias, (cache, _) in attached.items()}
    scores = None
    if pairs is not None:
        scores = concept_scores(model, pairs, chosen, caches, desc=f"scoring {concept}", progress=progress)
    folders = audio_folders(list(caches.values()))
    ranking = ranking_text(concept, len(pairs or ()))
    views, wanted = [], {}
    for alias, (_, sae) in chosen.items():
        cache, cache_alias = attached[alias]
        folder = folders[cache.directory.resolve()]
        view = build_view(
            alias,
            sae,
            cache,
            cache_alias,
            None if scores is None else scores[alias],
            ranking,
            top=top,
            examples=examples,
            out=out,
            audio_folder=folder,
            progress=progress,
        )
        views.append(view)
        shown = wanted.setdefault(folder, (cache, set()))[1]
        shown.update(example.caption_number for feature in view.features for example in feature.examples)
    for folder, (cache, captions) in wanted.items():
        if captions:
            write_clips(model, cache, sorted(captions), out / folder, progress=progress)
    title = f"SAE features: {Path(sae_dir).name}" + (f", concept {concept}" if concept else "")
    write_text(out / "report.md", render_markdown(title, model.family, views))
    return write_text(out / "index.html", render_html(title, model.family, views))


# -- rendering --------------------------------------------------------------------------------------
STYLE = """
body { font-family: system-ui, sans-serif; max-width: 72rem; margin: 2rem auto; padding: 0 1rem; color: #222; }
table { border-collapse: collapse; margin: 0.5rem 0 1rem; }
th, td { border: 1px solid #ccc; padding: 0.25rem 0.5rem; text-align: left; vertical-align: middle; }
th { background: #f3f3f3; }
td.num { text-align: right; font-variant-numeric: tabular-nums; }
section.feature { border-top: 1px solid #ddd; padding-top: 0.5rem; margin-top: 1rem; }
section.feature .body { display: flex; gap: 1.5rem; flex-wrap: wrap; align-items: flex-start; }
audio { height: 2rem; }
.summary { color: #555; }
"""


def short_number(value: float) -> str:
    return f"{value:.4g}"


def feature_sentence(feature: FeatureView) -> str:
    """How often the feature fires and, with a concept, its scores."""
    text = f"Fires on {feature.fires} cached vectors ({feature.fire_share:.2%})"
    if feature.scores:
        text += "; " + ", ".join(f"{SCORE_NAMES[rule]} {short_number(feature.scores[rule])}" for rule in SCORES)
    return text + "."


def score_cells(feature: FeatureView) -> list[str]:
    return [short_number(feature.scores[rule]) for rule in SCORES] if feature.scores else []


def render_html(title: str, family: str, views: list[SAEView]) -> str:
    """The report as one HTML page; captions and paths are escaped."""
    e = html.escape
    parts = [
        "<!DOCTYPE html>",
        '<html lang="en"><head><meta charset="utf-8">',
        f"<title>{e(title)}</title><style>{STYLE}</style></head><body>",
        f"<h1>{e(title)}</h1>",
        f"<p class=\"summary\">Model {e(family)}. Activations are the SAE's per-token TopK codes; each example's "
        "value is the caption's largest over its tokens and cached steps, and its audio is generated again "
        "with the cache's settings and seed.</p>",
    ]
    for view in views:
        anchor = safe_name(view.alias)
        parts.append(f'<h2 id="{e(anchor)}">SAE at {e(view.alias)} ({e(view.hookpoint)})</h2>')
        parts.append('<ul class="summary">' + "".join(f"<li>{e(line)}</li>" for line in view.summary) + "</ul>")
        parts.append(f"<p>Top {len(view.features)} features, {e(view.ranking)}.</p>")
        if not view.features:
            parts.append("<p>No feature fires on any cached vector.</p>")
            continue
        heads = ["feature", "fires on"] + ([SCORE_NAMES[r] for r in SCORES] if view.features[0].scores else [])
        parts.append('<table class="ranking"><tr>' + "".join(f"<th>{e(h)}</th>" for h in heads) + "</tr>")
        for feature in view.features:
            cells = [f'<a href="#{e(anchor)}-{feature.number}">{feature.number}</a>', f"{feature.fire_share:.2%}"]
            cells += score_cells(feature)
            parts.append("<tr>" + "".join(f'<td class="num">{c}</td>' for c in cells) + "</tr>")
        parts.append("</table>")
        for feature in view.features:
            parts.append(f'<section class="feature" id="{e(anchor)}-{feature.number}" data-feature="{feature.number}">')
            parts.append(f"<h3>Feature {feature.number}</h3>")
            parts.append(f"<p>{e(feature_sentence(feature))}</p>")
            parts.append('<div class="body">')
            parts.append(
                f'<img src="{e(feature.profile)}" alt="mean activation of feature {feature.number} per cached step">'
            )
            if feature.examples:
                parts.append(
                    '<table class="examples"><tr><th>caption</th><th>#</th><th>max activation</th><th>audio</th></tr>'
                )
                for example in feature.examples:
                    parts.append(
                        f'<tr><td>{e(example.caption)}</td><td class="num">{example.caption_number}</td>'
                        f'<td class="num">{short_number(example.activation)}</td>'
                        f'<td><audio controls preload="none" src="{e(example.audio)}"></audio></td></tr>'
                    )
                parts.append("</table>")
            else:
                parts.append("<p>Never among the kept latents of a cached vector: no examples.</p>")
            parts.append("</div></section>")
    parts.append("</body></html>")
    return "\n".join(parts) + "\n"


def markdown_text(text: str) -> str:
    """Text safe inside a markdown table cell: emphasis, code, link and cell markup and HTML are escaped."""
    text = html.escape(text, quote=False)
    return re.sub(r"([\\`*_\[\]|])", r"\\\1", text)


def render_markdown(title: str, family: str, views: list[SAEView]) -> str:
    """The report as markdown: the same tables, with the audio as links."""
    lines = [
        f"# {markdown_text(title)}",
        "",
        f"Model {markdown_text(family)}. Activations are the SAE's per-token TopK codes; each example's value is "
        "the caption's largest over its tokens and cached steps, and its audio is generated again with the "
        "cache's settings and seed.",
    ]
    for view in views:
        lines += ["", f"## SAE at {markdown_text(view.alias)} ({markdown_text(view.hookpoint)})", ""]
        lines += [f"- {markdown_text(line)}" for line in view.summary]
        lines += ["", f"Top {len(view.features)} features, {markdown_text(view.ranking)}.", ""]
        if not view.features:
            lines.append("No feature fires on any cached vector.")
            continue
        heads = ["feature", "fires on"] + ([SCORE_NAMES[r] for r in SCORES] if view.features[0].scores else [])
        lines.append("| " + " | ".join(heads) + " |")
        lines.append("|" + "---:|" * len(heads))
        for feature in view.features:
            cells = [str(feature.number), f"{feature.fire_share:.2%}", *score_cells(feature)]
            lines.append("| " + " | ".join(cells) + " |")
        for feature in view.features:
            lines += ["", f"### Feature {feature.number}", ""]
            lines += [markdown_text(feature_sentence(feature)), ""]
            lines += [f"![mean activation of feature {feature.number} per cached step]({feature.profile})", ""]
            if not feature.examples:
                lines.append("Never among the kept latents of a cached vector: no examples.")
                continue
            lines += ["| caption | # | max activation | audio |", "|---|---:|---:|---|"]
            for example in feature.examples:
                cells = [markdown_text(example.caption), str(example.caption_number)]
                cells += [short_number(example.activation), f"[{Path(example.audio).name}]({example.audio})"]
                lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"
