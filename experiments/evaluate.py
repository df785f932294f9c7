"""Evaluate a run's latest checkpoint, or compare two image sets.

    python -m experiments.evaluate --workdir=results/dcgan [--num_samples=10000]
    python -m experiments.evaluate --real=real.npz --fake=generated_pngs/

Prints FID, KID, precision/recall, density/coverage (and D's accuracy, precision and
recall for a workdir) and writes them to fid_result.txt (in the workdir, or --output).
"""

import logging
import sys

from absl import app, flags

from jaxgan import evaluation_cli

flags.DEFINE_string("workdir", None, "Training workdir whose latest checkpoint is scored.")
flags.DEFINE_integer("num_samples", None, "N generated (and real test) images; default: config.")
flags.DEFINE_string("real", None, "Real images: .npz file or folder of PNG/JPEG images.")
flags.DEFINE_string("fake", None, "Generated images: .npz file or folder of PNG/JPEG images.")
flags.DEFINE_string("output", None, "Result file (default: WORKDIR/fid_result.txt).")
flags.DEFINE_integer("batch_size", 250, "Inception batch size.")
flags.DEFINE_enum("resize", "half_pixel", ["half_pixel", "tf1"], "FID resize convention.")
FLAGS = flags.FLAGS


def main(argv) -> None:
    if len(argv) > 1:
        raise app.UsageError(f"Unexpected arguments: {' '.join(argv[1:])}")
    logging.getLogger("absl").setLevel(logging.WARNING)
    try:
        results = evaluation_cli.run(
            workdir=FLAGS.workdir,
            num_samples=FLAGS.num_samples,
            real=FLAGS.real,
            fake=FLAGS.fake,
            output=FLAGS.output,
            batch_size=FLAGS.batch_size,
            resize=FLAGS.resize,
        )
    except (ValueError, FileNotFoundError) as error:
        print(f"error: {error}", file=sys.stderr)
        sys.exit(1)
    print(results)


if __name__ == "__main__":
    app.run(main)
