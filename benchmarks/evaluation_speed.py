"""Speed of a whole evaluation (generation, Inception, every metric), as training runs it.

    python -m benchmarks.evaluation_speed [--workdir=RUN | --config=experiments/configs/dcgan.py]
        [--num=10000] [--feature-dtype=float32] [--repeats=2]

Scores one generator (the run's latest checkpoint, or a fresh state of `--config`) against
`test[:num]` with `jaxgan.evaluation.Evaluator` and times, each the fastest of `--repeats`
calls after a first one that compiles:
  on the device (`Evaluator.evaluate`, what training uses):
    generated_features   generation straight into Inception, features kept on the device;
    metrics              FID, KID, P/R/D/C and D's accuracy from them (`score_generated`);
    evaluate             both, end to end;
  through the host (`Evaluator.score(state, *Evaluator.generate(...))`, the earlier path):
    generate             float32 images to the host;
    evaluate_via_host    quantised on the host, sent back to Inception, features fetched,
                         then the same metrics.
The reference features are computed (or read from the cache) once, before any timing.
Prints one JSON line per path and a comparison, with the device, versions and command.
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Callable, Sequence
from typing import Any

import jax

from benchmarks import common

MODULE = "benchmarks.evaluation_speed"
METRICS = ("fid", "kid_mean", "precision", "recall", "density", "coverage", "d_eval_accuracy")


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--workdir", default=None, help="a training run (latest checkpoint)")
    parser.add_argument("--config", default="experiments/configs/dcgan.py",
                        help="config of a fresh state, without --workdir")  # fmt: skip
    parser.add_argument("--num", type=int, default=10000, help="N generated and N real")
    parser.add_argument("--feature-dtype", default="float32", choices=("float32", "bfloat16"))
    parser.add_argument("--batch", type=int, default=0, help="evaluation batch (0: auto)")
    parser.add_argument("--repeats", type=int, default=2, help="timed calls (the fastest)")
    args = parser.parse_args(argv)
    if args.num < 6 or args.repeats < 1 or args.batch < 0:
        parser.error("need --num >= 6, --repeats >= 1 and --batch >= 0")
    return args


def timed(function: Callable[[], Any], repeats: int) -> tuple[Any, float, float]:
    """(result, first call's seconds, fastest of `repeats` further calls), results ready."""
    times = []
    for _ in range(repeats + 1):
        start = time.perf_counter()
        result = jax.block_until_ready(function())
        times.append(time.perf_counter() - start)
    return result, times[0], min(times[1:])


def load_state(args: argparse.Namespace):
    """(config, state, test split) of the run, or of a fresh state of `--config`."""
    from jaxgan import data as datasets

    if args.workdir:
        from jaxgan.checkpoint import load_run

        config, state, _ = load_run(args.workdir)
        return config, state, datasets.load(config, "test")
    from jaxgan.core import create_state

    config = common.load_config(args.config)
    test = datasets.load(config, "test")
    shapes = {"image_shape": test.info.image_shape, "num_classes": test.info.num_classes}
    return config, create_state(config, jax.random.key(config.seed), **shapes), test


def main(argv: Sequence[str] | None = None) -> None:
    args = parse_args(argv)
    from jaxgan.evaluation import Evaluator, evaluation_key

    config, state, test = load_state(args)
    config = config.unlock() if hasattr(config, "unlock") else config
    config.fid_num_samples, config.fid_batch_size = args.num, args.batch
    evaluator = Evaluator.from_dataset(config, test, feature_dtype=args.feature_dtype)
    start = time.perf_counter()
    evaluator.real_features()
    reference_seconds = time.perf_counter() - start
    key = evaluation_key(config.seed, 0)
    generated, first_generated, generated_seconds = timed(
        lambda: evaluator.generated(state, key)[0].features, args.repeats
    )
    _, first_metrics, metrics_seconds = timed(
        lambda: evaluator.score_generated(state, evaluator.generated(state, key)[0]), 1
    )
    results, first_evaluate, evaluate_seconds = timed(
        lambda: evaluator.evaluate(state, key), args.repeats
    )
    images, _, generate_seconds = timed(lambda: evaluator.generate(state, key), args.repeats)
    via_host, _, via_host_seconds = timed(
        lambda: evaluator.score(state, *evaluator.generate(state, key)), args.repeats
    )
    shared = {
        "num": evaluator.num,
        "batch_size": evaluator.batch_size,
        "feature_dtype": args.feature_dtype,
        "state": args.workdir or f"fresh {args.config}",
        "step": int(jax.device_get(state.step)),
        "reference_features_seconds": round(reference_seconds, 3),
        "repeats": args.repeats,
        "device": common.device_info(),
        "versions": common.versions(),
        "command": common.command_line(MODULE),
    }
    common.emit({
        "path": "device (Evaluator.evaluate)",
        "seconds": {
            "generated_features": round(generated_seconds, 3),
            "metrics": round(metrics_seconds - generated_seconds, 3),
            "evaluate": round(evaluate_seconds, 3),
        },
        "first_call_seconds": {
            "generated_features": round(first_generated, 3),
            "evaluate_after_warm_up": round(first_evaluate, 3),
            "generated_and_metrics_first": round(first_metrics, 3),
        },
        "metrics": {name: results[name] for name in METRICS},
        **shared,
    })  # fmt: skip
    common.emit({
        "path": "through the host (Evaluator.score of Evaluator.generate)",
        "seconds": {"generate": round(generate_seconds, 3),
                    "evaluate_via_host": round(via_host_seconds, 3)},
        "metrics": {name: via_host[name] for name in METRICS},
        "images_shape": list(images[0].shape),
        **shared,
    })  # fmt: skip
    common.emit({
        "comparison": "via host seconds / device seconds, |device - via host|",
        "speedup": round(via_host_seconds / evaluate_seconds, 2),
        "abs_difference": {name: abs(results[name] - via_host[name]) for name in METRICS},
        **shared,
    })  # fmt: skip


if __name__ == "__main__":
    main()
