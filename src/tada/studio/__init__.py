"""tada studio: steer a model with sliders and hear the effect (the engine in :mod:`.takes`)."""

from .takes import SliderSetting, Studio, Take, TakeSettings

__all__ = ["SliderSetting", "Studio", "Take", "TakeSettings"]
