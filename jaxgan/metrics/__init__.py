"""Sample-quality metrics on the standard FID Inception-v3 pool3 features.

One concern per module, none named like a function it holds:

- `features`: the FID protocol's quantisation, resize and pool3 extraction;
- `frechet`: Gaussian statistics, the Fréchet distance and image-level `fid`;
- `mmd`: kernel Inception distance, `kid`;
- `manifold`: precision/recall and density/coverage of k-NN manifolds;
- `discriminator`: the discriminator scored as a real-vs-fake classifier;
- `inception`: the Inception network and its weight files.
"""

from jaxgan.metrics.discriminator import discriminator_metrics
from jaxgan.metrics.features import (
    POOL3_DIM,
    RESIZE_MODES,
    EvaluationInterrupted,
    inception_features,
    inception_preprocess,
    to_uint8,
)
from jaxgan.metrics.frechet import (
    FIDStatistics,
    SmallSampleWarning,
    feature_statistics,
    fid,
    frechet_distance,
    image_statistics,
    load_statistics,
    save_statistics,
)
from jaxgan.metrics.manifold import density_coverage, prdc, precision_recall
from jaxgan.metrics.mmd import kid, kid_from_features, mmd2_unbiased

__all__ = [
    "POOL3_DIM",
    "RESIZE_MODES",
    "EvaluationInterrupted",
    "FIDStatistics",
    "SmallSampleWarning",
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
