"""The impure part of training: data, progress, signals, resume and the periodic actions.

`train_and_evaluate(config, workdir)` runs (or resumes) one training run and writes every
output into `workdir` (see the README's "Outputs" section). With `config.population = K`
the run trains K GANs as one program (`jaxgan.core.population`): the state is stacked, and the
grids, evaluations and reports are per member.

What a rerun of the same command can rely on:
  * nothing in the workdir changes until the config has been checked against the data
    and the latest checkpoint; a refused run leaves the workdir as it was;
  * it resumes from the newest complete checkpoint, at the exact step, and ends with the
    parameters an uninterrupted run would have (each epoch's shuffle and step keys come
    from the seed and the epoch, and the step's position from `state.step`);
  * metrics.jsonl and TensorBoard drop what was logged after that checkpoint; an epoch
    whose evaluation was interrupted is evaluated and logged first; a checkpoint saved
    mid-epoch carries the epoch's per-step metrics and time so far;
  * no checkpoint holds NaN/Inf: divergence stops the run before the next save;
  * one run at a time per workdir (an advisory lock, released when the process ends).
"""

from __future__ import annotations

import contextlib
import dataclasses
import logging
import os
import signal
import time
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

import jax
import ml_collections
import numpy as np

from jaxgan import data as datasets
from jaxgan import images
from jaxgan.core import (
    GANState,
    count_params,
    create_state,
    population,
    sharding,
    split_epoch_key,
    step_of,
)
from jaxgan.data.loader import EpochLoader
from jaxgan.training import config as config_lib
from jaxgan.training import distributed, periodic
from jaxgan.training import workdir as workdir_lib
from jaxgan.training.checkpoint import Checkpointer, CheckpointError, signature
from jaxgan.training.runner import Progress, make_chunk_runner, slice_batches
from jaxgan.training.signals import (
    EvaluationStopped,
    NonFiniteLossError,
    SignalCatcher,
    TrainingInterrupted,
    kept_message,
    non_finite_arrays,
    stopped,
)

log = logging.getLogger("jaxgan")

NUM_SAMPLES = 64
# Fixed sub-keys of the seed, so that each use of randomness is independent of the others.
_INIT, _TRAIN, _SAMPLES, _EVAL = range(4)
_MAX_STEPS = int(np.iinfo(np.int32).max)  # GANState.step is int32.


@dataclasses.dataclass
class _Setup:
    """What is known before anything is written: data, initial state, sizes."""

    config: ml_collections.ConfigDict
    train_set: datasets.Dataset
    state: GANState
    steps_per_epoch: int
    signature: dict[str, Any]
    mesh: jax.sharding.Mesh


def _set_up(config: ml_collections.ConfigDict) -> _Setup:
    """Loads the data, checks the sizes against it, builds the state; writes nothing."""
    train_set = datasets.load(config, "train")
    if config.num_train_examples > len(train_set):
        # A :smoke config's subset on a small dataset: all of it, said once.
        log.warning(
            "config.num_train_examples=%d is more than the %d training images of %s; "
            "using all of them", config.num_train_examples, len(train_set), train_set.info.name,
        )  # fmt: skip
    elif config.num_train_examples:
        count = config.num_train_examples
        train_set = dataclasses.replace(
            train_set, images=train_set.images[:count], labels=train_set.labels[:count]
        )
    images_per_step = config_lib.images_per_step(config)
    config_lib.check_batch_size(images_per_step, len(train_set))
    mesh = sharding.data_mesh()
    sharding.check_batch_size(images_per_step, mesh)
    steps_per_epoch = len(train_set) // images_per_step
    if steps_per_epoch * config.num_epochs > _MAX_STEPS:
        raise ValueError(
            f"config.num_epochs={config.num_epochs} gives {steps_per_epoch * config.num_epochs} "
            f"steps, more than the int32 step counter holds; allowed: at most "
            f"{_MAX_STEPS // steps_per_epoch} epochs of {steps_per_epoch} steps"
        )
    info = train_set.info
    shapes = {"image_shape": info.image_shape, "num_classes": info.num_classes}
    if population.size(config):
        keys = [jax.random.fold_in(jax.random.key(s), _INIT) for s in population.seeds(config)]
        state = population.create(config, keys, population.learning_rates(config), **shapes)
    else:
        state = create_state(
            config,
            jax.random.fold_in(jax.random.key(config.seed), _INIT),
            total_steps=steps_per_epoch * config.num_epochs,
            **shapes,
        )
    return _Setup(config, train_set, state, steps_per_epoch, signature(config, info), mesh)


def train_and_evaluate(
    config: ml_collections.ConfigDict,
    workdir: str | os.PathLike,
    *,
    evaluator_factory: Callable[..., Any] | None = None,
) -> GANState:
    """Trains a GAN as `config` says, resuming from `workdir`'s latest checkpoint.

    Args:
      config: a config from `experiments/configs/` (validated here first).
      workdir: output folder; running again on the same folder resumes.
      evaluator_factory: builds the FID/metrics evaluator, `factory(config, test_set)`
        with `test_set` a `datasets.Dataset`, returning an object with
        `evaluate(state, key, should_stop=...) -> dict` and `write_report(results,
        path)`. Defaults to `jaxgan.evaluation.Evaluator`; only called when
        `config.eval_every > 0`.

    Returns:
      The final state.

    Raises:
      ValueError: invalid config or workdir, or the workdir is in use by another run
        (all before any compilation, and before anything in the workdir changes).
      CheckpointError: (a ValueError) the latest checkpoint is corrupt or was made by an
        incompatible config; nothing in the workdir is changed.
      NonFiniteLossError: a loss or parameter became NaN/Inf; the last good checkpoint is
        kept and nothing after it is saved.
      TrainingInterrupted: SIGTERM/SIGINT; the message says which checkpoint was kept.
      FileNotFoundError: the workdir disappeared during training.
    """
    config_lib.validate_config(config)
    distributed.initialize_distributed(config.distributed)
    path = workdir_lib.check_writable(workdir)
    setup = _set_up(config)
    # With several processes, process 0 holds the lock and writes the files; the others
    # take part in every computation and in Orbax's saves.
    main = distributed.is_main_process()
    if main:
        workdir_lib.prepare(path)
    with (
        workdir_lib.exclusive(path) if main else contextlib.nullcontext(),
        contextlib.ExitStack() as stack,
    ):
        # This run holds the workdir's lock, so unfinished saves of a killed run can go.
        checkpointer = Checkpointer(
            path / "checkpoints", config.keep_checkpoints, remove_partial=main
        )
        stack.callback(checkpointer.close)
        state, meta = _resume(checkpointer, setup)
        outputs = stack.enter_context(distributed.outputs_folder(path))
        stack.enter_context(workdir_lib.logging_to(outputs))
        try:
            workdir_lib.write_json(outputs / "config.json", config.to_dict())
            return _train(setup, path, outputs, checkpointer, state, meta, evaluator_factory)
        except KeyboardInterrupt:
            raise stopped(signal.SIGINT, "at once (a second signal)", checkpointer) from None
        except TrainingInterrupted as interrupted:
            log.warning("%s", interrupted)
            raise
        except Exception as error:
            log.error("%s: %s", type(error).__name__, error)
            raise


def _resume(checkpointer: Checkpointer, setup: _Setup) -> tuple[GANState, dict[str, Any]]:
    """The latest checkpoint's state and meta, or the initial state and {}."""
    if checkpointer.latest_step() is None:
        return setup.state, {}
    state, meta = checkpointer.restore(setup.state, setup.signature)
    if population.size(setup.config):  # As for one GAN, the config's learning rates apply.
        state = population.with_learning_rates(state, population.learning_rates(setup.config))
    step = step_of(state)
    if step and meta.get("steps_per_epoch") != setup.steps_per_epoch:
        # Epoch boundaries and each epoch's shuffle would move: refuse rather than guess.
        raise CheckpointError(
            f"The checkpoint {checkpointer.directory / str(step)} was made with "
            f"{meta.get('steps_per_epoch')} steps per epoch, this config has "
            f"{setup.steps_per_epoch} (batch_size or num_train_examples changed); resume "
            "with the original values, or use a new workdir"
        )
    return state, meta


def _train(
    setup: _Setup, workdir: Path, outputs: Path, checkpointer, state, meta, evaluator_factory
):
    config, info, spe = setup.config, setup.train_set.info, setup.steps_per_epoch
    total_steps = spe * config.num_epochs
    start_step = step_of(state)
    state = sharding.replicate(state, setup.mesh)
    members = population.size(config)
    one = population.member(state, 0) if members else state
    log.info(
        "%s on %s %s, %d classes: generator %s parameters, discriminator %s parameters; "
        "loss %s; %d steps per epoch (batch %d, %d images), %d epochs, dtype %s; mesh: %s",
        config.model.name, info.name, "x".join(map(str, info.image_shape)), info.num_classes,
        f"{count_params(one.g_params):,}", f"{count_params(one.d_params):,}", config.loss,
        spe, config.batch_size, len(setup.train_set), config.num_epochs, config.dtype,
        sharding.describe(setup.mesh),
    )  # fmt: skip
    if members:
        seeds, rates = population.seeds(config), population.learning_rates(config)
        log.info(
            "population: %d GANs in one program, seeds %d..%d, learning rates %s",
            members, seeds[0], seeds[-1], " ".join(f"{r:g}" for r in rates),
        )  # fmt: skip
    if start_step:
        log.info("Resumed from %s at step %d", checkpointer.directory / str(start_step), start_step)
    if start_step >= total_steps:
        log.info("All %d epochs are done (step %d): only the final outputs are rewritten",
                 config.num_epochs, start_step)  # fmt: skip
    metrics_path = workdir / "metrics.jsonl"
    if outputs == workdir:
        records = workdir_lib.trim_metrics(metrics_path, start_step)
    else:  # Another process's: the same records, read only.
        records = [r for r in workdir_lib.read_metrics(metrics_path) if r["step"] <= start_step]

    from tensorboardX import SummaryWriter  # Imported late: it is slow to import.

    if members:  # One key per member, each as its own single run would have it.
        seed_key, fold_in = population.seed_keys(population.seeds(config)), population.fold_in
        split_keys = jax.vmap(split_epoch_key)
    else:
        seed_key, fold_in, split_keys = (
            jax.random.key(config.seed),
            jax.random.fold_in,
            split_epoch_key,
        )
    with contextlib.ExitStack() as stack:
        # purge_step hides the events a killed run logged after the checkpoint resumed from.
        writer = SummaryWriter(str(outputs / "tensorboard"), purge_step=start_step + 1)
        stack.callback(writer.close)
        signals = stack.enter_context(SignalCatcher())
        # A signal to any process stops all of them at the same step.
        requested = distributed.agreed(signals.requested)

        def stop_evaluation() -> bool:
            if requested():
                raise EvaluationStopped
            return False

        metrics_file = stack.enter_context((outputs / "metrics.jsonl").open("a"))

        def save(state, epoch, epoch_record=None, **mid_epoch) -> int:
            """Saves `state` after `epoch` completed epochs, refusing NaN/Inf."""
            step = step_of(state)
            workdir_lib.check_exists(workdir, step)
            bad = non_finite_arrays(state)
            if bad:
                raise NonFiniteLossError(
                    f"Training diverged: {', '.join(bad[:3])}{' ...' if len(bad) > 3 else ''} "
                    f"hold NaN/Inf at step {step}. {kept_message(checkpointer)}"
                )
            meta = {"epoch": epoch, "steps_per_epoch": spe, "signature": setup.signature,
                    "dataset_info": info.to_dict(), **mid_epoch}  # fmt: skip
            if epoch_record is not None:
                meta["epoch_record"] = epoch_record
            return checkpointer.save(state, meta)

        sample_keys = fold_in(seed_key, _SAMPLES)
        samples = [
            _write_samples(config, outputs, writer, one, info, key, member)
            for member, key in (enumerate(sample_keys) if members else [(None, sample_keys)])
        ]
        evaluate = None
        if config.eval_every:
            evaluate = periodic.Evaluate(
                config.eval_every,
                _make_evaluator(evaluator_factory, config),
                fold_in(seed_key, _EVAL),
                stop_evaluation,
            )
        after_checkpoint = [a for a in (evaluate,) if a is not None] + [
            periodic.LogEpoch(metrics_file, writer, config.num_epochs),
            periodic.DrawCurves(outputs / "curves.png", records),
        ]

        def finish_epoch(end: periodic.EpochEnd, *, with_samples: bool = True) -> None:
            """The end-of-epoch actions, the checkpoint before any evaluation."""
            for action in samples if with_samples else ():
                if action.due(end.epoch, end.is_last):
                    action(end)
            needs_eval = evaluate is not None and evaluate.due(end.epoch, end.is_last)
            if (
                needs_eval
                or end.is_last
                or (config.checkpoint_every and end.epoch % config.checkpoint_every == 0)
            ):
                save(end.state, end.epoch, epoch_record=end.record)
            try:
                for action in after_checkpoint:
                    if action.due(end.epoch, end.is_last):
                        action(end)
            except EvaluationStopped:
                where = f"during the evaluation after epoch {end.epoch}"
                raise stopped(signals.signum, where, checkpointer) from None

        _finish_interrupted_epoch(state, meta, records, spe, config.num_epochs, finish_epoch)
        progress = Progress(config, total_steps, start_step)
        run_steps = make_chunk_runner(jax.default_backend(), setup.mesh, members=bool(members))
        load_epoch = EpochLoader(
            {"image": setup.train_set.images, "label": setup.train_set.labels},
            setup.mesh,
            config_lib.images_per_step(config),
        )
        train_key = fold_in(seed_key, _TRAIN)
        for epoch in range(step_of(state) // spe, config.num_epochs):
            position = step_of(state) - epoch * spe
            resumed = position > 0
            epoch_start = time.time() - (meta.get("epoch_seconds_so_far", 0.0) if resumed else 0.0)
            shuffle_key, step_key = split_keys(fold_in(train_key, epoch))
            batches = load_epoch(shuffle_key)
            step_metrics: dict[str, list[np.ndarray]] = {
                name: [np.asarray(values, np.float32)]
                for name, values in (
                    meta.get("epoch_step_metrics") or {} if resumed else {}
                ).items()
            }
            with progress.bar(epoch, position, spe) as bar:
                while position < spe:
                    end = min(position + config.log_every_steps, spe)
                    chunk_batches = slice_batches(batches, position, end)
                    state, chunk = run_steps(state, chunk_batches, step_key, bar.update, requested)
                    problem = _first_non_finite(chunk, epoch * spe + position)
                    if problem:
                        raise NonFiniteLossError(
                            f"Training diverged: {problem} (epoch {epoch + 1}). "
                            f"{kept_message(checkpointer)}"
                        )
                    for name, values in chunk.items():
                        step_metrics.setdefault(name, []).append(values)
                    position += len(next(iter(chunk.values())))
                    progress.report(bar, epoch, position, spe, step_of(state), chunk)
                    # At the epoch's end the epoch is finished first (metrics, samples).
                    if requested() and position < spe:
                        step = save(
                            state, epoch,
                            epoch_step_metrics={k: np.concatenate(v).tolist()
                                                for k, v in step_metrics.items()},
                            epoch_seconds_so_far=time.time() - epoch_start,
                        )  # fmt: skip
                        where = f"at step {step} (epoch {epoch + 1}, {position}/{spe} steps)"
                        raise stopped(signals.signum, where, checkpointer)
            meta = {}
            epoch_metrics = {k: np.concatenate(step_metrics[k]) for k in _ordered(step_metrics)}
            record = {
                "epoch": epoch + 1,
                "step": step_of(state),
                "epoch_seconds": round(time.time() - epoch_start, 3),
                **{k: float(np.mean(v)) for k, v in epoch_metrics.items()},  # Members' mean.
            }
            if members:  # Each member's means over the epoch's steps.
                periodic.add_member_scalars(
                    record,
                    [{k: float(v[:, i].mean()) for k, v in epoch_metrics.items()}
                     for i in range(members)],
                )  # fmt: skip
            if resumed:
                record["resumed"] = True
            workdir_lib.check_exists(workdir, step_of(state))
            is_last = epoch + 1 == config.num_epochs
            finish_epoch(periodic.EpochEnd(state, epoch + 1, is_last, record))
            # After the last epoch only the final outputs remain: finish them instead.
            if requested() and not is_last:
                where = f"after epoch {epoch + 1} (step {step_of(state)})"
                raise stopped(signals.signum, where, checkpointer)

        _write_final_outputs(state, workdir, outputs, info, samples, evaluate, spe)
        log.info("Done: %d steps; outputs in %s", step_of(state), workdir)
        return state


def _ordered(metrics) -> list[str]:
    """Metric names with the losses first (device_get sorts dict keys)."""
    return sorted(metrics, key=lambda name: (not name.endswith("_loss"), name))


def _sample_inputs(state: GANState, info, key: jax.Array):
    """Fixed latents (and labels) of the sample grids: one row per class when conditional."""
    if not state.num_classes:
        return jax.random.normal(key, (NUM_SAMPLES, state.latent_dim)), None, None
    columns = 8
    latents = jax.random.normal(key, (columns, state.latent_dim))
    labels = np.repeat(np.arange(state.num_classes, dtype=np.int32), columns)
    return jax.numpy.tile(latents, (state.num_classes, 1)), labels, columns


def _write_samples(config, outputs, writer, state, info, key, member) -> periodic.WriteSamples:
    """The grid action of one GAN, or of member `member` of a population."""
    latents, labels, columns = _sample_inputs(state, info, key)
    return periodic.WriteSamples(
        config.sample_every, outputs, latents, labels, writer, columns,
        row_labels=info.class_names if labels is not None else None, member=member,
    )  # fmt: skip


def _make_evaluator(evaluator_factory, config):
    """The evaluator against the dataset's test split (a folder's is its training set)."""
    test_set = datasets.load(config, "test")
    if evaluator_factory is not None:
        return evaluator_factory(config, test_set)
    from jaxgan.evaluation import Evaluator

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        evaluator = Evaluator.from_dataset(config, test_set)
    for warning in caught:  # Into the log (and train.log), once, without a source line.
        log.warning("%s", warning.message)
    return evaluator


def _finish_interrupted_epoch(state, meta, records, spe, num_epochs, finish_epoch) -> None:
    """Evaluates and logs the epoch of the checkpoint resumed from, if that was cut short."""
    step = step_of(state)
    record = meta.get("epoch_record")
    if not record or step % spe or any(r.get("step") == step for r in records):
        return
    log.info("Finishing epoch %d's outputs first (its evaluation was interrupted)", step // spe)
    end = periodic.EpochEnd(state, step // spe, step // spe == num_epochs, dict(record))
    finish_epoch(end, with_samples=False)


def _write_final_outputs(state, workdir: Path, outputs: Path, info, samples, evaluate, spe):
    workdir_lib.check_exists(workdir, step_of(state))
    stem = "fashion_mnist_samples" if info.name == "fashion_mnist" else "samples"
    for action in samples:
        images.save_png(outputs / f"{stem}{action.suffix}.png", action.grid(state), scale=2)
    if evaluate is None:
        return
    report = outputs / "fid_result.txt"
    if not evaluate.results and not (workdir / report.name).exists():
        # Finished earlier, but stopped before the report was written.
        end = periodic.EpochEnd(state, step_of(state) // spe, True, {})
        evaluate(end)
    if evaluate.results:
        evaluate.write_report(report)


def _first_non_finite(chunk_metrics: dict[str, np.ndarray], first_step: int) -> str | None:
    """The first NaN/Inf of a chunk's metrics ([S], or [S, K] for a population), in words."""
    for name, values in sorted(chunk_metrics.items()):
        bad = np.argwhere(~np.isfinite(values))
        if bad.size:
            where = tuple(bad[0])
            member = f" of member {where[1]}" if len(where) > 1 else ""
            return f"{name}={values[where]} at step {first_step + int(where[0]) + 1}{member}"
    return None
