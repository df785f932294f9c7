"""Sample quality of a config over seeds: FID, KID, precision/recall, with the data's floor.

  python -m benchmarks.quality --config=experiments/configs/dcgan.py --seeds=3
  python -m benchmarks.quality --config=experiments/configs/dcgan.py \\
      --config=experiments/configs/dcgan_best.py --config=experiments/configs/cdcgan.py \\
      --seeds=3 --parallel=9 --workdir=results/quality
  python -m benchmarks.quality --config=experiments/configs/dcgan.py:smoke --seeds=2 \\
      --num_samples=16 --override num_epochs=2

The seeds of each config are trained as one population (`config.population`, see
`jaxgan.core.population`): one `python -m experiments.train` process per config
(`--config.seed=FIRST --config.population=S --workdir=DIR/NAME/seedsFIRST-LAST
--config.eval_every=0 --config.checkpoint_every=0`, plus every `--override FIELD=VALUE`)
trains all S seeds in one program, and member i is the run of seed FIRST + i; its
log is `DIR/NAME/seedsFIRST-LAST.log`. With `--no-population` (or an override of
`population`) each seed gets its own process instead (`--workdir=DIR/NAME/seedS`, log
`DIR/NAME/seedS.log`); so does a config that sets what a population cannot share (its
own G/D learning rates or a learning-rate decay, as `resnet.py` does:
`jaxgan.training.config.single_gan_fields`). Up to `--parallel` processes run at once.
Running the same command again resumes unfinished runs and only re-evaluates finished ones. With
`--parallel > 1` every process gets `XLA_PYTHON_CLIENT_PREALLOCATE=false` and
`XLA_PYTHON_CLIENT_MEM_FRACTION=0.9/parallel` (unless already set), so that they share
one accelerator.

Then this process scores each final checkpoint (`jaxgan.checkpoint.load_run`) with
`jaxgan.evaluation.Evaluator`: N = `--num_samples` generated images (latents from
`fold_in(key(seed), 1000003)`, as `experiments.evaluate` draws them) against the first N
test images, KID with 100 subsets of min(1000, N). For a class-conditional config the
generated labels are those of the reference images, and it also reports:
  * per-class FID: generated images of class c against the test images of class c (as
    many as `test[:N]` holds, 1000 per class at N=10,000), averaged over the classes;
  * class accuracy: the fraction of generated images that the FashionMNIST classifier
    (`jaxgan.evaluation.fashion_classifier.load_classifier`)
    labels with their class, beside the same
    classifier's accuracy on `test[:N]` (its ceiling).
The floor is the same metrics of `train[:N]` against `test[:N]` (per class too), cached in
`$JAXGAN_CACHE_DIR` keyed by N and the images. FID is `jaxgan.metrics.frechet_distance`
(scipy's sqrtm) when both sets have more images than the 2048 feature dimensions, as at
N=10,000; below that, and for every per-class FID, the same distance is computed exactly
through an SVD (`frechet_distance_of_features`), which takes a second where sqrtm of the
singular product takes minutes.

Output: one JSON line per seed, one per floor, one summary line per config (mean and
sample standard deviation over seeds), then a Markdown table.
"""

from __future__ import annotations

import argparse
import dataclasses
import hashlib
import json
import logging
import math
import os
import shlex
import signal
import subprocess
import sys
import time
import types
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from benchmarks import common

MODULE = "benchmarks.quality"
REPO_ROOT = Path(__file__).resolve().parents[1]
# The key `experiments.evaluate` draws a workdir's latents from, so the two tools agree.
EVAL_KEY_FOLD = 1_000_003
KID_SUBSETS, KID_SUBSET_SIZE = 100, 1000
# Metrics averaged over seeds, in the order the summary and the table give them.
SUMMARY_KEYS = (
    "fid", "kid_mean", "precision", "recall", "density", "coverage", "per_class_fid_mean",
    "class_accuracy", "epochs", "train_seconds", "epoch_seconds_sum", "eval_seconds",
)  # fmt: skip
_FLOOR_CACHE_VERSION = 1

log = logging.getLogger(MODULE)


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog=f"python -m {MODULE}",
        description=__doc__.split("\n\n")[0],
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument(
        "--config", action="append", required=True,
        help="config file[:variant]; repeat to compare several in one run",
    )  # fmt: skip
    parser.add_argument("--seeds", type=int, default=3, help="seeds 0..S-1 (see --first_seed)")
    parser.add_argument("--first_seed", type=int, default=0)
    parser.add_argument("--parallel", type=int, default=1, help="training processes at once")
    parser.add_argument(
        "--train_minutes", type=float, default=0.0,
        help="wall-clock limit of each training process (0: none); at the limit it gets "
        "SIGTERM, saves a checkpoint at that step and is scored from it (its record says "
        "so: the run did not reach its last epoch, nor the end of a learning-rate decay)",
    )  # fmt: skip
    parser.add_argument(
        "--population", action=argparse.BooleanOptionalAction, default=True,
        help="train a config's seeds as one population (default); --no-population: a "
        "process per seed",
    )  # fmt: skip
    parser.add_argument("--workdir", default="results/quality")
    parser.add_argument("--num_samples", type=int, default=10000, help="N for every metric")
    parser.add_argument("--batch_size", type=int, default=250, help="generator/Inception batch")
    parser.add_argument(
        "--override", action="append", default=[], metavar="FIELD=VALUE",
        help="a config field for every run, as --config.FIELD=VALUE of experiments.train",
    )  # fmt: skip
    args = parser.parse_args(argv)
    for name in ("seeds", "parallel", "batch_size"):
        if getattr(args, name) < 1:
            parser.error(f"--{name}={getattr(args, name)} must be at least 1")
    if not args.train_minutes >= 0:
        parser.error(f"--train_minutes={args.train_minutes} must be >= 0 (0: no limit)")
    if args.first_seed < 0:
        parser.error(f"--first_seed={args.first_seed} must be >= 0")
    if args.num_samples < 2:
        parser.error(f"--num_samples={args.num_samples} must be at least 2")
    for override in args.override:
        field, sep, _ = override.partition("=")
        if not sep or not field or field.startswith("-"):
            parser.error(f"--override {override!r} is not FIELD=VALUE (e.g. num_epochs=5)")
        if field in ("seed", "population_learning_rates"):
            parser.error(f"--override {field}=... is not allowed: use --seeds and --first_seed")
        if field == "population":
            args.population = False  # The override decides; each seed its own run.
    return args


# ---------------------------------------------------------------------------------------
# Training, one process per seed


def single_gan_settings(config_spec: str, overrides: Sequence[str]) -> list[str]:
    """The fields of a config (with its overrides) that keep its seeds out of a population."""
    from jaxgan.training.config import SINGLE_GAN_FIELDS, single_gan_fields

    config = common.load_config(config_spec)
    for override in overrides:
        field, _, value = override.partition("=")
        if field in SINGLE_GAN_FIELDS:
            config[field] = type(config[field])(value)
    return single_gan_fields(config)


def run_name(config_spec: str, overrides: Sequence[str]) -> str:
    """A folder name for a config and its overrides: 'dcgan', 'dcgan_smoke', 'dcgan-1a2b3c4d'.

    Overrides add a digest, so that runs with other settings never resume each other.
    """
    path, _, variant = config_spec.partition(":")
    name = Path(path).stem + (f"_{variant}" if variant else "")
    if overrides:
        name += "-" + hashlib.sha1("\n".join(overrides).encode()).hexdigest()[:8]
    return name


def train_command(
    config_spec: str, seed: int, workdir: str | Path, overrides: Sequence[str], members: int = 0
) -> list[str]:
    """The `python -m experiments.train` arguments of one seed, or of `members` seeds from
    `seed` on as one population (without the interpreter)."""
    return [
        "-m", "experiments.train", f"--config={config_spec}", f"--config.seed={seed}",
        *([f"--config.population={members}"] if members else []),
        f"--workdir={workdir}", "--config.eval_every=0", "--config.checkpoint_every=0",
        "--config.progress=False", *(f"--config.{override}" for override in overrides),
    ]  # fmt: skip


def subprocess_environment(parallel: int, base: dict[str, str] | None = None) -> dict[str, str]:
    """The training processes' environment: a share of the accelerator each when parallel."""
    environment = dict(os.environ if base is None else base)
    if parallel > 1:
        environment.setdefault("XLA_PYTHON_CLIENT_PREALLOCATE", "false")
        environment.setdefault("XLA_PYTHON_CLIENT_MEM_FRACTION", f"{0.9 / parallel:.3f}")
    return environment


@dataclasses.dataclass
class TrainJob:
    """One training process (one seed, or `members` seeds as a population) and its end."""

    config_spec: str
    name: str
    seed: int
    workdir: Path
    overrides: tuple[str, ...]
    log_path: Path
    members: int = 0
    returncode: int | None = None
    seconds: float = 0.0
    stopped_at_limit: bool = False

    @property
    def command(self) -> str:
        """The training command as typed from the repository root."""
        arguments = train_command(
            self.config_spec, self.seed, self.workdir, self.overrides, self.members
        )
        return shlex.join(["python", *arguments])


def _absolute_spec(config_spec: str) -> str:
    path, sep, variant = config_spec.partition(":")
    return str(Path(path).resolve()) + sep + variant


def plan_jobs(args: argparse.Namespace, root: Path) -> list[TrainJob]:
    """The training processes of every config: one per config (its seeds as a population),
    or one per seed with `--no-population` or a config a population cannot share."""
    seeds = range(args.first_seed, args.first_seed + args.seeds)
    jobs = []
    for spec in dict.fromkeys(args.config):  # Each config once, in order.
        name = run_name(spec, args.override)
        if args.population and (alone := single_gan_settings(spec, args.override)):
            log.info("%s sets %s, which a population cannot share: a process per seed "
                     "(--parallel runs them side by side)", spec, ", ".join(alone))  # fmt: skip
        elif args.population:
            folder = f"seeds{seeds[0]}-{seeds[-1]}"
            jobs.append(TrainJob(spec, name, seeds[0], root / name / folder,
                                 tuple(args.override), root / name / f"{folder}.log",
                                 members=len(seeds)))  # fmt: skip
            continue
        for seed in seeds:
            workdir = root / name / f"seed{seed}"
            jobs.append(TrainJob(spec, name, seed, workdir, tuple(args.override),
                                 root / name / f"seed{seed}.log"))  # fmt: skip
    return jobs


def run_jobs(jobs: Sequence[TrainJob], parallel: int, limit_seconds: float = 0.0) -> None:
    """Runs the jobs' training processes, at most `parallel` at once; fills returncode/seconds.

    A process still running `limit_seconds` after its start (when > 0) gets SIGTERM: it
    saves a checkpoint at that step and exits with 128 + 15; the job is marked
    `stopped_at_limit`. On KeyboardInterrupt the running processes get SIGTERM (each saves
    a checkpoint, so the same command resumes them) and the interrupt is re-raised.
    """
    environment = subprocess_environment(parallel)
    pending, running = list(jobs), []
    try:
        while pending or running:
            while pending and len(running) < parallel:
                job = pending.pop(0)
                job.log_path.parent.mkdir(parents=True, exist_ok=True)
                # Absolute paths: the process runs from the repository root.
                arguments = train_command(
                    _absolute_spec(job.config_spec), job.seed, job.workdir.resolve(),
                    job.overrides, job.members,
                )  # fmt: skip
                with job.log_path.open("w") as log_file:
                    process = subprocess.Popen(
                        [sys.executable, *arguments], cwd=REPO_ROOT, env=environment,
                        stdout=log_file, stderr=subprocess.STDOUT,
                    )  # fmt: skip
                running.append((job, process, time.perf_counter()))
                what = (f"seeds {job.seed}..{job.seed + job.members - 1} as one population"
                        if job.members else f"seed {job.seed}")  # fmt: skip
                log.info("training %s %s (log %s)", job.name, what, job.log_path)
            time.sleep(0.2)
            for entry in list(running):
                job, process, start = entry
                over = limit_seconds and time.perf_counter() - start > limit_seconds
                if over and not job.stopped_at_limit and process.poll() is None:
                    log.info("%s reached --train_minutes: SIGTERM (it saves, then stops)",
                             job.name)  # fmt: skip
                    process.terminate()
                    job.stopped_at_limit = True
                if process.poll() is not None:
                    job.returncode, job.seconds = process.returncode, time.perf_counter() - start
                    running.remove(entry)
    except KeyboardInterrupt:
        for _, process, _ in running:
            process.terminate()
        for _, process, _ in running:
            process.wait()
        raise


def _log_tail(path: Path, lines: int = 5) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return ""


def read_epochs(workdir: Path) -> tuple[int | None, float | None]:
    """(last epoch, sum of epoch_seconds) from a run's metrics.jsonl."""
    from jaxgan.fileio import read_jsonl

    try:
        records = read_jsonl(workdir / "metrics.jsonl", strict=False)
    except OSError:
        return None, None
    if not records:
        return None, None
    return int(records[-1]["epoch"]), round(sum(r.get("epoch_seconds", 0.0) for r in records), 3)


# ---------------------------------------------------------------------------------------
# Metrics


def frechet_distance_of_features(features_a: np.ndarray, features_b: np.ndarray) -> float:
    """FID of two feature sets [N, D], [M, D], computed exactly through an SVD of [N, M].

    With A and B the centred features, sigma_a = A^T A / (N - 1) and likewise for b, the
    non-zero eigenvalues of sigma_a sigma_b are those of (A B^T)(B A^T) / ((N-1)(M-1)), so
    Tr sqrtm(sigma_a sigma_b) is the sum of the singular values of A B^T over
    sqrt((N-1)(M-1)). For per-class sets (N ~ 1000 < D = 2048) this is exact where
    `scipy.linalg.sqrtm` of the singular 2048x2048 product is slow (minutes on a 2-core
    CPU) and needs its eps retry; it agrees with `jaxgan.metrics.frechet_distance`.
    """
    a = np.asarray(features_a, np.float64)
    b = np.asarray(features_b, np.float64)
    if a.ndim != 2 or b.ndim != 2 or a.shape[1] != b.shape[1] or min(len(a), len(b)) < 2:
        raise ValueError(f"need two feature sets [N>=2, D] of one D; got {a.shape} and {b.shape}")
    mean_a, mean_b = a.mean(axis=0), b.mean(axis=0)
    centred_a, centred_b = a - mean_a, b - mean_b
    trace_a = np.sum(centred_a**2) / (len(a) - 1)
    trace_b = np.sum(centred_b**2) / (len(b) - 1)
    singular_values = np.linalg.svd(centred_a @ centred_b.T, compute_uv=False)
    trace_sqrt = np.sum(singular_values) / math.sqrt((len(a) - 1) * (len(b) - 1))
    return float(np.sum((mean_a - mean_b) ** 2) + trace_a + trace_b - 2 * trace_sqrt)


def fid_of_features(real_features: np.ndarray, fake_features: np.ndarray) -> float:
    """FID of two feature sets: `jaxgan.metrics.frechet_distance` of their statistics, or
    `frechet_distance_of_features` when either set has no more rows than dimensions (the
    covariances are then singular: the SVD is exact and fast where sqrtm is neither)."""
    from jaxgan.metrics import feature_statistics, frechet_distance

    if min(len(real_features), len(fake_features)) <= real_features.shape[1]:
        return frechet_distance_of_features(real_features, fake_features)
    return frechet_distance(*feature_statistics(real_features), *feature_statistics(fake_features))


def feature_scores(evaluator, real_features: np.ndarray, fake_features: np.ndarray) -> dict:
    """FID (`fid_of_features`), KID and precision/recall/density/coverage of two feature sets.

    The same metrics as `jaxgan.evaluation.feature_metrics`, with the evaluator's KID settings.
    """
    from jaxgan.metrics import kid_from_features, prdc

    kid_mean, kid_std = kid_from_features(
        real_features, fake_features, num_subsets=evaluator.kid_subsets,
        subset_size=evaluator.kid_size,
    )  # fmt: skip
    manifold = prdc(real_features, fake_features)
    return {
        "fid": fid_of_features(real_features, fake_features),
        "kid_mean": kid_mean,
        "kid_std": kid_std,
        **{k: manifold[k] for k in ("precision", "recall", "density", "coverage")},
    }


def per_class_fid(
    real_features: np.ndarray,
    real_labels: np.ndarray,
    fake_features: np.ndarray,
    fake_labels: np.ndarray,
    num_classes: int,
) -> dict[str, Any]:
    """FID of each class's generated features against that class's real ones.

    Returns:
      {'per_class_fid': [num_classes] floats (None for a class with fewer than 2 images
      on either side), 'per_class_fid_mean': their mean over the measured classes (None
      if none), 'per_class_counts': [num_classes] [real, fake] counts}.
    """
    real_labels, fake_labels = np.asarray(real_labels), np.asarray(fake_labels)
    if len(real_labels) != len(real_features) or len(fake_labels) != len(fake_features):
        raise ValueError("one label per feature row is needed on each side")
    scores, counts = [], []
    for label in range(num_classes):
        real = real_features[real_labels == label]
        fake = fake_features[fake_labels == label]
        counts.append([len(real), len(fake)])
        scores.append(frechet_distance_of_features(real, fake) if min(len(real), len(fake)) >= 2
                      else None)  # fmt: skip
    measured = [score for score in scores if score is not None]
    return {
        "per_class_fid": scores,
        "per_class_fid_mean": float(np.mean(measured)) if measured else None,
        "per_class_counts": counts,
    }


def summarise(records: Sequence[dict[str, Any]], keys: Sequence[str] = SUMMARY_KEYS) -> dict:
    """Mean and sample standard deviation (ddof=1; None for one record) of each key.

    Keys absent (or None) in every record are left out; a key is summarised over the
    records that have it.
    """
    summary: dict[str, Any] = {}
    for key in keys:
        values = [r[key] for r in records if r.get(key) is not None]
        if not values:
            continue
        summary[f"{key}_mean"] = float(np.mean(values))
        summary[f"{key}_std"] = float(np.std(values, ddof=1)) if len(values) > 1 else None
        summary[f"{key}_n"] = len(values)
    return summary


def _digest(*arrays: np.ndarray) -> str:
    digest = hashlib.sha256()
    for array in arrays:
        digest.update(str(array.shape).encode())
        digest.update(np.ascontiguousarray(array).tobytes())
    return digest.hexdigest()[:12]


def floor_cache_path(evaluator, train_images: np.ndarray, train_labels, cache_dir) -> Path:
    """The floor's JSON file: keyed by the reference name, N, protocol and both image sets."""
    name = evaluator.reference_name.replace(":", "-").replace("/", "-")
    arrays = [train_images, evaluator.reference_images]
    if train_labels is not None and evaluator.reference_labels is not None:
        arrays += [np.asarray(train_labels), evaluator.reference_labels]
    return Path(cache_dir) / (
        f"quality_floor_{name}_n{evaluator.num}_{evaluator.resize}_{evaluator.feature_dtype}_"
        f"{_digest(*arrays)}_v{_FLOOR_CACHE_VERSION}.json"
    )


def fid_floor(
    evaluator,
    train_images: np.ndarray,
    train_labels: np.ndarray | None = None,
    *,
    num_classes: int = 0,
    train_name: str = "train",
    cache_dir: str | Path | None = None,
) -> dict[str, Any]:
    """FID, KID and precision/recall of `train[:N]` vs the evaluator's reference `test[:N]`.

    With labels and `num_classes > 1` also the per-class FID floor. The result is cached
    as JSON (see `floor_cache_path`); a cached result has `'cached': True`.
    """
    from jaxgan import evaluation

    train_images = train_images[: evaluator.num]
    if train_labels is not None:
        train_labels = np.asarray(train_labels[: evaluator.num])
    cache_dir = Path(cache_dir) if cache_dir is not None else evaluator.cache_dir
    path = floor_cache_path(evaluator, train_images, train_labels, cache_dir)
    try:
        return {**json.loads(path.read_text()), "cached": True}
    except FileNotFoundError:
        pass
    except (OSError, ValueError) as error:
        log.warning("Recomputing the floor: %s is unreadable (%s)", path, error)
    real_features = evaluator.real_features()
    train_features = evaluation.reference_features(
        train_images,
        name=train_name,
        batch_size=evaluator.batch_size,
        resize=evaluator.resize,
        feature_dtype=evaluator.feature_dtype,
        cache_dir=evaluator.cache_dir,
        feature_fn=evaluator.feature_fn,
    )
    floor = feature_scores(evaluator, real_features, train_features)
    floor.update(
        num_samples=evaluator.num,
        fake=f"{train_name}[:{len(train_images)}]",
        reference=f"{evaluator.reference_name}[:{evaluator.num}]",
        resize=evaluator.resize,
        feature_dtype=evaluator.feature_dtype,
    )
    if num_classes > 1 and train_labels is not None and evaluator.reference_labels is not None:
        floor.update(per_class_fid(real_features, evaluator.reference_labels, train_features,
                                   train_labels, num_classes))  # fmt: skip
    try:
        from jaxgan import fileio

        fileio.atomic_write_text(path, json.dumps(floor))
    except OSError as error:
        log.warning("Could not cache the floor in %s (%s)", path, error)
    return {**floor, "cached": False}


def evaluate_state(state, seed: int, evaluator, classifier=None) -> dict[str, Any]:
    """The metrics of a trained state (see the module docstring).

    Args:
      state: a `GANState`, e.g. from `jaxgan.checkpoint.load_run`.
      seed: the run's seed; the latents come from `fold_in(key(seed), EVAL_KEY_FOLD)`.
      evaluator: a `jaxgan.evaluation.Evaluator` of the reference split.
      classifier: a `jaxgan.evaluation.fashion_classifier.Classifier` for the class accuracy of a
        conditional state, or None.
    """
    import jax

    start = time.perf_counter()
    key = jax.random.fold_in(jax.random.key(seed), EVAL_KEY_FOLD)
    classify = classifier is not None and getattr(state, "num_classes", 0) > 1
    generated, fake_labels = evaluator.generated(state, key, keep_images=classify)
    real_features = evaluator.real_features()
    fake_features = np.asarray(generated.features)  # The float64 references run on the host.
    result = feature_scores(evaluator, real_features, fake_features)
    result["step"] = int(jax.device_get(state.step))
    if fake_labels is not None:
        result.update(per_class_fid(real_features, fake_labels, fake_features, fake_labels,
                                    state.num_classes))  # fmt: skip
        if classifier is not None:
            predicted = classifier.predict(generated.images)
            result["class_accuracy"] = float(np.mean(predicted == fake_labels))
            result["per_class_accuracy"] = [
                float(np.mean(predicted[fake_labels == c] == c)) if np.any(fake_labels == c)
                else None
                for c in range(state.num_classes)
            ]  # fmt: skip
    result["eval_seconds"] = round(time.perf_counter() - start, 3)
    return result


# ---------------------------------------------------------------------------------------
# Reporting


def _cell(summary: dict[str, Any], key: str, digits: int, scale: float = 1.0) -> str:
    mean = summary.get(f"{key}_mean")
    if mean is None:
        return "–"
    std = summary.get(f"{key}_std")
    text = f"{mean * scale:.{digits}f}"
    return text + (f" ± {std * scale:.{digits}f}" if std is not None else "")


def markdown_table(summaries: Sequence[dict[str, Any]]) -> str:
    """One row per config: mean ± std over seeds, and the floor at the same N."""
    header = (
        "| config | seeds | N | FID | KID ×10³ | precision | recall | per-class FID | "
        "class accuracy (ceiling) | floor FID (per-class) | epochs | train s/seed |"
    )
    lines = [header, "|" + "---|" * header.count(" | ") + "---|"]
    for summary in summaries:
        floor = summary.get("floor") or {}
        ceiling = summary.get("classifier_accuracy_real")
        accuracy = _cell(summary, "class_accuracy", 3)
        if ceiling is not None:
            accuracy += f" ({ceiling:.3f})"
        floor_text = f"{floor['fid']:.2f}" if floor.get("fid") is not None else "–"
        if floor.get("per_class_fid_mean") is not None and "per_class_fid_mean_mean" in summary:
            floor_text += f" ({floor['per_class_fid_mean']:.2f})"
        cells = [
            summary["name"], str(summary["num_seeds"]), str(summary["num_samples"]),
            _cell(summary, "fid", 2), _cell(summary, "kid_mean", 2, 1e3),
            _cell(summary, "precision", 3), _cell(summary, "recall", 3),
            _cell(summary, "per_class_fid_mean", 2), accuracy, floor_text,
            _cell(summary, "epochs", 0), _cell(summary, "train_seconds", 0),
        ]  # fmt: skip
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def _classifier_for(dataset_info):
    """The FashionMNIST classifier, or None (with the reason) for other data."""
    from jaxgan.evaluation.fashion_classifier import IMAGE_SHAPE, load_classifier

    if dataset_info.name != "fashion_mnist" or tuple(dataset_info.image_shape) != IMAGE_SHAPE:
        return None, f"no classifier for {dataset_info.name} {dataset_info.image_shape}"
    return load_classifier(), None


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s",
                        stream=sys.stderr)  # fmt: skip
    for noisy in ("absl", "jax", "jax._src.xla_bridge"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
    # Nothing here touches the accelerator before the training processes have finished,
    # and it never holds more of its memory than it uses.
    os.environ.setdefault("XLA_PYTHON_CLIENT_PREALLOCATE", "false")
    benchmark_command = common.command_line(MODULE)
    root = Path(args.workdir)
    jobs = plan_jobs(args, root)
    train_start = time.perf_counter()
    run_jobs(jobs, args.parallel, args.train_minutes * 60)
    train_wall_seconds = round(time.perf_counter() - train_start, 3)

    from jaxgan import data as datasets
    from jaxgan.checkpoint import load_run
    from jaxgan.data import DatasetInfo
    from jaxgan.evaluation import Evaluator
    from jaxgan.training import compilation_cache

    compilation_cache.enable()
    device = common.device_info()
    versions = common.versions()
    evaluators: dict[tuple, Any] = {}
    classifiers: dict[tuple, Any] = {}
    summaries, failed = [], False
    for spec in dict.fromkeys(args.config):
        records, floor, summary_extra = [], None, {}
        runs = [(job, member) for job in jobs if job.config_spec == spec
                for member in (range(job.members) if job.members else [None])]  # fmt: skip
        for job, member in runs:
            seed = job.seed + (member or 0)
            base = {"config": spec, "name": job.name, "seed": seed, "workdir": str(job.workdir),
                    **({"population_member": member} if member is not None else {})}  # fmt: skip
            stopped_as_asked = job.stopped_at_limit and job.returncode == 128 + signal.SIGTERM
            if job.returncode != 0 and not stopped_as_asked:
                failed = True
                common.emit({**base, "error": f"training exited with {job.returncode}",
                             "log": str(job.log_path), "log_tail": _log_tail(job.log_path),
                             "command": job.command})  # fmt: skip
                continue
            load_start = time.perf_counter()
            config, state, meta = load_run(job.workdir, member=member)
            load_seconds = time.perf_counter() - load_start
            info = DatasetInfo.from_dict(meta["dataset_info"])
            data_key = (config.dataset, config.image_size, config.channels, config.data_dir,
                        config.tfds_data_dir)  # fmt: skip
            if data_key not in evaluators:
                settings = types.SimpleNamespace(
                    fid_num_samples=args.num_samples, fid_batch_size=args.batch_size,
                    kid_subset_size=KID_SUBSET_SIZE, kid_num_subsets=KID_SUBSETS,
                )  # fmt: skip
                test_set = datasets.load(config, "test")
                evaluator = Evaluator.from_dataset(settings, test_set)
                # Outside the timed evaluation: the reference features (and compilation).
                evaluator.real_features()
                evaluators[data_key] = (evaluator, config)
            evaluator, data_config = evaluators[data_key]
            classifier, ceiling = None, None
            if config.conditional:
                if data_key not in classifiers:
                    classifiers[data_key] = _classifier_for(info)
                classifier, reason = classifiers[data_key]
                if classifier is not None:
                    ceiling = classifier.accuracy(evaluator.reference_images,
                                                  evaluator.reference_labels)  # fmt: skip
                    summary_extra["classifier_accuracy_real"] = ceiling
                else:
                    summary_extra["class_accuracy_note"] = reason
            result = evaluate_state(state, config.seed, evaluator, classifier)
            result["eval_seconds"] = round(result["eval_seconds"] + load_seconds, 3)
            epochs, epoch_seconds = read_epochs(job.workdir)
            record = {
                **base, **result, "epochs": epochs, "train_seconds": round(job.seconds, 3),
                "stopped_at_train_minutes": stopped_as_asked,
                "epoch_seconds_sum": epoch_seconds, "num_samples": evaluator.num,
                "reference": f"{evaluator.reference_name}[:{evaluator.num}]",
                "resize": evaluator.resize, "feature_dtype": evaluator.feature_dtype,
                **({"classifier_accuracy_real": ceiling} if ceiling is not None else {}),
                "device": device, "versions": versions, "command": job.command,
                "benchmark_command": benchmark_command,
            }  # fmt: skip
            records.append(record)
            common.emit(record)
            if floor is None:
                train_set = datasets.load(data_config, "train")
                floor = fid_floor(
                    evaluator, train_set.images, train_set.labels,
                    num_classes=info.num_classes,
                    train_name=f"{train_set.info.name}:train",
                )  # fmt: skip
                common.emit({"floor": True, "config": spec, **floor})
        summary = {
            "summary": True, "config": spec, "name": run_name(spec, args.override),
            "num_seeds": len(records), "seeds": [r["seed"] for r in records],
            "num_samples": records[0]["num_samples"] if records else args.num_samples,
            **summarise(records), **summary_extra, "floor": floor,
            "train_wall_seconds_all_configs": train_wall_seconds, "device": device,
            "benchmark_command": benchmark_command,
        }  # fmt: skip
        summaries.append(summary)
        common.emit(summary)
    print()
    print(markdown_table(summaries))
    print(f"\nDevice: {device['device_kind']} ({device['platform']}); {benchmark_command}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
