"""Serve a run's latest checkpoint (EMA weights when present) over HTTP, with a web page.

    python -m experiments.serve --workdir=results/dcgan [--host=127.0.0.1] [--port=8000] [--watch]

GET /generate?n=16&seed=0&label=3&format=png|npz, /interpolate?seed_a=1&seed_b=2&steps=8,
/healthz, /metrics (Prometheus), and the page at /. --watch reloads each newer checkpoint
in the background, so the page follows a run in progress. A population's workdir
(config.population = K) holds K GANs: --member (0 to K-1) picks the one served (and
reloaded by --watch).
"""

import logging
import sys

from absl import app, flags

from jaxgan.evaluation import generation

flags.DEFINE_string("workdir", None, "Training workdir whose latest checkpoint is served.")
flags.DEFINE_string("host", "127.0.0.1", "Address to listen on.")
flags.DEFINE_integer("port", 8000, "Port to listen on.")
flags.DEFINE_integer(
    "member", None, "The member of a population workdir (config.population > 0) to use, 0..K-1."
)
flags.DEFINE_bool("watch", False, "Reload the checkpoint when a newer one appears.")
flags.DEFINE_float("poll_seconds", 2.0, "How often --watch looks for a newer checkpoint.")
flags.DEFINE_list("buckets", ["1", "4", "16", "64", "256"], "Batch sizes compiled at start.")
flags.DEFINE_bool("batching", True, "Let concurrent requests share generator calls.")
flags.DEFINE_integer("batch_images", 16, "The most images concurrent requests share a pass with.")
flags.DEFINE_float("max_wait_ms", 0.0, "How long a request waits for others to batch with.")
flags.mark_flags_as_required(["workdir"])
SETTINGS = ("member", "watch", "poll_seconds", "batching", "batch_images", "max_wait_ms")
FLAGS = flags.FLAGS


def main(argv) -> None:
    del argv  # Checked by the flags parser.
    import uvicorn

    from jaxgan.serving.app import build_app
    from jaxgan.training import compilation_cache

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s")
    for noisy in ("absl", "jax", "jax._src.xla_bridge", "orbax"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
    compilation_cache.enable()
    settings = {name: FLAGS[name].value for name in SETTINGS}
    try:
        if not all(size.isdigit() and int(size) > 0 for size in FLAGS.buckets):
            raise ValueError(f"--buckets={','.join(FLAGS.buckets)}; allowed: positive integers")
        buckets = tuple(sorted({int(size) for size in FLAGS.buckets}))
        server_app = build_app(FLAGS.workdir, image_latents=generation.image_latents,
                               slerp=generation.slerp, buckets=buckets, **settings)  # fmt: skip
    except (ValueError, OSError) as error:
        print(f"error: {error}", file=sys.stderr)
        sys.exit(1)
    uvicorn.run(server_app, host=FLAGS.host, port=FLAGS.port, log_level="warning")


if __name__ == "__main__":
    app.run(main, flags_parser=lambda argv: generation.parse_flags(argv, __doc__))
