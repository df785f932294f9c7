"""The chunk runner's two forms take the same steps: one `lax.scan` (what GPUs and TPUs run)
and one jitted call per step (what CPUs run). CI has only CPUs, so the scan form is checked
here against the loop, for the recipe pieces that live inside a step."""

from __future__ import annotations

import jax
import numpy as np
import pytest

from jaxgan.core import create_state, population
from jaxgan.training.config import images_per_step
from jaxgan.training.runner import make_chunk_runner

IMAGE_SHAPE = (8, 8, 1)
RESNET_SHAPE = (28, 28, 1)  # The family's smallest side.
NUM_CLASSES = 10
STEPS = 3


def _batches(config, members: int = 0, image_shape=IMAGE_SHAPE) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(0)
    lead = (STEPS, members) if members else (STEPS,)
    shape = (*lead, images_per_step(config))
    return {
        "image": rng.integers(0, 256, (*shape, *image_shape), np.uint8),
        "label": rng.integers(0, NUM_CLASSES, shape, np.int32),
    }


def _both_forms(state, batches, key, members: bool = False):
    """(state, metrics) after the chunk from the loop form, then from the scan form."""
    copy = jax.tree.map(np.asarray, state)  # Each form donates its own copy.
    looped = make_chunk_runner("cpu", members=members)(jax.device_put(copy), batches, key)
    scanned = make_chunk_runner("gpu", members=members)(jax.device_put(copy), batches, key)
    return looped, scanned


def _assert_same(looped, scanned) -> None:
    (loop_state, loop_metrics), (scan_state, scan_metrics) = looped, scanned
    assert sorted(loop_metrics) == sorted(scan_metrics)
    for name in loop_metrics:
        np.testing.assert_allclose(loop_metrics[name], scan_metrics[name], rtol=1e-4, atol=1e-5)
    loop_leaves = jax.tree_util.tree_leaves_with_path(loop_state)
    scan_leaves = jax.tree.leaves(scan_state)
    assert len(loop_leaves) == len(scan_leaves)
    for (path, a), b in zip(loop_leaves, scan_leaves, strict=True):
        if jax.dtypes.issubdtype(a.dtype, jax.dtypes.prng_key):
            a, b = jax.random.key_data(a), jax.random.key_data(b)
        np.testing.assert_allclose(
            np.asarray(a, np.float64), np.asarray(b, np.float64), rtol=1e-4, atol=1e-5,
            err_msg=jax.tree_util.keystr(path),
        )  # fmt: skip


@pytest.mark.parametrize(
    "model, fields",
    [
        ("dcgan", {}),
        (
            "resnet",
            {
                "loss": "hinge",
                "d_steps": 2,
                "augment": "translation,cutout",
                "ema_decay": 0.9,
                "ema_start": 2,
                "lr_decay": "linear",
                "b1": 0.0,
                "conditional": True,
            },
        ),  # fmt: skip
        ("dcgan", {"loss": "wgan_gp", "d_steps": 2, "spectral_norm": True}),
    ],
)
def test_the_scan_and_the_loop_take_the_same_steps(tiny_config, model, fields):
    config = tiny_config(model, batch_size=8, **fields)
    shape = RESNET_SHAPE if model == "resnet" else IMAGE_SHAPE
    state = create_state(config, jax.random.key(0), image_shape=shape,
                         num_classes=NUM_CLASSES, total_steps=2 * STEPS)  # fmt: skip
    batches = _batches(config, image_shape=shape)
    looped, scanned = _both_forms(state, batches, jax.random.key(1))
    assert int(looped[0].step) == int(scanned[0].step) == STEPS
    for metrics in (looped[1], scanned[1]):
        assert all(values.shape == (STEPS,) for values in metrics.values())
    _assert_same(looped, scanned)


def test_a_populations_scan_and_loop_take_the_same_steps(tiny_config):
    members = 2
    config = tiny_config("dcgan", batch_size=8, population=members)
    keys = [jax.random.key(seed) for seed in range(members)]
    state = population.create(config, keys, [2e-4, 1e-3], image_shape=IMAGE_SHAPE)
    looped, scanned = _both_forms(
        state, _batches(config, members), population.seed_keys([5, 6]), members=True
    )
    for metrics in (looped[1], scanned[1]):
        assert all(values.shape == (STEPS, members) for values in metrics.values())
    _assert_same(looped, scanned)
