"""Speed and agreement of the post-Inception metrics: the device path against the float64 host one.

    python -m benchmarks.eval_speed [--num=10000] [--dim=2048] [--features=FILE.npz]

Times each stage on N real against N generated features, both paths in the same process:
  statistics  mean and covariance of both sets (`device_feature_statistics` vs
              `feature_statistics`);
  frechet     the Fréchet distance from them (`frechet_distance_eigh`, float64 eigh on the host,
              vs `frechet_distance`, scipy's sqrtm);
  kid         KID, `--kid-subsets` subsets of `--kid-size` (`device_kid` vs `kid_from_features`);
  prdc        precision/recall/density/coverage, real radii included (`device_prdc` vs `prdc`).
The device path also times `device_feature_metrics` end to end, with and without a
precomputed `device_real_summary` (what an evaluator pays per generator). Each device stage
runs once first (with compilation, reported apart). Every time is the fastest of `--repeats`
calls, as other processes on the machine only ever slow a call down.

Features come from `--features` (an .npz with `real` and `fake` [N, D] arrays, e.g. pool3
features saved from `inception_features`), else they are synthetic: a rectified Gaussian
max(z Q^T * 7 + 0.2, 0) with z ~ N(0, diag(i^-1.2)) and a random rotation Q. Its mean value
(0.25), covariance trace (131) and eigenvalues (1st, 10th, 100th, 400th: 24, 1.7, 0.14,
0.035) are near those of FashionMNIST pool3 (0.28, 149; 17, 3.0, 0.20, 0.027). Real and
generated sets are drawn from that same distribution, so FID sits at its floor, where its
relative error is hardest. The device metrics reported are those of `device_feature_metrics`.

Prints three JSON lines: the device path, the host path, and their comparison (speed ratio per
stage, absolute and relative differences of each metric), each with the device, versions and
command.
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Callable, Sequence
from typing import Any

import jax
import numpy as np

from benchmarks import common
from jaxgan.metrics import device, frechet, manifold, mmd

MODULE = "benchmarks.eval_speed"
METRICS = ("fid", "kid_mean", "kid_std", "precision", "recall", "density", "coverage")
STAGES = ("statistics", "frechet", "kid", "prdc")
END_TO_END = (
    "feature_metrics_seconds",
    "real_summary_seconds",
    "feature_metrics_with_summary_seconds",
)


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--num", type=int, default=10000, help="N real and N generated")
    parser.add_argument("--dim", type=int, default=2048, help="feature width (synthetic only)")
    parser.add_argument("--kid-subsets", type=int, default=100, help="KID subsets")
    parser.add_argument("--kid-size", type=int, default=1000, help="KID subset size")
    parser.add_argument("--features", default=None, help=".npz with real and fake [N, D]")
    parser.add_argument("--repeats", type=int, default=3, help="timed calls per stage (min)")
    args = parser.parse_args(argv)
    if args.num < 6 or args.dim < 1 or args.kid_subsets < 1 or args.kid_size < 2:
        parser.error("need --num >= 6, --dim >= 1, --kid-subsets >= 1, --kid-size >= 2")
    if args.repeats < 1:
        parser.error(f"--repeats={args.repeats}: must be at least 1")
    return args


def synthetic_features(num: int, dim: int, seed: int) -> np.ndarray:
    """[num, dim] float32 rectified Gaussian features with a power-law spectrum (see above)."""
    rotation, _ = np.linalg.qr(np.random.default_rng(0).normal(size=(dim, dim)))
    scales = np.arange(1, dim + 1) ** -0.6
    latents = np.random.default_rng(seed).normal(size=(num, dim)) * scales
    return np.maximum(latents @ rotation.T * 7 + 0.2, 0).astype(np.float32)


def load_features(args: argparse.Namespace) -> tuple[np.ndarray, np.ndarray, str]:
    if args.features is None:
        real = synthetic_features(args.num, args.dim, seed=1)
        fake = synthetic_features(args.num, args.dim, seed=2)
        return real, fake, "synthetic rectified Gaussian, spectrum i^-1.2, same distribution"
    with np.load(args.features) as contents:
        real, fake = (contents[key][: args.num].astype(np.float32) for key in ("real", "fake"))
    return real, fake, f"from {args.features}"


def timed(function: Callable[[], Any], repeats: int = 1) -> tuple[Any, float]:
    """(result, the fastest of `repeats` calls in seconds): other processes only slow calls."""
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        result = function()
        times.append(time.perf_counter() - start)
    return result, min(times)


def host_path(real: np.ndarray, fake: np.ndarray, args: argparse.Namespace) -> dict[str, Any]:
    """The float64 host metrics, stage by stage: {'seconds': {...}, 'metrics': {...}}."""
    repeats = args.repeats
    statistics, seconds_statistics = timed(
        lambda: (frechet.feature_statistics(real), frechet.feature_statistics(fake)), repeats
    )
    fid, seconds_frechet = timed(
        lambda: frechet.frechet_distance(*statistics[0], *statistics[1]), repeats
    )
    kid, seconds_kid = timed(
        lambda: mmd.kid_from_features(
            real, fake, num_subsets=args.kid_subsets, subset_size=args.kid_size
        ),
        repeats,
    )
    scores, seconds_prdc = timed(lambda: manifold.prdc(real, fake), repeats)
    seconds = dict(zip(STAGES, (seconds_statistics, seconds_frechet, seconds_kid, seconds_prdc)))
    metrics = {"fid": fid, "kid_mean": kid[0], "kid_std": kid[1]}
    metrics.update({key: scores[key] for key in METRICS[3:]})
    return {"seconds": seconds, "metrics": metrics}


def device_stages(
    real: jax.Array, fake: jax.Array, args: argparse.Namespace, repeats: int
) -> dict[str, float]:
    """The device path stage by stage -> {stage: seconds}."""
    statistics, seconds_statistics = timed(
        lambda: (device.device_feature_statistics(real), device.device_feature_statistics(fake)),
        repeats,
    )
    _, seconds_frechet = timed(
        lambda: device.frechet_distance_eigh(
            *statistics[0],
            *statistics[1],
            sigma1_factor=device.feature_factor(real),
            sigma2_factor=device.feature_factor(fake),
        ),
        repeats,
    )
    _, seconds_kid = timed(
        lambda: device.device_kid(
            real, fake, num_subsets=args.kid_subsets, subset_size=args.kid_size
        ),
        repeats,
    )
    _, seconds_prdc = timed(lambda: device.device_prdc(real, fake), repeats)
    return dict(zip(STAGES, (seconds_statistics, seconds_frechet, seconds_kid, seconds_prdc)))


def device_path(real: np.ndarray, fake: np.ndarray, args: argparse.Namespace) -> dict[str, Any]:
    """The device metrics: stages once (with compilation), then timed; and end to end."""
    real, fake = jax.device_put(real), jax.device_put(fake)
    first_seconds = device_stages(real, fake, args, repeats=1)
    seconds = device_stages(real, fake, args, args.repeats)
    summary, seconds_summary = timed(lambda: device.device_real_summary(real), args.repeats)

    def end_to_end(real_summary):
        return device.device_feature_metrics(
            real,
            fake,
            kid_subsets=args.kid_subsets,
            kid_size=args.kid_size,
            real_summary=real_summary,
        )

    metrics, seconds_end_to_end = timed(lambda: end_to_end(None), args.repeats)
    _, seconds_with_summary = timed(lambda: end_to_end(summary), args.repeats)
    return {
        "seconds": seconds,
        "first_call_seconds": first_seconds,
        "feature_metrics_seconds": seconds_end_to_end,
        "real_summary_seconds": seconds_summary,
        "feature_metrics_with_summary_seconds": seconds_with_summary,
        "metrics": {key: metrics[key] for key in METRICS},
    }


def rounded(values: dict[str, float], digits: int = 4) -> dict[str, float]:
    return {key: round(value, digits) for key, value in values.items()}


def main(argv: Sequence[str] | None = None) -> None:
    args = parse_args(argv)
    real, fake, source = load_features(args)
    shared = {
        "num_real": len(real),
        "num_fake": len(fake),
        "dim": real.shape[1],
        "features": source,
        "kid_subsets": args.kid_subsets,
        "kid_size": args.kid_size,
        "repeats": args.repeats,
        "device": common.device_info(),
        "versions": common.versions("scipy"),
        "environment": common.relevant_environment(),
        "command": common.command_line(MODULE),
    }
    on_device = device_path(real, fake, args)
    common.emit(
        {
            "path": "device (float32 blocked passes, float64 eigh on the host)",
            "seconds": rounded(on_device["seconds"]),
            "total_seconds": round(sum(on_device["seconds"].values()), 4),
            "first_call_seconds": rounded(on_device["first_call_seconds"]),
            **{key: round(on_device[key], 4) for key in END_TO_END},
            "metrics": on_device["metrics"],
            **shared,
        }
    )
    on_host = host_path(real, fake, args)
    common.emit(
        {
            "path": "host float64 (numpy, scipy sqrtm)",
            "seconds": rounded(on_host["seconds"]),
            "total_seconds": round(sum(on_host["seconds"].values()), 4),
            "metrics": on_host["metrics"],
            **shared,
        }
    )
    host_metrics, device_metrics = on_host["metrics"], on_device["metrics"]
    common.emit(
        {
            "comparison": "host seconds / device seconds, |device - host|",
            "speedup": rounded(
                {s: on_host["seconds"][s] / on_device["seconds"][s] for s in STAGES}, 2
            ),
            "total_speedup": round(
                sum(on_host["seconds"].values()) / sum(on_device["seconds"].values()), 2
            ),
            "abs_difference": {m: abs(device_metrics[m] - host_metrics[m]) for m in METRICS},
            "fid_relative_difference": (
                abs(device_metrics["fid"] - host_metrics["fid"]) / abs(host_metrics["fid"])
            ),
            **shared,
        }
    )


if __name__ == "__main__":
    main()
