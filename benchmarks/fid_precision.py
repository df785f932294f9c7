"""FID under three Inception precisions, on the same images, at two levels.

    python -m benchmarks.fid_precision --workdir=results/dcgan [--num=10000] [--batch=500]

Two FIDs per mode, each against the real `test[:num]` images: the run's generator (latest
checkpoint, fixed latents: a trained DCGAN is near 24) and `train[:num]` (the train/test
floor, near 2.5, where a small absolute error matters most). The images are the same for
every mode; only the precision of the Inception network's convolutions changes:
  float32   float32 with `Precision.HIGHEST` (the reference, what FID reports by default);
  tf32      float32 inputs and weights with `Precision.DEFAULT`, which is TF32 on NVIDIA
            Ampere/Hopper GPUs (and plain float32 on CPU);
  bfloat16  bfloat16 compute.
Prints one JSON line per mode (both FIDs, seconds for the three feature sets, |FID -
FID(float32)| at each level, and whether the mode is within `TOLERANCE` of float32 at both)
with the device, versions and command.
"""

from __future__ import annotations

import argparse
import time

import jax
import jax.numpy as jnp
import numpy as np
from jax import lax

from benchmarks import common
from jaxgan import data as datasets
from jaxgan import metrics
from jaxgan.checkpoint import load_run
from jaxgan.core import sample
from jaxgan.metrics.inception.network import InceptionV3
from jaxgan.metrics.inception.weights import load_inception_params, resolve_weights_path

# A mode may replace float32 for the evaluations during training when it moves FID by at
# most this much at both levels.
TOLERANCE = 0.05


def tf32_feature_fn():
    """pool3 in float32 with the backend's default (TF32 on recent NVIDIA GPUs) precision."""
    variables = jax.device_put(load_inception_params(resolve_weights_path(None)))
    apply = jax.jit(InceptionV3(dtype=jnp.float32, precision=lax.Precision.DEFAULT).apply)
    return lambda images: apply(variables, images)


def generated_images(state, num: int, labels, batch: int) -> np.ndarray:
    key = jax.random.key(20151205)
    out = []
    for start in range(0, num, batch):
        latents = jax.random.normal(jax.random.fold_in(key, start), (batch, state.latent_dim))
        batch_labels = None
        if state.num_classes:
            batch_labels = np.resize(labels[start : start + batch], batch)
        out.append(np.asarray(sample(state, latents, batch_labels)))
    return np.concatenate(out)[:num]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--workdir", required=True, help="a training workdir")
    parser.add_argument("--num", type=int, default=10000, help="N real and N generated images")
    parser.add_argument("--batch", type=int, default=500, help="Inception batch size")
    args = parser.parse_args()
    config, state, meta = load_run(args.workdir)
    test_set = datasets.load(config, "test")
    real = test_set.images[: args.num]
    train = datasets.load(config, "train").images[: len(real)]
    fake = generated_images(state, len(real), test_set.labels, args.batch)
    modes = {
        "float32": {"dtype": jnp.float32},
        "tf32": {"feature_fn": tf32_feature_fn()},
        "bfloat16": {"dtype": jnp.bfloat16},
    }
    references = None
    for mode, options in modes.items():
        start = time.perf_counter()
        real_features, fake_features, train_features = (
            metrics.inception_features(images, args.batch, **options)
            for images in (real, fake, train)
        )
        seconds = time.perf_counter() - start
        real_statistics = metrics.feature_statistics(real_features)
        fids = {
            level: metrics.frechet_distance(*real_statistics, *metrics.feature_statistics(f))
            for level, f in (("generator", fake_features), ("floor", train_features))
        }
        references = references or fids
        diffs = {level: abs(fids[level] - references[level]) for level in fids}
        common.emit(
            {
                "mode": mode,
                "fid": fids["generator"],
                "fid_floor_train_vs_test": fids["floor"],
                "abs_diff_vs_float32": diffs["generator"],
                "abs_diff_vs_float32_floor": diffs["floor"],
                f"within_{TOLERANCE}_at_both": max(diffs.values()) <= TOLERANCE,
                "seconds_three_feature_sets_incl_compile": round(seconds, 3),
                "num": len(real),
                "checkpoint_step": int(state.step),
                "device": common.device_info(),
                "versions": common.versions(),
                "command": common.command_line("benchmarks.fid_precision"),
            }
        )


if __name__ == "__main__":
    main()
