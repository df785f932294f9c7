"""Losses against values computed by hand."""

import math

import jax.numpy as jnp
import numpy as np
import pytest

from jaxgan.objectives import nonsaturating as losses


def test_bce_at_zero_logit_is_log2_for_both_labels():
    zeros = jnp.zeros(5)
    assert float(losses.binary_cross_entropy(zeros, True)) == pytest.approx(math.log(2))
    assert float(losses.binary_cross_entropy(zeros, False)) == pytest.approx(math.log(2))


def test_bce_hand_computed_values():
    logits = jnp.array([2.0, -1.0])
    # -log(sigmoid(2)) = log(1 + e^-2); -log(sigmoid(-1)) = log(1 + e)
    expected_real = (math.log1p(math.exp(-2)) + math.log1p(math.e)) / 2
    expected_fake = (math.log1p(math.exp(2)) + math.log1p(math.exp(-1))) / 2
    assert float(losses.binary_cross_entropy(logits, True)) == pytest.approx(expected_real)
    assert float(losses.binary_cross_entropy(logits, False)) == pytest.approx(expected_fake)


def test_discriminator_loss_is_the_sum_of_real_and_fake_terms():
    real_logits = jnp.array([3.0, 0.5, -0.2])
    fake_logits = jnp.array([-4.0, 1.0])
    expected = np.mean(np.log1p(np.exp(-np.array([3.0, 0.5, -0.2])))) + np.mean(
        np.log1p(np.exp(np.array([-4.0, 1.0])))
    )
    assert float(losses.discriminator_loss(real_logits, fake_logits)) == pytest.approx(expected)


def test_generator_loss_is_non_saturating():
    # -log D(G(z)): large when D confidently rejects the fakes, with a non-vanishing gradient.
    assert float(losses.generator_loss(jnp.array([-20.0]))) == pytest.approx(20.0, rel=1e-6)
    assert float(losses.generator_loss(jnp.array([20.0]))) == pytest.approx(0.0, abs=1e-6)


def test_losses_are_stable_and_float32_for_extreme_bfloat16_logits():
    logits = jnp.array([-1e4, 1e4], jnp.bfloat16)
    loss = losses.discriminator_loss(logits, logits)
    assert loss.dtype == jnp.float32
    assert np.isfinite(float(loss))
