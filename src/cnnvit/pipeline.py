"""The orchestrator: the one place that knows the order of the stages.

config -> data -> models -> train -> evaluate -> run directory -> report. Each stage is a
function over plain objects; this module wires them together and hands every result to the
run writer as soon as it exists. `compare()` is the Python API behind `cnnvit compare`.

Nothing finished is lost: if anything fails or is interrupted (Ctrl-C) after a model has
finished, the run directory is kept with that model, its metrics and predictions, and run.json
says `failed` or `interrupted`; only a directory holding nothing finished is removed.
"""

from __future__ import annotations

import contextlib
import copy
import dataclasses
import gc
import shutil
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import torch
from accelerate import PartialState
from accelerate.utils import broadcast_object_list

from .analyses import probe_names, run_probes
from .budgets import Budget, parse_budget, resolve_auto
from .config import (
    ADAPT_BOTH,
    FAMILIES,
    CompareConfig,
    auto_patch_size,
    build_config,
    family_lr,
    parse_pretraining_option,
    parse_probes,
)
from .data import PreparedData, prepare_data
from .errors import CnnvitError, first_line
from .evaluation import classification_metrics, inference_cost, paired_comparison, predict
from .evidence.adaptation import gap_difference_counts
from .measure import environment
from .models import BuiltModel, build_model, count_flops, processor_image_size
from .models.adaptation import Identity, LinearProbe, classifier_linear, freeze_for
from .models.card import write_model_card
from .models.features import cached_features, extract_features, feature_key, model_identity
from .models.pairing import match_record, pair_ratios, resolve_pair, unmatched_line
from .models.presets import PROBE_RECIPE
from .pretraining import record
from .report import build_report
from .runs import RunWriter, create_run_dir, load_run
from .runs.files import write_atomic
from .runs.loader import PROBE_PREDICTIONS, read_predictions
from .runs.lock import RunLock
from .runs.writer import predictions_bytes
from .runtime import Runtime, make_accelerator, place_model, resolve_runtime
from .training import Hooks, train_model
from .training.budget import (
    budget_record,
    measure_step_rate,
    planned_steps,
    spent,
)
from .training.checkpoint import remove_checkpoints
from .training.convergence import convergence_record
from .training.estimate import forward_rate, long_run_line, training_seconds
from .training.recipe import Recipe, resolve_recipe
from .training.trackers import start_trackers, tracker_options
from .training.tuning import TuningResult, tune_learning_rate, untuned


def _say(line: str) -> None:
    # Under several processes only the main one prints (before set-up, every process is main).
    if not PartialState._shared_state or PartialState().is_main_process:
        print(line, file=sys.stderr, flush=True)


def compare(
    config: CompareConfig | None = None,
    resume: str | Path | None = None,
    report: bool = True,
    **settings: Any,
) -> Path:
    """Train and evaluate a CNN and a ViT with one recipe; returns the run directory.

    `settings` are the CLI flags' names (`epochs=5`, `dataset="path/to/folder"`, ...) and
    override `config`. `resume=RUN` continues an interrupted run directory instead: models it
    finished are kept, a model it was training continues from its last finished epoch, with
    the run's own config and splits. `report=False` skips the report (a study's cells: the
    study report reads the runs; `cnnvit report RUN` builds a cell's report on demand).
    """
    if resume is not None and (config is not None or settings):
        raise CnnvitError("--resume continues a run with its own settings: give no others")
    with _settled_heap():
        if resume is not None:
            return _resume(Path(resume).expanduser())
        return _fresh(config, report, settings)


def _fresh(config: CompareConfig | None, report: bool, settings: dict[str, Any]) -> Path:
    """A new run (see `compare`)."""
    if settings or config is None:
        base = config.to_dict() if config is not None else {}
        config = build_config({**base, **settings})
    runtime = resolve_runtime(config.train.device, config.train.precision, config.train.attention)
    probes = parse_probes(config.probes)
    if probes is not None:
        probe_names(probes)  # an unknown probe is refused before anything trains
    # Under torchrun or accelerate launch this joins the process group (on a CPU, accelerate
    # picks gloo only when told cpu=True); only the main process creates and writes the run.
    state = PartialState(cpu=runtime.device.type == "cpu")
    main = state.is_main_process
    started = time.perf_counter()
    data = prepare_data(config.data)
    # Models are built before the run directory exists, so a bad name creates nothing.
    built, pairing = _build_models(config, data, runtime, FAMILIES)
    if not pairing["match"]["met"]:
        _say(unmatched_line(pairing["cnn"], pairing["vit"], pairing["match"]))
    prepare_seconds = time.perf_counter() - started
    run_dir = create_run_dir(config.output, pairing["cnn"], pairing["vit"]) if main else None
    run_dir = broadcast_object_list([run_dir])[0]  # every process learns the same path
    lock = RunLock(run_dir).acquire() if main else None  # one writer per run directory
    writer: RunWriter | None = None
    try:
        # "output" stays what was asked (usually unset), so run.json's config loads back with
        # --config; where the run went is recorded with the other resolved values.
        manifest = {**data.manifest(config.data), "train_seed": config.train.seed}
        writer = RunWriter(
            run_dir,
            config=config.to_dict(),
            resolved={
                **runtime.describe(),
                "run_dir": str(run_dir),
                "processes": state.num_processes,
            },
            environment=environment(runtime.device),
            dataset=data.summary(),
            manifest=manifest,
            models={family: model.info() for family, model in built.items()},
            write=main,
        )
        writer.update("timings", {"prepare_seconds": prepare_seconds})
        writer.update("pairing", pairing)
        writer.update("budget", _budget(config, data, built))
        _run(config, data, built, writer, runtime)
        comparison = _comparison(run_dir) if main else None
        writer.finish(comparison, {"total_seconds": time.perf_counter() - started})
        if main:
            _drop_empty(run_dir / ".checkpoints")
    except BaseException as err:
        if lock is not None:
            _salvage(run_dir, writer, err)
            lock.release()
        raise
    try:
        if main:
            if probes is not None:  # a failing probe is recorded; it never fails the run
                run_probes(load_run(run_dir), probes, seed=config.train.seed, log=_say)
            if report:
                build_report(run_dir)  # reads the finished run directory only
    finally:
        if lock is not None:
            lock.release()
    return run_dir


@contextlib.contextmanager
def _settled_heap() -> Iterator[None]:
    """Collect garbage once, then exempt what survives from collections until the run ends.

    Every tuning trial and model ends with `accelerator.free_memory()`, a full `gc.collect()`
    that walks the half a million objects torch and transformers leave after import: about
    0.3 s each, 4 s of a default compare. Frozen (`gc.freeze`), those long-lived objects are
    skipped, and each collection walks only what the run made since. The first collection
    frees what earlier work in this process left (a study's cells), and the objects are
    unfrozen afterwards, so a caller's later garbage is collected as usual. A caller that froze
    the heap itself keeps its freeze: nothing is collected, frozen or unfrozen here.
    """
    if gc.get_freeze_count():
        yield
        return
    gc.collect()
    gc.freeze()
    try:
        yield
    finally:
        gc.unfreeze()


def _resume(run_dir: Path) -> Path:
    """Continue an interrupted or failed run where it stopped (see `compare`)."""
    run = load_run(run_dir)
    if run.status == "complete":
        raise CnnvitError(f"{run_dir} is complete: there is nothing to resume")
    config = run.config
    runtime = resolve_runtime(config.train.device, config.train.precision, config.train.attention)
    state = PartialState(cpu=runtime.device.type == "cpu")
    main = state.is_main_process
    lock = RunLock(run_dir).acquire() if main else None
    started = time.perf_counter()
    writer: RunWriter | None = None
    try:
        data = run.prepare_data()  # the run's own splits, checked against split.json
        missing = tuple(f for f in FAMILIES if f not in run.complete_models)
        built, _ = _build_models(config, data, runtime, missing)
        writer = RunWriter.reopen(run_dir, dict(run.raw), write=main)
        _say(f"resuming {run_dir}: {', '.join(run.missing)}")
        _run(config, data, built, writer, runtime)
        comparison = _comparison(run_dir) if main else None
        total = float(run.timings.get("total_seconds") or 0.0)
        writer.finish(comparison, {"total_seconds": total + time.perf_counter() - started})
        if main:
            _drop_empty(run_dir / ".checkpoints")
    except BaseException as err:
        if lock is not None:
            _salvage(run_dir, writer, err, remove=False)
            lock.release()
        raise
    try:
        if main:
            build_report(run_dir)
    finally:
        if lock is not None:
            lock.release()
    return run_dir


def _budget(config: CompareConfig, data: PreparedData, built: dict[str, BuiltModel]) -> dict:
    """run.json's `budget` block, `flops:auto` resolved from the pair's FLOPs per image."""
    t = config.train
    budget = parse_budget(t.budget, t.epochs)
    if budget.mode == "flops" and budget.value is None:
        flops = {f: count_flops(b.model, processor_image_size(b.processor))
                 for f, b in built.items()}  # fmt: skip
        budget = resolve_auto(budget, t.epochs, int(data.summary()["splits"]["train"]), flops)
    return budget_record(budget, t.budget)


def patch_size_for(requested: int | str, image_size: int, data: PreparedData) -> int:
    """ViT presets' patch side: the number given, or for auto one that covers 4x4 of the
    images' own pixels (config.auto_patch_size)."""
    if requested != "auto":
        return int(requested)
    return auto_patch_size(data.native_side(), image_size)


def _build_models(
    config: CompareConfig, data: PreparedData, runtime: Runtime, families: tuple[str, ...]
) -> tuple[dict[str, BuiltModel], dict[str, Any]]:
    """The models of `families` (an "auto" side is the other side's partner by --match), and
    how the pair compares: ViT/CNN parameter and FLOP ratios, the ViT presets' patch size and
    the asked match with its tolerance (`match`); `matched_on` only when the pair meets it."""
    m = config.models
    patch = patch_size_for(m.patch_size, m.image_size, data)
    resolved = resolve_pair(m.cnn, m.vit, m.match, m.image_size, patch_size=patch)
    names = dict(zip(FAMILIES, resolved, strict=True))
    built = {
        family: build_model(names[family], family, data.class_names, m.image_size,
                            runtime.attention, config.train.seed, patch_size=patch)
        for family in families
    }  # fmt: skip
    adapt = config.train.adapt
    scratch = [b.name for b in built.values() if not b.pretrained]
    if adapt != "full" and scratch:
        raise CnnvitError(
            f"--adapt {adapt} is for pretrained models, and {' and '.join(scratch)} "
            "train from random weights: use --adapt full (the default)"
        )
    if adapt == "probe":
        built = {f: dataclasses.replace(b, recipe=PROBE_RECIPE) for f, b in built.items()}
    built = with_given_pretraining(built, m.pretraining)
    for each in built.values():  # what a verdict about architectures will be scoped by
        if each.source != "preset":
            _say(f"[{each.name}] pretraining: {each.pretraining['data']} "
                 f"({each.pretraining['source']})")  # fmt: skip
    pairing: dict[str, Any] = {**names, "vit_patch_size": patch}
    if set(built) == set(FAMILIES):
        pairing.update(pair_ratios(built["cnn"], built["vit"]))
        pairing["match"] = match_record(m.match, pairing[f"{m.match}_ratio"])
        if pairing["match"]["met"]:  # never a match the pair does not meet
            pairing["matched_on"] = m.match
    return built, pairing


def with_given_pretraining(built: dict[str, BuiltModel], given: str) -> dict[str, BuiltModel]:
    """`built` with --pretraining's records in place of what the folders record; a preset
    named there is one line (presets are trained from scratch here)."""
    out = dict(built)
    for family, data in parse_pretraining_option(given).items():
        if family not in out:
            continue
        if out[family].source == "preset":
            raise CnnvitError(
                f"--pretraining {family}=...: {out[family].name} is a preset, trained from "
                "scratch here; the option is for hub and folder models"
            )
        out[family] = dataclasses.replace(out[family], pretraining=record(data, "--pretraining"))
    return out


def _drop_empty(folder: Path) -> None:
    """Remove `folder` if it holds nothing (every model's checkpoints are gone once saved)."""
    if folder.is_dir() and not any(folder.iterdir()):
        folder.rmdir()


def _salvage(
    run_dir: Path, writer: RunWriter | None, err: BaseException, remove: bool = True
) -> None:
    """Keep a run that holds finished work (marked failed or interrupted); remove the rest."""
    if writer is None or not writer.has_finished_work():
        if remove:  # we created it and nothing in it finished
            shutil.rmtree(run_dir, ignore_errors=True)
        return
    status = "interrupted" if isinstance(err, KeyboardInterrupt) else "failed"
    reason = first_line(err)
    writer.abort(status, reason if status == "failed" else "interrupted by the user")
    finished = writer.finished_models()
    kept = f"the finished {' and '.join(finished)} model" if finished else "the finished epochs"
    _say(
        f"cnnvit: run {status}; kept {kept} in {run_dir} (`cnnvit compare --resume {run_dir}` "
        f"continues it; `cnnvit report {run_dir}` shows what it holds)"
    )


def _comparison(run_dir: Path) -> dict[str, Any]:
    """McNemar counts of the two models' saved test predictions, read back from disk."""
    run = load_run(run_dir)
    cnn, vit = run.models["cnn"].predictions(), run.models["vit"].predictions()
    if not (np.array_equal(cnn.ids, vit.ids) and np.array_equal(cnn.labels, vit.labels)):
        raise CnnvitError("the two models' test splits differ (unreadable images?): cannot compare")
    comparison = paired_comparison(
        torch.from_numpy(cnn.logits), torch.from_numpy(vit.logits), torch.from_numpy(cnn.labels)
    )
    probes = [run.models[f].probe_predictions() for f in FAMILIES]
    if all(p is not None for p in probes):  # --adapt probe,full: the paired gaps of the claim
        cnn_probe, vit_probe = probes
        counts = gap_difference_counts(cnn.correct, cnn_probe.correct, vit.correct,
                                       vit_probe.correct)  # fmt: skip
        comparison["probe_full"] = {"gap_difference_counts": counts, "images": len(cnn.labels)}
    return comparison


def _run(
    config: CompareConfig,
    data: PreparedData,
    built: dict[str, BuiltModel],
    writer: RunWriter,
    runtime: Runtime,
) -> None:
    splits = data.summary()["splits"]
    _say(
        f"dataset {data.name}: {data.num_classes} classes, {splits['train']} train / "
        f"{splits['validation']} validation / {splits['test']} test images; "
        f"device {runtime.device}, {runtime.precision}"
    )
    if runtime.device.type == "cpu" and built:
        line = _long_run(config, data, built, runtime)
        if line:
            _say(line)
    accelerator = make_accelerator(runtime, **tracker_options(config.train.report_to, writer.path))
    start_trackers(accelerator, config, writer.path)
    try:
        for family in list(built):
            model = built[family]
            _train_and_evaluate(model, data, config, accelerator, runtime, writer)
            accuracy = writer.model(family)["test"]["accuracy"]
            _say(f"[{model.name}] test accuracy {accuracy:.4f}")
            # Free the first model before the second trains: the run keeps it on disk.
            del built[family], model
            accelerator.free_memory()
    finally:
        accelerator.end_training()  # flush and close the trackers, even after a failure


def _long_run(
    config: CompareConfig, data: PreparedData, built: dict[str, BuiltModel], runtime: Runtime
) -> str | None:
    """The start's one line when training is estimated at over an hour (training/estimate.py)."""
    t = config.train
    estimates, probes = {}, {}
    for model_built in built.values():
        model, preprocess = place_model(model_built, runtime)
        flops = count_flops(model, processor_image_size(model_built.processor))
        images = data.tensors("train", model_built.processor)[0]
        validation = len(data.tensors("validation", model_built.processor)[0])
        with runtime.autocast():
            rate = forward_rate(model, preprocess, images, flops)
        sizes = (len(images), validation, t.epochs)
        estimates[model_built.name] = training_seconds(flops, rate, *sizes, t.adapt)
        probes[model_built.name] = training_seconds(flops, rate, *sizes, "probe")
    probe_possible = all(b.pretrained for b in built.values()) and t.adapt != "probe"
    return long_run_line(estimates, probes if probe_possible else None)


def _train_and_evaluate(
    built: BuiltModel,
    data: PreparedData,
    config: CompareConfig,
    accelerator: Any,
    runtime: Runtime,
    writer: RunWriter,
) -> None:
    """Train one model, evaluate it on the test split, and hand everything to the writer."""
    family = built.family
    model, preprocess = place_model(built, runtime)
    image_size = processor_image_size(built.processor)
    flops = count_flops(model, image_size)
    writer.model_started(family, flops_per_image=flops, image_size=image_size)
    train = data.tensors("train", built.processor)
    validation = data.tensors("validation", built.processor)
    test_images, test_labels = data.tensors("test", built.processor)
    test_ids = data.example_ids("test", built.processor)

    # --adapt: what trains. A probe trains a copy of the classifier on frozen features, cached.
    # probe,full first trains and tests the probe at the pretrained weights, then fine-tunes in
    # full: the full fine-tune is the model's result, the probe's is recorded beside it.
    mode = config.train.adapt
    probe_beside: tuple[dict[str, Any], np.ndarray] | None = None
    if mode == ADAPT_BOTH:
        splits = {"train": train, "validation": validation, "test": (test_images, test_labels)}
        probe_beside = _probe_beside(built, model, preprocess, splits, config, accelerator,
                                     runtime, writer, data.class_names)  # fmt: skip
        config = dataclasses.replace(config, train=dataclasses.replace(config.train, adapt="full"))
    adapt = config.train.adapt
    trainable = freeze_for(model, adapt)
    eval_batch = resolve_recipe(config.train, built.recipe, len(train[1]), image_size)
    eval_batch_size = eval_batch.eval_batch_size
    fit_model, fit_preprocess, fit_train, fit_validation = model, preprocess, train, validation
    adaptation: dict[str, Any] = {"mode": mode, "trainable_params": trainable}
    if probe_beside is not None:
        adaptation["probe"] = probe_beside[0]
    if adapt == "probe":
        features, info = _probe_features(
            built, model, preprocess, {"train": train, "validation": validation},
            eval_batch_size, runtime,
        )  # fmt: skip
        fit_train, fit_validation = features["train"], features["validation"]
        adaptation.update(info)
        fit_model = LinearProbe(classifier_linear(model)).to(runtime.device)
        fit_preprocess = Identity(runtime.device)
    writer.update_model(family, adaptation=adaptation)

    # The recipe, resolved once from the config, the model's row and the budget; the learning
    # rate is the row's (lr "usual"), the number given, or chosen on validation with an equal
    # budget for both models (lr "auto"), its trials starting from copies of the same weights.
    recorded = writer.record.get("budget") or {"mode": "epochs", "value": config.train.epochs}
    budget = Budget(recorded["mode"], recorded["value"])  # a run from before budgets: epochs
    batch = config.train.batch_size * accelerator.num_processes
    steps = planned_steps(
        budget, flops, len(fit_train[1]), batch,
        lambda: measure_step_rate(fit_model, fit_preprocess, fit_train, batch, runtime),
        earlier=(writer.model(family).get("recipe") or {}).get("steps"),
    )  # fmt: skip
    recipe = resolve_recipe(config.train, built.recipe, len(train[1]), image_size, steps,
                            budget.text)  # fmt: skip
    if budget.mode == "time":
        recipe = dataclasses.replace(recipe, deadline_seconds=float(budget.value))
    checkpoints = writer.path / ".checkpoints" / family
    earlier = writer.model(family).get("tuning")  # resuming: the rate was already chosen
    if earlier:
        tuning = TuningResult(**earlier)
    elif config.train.lr == "auto":
        initial = copy.deepcopy(fit_model).cpu()  # frozen weights stay frozen in the copies

        def fresh() -> tuple[Any, Any]:
            if adapt == "probe":
                return copy.deepcopy(initial).to(runtime.device), fit_preprocess
            return place_model(dataclasses.replace(built, model=copy.deepcopy(initial)), runtime)

        tuning = tune_learning_rate(
            fresh, fit_train, fit_validation, recipe, built.recipe.lr_grid, accelerator,
            runtime, Hooks(name=built.name, log=_say), max_share=built.recipe.max_trial_share,
        )  # fmt: skip
    else:
        tuning = untuned(family_lr(config.train.lr, family), recipe, config.train.lr)
    recipe = dataclasses.replace(recipe, lr=tuning.chosen_lr)
    writer.update_model(family, tuning=tuning.to_dict(), recipe=recipe.to_dict())
    hooks = Hooks(name=built.name, log=_say, on_epoch=lambda row: writer.epoch_done(family, row),
                  tracker_prefix=family, checkpoint_dir=checkpoints)  # fmt: skip
    result = train_model(fit_model, fit_preprocess, fit_train, fit_validation, recipe,
                         accelerator, runtime, hooks)  # fmt: skip
    final = result.model
    if adapt == "probe":  # the probe's weights become the model's classifier
        trained = accelerator.unwrap_model(result.model).classifier
        classifier_linear(model).load_state_dict(trained.state_dict())
        final = model
    with runtime.autocast():
        logits, loss = predict(
            final,
            preprocess,
            test_images,
            test_labels,
            recipe.eval_batch_size,
            accelerator,  # several processes: each predicts a share, all get every logit
        )
        cost = inference_cost(
            accelerator.unwrap_model(final), preprocess, test_images,
            recipe.eval_batch_size,
        )  # fmt: skip
    test = classification_metrics(logits, test_labels, data.class_names, loss)
    plain = accelerator.unwrap_model(final)
    results = {
        "best_epoch": result.best_epoch,
        "history": result.history,
        "budget": spent(budget, result.history, flops, len(fit_train[1])),
        "convergence": convergence_record(
            result.history, len(fit_validation[1]), result.cool_down_from
        ),
        "training": {
            **training_record(result.recipe, runtime, family, preprocess.channels_last),
            "adapt": adapt,  # what this result trained; adaptation.mode what the run asked
            "trainable_params": trainable,
        },
        "test": test,
        "efficiency": {
            "train_seconds": result.train_seconds,
            "train_images_per_second": result.train_images_per_second,
            **cost,
            "peak_memory_mb": result.peak_memory_mb,
        },
    }

    def save(folder: Path) -> None:
        plain.save_pretrained(folder)
        built.processor.save_pretrained(folder)
        if probe_beside is not None:  # the probe's test predictions, for the paired claim
            write_atomic(folder / PROBE_PREDICTIONS,
                         predictions_bytes(probe_beside[1], test_labels.numpy(),
                                           np.asarray(test_ids)))  # fmt: skip
        write_model_card(folder, {**writer.model(family), **results, "dataset": data.summary(),
                                  "environment": {"device": str(runtime.device)},
                                  "report": "../report.html"})  # fmt: skip

    writer.model_finished(
        family, results, save, logits.numpy(), test_labels.numpy(), np.asarray(test_ids)
    )
    remove_checkpoints(checkpoints)  # the model is saved for good
    _probe_file(writer, family).unlink(missing_ok=True)  # probe,full: saved with the model


def _probe_features(
    built: BuiltModel,
    model: torch.nn.Module,
    preprocess: Any,
    splits: dict[str, tuple[torch.Tensor, torch.Tensor]],
    batch_size: int,
    runtime: Runtime,
) -> tuple[dict[str, tuple[torch.Tensor, torch.Tensor]], dict[str, Any]]:
    """Frozen features of each split (cached per model, processor, precision and split) with
    their labels, and what run.json records about them."""
    identity = model_identity(built.name, model)
    started = time.perf_counter()
    hits, out = [], {}
    for split, (images, labels) in splits.items():
        key = feature_key(identity, built.processor, runtime.precision, images)
        features, hit = cached_features(
            key,
            lambda images=images: extract_features(
                model, preprocess, images, batch_size, runtime.autocast
            ),
        )
        hits.append(hit)
        out[split] = (features, labels)
    info = {
        "feature_seconds": time.perf_counter() - started,
        "features_cached": all(hits),
        "feature_dim": int(out["train"][0].shape[1]),
    }
    _say(
        f"[{built.name}] probe features {tuple(out['train'][0].shape)}: "
        f"{'read from the cache' if all(hits) else 'computed'} in {info['feature_seconds']:.1f} s"
    )
    return out, info


def _probe_file(writer: RunWriter, family: str) -> Path:
    """Where probe,full keeps a probe's test logits until its model is saved."""
    return writer.path / ".checkpoints" / f"{family}-{PROBE_PREDICTIONS}"


def _probe_beside(
    built: BuiltModel,
    model: torch.nn.Module,
    preprocess: Any,
    splits: dict[str, tuple[torch.Tensor, torch.Tensor]],
    config: CompareConfig,
    accelerator: Any,
    runtime: Runtime,
    writer: RunWriter,
    class_names: list[str],
) -> tuple[dict[str, Any], np.ndarray]:
    """--adapt probe,full: a linear probe on `model`'s pretrained features, tuned, trained and
    tested as `--adapt probe` would, before the full fine-tune changes the weights; returns
    its run.json record and its test logits (kept with the checkpoints until the model is
    saved, so a resumed run does not train the probe again)."""
    family = built.family
    saved = _probe_file(writer, family)
    earlier = (writer.model(family).get("adaptation") or {}).get("probe")
    if earlier and saved.is_file():
        return earlier, read_predictions(saved).logits
    started = time.perf_counter()
    train_config = dataclasses.replace(config.train, adapt="probe")
    trainable = freeze_for(model, "probe")
    n_train = len(splits["train"][1])
    image_size = processor_image_size(built.processor)
    recipe = resolve_recipe(train_config, PROBE_RECIPE, n_train, image_size)
    features, info = _probe_features(built, model, preprocess, splits, recipe.eval_batch_size,
                                     runtime)  # fmt: skip
    initial = LinearProbe(classifier_linear(model))
    identity = Identity(runtime.device)
    name = f"{built.name} probe"
    if config.train.lr == "auto":
        tuning = tune_learning_rate(
            lambda: (copy.deepcopy(initial).to(runtime.device), identity), features["train"],
            features["validation"], recipe, PROBE_RECIPE.lr_grid, accelerator, runtime,
            Hooks(name=name, log=_say), max_share=PROBE_RECIPE.max_trial_share,
        )  # fmt: skip
    else:
        tuning = untuned(family_lr(config.train.lr, family), recipe, config.train.lr)
    recipe = dataclasses.replace(recipe, lr=tuning.chosen_lr)
    result = train_model(initial.to(runtime.device), identity, features["train"],
                         features["validation"], recipe, accelerator, runtime,
                         Hooks(name=name, log=_say))  # fmt: skip
    test_features, test_labels = features["test"]
    logits, loss = predict(result.model, identity, test_features, test_labels,
                           recipe.eval_batch_size, accelerator)  # fmt: skip
    test = classification_metrics(logits, test_labels, class_names, loss)
    record = {
        "test_accuracy": test["accuracy"],
        "test_macro_f1": test.get("macro_f1"),
        "trainable_params": trainable,
        "lr": recipe.lr,
        "epochs": recipe.epochs,
        "best_epoch": result.best_epoch,
        "tuning": tuning.to_dict(),
        **info,
        "train_seconds": result.train_seconds,
        "seconds": time.perf_counter() - started,  # features, tuning, training and test
    }
    _say(f"[{name}] test accuracy {test['accuracy']:.4f} ({record['seconds']:.1f} s)")
    ids = np.arange(len(test_labels))  # the file only carries logits for resuming
    saved.parent.mkdir(parents=True, exist_ok=True)
    write_atomic(saved, predictions_bytes(logits.numpy(), test_labels.numpy(), ids))
    writer.update_model(family, adaptation={"mode": config.train.adapt, "probe": record})
    return record, logits.numpy()


def training_record(recipe: Recipe, runtime: Runtime, family: str, channels_last: bool) -> dict:
    """run.json's `training` block for one model: the recipe it followed and how it ran."""
    return {
        **{
            k: getattr(recipe, k)
            for k in (
                "lr",
                "weight_decay",
                "warmup_fraction",
                "label_smoothing",
                "augment_strength",
                "epochs",
                "batch_size",
                "grad_clip_norm",
                "hflip",
                "seed",
            )
        },
        "augment": recipe.augment_strength > 0,
        "regularisation": "rising linearly from none at epoch 1 to full at the last"
        if recipe.progressive
        else "constant",
        "precision": runtime.precision,
        "memory_format": "channels_last" if channels_last else "contiguous",
        "attention": runtime.attention if family == "vit" else None,
        "compiled": recipe.compile,
        "device": str(runtime.device),
    }
