"""The impure part of training: data, logging, checkpoints, samples, evaluation, signals.

`train_and_evaluate(config, workdir)` runs (or resumes) one training run and writes every
output into `workdir` (see the README's "Outputs" section).

What a rerun of the same command can rely on:
  * it resumes from the newest complete checkpoint, at the exact step, and ends with the
    parameters an uninterrupted run would have (each epoch's shuffle and step keys come
    from the seed and the epoch, and the step's position from `state.step`);
  * metrics.jsonl and TensorBoard drop what was logged after that checkpoint, and a
    checkpoint saved mid-epoch carries the epoch's per-step metrics so far, so the
    epoch's line equals the uninterrupted one;
  * no checkpoint holds NaN/Inf: divergence stops the run before the next save;
  * one run at a time per workdir (an advisory lock, released when the process ends).
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import logging
import os
import signal
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import jax
import ml_collections
import numpy as np
import tqdm

from jaxgan import config as config_lib
from jaxgan import datasets, images
from jaxgan.checkpoint import Checkpointer, CheckpointError, signature
from jaxgan.train import (
    GANState,
    count_params,
    create_state,
    epoch_batches,
    batch_to_float,
    sample,
    split_epoch_key,
    train_step,
    train_steps,
)

log = logging.getLogger("jaxgan")

# Without a terminal, progress goes to the log at most this often.
_REPORT_SECONDS = 60.0

NUM_SAMPLES = 64
# Fixed sub-keys of the seed, so that each use of randomness is independent of the others.
_INIT, _TRAIN, _SAMPLES, _EVAL = range(4)
_MAX_STEPS = int(np.iinfo(np.int32).max)  # GANState.step is int32.


def make_chunk_runner(backend: str) -> Callable[..., tuple[GANState, dict[str, np.ndarray]]]:
    """Returns `run(state, uint8_batches [S, B, H, W], key) -> (state, host metrics [S])`.

    On accelerators the S steps are one compiled `lax.scan`. On CPU they are S calls of
    one jitted `train_step`: XLA:CPU runs the convolutions of a DCGAN step 5-10x slower
    inside a while loop (the form `lax.scan` compiles to) than in a straight-line program,
    and a Python dispatch per step costs nothing next to a CPU step. Both paths apply the
    same `train_step` with the same keys and batches.
    """
    if backend != "cpu":
        scan_steps = jax.jit(train_steps, donate_argnums=0)

        def run_scan(state, batches, key):
            state, metrics = scan_steps(state, batches, key)
            return state, jax.device_get(metrics)

        return run_scan

    step = jax.jit(
        lambda state, batch, key: train_step(state, batch_to_float(batch), key),
        donate_argnums=0,
    )

    def run_loop(state, batches, key):
        per_step = []
        for index in range(jax.tree.leaves(batches)[0].shape[0]):
            state, metrics = step(state, jax.tree.map(lambda a: a[index], batches), key)
            per_step.append(metrics)
        per_step = jax.device_get(per_step)
        return state, {name: np.stack([m[name] for m in per_step]) for name in per_step[0]}

    return run_loop


class NonFiniteLossError(FloatingPointError):
    """A training metric or a parameter became NaN or Inf."""


class TrainingInterrupted(Exception):
    """SIGTERM or SIGINT arrived; a checkpoint was saved before raising."""

    def __init__(self, signum: int, message: str):
        super().__init__(message)
        self.signum = signum


def prepare_workdir(workdir: str | os.PathLike) -> Path:
    """Creates `workdir` and checks that it can be written, before any compilation."""
    path = Path(workdir).expanduser().absolute()
    try:
        path.mkdir(parents=True, exist_ok=True)
        probe = path / ".write_test"
        probe.write_text("ok")
        probe.unlink()
    except OSError as error:
        raise ValueError(
            f"workdir={str(workdir)!r} is not writable ({error.strerror or error}); "
            "allowed: a folder this user can create and write"
        ) from error
    return path


@contextlib.contextmanager
def _logging_to(workdir: Path) -> Iterator[None]:
    """Copies the log (INFO and above) into workdir/train.log while the block runs."""
    handler = logging.FileHandler(workdir / "train.log")
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(message)s"))
    root = logging.getLogger()
    root.addHandler(handler)
    if root.level > logging.INFO or root.level == logging.NOTSET:
        root.setLevel(logging.INFO)
    try:
        yield
    finally:
        root.removeHandler(handler)
        handler.close()


@contextlib.contextmanager
def _exclusive(workdir: Path) -> Iterator[None]:
    """Holds an advisory lock on workdir, so that two runs never write the same files.

    The kernel releases the lock when the process ends, however it ends.
    """
    with (workdir / ".lock").open("a+") as lock_file:
        try:
            fcntl.flock(lock_file, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            lock_file.seek(0)
            owner = lock_file.read().strip() or "unknown"
            raise ValueError(
                f"workdir={str(workdir)!r} is in use by another training run (pid {owner}); "
                "allowed: a workdir no other run is using (wait for that run to end)"
            ) from None
        lock_file.seek(0)
        lock_file.truncate()
        lock_file.write(f"{os.getpid()}\n")
        lock_file.flush()
        try:
            yield
        finally:
            fcntl.flock(lock_file, fcntl.LOCK_UN)


def _write_json(path: Path, payload: Any) -> None:
    tmp = path.with_suffix(path.suffix + ".tmp")
    tmp.write_text(json.dumps(payload, indent=2, sort_keys=True) + "\n")
    os.replace(tmp, path)


def _trim_metrics_log(path: Path, last_step: int) -> None:
    """Drops epoch lines written after the checkpoint being resumed from."""
    if not path.exists():
        return
    kept = []
    for line in path.read_text().splitlines():
        try:
            record = json.loads(line)
        except json.JSONDecodeError:
            continue  # A line cut short by a kill.
        if isinstance(record, dict) and record.get("step", 0) <= last_step:
            kept.append(line)
    tmp = path.with_suffix(".jsonl.tmp")
    tmp.write_text("".join(line + "\n" for line in kept))
    os.replace(tmp, path)


def _first_non_finite(chunk_metrics: dict[str, np.ndarray], first_step: int) -> str | None:
    for name, values in sorted(chunk_metrics.items()):
        bad = np.flatnonzero(~np.isfinite(values))
        if bad.size:
            return f"{name}={values[bad[0]]} at step {first_step + int(bad[0]) + 1}"
    return None


def _non_finite_arrays(state: GANState) -> list[str]:
    """Paths of the state's float arrays that hold a NaN or Inf."""
    leaves = jax.tree_util.tree_flatten_with_path(jax.device_get(state))[0]
    return [
        jax.tree_util.keystr(path)
        for path, leaf in leaves
        if np.issubdtype(np.asarray(leaf).dtype, np.inexact) and not np.isfinite(leaf).all()
    ]


def _check_workdir(workdir: Path, step: int) -> None:
    # Writers below create missing parents, which would scatter a half workdir.
    if not workdir.is_dir():
        raise FileNotFoundError(
            f"workdir {workdir} disappeared during training (at step {step}); nothing more "
            "was written. Put it back to resume from its last checkpoint, or start again."
        )


class _SignalCatcher:
    """Turns SIGTERM/SIGINT into a flag the loop polls between chunks of steps."""

    def __init__(self):
        self.signum: int | None = None
        self._previous = {}

    def __enter__(self):
        for signum in (signal.SIGTERM, signal.SIGINT):
            try:
                self._previous[signum] = signal.signal(signum, self._handle)
            except ValueError:  # Not the main thread: leave signals alone.
                pass
        return self

    def _handle(self, signum, frame):
        del frame
        if self.signum is not None:  # A second signal: stop at once.
            signal.signal(signum, self._previous.get(signum, signal.SIG_DFL))
            raise KeyboardInterrupt
        self.signum = signum
        log.warning(
            "Received %s: finishing the current steps, then saving a checkpoint",
            signal.Signals(signum).name,
        )

    def __exit__(self, *exc):
        for signum, handler in self._previous.items():
            signal.signal(signum, handler)


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
      evaluator_factory: builds the FID/metrics evaluator, `factory(config, workdir,
        test_images)` returning an object with `evaluate(state, key) -> dict` and
        `write_report(results, path)`. Defaults to `jaxgan.evaluation.Evaluator`;
        it is only called when `config.eval_every > 0`.

    Returns:
      The final state.

    Raises:
      ValueError: invalid config or workdir, or the workdir is in use by another run
        (all before any compilation).
      CheckpointError: (a ValueError) the latest checkpoint is corrupt or was made by an
        incompatible config; nothing on disk is changed.
      NonFiniteLossError: a loss or parameter became NaN/Inf; the last good checkpoint is
        kept and nothing after it is saved.
      TrainingInterrupted: SIGTERM/SIGINT; a checkpoint was saved first.
      FileNotFoundError: the workdir disappeared during training.
    """
    try:
        config_lib.validate_config(config)
    except ValueError as error:
        existing = Path(workdir).expanduser().absolute()
        with contextlib.ExitStack() as stack:
            if existing.is_dir():  # A rerun in a workdir: keep its log complete.
                with contextlib.suppress(OSError):
                    stack.enter_context(_logging_to(existing))
            log.error("%s: %s", type(error).__name__, error)
        raise
    workdir = prepare_workdir(workdir)
    with _logging_to(workdir):
        try:
            with _exclusive(workdir):
                return _train(config, workdir, evaluator_factory)
        except TrainingInterrupted as interrupted:
            log.warning("%s", interrupted)
            raise
        except Exception as error:
            log.error("%s: %s", type(error).__name__, error)
            raise


def _train(config, workdir: Path, evaluator_factory) -> GANState:
    _write_json(workdir / "config.json", config.to_dict())
    train_set = datasets.load(config, "train")
    train_images = train_set.images
    if config.num_train_examples > len(train_images):
        raise ValueError(
            f"config.num_train_examples={config.num_train_examples} is larger than the "
            f"training set ({len(train_images)} images); allowed: 0 (all) to {len(train_images)}"
        )
    if config.num_train_examples:
        train_images = train_images[: config.num_train_examples]
    config_lib.check_batch_size(config.batch_size, len(train_images))
    steps_per_epoch = len(train_images) // config.batch_size
    if steps_per_epoch * config.num_epochs > _MAX_STEPS:
        raise ValueError(
            f"config.num_epochs={config.num_epochs} gives {steps_per_epoch * config.num_epochs} "
            f"steps, more than the int32 step counter holds; allowed: at most "
            f"{_MAX_STEPS // steps_per_epoch} epochs of {steps_per_epoch} steps"
        )

    seed_key = jax.random.key(config.seed)
    state = create_state(
        config, jax.random.fold_in(seed_key, _INIT), image_shape=train_set.info.image_shape,
        num_classes=train_set.info.num_classes,
    )
    log.info(
        "%s: generator %s parameters, discriminator %s parameters; %d steps per epoch "
        "(batch %d, %d images), %d epochs, dtype %s, devices %s",
        config.model, f"{count_params(state.g_params):,}", f"{count_params(state.d_params):,}",
        steps_per_epoch, config.batch_size, len(train_images), config.num_epochs,
        config.dtype, jax.devices(),
    )  # fmt: skip

    with contextlib.ExitStack() as cleanup:
        # This run holds the workdir's lock, so unfinished saves of a killed run can go.
        checkpointer = Checkpointer(
            workdir / "checkpoints", config.keep_checkpoints, remove_partial=True
        )
        cleanup.callback(checkpointer.close)
        run_signature = signature(config)
        state, resumed_metrics = _resume(checkpointer, state, run_signature, steps_per_epoch)
        start_step = int(state.step)
        if start_step >= steps_per_epoch * config.num_epochs:
            log.info(
                "All %d epochs are done (step %d): only the final outputs are rewritten",
                config.num_epochs, start_step,
            )  # fmt: skip
        metrics_path = workdir / "metrics.jsonl"
        _trim_metrics_log(metrics_path, start_step)

        from tensorboardX import SummaryWriter  # Imported late: it is slow to import.

        # purge_step hides the events a killed run logged after the checkpoint resumed from.
        writer = SummaryWriter(str(workdir / "tensorboard"), purge_step=start_step + 1)
        cleanup.callback(writer.close)
        evaluator = None
        if config.eval_every:
            if evaluator_factory is None:
                from jaxgan.evaluation import Evaluator as evaluator_factory
            test_images, _ = data.load_fashion_mnist(
                "test",
                data_dir=config.data_dir or None,
                tfds_data_dir=config.tfds_data_dir or None,
            )
            evaluator = evaluator_factory(config, workdir, test_images)

        images_on_device = jax.device_put(
            {"image": train_images, "label": train_set.labels[: len(train_images)]}
        )
        shuffle = jax.jit(epoch_batches, static_argnums=2)
        run_steps = make_chunk_runner(jax.default_backend())
        fixed_latents = jax.random.normal(
            jax.random.fold_in(seed_key, _SAMPLES), (NUM_SAMPLES, config.latent_dim)
        )
        train_key = jax.random.fold_in(seed_key, _TRAIN)
        eval_key = jax.random.fold_in(seed_key, _EVAL)

        def save_checkpoint(
            state: GANState, epoch: int, epoch_step_metrics: dict[str, list[float]] | None = None
        ) -> int:
            """Saves `state`, `epoch` (completed epochs) and a mid-epoch's metrics so far."""
            step = int(state.step)
            _check_workdir(workdir, step)
            bad = _non_finite_arrays(state)
            if bad:
                raise NonFiniteLossError(
                    f"Training diverged: {', '.join(bad[:3])}{' ...' if len(bad) > 3 else ''} hold "
                    f"NaN/Inf at step {step}. {_kept_message(checkpointer)}"
                )
            meta = {"epoch": epoch, "steps_per_epoch": steps_per_epoch, "signature": run_signature}
            if epoch_step_metrics:
                meta["epoch_step_metrics"] = epoch_step_metrics
            return checkpointer.save(state, meta)

        results: dict[str, Any] = {}
        signals = cleanup.enter_context(_SignalCatcher())
        metrics_file = cleanup.enter_context(metrics_path.open("a"))
        for epoch in range(int(state.step) // steps_per_epoch, config.num_epochs):
            epoch_start = time.time()
            shuffle_key, step_key = split_epoch_key(jax.random.fold_in(train_key, epoch))
            batches = shuffle(images_on_device, shuffle_key, config.batch_size)
            position = int(state.step) - epoch * steps_per_epoch
            first_position, last_report = position, time.time()
            step_metrics: dict[str, list[np.ndarray]] = {
                name: [np.asarray(values, np.float32)]
                for name, values in (resumed_metrics if position else {}).items()
            }
            with tqdm.tqdm(
                total=steps_per_epoch,
                initial=position,
                unit="step",
                leave=False,
                desc=f"epoch {epoch + 1}/{config.num_epochs}",
                disable=None if config.progress else True,
            ) as bar:
                while position < steps_per_epoch:
                    end = min(position + config.log_every_steps, steps_per_epoch)
                    chunk_batches = jax.tree.map(lambda a: a[position:end], batches)
                    state, chunk = run_steps(state, chunk_batches, step_key)
                    problem = _first_non_finite(chunk, epoch * steps_per_epoch + position)
                    if problem:
                        raise NonFiniteLossError(
                            f"Training diverged: {problem} (epoch {epoch + 1}). "
                            f"{_kept_message(checkpointer)}"
                        )
                    for name, values in chunk.items():
                        step_metrics.setdefault(name, []).append(values)
                    bar.update(end - position)
                    bar.set_postfix(
                        d_loss=f"{chunk['d_loss'][-1]:.3f}", g_loss=f"{chunk['g_loss'][-1]:.3f}"
                    )
                    position = end
                    if bar.disable and time.time() - last_report >= _REPORT_SECONDS:
                        # No terminal (a log file, nohup): a progress line at most once a minute.
                        last_report = time.time()
                        log.info(
                            "epoch %d/%d: %d/%d steps, d_loss %.4f g_loss %.4f, %.2f s/step",
                            epoch + 1,
                            config.num_epochs,
                            position,
                            steps_per_epoch,
                            chunk["d_loss"][-1],
                            chunk["g_loss"][-1],
                            (last_report - epoch_start) / max(position - first_position, 1),
                        )
                    # At the epoch's end the epoch is finished first (metrics, samples).
                    if signals.signum is not None and position < steps_per_epoch:
                        so_far = {k: np.concatenate(v).tolist() for k, v in step_metrics.items()}
                        step = save_checkpoint(state, epoch, so_far)
                        where = (
                            f"at step {step} (epoch {epoch + 1}, "
                            f"{position}/{steps_per_epoch} steps)"
                        )
                        raise _stopped(signals.signum, where, checkpointer, step)
            epoch_metrics = {
                name: float(np.mean(np.concatenate(values)))
                for name, values in step_metrics.items()
            }
            finished = epoch + 1
            is_last = finished == config.num_epochs
            record = {
                "epoch": finished,
                "step": int(state.step),
                "epoch_seconds": round(time.time() - epoch_start, 3),
                **epoch_metrics,
            }
            _check_workdir(workdir, int(state.step))

            if config.sample_every and (finished % config.sample_every == 0 or is_last):
                grid = images.make_grid(sample(state, fixed_latents))
                images.save_png(workdir / "samples" / f"epoch_{finished:04d}.png", grid, scale=2)
                writer.add_image("samples", grid, int(state.step), dataformats="HWC")
            if evaluator is not None and (finished % config.eval_every == 0 or is_last):
                eval_start = time.time()
                results = evaluator.evaluate(state, jax.random.fold_in(eval_key, finished))
                record.update({k: v for k, v in results.items() if isinstance(v, float)})
                record["eval_seconds"] = round(time.time() - eval_start, 3)
            record["wall_time"] = time.time()

            for name, value in record.items():
                if name not in ("epoch", "step", "wall_time") and isinstance(value, float):
                    writer.add_scalar(name, value, int(state.step))
            writer.flush()
            metrics_file.write(json.dumps(record) + "\n")
            metrics_file.flush()
            log.info(
                "epoch %d/%d step %d: d_loss %.4f g_loss %.4f D(x) %.3f D(G(z)) %.3f "
                "D acc real %.3f fake %.3f%s (%.1fs)",
                finished,
                config.num_epochs,
                record["step"],
                record["d_loss"],
                record["g_loss"],
                record["d_real"],
                record["d_fake"],
                record["d_real_acc"],
                record["d_fake_acc"],
                "".join(f" {k} {record[k]:.4g}" for k in ("fid", "kid_mean") if k in record),
                record["epoch_seconds"],
            )
            if is_last or (config.checkpoint_every and finished % config.checkpoint_every == 0):
                save_checkpoint(state, finished)
            # After the last epoch only the final outputs remain: finish them instead.
            if signals.signum is not None and not is_last:
                step = save_checkpoint(state, finished)
                where = f"after epoch {finished} (step {step})"
                raise _stopped(signals.signum, where, checkpointer, step)

        _check_workdir(workdir, int(state.step))
        final = images.make_grid(sample(state, fixed_latents))
        images.save_png(workdir / "fashion_mnist_samples.png", final, scale=2)
        report = workdir / "fid_result.txt"
        if evaluator is not None and not results and not report.exists():
            # Finished earlier, but stopped before the report was written.
            completed = int(state.step) // steps_per_epoch
            results = evaluator.evaluate(state, jax.random.fold_in(eval_key, completed))
        if evaluator is not None and results:
            evaluator.write_report(results, report)
        log.info("Done: %d steps; outputs in %s", int(state.step), workdir)
        return state


def _resume(
    checkpointer: Checkpointer,
    state: GANState,
    run_signature: dict[str, Any],
    steps_per_epoch: int,
) -> tuple[GANState, dict[str, list[float]]]:
    """The latest checkpoint's state (or `state` if none) and its epoch's metrics so far."""
    if checkpointer.latest_step() is None:
        return state, {}
    state, meta = checkpointer.restore(state, run_signature)
    step = int(state.step)
    if step and meta.get("steps_per_epoch") != steps_per_epoch:
        # Epoch boundaries and each epoch's shuffle would move: refuse rather than guess.
        raise CheckpointError(
            f"The checkpoint {checkpointer.directory / str(step)} was made with "
            f"{meta.get('steps_per_epoch')} steps per epoch, this config has "
            f"{steps_per_epoch} (batch_size or num_train_examples changed); resume with "
            "the original values, or use a new workdir"
        )
    log.info("Resumed from %s at step %d", checkpointer.directory / str(step), step)
    return state, meta.get("epoch_step_metrics") or {}


def _stopped(signum: int, where: str, checkpointer: Checkpointer, step: int):
    return TrainingInterrupted(
        signum,
        f"Stopped by {signal.Signals(signum).name} {where}; checkpoint saved in "
        f"{checkpointer.directory / str(step)}. Run the same command again to resume from "
        f"step {step}.",
    )


def _kept_message(checkpointer: Checkpointer) -> str:
    last = checkpointer.latest_step()
    kept = (
        f"Nothing of it was saved: the latest checkpoint is still step {last}."
        if last is not None
        else "No checkpoint had been saved yet."
    )
    return (
        f"{kept} Lower learning_rate or change the seed, then run again (with a new "
        "learning_rate the run resumes from the latest checkpoint)."
    )
