"""Run directories: the one contract between producing a result and reading it.

Format version 1. A run directory made by `cnnvit compare` holds:

    run.json            schema_version (1), kind ("cnnvit-run"), status (running | complete |
                        failed | interrupted), error (one line or null), created/updated (UTC),
                        config (the full CompareConfig, grouped by stage; loads back with
                        --config), resolved (device, precision, attention, optimizer, run_dir,
                        processes),
                        environment (device, threads, versions, git commit, CPU name, its
                        kernel set cpu_capability and native bf16 cpu_bf16), dataset (name,
                        classes, split sizes, class counts, unreadable images), timings
                        (prepare_seconds, total_seconds), pairing (the two names, what they
                        were matched on, the ViT preset's vit_patch_size, ViT/CNN ratios),
                        models: {"cnn": {...}, "vit": {...}}
                        with per model status (pending | training | complete | failed), name,
                        family, source, pretrained, pretraining ({data, source}: what it
                        was pretrained on and where that was read), params, flops_per_image,
                        image_size,
                        history (one row per epoch: train/val loss and accuracy, seconds, lr,
                        regularised: whether label smoothing and augmentation were on,
                        regularisation: their share of full strength, 0 to 1,
                        overfitting: whether training accuracy led validation by more than
                        two standard errors), best_epoch, tuning (every learning-rate trial),
                        recipe (training.recipe.Recipe: every value the run followed),
                        training (the recipe's values and the runtime as used), test (accuracy,
                        top-5, macro F1, loss, per-class, confusion matrix), efficiency (train
                        seconds and images/s, inference images/s at inference_batch_size,
                        batch-1 latency, peak memory); comparison (paired McNemar counts on
                        the test split) once both models are complete.
    split.json          the split manifest: split_seed, training seed, train_fraction, sample
                        caps, the source's splits and sizes, and the example ids that went to
                        train, validation and test (an id is a row's position in the source's
                        splits taken in order).
    cnn/  vit/          each model's save_pretrained folder (config, weights, image processor,
                        README.md model card) plus predictions.npz: the test logits (float32,
                        N x C), true labels (int64, N) and example ids (int64, N).
    figures/, report.md, report.html, analyses/   derived; rebuilt from the above.

Every file is written atomically (files.py). `load_run` is the only reader: the report,
`cnnvit evaluate`, the analyses, the study and the demo all go through it.
"""

from __future__ import annotations

from .files import create_run_dir, read_json, write_atomic, write_json
from .loader import ModelRecord, Predictions, Run, load_run
from .writer import SCHEMA_VERSION, RunWriter

__all__ = [
    "SCHEMA_VERSION",
    "ModelRecord",
    "Predictions",
    "Run",
    "RunWriter",
    "create_run_dir",
    "load_run",
    "read_json",
    "write_atomic",
    "write_json",
]
