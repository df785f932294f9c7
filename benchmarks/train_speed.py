"""Training speed of jaxgan's GANs, optionally against the same models in PyTorch.

  python -m benchmarks.train_speed --model=dcgan --batch=128 --dtype=float32 --epochs=3
  python -m benchmarks.train_speed --model=dcgan --steps=20 --vs-torch   # quick, on CPU
  python -m benchmarks.train_speed --model=vanilla --batch=100 --epochs=3 --vs-torch

Prints one JSON object per line: one per framework measured, then (with `--vs-torch`) their
ratio. Epoch mode runs `train_epoch` (the whole epoch in one `lax.scan`) on the
FashionMNIST train split held on the device, jitted with the state donated; the first
epoch runs after an ahead-of-time compile and the steady time is the median of the other
epochs. `--steps=N` instead times N single jitted `train_step` calls on real batches. With
`--vs-torch` (torch must be importable: it is never a jaxgan dependency) the PyTorch twins
of the models (`benchmarks/torch_models.py`) run eagerly on the same device with the data
already there, with `torch.set_num_threads` equal to the CPU cores JAX uses; JAX and
PyTorch alternate unit by unit so that both see the same machine load.

On a CPU shared with other jobs, timings depend on the load (each line records the load
average). PyTorch's OpenMP threads spin while waiting and lose up to 3x to other jobs;
`OMP_WAIT_POLICY=PASSIVE` (recorded in `environment`) avoids that for the DCGAN and costs
the small-matmul vanilla GAN about 1.4x. Compare the two frameworks within one run only.
"""

from __future__ import annotations

import argparse
import functools
import importlib
import statistics
import time
from collections.abc import Callable
from typing import Any

import jax
import numpy as np

from benchmarks import common
from jaxgan import core as train
from jaxgan.data.fashion_mnist import load_fashion_mnist

MODULE = "benchmarks.train_speed"
CONFIGS = {"dcgan": "experiments.configs.dcgan", "vanilla": "experiments.configs.vanilla"}


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", choices=sorted(CONFIGS), default="dcgan")
    parser.add_argument("--batch", type=int, default=None, help="default: the config's")
    parser.add_argument("--dtype", choices=("float32", "bfloat16"), default="float32")
    parser.add_argument("--epochs", type=int, default=3, help="epochs, the first is warm-up")
    parser.add_argument(
        "--steps", type=int, default=0, help="time N single train_step calls instead of epochs"
    )
    parser.add_argument("--width", type=int, default=None, help="overrides g_width and d_width")
    parser.add_argument("--vs-torch", action="store_true", help="also time the PyTorch twin")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    if args.steps < 0 or (args.steps == 0 and args.epochs < 2):
        parser.error("need --epochs >= 2 (the first is warm-up) or --steps >= 1")
    if args.batch is not None and args.batch < 1:
        parser.error(f"--batch={args.batch} must be positive")
    if args.width is not None and args.width < 1:
        parser.error(f"--width={args.width} must be positive")
    return args


def make_config(args: argparse.Namespace):
    """The experiment's config with the benchmark's overrides."""
    config = importlib.import_module(CONFIGS[args.model]).get_config()
    config.dtype = args.dtype
    if args.batch is not None:
        config.batch_size = args.batch
    if args.width is not None:
        config.model.g_width = config.model.d_width = args.width
    return config


class Timer:
    """One framework's runs: `first()` once (compile, warm-up), then `run()` per unit."""

    def __init__(self, first: Callable[[], dict[str, float]], run: Callable[[], float]):
        self.first, self.run = first, run
        self.times: list[float] = []


def jax_timer(config, images: np.ndarray, args: argparse.Namespace) -> Timer:
    """Times `train_epoch` (or single `train_step` calls with `--steps`) in JAX."""
    batch_size = config.batch_size
    device_images = jax.device_put(images[..., None])  # uint8 [N, 28, 28, 1]
    base_key = jax.random.key(args.seed)
    state = train.create_state(config, jax.random.fold_in(base_key, 0))
    step_key = jax.random.fold_in(base_key, 1)
    holder: dict[str, Any] = {"state": state, "unit": 0}

    if args.steps:
        batches = jax.jit(train.epoch_batches, static_argnums=2)(
            device_images, jax.random.fold_in(base_key, 2), batch_size
        )

        def step(state, batch, key):
            return train.train_step(state, train.images_to_float(batch), key)

        jitted = jax.jit(step, donate_argnums=0)

        def unit_args():
            return holder["state"], batches[holder["unit"] % batches.shape[0]], step_key

    else:
        jitted = jax.jit(
            functools.partial(train.train_epoch, batch_size=batch_size), donate_argnums=0
        )

        def unit_args():
            return holder["state"], device_images, jax.random.fold_in(step_key, holder["unit"])

    compiled = {}

    def run() -> float:
        unit = unit_args()
        jax.block_until_ready(unit)
        start = time.perf_counter()
        holder["state"], metrics = compiled["fn"](*unit)
        jax.block_until_ready((holder["state"], metrics))
        holder["unit"] += 1
        return time.perf_counter() - start

    def first() -> dict[str, float]:
        start = time.perf_counter()
        compiled["fn"] = jitted.lower(*unit_args()).compile()
        compile_s = time.perf_counter() - start
        return {"compile_s": compile_s, "first_s": run()}

    return Timer(first, run)


def torch_timer(config, images: np.ndarray, args: argparse.Namespace, torch_models) -> Timer:
    """Times the PyTorch twin, eagerly, on the device JAX uses, data already there."""
    import torch

    use_cuda = jax.devices()[0].platform == "gpu" and torch.cuda.is_available()
    device = torch.device("cuda" if use_cuda else "cpu")
    torch.manual_seed(args.seed)
    gan = torch_models.build(
        config.model.name,
        latent_dim=config.latent_dim,
        g_width=config.model.g_width,
        d_width=config.model.d_width,
        dropout_rate=config.model.get("dropout_rate", 0.0),
        learning_rate=config.learning_rate,
        b1=config.b1,
        b2=config.b2,
        dtype=config.dtype,
        device=device,
    )
    device_images = torch.from_numpy(images).to(device)
    batch_size = config.batch_size
    if args.steps:
        order = torch.randperm(device_images.shape[0], device=device)
        num_batches = device_images.shape[0] // batch_size
        batches = device_images[order[: num_batches * batch_size]].reshape(
            num_batches, batch_size, *device_images.shape[1:]
        )
        counter = iter(range(1 << 62))

        def run() -> float:
            return torch_models.time_step(gan, batches[next(counter) % num_batches])

    else:

        def run() -> float:
            return torch_models.time_epoch(gan, device_images, batch_size)

    return Timer(lambda: {"first_s": run()}, run)


def summary(timer: Timer, args, steps_per_epoch: int, batch_size: int) -> dict[str, Any]:
    """Median steady time per unit and the derived rates."""
    median = statistics.median(timer.times)
    if args.steps:
        per_step, per_epoch = median, median * steps_per_epoch
        timing = {"s_per_step": per_step, "s_per_epoch_from_steps": per_epoch}
    else:
        per_step, per_epoch = median / steps_per_epoch, median
        timing = {"s_per_epoch": per_epoch, "s_per_step": per_step}
    return {
        **timing,
        "images_per_s": batch_size / per_step,
        "repeats": len(timer.times),
        "times_s": [round(t, 4) for t in timer.times],
    }


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    device = common.device_info()
    config = make_config(args)
    images, _ = load_fashion_mnist("train")
    batch_size = config.batch_size
    steps_per_epoch = images.shape[0] // batch_size

    torch_models = None
    if args.vs_torch:
        try:
            import torch

            from benchmarks import torch_models
        except ImportError as error:
            common.emit({"framework": "torch", "skipped": f"torch is not importable: {error}"})
        else:
            torch.set_num_threads(common.num_cpu_cores())

    timers = {"jax": jax_timer(config, images, args)}
    if torch_models is not None:
        timers["torch"] = torch_timer(config, images, args, torch_models)
    firsts = {name: timer.first() for name, timer in timers.items()}
    for _ in range(args.steps or args.epochs - 1):
        for timer in timers.values():
            timer.times.append(timer.run())

    shared = {
        "model": args.model,
        "batch": batch_size,
        "dtype": args.dtype,
        "g_width": config.model.g_width,
        "d_width": config.model.d_width,
        "mode": "steps" if args.steps else "epochs",
        "steps_per_epoch": steps_per_epoch,
    }
    device["load_average_1m_after"] = common.device_info()["load_average_1m"]
    environment = {
        "device": device,
        "versions": common.versions(*(("torch",) if "torch" in timers else ())),
        "environment": common.relevant_environment(),
        "command": common.command_line(MODULE),
    }
    results = {}
    for name, timer in timers.items():
        results[name] = summary(timer, args, steps_per_epoch, batch_size)
        extra = {}
        if name == "torch":
            import torch

            extra = {"torch_threads": torch.get_num_threads(), "torch_autocast": args.dtype}
        common.emit(
            {"framework": name, **shared, **firsts[name], **results[name], **extra, **environment}
        )
    if "torch" in results:
        key = "s_per_step" if args.steps else "s_per_epoch"
        jax_s, torch_s = results["jax"][key], results["torch"][key]
        common.emit(
            {
                "ratio": f"jax_{key} / torch_{key}",
                "value": jax_s / torch_s,
                "faster": "jax" if jax_s <= torch_s else "torch",
                **shared,
                "jax": jax_s,
                "torch": torch_s,
                "command": environment["command"],
            }
        )


if __name__ == "__main__":
    main()
