"""Training stage: the recipe and the loop, on accelerate."""

from .loop import TrainResult, train_model

__all__ = ["TrainResult", "train_model"]
