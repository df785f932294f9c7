"""Generate images from a run's latest checkpoint (EMA weights when the run keeps them).

    python -m experiments.generate --workdir=results/dcgan --num=64 --out=grid.png
    python -m experiments.generate --workdir=results/dcgan --num=10000 --out=samples.npz
    python -m experiments.generate --workdir=results/dcgan --num=64 --out=pngs/ [--label=3]
    python -m experiments.generate --workdir=results/dcgan --num=8 --interpolate=8 --out=walk.png
    python -m experiments.generate --workdir=results/population --member=2 --out=grid.png

--out: a .png file (one grid), a folder ending in '/' or already existing (00000.png, ...),
or an .npz file (key 'images', uint8 [N, H, W, C], for `experiments.evaluate --fake=`).
The same --seed gives the same images; image i does not depend on --num. A conditional
model generates classes round-robin (one column per class in a grid) unless --label is
given. --interpolate=S writes --num spherical-interpolation walks of S steps, one per row.
At most 100,000 images per command, generated in batches of 256. A population's workdir
(config.population = K) holds K GANs: --member (0 to K-1) picks the one to use.
"""

import logging
import sys

from absl import app, flags

from jaxgan.evaluation import generation

flags.DEFINE_string("workdir", None, "Training workdir whose latest checkpoint is used.")
flags.DEFINE_integer("num", 64, f"Images (walks with --interpolate), 1 to {generation.MAX_NUM}.")
flags.DEFINE_integer("seed", 0, f"Latent seed, 0 to {generation.MAX_SEED}.")
flags.DEFINE_integer("label", None, "Class of every image (conditional models only).")
flags.DEFINE_integer("interpolate", 0, "Steps per latent walk (0: no walk).")
flags.DEFINE_string("out", None, "Output: grid.png, a folder DIR/, or samples.npz.")
flags.DEFINE_integer(
    "member", None, "The member of a population workdir (config.population > 0) to use, 0..K-1."
)
flags.mark_flags_as_required(["workdir", "out"])
FLAGS = flags.FLAGS


def main(argv) -> None:
    del argv  # Checked by the flags parser.
    # Backend probing ("Unable to initialize backend 'tpu'") is not news to a user.
    for noisy in ("absl", "jax", "jax._src.xla_bridge"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
    try:
        generation.check_flags(FLAGS.num, FLAGS.seed, FLAGS.interpolate, FLAGS.out)
    except ValueError as error:
        print(f"error: {error}", file=sys.stderr)
        sys.exit(2)
    try:
        text = generation.run(
            FLAGS.workdir,
            FLAGS.num,
            FLAGS.seed,
            FLAGS.label,
            FLAGS.interpolate,
            FLAGS.out,
            member=FLAGS.member,
        )
    except (ValueError, OSError) as error:
        print(f"error: {error}", file=sys.stderr)
        sys.exit(1)
    print(text)


if __name__ == "__main__":
    app.run(main, flags_parser=lambda argv: generation.parse_flags(argv, __doc__))
