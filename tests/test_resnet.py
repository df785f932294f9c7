"""The resnet family (SNGAN/BigGAN): shapes, modes, conditioning, attention, init, gradients."""

import re

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxgan.models import resnet

BATCH, LATENT, WIDTH, CLASSES = 4, 8, 8, 3


def _model(**overrides):
    fields = {name: field.default for name, field in resnet.FIELDS.items()}
    fields.update(g_width=WIDTH, d_width=WIDTH, d_blocks=3, embed_dim=WIDTH)
    fields.update(overrides)
    return fields


def _pair(image_shape, num_classes=0, dtype=jnp.float32, **overrides):
    return resnet.build(
        _model(**overrides), image_shape=image_shape, num_classes=num_classes, dtype=dtype
    )


def _inputs(image_shape, num_classes, seed=0):
    rng = np.random.default_rng(seed)
    latents = jnp.asarray(rng.standard_normal((BATCH, LATENT)), jnp.float32)
    images = jnp.asarray(rng.uniform(-1, 1, (BATCH, *image_shape)), jnp.float32)
    labels = jnp.arange(BATCH, dtype=jnp.int32) % num_classes if num_classes else None
    return latents, images, labels


def _random_variables(module, *inputs, seed=0):
    """Random parameters and state of the init's shapes, without compiling the init.

    Kernels ~ N(0, 1/fan_in), other parameters and BatchNorm means ~ N(0, 0.3^2),
    variances and scales near 1, spectral-norm sigmas 1 (SAGAN's gamma is then non-zero).
    """
    shapes = jax.eval_shape(lambda: module.init(jax.random.key(0), *inputs, train=False))
    rng = np.random.default_rng(seed)
    leaves, treedef = jax.tree_util.tree_flatten_with_path(shapes)
    values = []
    for path, leaf in leaves:
        name = jax.tree_util.keystr(path)
        normal = rng.standard_normal(leaf.shape)
        if re.search(r"sigma", name):
            normal = np.ones(leaf.shape)
        elif re.search(r"\bvar|scale", name):
            normal = 1 + 0.3 * np.abs(normal)
        elif leaf.ndim >= 2:
            normal = normal / np.sqrt(np.prod(leaf.shape[:-1]))
        else:
            normal = 0.3 * normal
        values.append(jnp.asarray(normal, leaf.dtype))
    return treedef.unflatten(values)


def _variables(generator, discriminator, latents, images, labels):
    return (
        _random_variables(generator, latents, labels, seed=1),
        _random_variables(discriminator, images, labels, seed=2),
    )


def _paths(tree):
    return [jax.tree_util.keystr(path) for path, _ in jax.tree_util.tree_leaves_with_path(tree)]


CASES = [((28, 28, 1), 0, jnp.float32), ((32, 32, 3), CLASSES, jnp.float32)]
CASES += [((28, 28, 1), CLASSES, jnp.bfloat16)]


@pytest.mark.parametrize(("image_shape", "num_classes", "dtype"), CASES)
def test_shapes_ranges_modes_and_state(image_shape, num_classes, dtype):
    generator, discriminator = _pair(image_shape, num_classes, dtype)
    latents, images, labels = _inputs(image_shape, num_classes)

    @jax.jit
    def run(g_variables, d_variables):
        results = {"g": g_variables, "d": d_variables}
        for train in (True, False):
            mode = "train" if train else "eval"
            results[f"images_{mode}"], results[f"g_{mode}"] = generator.apply(
                g_variables, latents, labels, train=train, mutable=["batch_stats"]
            )
            results[f"logits_{mode}"], results[f"d_{mode}"] = discriminator.apply(
                d_variables, images, labels, train=train, mutable=["batch_stats", "spectral"]
            )
        return results

    results = run(*_variables(generator, discriminator, latents, images, labels))
    for mode in ("train", "eval"):
        generated = results[f"images_{mode}"]
        assert generated.shape == (BATCH, *image_shape) and generated.dtype == jnp.float32
        assert np.all(np.isfinite(generated)) and np.abs(generated).max() <= 1.0
        assert generated.std() > 1e-3
        logits = results[f"logits_{mode}"]
        assert logits.shape == (BATCH,) and logits.dtype == jnp.float32
        assert np.all(np.isfinite(logits))
    assert all(leaf.dtype == jnp.float32 for leaf in jax.tree.leaves(results["g"]["params"]))
    # G: BatchNorm statistics move in training mode only.
    stats = results["g"]["batch_stats"]
    assert not jax.tree.all(jax.tree.map(np.array_equal, results["g_train"]["batch_stats"], stats))
    assert jax.tree.all(jax.tree.map(np.array_equal, results["g_eval"]["batch_stats"], stats))
    assert not np.allclose(results["images_train"], results["images_eval"])
    # D: no BatchNorm; the power-iteration state moves in training mode only.
    assert set(results["d"]) == {"params", "spectral"}
    assert set(results["d_train"]) == {"spectral"}
    spectral = results["d"]["spectral"]
    assert not jax.tree.all(jax.tree.map(np.array_equal, results["d_train"]["spectral"], spectral))
    assert jax.tree.all(jax.tree.map(np.array_equal, results["d_eval"]["spectral"], spectral))


@pytest.mark.parametrize("num_classes", [0, CLASSES])
def test_labels_condition_both_networks(num_classes):
    generator, discriminator = _pair((28, 28, 1), num_classes)
    latents, images, labels = _inputs((28, 28, 1), max(num_classes, 2))
    other_labels = (labels + 1) % max(num_classes, 2)
    same_latents = jnp.broadcast_to(latents[:1], latents.shape)

    @jax.jit
    def run(g_variables, d_variables):
        # Scaling a spectrally normalised layer's weights leaves its output unchanged.
        scaled = jax.tree_util.tree_map_with_path(
            lambda path, leaf: (
                3 * leaf if "class_projection" in jax.tree_util.keystr(path) else leaf
            ),
            d_variables,
        )
        return {
            "g_params": g_variables["params"],
            "d_params": d_variables["params"],
            "images": generator.apply(g_variables, same_latents, labels, train=False),
            "images_other": generator.apply(g_variables, same_latents, other_labels, train=False),
            "logits": discriminator.apply(d_variables, images, labels, train=False),
            "logits_other": discriminator.apply(d_variables, images, other_labels, train=False),
            "logits_scaled": discriminator.apply(scaled, images, labels, train=False),
        }

    results = run(*_variables(generator, discriminator, latents, images, labels))
    images, logits = results["images"], results["logits"]
    if num_classes:
        assert "shared_embedding" in results["g_params"]
        assert "class_projection" in results["d_params"]
        # One z, different labels: different images, and each label its own image.
        for index in range(BATCH):
            assert not np.allclose(images[index], results["images_other"][index], atol=1e-4)
        assert not np.allclose(images[0], images[1], atol=1e-4)
        assert np.all(np.abs(logits - results["logits_other"]) > 1e-6)
        np.testing.assert_allclose(results["logits_scaled"], logits, rtol=1e-4, atol=1e-5)
    else:
        assert not any("embedding" in path or "projection" in path for path in _paths(results))
        np.testing.assert_array_equal(results["images_other"], images)
        np.testing.assert_array_equal(results["logits_other"], logits)
        np.testing.assert_allclose(images[1], images[0], atol=1e-6)


def test_projection_embedding_is_spectrally_normalised():
    _, discriminator = _pair((28, 28, 1), CLASSES)
    _, images, labels = _inputs((28, 28, 1), CLASSES)
    variables = _random_variables(discriminator, images, labels)
    kernel = 5 * variables["params"]["class_projection"]["kernel"]  # [K, d_width]
    variables["params"]["class_projection"]["kernel"] = kernel

    @jax.jit
    def power_iteration(spectral):
        _, updates = discriminator.apply(
            {"params": variables["params"], "spectral": spectral},
            images,
            labels,
            train=True,
            mutable=["spectral"],
        )
        return updates["spectral"]

    spectral = variables["spectral"]
    for _ in range(8):
        spectral = power_iteration(spectral)
    sigma = spectral["SpectralNorm_1"]["class_projection/kernel/sigma"]
    largest = np.linalg.svd(np.asarray(kernel), compute_uv=False)[0]
    assert largest > 2
    np.testing.assert_allclose(largest / sigma, 1.0, rtol=1e-2)


def test_parameter_count_has_every_layer_and_shortcut():
    """A dropped (or added) layer, bias or shortcut changes these hand-counted totals."""
    generator, discriminator = _pair((28, 28, 1))
    latents, images, _ = _inputs((28, 28, 1), 0)
    count = lambda module, inputs: sum(  # noqa: E731
        leaf.size
        for leaf in jax.tree.leaves(
            jax.eval_shape(lambda: module.init(jax.random.key(0), inputs, train=False)["params"])
        )
    )
    w, c = WIDTH, 1
    up_block = 2 * w + 9 * w * w + 2 * w + (9 * w * w + w) + (w * w + w)
    g_total = (LATENT * 49 * w + 49 * w) + 2 * up_block + 2 * w + (9 * w * c + c)
    first = (9 * c * w + w) + (9 * w * w + w) + (c * w + w)
    pooling = 2 * (9 * w * w + w) + (w * w + w)
    keeping = 2 * (9 * w * w + w)  # identity shortcut
    d_total = first + pooling + keeping + (w + 1)
    assert count(generator, latents) == g_total
    assert count(discriminator, images) == d_total


def test_identity_shortcut_of_a_block_that_keeps_its_side():
    _, discriminator = _pair((28, 28, 1))
    _, images, _ = _inputs((28, 28, 1), 0)
    variables = _random_variables(discriminator, images)
    last_conv = variables["params"]["block_2"]["Conv_1"]
    variables["params"]["block_2"]["Conv_1"] = jax.tree.map(jnp.zeros_like, last_conv)
    _, state = jax.jit(
        lambda: discriminator.apply(
            variables, images, train=False, capture_intermediates=True, mutable=["intermediates"]
        )
    )()
    outputs = state["intermediates"]
    block_1, block_2 = outputs["block_1"]["__call__"][0], outputs["block_2"]["__call__"][0]
    assert block_2.shape == block_1.shape == (BATCH, 7, 7, WIDTH)
    np.testing.assert_allclose(block_2, block_1, atol=1e-6)


def test_attention_at_the_named_resolution():
    generator, discriminator = _pair((32, 32, 3), attention=16)
    latents, images, _ = _inputs((32, 32, 3), 0)

    def init(module, inputs):
        return jax.eval_shape(
            lambda: module.init(
                jax.random.key(0),
                inputs,
                train=False,
                capture_intermediates=lambda layer, _: isinstance(layer, resnet.SelfAttention),
            )
        )

    g_vars, d_vars = init(generator, latents), init(discriminator, images)
    g_state, d_state = g_vars["intermediates"], d_vars["intermediates"]
    for variables, state in ((g_vars, g_state), (d_vars, d_state)):
        assert set(state) == {"attention_16"}
        assert state["attention_16"]["__call__"][0].shape == (BATCH, 16, 16, WIDTH)
        assert {"theta", "phi", "g", "o", "gamma"} <= set(variables["params"]["attention_16"])
    assert "attention_16" in d_vars["spectral"]
    plain = jax.eval_shape(
        lambda: _pair((32, 32, 3))[0].init(jax.random.key(0), latents, train=False)
    )
    assert not any("attention" in path for path in _paths(plain))


def test_orthogonal_initialisation():
    latents, images, labels = _inputs((28, 28, 1), CLASSES)

    def kernels(*modules_and_inputs):
        variables = jax.jit(
            lambda: [
                module.init(jax.random.key(0), inputs, labels, train=False)["params"]
                for module, inputs in modules_and_inputs
            ]
        )()
        return [
            np.asarray(leaf).reshape(-1, leaf.shape[-1])
            for path, leaf in jax.tree_util.tree_leaves_with_path(variables)
            # SpectralNorm's init stores D's weights divided by their estimated sigma, so a
            # vector would look orthogonal whatever its initialiser.
            if re.search(r"kernel|embedding", jax.tree_util.keystr(path))
            and min(np.prod(leaf.shape[:-1]), leaf.shape[-1]) > 1
        ]

    def is_orthogonal(matrix):
        gram = matrix.T @ matrix if matrix.shape[0] >= matrix.shape[1] else matrix @ matrix.T
        return np.allclose(gram, np.eye(len(gram)), atol=1e-4)

    generator, discriminator = _pair((28, 28, 1), CLASSES)
    orthogonal = kernels((generator, latents), (discriminator, images))
    assert len(orthogonal) >= 20
    assert all(is_orthogonal(matrix) for matrix in orthogonal)
    # Off: flax's defaults (checked on G; D's truncated-normal init is slow to compile).
    generator, discriminator = _pair((28, 28, 1), CLASSES, orthogonal_init=False)
    assert discriminator.orthogonal_init is False
    assert not any(is_orthogonal(matrix) for matrix in kernels((generator, latents)))


@pytest.mark.parametrize(
    ("image_shape", "overrides", "message"),
    [
        ((30, 30, 1), {}, r"\(30, 30, 1\).*allowed: square sides 28, 32, 40, 48, 56, 64"),
        ((28, 32, 1), {}, "allowed: square sides"),
        ((128, 128, 3), {}, "allowed: square sides"),
        ((32, 32, 2), {}, "1 or 3 channels"),
        ((64, 64, 3), {"d_blocks": 2}, r"d_blocks=2 .* at least 3"),
        ((28, 28, 1), {"attention": 28}, "allowed: 0 .* one of 14$"),
        ((32, 32, 3), {"attention": 4}, "one of 8, 16$"),
    ],
)
def test_invalid_settings_are_clear_errors(image_shape, overrides, message):
    with pytest.raises(ValueError, match=message):
        _pair(image_shape, **overrides)


def test_one_jitted_gradient_step_reaches_every_parameter():
    generator, discriminator = _pair((28, 28, 1), CLASSES, attention=14)
    latents, real_images, labels = _inputs((28, 28, 1), CLASSES)
    # Random parameters: SAGAN's gamma, 0 at init, would hide the attention weights.
    g_variables, d_variables = _variables(generator, discriminator, latents, real_images, labels)
    assert g_variables["params"]["attention_14"]["gamma"] != 0

    @jax.jit
    def grads(g_params, d_params):
        def loss(g_params, d_params):
            fake_images, _ = generator.apply(
                {"params": g_params, "batch_stats": g_variables["batch_stats"]},
                latents,
                labels,
                train=True,
                mutable=["batch_stats"],
            )
            logits, _ = discriminator.apply(
                {"params": d_params, "spectral": d_variables["spectral"]},
                jnp.concatenate([real_images, fake_images]),
                jnp.concatenate([labels, labels]),
                train=True,
                mutable=["spectral"],
            )
            return jnp.mean(jax.nn.softplus(-logits[:BATCH]) + jax.nn.softplus(logits[BATCH:]))

        return jax.grad(loss, argnums=(0, 1))(g_params, d_params)

    leaves = jax.tree_util.tree_leaves_with_path(
        grads(g_variables["params"], d_variables["params"])
    )
    assert len(leaves) > 40
    for path, leaf in leaves:
        assert np.all(np.isfinite(leaf)), jax.tree_util.keystr(path)
        assert np.any(leaf != 0), jax.tree_util.keystr(path)
