"""The discriminator scored as a binary classifier of real (positive) against generated images."""

from __future__ import annotations

import math
import numbers
from typing import Any

import numpy as np


def _validated_logits(logits: Any, name: str) -> np.ndarray:
    array = np.asarray(logits)
    # JAX's bfloat16 is not a numpy floating type, but converts exactly to float64.
    is_real_number = array.dtype.name == "bfloat16" or (
        array.dtype != np.bool_
        and (np.issubdtype(array.dtype, np.floating) or np.issubdtype(array.dtype, np.integer))
    )
    if not is_real_number:
        raise ValueError(f"{name} have dtype {array.dtype}; allowed: real numbers")
    if not (array.ndim == 1 or (array.ndim == 2 and array.shape[1] == 1)):
        raise ValueError(f"{name} have shape {array.shape}; allowed: [N] or [N, 1]")
    if array.shape[0] == 0:
        raise ValueError(f"{name} are empty; at least one logit is needed")
    array = array.astype(np.float64).reshape(-1)
    if not np.isfinite(array).all():
        raise ValueError(f"{name} contain NaN or Inf")
    return array


def discriminator_metrics(
    real_logits: Any, fake_logits: Any, threshold: float = 0.5
) -> dict[str, float | int]:
    """Accuracy, precision and recall of D as a classifier with "real" as the positive class.

    An image is predicted real when sigmoid(logit) > threshold (strictly, so with the default
    threshold a logit of exactly 0 counts as "generated"). The comparison is made on logits,
    logit > log(threshold / (1 - threshold)), in float64, so saturated sigmoids do not round to
    1 (and the default threshold is exactly logit 0).

    Args:
        real_logits: [N] or [N, 1] D logits on real images, N >= 1, finite.
        fake_logits: [M] or [M, 1] D logits on generated images, M >= 1, finite.
        threshold: probability threshold in (0, 1).

    Returns:
        Python numbers:
        - 'accuracy': (tp + tn) / (N + M);
        - 'precision': tp / (tp + fp), defined as 0.0 when nothing is predicted real (the
          `zero_division` default of scikit-learn), so that logged metrics stay finite;
        - 'recall': tp / N, the accuracy on real images;
        - 'tp', 'fp', 'tn', 'fn': real predicted real, generated predicted real, generated
          predicted generated, real predicted generated;
        - 'num_real': N, 'num_fake': M.

    Raises:
        ValueError: on empty, non-finite or mis-shaped logits, or a threshold outside (0, 1).
    """
    real_logits = _validated_logits(real_logits, "real_logits")
    fake_logits = _validated_logits(fake_logits, "fake_logits")
    if (
        isinstance(threshold, bool)
        or not isinstance(threshold, numbers.Real)
        or not 0 < threshold < 1
    ):
        raise ValueError(f"threshold must be a probability in (0, 1), got {threshold!r}")
    logit_threshold = math.log(threshold / (1 - threshold))
    true_positives = int(np.sum(real_logits > logit_threshold))
    false_positives = int(np.sum(fake_logits > logit_threshold))
    num_real, num_fake = len(real_logits), len(fake_logits)
    false_negatives = num_real - true_positives
    true_negatives = num_fake - false_positives
    predicted_real = true_positives + false_positives
    return {
        "accuracy": (true_positives + true_negatives) / (num_real + num_fake),
        "precision": true_positives / predicted_real if predicted_real else 0.0,
        "recall": true_positives / num_real,
        "tp": true_positives,
        "fp": false_positives,
        "tn": true_negatives,
        "fn": false_negatives,
        "num_real": num_real,
        "num_fake": num_fake,
    }
