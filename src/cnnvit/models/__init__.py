"""Models stage: the preset table, and every model built or loaded as a transformers classifier."""

from .build import BuiltModel, build_model, count_flops, count_params, processor_image_size
from .presets import PRESETS, default_pair_for

__all__ = ["PRESETS", "BuiltModel", "build_model", "count_flops", "count_params",
           "default_pair_for", "processor_image_size"]  # fmt: skip
