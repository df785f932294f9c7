"""The pure core: the GAN state, the train step, batches, sampling and populations.

Nothing here does I/O or holds global state; every function is jittable. A researcher
builds on these:

    state = create_state(config, key, image_shape=(28, 28, 1), num_classes=10)
    step = jax.jit(train_step, donate_argnums=0)
    state, metrics = step(state, {"image": images, "label": labels}, key)
    images = sample(state, latents)
"""

from jaxgan.core.batches import Batch, batch_to_float, epoch_batches, images_to_float
from jaxgan.core.regularizers import r1_penalty
from jaxgan.core.sampling import check_labels, discriminate, sample
from jaxgan.core.standing import standing_statistics, with_standing_statistics
from jaxgan.core.state import (
    GANState,
    adam,
    adam_with_learning_rate_in_state,
    count_params,
    create_state,
    set_learning_rate,
    step_of,
)
from jaxgan.core.step import Metrics, split_epoch_key, train_epoch, train_step, train_steps

__all__ = [
    "Batch",
    "GANState",
    "Metrics",
    "adam",
    "adam_with_learning_rate_in_state",
    "batch_to_float",
    "check_labels",
    "count_params",
    "create_state",
    "discriminate",
    "epoch_batches",
    "images_to_float",
    "r1_penalty",
    "sample",
    "set_learning_rate",
    "split_epoch_key",
    "standing_statistics",
    "step_of",
    "train_epoch",
    "train_step",
    "train_steps",
    "with_standing_statistics",
]
