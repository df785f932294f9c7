"""What `experiments.evaluate` does: score a workdir's latest checkpoint or two image sets.

A workdir's checkpoint is scored, by default, with the latents the training loop used to
evaluate it (`jaxgan.evaluation.generation.evaluation_key` of the run's seed and the
checkpoint's epoch), so at the run's N it reproduces the FID the run logged; `seed` picks
other latents. A workdir's own `fid_result.txt` (and a population's
`fid_result_member{M}.txt`) belongs to its training run and is never written here: an
evaluation by hand writes `fid_result_step{STEP}_n{N}.txt` beside it (`..._member{M}.txt`
for member M of a population, picked with `--member`), or `--output`.
"""

from __future__ import annotations

import logging
import re
import sys
import warnings
import zipfile
from pathlib import Path
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from PIL import Image, UnidentifiedImageError

from jaxgan import data as datasets
from jaxgan import evaluation
from jaxgan.checkpoint import load_run
from jaxgan.evaluation import report
from jaxgan.evaluation.evaluator import MIN_NUM_SAMPLES, inception_batch_size
from jaxgan.evaluation.generation import evaluation_key
from jaxgan.metrics.features import FeatureFn, inception_features
from jaxgan.metrics.frechet import warn_if_small_sample

log = logging.getLogger(__name__)

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg")
# Generated images shown beside their nearest training image in the HTML report.
NUM_NEIGHBOURS = 16
# KID settings of NVIDIA's StyleGAN metrics, used when comparing two image sets.
KID_SUBSETS, KID_SUBSET_SIZE = 100, 1000
# Training images searched for the HTML report's nearest neighbours, at most.
REPORT_TRAIN_IMAGES = 2000
# The training run's own result files in its workdir: `fid_result.txt`, and a
# population's `fid_result_member{M}.txt` (`jaxgan.training.periodic.Evaluate.write_report`).
OWN_RESULT_FILE = re.compile(r"fid_result(_member\d+)?\.txt")


def quiet_output() -> None:
    """For a command: no backend probing news, and each Python warning as one clean line.

    jax and absl log "Unable to initialize backend 'tpu'" at INFO; a warning such as
    `SmallSampleWarning` would show its source file and line.
    """
    for noisy in ("absl", "jax", "jax._src.xla_bridge"):
        logging.getLogger(noisy).setLevel(logging.WARNING)

    def show_warning(message, category, filename, lineno, file=None, line=None) -> None:
        print(f"warning: {message}", file=sys.stderr if file is None else file)

    warnings.showwarning = show_warning


class Evaluation(NamedTuple):
    """The scores and what the HTML report shows of them."""

    results: dict[str, Any]
    real_images: np.ndarray
    fake_images: np.ndarray
    neighbours: report.Neighbours | None


def load_image_set(path: str | Path) -> np.ndarray:
    """Images from an .npz file (key 'images', else its only array) or a folder of images.

    Returns:
      uint8 or float array [N, H, W] / [N, H, W, C], validated later by the FID protocol.
    """
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"{path} does not exist; expected an .npz file or image folder")
    if path.is_dir():
        files = sorted(p for p in path.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)
        if not files:
            raise ValueError(f"{path} holds no {'/'.join(IMAGE_SUFFIXES)} images")
        arrays = []
        for file in files:
            try:
                with Image.open(file) as picture:
                    mode = "L" if picture.mode in ("L", "1", "I;16") else "RGB"
                    arrays.append(np.asarray(picture.convert(mode)))
            except (UnidentifiedImageError, OSError) as error:
                raise ValueError(f"{file} is not a readable image ({error})") from error
        shapes = {a.shape for a in arrays}
        if len(shapes) != 1:
            raise ValueError(f"images in {path} differ in size or channels: {sorted(shapes)}")
        return np.stack(arrays)
    if path.suffix != ".npz":
        raise ValueError(f"{path}: allowed inputs are an .npz file or a folder of images")
    if not zipfile.is_zipfile(path):
        raise ValueError(f"{path} is not a readable .npz file (not a zip archive)")
    try:
        with np.load(path, allow_pickle=False) as archive:
            key = "images" if "images" in archive.files else None
            if key is None and len(archive.files) == 1:
                key = archive.files[0]
            if key is None:
                raise ValueError(
                    f"{path} has arrays {archive.files}; name the images 'images' or store one"
                )
            return archive[key]
    except (OSError, EOFError, zipfile.BadZipFile) as error:
        raise ValueError(f"{path} is not a readable .npz file ({error})") from error


def load_split(config, split: str) -> tuple[np.ndarray, np.ndarray, str]:
    """(uint8 images [N, H, W, C], int labels [N], name such as 'fashion_mnist:test')."""
    dataset = datasets.load(config, split)
    # Named as `Evaluator.from_dataset` names it: by the split actually loaded (a tfds
    # dataset without a test split answers 'test' with 'train').
    return dataset.images, dataset.labels, f"{dataset.info.name}:{dataset.split}"


def _latents_of(config, state, meta: dict[str, Any], seed: int | None) -> tuple[jax.Array, str]:
    """The latent key of a checkpoint's evaluation, and its provenance in words.

    The training loop's key for the checkpoint's epoch, of `seed` or else the run's own.
    """
    epoch = int(meta.get("epoch", 0))
    own = seed is None or seed == config.seed
    seed = config.seed if seed is None else seed
    text = f"seed {seed}, epoch {epoch}"
    if own and int(state.step) == epoch * int(meta.get("steps_per_epoch", 0)):
        text += " (those of the training run's own evaluation of this checkpoint)"
    return evaluation_key(seed, epoch), text


def _evaluate_workdir(
    workdir, num_samples, seed, batch_size, resize, feature_dtype, neighbour_search, feature_fn,
    member,
) -> Evaluation:  # fmt: skip
    config, state, meta = load_run(workdir, member=member)
    if num_samples is not None:
        config.fid_num_samples = num_samples
    config.fid_batch_size = batch_size
    reference_images, reference_labels, reference_name = load_split(config, "test")
    evaluator = evaluation.Evaluator(
        config,
        reference_images,
        reference_labels,
        reference_name=reference_name,
        resize=resize,
        feature_dtype=feature_dtype,
        feature_fn=feature_fn,
    )
    key, latents = _latents_of(config, state, meta, seed)
    generated, _ = evaluator.generated(state, key, keep_images=True)
    results = evaluator.score_generated(state, generated)
    fake_images = generated.images
    results["latents"] = latents
    neighbours = None
    if neighbour_search != 0:
        train_images, _, train_name = load_split(config, "train")
        train_images = train_images[: neighbour_search or min(REPORT_TRAIN_IMAGES, evaluator.num)]
        train_features = evaluation.reference_features(
            train_images,
            name=train_name,
            batch_size=evaluator.batch_size,
            resize=resize,
            feature_dtype=feature_dtype,
            cache_dir=evaluator.cache_dir,
            feature_fn=feature_fn,
        )
        queries = fake_images[:NUM_NEIGHBOURS]
        neighbours = report.find_neighbours(
            queries,
            np.asarray(generated.features[:NUM_NEIGHBOURS]),  # Those of the scores.
            train_images,
            train_features,
            f"{train_name}[:{len(train_images)}]",
        )
    return Evaluation(results, evaluator.reference_images, fake_images, neighbours)


def _compare_sets(real, fake, batch_size, resize, feature_dtype, feature_fn) -> Evaluation:
    real_images, fake_images = load_image_set(real), load_image_set(fake)
    for flag, images in (("--real", real_images), ("--fake", fake_images)):
        if len(images) < MIN_NUM_SAMPLES:
            raise ValueError(
                f"{flag} holds {len(images)} images; allowed: at least "
                f"{MIN_NUM_SAMPLES} (density/coverage use 5 nearest neighbours)"
            )
    warn_if_small_sample(
        len(real_images), len(fake_images), "give 10,000 images in each of --real and --fake"
    )
    batch_size = inception_batch_size(batch_size)
    real_features, fake_features = (
        inception_features(
            images,
            batch_size,
            feature_fn=feature_fn,
            progress=feature_fn is None,
            dtype=jnp.dtype(feature_dtype),
            resize=resize,
        )
        for images in (real_images, fake_images)
    )
    results = evaluation.feature_metrics(
        real_features, fake_features, kid_subsets=KID_SUBSETS, kid_size=KID_SUBSET_SIZE
    )
    if results["kid_subset_size"] < KID_SUBSET_SIZE:
        log.warning(
            "KID subset size clipped from %d to %d (the smaller set's size)",
            KID_SUBSET_SIZE, results["kid_subset_size"],
        )  # fmt: skip
    results.update(reference=str(real), resize=resize, feature_dtype=feature_dtype)
    # Without a training set, the memorisation check searches the real set.
    neighbours = report.find_neighbours(
        fake_images[:NUM_NEIGHBOURS],
        fake_features[:NUM_NEIGHBOURS],
        real_images,
        real_features,
        f"{real} (the --real set)",
    )
    return Evaluation(results, real_images, fake_images, neighbours)


def _check_arguments(
    workdir, real, fake, member, seed, num_samples, batch_size, feature_dtype,
    report_train_images,
) -> None:  # fmt: skip
    """Refuses inconsistent or invalid arguments of `run`, naming the flag."""
    if (real is None) != (fake is None):
        raise ValueError("--real and --fake go together: give both, or neither with --workdir")
    if workdir is None and real is None:
        raise ValueError("give --workdir=DIR, or --real=PATH and --fake=PATH")
    if workdir is not None and real is not None:
        raise ValueError("give either --workdir or --real/--fake, not both")
    if member is not None and workdir is None:
        raise ValueError("--member picks a GAN of a population's --workdir; give --workdir")
    if seed is not None and workdir is None:
        raise ValueError("--seed picks the latents of a --workdir's generator; give --workdir")
    minimum = MIN_NUM_SAMPLES
    if num_samples is not None and num_samples < minimum:
        raise ValueError(
            f"--num_samples={num_samples} is invalid; allowed: {minimum} or more (density/"
            "coverage use 5 nearest neighbours)"
        )
    if batch_size < 0:
        raise ValueError(
            f"--batch_size={batch_size} is invalid; allowed: 0 (auto) or a positive integer"
        )
    if feature_dtype not in evaluation.FEATURE_DTYPES:
        raise ValueError(
            f"--feature_dtype={feature_dtype} is invalid; allowed: {evaluation.FEATURE_DTYPES}"
        )
    if report_train_images is not None and report_train_images < 1:
        raise ValueError(f"--report_train_images={report_train_images} is invalid; allowed: >= 1")


def run(
    *,
    workdir=None,
    num_samples: int | None = None,
    real=None,
    fake=None,
    output=None,
    batch_size: int = 0,
    resize: str = "half_pixel",
    feature_dtype: str = "float32",
    html_report=None,
    report_train_images: int | None = None,
    feature_fn: FeatureFn | None = None,
    member: int | None = None,
    seed: int | None = None,
) -> str:
    """Runs an evaluation, writes the result file (and the HTML report) and returns the text.

    Args:
      workdir: a training workdir; its latest checkpoint is scored against its test split.
      num_samples: N for a workdir (default: its config's fid_num_samples), at least
        `MIN_NUM_SAMPLES`.
      real, fake: two image sets (.npz or folders) to compare instead of a workdir.
      output: the result file; default `WORKDIR/fid_result_step{STEP}_n{N}.txt`
        (`..._member{M}.txt` with `member`), or `fid_result.txt` for two image sets. A
        workdir's own `fid_result.txt` and `fid_result_member{M}.txt` are refused.
      batch_size: generator and Inception batch size; 0 sizes it to the device
        (`evaluator.inception_batch_size`). The scores do not depend on it.
      resize: FID resize convention.
      feature_dtype: 'float32' or 'bfloat16' Inception.
      html_report: where to write the HTML report, or None.
      report_train_images: training images searched for nearest neighbours in the report
        (default: min(2000, N)); each costs Inception features as a generated image does,
        once (they are cached).
      feature_fn: replaces the Inception network (tests).
      member: the GAN of a population's workdir to score (0 to K-1); None for a single
        GAN's workdir.
      seed: the seed of the generated latents (default: the run's own, which gives the
        latents of the run's own evaluation of the checkpoint).
    """
    _check_arguments(
        workdir, real, fake, member, seed, num_samples, batch_size, feature_dtype,
        report_train_images,
    )  # fmt: skip
    if workdir is not None:
        if (
            output is not None
            and Path(output).resolve().parent == Path(workdir).resolve()
            and OWN_RESULT_FILE.fullmatch(Path(output).name)
        ):
            raise ValueError(
                f"--output={output} is the training run's own result file; choose another path"
            )
        outcome = _evaluate_workdir(
            workdir, num_samples, seed, batch_size, resize, feature_dtype,
            report_train_images if html_report else 0, feature_fn, member,
        )  # fmt: skip
        results = outcome.results
        suffix = "" if member is None else f"_member{member}"
        output = output or (
            Path(workdir) / f"fid_result_step{results['step']}_n{results['num_fake']}{suffix}.txt"
        )
    else:
        outcome = _compare_sets(real, fake, batch_size, resize, feature_dtype, feature_fn)
        output = output or "fid_result.txt"
    report.write_results(outcome.results, output)
    log.info("Wrote %s", output)
    if html_report:
        report.write_html_report(
            html_report,
            outcome.results,
            outcome.real_images,
            outcome.fake_images,
            outcome.neighbours,
        )
        log.info("Wrote %s", html_report)
    return report.format_results(outcome.results)
