"""Hands-on: a run's two models on your own images, in Python (`predict_both`) or the browser.

predict.py loads a run's models once and returns both models' top-k predictions and explanation
maps for an image; app.py is the Gradio page behind `cnnvit demo RUN_DIR` (an optional extra).
"""

from .predict import DemoModels, demo_models, open_image, predict_both

__all__ = ["DemoModels", "demo_models", "launch", "open_image", "predict_both"]


def launch(*args, **kwargs):  # noqa: ANN002, ANN003, ANN201 - see app.launch
    """Serve the web demo (app.launch); Gradio is imported only here."""
    from .app import launch as _launch

    return _launch(*args, **kwargs)
