"""Acceptance evaluation of tada-mini (the bundled model): prompt adherence, signal checks, CAA, speed.

Held-out prompts: the concept presets' decorations (``"{p}, with piano"``, ``"fast song,
{p}"``, ...) around neutral base prompts, none of them a caption template of the
training corpus; every (prompt, seed) pair shares its initial noise between the
positive and the negative version.

* adherence: per concept, the share of pairs whose positive clip scores higher on the
  concept's probe than its negative clip (offline scorer). Target >= 85%.
* signal checks: "fast" vs "slow" median estimated tempo differ by >= 30 BPM; "happy" vs
  "sad" ordered by the key-mode estimate in >= 75% of pairs; female vs male vocal prompts:
  higher pitch in >= 85% of pairs, read as the pitch register of the mix
  (``signal_checks.pitch_register``, chosen on labelled corpus clips: a median pYIN F0 of a
  full mix follows the accompaniment; it is reported beside it).
* CAA: a vector per concept (preset pairs, all cross-attention outputs), swept over
  alphas calibrated per concept (the paper's protocol: each direction up to the alpha
  whose preservation distance equals that of the concept's prompt edit; 1/3, 2/3, 1 of
  it) and, for comparison, over fixed alphas in token norms; the mean probe score over
  prompts must rise monotonically with the calibrated alpha, and alpha 0 must be bitwise
  identical to no steering.
* speed: seconds to generate a 5 s clip at the default steps on this machine (CPU, all
  threads); real-time factor = 5 / that.

    python benchmarks/mini_eval.py --model tada-mini --out out/mini-eval [--prompts 10 --seeds 3]

Writes ``report.json`` and ``caa.png`` to --out and exits 0 only if every target is met.
Each concept's CAA result is also kept in ``<out>/caa/<concept>.json`` with the settings
that produced it (alphas, schedule, prompts, seeds, a checksum of the unsteered clips): a
rerun with the same settings takes it from there, so a killed sweep resumes at the
concept it was on.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import sys
import time
from pathlib import Path

import numpy as np
import torch

from tada import signal_checks
from tada.adapters import load_model
from tada.caa import compute_caa
from tada.concepts import BASE_PROMPTS, CONCEPTS, concept_pairs
from tada.errors import TadaError
from tada.scorer import Scorer

ADHERENCE, TEMPO_GAP, MODE_PAIRS, F0_PAIRS = 0.85, 30.0, 0.75, 0.85


def generate(model, prompts: list[str], seeds: list[int], batch: int = 8) -> np.ndarray:
    clips = []
    for i in range(0, len(prompts), batch):
        clips.append(model.generate(prompts[i : i + batch], seed=seeds[i : i + batch]).samples[:, 0])
    return np.concatenate(clips)


def speed(model, repeats: int = 3) -> dict[str, float]:
    model.generate("warm-up", seconds=5.0, seed=0)
    times = []
    for r in range(repeats):
        start = time.perf_counter()
        model.generate("an upbeat pop song with piano", seconds=5.0, seed=r)
        times.append(time.perf_counter() - start)
    best = float(np.median(times))
    return {"seconds_for_5s": best, "realtime_factor": 5.0 / best, "threads": torch.get_num_threads()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", default="tada-mini")
    parser.add_argument("--scorer", default=None, help="scorer weights (default: the bundled ones)")
    parser.add_argument("--out", type=Path, default=Path("out/mini-eval"))
    parser.add_argument("--prompts", type=int, default=10, help="base prompts per concept")
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument(
        "--first-seed",
        type=int,
        default=1000,
        help="adherence seeds are FIRST-SEED, +1, ...: 1000 is the acceptance set; use another "
        "range (e.g. 2000) to choose a setting without looking at it",
    )
    parser.add_argument(
        "--guidance",
        type=float,
        default=None,
        help="classifier-free guidance scale for every generation (default: the model's own)",
    )
    parser.add_argument("--caa-pairs", type=int, default=16)
    parser.add_argument("--caa-prompts", type=int, default=10)
    parser.add_argument("--caa-seeds", type=int, default=3, help="seeds per CAA prompt (the acceptance's >= 3)")
    parser.add_argument(
        "--alphas",
        default="0.25,0.5,1",
        help="positive alphas, in units of the sites' median token norm: the fixed sweep and the "
        "points where the calibration measures preservation (beyond 1 most concepts "
        "saturate: at 0.5,1,2 the probe fell back at 2 for piano, jazz_vs_rock and classical)",
    )
    parser.add_argument(
        "--concepts", default=None, help="comma-separated concept names to evaluate (default: all nine)"
    )
    parser.add_argument(
        "--schedule",
        default="constant",
        help="when CAA steers: 'constant' (every step) or START-END as trajectory fractions, "
        "e.g. 0.5-1 for the second half of the denoising steps",
    )
    parser.add_argument(
        "--renorm", action="store_true", help="CAA keeps each steered activation's norm (rotation instead of addition)"
    )
    parser.add_argument("--skip-caa", action="store_true")
    parser.add_argument(
        "--skip-pyin",
        action="store_true",
        help="F0 check by the pitch register alone, without the reference median pYIN F0 (~1.3 s a clip)",
    )
    parser.add_argument(
        "--skip-adherence", action="store_true", help="only speed and CAA; the report's `passed` then covers CAA alone"
    )
    args = parser.parse_args()
    args.concepts = _chosen_concepts(args.concepts)
    args.out.mkdir(parents=True, exist_ok=True)

    model = load_model(args.model)
    if args.guidance is not None:
        model.default_guidance = args.guidance
    scorer = Scorer.load(args.scorer)
    report: dict = {
        "model": args.model,
        "describe": model.describe(),
        "guidance": model.default_guidance,
        "first_seed": args.first_seed,
        "speed": speed(model),
    }
    print(f"speed: 5 s in {report['speed']['seconds_for_5s']:.2f} s (RTF {report['speed']['realtime_factor']:.2f})")

    passed = args.skip_adherence or adherence_and_signals(model, scorer, args, report)
    if not args.skip_caa:
        report["caa"], caa_ok = caa_sweep(model, scorer, args)
        passed = passed and caa_ok
    report["passed"] = bool(passed)
    (args.out / "report.json").write_text(json.dumps(report, indent=1))
    print(json.dumps({"passed": report["passed"]}))
    sys.exit(0 if passed else 1)


def _chosen_concepts(names: str | None) -> dict:
    if names is None:
        return dict(CONCEPTS)
    chosen = [n.strip() for n in names.split(",") if n.strip()]
    unknown = [n for n in chosen if n not in CONCEPTS]
    if unknown or not chosen:
        raise SystemExit(
            f"error: unknown concept(s) {', '.join(unknown) or '(none given)'}; choose from {', '.join(CONCEPTS)}"
        )
    return {n: CONCEPTS[n] for n in chosen}


def adherence_and_signals(model, scorer, args, report: dict) -> bool:
    """Prompt adherence per concept and the three signal checks, into ``report``; True if all are met."""
    sr = model.sample_rate
    bases = list(BASE_PROMPTS[: args.prompts])
    seeds = [args.first_seed + s for s in range(args.seeds)]
    grid = [(b, s) for b in bases for s in seeds]
    adherence, clips, pair_scores = {}, {}, {}
    for name, concept in args.concepts.items():
        pos = generate(model, [concept.positive.format(p=b) for b, _ in grid], [s for _, s in grid])
        neg = generate(model, [concept.negative.format(p=b) for b, _ in grid], [s for _, s in grid])
        clips[name] = (pos, neg)
        sp = scorer.similarity(list(pos), sr, concept.probe)[:, 0].numpy()
        sn = scorer.similarity(list(neg), sr, concept.probe)[:, 0].numpy()
        adherence[name] = float(np.mean(sp > sn))
        pair_scores[name] = {
            "positive": sp.astype(float).round(4).tolist(),
            "negative": sn.astype(float).round(4).tolist(),
        }
        print(f"adherence {name:24s} {adherence[name]:.2f}")
    report["adherence"] = adherence
    report["pairs"] = {"prompts_seeds": grid, "probe_scores": pair_scores}

    signal, ok = {}, all(v >= ADHERENCE for v in adherence.values())
    if "tempo" in clips:
        bpm_fast, bpm_slow = _per_clip(signal_checks.tempo_bpm, clips["tempo"], sr)
        tempo = {
            "fast_median_bpm": float(np.median(bpm_fast)),
            "slow_median_bpm": float(np.median(bpm_slow)),
            "fast_bpm": np.round(bpm_fast, 1).tolist(),
            "slow_bpm": np.round(bpm_slow, 1).tolist(),
        }
        tempo["gap"] = tempo["fast_median_bpm"] - tempo["slow_median_bpm"]
        signal["tempo"], ok = tempo, ok and tempo["gap"] >= TEMPO_GAP
        print(f"tempo gap {tempo['gap']:.1f} BPM")
    if "mood" in clips:
        mh, ms = _per_clip(signal_checks.mode_score, clips["mood"], sr)
        mood = {"ordered_pairs": float(np.mean(mh > ms)), "both_right": float(np.mean((mh > 0) & (ms < 0)))}
        signal["mood"], ok = mood, ok and mood["ordered_pairs"] >= MODE_PAIRS
        print(f"mood ordered {mood['ordered_pairs']:.2f}")
    if "vocal_gender" in clips:
        # the check reads the pitch register (it follows the voice over a shared accompaniment,
        # see signal_checks); the median pYIN F0 is kept beside it, for reference
        f0 = {}
        estimators = {
            "register": signal_checks.pitch_register,
            **({} if args.skip_pyin else {"median_f0": signal_checks.median_f0}),
        }
        for name, measure in estimators.items():
            ff, fm = _per_clip(measure, clips["vocal_gender"], sr)
            f0[name] = {
                "higher_pairs": _higher(ff, fm),
                "female_median_hz": float(np.nanmedian(ff)),
                "male_median_hz": float(np.nanmedian(fm)),
                "female_hz": np.round(ff, 1).tolist(),
                "male_hz": np.round(fm, 1).tolist(),
            }
        f0["higher_pairs"] = f0["register"]["higher_pairs"]
        signal["f0"], ok = f0, ok and f0["higher_pairs"] >= F0_PAIRS
        print(
            f"F0 higher: register {f0['register']['higher_pairs']:.2f}"
            + (f" (median pYIN F0 {f0['median_f0']['higher_pairs']:.2f})" if "median_f0" in f0 else "")
        )
    report["signal"] = signal
    return ok


def _higher(positive: np.ndarray, negative: np.ndarray) -> float:
    """Share of pairs where the positive clip reads higher (an unreadable clip counts against it)."""
    return float(np.mean(np.nan_to_num(positive, nan=-np.inf) > np.nan_to_num(negative, nan=np.inf)))


def _per_clip(measure, sides: tuple[np.ndarray, np.ndarray], sr: int) -> tuple[np.ndarray, np.ndarray]:
    """``measure`` on every clip of the positive and of the negative side."""
    return tuple(np.array([measure(c, sr) for c in side]) for side in sides)


def token_norm_unit(model) -> float:
    """The median token norm of the model's cross-attention outputs on one prompt: the alpha unit."""
    from tada.interventions import Capture

    captures = {s: Capture(rows="cond", reduce="full") for s in model.sites.values() if s.kind == "xattn"}
    with model.engine.add(captures):
        model.generate("a song", seed=0)
    return float(np.median([r.norm(dim=-1).median() for c in captures.values() for r in c.records.values()]))


def steering_label(schedule, renorm: bool) -> str:
    """How a sweep steered, in words: from the parsed schedule, not its spelling on the command line."""
    from tada.schedules import Window

    when = f"steps {schedule.start:g}-{schedule.end:g}" if isinstance(schedule, Window) else "every step"
    return f"steering {when}" + (", norm kept" if renorm else "")


#: Independent measurements along each CAA sweep, where the toolkit has one for the concept:
#: (name, per-clip function, summary over clips).
SWEEP_SIGNALS = {
    "tempo": ("median_bpm", signal_checks.tempo_bpm, np.median),
    "mood": ("mean_mode_score", signal_checks.mode_score, np.mean),
    "vocal_gender": ("register_hz", signal_checks.pitch_register, np.nanmedian),
}


def caa_sweep(model, scorer, args) -> tuple[dict, bool]:
    """Per concept: CAA over fixed alphas (in token norms) and over alphas calibrated per concept.

    The calibrated range is the paper's: per direction, the alpha at which steering moves
    the audio (preservation distance to the unsteered clip) as far as the concept's own
    prompt edit does ("{p}" -> "fast song, {p}"); where that edit is the neutral prompt
    itself (piano, violin: "{p}" -> "{p}"), the other direction's distance. The sweep is
    1/3, 2/3 and 1 of it each way. The calibration looks only at preservation, never at
    the probe. Every prompt is generated with ``--caa-seeds`` seeds, as adherence is.

    Also recorded, to read the curves against: the probe's mean on the clips of the
    negative and the positive prompt edit (where the probe stands when the prompt itself
    is rewritten) and, for tempo, mood and vocal gender, the independent signal check
    along the calibrated sweep.
    """
    from tada.calibration import calibrate_alpha
    from tada.schedules import parse_schedule

    steer = {"schedule": parse_schedule(args.schedule), "renorm": args.renorm}

    unit = token_norm_unit(model)
    ks = [float(k) for k in args.alphas.split(",")]
    bases = list(BASE_PROMPTS[-args.caa_prompts :])  # the CAA pairs use the first prompts
    prompts = [b for b in bases for _ in range(args.caa_seeds)]
    seeds = [s for _ in bases for s in range(args.caa_seeds)]
    plain = generate(model, prompts, seeds)[:, None]

    def probe(clips: np.ndarray, text: str) -> float:
        return float(scorer.similarity(list(clips), model.sample_rate, text)[:, 0].mean())

    results = {}
    settings = {
        "model": args.model,
        "scorer": args.scorer,
        "alphas": ks,
        "schedule": args.schedule,
        "renorm": args.renorm,
        "prompts": bases,
        "seeds_per_prompt": args.caa_seeds,
        "caa_pairs": args.caa_pairs,
        "guidance": args.guidance,
        "unit_norm": unit,
        # the unsteered clips themselves: other weights or another scheduler never match
        "plain_sha256": hashlib.sha256(np.ascontiguousarray(plain).tobytes()).hexdigest(),
    }
    done_dir = args.out / "caa"
    done_dir.mkdir(parents=True, exist_ok=True)
    for name, concept in args.concepts.items():
        done = done_dir / f"{name}.json"
        if done.is_file():
            kept = json.loads(done.read_text())
            if kept.get("settings") == settings:
                results[name] = kept["result"]
                print(f"CAA {name:24s} kept from {done} (same settings)")
                continue
        vector = compute_caa(model, concept_pairs(name, args.caa_pairs), concept=name, progress=False)
        with vector.apply(model, 0.0, **steer):
            if not np.array_equal(generate(model, prompts, seeds)[:, None], plain):
                raise TadaError(f"{name}: alpha 0 is not bitwise identical to unsteered generation")
        clips = {0.0: plain}
        calibration, edit_probe = {}, {}
        for sign, decoration in ((1.0, concept.positive), (-1.0, concept.negative)):
            edited = [decoration.format(p=p) for p in prompts]
            neutral = edited == prompts
            cal = calibrate_alpha(
                model,
                vector,
                scorer,
                prompts,
                None if neutral else edited,
                [sign * k * unit for k in ks],
                seeds=seeds,
                plain=plain,
                target=calibration[1.0].target if neutral else None,
                steer_kwargs=steer,
            )
            calibration[sign] = cal
            clips.update(zip(cal.alphas, cal.clips))
            edit_probe["positive" if sign > 0 else "negative"] = probe(
                plain if neutral else cal.edited_clips, concept.probe
            )
        fixed = sorted(clips)
        fixed_means = [probe(clips[a], concept.probe) for a in fixed]
        calibrated = sorted({0.0, *[f * calibration[s].alpha for s in (1.0, -1.0) for f in (1 / 3, 2 / 3, 1.0)]})
        calibrated_means = []
        for alpha in calibrated:
            if alpha not in clips:
                with vector.apply(model, alpha, **steer):
                    clips[alpha] = generate(model, prompts, seeds)[:, None]
            calibrated_means.append(probe(clips[alpha], concept.probe))
        monotonic = bool(np.all(np.diff(calibrated_means) > 0))
        results[name] = {
            "alphas": fixed,
            "mean_probe": fixed_means,
            "monotonic_fixed": bool(np.all(np.diff(fixed_means) > 0)),
            "calibrated_alphas": calibrated,
            "calibrated_mean_probe": calibrated_means,
            "monotonic": monotonic,
            "edit_mean_probe": {
                "negative": edit_probe["negative"],
                "plain": fixed_means[fixed.index(0.0)],
                "positive": edit_probe["positive"],
            },
            "calibration": {
                ("positive" if s > 0 else "negative"): {
                    "target_distance": c.target,
                    "alpha": c.alpha,
                    "reached": c.reached,
                    "distances": c.distances,
                }
                for s, c in calibration.items()
            },
        }
        if name in SWEEP_SIGNALS:
            key, measure, summary = SWEEP_SIGNALS[name]
            results[name][key] = [
                float(summary([measure(c[0], model.sample_rate) for c in clips[a]])) for a in calibrated
            ]
        partial = done.with_suffix(".part")  # renamed when whole: a kill mid-write leaves no torn file
        partial.write_text(json.dumps({"settings": settings, "result": results[name]}, indent=1))
        partial.replace(done)
        print(f"CAA {name:24s} fixed     " + " ".join(f"{m:.3f}" for m in fixed_means))
        print(
            f"CAA {name:24s} calibrated (alpha {calibration[-1.0].alpha / unit:+.2f} .. "
            f"{calibration[1.0].alpha / unit:+.2f} norms) monotonic={monotonic} "
            + " ".join(f"{m:.3f}" for m in calibrated_means)
        )
        print(
            f"CAA {name:24s} prompt edits: negative {edit_probe['negative']:.3f} "
            f"plain {fixed_means[fixed.index(0.0)]:.3f} positive {edit_probe['positive']:.3f}"
            + (
                f"; {SWEEP_SIGNALS[name][0]} " + " ".join(f"{v:.3g}" for v in results[name][SWEEP_SIGNALS[name][0]])
                if name in SWEEP_SIGNALS
                else ""
            )
        )
    title = steering_label(steer["schedule"], args.renorm) + f", {args.caa_seeds} seeds x {len(bases)} prompts"
    _plot(results, unit, args.out / "caa.png", title)
    ok = all(r["monotonic"] for r in results.values())
    return {
        "unit_norm": unit,
        "schedule": args.schedule,
        "renorm": args.renorm,
        "prompts": bases,
        "seeds_per_prompt": args.caa_seeds,
        "concepts": results,
    }, ok


def _plot(results: dict, unit: float, path: Path, steering: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(3, 3, figsize=(11, 9), sharex=True)
    for ax, (name, r) in zip(axes.flat, results.items()):
        ax.plot(np.array(r["alphas"]) / unit, r["mean_probe"], "o-", color="0.6", label="fixed")
        ax.plot(np.array(r["calibrated_alphas"]) / unit, r["calibrated_mean_probe"], "s-", label="calibrated")
        edits = r["edit_mean_probe"]
        for level, style in ((edits["negative"], ":"), (edits["positive"], "--")):
            ax.axhline(level, color="tab:red", lw=0.8, ls=style)
        ax.set_title(name, fontsize=9)
        ax.axvline(0, color="grey", lw=0.5)
    axes.flat[0].plot([], [], color="tab:red", ls=":", lw=0.8, label="negative prompt")
    axes.flat[0].plot([], [], color="tab:red", ls="--", lw=0.8, label="positive prompt")
    axes.flat[0].legend(fontsize=7)
    for ax in axes[-1]:
        ax.set_xlabel("alpha / median token norm")
    fig.suptitle(f"tada-mini: CAA alpha vs mean probe similarity ({steering})")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


if __name__ == "__main__":
    try:
        main()
    except TadaError as exc:
        print(f"error: {exc}", file=sys.stderr)
        sys.exit(2)
