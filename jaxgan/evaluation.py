"""Evaluation of a generator: FID, KID, precision/recall, density/coverage, D metrics.

The reference set is the first N images of FashionMNIST's test split; the generated set
is N fresh samples. Reference pool3 features are computed once and cached.
"""

from __future__ import annotations

import logging
import os
import tempfile
import warnings
from pathlib import Path
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from jaxgan import data
from jaxgan.metrics.classifier import discriminator_metrics
from jaxgan.metrics.fid import (
    POOL3_DIM,
    feature_statistics,
    frechet_distance,
    inception_features,
)
from jaxgan.metrics.kid import kid_from_features
from jaxgan.metrics.prdc import prdc
from jaxgan.train import GANState, images_to_float

log = logging.getLogger(__name__)

REFERENCE_SPLIT = "fashion_mnist test"
PROTOCOL = (
    "FID protocol: uint8 images (generated [-1,1] floats as (x*127.5+128).clip(0,255) "
    "truncated to uint8); gray tiled to RGB; bilinear resize to 299x299 ({resize}); "
    "(x-128)/128; pool3 [2048] of the TF 2015-12-05 Inception-v3 (FID network of "
    "TTUR/pytorch-fid/NVIDIA); mean and covariance in float64; "
    "FID = |mu1-mu2|^2 + Tr(S1 + S2 - 2 sqrtm(S1 S2)) with scipy.linalg.sqrtm. "
    "KID: unbiased MMD^2, cubic polynomial kernel, {kid_subsets} subsets of {kid_size}. "
    "Precision/recall: Kynkaanniemi et al. 2019, k=3; density/coverage: Naeem et al. 2020, "
    "k=5; all on Inception pool3 features. D metrics: D as a real-vs-fake classifier, "
    "threshold 0.5 on sigmoid(logit), on the held-out test reals vs the generated images."
)


@jax.jit
def _generate(state: GANState, latents: jax.Array) -> jax.Array:
    variables = {"params": state.g_params, "batch_stats": state.g_batch_stats}
    return state.generator.apply(variables, latents, train=False)


@jax.jit
def _discriminate(state: GANState, images: jax.Array) -> jax.Array:
    variables = {"params": state.d_params, "batch_stats": state.d_batch_stats}
    return state.discriminator.apply(variables, images, train=False)


def generate_images(state: GANState, key: jax.Array, num: int, batch_size: int) -> np.ndarray:
    """`num` generated images, float32 [num, 28, 28, 1] in [-1, 1], on the host."""
    batches = []
    for start in range(0, num, batch_size):
        latents = jax.random.normal(
            jax.random.fold_in(key, start), (batch_size, state.latent_dim), jnp.float32
        )
        batches.append(np.asarray(_generate(state, latents)))
    return np.concatenate(batches)[:num]


def discriminator_logits(state: GANState, images: np.ndarray, batch_size: int) -> np.ndarray:
    """D's logits [N] in inference mode, for uint8 [N, 28, 28] or float [-1, 1] images."""
    logits = []
    for start in range(0, len(images), batch_size):
        batch = images[start : start + batch_size]
        count = len(batch)
        if count < batch_size:  # Pad so that D compiles once.
            batch = np.concatenate([batch, np.repeat(batch[-1:], batch_size - count, axis=0)])
        batch = jnp.asarray(batch)
        if batch.dtype == jnp.uint8:
            batch = images_to_float(batch)
        logits.append(np.asarray(_discriminate(state, batch))[:count])
    return np.concatenate(logits)


def _atomic_savez(path: Path, **arrays: np.ndarray) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.NamedTemporaryFile(dir=path.parent, suffix=".tmp", delete=False) as tmp:
        np.savez(tmp, **arrays)
    os.replace(tmp.name, path)


def reference_features(
    test_images: np.ndarray,
    num: int,
    *,
    batch_size: int,
    resize: str,
    cache_dir: Path | None,
    feature_fn=None,
) -> np.ndarray:
    """Pool3 features [num, 2048] of the first `num` test images, cached on disk.

    With a custom `feature_fn` (tests) or `cache_dir=None` nothing is cached.
    """
    if feature_fn is not None or cache_dir is None:
        return inception_features(
            test_images[:num], batch_size, feature_fn=feature_fn, resize=resize
        )
    path = cache_dir / f"fid_features_fashion_mnist_test_{num}_{resize}_v1.npz"
    try:
        with np.load(path) as cached:
            features = cached["features"]
        if features.shape == (num, POOL3_DIM) and np.isfinite(features).all():
            return features
        log.warning("Recomputing malformed reference features %s", path)
    except FileNotFoundError:
        pass
    except Exception as error:  # noqa: BLE001 - any unreadable cache is rebuilt
        log.warning("Recomputing unreadable reference features %s (%s)", path, error)
    log.info("Computing Inception features of %d test images (cached in %s)", num, path)
    features = inception_features(test_images[:num], batch_size, progress=True, resize=resize)
    try:
        _atomic_savez(path, features=features)
    except OSError as error:
        log.warning("Could not cache reference features in %s (%s)", path, error)
    return features


def feature_metrics(
    real_features: np.ndarray,
    fake_features: np.ndarray,
    *,
    kid_subsets: int,
    kid_size: int,
    seed: int = 0,
) -> dict[str, Any]:
    """FID, KID, precision/recall and density/coverage of two pool3 feature sets."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        real_mu, real_sigma = feature_statistics(real_features)
        fake_mu, fake_sigma = feature_statistics(fake_features)
    kid_mean, kid_std = kid_from_features(
        real_features, fake_features, num_subsets=kid_subsets, subset_size=kid_size, seed=seed
    )
    scores = prdc(real_features, fake_features)
    return {
        "fid": frechet_distance(real_mu, real_sigma, fake_mu, fake_sigma),
        "kid_mean": kid_mean,
        "kid_std": kid_std,
        "precision": scores["precision"],
        "recall": scores["recall"],
        "density": scores["density"],
        "coverage": scores["coverage"],
        "num_real": len(real_features),
        "num_fake": len(fake_features),
        "note": scores["note"],
    }


class Evaluator:
    """Scores a `GANState` against the test split; built once per run.

    Args:
      config: uses fid_num_samples, fid_batch_size, kid_subset_size, kid_num_subsets.
      workdir: unused; kept for the loop's factory signature.
      test_images: uint8 [10000, 28, 28] test split.
      cache_dir: where reference features are cached (default `data.default_cache_dir()`).
      resize: FID resize convention, see `jaxgan.metrics.fid.inception_preprocess`.
      feature_fn: replaces the Inception network (for tests), see `inception_features`.
    """

    def __init__(
        self,
        config,
        workdir,
        test_images: np.ndarray,
        *,
        cache_dir: str | Path | None = None,
        resize: str = "half_pixel",
        feature_fn=None,
    ):
        del workdir
        self.num = min(config.fid_num_samples, len(test_images))
        if config.fid_num_samples > len(test_images):
            log.warning(
                "fid_num_samples=%d > %d test images; using %d",
                config.fid_num_samples,
                len(test_images),
                self.num,
            )
        self.batch_size = config.fid_batch_size
        self.kid_subsets = config.kid_num_subsets
        self.kid_size = min(config.kid_subset_size, self.num)
        self.resize = resize
        self.test_images = test_images[: self.num]
        self.cache_dir = Path(cache_dir) if cache_dir else data.default_cache_dir()
        self.feature_fn = feature_fn
        self._real_features: np.ndarray | None = None

    @property
    def real_features(self) -> np.ndarray:
        if self._real_features is None:
            self._real_features = reference_features(
                self.test_images,
                self.num,
                batch_size=self.batch_size,
                resize=self.resize,
                cache_dir=self.cache_dir,
                feature_fn=self.feature_fn,
            )
        return self._real_features

    def evaluate(self, state: GANState, key: jax.Array) -> dict[str, Any]:
        """All metrics of `state`'s generator and discriminator; floats plus provenance."""
        fake_images = generate_images(state, key, self.num, self.batch_size)
        with warnings.catch_warnings():
            # The loop records N next to every score; the small-N warning is for API users.
            warnings.simplefilter("ignore", UserWarning)
            fake_features = inception_features(
                fake_images,
                self.batch_size,
                progress=self.feature_fn is None,
                resize=self.resize,
                feature_fn=self.feature_fn,
            )
        results = feature_metrics(
            self.real_features,
            fake_features,
            kid_subsets=self.kid_subsets,
            kid_size=self.kid_size,
        )
        d_scores = discriminator_metrics(
            discriminator_logits(state, self.test_images, self.batch_size),
            discriminator_logits(state, fake_images, self.batch_size),
        )
        results.update(
            {f"d_eval_{k}": float(d_scores[k]) for k in ("accuracy", "precision", "recall")}
        )
        results["step"] = int(jax.device_get(state.step))
        results["reference"] = f"{REFERENCE_SPLIT}[:{self.num}]"
        results["resize"] = self.resize
        results["kid_subset_size"] = self.kid_size
        results["kid_num_subsets"] = self.kid_subsets
        return results

    def write_report(self, results: dict[str, Any], path: str | Path) -> None:
        write_report(results, path)


def write_report(results: dict[str, Any], path: str | Path) -> None:
    """Writes the human-readable `fid_result.txt`, atomically."""
    lines = [
        f"FID: {results['fid']:.4f}",
        f"KID: {results['kid_mean']:.6f} +- {results['kid_std']:.6f} "
        f"({results['kid_num_subsets']} subsets of {results['kid_subset_size']})",
        f"Precision (k=3): {results['precision']:.4f}",
        f"Recall (k=3): {results['recall']:.4f}",
        f"Density (k=5): {results['density']:.4f}",
        f"Coverage (k=5): {results['coverage']:.4f}",
    ]
    if "d_eval_accuracy" in results:
        lines += [
            f"Discriminator accuracy: {results['d_eval_accuracy']:.4f}",
            f"Discriminator precision: {results['d_eval_precision']:.4f}",
            f"Discriminator recall: {results['d_eval_recall']:.4f}",
        ]
    lines += [
        f"N real: {results['num_real']}",
        f"N fake: {results['num_fake']}",
        f"Reference: {results['reference']}",
    ]
    if "step" in results:
        lines.append(f"Checkpoint step: {results['step']}")
    if results.get("note"):
        lines.append(f"Note: {results['note']}")
    lines.append(
        PROTOCOL.format(
            resize=results["resize"],
            kid_subsets=results["kid_num_subsets"],
            kid_size=results["kid_subset_size"],
        )
    )
    path = Path(path)
    tmp = path.with_suffix(path.suffix + ".tmp")
    tmp.write_text("\n".join(lines) + "\n")
    os.replace(tmp, path)
