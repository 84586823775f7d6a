"""The paper's headline table (ACE-Step v1, mean over the nine concepts; MISSION.md section 3),
and which tada variant each of its rows corresponds to."""

from __future__ import annotations

COLUMNS = ("auc_muq", "auc_clap", "smooth_muq", "smooth_clap", "quality")

# row -> (AUC MuQ, AUC CLAP, Smooth MuQ, Smooth CLAP, Quality (Audiobox Aesthetics))
TABLE: dict[str, tuple[float, float, float, float, float]] = {
    "prompt switching": (0.084, 0.049, 0.185, 0.223, 6.803),
    "text-embedding": (0.014, 0.011, 0.439, 0.680, 6.690),
    "token-embedding": (0.035, 0.024, 0.267, 0.211, 6.776),
    "FreeSliders": (0.079, 0.049, 0.055, 0.066, 6.790),
    "Concept Sliders": (0.086, 0.067, 0.056, 0.045, 6.762),
    "AUSteer (loc.)": (0.096, 0.063, 0.054, 0.050, 6.775),
    "CAA (all layers)": (0.075, 0.046, 0.092, 0.071, 6.787),
    "CAA (loc.)": (0.104, 0.065, 0.063, 0.052, 6.792),
    "SAE (loc.)": (0.118, 0.070, 0.057, 0.055, 6.770),
}

# the paper's row -> the tada variant measured the same way (prompt-level and score-space
# baselines act on every layer in the paper; AUSteer and SAE only localised)
VARIANT_OF_ROW = {
    "prompt switching": "prompt-switch-global",
    "text-embedding": "text-embedding-global",
    "token-embedding": "token-embedding-global",
    "FreeSliders": "freesliders-global",
    "Concept Sliders": "concept-slider-global",
    "AUSteer (loc.)": "austeer-local",
    "CAA (all layers)": "caa-global",
    "CAA (loc.)": "caa-local",
    "SAE (loc.)": "sae-local",
}


def paper_column(column: str) -> dict[str, float]:
    """One column of the paper's table keyed by the tada variant of each row."""
    index = COLUMNS.index(column)
    return {VARIANT_OF_ROW[row]: values[index] for row, values in TABLE.items()}
