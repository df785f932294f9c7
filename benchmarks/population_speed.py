"""K GANs in one program (`config.population = K`) against K sequential runs of one GAN.

  python -m benchmarks.population_speed --config=experiments/configs/dcgan.py --members=1,2,4,8
  python -m benchmarks.population_speed --config=experiments/configs/dcgan.py:smoke \\
      --members=1,2,4 --steps=8          # CPU, smoke size

Each measurement trains on FashionMNIST's train split (or the config's dataset) exactly as
`experiments.train` does: the epoch's batches come from `jaxgan.data.loader.EpochLoader` (for
K members, K shuffles stacked), and a chunk of `--steps` steps runs through
`jaxgan.training.runner.make_chunk_runner` (one compiled `lax.scan` on GPU/TPU, one jitted step per
step on CPU), metrics fetched to the host as in training. The baseline is one GAN as a
plain run trains it (no population); K sequential runs take K times its time. The first
chunk (compile and warm-up) is reported apart; the steady time is the median of
`--repeats` chunks.

Prints one JSON line per K, with `s_per_step` (all K members together),
`ratio_to_one` (that time over one GAN's) and `speedup_vs_sequential` (K runs one after
the other, over one program), then nothing else.
"""

from __future__ import annotations

import argparse
import statistics
import time
from collections.abc import Sequence
from typing import Any

import jax

from benchmarks import common
from jaxgan import data as datasets
from jaxgan.core import create_state, population, sharding
from jaxgan.data.loader import EpochLoader
from jaxgan.training.runner import make_chunk_runner, slice_batches

MODULE = "benchmarks.population_speed"


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--config", default="experiments/configs/dcgan.py", help="config file[:variant]"
    )
    parser.add_argument(
        "--members", default="1,2,4,8", help="comma-separated population sizes K to time"
    )
    parser.add_argument("--steps", type=int, default=50, help="steps per timed chunk")
    parser.add_argument("--repeats", type=int, default=5, help="timed chunks after the first")
    parser.add_argument("--batch", type=int, default=None, help="default: the config's")
    args = parser.parse_args(argv)
    try:
        args.members = [int(k) for k in args.members.split(",")]
    except ValueError:
        parser.error(f"--members={args.members!r}: give integers such as 1,2,4,8")
    if any(k < 1 for k in args.members):
        parser.error(f"--members={args.members}: each K must be at least 1")
    if args.steps < 1 or args.repeats < 1:
        parser.error("--steps and --repeats must be at least 1")
    return args


def load_config(spec: str, members: int, batch: int | None):
    """The config file's config, as a population of `members` (0: one plain GAN)."""
    config = common.load_config(spec)
    config.population = members
    if batch is not None:
        config.batch_size = batch
    return config.lock()


def time_chunks(config, data, info, args) -> dict[str, Any]:
    """Compile-and-first and steady seconds of `--steps`-step chunks of this config."""
    mesh = sharding.data_mesh()
    members = population.size(config)
    shapes = {"image_shape": info.image_shape, "num_classes": info.num_classes}
    if members:
        keys = [jax.random.key(seed) for seed in population.seeds(config)]
        state = population.create(config, keys, population.learning_rates(config), **shapes)
        data_keys = population.seed_keys(population.seeds(config))
    else:
        state = create_state(config, jax.random.key(config.seed), **shapes)
        data_keys = jax.random.key(config.seed)
    state = sharding.replicate(state, mesh)
    batches = EpochLoader(data, mesh, config.batch_size)(data_keys)
    available = jax.tree.leaves(batches)[0].shape[0]
    if args.steps > available:
        raise SystemExit(f"--steps={args.steps} is more than the {available} steps of an epoch")
    chunk = slice_batches(batches, 0, args.steps)
    run = make_chunk_runner(jax.default_backend(), mesh, members=bool(members))

    def timed() -> float:
        nonlocal state
        jax.block_until_ready(state)
        start = time.perf_counter()
        state, metrics = run(state, chunk, data_keys)
        jax.block_until_ready(state)
        return time.perf_counter() - start

    first = timed()
    times = [timed() for _ in range(args.repeats)]
    steady = statistics.median(times)
    return {
        "first_chunk_s": round(first, 3),
        "s_per_step": steady / args.steps,
        "times_s": [round(t, 4) for t in times],
    }


def main(argv: Sequence[str] | None = None) -> None:
    args = parse_args(argv)
    base = load_config(args.config, 0, args.batch)
    train_set = datasets.load(base, "train")
    data = {"image": train_set.images, "label": train_set.labels}
    environment = {
        "device": common.device_info(),
        "versions": common.versions(),
        "environment": common.relevant_environment(),
        "command": common.command_line(MODULE),
    }
    shared = {
        "config": args.config,
        "model": base.model.name,
        "batch_per_member": base.batch_size,
        "g_width": base.model.g_width,
        "d_width": base.model.d_width,
        "dtype": base.dtype,
        "steps_per_chunk": args.steps,
    }
    one = time_chunks(base, data, train_set.info, args)
    common.emit({"members": 0, "what": "one GAN, no population", **shared, **one, **environment})
    for members in args.members:
        result = time_chunks(load_config(args.config, members, args.batch), data,
                             train_set.info, args)  # fmt: skip
        ratio = result["s_per_step"] / one["s_per_step"]
        common.emit(
            {
                "members": members,
                "what": f"{members} GANs in one program",
                **shared,
                **result,
                "one_gan_s_per_step": one["s_per_step"],
                "ratio_to_one": round(ratio, 3),
                "speedup_vs_sequential": round(members / ratio, 3),
                **environment,
            }
        )


if __name__ == "__main__":
    main()
