"""The model ids tada understands, known without importing torch or diffusers.

``tada models`` and ``--help`` must start in a fraction of a second, so the list is
built from the family names and pipeline classes alone; the test suite checks it
against the full family specs.
"""

from __future__ import annotations

from dataclasses import dataclass

BUNDLED = "tada-mini"
RANDOM_SIZES = ("tiny", "full")
# family -> the pipeline its weights load into (the FamilySpec of each says the rest)
PIPELINES = {
    "ace-step-1.5": "AceStepPipeline",
    "stable-audio": "StableAudioPipeline",
    "audioldm2": "AudioLDM2Pipeline",
    "tada-mini": "tada.mini.pipeline:TadaMiniPipeline",
}


@dataclass(frozen=True)
class ModelKind:
    pattern: str
    description: str


def model_kinds() -> list[ModelKind]:
    """What `tada models` lists."""
    kinds = [ModelKind(BUNDLED, "the bundled text-to-music model, trained by this project (no download)")]
    kinds += [
        ModelKind(f"{name}:PATH", f"{cls} weights in a local diffusers directory") for name, cls in PIPELINES.items()
    ]
    kinds.append(
        ModelKind(
            "ace-step-v1:PATH", "ACE-Step v1 (3.5B, the paper's model) checkpoint directory; needs its package acestep"
        )
    )
    kinds += [
        ModelKind(f"random-tiny:{name}", "tiny random weights, tokenizer built in code (tests, quick runs)")
        for name in PIPELINES
    ]
    kinds += [
        ModelKind(f"random-full:{name}", "full-size architecture, random weights (GPU timing)") for name in PIPELINES
    ]
    return kinds
