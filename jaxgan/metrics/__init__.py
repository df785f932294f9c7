"""Sample-quality metrics on the standard FID Inception-v3 pool3 features.

One concern per module, none named like a function it holds:

- `features`: the FID protocol's quantisation, resize and pool3 extraction;
- `frechet`: Gaussian statistics, the Fréchet distance and image-level `fid`;
- `statistics_file`: FID statistics saved to and read from .npz files;
- `mmd`: kernel Inception distance, `kid`;
- `manifold`: precision/recall and density/coverage of k-NN manifolds;
- `device`: all of the above computed on the accelerator (float32 `blocked` passes, float64
  eigenvalues on the host), `device_feature_metrics` and its `device_real_summary`;
- `discriminator`: the discriminator scored as a real-vs-fake classifier;
- `inception`: the Inception network and its weight files.
"""

from jaxgan.metrics.device import (
    RealFeatureSummary,
    device_feature_metrics,
    device_feature_statistics,
    device_kid,
    device_prdc,
    device_real_radii,
    device_real_summary,
    frechet_distance_eigh,
)
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
)
from jaxgan.metrics.manifold import density_coverage, prdc, precision_recall
from jaxgan.metrics.mmd import kid, kid_from_features, kid_subset_indices, mmd2_unbiased
from jaxgan.metrics.statistics_file import load_statistics, save_statistics

__all__ = [
    "POOL3_DIM",
    "RESIZE_MODES",
    "EvaluationInterrupted",
    "FIDStatistics",
    "RealFeatureSummary",
    "SmallSampleWarning",
    "density_coverage",
    "device_feature_metrics",
    "device_feature_statistics",
    "device_kid",
    "device_prdc",
    "device_real_radii",
    "device_real_summary",
    "discriminator_metrics",
    "feature_statistics",
    "fid",
    "frechet_distance",
    "frechet_distance_eigh",
    "image_statistics",
    "inception_features",
    "inception_preprocess",
    "kid",
    "kid_from_features",
    "kid_subset_indices",
    "load_statistics",
    "mmd2_unbiased",
    "prdc",
    "precision_recall",
    "save_statistics",
    "to_uint8",
]
