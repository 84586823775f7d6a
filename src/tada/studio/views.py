"""What the studio shows of a take: spectrograms of both clips and of their difference, an A/B
player that keeps the playhead when it switches, a line of scores, and the history as rows."""

from __future__ import annotations

import base64
import html
import io
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


def ab_player(take: Take | None) -> str:
    """Two players (A: unsteered, B: steered) of which one shows; the switch (see :data:`AB_SCRIPT`)
    moves the playhead across and keeps playing if it was."""
    if take is None:
        return '<div class="tada-ab"><p>Press Generate to hear a take.</p></div>'
    a = _data_uri(take.reference, take.sample_rate)
    b = _data_uri(take.steered, take.sample_rate)
    return (
        '<div class="tada-ab">'
        f'<audio class="tada-ab-a" controls preload="auto" src="{a}"></audio>'
        f'<audio class="tada-ab-b" controls preload="auto" src="{b}" style="display:none"></audio>'
        '<button type="button" class="tada-ab-switch">Hearing A (unsteered): switch to B</button>'
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
