"""Does a caption's mood (or voice) word move tada-mini towards the other twin?

A direct read of what the text path learnt.

Takes twin pairs from a training set: mode twins (``trainset.mode_twins``: the same piece
in major and in minor, captions differing only in the mood word; ``tada data make
--mode-twins``) or gender twins (``trainset.gender_twins``: the same piece with a female
and with a male voice, captions differing only in the voice words; ``--gender-twins``).
For each pair (a, b) and noise level sigma, the input is the pair's midpoint, noised:
``x_t = (1 - sigma) (a + b) / 2 + sigma * noise``, so the input alone does not say which
twin it is. The model predicts the clean latent once with a's caption and once with b's;
``d_text`` is the difference of the two predictions and ``d_true = a - b``. Printed per
sigma: the mean cosine of d_text and d_true, and the mean regression coefficient
``<d_text, d_true> / |d_true|^2`` (1 would mean the caption alone turns the prediction
fully into the right twin; 0, the caption is ignored). No decoding; only the pairs'
captions are encoded: about 20 s on 2 cores for 50 pairs.

    python research/mini_twin_direction.py --trainset out/mini-twins/trainset [--kind gender] [--model tada-mini:DIR]
"""

from __future__ import annotations

import argparse

import torch

from tada.adapters import load_model
from tada.data.attributes import TWIN_KINDS
from tada.mini.data import TrainSet

SIGMAS = (0.3, 0.5, 0.7, 0.85, 0.95)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--trainset", required=True, help="a tada-mini training set with twins")
    parser.add_argument("--kind", choices=TWIN_KINDS, default="mode", help="which twins: mode or gender")
    parser.add_argument("--model", default="tada-mini")
    parser.add_argument("--transformer", default=None, help="use this transformer directory instead (a checkpoint)")
    parser.add_argument(
        "--pairs",
        type=int,
        default=200,
        help="the first N pairs of that kind (those among the first val_clips rows are held out)",
    )
    args = parser.parse_args()
    data = TrainSet(args.trainset)
    firsts, seconds = data.pairs[data.pair_kinds == TWIN_KINDS.index(args.kind)][: args.pairs].T
    if not len(firsts):
        raise SystemExit(f"{args.trainset} has no {args.kind} twins (build it with trainset.{args.kind}_twins)")
    if args.transformer:  # a checkpoint's transformer alone: the whole model is not loaded
        from tada.mini.transformer import TadaMiniTransformer

        transformer = TadaMiniTransformer.from_pretrained(args.transformer)
    else:
        transformer = load_model(args.model).denoiser
    transformer.eval()
    # each clip's corpus caption, encoded for these clips only: rows 0..n-1 for a, n..2n-1 for b
    states, masks = data.token_states(captions=torch.cat([firsts, seconds]).mul(data.per_clip).tolist())
    a, b = data.latents[firsts], data.latents[seconds]
    captions_a, captions_b = torch.arange(len(firsts)), torch.arange(len(firsts), 2 * len(firsts))
    d_true = (a - b).flatten(1)

    @torch.no_grad()
    def predict(xt: torch.Tensor, sigma: float, captions: torch.Tensor) -> torch.Tensor:
        mask = masks[captions]
        width = int(mask.sum(dim=1).max())
        velocity = transformer(
            xt,
            torch.full((len(xt),), sigma * 1000.0),
            encoder_hidden_states=states[captions, :width],
            encoder_attention_mask=mask[:, :width],
        )
        return xt - sigma * velocity

    print(f"{len(firsts)} twin pairs; |a - b| / |a| = {(d_true.norm(dim=1) / a.flatten(1).norm(dim=1)).mean():.3f}")
    for sigma in SIGMAS:
        noise = torch.randn(a.shape, generator=torch.Generator().manual_seed(1))
        xt = (1 - sigma) * (a + b) / 2 + sigma * noise
        d_text = (predict(xt, sigma, captions_a) - predict(xt, sigma, captions_b)).flatten(1)
        cosine = torch.nn.functional.cosine_similarity(d_text, d_true).mean()
        coefficient = ((d_text * d_true).sum(1) / d_true.square().sum(1)).mean()
        print(
            f"sigma {sigma:.2f}: cosine {cosine:.3f}  coefficient {coefficient:.3f}  "
            f"|d_text| / |d_true| {(d_text.norm(dim=1) / d_true.norm(dim=1)).mean():.3f}"
        )


if __name__ == "__main__":
    main()
