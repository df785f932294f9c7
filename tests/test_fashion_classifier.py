"""The FashionMNIST classifier: training, prediction and its cache."""

import dataclasses

import flax.linen as nn
import jax
import numpy as np
import pytest

from jaxgan.data.fashion_mnist import load_fashion_mnist
from jaxgan.evaluation import fashion_classifier as classifier

# A few seconds on CPU: 2,000 images, three epochs, tiny widths.
TINY = classifier.ClassifierSettings(
    width=8, hidden=32, dropout_rate=0.1, num_epochs=3, batch_size=50, learning_rate=3e-3,
    num_train_examples=2000, seed=1,
)  # fmt: skip


@pytest.fixture(scope="module")
def cache_dir(tmp_path_factory):
    return tmp_path_factory.mktemp("classifier_cache")


@pytest.fixture(scope="module")
def trained(cache_dir):
    return classifier.load_classifier(settings=TINY, cache_dir=cache_dir)


@pytest.fixture(scope="module")
def fashion_test_split():
    images, labels = load_fashion_mnist("test")
    return images[..., None], labels


def test_max_pool_2x2_equals_flax_max_pool_with_gradients():
    features = jax.random.normal(jax.random.key(0), (2, 6, 4, 3))
    np.testing.assert_array_equal(
        classifier.max_pool_2x2(features), nn.max_pool(features, (2, 2), (2, 2))
    )
    weights = jax.random.normal(jax.random.key(1), (2, 3, 2, 3))
    ours = jax.grad(lambda x: (classifier.max_pool_2x2(x) * weights).sum())(features)
    flax = jax.grad(lambda x: (nn.max_pool(x, (2, 2), (2, 2)) * weights).sum())(features)
    np.testing.assert_allclose(ours, flax)


def test_tiny_classifier_beats_chance_on_the_test_split(trained, fashion_test_split):
    images, labels = fashion_test_split
    # Chance is 0.1; three epochs on 2,000 images give about 0.7.
    assert trained.test_accuracy > 0.5
    # The stored accuracy is the test split's (not the training images').
    assert trained.accuracy(images, labels) == pytest.approx(trained.test_accuracy)
    predicted = trained.predict(images[:500])
    assert predicted.dtype == np.int32 and predicted.shape == (500,)
    assert len(np.unique(predicted)) >= 5


def test_predict_accepts_uint8_gray_and_float_images(trained, fashion_test_split):
    images = fashion_test_split[0][:37]
    expected = trained.predict(images)
    np.testing.assert_array_equal(trained.predict(images[..., 0]), expected)
    floats = images.astype(np.float32) / 127.5 - 1.0
    np.testing.assert_array_equal(trained.predict(floats), expected)
    # Padding of the last batch does not change any prediction.
    np.testing.assert_array_equal(trained.predict(images, batch_size=8), expected)
    np.testing.assert_allclose(
        trained.logits(images[::-1], batch_size=5), trained.logits(images)[::-1], atol=1e-5
    )
    with pytest.raises(ValueError, match="28, 28"):
        trained.predict(np.zeros((2, 32, 32, 1), np.uint8))


def test_the_cache_round_trips_without_training(
    trained, cache_dir, monkeypatch, fashion_test_split
):
    path = classifier.cache_path(TINY, cache_dir)
    assert path.is_file() and TINY.digest() in path.name
    monkeypatch.setattr(classifier, "train_classifier", _must_not_train)
    loaded = classifier.load_classifier(settings=TINY, cache_dir=cache_dir, train_if_missing=False)
    assert loaded.settings == TINY
    assert loaded.test_accuracy == trained.test_accuracy
    jax.tree.map(np.testing.assert_array_equal, loaded.params, trained.params)
    images = fashion_test_split[0][:100]
    np.testing.assert_array_equal(loaded.predict(images), trained.predict(images))


def test_other_settings_are_another_cache_file(cache_dir, monkeypatch):
    other = dataclasses.replace(TINY, hidden=17)
    assert classifier.cache_path(other, cache_dir) != classifier.cache_path(TINY, cache_dir)
    monkeypatch.setattr(classifier, "train_classifier", _must_not_train)
    with pytest.raises(FileNotFoundError, match="not cached yet"):
        classifier.load_classifier(settings=other, cache_dir=cache_dir, train_if_missing=False)


def _damage(path, how: str) -> None:
    if how == "tamper":
        # A well-formed file whose parameters changed after saving: only the SHA-256 tells.
        with np.load(path) as archive:
            arrays = dict(archive)
        arrays["params"] = arrays["params"].copy()
        arrays["params"][-8:] ^= 0xFF
        np.savez(path, **arrays)
        return
    data = bytearray(path.read_bytes())
    if how == "flip":
        # The parameters' bytes fill the middle of the (uncompressed) .npz: zip's CRC fails.
        middle = len(data) // 2
        data[middle : middle + 16] = bytes(b ^ 0xFF for b in data[middle : middle + 16])
    else:
        data = data[: len(data) // 3]
    path.write_bytes(bytes(data))


@pytest.mark.parametrize("how", ["tamper", "flip", "truncate"])
def test_a_corrupt_cache_is_refused(trained, tmp_path, monkeypatch, how):
    path = classifier.cache_path(TINY, tmp_path)
    classifier.save_classifier(trained, path)
    _damage(path, how)
    with pytest.raises(ValueError, match="SHA-256" if how == "tamper" else "readable"):
        classifier.read_classifier(path)
    monkeypatch.setattr(classifier, "train_classifier", _must_not_train)
    with pytest.raises(FileNotFoundError, match="unusable"):
        classifier.load_classifier(settings=TINY, cache_dir=tmp_path, train_if_missing=False)


def test_a_corrupt_cache_is_rebuilt(trained, tmp_path, monkeypatch):
    path = classifier.cache_path(TINY, tmp_path)
    classifier.save_classifier(trained, path)
    _damage(path, "tamper")
    calls = []
    real_train = classifier.train_classifier

    def counting_train(*args, **kwargs):
        calls.append(args[4] if len(args) > 4 else kwargs.get("settings"))
        return real_train(*args, **kwargs)

    monkeypatch.setattr(classifier, "train_classifier", counting_train)
    rebuilt = classifier.load_classifier(settings=TINY, cache_dir=tmp_path)
    assert calls == [TINY]
    assert rebuilt.test_accuracy == pytest.approx(trained.test_accuracy)  # Same seed.
    assert classifier.read_classifier(path).test_accuracy == rebuilt.test_accuracy


def _must_not_train(*args, **kwargs):
    raise AssertionError("the classifier was trained although a cache file exists")
