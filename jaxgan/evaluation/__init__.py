"""Evaluation: the evaluator of a run, class accuracy, reports, plots, and the library
parts of `experiments.evaluate` (`offline`) and `experiments.generate` (`generation`).

The metrics themselves (FID, KID, precision/recall, density/coverage) are in
`jaxgan.metrics`, a lower layer that knows nothing of GAN states.
"""

from jaxgan.evaluation.evaluator import (
    FEATURE_DTYPES,
    MIN_NUM_SAMPLES,
    EvaluationInterrupted,
    Evaluator,
    Generated,
    RealSummary,
    discriminator_logits,
    evaluation_key,
    feature_metrics,
    generate_images,
    inception_batch_size,
    reference_features,
    summarise_real,
)
from jaxgan.evaluation.pipeline import generated_features

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
    "generated_features",
    "inception_batch_size",
    "reference_features",
    "summarise_real",
]
