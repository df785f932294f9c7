"""A small FashionMNIST CNN: the judge of class-conditional generators.

`load_classifier()` returns a classifier trained by this package on FashionMNIST's train
split, cached like the Inception weights in `$JAXGAN_CACHE_DIR` (default
`~/.cache/jaxgan`) together with its accuracy on the test split. That accuracy is the
ceiling of the "class accuracy" of generated images: the fraction of images generated for
class c that the classifier labels c (the CAS-like check of conditional GANs, cf. Ravuri &
Vinyals 2019, "Classification Accuracy Score for Conditional Generative Models").

The network: 3x3 conv (w) -> ReLU -> 2x2 max-pool -> 3x3 conv (2w) -> ReLU -> 2x2
max-pool -> dropout -> dense (hidden) -> ReLU -> dropout -> dense (10). Images are
quantised to uint8 first with the FID protocol's rule (`jaxgan.metrics.features.to_uint8`),
so generated and real images reach the network alike.
"""

from __future__ import annotations

import dataclasses
import functools
import hashlib
import json
import logging
import time
import zipfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import optax
from flax import serialization

from jaxgan import fileio
from jaxgan.data import default_cache_dir
from jaxgan.data.fashion_mnist import INFO as FASHION_MNIST_INFO
from jaxgan.data.fashion_mnist import load_fashion_mnist
from jaxgan.metrics.features import to_uint8
from jaxgan.models.dropout import Dropout
from jaxgan.models.layers import Conv

log = logging.getLogger(__name__)

# Bump when the network or the cache file's layout changes.
CACHE_VERSION = 1
IMAGE_SHAPE = FASHION_MNIST_INFO.image_shape
NUM_CLASSES = FASHION_MNIST_INFO.num_classes


@dataclasses.dataclass(frozen=True)
class ClassifierSettings:
    """How the classifier is built and trained; a digest of them keys the cache file.

    Attributes:
      width: channels of the first conv (the second has 2 * width).
      hidden: units of the hidden dense layer.
      dropout_rate: dropout before each dense layer.
      num_epochs: passes over the training images.
      batch_size: images per Adam step (the last incomplete batch is dropped).
      learning_rate: Adam's initial learning rate, cosine-decayed to 0 over the training.
      num_train_examples: train on the first N training images (0: all 60,000).
      seed: initialisation, shuffling and dropout.
    """

    width: int = 16
    hidden: int = 128
    dropout_rate: float = 0.3
    num_epochs: int = 12
    batch_size: int = 128
    learning_rate: float = 1e-3
    num_train_examples: int = 0
    seed: int = 0

    def digest(self) -> str:
        text = json.dumps(dataclasses.asdict(self), sort_keys=True)
        return hashlib.sha256(text.encode()).hexdigest()[:12]


DEFAULT_SETTINGS = ClassifierSettings()


def max_pool_2x2(features: jax.Array) -> jax.Array:
    """2x2 max-pooling with stride 2 of [B, H, W, C] (H, W even) -> [B, H/2, W/2, C].

    The same values as `nn.max_pool(features, (2, 2), (2, 2))`, as a reshape and a max: on
    XLA's CPU backend its gradient is elementwise work instead of a select-and-scatter,
    which made the whole training step about 1.8x faster.
    """
    batch, height, width, channels = features.shape
    blocks = features.reshape(batch, height // 2, 2, width // 2, 2, channels)
    return blocks.max(axis=(2, 4))


class ClassifierNet(nn.Module):
    """Images float [B, 28, 28, 1] in [-1, 1] -> class logits [B, 10]."""

    width: int = 16
    hidden: int = 128
    dropout_rate: float = 0.3

    @nn.compact
    def __call__(self, images: jax.Array, *, train: bool) -> jax.Array:
        hidden = nn.relu(Conv(self.width, (3, 3))(images))
        hidden = max_pool_2x2(hidden)  # [B, 14, 14, w]
        hidden = nn.relu(Conv(2 * self.width, (3, 3))(hidden))
        hidden = max_pool_2x2(hidden)  # [B, 7, 7, 2w]
        hidden = hidden.reshape(images.shape[0], -1)
        hidden = Dropout(self.dropout_rate, deterministic=not train)(hidden)
        hidden = nn.relu(nn.Dense(self.hidden)(hidden))
        hidden = Dropout(self.dropout_rate, deterministic=not train)(hidden)
        return nn.Dense(NUM_CLASSES)(hidden)


def _network(settings: ClassifierSettings) -> ClassifierNet:
    return ClassifierNet(settings.width, settings.hidden, settings.dropout_rate)


@jax.jit
def _as_float(images_uint8: jax.Array) -> jax.Array:
    return images_uint8.astype(jnp.float32) / 127.5 - 1.0


def _prepared(images: Any) -> np.ndarray:
    """uint8 [N, 28, 28, 1] from uint8 or float [-1, 1] images [N, 28, 28(, 1)]."""
    images_uint8 = to_uint8(images)
    if images_uint8.shape[1:] != IMAGE_SHAPE:
        raise ValueError(
            f"the FashionMNIST classifier takes images [N, 28, 28] or [N, 28, 28, 1]; got "
            f"{np.shape(images)}"
        )
    return images_uint8


@dataclasses.dataclass(frozen=True)
class Classifier:
    """A trained FashionMNIST classifier.

    Attributes:
      params: the network's parameters.
      settings: how it was built and trained.
      test_accuracy: accuracy on the 10,000 test images, in [0, 1].
      train_seconds: wall time of its training.
    """

    params: Any
    settings: ClassifierSettings
    test_accuracy: float
    train_seconds: float = 0.0

    def logits(self, images: Any, batch_size: int = 1000) -> np.ndarray:
        """Class logits float32 [N, 10] of uint8 or float [-1, 1] images [N, 28, 28(, 1)]."""
        images_uint8 = _prepared(images)
        batch_size = min(batch_size, len(images_uint8))
        outputs = []
        for start in range(0, len(images_uint8), batch_size):
            batch = images_uint8[start : start + batch_size]
            count = len(batch)
            if count < batch_size:  # Pad, so that the jitted call compiles once.
                batch = np.concatenate([batch, np.repeat(batch[-1:], batch_size - count, 0)])
            outputs.append(np.asarray(_eval_logits(self.settings, self.params, batch))[:count])
        return np.concatenate(outputs)

    def predict(self, images: Any, batch_size: int = 1000) -> np.ndarray:
        """Predicted labels int32 [N] in [0, 10) of uint8 or float [-1, 1] images."""
        return np.argmax(self.logits(images, batch_size), axis=-1).astype(np.int32)

    def accuracy(self, images: Any, labels: Any) -> float:
        """The fraction of `images` whose predicted label equals `labels` (int [N])."""
        labels = np.asarray(labels)
        if labels.shape != (len(images),):
            raise ValueError(f"labels {labels.shape} do not match {len(images)} images")
        return float(np.mean(self.predict(images) == labels))


@functools.partial(jax.jit, static_argnums=0)
def _eval_logits(settings: ClassifierSettings, params: Any, images_uint8: jax.Array):
    return _network(settings).apply({"params": params}, _as_float(images_uint8), train=False)


def _make_train_step(settings: ClassifierSettings, tx: optax.GradientTransformation):
    network = _network(settings)

    def train_step(params, opt_state, images_uint8, labels, key):
        def loss_fn(params):
            logits = network.apply(
                {"params": params}, _as_float(images_uint8), train=True, rngs={"dropout": key}
            )
            return optax.softmax_cross_entropy_with_integer_labels(logits, labels).mean()

        loss, grads = jax.value_and_grad(loss_fn)(params)
        updates, opt_state = tx.update(grads, opt_state, params)
        return optax.apply_updates(params, updates), opt_state, loss

    return jax.jit(train_step, donate_argnums=(0, 1))


def train_classifier(
    train_images: np.ndarray,
    train_labels: np.ndarray,
    test_images: np.ndarray,
    test_labels: np.ndarray,
    settings: ClassifierSettings = DEFAULT_SETTINGS,
    *,
    on_epoch: Callable[[int, float, float], None] | None = None,
) -> Classifier:
    """Trains the classifier (Adam, cosine decay, cross-entropy), then measures its test accuracy.

    Each step is one jitted call (XLA:CPU runs convolutions slowly inside `lax.scan`).

    Args:
      train_images, test_images: uint8 [N, 28, 28(, 1)].
      train_labels, test_labels: int [N] in [0, 10).
      settings: the network and training settings; `num_train_examples` is applied here.
      on_epoch: called after each epoch with (epoch, mean training loss, seconds).
    """
    train_images = _prepared(train_images)
    train_labels = np.asarray(train_labels, np.int32)
    if settings.num_train_examples:
        train_images = train_images[: settings.num_train_examples]
        train_labels = train_labels[: settings.num_train_examples]
    num_batches = len(train_images) // settings.batch_size
    if num_batches < 1:
        raise ValueError(
            f"batch_size={settings.batch_size} is larger than the {len(train_images)} "
            "training images"
        )
    key = jax.random.key(settings.seed)
    init_key, shuffle_key, dropout_key = jax.random.split(key, 3)
    params = _network(settings).init(
        init_key, jnp.zeros((1, *IMAGE_SHAPE), jnp.float32), train=False
    )["params"]
    schedule = optax.cosine_decay_schedule(
        settings.learning_rate, settings.num_epochs * num_batches
    )
    tx = optax.adam(schedule)
    opt_state = tx.init(params)
    train_step = _make_train_step(settings, tx)
    rng = np.random.default_rng(np.asarray(jax.random.key_data(shuffle_key)))
    start = time.perf_counter()
    for epoch in range(settings.num_epochs):
        epoch_start = time.perf_counter()
        order = rng.permutation(len(train_images))[: num_batches * settings.batch_size]
        losses = []
        for index, batch in enumerate(order.reshape(num_batches, settings.batch_size)):
            step_key = jax.random.fold_in(dropout_key, epoch * num_batches + index)
            params, opt_state, loss = train_step(
                params, opt_state, train_images[batch], train_labels[batch], step_key
            )
            losses.append(loss)
        mean_loss = float(np.mean(jax.device_get(losses)))
        if on_epoch is not None:
            on_epoch(epoch + 1, mean_loss, time.perf_counter() - epoch_start)
    train_seconds = time.perf_counter() - start
    trained = Classifier(jax.device_get(params), settings, 0.0, train_seconds)
    test_accuracy = trained.accuracy(test_images, test_labels)
    return dataclasses.replace(trained, test_accuracy=test_accuracy)


def cache_path(
    settings: ClassifierSettings = DEFAULT_SETTINGS, cache_dir: str | Path | None = None
) -> Path:
    """The cache file of a classifier trained with `settings`."""
    directory = Path(cache_dir) if cache_dir else default_cache_dir()
    return directory / f"fashion_classifier_v{CACHE_VERSION}_{settings.digest()}.npz"


def save_classifier(classifier: Classifier, path: str | Path) -> Path:
    """Writes the parameters, settings, test accuracy and a SHA-256 of the parameters."""
    blob = serialization.to_bytes(classifier.params)
    meta = {
        "settings": dataclasses.asdict(classifier.settings),
        "test_accuracy": classifier.test_accuracy,
        "train_seconds": classifier.train_seconds,
        "params_sha256": hashlib.sha256(blob).hexdigest(),
        "version": CACHE_VERSION,
    }
    return fileio.atomic_savez(
        path, params=np.frombuffer(blob, np.uint8), meta=np.array(json.dumps(meta))
    )


def read_classifier(path: str | Path) -> Classifier:
    """Reads a file of `save_classifier`.

    Raises:
      FileNotFoundError: no such file.
      ValueError: the file is unreadable, of another version, or its parameters do not
        match their SHA-256 or the network's shapes.
    """
    path = Path(path)
    try:
        with np.load(path, allow_pickle=False) as archive:
            blob = archive["params"].tobytes()
            meta = json.loads(str(archive["meta"]))
    except FileNotFoundError:
        raise
    except (OSError, KeyError, ValueError, EOFError, zipfile.BadZipFile) as error:
        raise ValueError(f"{path} is not a readable classifier file ({error})") from error
    if meta.get("version") != CACHE_VERSION:
        raise ValueError(f"{path} has version {meta.get('version')}, expected {CACHE_VERSION}")
    if hashlib.sha256(blob).hexdigest() != meta.get("params_sha256"):
        raise ValueError(f"{path}: the parameters differ from the SHA-256 recorded when saved")
    settings = ClassifierSettings(**meta["settings"])
    template = jax.eval_shape(
        lambda: _network(settings).init(
            jax.random.key(0), jnp.zeros((1, *IMAGE_SHAPE), jnp.float32), train=False
        )["params"]
    )
    try:
        params = serialization.from_bytes(template, blob)
    except Exception as error:  # noqa: BLE001 - msgpack raises many types; report one
        raise ValueError(f"{path}: the parameters do not fit the network ({error})") from error
    shapes_match = jax.tree.all(
        jax.tree.map(lambda t, p: tuple(t.shape) == np.shape(p), template, params)
    )
    if not shapes_match:
        raise ValueError(f"{path}: the parameters' shapes do not fit the network")
    return Classifier(params, settings, float(meta["test_accuracy"]), meta["train_seconds"])


def load_classifier(
    *,
    train_if_missing: bool = True,
    settings: ClassifierSettings = DEFAULT_SETTINGS,
    cache_dir: str | Path | None = None,
    data_dir: str | None = None,
) -> Classifier:
    """The cached FashionMNIST classifier; trained (a few minutes on CPU) and cached if absent.

    A cache file that cannot be read, or whose parameters fail their checksum, is rebuilt.

    Args:
      train_if_missing: train when there is no usable cache file; otherwise raise.
      settings: which classifier (the default is the one the quality benchmark uses).
      cache_dir: default `$JAXGAN_CACHE_DIR`, else `~/.cache/jaxgan`.
      data_dir: optional folder with the four FashionMNIST IDX .gz files.

    Raises:
      FileNotFoundError: no usable cache file and `train_if_missing=False`.
    """
    path = cache_path(settings, cache_dir)
    try:
        return read_classifier(path)
    except FileNotFoundError:
        problem = "not cached yet"
    except ValueError as error:
        problem = f"the cache is unusable: {error}"
        log.warning("Rebuilding the FashionMNIST classifier: %s", error)
    if not train_if_missing:
        raise FileNotFoundError(
            f"no usable FashionMNIST classifier at {path} ({problem}); call "
            "load_classifier(train_if_missing=True) to train one"
        )
    log.info("Training the FashionMNIST classifier (%s); cached in %s", problem, path)
    train_images, train_labels = load_fashion_mnist("train", data_dir=data_dir)
    test_images, test_labels = load_fashion_mnist("test", data_dir=data_dir)

    def report(epoch: int, loss: float, seconds: float) -> None:
        log.info("classifier epoch %d/%d: loss %.4f (%.1f s)",
                 epoch, settings.num_epochs, loss, seconds)  # fmt: skip

    classifier = train_classifier(
        train_images, train_labels, test_images, test_labels, settings, on_epoch=report
    )
    log.info("FashionMNIST classifier: test accuracy %.4f", classifier.test_accuracy)
    try:
        save_classifier(classifier, path)
    except OSError as error:
        log.warning("Could not cache the classifier in %s (%s)", path, error)
    return classifier
