"""The evaluation wiring: metric assembly, inference-mode generation, labels, cache, stopping."""

import logging
import sys
import warnings

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxgan.core import create_state, sample
from jaxgan.data import Dataset, DatasetInfo
from jaxgan.evaluation import evaluator as evaluation
from jaxgan.evaluation import reference, report
from jaxgan.metrics import EvaluationInterrupted, SmallSampleWarning
from jaxgan.metrics.features import inception_features
from jaxgan.metrics.frechet import feature_statistics, frechet_distance
from jaxgan.metrics.manifold import precision_recall
from jaxgan.metrics.mmd import mmd2_unbiased
from jaxgan.training import periodic


@jax.jit
def pixel_features(preprocessed: jax.Array) -> jax.Array:
    """A cheap stand-in for Inception: 16 pooled pixel values, [B, 16]."""
    pooled = preprocessed[:, ::75, ::75, 0]
    return pooled.reshape(preprocessed.shape[0], -1)


def eval_config(tiny_config, model="dcgan", **overrides):
    settings = dict(fid_num_samples=12, fid_batch_size=5, kid_subset_size=6, kid_num_subsets=3)
    return tiny_config(model, **{**settings, **overrides})


def reference_set(num=30, seed=1):
    rng = np.random.default_rng(seed)
    images = rng.integers(0, 256, (num, 28, 28, 1), dtype=np.uint8)
    return images, rng.integers(0, 10, num).astype(np.int32)


def make_evaluator(config, images, labels=None, **options):
    options.setdefault("feature_fn", pixel_features)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", SmallSampleWarning)
        return evaluation.Evaluator(
            config, images, labels, reference_name="fashion_mnist:test", **options
        )


def documented_latents(state, key, num):
    """Image i's latent, as `generate_images` documents it: whatever the batch size."""
    return jnp.stack(
        [jax.random.normal(jax.random.fold_in(key, i), (state.latent_dim,)) for i in range(num)]
    )


# --- metric assembly ---------------------------------------------------------------------------


def test_feature_metrics_agree_with_direct_calls():
    rng = np.random.default_rng(0)
    real, fake = rng.normal(size=(40, 6)), rng.normal(0.5, 1.0, size=(40, 6))
    results = evaluation.feature_metrics(real, fake, kid_subsets=5, kid_size=20)
    expected_fid = frechet_distance(*feature_statistics(real), *feature_statistics(fake))
    assert results["fid"] == pytest.approx(expected_fid)
    assert results["num_real"] == results["num_fake"] == 40
    assert 0 <= results["precision"] <= 1 and 0 <= results["coverage"] <= 1
    same = evaluation.feature_metrics(real, real, kid_subsets=5, kid_size=20)
    assert abs(same["fid"]) < 1e-6 and same["precision"] == same["recall"] == 1.0


def test_a_real_summary_gives_the_same_bits_and_must_fit_the_real_features():
    rng = np.random.default_rng(3)
    real, fake = rng.normal(size=(40, 6)), rng.normal(0.5, 1.0, size=(40, 6))
    summary = evaluation.summarise_real(real)
    fresh = evaluation.feature_metrics(real, fake, kid_subsets=5, kid_size=20)
    reused = evaluation.feature_metrics(real, fake, kid_subsets=5, kid_size=20,
                                        real_summary=summary)  # fmt: skip
    assert reused == fresh
    with pytest.raises(ValueError, match=r"real_summary describes 40 features"):
        evaluation.feature_metrics(real[:30], fake, kid_subsets=5, kid_size=20,
                                   real_summary=summary)  # fmt: skip


def test_the_evaluator_summarises_the_real_features_once(tiny_config, monkeypatch):
    from jaxgan.metrics import blocked

    passes = []
    original = blocked.kth_neighbour_radii
    monkeypatch.setattr(
        blocked, "kth_neighbour_radii",
        lambda features, ks: passes.append(len(features)) or original(features, ks),
    )  # fmt: skip
    config = eval_config(tiny_config)
    evaluator = make_evaluator(config, *reference_set())
    first = evaluator.evaluate(create_state(config, jax.random.key(0)), jax.random.key(2))
    second = evaluator.evaluate(create_state(config, jax.random.key(1)), jax.random.key(2))
    # One N x N pass over the real features in all, one over each generator's.
    assert passes == [12, 12, 12]
    assert first["fid"] != second["fid"]
    fresh = make_evaluator(config, *reference_set())
    assert fresh.evaluate(create_state(config, jax.random.key(1)), jax.random.key(2)) == second


def test_precision_is_fidelity_and_recall_is_diversity_in_metrics_and_report(tmp_path):
    # Every generated point sits inside the real manifold (precision 1), but the collapsed
    # generated manifold holds few real points (low recall): a swap shows at once.
    rng = np.random.default_rng(3)
    real = rng.normal(size=(60, 4))
    collapsed = rng.normal(scale=0.05, size=(60, 4))
    results = evaluation.feature_metrics(real, collapsed, kid_subsets=2, kid_size=20)
    assert results["precision"] == 1.0 and results["recall"] < 0.2
    assert {k: results[k] for k in ("precision", "recall")} == precision_recall(real, collapsed)
    results.update(
        reference="toy", resize="half_pixel", feature_dtype="float32", kid_subset_size=20,
        kid_num_subsets=2,
    )  # fmt: skip
    text = report.format_results(results)
    assert "Precision (k=3): 1.0000\n" in text
    assert f"Recall (k=3): {results['recall']:.4f}\n" in text


def test_kid_of_one_distinct_subset_has_no_spread_and_says_so():
    # Issue 20: subsets clipped to N all hold every image; "+- 0.000000 (100 subsets of 500)"
    # claimed a precision KID did not have.
    rng = np.random.default_rng(4)
    real, fake = rng.normal(size=(16, 6)), rng.normal(0.3, 1.0, size=(16, 6))
    whole = evaluation.feature_metrics(real, fake, kid_subsets=100, kid_size=1000)
    assert (whole["kid_subset_size"], whole["kid_num_subsets"], whole["kid_std"]) == (16, 1, None)
    assert whole["kid_mean"] == pytest.approx(mmd2_unbiased(real, fake))
    whole.update(reference="toy", resize="half_pixel", feature_dtype="float32")
    text = report.format_results(whole)
    assert f"KID: {whole['kid_mean']:.6f} (one subset: all 16 images, so no spread" in text
    assert "+-" not in text and "100 subsets" not in text
    parts = evaluation.feature_metrics(real, fake, kid_subsets=10, kid_size=8)
    assert (parts["kid_subset_size"], parts["kid_num_subsets"]) == (8, 10)
    assert parts["kid_std"] > 0
    parts.update(reference="toy", resize="half_pixel", feature_dtype="float32")
    assert f"+- {parts['kid_std']:.6f} (10 subsets of 8)" in report.format_results(parts)


# --- the Evaluator -----------------------------------------------------------------------------


def test_evaluator_scores_a_state_and_writes_a_complete_report(tiny_config, tmp_path):
    config = eval_config(tiny_config)
    state = create_state(config, jax.random.key(0))
    evaluator = make_evaluator(config, *reference_set())
    results = evaluator.evaluate(state, jax.random.key(2))
    assert results["num_real"] == results["num_fake"] == 12
    assert results["reference"] == "fashion_mnist:test[:12]"
    for name in (
        "fid", "kid_mean", "kid_std", "precision", "recall", "density", "coverage",
        "d_eval_accuracy", "d_eval_precision", "d_eval_recall",
    ):  # fmt: skip
        assert isinstance(results[name], float) and np.isfinite(results[name]), name
    result_file = tmp_path / "fid_result.txt"
    evaluator.write_report(results, result_file)
    text = result_file.read_text()
    for needle in (
        "FID:", "KID:", "Precision (k=3)", "Coverage (k=5)", "Discriminator accuracy",
        "N real: 12", "N fake: 12", "Reference: fashion_mnist:test[:12]",
        "Feature precision: float32", "Checkpoint step: 0", "FID protocol", "computed in float32",
    ):  # fmt: skip
        assert needle in text, needle


def with_distinctive_running_statistics(state):
    """G's BatchNorm running statistics far from any batch's: inference mode shows them."""
    stats = jax.tree_util.tree_map_with_path(
        lambda path, leaf: jnp.full_like(leaf, 3.0 if path[-1].key == "mean" else 0.25),
        state.g_batch_stats,
    )
    return state.replace(g_batch_stats=stats)


def test_evaluator_generates_in_inference_mode_like_sample(tiny_config):
    config = eval_config(tiny_config)
    state = with_distinctive_running_statistics(create_state(config, jax.random.key(0)))
    images, labels = reference_set()
    evaluator = make_evaluator(config, images, labels)
    key = jax.random.key(5)

    generated, fake_labels = evaluator.generate(state, key)

    expected = np.asarray(sample(state, documented_latents(state, key, 12)))
    assert fake_labels is None
    np.testing.assert_allclose(generated, expected, atol=1e-6)
    default_stats = create_state(config, jax.random.key(0))
    assert not np.allclose(generated, evaluator.generate(default_stats, key)[0], atol=1e-3)
    # The scores are those of exactly these images.
    results = evaluator.evaluate(state, key)
    expected_metrics = evaluation.feature_metrics(
        inception_features(images[:12], 5, feature_fn=pixel_features),
        inception_features(expected, 5, feature_fn=pixel_features),
        kid_subsets=3,
        kid_size=6,
    )
    for name, value in expected_metrics.items():
        assert results[name] == pytest.approx(value), name


def test_conditional_state_generates_with_the_reference_labels(tiny_config):
    config = eval_config(tiny_config, conditional=True)
    state = create_state(config, jax.random.key(0), image_shape=(28, 28, 1), num_classes=10)
    images, labels = reference_set()
    evaluator = make_evaluator(config, images, labels)
    key = jax.random.key(6)

    generated, fake_labels = evaluator.generate(state, key)

    np.testing.assert_array_equal(fake_labels, labels[:12])
    latents = documented_latents(state, key, 12)
    expected = np.asarray(sample(state, latents, jnp.asarray(labels[:12])))
    np.testing.assert_allclose(generated, expected, atol=1e-6)
    shifted = np.asarray(sample(state, latents, jnp.asarray((labels[:12] + 1) % 10)))
    assert not np.allclose(generated, shifted, atol=1e-4)
    assert np.isfinite(evaluator.evaluate(state, key)["d_eval_accuracy"])
    with pytest.raises(ValueError, match="reference_labels"):
        make_evaluator(config, images).generate(state, key)


def test_should_stop_interrupts_generation_and_feature_extraction(tiny_config):
    config = eval_config(tiny_config)
    state = create_state(config, jax.random.key(0))
    evaluator = make_evaluator(config, *reference_set())

    def stop_at_call(number):
        calls = []

        def should_stop():
            calls.append(None)
            return len(calls) >= number

        return should_stop, calls

    should_stop, calls = stop_at_call(1)
    with pytest.raises(EvaluationInterrupted, match="generation"):
        evaluator.evaluate(state, jax.random.key(0), should_stop=should_stop)
    # 3 generator batches of 5 pass; the first Inception batch stops.
    should_stop, calls = stop_at_call(4)
    with pytest.raises(EvaluationInterrupted, match="Inception features"):
        evaluator.evaluate(state, jax.random.key(0), should_stop=should_stop)
    assert len(calls) == 4
    assert evaluator.evaluate(state, jax.random.key(0), should_stop=lambda: False)["fid"] >= 0


def test_inception_features_stops_before_the_next_batch():
    batches_seen = []

    def counting_features(preprocessed):
        batches_seen.append(preprocessed.shape[0])
        return pixel_features(preprocessed)

    images = np.zeros((10, 8, 8), np.uint8)
    with pytest.raises(EvaluationInterrupted):
        inception_features(
            images, 4, feature_fn=counting_features, should_stop=lambda: len(batches_seen) == 2
        )
    assert batches_seen == [4, 4]


def test_the_progress_bar_is_drawn_only_on_a_terminal(capsys, monkeypatch):
    # Issue 20: carriage-return redraws of the bar filled logs that are files.
    images = np.zeros((4, 8, 8, 1), np.uint8)
    inception_features(images, 2, feature_fn=pixel_features, progress=True)
    assert capsys.readouterr().err == ""
    monkeypatch.setattr(sys.stderr, "isatty", lambda: True)
    inception_features(images, 2, feature_fn=pixel_features, progress=True)
    assert "Inception features" in capsys.readouterr().err


def test_reference_features_are_cached_by_name_split_n_resize_and_dtype(tmp_path, monkeypatch):
    calls = []

    def fake_inception_features(images, batch_size, **options):
        calls.append(options["resize"])
        return np.random.default_rng(len(images)).normal(size=(len(images), 2048))

    monkeypatch.setattr(reference, "inception_features", fake_inception_features)
    images = reference_set(20)[0]

    def features(name, resize="half_pixel", feature_dtype="float32", num=20):
        return evaluation.reference_features(
            images[:num], name=name, batch_size=5, resize=resize, feature_dtype=feature_dtype,
            cache_dir=tmp_path,
        )  # fmt: skip

    first = features("fashion_mnist:test")
    (cached,) = tmp_path.glob("*.npz")
    for part in ("fashion_mnist-test", "_n20_", "half_pixel", "float32"):
        assert part in cached.name, part
    np.testing.assert_array_equal(features("fashion_mnist:test"), first)
    assert len(calls) == 1
    features("tfds:cifar10:test")
    features("fashion_mnist:train")
    features("fashion_mnist:test", resize="tf1")
    features("fashion_mnist:test", feature_dtype="bfloat16")
    features("fashion_mnist:test", num=19)
    assert len(calls) == 6 and len(list(tmp_path.glob("*.npz"))) == 6


def test_small_n_warns_once_at_construction_and_never_while_evaluating(tiny_config):
    config = eval_config(tiny_config)
    state = create_state(config, jax.random.key(0))
    images, labels = reference_set()

    @jax.jit
    def features_with_dead_units(preprocessed):
        features = pixel_features(preprocessed)
        return jnp.concatenate([features, jnp.zeros_like(features[:, :3])], axis=1)

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        evaluator = evaluation.Evaluator(
            config, images, labels, reference_name="fashion_mnist:test",
            feature_fn=features_with_dead_units,
        )  # fmt: skip
        for seed in range(2):
            evaluator.evaluate(state, jax.random.key(seed))
    assert [warning.category for warning in caught] == [SmallSampleWarning]
    assert "12 real and 12 generated" in str(caught[0].message)
    assert "fid_num_samples" in str(caught[0].message)


def test_evaluator_from_a_dataset_is_named_after_its_source_and_split(tiny_config):
    images, labels = reference_set()
    info = DatasetInfo("tfds:mnist", (28, 28, 1), 10, tuple(str(n) for n in range(10)))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", SmallSampleWarning)
        evaluator = evaluation.Evaluator.from_dataset(
            eval_config(tiny_config), Dataset(images, labels, info, "test"), resize="tf1"
        )
    assert evaluator.reference_name == "tfds:mnist:test" and evaluator.resize == "tf1"
    np.testing.assert_array_equal(evaluator.reference_labels, labels[:12])


def test_evaluator_refuses_bad_arguments(tiny_config):
    config = eval_config(tiny_config)
    images, labels = reference_set()
    with pytest.raises(ValueError, match="feature_dtype"):
        make_evaluator(config, images, feature_dtype="float16")
    with pytest.raises(ValueError, match="one label per image"):
        make_evaluator(config, images, labels[:5])


def test_kid_subset_size_above_n_is_clipped_with_a_warning(tiny_config, caplog):
    config = eval_config(tiny_config, kid_subset_size=1000)
    with caplog.at_level(logging.WARNING, logger=evaluation.__name__):
        evaluator = make_evaluator(config, *reference_set())
    assert "KID subset size clipped from 1000 to 12 (N)" in caplog.text
    results = evaluator.evaluate(create_state(config, jax.random.key(0)), jax.random.key(2))
    assert (results["kid_subset_size"], results["kid_num_subsets"]) == (12, 1)
    assert results["kid_std"] is None and "kid_std" not in periodic.scalars(results)


def test_fewer_than_six_images_are_refused_when_the_evaluator_is_built(tiny_config):
    # Issue 20: N below 6 failed only after the work, at density/coverage's 5 neighbours.
    images, labels = reference_set(num=5)
    with pytest.raises(ValueError, match=r"fashion_mnist:test has 5 reference images and "
                       r"fid_num_samples=12, so N=5; allowed: N >= 6"):  # fmt: skip
        make_evaluator(eval_config(tiny_config), images, labels)


def test_auto_batch_size_fits_the_device(monkeypatch):
    class Device:
        def __init__(self, platform, stats):
            self.platform, self.stats = platform, stats

        def memory_stats(self):
            return self.stats

    assert evaluation.inception_batch_size(7) == 7
    assert evaluation.inception_batch_size(0) == evaluation.CPU_BATCH_SIZE == 50  # tests: CPU
    monkeypatch.setattr(jax, "device_count", lambda: 2)
    for stats, per_device in (({"bytes_limit": 4 * 2**30}, 51), ({}, 250), (None, 250),
                              ({"bytes_limit": 80 * 2**30}, 250)):  # fmt: skip
        monkeypatch.setattr(jax, "devices", lambda stats=stats: [Device("gpu", stats)])
        assert evaluation.inception_batch_size(0) == 2 * per_device, stats


def test_evaluation_key_is_the_training_loops_for_one_gan_and_each_member(tiny_config):
    from jaxgan.training import trainer
    from jaxgan.training.members import Members

    def same(a, b):
        return np.array_equal(jax.random.key_data(a), jax.random.key_data(b))

    def loop_key(config, member, epoch):
        """As the trainer builds periodic.Evaluate's key, and Evaluate folds in the epoch."""
        members = Members(config)
        keys = members.fold_in(members.seed_key, trainer.EVAL)
        return jax.random.fold_in(keys if member is None else keys[member], epoch)

    one = tiny_config(seed=7)
    assert same(evaluation.evaluation_key(7, 3), loop_key(one, None, 3))
    assert not same(evaluation.evaluation_key(7, 3), loop_key(one, None, 2))
    pair = tiny_config(seed=7, population=2)
    assert same(evaluation.evaluation_key(8, 3), loop_key(pair, 1, 3))


# --- generation and D helpers ------------------------------------------------------------------


def test_discriminator_logits_pad_the_last_batch_and_match_one_batch(tiny_config):
    state = create_state(tiny_config("mlp"), jax.random.key(0))
    images = np.random.default_rng(0).integers(0, 256, (7, 28, 28, 1), dtype=np.uint8)
    in_threes = evaluation.discriminator_logits(state, images, 3)
    at_once = evaluation.discriminator_logits(state, images[..., 0], 7)
    assert in_threes.shape == (7,)
    np.testing.assert_allclose(in_threes, at_once, atol=1e-5)


def test_generate_images_returns_exactly_num_in_range(tiny_config):
    state = create_state(tiny_config("mlp"), jax.random.key(0))
    fakes = evaluation.generate_images(state, jax.random.key(1), 7, 3)
    assert fakes.shape == (7, 28, 28, 1) and fakes.dtype == np.float32
    assert fakes.min() >= -1 and fakes.max() <= 1


def test_generated_images_do_not_depend_on_the_batch_size(tiny_config):
    # The auto batch size differs between devices; the scored images must not.
    state = create_state(tiny_config("mlp"), jax.random.key(0))
    in_threes = evaluation.generate_images(state, jax.random.key(1), 7, 3)
    np.testing.assert_allclose(
        evaluation.generate_images(state, jax.random.key(1), 7, 50), in_threes, atol=1e-6
    )
