"""Objectives: losses and metrics on hand-computed logits, the registry, and their schedules."""

from __future__ import annotations

import dataclasses
import math

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxgan import objectives
from jaxgan.core import create_state, train_step
from jaxgan.objectives import (
    OBJECTIVES,
    WGANGP,
    CriticInputs,
    Hinge,
    NonSaturating,
    Objective,
    build_objective,
    gradient_penalty,
    register,
)

REAL_LOGITS = jnp.array([2.0, -1.0, -0.5])
FAKE_LOGITS = jnp.array([-3.0, 0.0, 1.0])
IMAGE_SHAPE = (4, 4, 1)


def _softplus(values) -> np.ndarray:
    return np.log1p(np.exp(np.asarray(values, np.float64)))


def _linear_critic(weights):
    """D(x) = sum(w * x) per image: its input gradient is `weights` everywhere."""
    return lambda images: jnp.sum(images * weights, axis=(1, 2, 3))


def _inputs(critic, batch=3, seed=0) -> CriticInputs:
    rng = np.random.default_rng(seed)
    real = jnp.asarray(rng.uniform(-1, 1, (batch, *IMAGE_SHAPE)), jnp.float32)
    fake = jnp.asarray(rng.uniform(-1, 1, (batch, *IMAGE_SHAPE)), jnp.float32)
    return CriticInputs(critic, real, fake, jax.random.key(seed))


def _floats(metrics) -> dict[str, float]:
    return {name: float(value) for name, value in metrics.items()}


def test_nonsaturating_losses_and_metrics_on_hand_computed_logits():
    # Catches swapped real/fake terms, a saturating G loss, d_real as a logit, and an
    # accuracy that counts a fake logit of exactly 0 as "real".
    loss, metrics = NonSaturating().d_loss(REAL_LOGITS, FAKE_LOGITS, None)
    expected = _softplus(-np.array([2.0, -1.0, -0.5])).mean() + _softplus([-3.0, 0.0, 1.0]).mean()
    sigmoid = lambda x: 1 / (1 + np.exp(-np.array(x)))  # noqa: E731
    assert float(loss) == pytest.approx(expected, rel=1e-6)
    assert _floats(metrics) == pytest.approx(
        {
            "d_loss": expected,
            "d_real": sigmoid([2.0, -1.0, -0.5]).mean(),
            "d_fake": sigmoid([-3.0, 0.0, 1.0]).mean(),
            "d_real_acc": 1 / 3,
            "d_fake_acc": 2 / 3,
        },
        rel=1e-6,
    )
    g_loss, g_metrics = NonSaturating().g_loss(FAKE_LOGITS)
    # -mean log sigmoid(f), not mean log(1 - sigmoid(f)).
    assert float(g_loss) == pytest.approx(_softplus([3.0, 0.0, -1.0]).mean(), rel=1e-6)
    assert _floats(g_metrics) == pytest.approx({"g_loss": float(g_loss)})


def test_hinge_losses_and_metrics_on_hand_computed_logits():
    # Catches relu(1 + x) for reals / relu(1 - y) for fakes, a missing relu, and G = +mean.
    real_logits, fake_logits = jnp.array([2.0, 0.5, -1.0]), jnp.array([-2.0, 0.0, 3.0])
    loss, metrics = Hinge().d_loss(real_logits, fake_logits, None)
    # relu(1 - r) = [0, 0.5, 2] -> 2.5/3; relu(1 + f) = [0, 1, 4] -> 5/3.
    assert float(loss) == pytest.approx(2.5)
    assert _floats(metrics) == pytest.approx(
        {
            "d_loss": 2.5,
            "d_real_logit": 0.5,
            "d_fake_logit": 1 / 3,
            "d_real_acc": 2 / 3,
            "d_fake_acc": 2 / 3,
        }
    )
    g_loss, g_metrics = Hinge().g_loss(fake_logits)
    assert float(g_loss) == pytest.approx(-1 / 3)
    assert _floats(g_metrics) == pytest.approx({"g_loss": -1 / 3})


def test_gradient_penalty_of_a_linear_critic_is_its_norm_minus_one_squared():
    # The gradient of sum(w * x) is w at every interpolate: GP = (||w|| - 1)^2 exactly.
    # Catches a squared norm instead of a norm, or a missing "- 1".
    weights = jnp.full(IMAGE_SHAPE, 0.75)  # ||w|| = 0.75 * 4 = 3
    assert float(gradient_penalty(_inputs(_linear_critic(weights)))) == pytest.approx(4.0, 1e-5)
    unit = weights / 3.0
    assert float(gradient_penalty(_inputs(_linear_critic(unit)))) == pytest.approx(0.0, abs=1e-6)


def test_gradient_penalty_is_taken_at_random_interpolates_of_real_and_fake():
    # D(x) = ||x||^2 / 2 has gradient x. With reals of norm 2 and fakes 0, the gradient norm
    # at e * real + (1 - e) * fake is 2e, so GP = mean (2e - 1)^2, 1/3 in expectation for
    # e ~ U[0, 1]; at the reals or at the fakes alone it would be exactly 1.
    critic = lambda images: 0.5 * jnp.sum(jnp.square(images), axis=(1, 2, 3))  # noqa: E731
    batch = 256
    real = jnp.full((batch, *IMAGE_SHAPE), 0.5)  # norm 0.5 * 4 = 2
    fake = jnp.zeros_like(real)
    penalties = [
        float(gradient_penalty(CriticInputs(critic, real, fake, jax.random.key(seed))))
        for seed in (0, 1)
    ]
    assert all(0.2 < penalty < 0.5 for penalty in penalties), penalties
    assert penalties[0] != penalties[1]  # the mix is drawn from the key


def test_wgan_gp_loss_is_the_negated_wasserstein_estimate_plus_the_weighted_penalty():
    # Catches the critic's signs swapped (maximising D on fakes) and gp_weight ignored.
    weights = jnp.full(IMAGE_SHAPE, 0.75)  # GP = 4
    objective = WGANGP(gp_weight=2.5)
    loss, metrics = objective.d_loss(REAL_LOGITS, FAKE_LOGITS, _inputs(_linear_critic(weights)))
    wasserstein = np.mean([2.0, -1.0, -0.5]) - np.mean([-3.0, 0.0, 1.0])  # 0.5
    assert _floats(metrics) == pytest.approx(
        {"d_loss": -wasserstein + 2.5 * 4.0, "wasserstein": wasserstein, "gp": 4.0}, rel=1e-5
    )
    assert float(loss) == pytest.approx(-wasserstein + 10.0, rel=1e-5)
    g_loss, g_metrics = objective.g_loss(FAKE_LOGITS)
    assert float(g_loss) == pytest.approx(-np.mean([-3.0, 0.0, 1.0]))
    assert _floats(g_metrics) == {"g_loss": float(g_loss)}


@pytest.mark.parametrize("name", ["nonsaturating", "hinge", "wgan_gp"])
def test_declared_metric_keys_are_the_keys_each_loss_returns(name):
    # The loop and the logs rely on d_metrics/g_metrics; a key added to one and not the other
    # (e.g. an accuracy left in wgan_gp's declaration) fails here.
    objective = OBJECTIVES[name]()
    _, d_metrics = objective.d_loss(REAL_LOGITS, FAKE_LOGITS, _inputs(_linear_critic(1.0)))
    _, g_metrics = objective.g_loss(FAKE_LOGITS)
    assert tuple(d_metrics) == objective.d_metrics
    assert tuple(g_metrics) == objective.g_metrics
    assert objective.name == name


def test_build_objective_takes_its_settings_from_the_config_and_refuses_unknown_names():
    # Catches gp_weight or d_steps dropped on the way from the config.
    config = dict(loss="wgan_gp", d_steps=5, gp_weight=3.0)
    built = build_objective(type("Config", (), config))
    assert built == WGANGP(d_steps=5, gp_weight=3.0)
    assert build_objective(type("Config", (), {**config, "loss": "hinge"})) == Hinge(d_steps=5)
    with pytest.raises(ValueError, match="lsgan") as error:
        build_objective(type("Config", (), {**config, "loss": "lsgan"}))
    for known in ("nonsaturating", "hinge", "wgan_gp"):
        assert known in str(error.value)


@dataclasses.dataclass(frozen=True)
class LeastSquares(Objective):
    """LSGAN (Mao et al. 2017), defined outside the library. Reports D's mean real logit."""

    name = "least_squares_test"
    d_metrics = ("d_loss", "d_real_mean")
    g_metrics = ("g_loss", "g_fake_mean")

    def d_loss(self, real_logits, fake_logits, inputs):
        loss = 0.5 * jnp.mean(jnp.square(real_logits - 1.0)) + 0.5 * jnp.mean(
            jnp.square(fake_logits)
        )
        return loss, {"d_loss": loss, "d_real_mean": real_logits.mean()}

    def g_loss(self, fake_logits):
        loss = 0.5 * jnp.mean(jnp.square(fake_logits - 1.0))
        return loss, {"g_loss": loss, "g_fake_mean": fake_logits.mean()}


@pytest.fixture
def registry(monkeypatch):
    """The objectives registry, restored after the test."""
    monkeypatch.setattr(objectives, "OBJECTIVES", dict(objectives.OBJECTIVES))
    return objectives.OBJECTIVES


def test_register_adds_an_objective_and_refuses_what_is_not_one(registry):
    assert register(LeastSquares) is LeastSquares
    assert registry["least_squares_test"] is LeastSquares
    assert build_objective(type("C", (), {"loss": "least_squares_test", "d_steps": 2})) == (
        LeastSquares(d_steps=2)
    )
    with pytest.raises(ValueError, match="not an Objective"):
        register(NonSaturating())  # an instance, not a class
    with pytest.raises(ValueError, match="not an Objective"):
        register(type("Nameless", (Objective,), {}))


def test_a_registered_objective_trains_through_train_step(registry, tiny_config):
    # The step must call the configured objective (not a hard-wired BCE) with the real
    # logits first and return its own metric keys.
    register(LeastSquares)
    state = create_state(
        tiny_config("mlp", loss="least_squares_test"), jax.random.key(0), image_shape=IMAGE_SHAPE
    )
    assert isinstance(state.objective, LeastSquares)
    real = jax.random.uniform(jax.random.key(1), (4, *IMAGE_SHAPE), minval=-1, maxval=1)
    batch = {"image": real, "label": jnp.zeros((4,), jnp.int32)}
    new_state, metrics = jax.jit(train_step)(state, batch, jax.random.key(2))
    assert set(metrics) == {"d_loss", "d_real_mean", "g_loss", "g_fake_mean"}
    # The MLP has neither dropout nor BatchNorm: D in training mode is D at inference.
    real_logits = state.discriminator.apply({"params": state.d_params}, real, train=True)
    assert float(metrics["d_real_mean"]) == pytest.approx(float(real_logits.mean()), abs=1e-5)
    assert int(new_state.step) == 1


def test_wgan_gp_with_three_critic_steps_updates_d_three_times_per_g_update(tiny_config):
    # Catches an extra critic step whose update is discarded, or d_steps ignored.
    config = tiny_config("mlp", loss="wgan_gp", d_steps=3)
    state = create_state(config, jax.random.key(0), image_shape=IMAGE_SHAPE)
    # Three critic steps take 3 x 4 reals, 4 fresh ones each.
    real = jax.random.uniform(jax.random.key(1), (12, *IMAGE_SHAPE), minval=-1, maxval=1)
    batch = {"image": real, "label": jnp.zeros((12,), jnp.int32)}
    step = jax.jit(train_step)
    state, metrics = step(state, batch, jax.random.key(2))
    assert int(state.d_opt_state[0].count) == 3
    assert int(state.g_opt_state[0].count) == 1
    assert set(metrics) == {"d_loss", "g_loss", "wasserstein", "gp"}
    assert all(math.isfinite(float(value)) for value in metrics.values())
    assert float(metrics["gp"]) >= 0
    state, _ = step(state, batch, jax.random.key(2))
    assert (int(state.d_opt_state[0].count), int(state.g_opt_state[0].count)) == (6, 2)


class _LatentRecorder(nn.Module):
    """A generator that hands the latents of each call to `_record_latents`."""

    inner: nn.Module

    def __call__(self, latents, labels=None, *, train):
        jax.debug.callback(_record_latents, latents)
        return self.inner(latents, labels, train=train)


_RECORDED_LATENTS: list[np.ndarray] = []


def _record_latents(latents) -> None:
    _RECORDED_LATENTS.append(np.asarray(latents))


def test_each_critic_step_draws_its_own_latents(tiny_config):
    # d_steps=3: three generator forwards per step (two extra critic steps and the main
    # step), each on latents of its own, and new ones at the next step. Catches an extra
    # critic step that reuses the main step's key, or one key shared by the extra steps.
    config = tiny_config("mlp", loss="wgan_gp", d_steps=3)
    state = create_state(config, jax.random.key(0), image_shape=IMAGE_SHAPE)
    generator = _LatentRecorder(state.generator)
    g_params = generator.init(jax.random.key(0), jnp.zeros((2, 8)), train=False)["params"]
    state = state.replace(
        generator=generator, g_params=g_params, g_opt_state=state.g_tx.init(g_params)
    )
    # 12 images: enough for the main step and, where each critic step takes its own
    # slice of the batch, for three.
    real = jax.random.uniform(jax.random.key(1), (12, *IMAGE_SHAPE), minval=-1, maxval=1)
    batch = {"image": real, "label": jnp.zeros((12,), jnp.int32)}
    step = jax.jit(train_step)
    _RECORDED_LATENTS.clear()
    state, _ = jax.block_until_ready(step(state, batch, jax.random.key(2)))
    jax.effects_barrier()
    first_step = list(_RECORDED_LATENTS)
    assert len(first_step) == 3
    jax.block_until_ready(step(state, batch, jax.random.key(2)))
    jax.effects_barrier()
    recorded = list(_RECORDED_LATENTS)
    assert len(recorded) == 6
    for latents in recorded:
        assert latents.shape == recorded[0].shape and latents.shape[1] == 8
        assert 0.3 < latents.std() < 3  # drawn from N(0, 1)
    for i, a in enumerate(recorded):
        for b in recorded[i + 1 :]:
            assert np.max(np.abs(a - b)) > 0.1, "two generator passes shared their latents"
