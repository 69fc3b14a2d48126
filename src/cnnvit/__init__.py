"""cnnvit: compare a CNN and a Vision Transformer on your own images, with measurements."""

from __future__ import annotations

from .version import __version__

__all__ = ["__version__", "compare", "evaluate_saved_model", "build_report", "study"]


def __getattr__(name: str):  # noqa: ANN202 - lazy imports keep `cnnvit --help` fast
    if name == "compare":
        from .pipeline import compare

        return compare
    if name == "evaluate_saved_model":
        from .rescoring import evaluate_saved_model

        return evaluate_saved_model
    if name == "build_report":
        from .report import build_report

        return build_report
    if name == "study":  # the cnnvit.study package, callable: cnnvit.study(seeds=[0, 1], ...)
        import importlib  # not `from . import study`: that would ask this hook again

        return importlib.import_module(".study", __name__)
    raise AttributeError(name)
