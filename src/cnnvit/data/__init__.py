"""Data stage: sources to HF `datasets`, seeded splits, images decoded once, batch preprocessing."""

from .prepare import PreparedData, Split, prepare_data

__all__ = ["PreparedData", "Split", "prepare_data"]
