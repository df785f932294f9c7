"""XLA's cost analysis of one training step of each config: FLOPs and bytes, without running it.

    python -m benchmarks.step_cost --config=experiments/configs/dcgan.py \\
        --config=experiments/configs/resnet.py [--batch=0]

Compiles `train_step` for each config (its batch size, or `--batch`) on this machine's
backend and prints one JSON line per config: XLA's estimate of the floating-point
operations and bytes accessed per step, the steps of the full run, and their products.
Nothing is trained, so it runs on a CPU in the time of a compilation.

Use it to size a config for a device measured on another one: a config with k times the
FLOPs of one whose step time T is known takes about k T per step once both keep the
device busy, and at most k T when the known one was bound by latency (a small DCGAN is).
The counts are XLA's static estimates (convolutions and matmuls counted as 2 MACs), not
measurements.
"""

from __future__ import annotations

import argparse
from collections.abc import Sequence

import jax
import jax.numpy as jnp
import numpy as np

from benchmarks import common

MODULE = "benchmarks.step_cost"


def step_cost(spec: str, batch: int) -> dict:
    """Cost analysis of one compiled train step of config `spec` (FILE[:VARIANT])."""
    from jaxgan import data as datasets
    from jaxgan.core import create_state, train_step
    from jaxgan.training.config import images_per_step

    config = common.load_config(spec)
    if batch:
        config.batch_size = batch
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
    return {
        "config": spec,
        "batch_size": config.batch_size,
        "images_per_step": per_step,
        "parameters": int(parameters),
        "gflops_per_step": round(flops / 1e9, 3),
        "gbytes_accessed_per_step": round(float(analysis.get("bytes accessed", 0)) / 1e9, 3),
        "steps_full_run": int(steps),
        "tflops_full_run": round(flops * steps / 1e12, 1),
    }


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--config", action="append", required=True, help="FILE[:VARIANT]")
    parser.add_argument("--batch", type=int, default=0, help="batch size (0: the config's)")
    args = parser.parse_args(argv)
    for spec in args.config:
        record = step_cost(spec, args.batch)
        record.update(device=common.device_info(), versions=common.versions(),
                      command=common.command_line(MODULE))  # fmt: skip
        common.emit(record)


if __name__ == "__main__":
    main()
