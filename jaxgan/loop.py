"""The impure part of training: data, logging, checkpoints, samples, evaluation, signals.

`train_and_evaluate(config, workdir)` runs (or resumes) one training run and writes every
output into `workdir` (see the README's "Outputs" section).
"""

from __future__ import annotations

import json
import logging
import os
import signal
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import tqdm

from jaxgan import config as config_lib
from jaxgan import data, images
from jaxgan.checkpoint import Checkpointer, signature
from jaxgan.train import (
    GANState,
    count_params,
    create_state,
    epoch_batches,
    sample,
    split_epoch_key,
    train_steps,
)

log = logging.getLogger("jaxgan")

NUM_SAMPLES = 64
# Fixed sub-keys of the seed, so that each use of randomness is independent of the others.
_INIT, _TRAIN, _SAMPLES, _EVAL = range(4)


class NonFiniteLossError(FloatingPointError):
    """A training metric became NaN or Inf."""


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


def _log_to_file(workdir: Path) -> logging.Handler:
    handler = logging.FileHandler(workdir / "train.log")
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(message)s"))
    logging.getLogger().addHandler(handler)
    if logging.getLogger().level > logging.INFO or logging.getLogger().level == 0:
        logging.getLogger().setLevel(logging.INFO)
    return handler


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
            if json.loads(line).get("step", 0) <= last_step:
                kept.append(line)
        except json.JSONDecodeError:
            continue  # A line cut short by a kill.
    tmp = path.with_suffix(".jsonl.tmp")
    tmp.write_text("".join(line + "\n" for line in kept))
    os.replace(tmp, path)


def _first_non_finite(chunk_metrics: dict[str, np.ndarray], first_step: int) -> str | None:
    for name, values in sorted(chunk_metrics.items()):
        bad = np.flatnonzero(~np.isfinite(values))
        if bad.size:
            return f"{name}={values[bad[0]]} at step {first_step + int(bad[0]) + 1}"
    return None


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
        log.warning("Received %s: finishing the current steps, then saving a checkpoint",
                    signal.Signals(signum).name)

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
      ValueError: invalid config or workdir (before any compilation).
      NonFiniteLossError: a loss became NaN/Inf; the last good checkpoint is kept.
      TrainingInterrupted: SIGTERM/SIGINT; a checkpoint was saved first.
    """
    config_lib.validate_config(config)
    workdir = prepare_workdir(workdir)
    handler = _log_to_file(workdir)
    try:
        return _train(config, workdir, evaluator_factory)
    except Exception as error:
        log.error("%s: %s", type(error).__name__, error)
        raise
    finally:
        logging.getLogger().removeHandler(handler)
        handler.close()


def _train(config, workdir: Path, evaluator_factory) -> GANState:
    _write_json(workdir / "config.json", config.to_dict())
    train_images, _ = data.load_fashion_mnist(
        "train", data_dir=config.data_dir or None, tfds_data_dir=config.tfds_data_dir or None
    )
    if config.num_train_examples:
        train_images = train_images[: config.num_train_examples]
    config_lib.check_batch_size(config.batch_size, len(train_images))
    steps_per_epoch = len(train_images) // config.batch_size
    total_steps = steps_per_epoch * config.num_epochs

    seed_key = jax.random.key(config.seed)
    state = create_state(config, jax.random.fold_in(seed_key, _INIT))
    log.info(
        "%s: generator %s parameters, discriminator %s parameters; %d steps per epoch "
        "(batch %d, %d images), %d epochs, dtype %s, devices %s",
        config.model, f"{count_params(state.g_params):,}", f"{count_params(state.d_params):,}",
        steps_per_epoch, config.batch_size, len(train_images), config.num_epochs,
        config.dtype, jax.devices(),
    )

    checkpointer = Checkpointer(workdir / "checkpoints", config.keep_checkpoints)
    run_signature = signature(config)
    if checkpointer.latest_step() is not None:
        state, meta = checkpointer.restore(state, run_signature)
        if meta.get("steps_per_epoch") != steps_per_epoch:
            if int(state.step) % steps_per_epoch or meta.get("steps_per_epoch") is None:
                raise ValueError(
                    f"The checkpoint at step {int(state.step)} was made with "
                    f"{meta.get('steps_per_epoch')} steps per epoch, this config has "
                    f"{steps_per_epoch} (batch_size / num_train_examples changed); resume "
                    "with the original values or use a new workdir"
                )
        log.info("Resumed from %s at step %d", checkpointer.directory / str(int(state.step)),
                 int(state.step))
    start_step = int(state.step)
    metrics_path = workdir / "metrics.jsonl"
    _trim_metrics_log(metrics_path, start_step)

    from tensorboardX import SummaryWriter  # Imported late: it is slow to import.

    writer = SummaryWriter(str(workdir / "tensorboard"))
    evaluator = None
    if config.eval_every:
        if evaluator_factory is None:
            from jaxgan.evaluation import Evaluator as evaluator_factory
        test_images, _ = data.load_fashion_mnist(
            "test", data_dir=config.data_dir or None,
            tfds_data_dir=config.tfds_data_dir or None,
        )
        evaluator = evaluator_factory(config, workdir, test_images)

    images_on_device = jax.device_put(train_images)
    shuffle = jax.jit(epoch_batches, static_argnums=2)
    run_steps = jax.jit(train_steps, donate_argnums=0)
    fixed_latents = jax.random.normal(
        jax.random.fold_in(seed_key, _SAMPLES), (NUM_SAMPLES, config.latent_dim)
    )
    train_key = jax.random.fold_in(seed_key, _TRAIN)

    def checkpoint_meta(epoch: int) -> dict[str, Any]:
        return {"epoch": epoch, "steps_per_epoch": steps_per_epoch, "signature": run_signature}

    results: dict[str, Any] = {}
    with _SignalCatcher() as signals, metrics_path.open("a") as metrics_file:
        for epoch in range(start_step // steps_per_epoch, config.num_epochs):
            epoch_start = time.time()
            shuffle_key, step_key = split_epoch_key(jax.random.fold_in(train_key, epoch))
            batches = shuffle(images_on_device, shuffle_key, config.batch_size)
            position = int(state.step) - epoch * steps_per_epoch
            chunks = []
            with tqdm.tqdm(
                total=steps_per_epoch, initial=position, unit="step", leave=False,
                desc=f"epoch {epoch + 1}/{config.num_epochs}",
                disable=None if config.progress else True,
            ) as bar:
                while position < steps_per_epoch:
                    end = min(position + config.log_every_steps, steps_per_epoch)
                    state, chunk = run_steps(state, batches[position:end], step_key)
                    chunk = jax.device_get(chunk)
                    problem = _first_non_finite(chunk, epoch * steps_per_epoch + position)
                    if problem:
                        raise NonFiniteLossError(
                            f"Training diverged: {problem} (epoch {epoch + 1}). Nothing after "
                            f"the last checkpoint (step {checkpointer.latest_step()}) was "
                            "saved; lower learning_rate or change the seed and resume."
                        )
                    chunks.append(chunk)
                    bar.update(end - position)
                    bar.set_postfix(d_loss=f"{chunk['d_loss'][-1]:.3f}",
                                    g_loss=f"{chunk['g_loss'][-1]:.3f}")
                    position = end
                    if signals.signum is not None:
                        step = checkpointer.save(state, checkpoint_meta(epoch))
                        message = (
                            f"Stopped by {signal.Signals(signals.signum).name} at step {step} "
                            f"(epoch {epoch + 1}, {position}/{steps_per_epoch} steps); "
                            f"checkpoint saved in {checkpointer.directory / str(step)}. "
                            "Run the same command again to resume."
                        )
                        log.warning(message)
                        raise TrainingInterrupted(signals.signum, message)
            epoch_metrics = {
                name: float(np.mean(np.concatenate([c[name] for c in chunks])))
                for name in chunks[0]
            }
            finished = epoch + 1
            is_last = finished == config.num_epochs
            record = {"epoch": finished, "step": int(state.step),
                      "epoch_seconds": round(time.time() - epoch_start, 3), **epoch_metrics}

            if config.sample_every and (finished % config.sample_every == 0 or is_last):
                grid = images.make_grid(sample(state, fixed_latents))
                images.save_png(workdir / "samples" / f"epoch_{finished:04d}.png", grid, scale=2)
                writer.add_image("samples", grid, int(state.step), dataformats="HWC")
            if evaluator is not None and (finished % config.eval_every == 0 or is_last):
                eval_start = time.time()
                results = evaluator.evaluate(
                    state, jax.random.fold_in(jax.random.fold_in(seed_key, _EVAL), finished)
                )
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
                finished, config.num_epochs, record["step"], record["d_loss"],
                record["g_loss"], record["d_real"], record["d_fake"], record["d_real_acc"],
                record["d_fake_acc"],
                "".join(f" {k} {record[k]:.4g}" for k in ("fid", "kid_mean") if k in record),
                record["epoch_seconds"],
            )
            if finished % config.checkpoint_every == 0 or is_last:
                checkpointer.save(state, checkpoint_meta(finished))
            if signals.signum is not None:
                step = checkpointer.save(state, checkpoint_meta(finished))
                message = (f"Stopped by {signal.Signals(signals.signum).name} after epoch "
                           f"{finished} (step {step}); run the same command again to resume.")
                log.warning(message)
                raise TrainingInterrupted(signals.signum, message)

    final = images.make_grid(sample(state, fixed_latents))
    images.save_png(workdir / "fashion_mnist_samples.png", final, scale=2)
    if evaluator is not None and results:
        evaluator.write_report(results, workdir / "fid_result.txt")
    writer.close()
    checkpointer.close()
    log.info("Done: %d steps; outputs in %s", int(state.step), workdir)
    return state
