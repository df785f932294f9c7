"""The shared layers equal the plain flax/JAX operations they reformulate."""

import flax.linen as nn
import jax
import jax.extend
import jax.numpy as jnp
import numpy as np
import pytest

from jaxgan.models.dropout import Dropout, bernoulli, threefry_2x32
from jaxgan.models.layers import (
    Conv,
    PatchConv,
    SubpixelConvTranspose,
    matmul_f32,
    phase_taps,
)


def _normal(shape, seed, dtype=np.float32):
    return jnp.asarray(np.random.default_rng(seed).standard_normal(shape), dtype)


def _random_variables(module, inputs, seed):
    """N(0, 1) values for every variable of `module` (zero-initialised biases included)."""
    shapes = jax.eval_shape(module.init, jax.random.key(0), inputs)
    leaves, treedef = jax.tree.flatten(shapes)
    return treedef.unflatten(
        [_normal(leaf.shape, seed + index, leaf.dtype) for index, leaf in enumerate(leaves)]
    )


# (kernel, strides, input shape [B, H, W, C]); (4, 4)/(2, 2) on 7x7 and 14x14 is DCGAN's.
CONV_CASES = [
    ((4, 4), (2, 2), (2, 7, 7, 6)),
    ((4, 4), (2, 2), (1, 14, 14, 5)),
    ((3, 3), (2, 2), (2, 5, 6, 3)),
    ((5, 5), (3, 3), (1, 4, 5, 2)),
    ((3, 3), (1, 1), (2, 5, 5, 3)),
    ((1, 1), (2, 2), (1, 3, 3, 2)),
    ((2, 3), (3, 1), (1, 4, 3, 2)),
]


@pytest.mark.parametrize("kernel_size, strides, shape", CONV_CASES)
def test_subpixel_conv_transpose_equals_flax_conv_transpose(kernel_size, strides, shape):
    features = 4
    inputs = _normal(shape, seed=0)
    reference = nn.ConvTranspose(features, kernel_size, strides, padding="SAME")
    layer = SubpixelConvTranspose(features, kernel_size, strides)
    variables = _random_variables(reference, inputs, seed=1)
    assert jax.tree.structure(variables) == jax.tree.structure(
        jax.eval_shape(layer.init, jax.random.key(0), inputs)
    )
    out_shape = (shape[0], shape[1] * strides[0], shape[2] * strides[1], features)
    cotangent = _normal(out_shape, seed=9)

    @jax.jit
    def outputs_and_grads(variables, inputs):
        results = []
        for module in (layer, reference):
            outputs, vjp = jax.vjp(module.apply, variables, inputs)
            results.append((outputs, *vjp(cotangent)))
        return results

    (outputs, grads, input_grad), (expected, expected_grads, expected_input_grad) = (
        outputs_and_grads(variables, inputs)
    )
    assert outputs.shape == expected.shape == out_shape
    np.testing.assert_allclose(outputs, expected, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(input_grad, expected_input_grad, rtol=1e-5, atol=1e-4)
    for name in ("kernel", "bias"):
        np.testing.assert_allclose(
            grads["params"][name], expected_grads["params"][name], rtol=1e-5, atol=1e-4
        )


def test_subpixel_conv_transpose_in_bfloat16_keeps_float32_params():
    inputs = _normal((2, 7, 7, 8), seed=0)
    layer = SubpixelConvTranspose(4, dtype=jnp.bfloat16)
    shapes = jax.eval_shape(layer.init, jax.random.key(0), inputs)
    assert all(leaf.dtype == jnp.float32 for leaf in jax.tree.leaves(shapes))
    variables = _random_variables(layer, inputs, seed=1)
    reference = nn.ConvTranspose(4, (4, 4), (2, 2), padding="SAME")
    outputs, expected = jax.jit(lambda v, x: (layer.apply(v, x), reference.apply(v, x)))(
        variables, inputs
    )
    assert outputs.dtype == jnp.bfloat16
    np.testing.assert_allclose(outputs.astype(jnp.float32), expected, rtol=0.05, atol=0.1)


# (kernel, strides, padding, input shape); the first two are DCGAN's discriminator convs.
CONV_GRAD_CASES = [
    ((4, 4), (2, 2), ((1, 1), (1, 1)), (2, 14, 14, 5)),
    ((4, 4), (2, 2), ((1, 1), (1, 1)), (2, 28, 28, 1)),
    ((3, 3), (1, 1), "SAME", (2, 7, 6, 3)),
    ((3, 2), (2, 1), "VALID", (2, 9, 8, 3)),
    ((5, 5), (3, 2), ((2, 1), (0, 3)), (1, 11, 10, 2)),
]


# PatchConv sums up to 125 products of order 10 in another order: float32 rounding.
@pytest.mark.parametrize("layer_class, atol", [(Conv, 1e-5), (PatchConv, 1e-4)])
@pytest.mark.parametrize("kernel_size, strides, padding, shape", CONV_GRAD_CASES)
def test_conv_layers_equal_flax_conv_with_gradients(
    layer_class, atol, kernel_size, strides, padding, shape
):
    inputs = _normal(shape, seed=0)
    reference = nn.Conv(4, kernel_size, strides, padding=padding)
    layer = layer_class(4, kernel_size, strides, padding=padding)
    variables = _random_variables(reference, inputs, seed=1)
    assert jax.tree.structure(variables) == jax.tree.structure(
        jax.eval_shape(layer.init, jax.random.key(0), inputs)
    )

    @jax.jit
    def outputs_and_grads(variables, inputs):
        results = []
        for module in (layer, reference):
            outputs, vjp = jax.vjp(module.apply, variables, inputs)
            results.append((outputs, *vjp(jnp.sin(outputs))))
        return results

    for result, expected in zip(*outputs_and_grads(variables, inputs)):
        for leaf, expected_leaf in zip(jax.tree.leaves(result), jax.tree.leaves(expected)):
            np.testing.assert_allclose(leaf, expected_leaf, rtol=1e-5, atol=atol)


def test_patch_conv_under_vmap_over_kernels_has_no_convolution():
    """Vmapped over members' kernels, a convolution becomes a grouped one; this stays matmuls."""
    inputs = _normal((3, 2, 14, 14, 5), seed=0)  # 3 members
    padding = ((1, 1), (1, 1))
    variables = jax.vmap(PatchConv(4, (4, 4), (2, 2), padding=padding).init)(
        jax.random.split(jax.random.key(0), 3), inputs
    )

    def loss(module):
        def member_loss(variables, inputs):
            return jnp.sum(jnp.sin(module.apply(variables, inputs)))

        return jax.vmap(jax.grad(member_loss, argnums=(0, 1)))

    patch_text = str(jax.make_jaxpr(loss(PatchConv(4, (4, 4), (2, 2), padding=padding)))(
        variables, inputs
    ))  # fmt: skip
    conv_text = str(jax.make_jaxpr(loss(Conv(4, (4, 4), (2, 2), padding=padding)))(
        variables, inputs
    ))  # fmt: skip
    assert "conv_general_dilated" not in patch_text
    assert "feature_group_count=3" in conv_text  # What the plain layer turns into.


def test_conv_second_derivative_equals_flax_conv():
    inputs = _normal((2, 8, 8, 3), seed=0)
    padding = ((1, 1), (1, 1))
    reference = nn.Conv(4, (4, 4), (2, 2), padding=padding)
    variables = _random_variables(reference, inputs, seed=1)

    def gradient_norm(module):
        def norm(inputs):
            grad = jax.grad(lambda x: jnp.sum(jnp.tanh(module.apply(variables, x))))(inputs)
            return jnp.sum(grad**2)

        return jax.jit(jax.grad(norm))(inputs)

    np.testing.assert_allclose(
        gradient_norm(Conv(4, (4, 4), (2, 2), padding=padding)),
        gradient_norm(reference),
        rtol=1e-5,
        atol=1e-6,
    )


@pytest.mark.parametrize("kernel_size, stride", [(4, 2), (3, 2), (5, 3), (1, 2), (2, 3), (6, 2)])
def test_phase_taps_use_every_tap_once(kernel_size, stride):
    taps = [tap for phase in phase_taps(kernel_size, stride) for tap, _ in phase]
    assert sorted(taps) == list(range(kernel_size))


def test_matmul_f32_value_and_derivatives_equal_a_plain_matmul():
    lhs, rhs = _normal((6, 5), seed=0), _normal((5, 3), seed=1)
    lhs_tangent, rhs_tangent = _normal(lhs.shape, seed=2), _normal(rhs.shape, seed=3)

    def plain(lhs, rhs):
        return lhs @ rhs

    np.testing.assert_allclose(matmul_f32(lhs, rhs), plain(lhs, rhs), rtol=1e-6)
    _, tangent = jax.jvp(matmul_f32, (lhs, rhs), (lhs_tangent, rhs_tangent))
    _, expected_tangent = jax.jvp(plain, (lhs, rhs), (lhs_tangent, rhs_tangent))
    np.testing.assert_allclose(tangent, expected_tangent, rtol=1e-5, atol=1e-6)

    def loss(fn):
        return lambda lhs, rhs: jnp.sum(jnp.sin(fn(lhs, rhs)))

    grads = jax.grad(loss(matmul_f32), argnums=(0, 1))(lhs, rhs)
    expected_grads = jax.grad(loss(plain), argnums=(0, 1))(lhs, rhs)
    for grad, expected in zip(grads, expected_grads):
        np.testing.assert_allclose(grad, expected, rtol=1e-5, atol=1e-6)
    assert matmul_f32(lhs.astype(jnp.bfloat16), rhs.astype(jnp.bfloat16)).dtype == jnp.float32


def test_threefry_2x32_equals_jax_threefry():
    key = jax.random.key_data(jax.random.key(42))
    counts = jnp.arange(2 * 37, dtype=jnp.uint32) * jnp.uint32(2654435761)  # spreads the bits
    expected = jax.extend.random.threefry_2x32(key, counts)
    words = threefry_2x32((key[0], key[1]), (counts[:37], counts[37:]))
    np.testing.assert_array_equal(jnp.concatenate(words), expected)


@pytest.mark.parametrize(
    "p, shape", [(0.7, (2, 7, 7, 16)), (0.1, (1, 3, 5, 7)), (0.0, (9,)), (1.0, (9,))]
)
def test_bernoulli_equals_jax_bernoulli_bit_for_bit(p, shape):
    sample = jax.jit(bernoulli, static_argnums=(1, 2))
    for key in (jax.random.fold_in(jax.random.key(9), 4), jax.random.PRNGKey(3)):
        np.testing.assert_array_equal(sample(key, p, shape), jax.random.bernoulli(key, p, shape))


def test_bernoulli_with_another_key_implementation_falls_back_to_jax():
    key = jax.random.key(3, impl="rbg")
    np.testing.assert_array_equal(
        bernoulli(key, 0.3, (4, 9)), jax.random.bernoulli(key, 0.3, (4, 9))
    )


@pytest.mark.parametrize(
    "rate, broadcast_dims, dtype",
    [(0.3, (), jnp.float32), (0.5, (1,), jnp.bfloat16), (0.9, (0, 3), jnp.float32)],
)
def test_dropout_equals_flax_dropout(rate, broadcast_dims, dtype):
    inputs = _normal((4, 9, 7, 5), seed=0, dtype=dtype)

    @jax.jit
    def both(inputs, key):
        rngs = {"dropout": key}
        return [
            module(rate, broadcast_dims).apply({}, inputs, deterministic=False, rngs=rngs)
            for module in (Dropout, nn.Dropout)
        ]

    outputs, expected = both(inputs, jax.random.key(3))
    assert outputs.dtype == expected.dtype == dtype
    np.testing.assert_array_equal(outputs, expected)
    assert abs(float(jnp.mean(outputs == 0)) - rate) < 0.2  # the masks do drop


def test_dropout_edge_cases_match_flax():
    inputs = _normal((3, 6), seed=0)
    rngs = {"dropout": jax.random.key(1)}
    np.testing.assert_array_equal(Dropout(0.5).apply({}, inputs, deterministic=True), inputs)
    np.testing.assert_array_equal(
        Dropout(0.0).apply({}, inputs, deterministic=False, rngs=rngs), inputs
    )
    np.testing.assert_array_equal(
        Dropout(1.0).apply({}, inputs, deterministic=False, rngs=rngs), jnp.zeros_like(inputs)
    )
