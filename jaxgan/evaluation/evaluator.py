"""Evaluation of a generator against a reference set: FID, KID, precision/recall,
density/coverage and the discriminator as a real-vs-fake classifier.

The reference set is the first N images of a named split (e.g. 'fashion_mnist:test'); the
generated set is N samples of the latents of a key (`evaluation_key` gives the training
loop's), drawn with the reference labels for a class-conditional model, so both sets share
one class distribution. Reference pool3 features are computed once and cached, keyed by the
reference's name, N, the resize convention, the feature precision and a digest of the images.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from jaxgan.core import GANState
from jaxgan.data import Dataset, default_cache_dir
from jaxgan.evaluation import report
from jaxgan.evaluation.generation import discriminator_logits, evaluation_key, generate_images
from jaxgan.evaluation.pipeline import Generated, generated_features
from jaxgan.evaluation.reference import reference_features
from jaxgan.metrics.device import (
    RealFeatureSummary,
    device_feature_metrics,
    device_real_summary,
)
from jaxgan.metrics.discriminator import discriminator_metrics
from jaxgan.metrics.features import (
    EvaluationInterrupted,
    FeatureFn,
    StopFn,
    check_resize,
    check_stop,
    inception_features,
)
from jaxgan.metrics.frechet import warn_if_small_sample

__all__ = [
    "FEATURE_DTYPES",
    "MIN_NUM_SAMPLES",
    "EvaluationInterrupted",
    "Evaluator",
    "Generated",
    "RealSummary",
    "discriminator_logits",
    "evaluation_key",
    "feature_metrics",
    "generate_images",
    "inception_batch_size",
    "reference_features",
    "summarise_real",
]

log = logging.getLogger(__name__)

FEATURE_DTYPES = ("float32", "bfloat16")
# Bump when the content of cached reference features changes.
_REFERENCE_CACHE_VERSION = 2
_SMALL_N_HINT = "raise config.fid_num_samples, or pass --num_samples=10000 to experiments.evaluate"
# Density/coverage need each real point's 5th nearest neighbour: 6 points (P/R, k=3, need 4).
MIN_NUM_SAMPLES = 6
# On CPU, Inception at batch 50 peaks at about 2.5 GB of memory, at 250 about 10 GB.
CPU_BATCH_SIZE = 50
MAX_BATCH_SIZE = 250
_BYTES_PER_IMAGE = 40 * 2**20


def inception_batch_size(requested: int = 0) -> int:
    """The evaluation batch size: `requested`, or for 0 one that fits the devices' memory.

    0 (auto): `CPU_BATCH_SIZE` on CPU; on GPU/TPU, per device, half of the first device's
    `memory_stats()['bytes_limit']` at 40 MB per image, at most `MAX_BATCH_SIZE` (which is
    also used when no limit is reported). The scores do not depend on it.
    """
    if requested:
        return requested
    device = jax.devices()[0]
    if device.platform == "cpu":
        return CPU_BATCH_SIZE
    limit = (device.memory_stats() or {}).get("bytes_limit")
    per_device = MAX_BATCH_SIZE
    if limit:
        per_device = int(np.clip(limit // 2 // _BYTES_PER_IMAGE, 1, MAX_BATCH_SIZE))
    return per_device * jax.device_count()


def _is_conditional(state: GANState) -> bool:
    return getattr(state, "num_classes", 0) > 1


# What the metrics need of the real features alone (mean, covariance and its factor, the
# k-th neighbour radii of precision/recall and density/coverage), computed once per reference.
RealSummary = RealFeatureSummary


def summarise_real(real_features: Any) -> RealSummary:
    """The `RealSummary` of reference features, for `feature_metrics(real_summary=...)`."""
    return device_real_summary(real_features)


def feature_metrics(
    real_features: Any,
    fake_features: Any,
    *,
    kid_subsets: int,
    kid_size: int,
    seed: int = 0,
    real_summary: RealSummary | None = None,
) -> dict[str, Any]:
    """FID, KID, precision/recall and density/coverage of two pool3 feature sets.

    Computed on the accelerator (`jaxgan.metrics.device`: float32 blocked passes, the
    Fréchet distance's eigenproblem in float64 on the host), equal to the float64 host
    references `frechet_distance`, `kid_from_features` and `prdc` to about 1e-7 relative
    (FID) and 1e-9 (KID), with the same P/R/D/C (`tests/test_device_metrics.py`).
    `real_summary` (`summarise_real(real_features)`) skips the work on the real features
    alone, for an evaluator that scores one generator after another; the results are the
    same bits.

    KID's subsets hold `min(kid_size, num_real, num_fake)` rows of each set. When that is
    all of both sets every subset is the same, so one is computed and `kid_std` is None
    (a spread of 0 would claim a precision KID does not have).

    Returns:
      {'fid', 'kid_mean', 'precision', 'recall', 'density', 'coverage': floats, 'kid_std':
       float or None, 'num_real', 'num_fake', 'kid_subset_size', 'kid_num_subsets': ints,
       'note': str}, the KID counts as used. Precision is the fraction of generated features
      inside the real manifold (fidelity), recall that of real features inside the generated
      one (diversity).
    """
    num_real, num_fake = len(real_features), len(fake_features)
    kid_size = min(kid_size, num_real, num_fake)
    one_subset = kid_size == num_real == num_fake
    kid_subsets = 1 if one_subset else kid_subsets
    results = device_feature_metrics(
        real_features, fake_features, kid_subsets=kid_subsets, kid_size=kid_size, seed=seed,
        real_summary=real_summary,
    )  # fmt: skip
    if one_subset:
        results["kid_std"] = None
    results.update(kid_subset_size=kid_size, kid_num_subsets=kid_subsets)
    return results


class Evaluator:
    """Scores `GANState`s against a reference set; built once per run.

    Args:
      config: uses fid_num_samples, fid_batch_size (0: `inception_batch_size`'s choice),
        kid_subset_size (clipped to N, with a warning) and kid_num_subsets.
      reference_images: uint8 [N, H, W, C] (or [N, H, W]) reference images, e.g. the test
        split; the first `fid_num_samples` are used.
      reference_labels: int [N] labels of the reference images. Needed to evaluate a
        class-conditional state, which generates with the same labels; ignored otherwise.
      reference_name: the reference's dataset and split, e.g. 'fashion_mnist:test'. It names
        the reference in every report and keys the feature cache.
      cache_dir: where reference features are cached (default `$JAXGAN_CACHE_DIR`, else
        `~/.cache/jaxgan`).
      resize: FID resize convention, see `jaxgan.metrics.features.inception_preprocess`.
      feature_dtype: precision of the Inception network, 'float32' (the reference) or
        'bfloat16'; named in every report.
      feature_fn: replaces the Inception network (for tests), see `inception_features`.

    Raises ValueError when N < `MIN_NUM_SAMPLES`; warns once (`SmallSampleWarning`) when
    N < 2048.
    """

    def __init__(
        self,
        config,
        reference_images: np.ndarray,
        reference_labels: np.ndarray | None = None,
        *,
        reference_name: str,
        cache_dir: str | Path | None = None,
        resize: str = "half_pixel",
        feature_dtype: str = "float32",
        feature_fn: FeatureFn | None = None,
    ):
        if feature_dtype not in FEATURE_DTYPES:
            raise ValueError(
                f"feature_dtype={feature_dtype!r} is invalid; allowed: {FEATURE_DTYPES}"
            )
        if reference_labels is not None and len(reference_labels) != len(reference_images):
            raise ValueError(
                f"{len(reference_labels)} reference labels for {len(reference_images)} images; "
                "allowed: one label per image"
            )
        self.num = min(config.fid_num_samples, len(reference_images))
        if config.fid_num_samples > len(reference_images):
            log.warning(
                "fid_num_samples=%d > %d reference images in %s; using %d",
                config.fid_num_samples, len(reference_images), reference_name, self.num,
            )  # fmt: skip
        if self.num < MIN_NUM_SAMPLES:
            raise ValueError(
                f"{reference_name} has {len(reference_images)} reference images and "
                f"fid_num_samples={config.fid_num_samples}, so N={self.num}; allowed: N >= "
                f"{MIN_NUM_SAMPLES} (density/coverage use 5 nearest neighbours)"
            )
        self.batch_size = inception_batch_size(config.fid_batch_size)
        self.kid_subsets = config.kid_num_subsets
        self.kid_size = min(config.kid_subset_size, self.num)
        if self.kid_size < config.kid_subset_size:
            log.warning(
                "KID subset size clipped from %d to %d (N): every subset is all N images, "
                "so KID has no spread; set kid_subset_size below N for one",
                config.kid_subset_size, self.num,
            )  # fmt: skip
        self.resize = check_resize(resize)
        self.feature_dtype = feature_dtype
        self.reference_name = reference_name
        self.reference_images = reference_images[: self.num]
        self.reference_labels = None
        if reference_labels is not None:
            self.reference_labels = np.asarray(reference_labels[: self.num], np.int32)
        self.cache_dir = Path(cache_dir) if cache_dir else default_cache_dir()
        self.feature_fn = feature_fn
        self._real_features: np.ndarray | None = None
        self._real_summary: RealSummary | None = None
        self._real_device: jax.Array | None = None
        warn_if_small_sample(self.num, self.num, _SMALL_N_HINT)

    @classmethod
    def from_dataset(cls, config, dataset: Dataset, **options: Any) -> Evaluator:
        """An Evaluator of a `jaxgan.data.Dataset` split, named like 'fashion_mnist:test'.

        `options` are the constructor's keyword arguments (cache_dir, resize, ...).
        """
        name = f"{dataset.info.name}:{dataset.split}"
        return cls(config, dataset.images, dataset.labels, reference_name=name, **options)

    def real_features(self, should_stop: StopFn | None = None) -> np.ndarray:
        """Pool3 features [N, D] of the reference images; computed (or read) once."""
        if self._real_features is None:
            self._real_features = reference_features(
                self.reference_images, name=self.reference_name, batch_size=self.batch_size,
                resize=self.resize, feature_dtype=self.feature_dtype, cache_dir=self.cache_dir,
                feature_fn=self.feature_fn, should_stop=should_stop,
            )  # fmt: skip
        return self._real_features

    def fake_labels(self, state: GANState) -> np.ndarray | None:
        """The labels to generate with: the reference labels for a conditional state."""
        if not _is_conditional(state):
            return None
        if self.reference_labels is None:
            raise ValueError(
                f"the state is class-conditional ({state.num_classes} classes) but the "
                "Evaluator has no reference_labels; pass the reference set's labels"
            )
        return self.reference_labels

    def fake_features(
        self, fake_images: np.ndarray, should_stop: StopFn | None = None
    ) -> np.ndarray:
        """Pool3 features [M, D] of generated images, with the reference's protocol."""
        return inception_features(
            fake_images, self.batch_size, progress=self.feature_fn is None,
            dtype=jnp.dtype(self.feature_dtype), resize=self.resize, feature_fn=self.feature_fn,
            should_stop=should_stop,
        )  # fmt: skip

    def generate(
        self, state: GANState, key: jax.Array, *, should_stop: StopFn | None = None
    ) -> tuple[np.ndarray, np.ndarray | None]:
        """N generated images, float32 [N, H, W, C] in [-1, 1], and their labels (or None)."""
        labels = self.fake_labels(state)
        images = generate_images(
            state, key, self.num, self.batch_size, labels, should_stop=should_stop
        )
        return images, labels

    def generated(
        self,
        state: GANState,
        key: jax.Array,
        *,
        should_stop: StopFn | None = None,
        keep_images: bool = False,
    ) -> tuple[Generated, np.ndarray | None]:
        """The pool3 features (on the device) and D's logits of N generated images, and
        their labels (or None): `jaxgan.evaluation.pipeline.generated_features`, the
        images never leaving the device unless `keep_images` (uint8)."""
        labels = self.fake_labels(state)
        generated = generated_features(
            state, key, self.num, self.batch_size, labels, feature_fn=self.feature_fn,
            dtype=jnp.dtype(self.feature_dtype), resize=self.resize, should_stop=should_stop,
            keep_images=keep_images, progress=self.feature_fn is None,
        )  # fmt: skip
        return generated, labels

    def score_generated(
        self, state: GANState, generated: Generated, should_stop: StopFn | None = None
    ) -> dict[str, Any]:
        """Every metric, from `generated`'s features and D's logits (see `generated`)."""
        return self._scores(state, generated.features, generated.d_logits, should_stop)

    def _scores(
        self,
        state: GANState,
        fake_features: Any,
        fake_logits: np.ndarray,
        should_stop: StopFn | None,
    ) -> dict[str, Any]:
        """Every metric, from the generated features and D's logits of the same images."""
        real_features = self.real_features(should_stop)
        if self._real_summary is None:  # Once per evaluator: every evaluation reuses them.
            self._real_device = jnp.asarray(real_features)
            self._real_summary = summarise_real(self._real_device)
        results = feature_metrics(
            self._real_device, fake_features, kid_subsets=self.kid_subsets,
            kid_size=self.kid_size, real_summary=self._real_summary,
        )  # fmt: skip
        check_stop(should_stop, "the discriminator metrics")
        real_labels = self.reference_labels if _is_conditional(state) else None
        d_scores = discriminator_metrics(
            discriminator_logits(state, self.reference_images, self.batch_size, real_labels),
            fake_logits,
        )
        results.update(
            {f"d_eval_{k}": float(d_scores[k]) for k in ("accuracy", "precision", "recall")}
        )
        results.update(
            step=int(jax.device_get(state.step)),
            reference=f"{self.reference_name}[:{self.num}]",
            resize=self.resize,
            feature_dtype=self.feature_dtype,
        )
        return results

    def score(
        self,
        state: GANState,
        fake_images: np.ndarray,
        fake_labels: np.ndarray | None = None,
        *,
        should_stop: StopFn | None = None,
    ) -> dict[str, Any]:
        """All metrics of given images (e.g. from `generate`), and of `state`'s D on them and
        on the reference. `evaluate` gives the same for the generator's own images without
        moving them through the host."""
        fake_features = self.fake_features(fake_images, should_stop)
        fake_logits = discriminator_logits(state, fake_images, self.batch_size, fake_labels)
        return self._scores(state, fake_features, fake_logits, should_stop)

    def evaluate(
        self, state: GANState, key: jax.Array, *, should_stop: StopFn | None = None
    ) -> dict[str, Any]:
        """All metrics of `state`'s generator (latents of `key`) and discriminator.

        The images go from the generator into Inception on the device (`generated`); the
        results are those of `score(state, *generate(state, key))`.
        `should_stop` is called between batches; when it returns True,
        `EvaluationInterrupted` is raised and nothing is returned.
        """
        generated, _ = self.generated(state, key, should_stop=should_stop)
        return self.score_generated(state, generated, should_stop)

    def write_report(self, results: dict[str, Any], path: str | Path) -> None:
        """Writes the result file (e.g. `fid_result.txt`); see `report.write_results`."""
        report.write_results(results, path)
