"""Training stage: the recipe and the loop, on accelerate."""

from .loop import Hooks, TrainResult, train_model

__all__ = ["Hooks", "TrainResult", "train_model"]
