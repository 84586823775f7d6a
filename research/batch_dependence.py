"""How much does a tada-mini clip depend on the other prompts in its batch?

The same prompt and seed, generated alone and inside batches; the largest sample
difference as a share of the clip's peak. Then where it comes from: the mel decoder and
the transformer alone vs in a batch of two, and the end-to-end figure again with each
clip decoded on its own (the cheap fix that was tried).

    python research/batch_dependence.py            # about a minute on 2 cores
"""

from __future__ import annotations

import json
import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import numpy as np  # noqa: E402
import torch  # noqa: E402

from tada.adapters import load_model  # noqa: E402

BATCHES = (["lofi", "lofi"], ["lofi", "a fast rock song with drums and electric guitar"], ["lofi"] * 4)


def share_of_peak(reference: np.ndarray, other: np.ndarray) -> float:
    return float(np.abs(reference - other).max() / np.abs(reference).max())


def end_to_end(model) -> dict[str, float]:
    alone = model.generate("lofi", seed=0).samples[0]
    return {" | ".join(b): share_of_peak(alone, model.generate(b, seed=[0] * len(b)).samples[0]) for b in BATCHES}


def main() -> None:
    torch.set_grad_enabled(False)
    model = load_model("tada-mini")
    pipe = model.pipeline
    report = {"end_to_end": end_to_end(model)}
    latents = torch.randn(1, pipe.transformer.config.in_channels, 78, generator=torch.Generator().manual_seed(0))
    ae = pipe.autoencoder
    mel_one = ae.decode(latents / ae.config.scaling_factor)
    mel_two = ae.decode(torch.cat([latents, latents]) / ae.config.scaling_factor)[:1]
    report["mel_decoder_max_abs"] = float((mel_one - mel_two).abs().max())
    report["decode_audio_share_of_peak"] = share_of_peak(
        pipe.decode(latents)[0].numpy(), pipe.decode(torch.cat([latents, latents]))[0].numpy()
    )
    states, mask = pipe.encode_prompt(["lofi"])
    t = torch.tensor([500.0])
    one = pipe.transformer(latents, t, encoder_hidden_states=states, encoder_attention_mask=mask)
    two = pipe.transformer(
        torch.cat([latents, latents]),
        t.expand(2),
        encoder_hidden_states=torch.cat([states, states]),
        encoder_attention_mask=torch.cat([mask, mask]),
    )[:1]
    report["transformer_max_abs"] = float((one - two).abs().max())
    decode = pipe.decode
    pipe.decode = lambda lat: torch.cat([decode(lat[i : i + 1]) for i in range(lat.shape[0])])
    report["end_to_end_decoding_each_clip_alone"] = end_to_end(model)
    print(json.dumps(report, indent=1))


if __name__ == "__main__":
    main()
