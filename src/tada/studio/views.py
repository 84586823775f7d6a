"""What the studio shows of a take: spectrograms of both clips and of their difference, an A/B
player that keeps the playhead when it switches, a line of scores, and the history as rows."""

from __future__ import annotations

import base64
import html
import io
import json
import re
from pathlib import Path

import numpy as np
import soundfile as sf
import torch

from ..scorer import features
from .takes import Take


def log_spectrogram(clip: np.ndarray, sample_rate: int) -> np.ndarray:
    """Power in dB ``(bins, frames)`` of a clip ``(channels, frames)`` mixed to mono (the scorer's STFT)."""
    mono = torch.from_numpy(features.to_mono(clip, sample_rate, sample_rate))
    return (10 * torch.log10(features.power_spectrogram(mono)[0].clamp_min(1e-10))).numpy()


def spectrogram_image(take: Take) -> np.ndarray:
    """An RGB image ``(height, width, 3)``: the unsteered clip, the steered clip, and steered minus
    unsteered in dB (red: louder when steered, blue: quieter)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    ref, steered = (log_spectrogram(clip, take.sample_rate) for clip in (take.reference, take.steered))
    top = float(max(ref.max(), steered.max()))
    nyquist = take.sample_rate / 2 / 1000
    extent = (0.0, take.reference.shape[-1] / take.sample_rate, 0.0, nyquist)
    fig, axes = plt.subplots(1, 3, figsize=(12, 2.8), sharey=True)
    for ax, data, title in ((axes[0], ref, "A: unsteered"), (axes[1], steered, "B: steered")):
        ax.imshow(data, origin="lower", aspect="auto", extent=extent, vmin=top - 80, vmax=top, cmap="magma")
        ax.set_title(title, fontsize=9)
    diff = steered - ref
    limit = max(float(np.percentile(np.abs(diff), 99)), 1e-3)
    axes[2].imshow(diff, origin="lower", aspect="auto", extent=extent, vmin=-limit, vmax=limit, cmap="coolwarm")
    axes[2].set_title(f"B - A (dB, +-{limit:.0f})", fontsize=9)
    axes[0].set_ylabel("kHz", fontsize=8)
    for ax in axes:
        ax.set_xlabel("s", fontsize=8)
        ax.tick_params(labelsize=7)
    fig.tight_layout()
    fig.canvas.draw()
    image = np.asarray(fig.canvas.buffer_rgba())[..., :3].copy()
    plt.close(fig)
    return image


def _data_uri(clip: np.ndarray, sample_rate: int) -> str:
    buffer = io.BytesIO()
    sf.write(buffer, np.clip(clip.T, -1.0, 1.0), sample_rate, format="WAV", subtype="PCM_16")
    return "data:audio/wav;base64," + base64.b64encode(buffer.getvalue()).decode()


def image_uri(image: np.ndarray) -> str:
    """An RGB image ``(height, width, 3)`` as a PNG data URI."""
    from PIL import Image

    buffer = io.BytesIO()
    Image.fromarray(image).save(buffer, format="PNG")
    return "data:image/png;base64," + base64.b64encode(buffer.getvalue()).decode()


def ab_player(take: Take | None, name: str = "take") -> str:
    """Two players (A: unsteered, B: steered) of which one shows, a switch (see :data:`AB_SCRIPT`) that
    moves the playhead across and keeps playing if it was, and a download link for each clip. The clips
    travel inside the page (16-bit WAV data URIs): nothing is fetched after the page has the take."""
    if take is None:
        return '<div class="tada-ab"><p>Press Generate to hear a take.</p></div>'
    a = _data_uri(take.reference, take.sample_rate)
    b = _data_uri(take.steered, take.sample_rate)
    return (
        '<div class="tada-ab">'
        f'<audio class="tada-ab-a" controls preload="auto" src="{a}"></audio>'
        f'<audio class="tada-ab-b" controls preload="auto" src="{b}" style="display:none"></audio>'
        '<button type="button" class="tada-ab-switch">Hearing A (unsteered): switch to B</button>'
        f' <a class="tada-download-a" download="{html.escape(name)}-reference.wav" href="{a}">A.wav</a>'
        f' <a class="tada-download-b" download="{html.escape(name)}.wav" href="{b}">B.wav</a>'
        "</div>"
    )


# Runs once when the player's component loads; listens on the component, so it keeps working
# when a new take replaces the players inside it.
AB_SCRIPT = """
element.addEventListener('click', (event) => {
  const button = event.target.closest('.tada-ab-switch');
  if (!button) return;
  const a = element.querySelector('.tada-ab-a'), b = element.querySelector('.tada-ab-b');
  const from = a.style.display === 'none' ? b : a, to = from === a ? b : a;
  const playing = !from.paused;
  to.currentTime = from.currentTime;
  from.pause();
  from.style.display = 'none';
  to.style.display = '';
  if (playing) to.play();
  button.textContent = to === a ? 'Hearing A (unsteered): switch to B' : 'Hearing B (steered): switch to A';
});
"""


def grid_html(
    takes: dict[float, Take], label: str, others: dict[str, float], spectra: dict[float, str], scores: dict[float, str]
) -> str:
    """A pre-rendered grid, carried into the page whole: per alpha, the steered clip, the spectrograms
    (PNG data URI) and the scores as HTML. :data:`GRID_SCRIPT` swaps them in as the slider moves, in the
    page, with no request to the server. The form's settings travel along, so a grid never shows for a
    prompt, seed or setting of the other sliders (``others``: label -> alpha) it was not rendered for."""
    s = next(iter(takes.values())).settings
    head = {
        "label": label,
        "prompt": s.prompt,
        "seed": s.seed,
        "seconds": s.seconds,
        "steps": s.steps,
        "guidance": s.guidance,
        "others": others,
    }
    points = "".join(
        f'<div class="tada-grid-point" data-alpha="{alpha!r}" data-spectra="{spectra[alpha]}"'
        f' data-scores="{html.escape(scores[alpha])}"><audio class="tada-grid-audio" preload="auto"'
        f' data-alpha="{alpha!r}" src="{_data_uri(take.steered, take.sample_rate)}"></audio></div>'
        for alpha, take in sorted(takes.items())
    )
    return f'<div class="tada-grid" data-settings="{html.escape(json.dumps(head))}" hidden>{points}</div>'


# Runs once when the grid's component loads. Listens on the whole document, so it sees the sliders
# gradio re-creates; a slider whose label is the grid's, with the form as the grid was rendered,
# swaps in the nearest point: the B player's clip (playhead and playing kept), spectrograms, scores.
GRID_SCRIPT = """
const value = (css) => { const e = document.querySelector(css); return e ? e.value : null; };
const sameNumber = (text, wanted) => wanted === null ? true : Math.abs(parseFloat(text) - wanted) < 1e-9;
function gridFor(slider) {
  const grid = element.querySelector('.tada-grid');
  if (!grid || !slider) return null;
  const s = JSON.parse(grid.dataset.settings);
  const label = slider.querySelector('label, [data-testid=block-info]');
  if (!label || !label.textContent.includes(s.label)) return null;
  if (value('#tada-prompt textarea, #tada-prompt input') !== s.prompt) return null;
  if (!sameNumber(value('#tada-seed input'), s.seed) || !sameNumber(value('#tada-seconds input'), s.seconds)
      || !sameNumber(value('#tada-steps input'), s.steps) || !sameNumber(value('#tada-guidance input'), s.guidance))
    return null;
  return grid;
}
function show(event) {
  const input = event.target;
  if (!(input instanceof HTMLInputElement)) return;
  const grid = gridFor(input.closest('.tada-slider'));
  const alpha = parseFloat(input.value);
  if (!grid || !isFinite(alpha)) return;
  let best = null, distance = Infinity;
  for (const point of grid.querySelectorAll('.tada-grid-point')) {
    const d = Math.abs(parseFloat(point.dataset.alpha) - alpha);
    if (d < distance) { best = point; distance = d; }
  }
  const b = document.querySelector('#tada-ab .tada-ab-b');
  if (!best || !b || b.dataset.alpha === best.dataset.alpha) return;
  // the grid's clips wait, loaded, in their own hidden players: the nearest one takes B's place
  // (playhead and playing kept), and a grid clip it replaces goes back to its point
  const incoming = document.querySelector(`audio.tada-grid-audio[data-alpha="${best.dataset.alpha}"]`);
  if (!incoming) return;
  const playing = !b.paused, at = b.currentTime;
  b.pause();
  incoming.classList.add('tada-ab-b');
  incoming.controls = true;
  incoming.style.display = b.style.display;
  incoming.currentTime = at;
  b.replaceWith(incoming);
  if (b.classList.contains('tada-grid-audio')) {
    b.classList.remove('tada-ab-b');
    b.controls = false;
    const home = grid.querySelector(`.tada-grid-point[data-alpha="${b.dataset.alpha}"]`);
    if (home) home.appendChild(b);
  }
  if (playing) incoming.play();
  const link = document.querySelector('#tada-ab .tada-download-b');
  if (link) link.href = incoming.src;
  const image = document.getElementById('tada-spectra');
  if (image) image.src = best.dataset.spectra;
  const scores = document.getElementById('tada-scores');
  if (scores) scores.innerHTML = best.dataset.scores;
}
document.addEventListener('input', show, true);
document.addEventListener('change', show, true);
"""


def take_view(take: Take | None, title: str = "", spectra: str | None = None) -> str:
    """A take's spectrograms and scores as the page shows them (``#tada-spectra``, ``#tada-scores``);
    ``spectra``: the spectrogram PNG as a data URI, if already drawn."""
    if take is None:
        return '<div id="tada-scores"></div>'
    spectra = spectra or image_uri(spectrogram_image(take))
    return (
        f'<img id="tada-spectra" alt="Spectrograms: A unsteered, B steered, B - A" src="{spectra}" style="width:100%">'
        f'<div id="tada-scores">{scores_html(take, title)}</div>'
    )


def scores_html(take: Take, title: str) -> str:
    """:func:`scores_markdown` as HTML (the page's scores, and a grid point's)."""
    lines = scores_markdown(take, title).split("  \n")
    return "<p>" + "<br>".join(re.sub(r"\*\*(.+?)\*\*", r"<strong>\1</strong>", line) for line in lines) + "</p>"


def scores_markdown(take: Take | None, title: str = "") -> str:
    """The take's title ("Take 3"), preservation distance, probe scores and render time."""
    if take is None:
        return ""
    lines = [f"**{title}**"] if title else []
    lines.append(f"**Preservation distance** (steered to unsteered): {take.preservation:.3f}")
    for probe, score in take.probes.items():
        lines.append(
            f"**{html.escape(probe)}**: {score['steered']:.3f} steered, {score['reference']:.3f} unsteered "
            f"({score['steered'] - score['reference']:+.3f})"
        )
    lines.append(f"Rendered in {take.render_seconds:.2f} s")
    return "  \n".join(lines)


HISTORY_HEADERS = ["take", "prompt", "seed", "sliders", "preservation", "seconds to render"]


def history_rows(takes: list[Take]) -> list[list]:
    rows = []
    for i, take in enumerate(takes):
        s = take.settings
        sliders = ", ".join(f"{Path(x.path).stem} {x.alpha:+g}" for x in s.sliders)
        rows.append(
            [i, s.prompt, s.seed, sliders or "(none)", round(take.preservation, 4), round(take.render_seconds, 2)]
        )
    return rows
