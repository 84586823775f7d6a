"""The studio in the browser: a gradio app around :class:`~tada.studio.takes.Studio`.

Every handler is a plain method of :class:`StudioApp` (tested without a browser); :func:`build`
wires them to gradio components. Errors a person can fix (an empty prompt, an artifact for
another model) come back as a message in the page; nothing a request does stops the server.
"""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import TadaError
from .takes import SliderSetting, Studio, Take, TakeSettings
from .views import (
    AB_SCRIPT,
    GRID_SCRIPT,
    HISTORY_HEADERS,
    ab_player,
    grid_html,
    history_rows,
    image_uri,
    scores_html,
    spectrogram_image,
    take_view,
)

GRID_POINTS = 9


class StudioApp:
    """What the page does, on one :class:`Studio`: render, scrub a grid, restore, export."""

    def __init__(self, studio: Studio, export_dir: str | Path | None = None):
        self.studio = studio
        self.export_dir = Path(export_dir) if export_dir else Path(tempfile.mkdtemp(prefix="tada-studio-"))

    def choices(self) -> list[tuple[str, str]]:
        return [(slider.label, path) for path, slider in self.studio.sliders.items()]

    def settings(
        self,
        prompt: str,
        seed: float,
        seconds: float | None,
        steps: float | None,
        guidance: float | None,
        chosen: list[str] | None,
        alphas: dict[str, float] | None,
    ) -> TakeSettings:
        alphas = alphas or {}
        return TakeSettings(
            self.studio.model_id,
            prompt or "",
            seed=int(seed or 0),
            seconds=None if seconds in (None, "") else float(seconds),
            steps=None if steps in (None, "") else int(steps),
            guidance=None if guidance in (None, "") else float(guidance),
            sliders=tuple(SliderSetting(p, float(alphas.get(p, 0.0))) for p in (chosen or [])),
        )

    def title(self, take: Take) -> str:
        for i, kept in enumerate(self.studio.history):
            if kept is take:
                return f"Take {i}"
        return "Pre-rendered grid point"

    def generate(self, *inputs: Any) -> tuple[str, list[list]]:
        """Render a take from the form: the A/B player at once (the take is scored and drawn by
        :meth:`describe`, which the page calls next, so the clips play before the scoring is done)."""
        take = self.studio.render(self.settings(*inputs), score=False)
        return ab_player(take, f"take-{len(self.studio.history) - 1:03d}"), history_rows(self.studio.history)

    def describe(self) -> tuple[str, list[list]]:
        """The last take's spectrograms and scores, and the history with its preservation distance."""
        if not self.studio.history:
            return take_view(None), []
        take = self.studio.score(self.studio.history[-1])
        return take_view(take, self.title(take)), history_rows(self.studio.history)

    def render_grid(self, path: str | None, points: float, *inputs: Any, progress: Any = None) -> tuple[str, str]:
        """A grid of alphas on one slider, rendered, scored and drawn ahead, and sent to the page whole
        (:func:`~tada.studio.views.grid_html`): moving that slider then swaps takes in the page."""
        if not path:
            raise TadaError("choose the slider to pre-render")
        slider = self.studio.slider(path)
        alphas = [float(a) for a in np.linspace(slider.low, slider.high, int(points))]
        settings = self.settings(*inputs)
        done = []

        def tick(alpha: float) -> None:
            done.append(alpha)
            if progress is not None:
                progress(len(done) / len(alphas), desc=f"alpha {alpha:+.3g}")

        grid = self.studio.render_grid(settings, path, alphas, progress=tick)
        title = "Pre-rendered grid point"
        spectra = {a: image_uri(spectrogram_image(take)) for a, take in grid.items()}
        scores = {a: scores_html(take, f"{title}, alpha {a:+.3g}") for a, take in grid.items()}
        others = {self.studio.sliders[x.path].label: x.alpha for x in settings.sliders if x.path != path}
        message = f"{len(alphas)} takes of {slider.label} ready, alpha {slider.low:g} .. {slider.high:g}"
        message += ": move its slider"
        return message, grid_html(grid, slider.label, others, spectra, scores)

    def restore(self, index: float) -> tuple[Any, ...]:
        """The form's values from take ``index`` of the history."""
        s = self.studio.restore(int(index))
        alphas = {x.path: x.alpha for x in s.sliders}
        return s.prompt, s.seed, s.seconds, s.steps, s.guidance, list(alphas), alphas

    def export(self) -> list[str]:
        if not self.studio.history:
            raise TadaError("no take to export yet: press Generate first")
        index = len(self.studio.history) - 1
        files = self.studio.score(self.studio.history[index]).export(self.export_dir, f"take-{index:03d}")
        return [str(files["steered"]), str(files["settings"]), str(files["reference"])]


def _guard(fn):
    """Run a handler; a TadaError becomes a message in the page (gradio.Error), not a stack trace."""
    import functools

    import gradio as gr

    @functools.wraps(fn)
    def wrapped(*args, **kwargs):
        try:
            return fn(*args, **kwargs)
        except TadaError as exc:
            raise gr.Error(str(exc), print_exception=False) from None

    return wrapped


def build(app: StudioApp) -> Any:
    """The gradio Blocks of the studio."""
    import gradio as gr

    studio = app.studio
    adapter = studio.adapter
    with gr.Blocks(title="tada studio") as demo:
        gr.Markdown(f"# tada studio\nSteering **{studio.model_id}** from the inside: move a slider, press Generate.")
        if studio.problems:
            gr.Markdown("Not loaded: " + "; ".join(studio.problems), elem_id="tada-problems")
        alphas = gr.State({})
        restored = gr.Number(0, visible=False)
        with gr.Row():
            with gr.Column(scale=2):
                prompt = gr.Textbox(label="Prompt", value="lofi hip hop beat, with piano", elem_id="tada-prompt")
                with gr.Row():
                    seed = gr.Number(0, label="Seed", precision=0, elem_id="tada-seed")
                    seconds = gr.Number(adapter.default_seconds, label="Seconds", elem_id="tada-seconds")
                    steps = gr.Number(adapter.default_steps, label="Steps", precision=0, elem_id="tada-steps")
                    guidance = gr.Number(adapter.default_guidance, label="Guidance", elem_id="tada-guidance")
                chosen = gr.Dropdown(
                    app.choices(),
                    value=[],
                    multiselect=True,
                    label="Sliders (steering artifacts)",
                    elem_id="tada-chosen",
                )
                form = [prompt, seed, seconds, steps, guidance, chosen, alphas]

                @gr.render(inputs=[chosen, alphas], triggers=[chosen.change, restored.change])
                def sliders(paths: list[str] | None, values: dict[str, float] | None):
                    for path in paths or []:
                        spec = studio.sliders[path]
                        widget = gr.Slider(
                            spec.low,
                            spec.high,
                            value=float((values or {}).get(path, 0.0)),
                            step=(spec.high - spec.low) / 200,
                            label=spec.label,
                            key=f"slider-{path}",
                            elem_classes=["tada-slider"],
                        )

                        def moved(alpha, current, path=path):  # a grid point, if any, is swapped in the page
                            return {**(current or {}), path: float(alpha)}

                        widget.change(moved, [widget, alphas], alphas, show_progress="hidden")

                generate = gr.Button("Generate", variant="primary", elem_id="tada-generate")

            with gr.Column(scale=3):
                player = gr.HTML(ab_player(None), js_on_load=AB_SCRIPT, elem_id="tada-ab")
                view = gr.HTML(take_view(None), elem_id="tada-view")  # spectrograms and scores
                grid_data = gr.HTML("", js_on_load=GRID_SCRIPT, elem_id="tada-grid-data", padding=False)
        with gr.Accordion("Pre-render a grid of alphas (instant scrubbing)", open=False):
            with gr.Row():
                grid_slider = gr.Dropdown(app.choices(), label="Slider", elem_id="tada-grid-slider")
                grid_points = gr.Number(
                    GRID_POINTS, label="Points", precision=0, minimum=2, maximum=65, elem_id="tada-grid-points"
                )
                grid_button = gr.Button("Pre-render", elem_id="tada-grid")
            grid_status = gr.Markdown(elem_id="tada-grid-status")
        with gr.Accordion("History and export", open=True):
            history = gr.Dataframe(headers=HISTORY_HEADERS, interactive=False, elem_id="tada-history")
            with gr.Row():
                take_index = gr.Number(0, label="Take", precision=0, minimum=0)
                restore = gr.Button("Restore", elem_id="tada-restore")
                export = gr.Button("Export the last take (WAV + JSON for tada steer --replay)", elem_id="tada-export")
            files = gr.File(label="Exported", file_count="multiple", interactive=False, elem_id="tada-files")

        # the clips first, then their spectrograms and scores; minimal progress keeps the browser's drawing
        # of a busy indicator from taking the CPU the render needs
        generate.click(
            _guard(app.generate), form, [player, history], concurrency_limit=1, show_progress="hidden"
        ).success(_guard(app.describe), None, [view, history], concurrency_limit=1, show_progress="minimal")

        def grid(path, points, *inputs, progress=gr.Progress()):
            return app.render_grid(path, points, *inputs, progress=progress)

        grid_inputs = [grid_slider, grid_points, *form]
        grid_button.click(_guard(grid), grid_inputs, [grid_status, grid_data], concurrency_limit=1)

        def restore_take(index, counter):
            return (*app.restore(index), (counter or 0) + 1)

        restore.click(
            _guard(restore_take),
            [take_index, restored],
            [prompt, seed, seconds, steps, guidance, chosen, alphas, restored],
        )
        export.click(_guard(app.export), None, files)
    return demo


def launch(app: StudioApp, host: str = "127.0.0.1", port: int = 7860, **kwargs: Any) -> Any:
    """Serve the studio (localhost unless ``host`` says otherwise); a port in use is one clear line."""
    from .. import validate

    validate.port_free(host, port)
    demo = build(app)
    demo.queue(default_concurrency_limit=1)
    demo.launch(
        server_name=host,
        server_port=port,
        share=False,
        show_error=True,
        allowed_paths=[str(app.export_dir)],
        **kwargs,
    )
    return demo  # returns only with prevent_thread_lock=True; demo.close() stops the server
