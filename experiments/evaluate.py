"""Evaluate a run's latest checkpoint, or compare two image sets.

    python -m experiments.evaluate --workdir=results/dcgan [--num_samples=10000] [--report=r.html]
    python -m experiments.evaluate --workdir=results/population --member=1
    python -m experiments.evaluate --real=real.npz --fake=generated_pngs/

Prints FID, KID, precision/recall, density/coverage (and D's accuracy, precision and recall
for a workdir) and writes them to WORKDIR/fid_result_step{STEP}_n{N}.txt (the run's own
fid_result.txt is left alone), to fid_result.txt for two image sets, or to --output.
A workdir is scored with the latents of the run's own evaluation of the checkpoint, so at
the run's N the FID is the one it logged; --seed picks others. A population's workdir
needs --member (0 to K-1); its result goes to ..._n{N}_member{M}.txt.
Cost: Inception features of N generated and N real images (the real ones are cached).
"""

import sys

from absl import app, flags

from jaxgan.evaluation import generation, offline

flags.DEFINE_string("workdir", None, "Training workdir whose latest checkpoint is scored.")
flags.DEFINE_integer("num_samples", None, "N generated and real images, >= 6; default: config.")
flags.DEFINE_integer("seed", None, "Latent seed; default: the run's own (its logged FID's).")
flags.DEFINE_string("real", None, "Real images: .npz file or folder of PNG/JPEG images.")
flags.DEFINE_string("fake", None, "Generated images: .npz file or folder of PNG/JPEG images.")
flags.DEFINE_string("output", None, "Result file (default: see above).")
flags.DEFINE_integer("member", None, "The member of a population workdir to use, 0..K-1.")
flags.DEFINE_integer("batch_size", 0, "Generator and Inception batch size; 0: auto (CPU: 50, "
                     "about 2.5 GB; GPU/TPU: from the device memory, at most 250).")  # fmt: skip
flags.DEFINE_enum("resize", "half_pixel", ["half_pixel", "tf1"], "FID resize convention.")
flags.DEFINE_enum("feature_dtype", "float32", ["float32", "bfloat16"], "Inception precision.")
flags.DEFINE_string("report", None, "Also write a self-contained HTML report to this file.")
flags.DEFINE_integer("report_train_images", None, "Training images searched for the report's "
                     "nearest neighbours, default min(2000, N); each costs Inception features "
                     "as a generated image does (CPU: about 1 s), once (cached).")  # fmt: skip
FLAGS = flags.FLAGS


def main(argv) -> None:
    if len(argv) > 1:
        raise app.UsageError(f"Unexpected arguments: {' '.join(argv[1:])}")
    offline.quiet_output()
    try:
        text = offline.run(
            workdir=FLAGS.workdir, member=FLAGS.member, num_samples=FLAGS.num_samples,
            seed=FLAGS.seed, real=FLAGS.real, fake=FLAGS.fake, output=FLAGS.output,
            batch_size=FLAGS.batch_size, resize=FLAGS.resize, feature_dtype=FLAGS.feature_dtype,
            html_report=FLAGS.report, report_train_images=FLAGS.report_train_images,
        )  # fmt: skip
    except (ValueError, FileNotFoundError) as error:
        print(f"error: {error}", file=sys.stderr)
        sys.exit(1)
    print(text, end="")


if __name__ == "__main__":
    app.run(main, flags_parser=lambda argv: generation.parse_flags(argv, __doc__))
