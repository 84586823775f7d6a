"""tada studio latency in a real headless Chromium: a slider move rendered, and a pre-rendered grid point shown.

Serves the studio on ``--model`` with one slider (a random unit vector over every cross-attention
output; any artifact costs about the same to apply), then, in the page: sets the slider and
presses Generate ``--moves`` times at alternating alphas (the unsteered reference is rendered once
and kept, so each press renders the steered clip; its scores and spectrograms follow), timing in the
page until the new steered clip is playable, and scrubs a pre-rendered grid ``--scrubs`` times, timing
from the committed value to a different grid clip, playable, in the player (``performance.now()``
and a MutationObserver). Reports the medians and the server-side render time per move.

    python benchmarks/studio_latency.py --model tada-mini --out benchmarks/results/studio_latency
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))

from studio_browser import StudioPage, chromium, free_port, piano_studio  # noqa: E402

from tada.studio import SliderSetting, TakeSettings  # noqa: E402
from tada.studio.app import StudioApp, launch  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", default="tada-mini")
    parser.add_argument("--moves", type=int, default=4)
    parser.add_argument("--scrubs", type=int, default=6)
    parser.add_argument("--grid", type=int, default=5, help="grid points")
    parser.add_argument("--out", type=Path, default=None, help="write results.json here")
    args = parser.parse_args()
    studio = piano_studio(args.model, Path(tempfile.mkdtemp(prefix="tada-latency-")))
    # the same slider moves rendered by the engine, no browser: what a move costs on its own
    path = next(iter(studio.sliders))
    base = TakeSettings(args.model, "lofi hip hop beat, with piano", seed=0, sliders=(SliderSetting(path, 1.0),))
    studio.render(base, remember=False)  # warm-up and the reference
    direct = []
    for i in range(args.moves):
        start = time.perf_counter()
        studio.render(base.with_alpha(path, 4.0 if i % 2 == 0 else -4.0), score=False, remember=False)
        direct.append(time.perf_counter() - start)
    port = free_port()
    demo = launch(StudioApp(studio), port=port, prevent_thread_lock=True, quiet=True)
    try:
        with chromium() as driver:
            page = StudioPage(driver, f"http://127.0.0.1:{port}/")
            page.choose("#tada-chosen")
            page.set_slider(1)
            page.generate()  # warm-up: the model's first pass, the scorer, the reference
            moves, described, renders = [], [], []
            for i in range(args.moves):
                page.set_slider(4 if i % 2 == 0 else -4)
                playable, shown = page.generate()
                moves.append(playable)
                described.append(shown)
                renders.append(studio.history[-1].render_seconds)
            page.all(".label-wrap")[0].click()
            page.choose("#tada-grid-slider")
            page.set_number("tada-grid-points", args.grid)
            page.one("#tada-grid").click()
            page.wait(lambda: "ready" in page.one("#tada-grid-status").text, 1800)
            # alternate between the ends and the middle of the range: every move lands on another grid point
            targets = [10, -10, 0]
            scrubs = [page.scrub_ms(targets[i % 3]) for i in range(args.scrubs)]
    finally:
        demo.close()
    result = {
        "model": args.model,
        "seconds": studio.adapter.default_seconds,
        "steps": studio.adapter.default_steps,
        "direct_render_seconds": direct,
        "median_direct_render_s": statistics.median(direct),
        "move_seconds_in_page": moves,
        "described_seconds_in_page": described,
        "render_seconds_on_server": renders,
        "scrub_ms_in_page": scrubs,
        "median_move_s": statistics.median(moves),
        "median_described_s": statistics.median(described),
        "median_render_s": statistics.median(renders),
        "median_scrub_ms": statistics.median(scrubs),
    }
    print(f"slider move rendered by the engine (no browser): {result['median_direct_render_s']:.2f} s")
    print(
        f"slider move + Generate: steered clip playable in the page after {result['median_move_s']:.2f} s "
        f"({result['median_render_s']:.2f} s rendering on the server), spectrograms and scores after "
        f"{result['median_described_s']:.2f} s, median of {args.moves}; "
        f"grid point: {result['median_scrub_ms']:.0f} ms, median of {args.scrubs}"
    )
    print(json.dumps(result))
    if args.out:
        args.out.mkdir(parents=True, exist_ok=True)
        (args.out / "results.json").write_text(json.dumps(result, indent=1) + "\n")


if __name__ == "__main__":
    main()
