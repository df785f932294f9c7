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
from collections.abc import Callable
from pathlib import Path
from typing import Any

import jax
import ml_collections
import numpy as np

from jaxgan import data as datasets
from jaxgan.checkpoint import Checkpointer, CheckpointError, signature
from jaxgan.core import (
    GANState,
    count_params,
    create_state,
    population,
    sharding,
    step_of,
)
from jaxgan.training import config as config_lib
from jaxgan.training import distributed
from jaxgan.training import workdir as workdir_lib
from jaxgan.training.members import Members
from jaxgan.training.signals import NonFiniteLossError, TrainingInterrupted, stopped
from jaxgan.training.trainer import INIT, Trainer

# What a caller of `train_and_evaluate` catches comes from here too.
__all__ = ["NonFiniteLossError", "TrainingInterrupted", "train_and_evaluate"]

log = logging.getLogger("jaxgan")

_MAX_STEPS = int(np.iinfo(np.int32).max)  # GANState.step is int32.


@dataclasses.dataclass
class Setup:
    """What is known before anything is written: data, initial state, sizes."""

    config: ml_collections.ConfigDict
    train_set: datasets.Dataset
    state: GANState
    steps_per_epoch: int
    signature: dict[str, Any]
    mesh: jax.sharding.Mesh


def _set_up(config: ml_collections.ConfigDict) -> Setup:
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
        keys = [jax.random.fold_in(jax.random.key(s), INIT) for s in population.seeds(config)]
        state = population.create(config, keys, population.learning_rates(config), **shapes)
    else:
        state = create_state(
            config,
            jax.random.fold_in(jax.random.key(config.seed), INIT),
            total_steps=steps_per_epoch * config.num_epochs,
            **shapes,
        )
    return Setup(config, train_set, state, steps_per_epoch, signature(config, info), mesh)


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
            records = _records(path, outputs, step_of(state))
            _log_start(setup, checkpointer, state)
            state = sharding.replicate(state, setup.mesh)
            trainer = Trainer(setup, path, outputs, checkpointer, records, evaluator_factory)
            return trainer.run(state, meta)
        except KeyboardInterrupt:
            raise stopped(signal.SIGINT, "at once (a second signal)", checkpointer) from None
        except TrainingInterrupted as interrupted:
            log.warning("%s", interrupted)
            raise
        except Exception as error:
            log.error("%s: %s", type(error).__name__, error)
            raise


def _resume(checkpointer: Checkpointer, setup: Setup) -> tuple[GANState, dict[str, Any]]:
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


def _records(workdir: Path, outputs: Path, start_step: int) -> list[dict[str, Any]]:
    """metrics.jsonl's records up to `start_step`; what a killed run logged later is cut."""
    metrics_path = workdir / "metrics.jsonl"
    if outputs == workdir:
        return workdir_lib.trim_metrics(metrics_path, start_step)
    # Another process's: the same records, read only.
    return [r for r in workdir_lib.read_metrics(metrics_path) if r["step"] <= start_step]


def _log_start(setup: Setup, checkpointer: Checkpointer, state: GANState) -> None:
    config, info, spe = setup.config, setup.train_set.info, setup.steps_per_epoch
    members = Members(config)
    one = members.first(state)
    log.info(
        "%s on %s %s, %s: generator %s parameters, discriminator %s parameters; "
        "loss %s; %d steps per epoch (batch %d, %d images), %d epochs, dtype %s; mesh: %s",
        config.model.name, info.name, "x".join(map(str, info.image_shape)), info.describe_classes(),
        f"{count_params(one.g_params):,}", f"{count_params(one.d_params):,}", config.loss,
        spe, config.batch_size, len(setup.train_set), config.num_epochs, config.dtype,
        sharding.describe(setup.mesh),
    )  # fmt: skip
    if members.describe(config):
        log.info("%s", members.describe(config))
    start_step, total_steps = step_of(state), spe * config.num_epochs
    if start_step:
        log.info("Resumed from %s at step %d", checkpointer.directory / str(start_step), start_step)
    if start_step >= total_steps:
        log.info("All %d epochs are done (step %d): only the final outputs are rewritten",
                 config.num_epochs, start_step)  # fmt: skip
