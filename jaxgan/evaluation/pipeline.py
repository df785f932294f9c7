"""Generation straight into Inception: an evaluation's images never leave the device.

For each batch one jitted program draws the latents, runs the generator (inference mode, the
EMA weights with their own statistics, as `jaxgan.core.sample`) and takes D's logits of the
same images; a second quantises the float output to uint8 exactly as `jaxgan.metrics.to_uint8`
does on the host and prepares the Inception input (`inception_preprocess`). The Inception
network then runs as its own program (its weights stay its arguments), and its features are
kept on one device for `jaxgan.metrics.device`. Only D's logits [N] and a count of
out-of-range pixels come back to the host, once, at the end; the images only when asked for
(uint8).

Image i has the latent `normal(fold_in(key, i))`, as in `generate_images`, so the features
are those of `inception_features(generate_images(...))`: the same uint8 pixels, hence the
same Inception input (tests/test_pipeline.py).
"""

from __future__ import annotations

import functools
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from jaxgan.core import sharding
from jaxgan.core.sampling import check_labels, discriminator_output, generator_output
from jaxgan.evaluation.generation import key_latents, pad_rows
from jaxgan.metrics.features import (
    RANGE_TOLERANCE,
    FeatureFn,
    StopFn,
    check_feature_shape,
    check_resize,
    check_stop,
    inception_preprocess,
    mesh_batch_size,
    progress_bar,
)

__all__ = ["Generated", "generated_features", "quantise"]


class Generated(NamedTuple):
    """What `generated_features` returns.

    Attributes:
        features: [N, D] float32 pool3 features, on one device (the first local one).
        d_logits: [N] D's logits of the same images, on the host.
        images: [N, H, W, C] uint8 images on the host, or None unless asked for.
    """

    features: jax.Array
    d_logits: np.ndarray
    images: np.ndarray | None


def _scaled(images: jax.Array) -> tuple[jax.Array, jax.Array]:
    """`x * 127.5` in float32, and each image's count of values that `to_uint8` refuses
    (NaN, Inf, or further than `RANGE_TOLERANCE` outside [-1, 1])."""
    values = images.astype(jnp.float32)
    bad = ~jnp.isfinite(values) | (jnp.abs(values) > 1 + RANGE_TOLERANCE)
    return values * 127.5, jnp.sum(bad.reshape(len(bad), -1), axis=1, dtype=jnp.int32)


def _levels(scaled: jax.Array) -> jax.Array:
    """`(scaled + 128).clip(0, 255)` truncated to uint8."""
    return jnp.clip(scaled + 128, 0, 255).astype(jnp.uint8)


def quantise(images: jax.Array) -> tuple[jax.Array, jax.Array]:
    """Float images in [-1, 1] to uint8 on the device, with `to_uint8`'s float32 arithmetic.

    `(x * 127.5 + 128).clip(0, 255)`, truncated. The product and the sum are two programs:
    within one, XLA fuses them into a multiply-add that rounds once (on CPU it gives level
    1 where numpy gives 2 at x = -126 / 127.5), and pixels would move across levels.

    Call it outside `jax.jit`: inside one, the two programs become one again.

    Returns:
        (uint8 images [B, ...], int32 [B]: each image's count of values that `to_uint8`
        refuses).
    """
    scaled, bad = jax.jit(_scaled)(images)
    return jax.jit(_levels)(scaled), bad


@functools.partial(jax.jit, static_argnames=("batch_size", "use_ema"))
def _generate(state, key, start, labels, *, batch_size: int, use_ema: bool):
    """Images start .. start + batch_size - 1 of `key`, scaled by 127.5; bad counts; D logits."""
    latents = sharding.split_batch(
        key_latents(key, start, batch_size=batch_size, latent_dim=state.latent_dim)
    )
    images = generator_output(state, latents, labels, use_ema)
    scaled, bad = _scaled(images)
    return scaled, bad, discriminator_output(state, images, labels)


@functools.partial(jax.jit, static_argnames="resize")
def _prepare(scaled: jax.Array, resize: str) -> tuple[jax.Array, jax.Array]:
    """uint8 pixels and the Inception input of scaled images (a program of its own: see
    `quantise`)."""
    pixels = _levels(scaled)
    return pixels, inception_preprocess(pixels, resize)


def _on_one_device(array: jax.Array) -> jax.Array:
    """`array` whole on the first local device (a copy between devices, or a gather)."""
    if not array.is_fully_addressable:
        return jnp.asarray(sharding.to_host(array))
    return jax.device_put(array, jax.local_devices()[0])


def generated_features(
    state: Any,
    key: jax.Array,
    num: int,
    batch_size: int,
    labels: np.ndarray | None = None,
    *,
    feature_fn: FeatureFn | None = None,
    dtype: Any = jnp.float32,
    resize: str = "half_pixel",
    should_stop: StopFn | None = None,
    keep_images: bool = False,
    progress: bool = False,
) -> Generated:
    """Pool3 features and D's logits of `num` images of `state`'s generator, on the device.

    Args:
        state: a `GANState` (on one device, or replicated over `sharding.data_mesh()`).
        key: PRNG key of the latents; image i has `normal(fold_in(key, i))`.
        num: number of images, >= 1.
        batch_size: images per program, rounded up to a multiple of the devices.
        labels: int [num] classes for a conditional generator (and D); None otherwise.
        feature_fn: maps Inception input [B, 299, 299, 3] to features [B, D]; default the
            FID Inception network `pool3_fn(dtype)`.
        dtype: compute dtype of the default Inception network.
        resize: the bilinear resize convention, see `inception_preprocess`.
        should_stop: called before each batch; True raises `EvaluationInterrupted`.
        keep_images: also return the uint8 images (copied to the host).
        progress: a tqdm bar on stderr, when stderr is a terminal.

    Raises:
        ValueError: when the generator's output holds NaN, Inf or values outside [-1, 1]
            (as `to_uint8`), or `labels` are missing or out of range for the state.
    """
    if feature_fn is None:
        from jaxgan.metrics import inception

        feature_fn = inception.pool3_fn(dtype=dtype)
    resize = check_resize(resize)
    mesh = sharding.data_mesh()
    batch_size = mesh_batch_size(batch_size, num, mesh)
    if mesh.devices.size > 1 and jax.process_count() == 1:  # Many: already replicated.
        state = sharding.replicate(state, mesh)
    use_ema = bool(state.g_ema)
    features, logits, images, bad = [], [], [], []
    with progress_bar(progress, num, "Generated features") as bar:
        for start in range(0, num, batch_size):
            check_stop(should_stop, f"generation and Inception (image {start} of {num})")
            count = min(batch_size, num - start)
            batch_labels = None
            if labels is not None:
                batch_labels = pad_rows(np.asarray(labels[start : start + count]), batch_size)
            batch_labels = check_labels(state, batch_labels)
            with jax.set_mesh(mesh):  # Lets `split_batch` split the latents.
                scaled, batch_bad, batch_logits = _generate(
                    state, key, start, batch_labels, batch_size=batch_size, use_ema=use_ema
                )
            pixels, prepared = _prepare(scaled, resize)
            batch_features = feature_fn(prepared)
            check_feature_shape(batch_features, batch_size)
            features.append(_on_one_device(batch_features)[:count])
            logits.append(_on_one_device(batch_logits)[:count])
            bad.append(jnp.sum(batch_bad[:count]))
            if keep_images:
                images.append(_on_one_device(pixels)[:count])
            bar.update(count)
    bad_count = int(sum(np.asarray(jax.device_get(bad))))
    if bad_count:
        raise ValueError(
            f"the generator's images hold {bad_count} values that are NaN, Inf or outside "
            "[-1, 1]; allowed: finite values in [-1, 1] (a tanh output)"
        )
    kept = np.asarray(jnp.concatenate(images)) if keep_images else None
    return Generated(jnp.concatenate(features), np.asarray(jnp.concatenate(logits)), kept)
