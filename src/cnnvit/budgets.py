"""The `--budget` setting as data: its mode (epochs, flops, time) and amount, parsed once.

A leaf module (it imports only errors), so the config can check a budget and the training and
report stages can read it; training/budget.py turns a budget into steps.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from .errors import CnnvitError

BUDGET_MODES = ("epochs", "flops", "time")
FLOPS_PER_TRAINED_IMAGE = 3  # forward + backward (about twice the forward), per image
_NUMBER = re.compile(r"^[0-9]*\.?[0-9]+(?:e[+-]?[0-9]+)?$", re.IGNORECASE)


@dataclass(frozen=True)
class Budget:
    """A parsed `--budget`: its mode and amount (epochs, training FLOPs or seconds); `value`
    is None for `flops:auto` until the pair's FLOPs resolve it (`resolve_auto`)."""

    mode: str
    value: float | None

    @property
    def text(self) -> str:
        """The budget as the flag spells it: "flops:2e+12", "time:60", "epochs:6"."""
        if self.value is None:
            return f"{self.mode}:auto"
        return f"{self.mode}:{self.value:g}"

    def describe(self) -> str:
        """How a report names it: "equal training FLOPs (2.00e+12 per model)"."""
        if self.mode == "flops":
            return f"equal training FLOPs ({self.value:.3g} per model)"
        if self.mode == "time":
            return f"equal training time ({self.value:g} s per model, on this machine)"
        return f"equal epochs ({self.value:g} per model)"


def parse_budget(text: str, epochs: int) -> Budget:
    """`--budget` as a `Budget`; "epochs" alone means `epochs`. One clear line when malformed."""
    spec = str(text).strip().lower()
    mode, _, amount = spec.partition(":")
    if mode == "epochs" and not amount:
        return Budget("epochs", float(epochs))
    usage = (
        "--budget must be epochs:N, flops:X (such as flops:2e12, or flops:auto) or "
        f"time:SECONDS, not {text!r}"
    )
    if mode not in BUDGET_MODES or not amount:
        raise CnnvitError(usage)
    if mode == "flops" and amount == "auto":
        return Budget("flops", None)
    if not _NUMBER.match(amount) or not float(amount) > 0:
        raise CnnvitError(usage)
    value = float(amount)
    if mode == "epochs" and not value.is_integer():
        raise CnnvitError(f"--budget epochs:N takes a whole number of epochs, not {amount}")
    return Budget(mode, value)


def resolve_auto(budget: Budget, epochs: int, n_train: int, flops: dict[str, int]) -> Budget:
    """`flops:auto` as a number: `epochs` passes over `n_train` images of the cheaper model."""
    if budget.mode != "flops" or budget.value is not None:
        return budget
    cheaper = min(flops.values())
    return Budget("flops", float(epochs * n_train * FLOPS_PER_TRAINED_IMAGE * cheaper))
