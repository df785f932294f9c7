"""Which BatchNorm statistics the EMA generator should sample with: FID, KID, precision/recall.

    python -m benchmarks.ema_statistics --workdir=RUN [--num=2000] [--standing-batches=16,64]

Loads RUN's latest checkpoint (`jaxgan.checkpoint.load_run`; `--member` picks one GAN of a
population) and scores the same weights with the same N latents, those of the run's own
evaluation of that checkpoint (`evaluation_key` of the run's seed and the checkpoint's
epoch), against the first N test images, with `jaxgan.evaluation.Evaluator.evaluate`
(Inception pool3 FID, KID with 100 subsets of min(1000, N), precision/recall/density/
coverage, D's accuracy). The variants differ only in the state they score:
  ema_tracked          the EMA weights with `g_ema_batch_stats`, the statistics training
                       keeps for them (running averages, momentum 0.9, of the averaged
                       weights' activations on each step's latents);
  ema_standing_M       the EMA weights with standing statistics (BigGAN,
                       `jaxgan.core.standing_statistics`): batch statistics averaged over M
                       fresh batches of `--standing-batch-size` latents, one variant per M
                       in `--standing-batches`;
  ema_online_stats     the EMA weights with the online generator's `g_batch_stats` (how
                       samples were drawn before the EMA kept its own statistics: wrong);
  online               the online generator, `g_params` with `g_batch_stats` (no EMA).
The real images' features are computed once (and cached in `$JAXGAN_CACHE_DIR`). Each
variant's `seconds` is its evaluation, including any compilation on first use;
`standing_seconds` the computation of its standing statistics.

Output: one JSON line per variant, with the device, versions and command.
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Callable, Iterator, Sequence
from typing import Any

import jax

from benchmarks import common
from jaxgan import evaluation
from jaxgan.checkpoint import load_run
from jaxgan.core import with_standing_statistics
from jaxgan.evaluation import offline
from jaxgan.evaluation.generation import evaluation_key

MODULE = "benchmarks.ema_statistics"
KID_SUBSETS, KID_SUBSET_SIZE = 100, 1000
METRICS = ("fid", "kid_mean", "kid_std", "precision", "recall", "density", "coverage",
           "d_eval_accuracy")  # fmt: skip


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--workdir", required=True, help="a finished training run's workdir")
    parser.add_argument("--num", type=int, default=2000, help="N generated and N real images")
    parser.add_argument("--member", type=int, default=None, help="a population's member")
    parser.add_argument(
        "--standing-batches", default="16,64", help="comma-separated M, one variant each"
    )
    parser.add_argument("--standing-batch-size", type=int, default=256, help="latents per batch")
    parser.add_argument("--standing-seed", type=int, default=0, help="seed of their latents")
    parser.add_argument("--batch-size", type=int, default=0, help="Inception batch, 0: auto")
    args = parser.parse_args(argv)
    try:
        args.standing_batches = [int(part) for part in args.standing_batches.split(",")]
    except ValueError:
        parser.error(f"--standing-batches={args.standing_batches}: allowed: integers, e.g. 16,64")
    if args.num < evaluation.MIN_NUM_SAMPLES:
        parser.error(f"--num={args.num}: allowed: at least {evaluation.MIN_NUM_SAMPLES}")
    if min(args.standing_batches) < 1 or args.standing_batch_size < 1:
        parser.error("--standing-batches and --standing-batch-size: allowed: integers >= 1")
    return args


def variants(state: Any, args: argparse.Namespace) -> Iterator[tuple[str, str, Callable]]:
    """(name, what it scores, a function that builds its state) for every variant."""
    yield "ema_tracked", "EMA weights + tracked g_ema_batch_stats", lambda: state
    for num_batches in args.standing_batches:
        yield (
            f"ema_standing_{num_batches}",
            f"EMA weights + standing statistics of {num_batches} batches of "
            f"{args.standing_batch_size}",
            lambda num_batches=num_batches: with_standing_statistics(
                state,
                jax.random.key(args.standing_seed),
                num_batches=num_batches,
                batch_size=args.standing_batch_size,
            ),
        )
    yield (
        "ema_online_stats",
        "EMA weights + the online generator's g_batch_stats",
        lambda: state.replace(g_ema_batch_stats=state.g_batch_stats),
    )
    yield (
        "online",
        "online generator: g_params + g_batch_stats",
        lambda: state.replace(g_ema={}, g_ema_batch_stats={}),
    )


def build_evaluator(config: Any, args: argparse.Namespace) -> evaluation.Evaluator:
    """`experiments.evaluate`'s Evaluator of the run's test split at N = `--num`."""
    config.fid_num_samples = args.num
    config.fid_batch_size = args.batch_size
    config.kid_num_subsets = KID_SUBSETS
    config.kid_subset_size = min(KID_SUBSET_SIZE, args.num)
    images, labels, name = offline.load_split(config, "test")
    return evaluation.Evaluator(config, images, labels, reference_name=name)


def _timed(function: Callable[..., Any], *args: Any) -> tuple[Any, float]:
    """(function(*args), its wall-clock seconds)."""
    start = time.perf_counter()
    result = function(*args)
    return result, time.perf_counter() - start


def main(argv: Sequence[str] | None = None) -> None:
    args = parse_args(argv)
    offline.quiet_output()
    (config, state, meta), load_seconds = _timed(lambda: load_run(args.workdir, member=args.member))
    if not state.g_ema:
        raise SystemExit(f"{args.workdir}: the run keeps no EMA generator (ema_decay=0)")
    evaluator = build_evaluator(config, args)
    _, reference_seconds = _timed(evaluator.real_features)
    epoch = int(meta.get("epoch", 0))
    key = evaluation_key(int(config.seed), epoch)
    shared = {
        "workdir": str(args.workdir),
        "step": int(jax.device_get(state.step)),
        "epoch": epoch,
        "latents": f"evaluation_key(seed={int(config.seed)}, epoch={epoch})",
        "reference": f"{evaluator.reference_name}[:{evaluator.num}]",
        "kid_subsets": evaluator.kid_subsets,
        "kid_subset_size": evaluator.kid_size,
        "load_seconds": round(load_seconds, 2),
        "reference_features_seconds": round(reference_seconds, 2),
        "versions": common.versions(),
        "environment": common.relevant_environment(),
        "command": common.command_line(MODULE),
    }
    for name, description, build in variants(state, args):
        variant_state, standing_seconds = _timed(lambda make: jax.block_until_ready(make()), build)
        results, seconds = _timed(evaluator.evaluate, variant_state, key)
        record = {"variant": name, "what": description, "N": evaluator.num}
        record.update({metric: results.get(metric) for metric in METRICS})
        record["seconds"] = round(seconds, 2)
        if name.startswith("ema_standing"):
            record["standing_seconds"] = round(standing_seconds, 2)
        common.emit({**record, **shared, "device": common.device_info()})


if __name__ == "__main__":
    main()
