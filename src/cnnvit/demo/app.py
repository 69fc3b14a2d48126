"""The web demo (`cnnvit demo RUN_DIR`): both models side by side on an image, in Gradio.

Upload an image or pick one of the run's test images; each model shows its top-5 classes with
probabilities (a bar chart and an exact table) and its explanation map, and a second part shows
what the run found (the report's verdicts on the usual claims, and the learning curves). The
models are loaded once when the app is built (predict.py) and every request reuses them; the
queue runs several requests at once. Gradio is an optional extra (`pip install cnnvit[demo]`).
It runs offline: Gradio's analytics and the hub's telemetry are switched off before Gradio is
imported, and localhost bypasses any proxy.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Any

import numpy as np

from ..config import FAMILIES
from ..errors import CnnvitError
from ..runs import Run
from .predict import TOP_K, DemoModels, demo_models, open_image

CONCURRENCY = 4  # requests the queue runs at once (the model work itself takes one lock)
TEST_EXAMPLES = 16  # test images offered in the picker
PREVIEW_PIXELS = 192  # small inputs (16-32 px) are shown enlarged
OFFLINE_ENV = {
    "GRADIO_ANALYTICS_ENABLED": "False",
    "HF_HUB_DISABLE_TELEMETRY": "1",
    "NO_PROXY": "localhost,127.0.0.1",
    "no_proxy": "localhost,127.0.0.1",
}


def _gradio() -> Any:
    for key, value in OFFLINE_ENV.items():
        os.environ.setdefault(key, value)
    try:
        import gradio
    except ImportError:
        raise CnnvitError("the demo needs Gradio: pip install 'cnnvit[demo]'") from None
    return gradio


def enlarge(pixels: np.ndarray, side: int = PREVIEW_PIXELS) -> np.ndarray:
    """An (H, W, 3) uint8 image scaled up to about `side` pixels (nearest: pixels stay sharp)."""
    from PIL import Image

    image = Image.fromarray(pixels)
    if max(image.size) >= side:
        return pixels
    scale = max(1, side // max(image.size))
    return np.asarray(image.resize((image.width * scale, image.height * scale), Image.NEAREST))


def top_table(prediction: dict[str, Any]) -> str:
    """Markdown table of one model's top-k: rank, class, probability to 4 decimals."""
    rows = ["| rank | class | probability |", "|---:|:---|---:|"]
    rows += [f"| {rank} | {item['label']} | {item['probability']:.4f} |"
             for rank, item in enumerate(prediction["top"], start=1)]  # fmt: skip
    return "\n".join(rows)


def findings_markdown(run: Run) -> str:
    """What the run measured: both test accuracies and the paired test on the same images."""
    dataset = run.dataset.get("name") or run.config.data.dataset
    classes = len(run.dataset.get("class_names") or [])
    lines = [f"**{dataset}**, {classes} classes; run `{run.path.name}`", ""]
    for family in FAMILIES:
        accuracy = run.models[family].test.get("accuracy")
        if accuracy is not None:
            lines.append(f"- {family.upper() if family == 'cnn' else 'ViT'} "
                         f"({run.models[family].name}): test accuracy {accuracy:.1%}")  # fmt: skip
    comparison = run.comparison or {}
    difference, p = comparison.get("accuracy_difference_points"), comparison.get("mcnemar_p_value")
    if difference is not None and p is not None:
        lines.append(f"- ViT minus CNN: {difference:+.1f} points on the same "
                     f"{comparison.get('test_size', '')} test images (McNemar's exact test, "
                     f"p = {p:.3g})")  # fmt: skip
    return "\n".join(lines)


def verdicts_markdown(run: Run) -> str:
    """The evidence engine's verdicts on the usual claims from this one run, as a table (the
    same engine and wording as the reports)."""
    from ..evidence import cell_from_run, judge_claims, verdict_table_markdown

    return (
        "**The usual claims, judged on this run alone** (one run is an anecdote: a study over "
        "seeds and training-set sizes settles more)\n\n"
        + verdict_table_markdown(judge_claims([cell_from_run(run)]))
    )


def learning_curves_image(run: Run) -> str | None:
    """Path of the run's learning-curve figure (the report draws it), if there is one."""
    path = run.path / "figures" / "learning_curves.png"
    return str(path) if path.is_file() else None


def test_examples(run: Run, models: DemoModels, count: int = TEST_EXAMPLES) -> list[tuple]:
    """(uint8 (H, W, 3) at the CNN's input size, true class name) for the first test images."""
    from ..data.images import decode_images

    data = run.prepare_data()
    split = data.splits["test"]
    part = split.dataset.select(range(min(count, len(split.labels))))
    images, keep = decode_images(part, data.image_column, models.models["cnn"].processor)
    labels = split.labels[: len(keep)][keep]
    return [(img.permute(1, 2, 0).numpy(), data.class_names[int(k)])
            for img, k in zip(images, labels, strict=True)]  # fmt: skip


def build_app(run: Run | str | Path, device: str = "auto") -> Any:
    """The Gradio Blocks app over a run; its two models are loaded here, once."""
    gr = _gradio()
    models = demo_models(run, device)
    run = models.run
    try:
        examples = test_examples(run, models)
    except CnnvitError as err:  # dataset not available here (offline hub set): upload only
        examples, note = [], f"(test images unavailable: {err})"
    else:
        note = f"or pick one of the first {len(examples)} test images"
    cnn, vit = models.models["cnn"].name, models.models["vit"].name

    def classify(source: Any, what: str = "") -> list[Any]:
        if source is None:
            return ["Upload an image or pick a test image.", *[None] * 7]
        try:
            image = open_image(source)
            predictions = models.predict(image)
            maps = models.explain(image)
        except CnnvitError as err:
            return [f"**Not classified:** {err}", *[None] * 7]
        preview = enlarge(np.asarray(models.models["cnn"].pixels(image)[0].permute(1, 2, 0)))
        what = what or f"the upload {Path(str(source)).name}"
        out: list[Any] = [f"Classified {what} ({image.width}x{image.height} pixels).", preview]
        for family in FAMILIES:
            pred = predictions[family]
            out += [{item["label"]: item["probability"] for item in pred["top"]},
                    top_table(pred), enlarge(maps[family])]  # fmt: skip
        return out

    def pick(choice: str | None) -> list[Any]:
        if not choice:
            return classify(None)
        index = int(choice.split(":")[0].lstrip("#"))
        return classify(
            examples[index][0], f"test image #{index} (true class {examples[index][1]})"
        )

    with gr.Blocks(analytics_enabled=False, title=f"cnnvit demo: {cnn} vs {vit}") as app:
        gr.Markdown(f"# CNN ({cnn}) vs ViT ({vit})\nUpload an image {note}; both models "
                    f"show their top-{TOP_K} classes and what they looked at.")  # fmt: skip
        with gr.Row():
            with gr.Column(scale=1):
                upload = gr.File(label="Upload an image", file_types=["image"],
                                 type="filepath", elem_id="upload")  # fmt: skip
                picker = gr.Dropdown(
                    [f"#{i}: true class {label}" for i, (_, label) in enumerate(examples)],
                    label="or pick a test image", value=None, elem_id="picker",
                )  # fmt: skip
                message = gr.Markdown("Upload an image or pick a test image.", elem_id="message")
            preview = gr.Image(label="what the models see", interactive=False, scale=1,
                               elem_id="preview")  # fmt: skip
        outputs: list[Any] = [message, preview]
        with gr.Row():
            for family, name, method in (("cnn", cnn, "Grad-CAM"), ("vit", vit, "rollout")):
                with gr.Column():
                    title = "CNN" if family == "cnn" else "ViT"
                    gr.Markdown(f"## {title}: {name}")
                    outputs += [
                        gr.Label(num_top_classes=TOP_K, label=f"{title} top-{TOP_K}",
                                 elem_id=f"{family}-label"),
                        gr.Markdown(elem_id=f"{family}-top"),
                        gr.Image(label=f"{title} explanation ({method})", interactive=False,
                                 elem_id=f"{family}-map"),
                    ]  # fmt: skip
        with gr.Accordion("What this run found", open=True):
            with gr.Row():
                gr.Markdown(findings_markdown(run), elem_id="findings")
                curves = learning_curves_image(run)
                if curves:
                    gr.Image(curves, label="learning curves", interactive=False, scale=2)
            gr.Markdown(verdicts_markdown(run), elem_id="verdicts")
        upload.upload(classify, upload, outputs, concurrency_limit=CONCURRENCY)
        picker.input(pick, picker, outputs, concurrency_limit=CONCURRENCY)
    app.queue(default_concurrency_limit=CONCURRENCY)
    return app


def launch(
    run_dir: str | Path,
    host: str = "127.0.0.1",
    port: int = 7860,
    device: str = "auto",
    block: bool = True,
) -> Any:
    """Build the app over `run_dir` and serve it on http://host:port (blocks unless told not)."""
    app = build_app(run_dir, device)
    print(f"cnnvit demo: serving http://{host}:{port} (Ctrl-C stops it)", file=sys.stderr)
    try:
        app.launch(server_name=host, server_port=port, share=False, inbrowser=False,
                   prevent_thread_lock=not block, show_error=True, quiet=True,
                   ssr_mode=False, footer_links=[])  # fmt: skip
    except OSError as err:
        raise CnnvitError(f"cannot serve the demo on {host}:{port} ({err}): try --port") from None
    return app
