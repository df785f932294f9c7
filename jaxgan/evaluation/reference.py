"""The reference set's pool3 features, computed once and cached on disk.

The cache key holds the reference's name (dataset and split), N, the resize convention, the
feature precision and a digest of the images, so that no other set of images can be
mistaken for this one.
"""

from __future__ import annotations

import hashlib
import logging
from pathlib import Path

import jax.numpy as jnp
import numpy as np

from jaxgan import fileio
from jaxgan.data.base import file_name_part
from jaxgan.metrics.features import POOL3_DIM, FeatureFn, StopFn, inception_features

__all__ = ["reference_cache_path", "reference_features"]

log = logging.getLogger(__name__)

# Bump when the content of cached reference features changes.
_REFERENCE_CACHE_VERSION = 2


def reference_cache_path(
    cache_dir: str | Path, name: str, images: np.ndarray, resize: str, feature_dtype: str
) -> Path:
    """Where the pool3 features of reference `images` are cached.

    The file name holds the reference's name (dataset and split), N, the resize convention,
    the feature precision and a digest of the images' bytes and shape, so that no other set
    of images can be mistaken for this one.
    """
    digest = hashlib.sha256(str(images.shape).encode())
    digest.update(np.ascontiguousarray(images).tobytes())
    file_name = (
        f"fid_features_{file_name_part(name)}_n{len(images)}_{resize}_{feature_dtype}_"
        f"{digest.hexdigest()[:12]}_v{_REFERENCE_CACHE_VERSION}.npz"
    )
    return Path(cache_dir) / file_name


def reference_features(
    images: np.ndarray,
    *,
    name: str,
    batch_size: int,
    resize: str,
    feature_dtype: str = "float32",
    cache_dir: str | Path | None,
    feature_fn: FeatureFn | None = None,
    should_stop: StopFn | None = None,
) -> np.ndarray:
    """Pool3 features [N, 2048] of reference images, cached on disk (see `reference_cache_path`).

    With a custom `feature_fn` (tests) or `cache_dir=None` nothing is cached.
    """

    def compute(progress: bool) -> np.ndarray:
        return inception_features(
            images, batch_size, feature_fn=feature_fn, progress=progress,
            dtype=jnp.dtype(feature_dtype), resize=resize, should_stop=should_stop,
        )  # fmt: skip

    if feature_fn is not None or cache_dir is None:
        return compute(progress=False)
    path = reference_cache_path(cache_dir, name, images, resize, feature_dtype)
    try:
        with np.load(path) as cached:
            features = cached["features"]
        if features.shape == (len(images), POOL3_DIM) and np.isfinite(features).all():
            return features
        log.warning("Recomputing malformed reference features %s", path)
    except FileNotFoundError:
        pass
    except Exception as error:  # noqa: BLE001 - any unreadable cache is rebuilt
        log.warning("Recomputing unreadable reference features %s (%s)", path, error)
    log.info("Computing Inception features of %d %s images (cached in %s)", len(images), name, path)
    features = compute(progress=True)
    try:
        fileio.atomic_savez(path, features=features)
    except OSError as error:
        log.warning("Could not cache reference features in %s (%s)", path, error)
    return features
