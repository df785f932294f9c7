"""Evaluate a run's latest checkpoint, or compare two image sets.

    python -m experiments.evaluate --workdir=results/dcgan [--num_samples=10000] [--report=r.html]
    python -m experiments.evaluate --workdir=results/population --member=1
    python -m experiments.evaluate --real=real.npz --fake=generated_pngs/

Prints FID, KID, precision/recall, density/coverage (and D's accuracy, precision and recall
for a workdir) and writes them to WORKDIR/fid_result_step{STEP}_n{N}.txt (the run's own
fid_result.txt is left alone), to fid_result.txt for two image sets, or to --output.
A population's workdir (config.population = K) needs --member (0 to K-1); its result goes
to WORKDIR/fid_result_step{STEP}_n{N}_member{M}.txt.
"""

import logging
import sys

from absl import app, flags

from jaxgan.evaluation import offline

flags.DEFINE_string("workdir", None, "Training workdir whose latest checkpoint is scored.")
flags.DEFINE_integer("num_samples", None, "N generated (and real test) images; default: config.")
flags.DEFINE_string("real", None, "Real images: .npz file or folder of PNG/JPEG images.")
flags.DEFINE_string("fake", None, "Generated images: .npz file or folder of PNG/JPEG images.")
flags.DEFINE_string("output", None, "Result file (default: see above).")
flags.DEFINE_integer(
    "member", None, "The member of a population workdir (config.population > 0) to use, 0..K-1."
)
flags.DEFINE_integer("batch_size", 250, "Generator and Inception batch size.")
flags.DEFINE_enum("resize", "half_pixel", ["half_pixel", "tf1"], "FID resize convention.")
flags.DEFINE_enum("feature_dtype", "float32", ["float32", "bfloat16"], "Inception precision.")
flags.DEFINE_string("report", None, "Also write a self-contained HTML report to this file.")
flags.DEFINE_integer("report_train_images", 2000, "Training images searched for neighbours.")
FLAGS = flags.FLAGS


def main(argv) -> None:
    if len(argv) > 1:
        raise app.UsageError(f"Unexpected arguments: {' '.join(argv[1:])}")
    logging.getLogger("absl").setLevel(logging.WARNING)
    try:
        text = offline.run(
            workdir=FLAGS.workdir,
            member=FLAGS.member,
            num_samples=FLAGS.num_samples,
            real=FLAGS.real,
            fake=FLAGS.fake,
            output=FLAGS.output,
            batch_size=FLAGS.batch_size,
            resize=FLAGS.resize,
            feature_dtype=FLAGS.feature_dtype,
            html_report=FLAGS.report,
            report_train_images=FLAGS.report_train_images,
        )
    except (ValueError, FileNotFoundError) as error:
        print(f"error: {error}", file=sys.stderr)
        sys.exit(1)
    print(text, end="")


if __name__ == "__main__":
    app.run(main)
