"""Tests of the discriminator-as-classifier metrics on hand-computed logits."""

import jax.numpy as jnp
import numpy as np
import pytest

from jaxgan.metrics import discriminator as classifier


def test_hand_computed_counts_at_the_default_threshold():
    # Predicted real iff logit > 0: reals 2.0 and 0.5 (not -1.0, not exactly 0.0); fake 1.0.
    real_logits = np.array([2.0, -1.0, 0.5, 0.0])
    fake_logits = np.array([-3.0, 1.0, -0.2])
    metrics = classifier.discriminator_metrics(real_logits, fake_logits)
    assert metrics == {
        "accuracy": 4 / 7,
        "precision": 2 / 3,
        "recall": 2 / 4,
        "tp": 2,
        "fp": 1,
        "tn": 2,
        "fn": 2,
        "num_real": 4,
        "num_fake": 3,
    }


def test_threshold_is_a_probability():
    # sigmoid(2.0) = 0.881 and sigmoid(2.5) = 0.924: only 2.5 clears 0.9.
    metrics = classifier.discriminator_metrics(
        np.array([2.0, 2.5]), np.array([-5.0, 3.0]), threshold=0.9
    )
    assert (metrics["tp"], metrics["fn"], metrics["fp"], metrics["tn"]) == (1, 1, 1, 1)


def test_precision_is_zero_when_nothing_is_predicted_real():
    metrics = classifier.discriminator_metrics(np.array([-1.0, -2.0]), np.array([-3.0]))
    assert metrics["precision"] == 0.0
    assert metrics["recall"] == 0.0
    assert metrics["accuracy"] == pytest.approx(1 / 3)


def test_accepts_column_vectors_and_jax_arrays():
    real_logits = jnp.array([[3.0], [-1.0]], jnp.bfloat16)
    fake_logits = jnp.array([-2.0, -4.0, 0.25], jnp.float32)
    metrics = classifier.discriminator_metrics(real_logits, fake_logits)
    assert (metrics["tp"], metrics["fn"], metrics["fp"], metrics["tn"]) == (1, 1, 1, 2)
    assert all(isinstance(metrics[key], int) for key in ("tp", "fp", "tn", "fn"))
    assert isinstance(metrics["accuracy"], float)


@pytest.mark.parametrize(
    ("real_logits", "fake_logits", "threshold"),
    [
        (np.zeros(0), np.zeros(3), 0.5),
        (np.zeros(3), np.array([0.0, np.nan]), 0.5),
        (np.zeros((3, 2)), np.zeros(3), 0.5),
        (np.zeros(3), np.zeros(3, bool), 0.5),
        (np.zeros(3), np.zeros(3), 0.0),
        (np.zeros(3), np.zeros(3), 1.0),
        (np.zeros(3), np.zeros(3), 1.5),
        (np.zeros(3), np.zeros(3), True),
    ],
)
def test_rejects_bad_inputs(real_logits, fake_logits, threshold):
    with pytest.raises(ValueError):
        classifier.discriminator_metrics(real_logits, fake_logits, threshold)
