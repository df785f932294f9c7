"""Sample-quality metrics on the standard FID Inception-v3 pool3 features.

Note: the functions `fid`, `kid` and `prdc` shadow the submodules of the same names as
attributes of this package; import a submodule with `import jaxgan.metrics.fid as fid_lib`.
"""

from jaxgan.metrics.classifier import discriminator_metrics
from jaxgan.metrics.fid import (
    RESIZE_MODES,
    FIDStatistics,
    feature_statistics,
    fid,
    frechet_distance,
    image_statistics,
    inception_features,
    inception_preprocess,
    load_statistics,
    save_statistics,
    to_uint8,
)
from jaxgan.metrics.kid import kid, kid_from_features, mmd2_unbiased
from jaxgan.metrics.prdc import density_coverage, prdc, precision_recall

__all__ = [
    "RESIZE_MODES",
    "FIDStatistics",
    "density_coverage",
    "discriminator_metrics",
    "feature_statistics",
    "fid",
    "frechet_distance",
    "image_statistics",
    "inception_features",
    "inception_preprocess",
    "kid",
    "kid_from_features",
    "load_statistics",
    "mmd2_unbiased",
    "prdc",
    "precision_recall",
    "save_statistics",
    "to_uint8",
]
