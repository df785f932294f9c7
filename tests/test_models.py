"""Model families: shapes, ranges, dtypes, train/eval behaviour, and the plain-flax twin."""

import re

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxgan.models import build_models, model_config

BATCH, LATENT, WIDTH = 4, 8, 4
CONFIGS = [(model, dtype) for model in ("dcgan", "mlp") for dtype in ("float32", "bfloat16")]


def _normal(shape, seed, scale=1.0):
    return jnp.asarray(scale * np.random.default_rng(seed).standard_normal(shape), jnp.float32)


def _random_variables(module, inputs, seed):
    """Random parameters and BatchNorm statistics (variances positive), without compiling."""
    shapes = jax.eval_shape(lambda: module.init(jax.random.key(0), inputs, train=False))
    flat, treedef = jax.tree_util.tree_flatten_with_path(shapes)
    leaves = []
    for index, (path, leaf) in enumerate(flat):
        values = _normal(leaf.shape, seed + index, scale=0.3)
        if "var" in jax.tree_util.keystr(path):
            values = 1.0 + jnp.abs(values)
        leaves.append(values.astype(leaf.dtype))
    return treedef.unflatten(leaves)


def _model(name):
    return model_config(name, g_width=WIDTH, d_width=WIDTH)


def _models(model, dtype):
    generator, discriminator = build_models(_model(model), dtype=dtype)
    latents = _normal((BATCH, LATENT), seed=0)
    images = jnp.asarray(np.random.default_rng(1).uniform(-1, 1, (BATCH, 28, 28, 1)), jnp.float32)
    g_variables = _random_variables(generator, latents, seed=10)
    d_variables = _random_variables(discriminator, images, seed=20)
    return generator, discriminator, g_variables, d_variables, latents, images


@pytest.fixture(scope="module", params=CONFIGS, ids=["-".join(config) for config in CONFIGS])
def outputs(request):
    """Everything the behaviour tests look at, from one compiled function per config."""
    generator, discriminator, g_variables, d_variables, latents, images = _models(*request.param)

    def apply(module, variables, inputs, train, seed):
        return module.apply(
            variables,
            inputs,
            train=train,
            rngs={"dropout": jax.random.key(seed)},
            mutable=["batch_stats"],
        )

    @jax.jit
    def run(g_variables, d_variables):
        results = {}
        for train in (True, False):
            mode = "train" if train else "eval"
            results[f"images_{mode}"], results[f"g_stats_{mode}"] = apply(
                generator, g_variables, latents, train, seed=0
            )
            for seed in (1, 2):
                results[f"logits_{mode}_{seed}"], results[f"d_stats_{mode}_{seed}"] = apply(
                    discriminator, d_variables, images, train, seed
                )
        return results

    return request.param, g_variables, d_variables, run(g_variables, d_variables)


def test_shapes_ranges_and_dtypes(outputs):
    (model, dtype), g_variables, d_variables, results = outputs
    for mode in ("train", "eval"):
        generated = results[f"images_{mode}"]
        assert generated.shape == (BATCH, 28, 28, 1)
        assert generated.dtype == jnp.float32
        assert float(generated.min()) >= -1.0 and float(generated.max()) <= 1.0
        assert float(generated.std()) > 0
        logits = results[f"logits_{mode}_1"]
        assert logits.shape == (BATCH,)
        assert logits.dtype == jnp.float32
        assert bool(jnp.all(jnp.isfinite(logits)))
    for leaf in jax.tree.leaves((g_variables, d_variables)):
        assert leaf.dtype == jnp.float32, f"{model}/{dtype}: variables stay float32"


def test_dropout_is_active_only_in_training(outputs):
    (model, _), _, _, results = outputs
    np.testing.assert_array_equal(results["logits_eval_1"], results["logits_eval_2"])
    if model == "dcgan":
        assert not np.array_equal(results["logits_train_1"], results["logits_train_2"])
    else:  # the vanilla GAN has no dropout
        np.testing.assert_array_equal(results["logits_train_1"], results["logits_train_2"])


def test_batch_norm_statistics_change_only_in_training(outputs):
    (model, _), g_variables, d_variables, results = outputs
    for name, variables in (("g", g_variables), ("d", d_variables)):
        old = jax.tree.leaves(variables.get("batch_stats", {}))
        assert bool(old) == (model == "dcgan")
        suffix = "" if name == "g" else "_1"
        for mode in ("train", "eval"):
            new = jax.tree.leaves(results[f"{name}_stats_{mode}{suffix}"])
            assert len(new) == len(old)
            changed = [not np.array_equal(a, b) for a, b in zip(old, new)]
            assert all(changed) if mode == "train" else not any(changed)


def _matmul_operand_types(fn, *args) -> list[list[str]]:
    """Operand element types of every dot_general and convolution JAX emits for `fn`."""
    text = jax.jit(fn).lower(*args).as_text()
    signatures = re.findall(r"stablehlo\.(?:dot_general|convolution)[^\n]*: \(([^)]*)\)", text)
    return [re.findall(r"tensor<(?:[\d?]+x)*(\w+)>", signature) for signature in signatures]


@pytest.mark.parametrize("model", ["dcgan", "mlp"])
def test_bfloat16_computes_in_bfloat16_and_returns_float32(model):
    generator, discriminator, g_variables, d_variables, latents, images = _models(model, "bfloat16")
    for module, variables, inputs in (
        (generator, g_variables, latents),
        (discriminator, d_variables, images),
    ):
        forward = lambda v, x, module=module: module.apply(v, x, train=False)  # noqa: E731
        operand_types = _matmul_operand_types(forward, variables, inputs)
        assert operand_types and all(types == ["bf16", "bf16"] for types in operand_types), (
            operand_types
        )
        assert jax.eval_shape(forward, variables, inputs).dtype == jnp.float32


class _PlainGenerator(nn.Module):
    """`dcgan.Generator` written with `nn.ConvTranspose`."""

    width: int

    @nn.compact
    def __call__(self, latents, *, train):
        batch_norm = lambda: nn.BatchNorm(  # noqa: E731
            use_running_average=not train, momentum=0.9, epsilon=1e-5
        )
        hidden = nn.Dense(7 * 7 * 4 * self.width, use_bias=False)(latents)
        hidden = nn.relu(batch_norm()(hidden)).reshape(latents.shape[0], 7, 7, 4 * self.width)
        hidden = nn.ConvTranspose(
            2 * self.width, (4, 4), (2, 2), padding="SAME", use_bias=False, name="Sub_0"
        )(hidden)
        hidden = nn.relu(batch_norm()(hidden))
        pixels = nn.ConvTranspose(1, (4, 4), (2, 2), padding="SAME", name="Sub_1")(hidden)
        return nn.tanh(pixels)


class _PlainDiscriminator(nn.Module):
    """`dcgan.Discriminator` written with `nn.Dropout`."""

    width: int

    @nn.compact
    def __call__(self, images, *, train):
        conv = lambda features, **kw: nn.Conv(  # noqa: E731
            features, (4, 4), strides=(2, 2), padding=((1, 1), (1, 1)), **kw
        )
        hidden = nn.leaky_relu(conv(self.width)(images), 0.2)
        hidden = nn.Dropout(0.3, deterministic=not train)(hidden)
        hidden = conv(2 * self.width, use_bias=False)(hidden)
        hidden = nn.BatchNorm(use_running_average=not train, momentum=0.9, epsilon=1e-5)(hidden)
        hidden = nn.Dropout(0.3, deterministic=not train)(nn.leaky_relu(hidden, 0.2))
        return nn.Dense(1)(hidden.reshape(images.shape[0], -1))[:, 0]


def _rename(tree, old, new):
    if not isinstance(tree, dict):
        return tree
    return {key.replace(old, new): _rename(value, old, new) for key, value in tree.items()}


def test_dcgan_equals_the_same_network_in_plain_flax_layers():
    generator, discriminator, g_variables, d_variables, latents, _ = _models("dcgan", "float32")
    plain_g_variables = _rename(g_variables, "SubpixelConvTranspose_", "Sub_")
    rngs = {"dropout": jax.random.key(8)}

    @jax.jit
    def both(g_variables, plain_g_variables, d_variables):
        results = []
        for g, gv, d in (
            (generator, g_variables, discriminator),
            (_PlainGenerator(WIDTH), plain_g_variables, _PlainDiscriminator(WIDTH)),
        ):
            images, _ = g.apply(gv, latents, train=True, mutable=["batch_stats"])
            logits, _ = d.apply(d_variables, images, train=True, rngs=rngs, mutable=["batch_stats"])
            results.append((images, logits, g.apply(gv, latents, train=False)))
        return results

    (images, logits, eval_images), (plain_images, plain_logits, plain_eval) = both(
        g_variables, plain_g_variables, d_variables
    )
    np.testing.assert_allclose(images, plain_images, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(eval_images, plain_eval, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(logits, plain_logits, rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize(
    ("model", "image_shape"),
    [("dcgan", (28, 28, 1)), ("dcgan", (32, 32, 3)), ("mlp", (32, 32, 3)), ("mlp", (16, 16, 1))],
)
def test_models_make_and_judge_images_of_the_dataset_shape(model, image_shape):
    # Catches a generator hard-wired to 28x28x1 (e.g. a 7x7 base or one output channel).
    generator, discriminator = build_models(_model(model), image_shape=image_shape)
    latents = _normal((BATCH, LATENT), seed=0)

    @jax.jit
    def run():
        g_variables = generator.init(jax.random.key(0), latents, train=False)
        images = generator.apply(g_variables, latents, train=False)
        d_variables = discriminator.init(jax.random.key(1), images, train=False)
        return images, discriminator.apply(d_variables, images, train=False)

    images, logits = run()
    assert images.shape == (BATCH, *image_shape)
    assert float(images.min()) >= -1.0 and float(images.max()) <= 1.0
    assert logits.shape == (BATCH,)


@pytest.mark.parametrize("image_shape", [(30, 30, 1), (32, 32, 2)])
def test_dcgan_refuses_shapes_it_cannot_make(image_shape):
    with pytest.raises(ValueError, match=r"multiples of 4.*1 or 3 channels") as error:
        build_models(_model("dcgan"), image_shape=image_shape)
    assert str(image_shape) in str(error.value)
