"""The epoch loop of a run: chunks of steps, each epoch's record, and the end-of-epoch
actions (grids, checkpoint, evaluation, log, curves), in that order.

`train_and_evaluate` (`jaxgan.training.loop`) sets a run up and hands it to a `Trainer`;
what the loop promises on resume and on signals is said there.
"""

from __future__ import annotations

import contextlib
import logging
import time
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

import jax
import numpy as np

from jaxgan import data as datasets
from jaxgan import images
from jaxgan.core import GANState, step_of
from jaxgan.data.loader import EpochLoader
from jaxgan.training import config as config_lib
from jaxgan.training import distributed, periodic
from jaxgan.training import workdir as workdir_lib
from jaxgan.training.members import Members
from jaxgan.training.runner import Progress, make_chunk_runner, slice_batches
from jaxgan.training.signals import (
    EvaluationStopped,
    NonFiniteLossError,
    SignalCatcher,
    kept_message,
    non_finite_arrays,
    stopped,
)

log = logging.getLogger("jaxgan")

NUM_SAMPLES = 64
# Fixed sub-keys of the seed, so that each use of randomness is independent of the others.
INIT, TRAIN, SAMPLES, EVAL = range(4)


class Trainer:
    """Trains `setup.state` from `state` to the last epoch; see `run`.

    Args:
      setup: the run's `loop.Setup` (config, data, sizes, signature, mesh).
      workdir, outputs: the workdir, and the folder this process writes (the workdir
        for process 0, a scratch folder for the others).
      checkpointer: the run's `Checkpointer`.
      records: metrics.jsonl's records up to the resumed step (appended to each epoch).
      evaluator_factory: see `train_and_evaluate`.
    """

    def __init__(self, setup, workdir: Path, outputs: Path, checkpointer, records,
                 evaluator_factory: Callable[..., Any] | None):  # fmt: skip
        self.setup, self.config = setup, setup.config
        self.workdir, self.outputs, self.checkpointer = workdir, outputs, checkpointer
        self.records, self.evaluator_factory = records, evaluator_factory
        self.info, self.spe = setup.train_set.info, setup.steps_per_epoch
        self.members = Members(self.config)

    def run(self, state: GANState, meta: dict[str, Any]) -> GANState:
        """Every remaining epoch, then the final grids and report; returns the final state."""
        from tensorboardX import SummaryWriter  # Imported late: it is slow to import.

        config = self.config
        with contextlib.ExitStack() as stack:
            start_step = step_of(state)
            # purge_step hides the events a killed run logged after the resumed checkpoint.
            self.writer = SummaryWriter(
                str(self.outputs / "tensorboard"), purge_step=start_step + 1
            )
            stack.callback(self.writer.close)
            self.signals = stack.enter_context(SignalCatcher())
            # A signal to any process stops all of them at the same step.
            self.requested = distributed.agreed(self.signals.requested)
            self.metrics_file = stack.enter_context((self.outputs / "metrics.jsonl").open("a"))
            self._make_actions(state)
            self._finish_interrupted_epoch(state, meta)
            self.progress = Progress(config, self.spe * config.num_epochs, start_step, self.records)
            self.run_steps = make_chunk_runner(
                jax.default_backend(), self.setup.mesh, members=bool(self.members.count)
            )
            self.load_epoch = EpochLoader(
                {"image": self.setup.train_set.images, "label": self.setup.train_set.labels},
                self.setup.mesh,
                config_lib.images_per_step(config),
            )
            self.train_key = self.members.fold_in(self.members.seed_key, TRAIN)
            for epoch in range(step_of(state) // self.spe, config.num_epochs):
                state = self._epoch(state, epoch, meta)
                meta = {}
            self._write_final_outputs(state)
            log.info("Done: %d steps; outputs in %s", step_of(state), self.workdir)
            return state

    def _make_actions(self, state: GANState) -> None:
        """The grid actions (one per member), the evaluation, the log and the curves."""
        config, members = self.config, self.members
        sample_keys = members.fold_in(members.seed_key, SAMPLES)
        one = members.first(state)
        self.samples = [
            self._write_samples(one, key, member) for member, key in members.keyed(sample_keys)
        ]
        self.evaluate = None
        if config.eval_every:
            self.evaluate = periodic.Evaluate(
                config.eval_every,
                self._make_evaluator(),
                members.fold_in(members.seed_key, EVAL),
                self._stop_evaluation,
            )
        self.after_checkpoint = [a for a in (self.evaluate,) if a is not None] + [
            periodic.LogEpoch(self.metrics_file, self.writer, config.num_epochs),
            periodic.DrawCurves(self.outputs / "curves.png", self.records),
        ]

    def _stop_evaluation(self) -> bool:
        if self.requested():
            raise EvaluationStopped
        return False

    def _epoch(self, state: GANState, epoch: int, meta: dict[str, Any]) -> GANState:
        """One epoch from `state` (possibly resumed mid-epoch, as `meta` says), its actions."""
        position = step_of(state) - epoch * self.spe
        resumed = position > 0
        epoch_start = time.time() - (meta.get("epoch_seconds_so_far", 0.0) if resumed else 0.0)
        shuffle_key, step_key = self.members.split_epoch_keys(
            self.members.fold_in(self.train_key, epoch)
        )
        batches = self.load_epoch(shuffle_key)
        step_metrics: dict[str, list[np.ndarray]] = {
            name: [np.asarray(values, np.float32)]
            for name, values in ((meta.get("epoch_step_metrics") or {}) if resumed else {}).items()
        }
        with self.progress.bar(epoch, position, self.spe) as bar:
            while position < self.spe:
                end = min(position + self.config.log_every_steps, self.spe)
                state, chunk = self.run_steps(
                    state, slice_batches(batches, position, end), step_key, bar.update,
                    self.requested,
                )  # fmt: skip
                self._check_finite(chunk, epoch, position)
                for name, values in chunk.items():
                    step_metrics.setdefault(name, []).append(values)
                position += len(next(iter(chunk.values())))
                self.progress.report(bar, epoch, position, self.spe, step_of(state), chunk)
                # At the epoch's end the epoch is finished first (metrics, samples).
                if self.requested() and position < self.spe:
                    self._stop_mid_epoch(state, epoch, position, step_metrics, epoch_start)
        record = self._epoch_record(state, epoch, step_metrics, epoch_start, resumed)
        workdir_lib.check_exists(self.workdir, step_of(state))
        is_last = epoch + 1 == self.config.num_epochs
        self.finish_epoch(periodic.EpochEnd(state, epoch + 1, is_last, record))
        # After the last epoch only the final outputs remain: finish them instead.
        if self.requested() and not is_last:
            self._stop(f"after epoch {epoch + 1} (step {step_of(state)})")
        return state

    def _stop(self, where: str) -> None:
        """Ends the run on a signal, once the save in progress (if any) is on disk."""
        self.checkpointer.wait()
        raise stopped(self.signals.signum, where, self.checkpointer) from None

    def _check_finite(self, chunk: dict[str, np.ndarray], epoch: int, position: int) -> None:
        problem = first_non_finite(chunk, epoch * self.spe + position)
        if problem:
            raise NonFiniteLossError(
                f"Training diverged: {problem} (epoch {epoch + 1}). "
                f"{kept_message(self.checkpointer)}"
            )

    def _stop_mid_epoch(self, state, epoch, position, step_metrics, epoch_start) -> None:
        """Saves the state with the epoch's metrics and time so far, then stops the run."""
        step = self.save(
            state, epoch,
            epoch_step_metrics={k: np.concatenate(v).tolist() for k, v in step_metrics.items()},
            epoch_seconds_so_far=time.time() - epoch_start,
        )  # fmt: skip
        self._stop(f"at step {step} (epoch {epoch + 1}, {position}/{self.spe} steps)")

    def _epoch_record(self, state, epoch, step_metrics, epoch_start, resumed) -> dict[str, Any]:
        """The epoch's line of metrics.jsonl: means over its steps (and over members)."""
        epoch_metrics = {k: np.concatenate(step_metrics[k]) for k in _ordered(step_metrics)}
        record = {
            "epoch": epoch + 1,
            "step": step_of(state),
            "epoch_seconds": round(time.time() - epoch_start, 3),
            **{k: float(np.mean(v)) for k, v in epoch_metrics.items()},  # Members' mean.
        }
        self.members.add_epoch_scalars(record, epoch_metrics)
        if resumed:
            record["resumed"] = True
        return record

    def save(self, state: GANState, epoch: int, epoch_record=None, **mid_epoch) -> int:
        """Saves `state` after `epoch` completed epochs, refusing NaN/Inf.

        The state is fetched to the host once: the NaN check, the digest and the save use
        that copy, and the save is written in the background (`Checkpointer`).
        """
        step = step_of(state)
        workdir_lib.check_exists(self.workdir, step)
        host = jax.device_get(state)
        bad = non_finite_arrays(host)
        if bad:
            raise NonFiniteLossError(
                f"Training diverged: {', '.join(bad[:3])}{' ...' if len(bad) > 3 else ''} "
                f"hold NaN/Inf at step {step}. {kept_message(self.checkpointer)}"
            )
        meta = {"epoch": epoch, "steps_per_epoch": self.spe, "signature": self.setup.signature,
                "dataset_info": self.info.to_dict(), **mid_epoch}  # fmt: skip
        if epoch_record is not None:
            meta["epoch_record"] = epoch_record
        return self.checkpointer.save(host, meta)

    def finish_epoch(self, end: periodic.EpochEnd, *, with_samples: bool = True) -> None:
        """The end-of-epoch actions, the checkpoint before any evaluation."""
        for action in self.samples if with_samples else ():
            if action.due(end.epoch, end.is_last):
                action(end)
        every = self.config.checkpoint_every
        needs_eval = self.evaluate is not None and self.evaluate.due(end.epoch, end.is_last)
        if needs_eval or end.is_last or (every and end.epoch % every == 0):
            self.save(end.state, end.epoch, epoch_record=end.record)
        try:
            for action in self.after_checkpoint:
                if action.due(end.epoch, end.is_last):
                    action(end)
        except EvaluationStopped:
            self._stop(f"during the evaluation after epoch {end.epoch}")

    def _finish_interrupted_epoch(self, state: GANState, meta: dict[str, Any]) -> None:
        """Evaluates and logs the epoch of the checkpoint resumed from, if cut short."""
        step, spe = step_of(state), self.spe
        record = meta.get("epoch_record")
        if not record or step % spe or any(r.get("step") == step for r in self.records):
            return
        log.info("Finishing epoch %d's outputs first (its evaluation was interrupted)", step // spe)
        is_last = step // spe == self.config.num_epochs
        self.finish_epoch(periodic.EpochEnd(state, step // spe, is_last, dict(record)),
                          with_samples=False)  # fmt: skip

    def _write_samples(self, state, key, member) -> periodic.WriteSamples:
        """The grid action of one GAN, or of member `member` of a population."""
        latents, labels, columns = sample_inputs(state, key)
        return periodic.WriteSamples(
            self.config.sample_every, self.outputs, latents, labels, self.writer, columns,
            row_labels=self.info.class_names if labels is not None else None, member=member,
        )  # fmt: skip

    def _make_evaluator(self):
        """The evaluator against the dataset's test split (a folder's is its training set)."""
        test_set = datasets.load(self.config, "test")
        if self.evaluator_factory is not None:
            return self.evaluator_factory(self.config, test_set)
        from jaxgan.evaluation import Evaluator

        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            evaluator = Evaluator.from_dataset(self.config, test_set)
        for warning in caught:  # Into the log (and train.log), once, without a source line.
            log.warning("%s", warning.message)
        return evaluator

    def _write_final_outputs(self, state: GANState) -> None:
        workdir_lib.check_exists(self.workdir, step_of(state))
        stem = "fashion_mnist_samples" if self.info.name == "fashion_mnist" else "samples"
        for action in self.samples:
            images.save_png(self.outputs / f"{stem}{action.suffix}.png", action.grid(state),
                            scale=2)  # fmt: skip
        if self.evaluate is None:
            return
        report = self.outputs / "fid_result.txt"
        if not self.evaluate.results and not (self.workdir / report.name).exists():
            # Finished earlier, but stopped before the report was written.
            self.evaluate(periodic.EpochEnd(state, step_of(state) // self.spe, True, {}))
        if self.evaluate.results:
            self.evaluate.write_report(report)


def _ordered(metrics) -> list[str]:
    """Metric names with the losses first (device_get sorts dict keys)."""
    return sorted(metrics, key=lambda name: (not name.endswith("_loss"), name))


def sample_inputs(state: GANState, key: jax.Array):
    """Fixed latents (and labels) of the sample grids: one row per class when conditional."""
    if not state.num_classes:
        return jax.random.normal(key, (NUM_SAMPLES, state.latent_dim)), None, None
    columns = 8
    latents = jax.random.normal(key, (columns, state.latent_dim))
    labels = np.repeat(np.arange(state.num_classes, dtype=np.int32), columns)
    return jax.numpy.tile(latents, (state.num_classes, 1)), labels, columns


def first_non_finite(chunk_metrics: dict[str, np.ndarray], first_step: int) -> str | None:
    """The first NaN/Inf of a chunk's metrics ([S], or [S, K] for a population), in words."""
    for name, values in sorted(chunk_metrics.items()):
        bad = np.argwhere(~np.isfinite(values))
        if bad.size:
            where = tuple(bad[0])
            member = f" of member {where[1]}" if len(where) > 1 else ""
            return f"{name}={values[where]} at step {first_step + int(where[0]) + 1}{member}"
    return None
