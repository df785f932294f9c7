"""XLA's cost analysis of one training step of each config, and optionally its measured time.

    python -m benchmarks.step_cost --config=experiments/configs/dcgan.py \\
        --config=experiments/configs/resnet.py [--batch=0]
    python -m benchmarks.step_cost --config=experiments/configs/resnet.py \\
        --time_steps=50 --fit_minutes=4

Compiles `train_step` for each config (its batch size, or `--batch`) on this machine's
backend and prints one JSON line per config: XLA's estimate of the floating-point
operations and bytes accessed per step, the steps of the full run, and their products.
Nothing is trained, so it runs on a CPU in the time of a compilation.

With `--time_steps=S` it also runs steps the way training does
(`jaxgan.training.runner.make_chunk_runner`: on an accelerator one compiled `lax.scan` of
S steps, on a CPU S jitted calls), on random uint8 batches: once to compile and warm up,
then `--repeats` times, timed. The record adds the median seconds per step, images per
second, the FLOP rate achieved (XLA's count over the measured time), the full run's
estimated minutes of steps, and with `--fit_minutes=M` `epochs_in_fit_minutes`: the whole
epochs whose steps fit in M minutes (at least 1). Compilation, data loading, sampling and
evaluation are not in it: leave them room. `benchmarks/device_campaign.sh` trains the
ResNet configs for that many epochs, so that the learning-rate decay ends within the budget.

Use it to size a config for a device measured on another one: a config with k times the
FLOPs of one whose step time T is known takes about k T per step once both keep the
device busy, and at most k T when the known one was bound by latency (a small DCGAN is).
The counts are XLA's static estimates (convolutions and matmuls counted as 2 MACs), not
measurements.
"""

from __future__ import annotations

import argparse
import statistics
import time
from collections.abc import Sequence

import jax
import jax.numpy as jnp
import numpy as np

from benchmarks import common

MODULE = "benchmarks.step_cost"


def step_cost(
    spec: str,
    batch: int,
    time_steps: int = 0,
    repeats: int = 3,
    fit_minutes: float = 0.0,
    dtype: str = "",
) -> dict:
    """Cost analysis of one compiled train step of config `spec` (FILE[:VARIANT]).

    With `time_steps`, also the measured time of chunks of that many steps (see the module
    docstring); with `fit_minutes`, the whole epochs whose steps fit in that time.
    """
    from jaxgan import data as datasets
    from jaxgan.core import create_state, train_step
    from jaxgan.training.config import images_per_step

    config = common.load_config(spec)
    if batch:
        config.batch_size = batch
    if dtype:
        config.dtype = dtype
    train_set = datasets.load(config, "train")
    info = train_set.info
    per_step = images_per_step(config)
    num_train = min(config.num_train_examples or len(train_set), len(train_set))
    steps = config.num_epochs * (num_train // per_step)
    state = create_state(config, jax.random.key(0), image_shape=info.image_shape,
                         num_classes=info.num_classes, total_steps=steps)  # fmt: skip
    batch_arrays = {
        "image": jnp.zeros((per_step, *info.image_shape), jnp.uint8),
        "label": jnp.zeros((per_step,), jnp.int32),
    }
    compiled = jax.jit(train_step).lower(state, batch_arrays, jax.random.key(1)).compile()
    analysis = compiled.cost_analysis()
    if isinstance(analysis, list):  # Older jax: one dict per program.
        analysis = analysis[0]
    flops = float(analysis.get("flops", float("nan")))
    parameters = sum(np.size(leaf) for leaf in jax.tree.leaves((state.g_params, state.d_params)))
    record = {
        "config": spec,
        "batch_size": config.batch_size,
        "dtype": config.dtype,
        "images_per_step": per_step,
        "parameters": int(parameters),
        "gflops_per_step": round(flops / 1e9, 3),
        "gbytes_accessed_per_step": round(float(analysis.get("bytes accessed", 0)) / 1e9, 3),
        "steps_full_run": int(steps),
        "tflops_full_run": round(flops * steps / 1e12, 1),
        "num_epochs": config.num_epochs,
    }
    if time_steps:
        seconds = time_chunks(state, batch_arrays, time_steps, repeats, info.num_classes or 1)
        record.update(step_time(seconds, time_steps, flops, per_step, steps, config.num_epochs))
        if fit_minutes:
            record["fit_minutes"] = fit_minutes
            record["epochs_in_fit_minutes"] = fit_epochs(
                record["seconds_per_step"], steps // config.num_epochs, fit_minutes
            )
    return record


def time_chunks(state, batch: dict, steps: int, repeats: int, num_classes: int) -> list[float]:
    """Seconds of each of `repeats` chunks of `steps` train steps, after one untimed chunk."""
    from jaxgan.training.runner import make_chunk_runner

    run = make_chunk_runner(jax.default_backend())
    rng = np.random.default_rng(0)
    batches = {
        "image": rng.integers(0, 256, (steps, *batch["image"].shape), np.uint8),
        "label": rng.integers(0, num_classes, (steps, *batch["label"].shape), np.int32),
    }
    batches = jax.device_put(batches)
    key = jax.random.key(2)
    state, _ = run(state, batches, key)  # Compiles; the metrics come back to the host.
    seconds = []
    for _ in range(repeats):
        start = time.perf_counter()
        state, _ = run(state, batches, key)
        jax.block_until_ready(state)
        seconds.append(time.perf_counter() - start)
    return seconds


def step_time(
    seconds: list[float], time_steps: int, flops: float, per_step: int, steps: int, epochs: int
) -> dict:
    """The timing fields of a record from chunk times of `time_steps` steps each."""
    per_step_seconds = statistics.median(seconds) / time_steps
    return {
        "time_steps": time_steps,
        "chunk_seconds": [round(value, 4) for value in seconds],
        "seconds_per_step": round(per_step_seconds, 6),
        "images_per_second": round(per_step / per_step_seconds, 1),
        "achieved_tflops_per_second": round(flops / per_step_seconds / 1e12, 2),
        "full_run_step_minutes": round(per_step_seconds * steps / 60, 2),
        "epoch_seconds": round(per_step_seconds * steps / epochs, 2),
    }


def fit_epochs(seconds_per_step: float, steps_per_epoch: int, minutes: float) -> int:
    """The whole epochs of `steps_per_epoch` steps that fit in `minutes` (at least 1)."""
    if not seconds_per_step > 0 or steps_per_epoch < 1:
        raise ValueError(
            f"need a positive step time and epoch length, got {seconds_per_step} s and "
            f"{steps_per_epoch} steps"
        )
    return max(1, int(minutes * 60 // (seconds_per_step * steps_per_epoch)))


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--config", action="append", required=True, help="FILE[:VARIANT]")
    parser.add_argument("--batch", type=int, default=0, help="batch size (0: the config's)")
    parser.add_argument(
        "--time_steps", type=int, default=0, help="also time chunks of this many steps (0: no)"
    )
    parser.add_argument("--repeats", type=int, default=3, help="timed chunks (median)")
    parser.add_argument(
        "--dtype",
        choices=("float32", "bfloat16"),
        default="",
        help="compute (default: the config's)",
    )
    parser.add_argument(
        "--fit_minutes", type=float, default=0.0,
        help="with --time_steps: report the whole epochs whose steps fit in this many minutes",
    )  # fmt: skip
    args = parser.parse_args(argv)
    if args.batch < 0 or args.time_steps < 0 or args.repeats < 1:
        parser.error("--batch and --time_steps must be >= 0, --repeats >= 1")
    if args.fit_minutes and (not args.fit_minutes > 0 or not args.time_steps):
        parser.error(f"--fit_minutes={args.fit_minutes} needs --time_steps and must be > 0")
    for spec in args.config:
        record = step_cost(
            spec, args.batch, args.time_steps, args.repeats, args.fit_minutes, args.dtype
        )
        record.update(device=common.device_info(), versions=common.versions(),
                      command=common.command_line(MODULE))  # fmt: skip
        common.emit(record)


if __name__ == "__main__":
    main()
