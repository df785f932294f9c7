"""Speed of FID feature extraction, end to end from uint8 28x28 images.

    python -m benchmarks.fid_speed --num=10000 [--batch=500] [--dtype=float32|bfloat16]

Prints one JSON object per line: the device, versions, the command, the compile time
(first pass, includes weight loading), and the median seconds and images per second of
the remaining passes. The time covers host-to-device transfer of uint8 batches, the resize
to 299x299, Inception pool3 and the copy of the features back to the host.
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import sys
import time

import jax
import jax.numpy as jnp
import numpy as np

from jaxgan.metrics import inception
from jaxgan.metrics.features import inception_features


def environment() -> dict:
    import flax

    device = jax.devices()[0]
    return {
        "device": f"{device.platform}:{getattr(device, 'device_kind', '')}",
        "num_devices": jax.device_count(),
        "versions": {
            "python": platform.python_version(),
            "jax": jax.__version__,
            "jaxlib": jax.lib.__version__ if hasattr(jax.lib, "__version__") else "",
            "flax": flax.__version__,
            "numpy": np.__version__,
        },
        "command": " ".join(
            [sys.executable.rsplit("/", 1)[-1], "-m", "benchmarks.fid_speed", *sys.argv[1:]]
        ),
    }


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--num", type=int, default=10000, help="images per pass")
    parser.add_argument("--batch", type=int, default=500, help="Inception batch size")
    parser.add_argument("--dtype", choices=["float32", "bfloat16"], default="float32")
    parser.add_argument("--repeats", type=int, default=3, help="timed passes after the first")
    args = parser.parse_args(argv)
    if args.num < 1 or args.batch < 1 or args.repeats < 1:
        parser.error("--num, --batch and --repeats must be positive")

    images = np.random.default_rng(0).integers(0, 256, (args.num, 28, 28), dtype=np.uint8)
    dtype = jnp.bfloat16 if args.dtype == "bfloat16" else jnp.float32

    start = time.perf_counter()
    inception.pool3_fn(dtype=dtype)
    inception_features(images[: args.batch], args.batch, dtype=dtype)
    compile_seconds = time.perf_counter() - start

    timings = []
    for _ in range(args.repeats):
        start = time.perf_counter()
        features = inception_features(images, args.batch, dtype=dtype)
        timings.append(time.perf_counter() - start)
    assert features.shape == (args.num, 2048) and np.isfinite(features).all()
    seconds = statistics.median(timings)
    print(
        json.dumps(
            {
                **environment(),
                "benchmark": "fid_features",
                "num_images": args.num,
                "batch": args.batch,
                "dtype": args.dtype,
                "compile_and_load_seconds": round(compile_seconds, 3),
                "seconds": round(seconds, 4),
                "all_seconds": [round(t, 4) for t in timings],
                "images_per_second": round(args.num / seconds, 1),
            }
        )
    )


if __name__ == "__main__":
    main()
