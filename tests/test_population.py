"""Many GANs in one program: each member trains as its own single run would, and the loop
writes, evaluates, checkpoints and resumes the whole population."""

from __future__ import annotations

import json
import re

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from experiments.configs import dcgan
from jaxgan import core as train
from jaxgan.checkpoint import CheckpointError, load_run, state_digest
from jaxgan.core import epoch_batches, population, sharding
from jaxgan.data.loader import EpochLoader
from jaxgan.training import loop, members

# A member's convolutions run as batched matmuls (layers.PatchConv) and Adam divides by
# sqrt(v) + eps, which turns float32 rounding of tiny gradients into differences of this
# order after a few steps; a wrong seed, key or learning rate moves parameters by ~1e-4
# per step, and different initialisations differ by ~1e-2.
PARAM_ATOL = 5e-5


def small_config(**changes):
    """dcgan.py:smoke on 256 images: 8 steps of 32 per epoch, no evaluation."""
    config = dcgan.get_config("smoke").unlock()
    config.num_train_examples = 256
    config.batch_size = 32
    config.eval_every = 0
    config.sample_every = 1
    config.progress = False
    for name, value in changes.items():
        config[name] = value
    return config.lock()


def max_difference(a, b) -> float:
    leaves_a, leaves_b = jax.tree.leaves(a), jax.tree.leaves(b)
    assert jax.tree.structure(a) == jax.tree.structure(b)
    return max(
        float(np.max(np.abs(np.asarray(x) - np.asarray(y)))) for x, y in zip(leaves_a, leaves_b)
    )


def trainables(state):
    return (state.g_params, state.d_params, state.g_batch_stats, state.d_batch_stats)


def test_a_vmapped_step_trains_each_member_as_its_own_single_gan():
    config = small_config(population=2)
    keys, rates = [jax.random.key(3), jax.random.key(4)], [2e-4, 1e-4]
    stacked = population.create(config, keys, rates)
    assert population.learning_rates_of(stacked) == pytest.approx(rates)
    singles = [
        train.create_state(small_config(learning_rate=rate), key)
        for key, rate in zip(keys, rates, strict=True)
    ]
    images = jax.random.uniform(jax.random.key(5), (2, 32, 28, 28, 1), minval=-1, maxval=1)
    step_keys = jnp.stack([jax.random.key(7), jax.random.key(8)])
    many = jax.jit(population.vmap(train.train_step))
    one = jax.jit(train.train_step)
    for _ in range(3):
        stacked, metrics = many(stacked, {"image": images}, step_keys)
        results = [one(s, {"image": images[i]}, step_keys[i]) for i, s in enumerate(singles)]
        singles = [state for state, _ in results]
        for index, (_, single_metrics) in enumerate(results):
            for name, value in single_metrics.items():
                np.testing.assert_allclose(metrics[name][index], value, rtol=1e-4, err_msg=name)
    for index, single in enumerate(singles):
        member = population.member(stacked, index)
        assert max_difference(trainables(member), trainables(single)) < PARAM_ATOL
    # The two members are different GANs.
    assert max_difference(*(population.member(stacked, i).g_params for i in (0, 1))) > 1e-3


def test_create_refuses_a_config_without_population_and_unequal_lists():
    with pytest.raises(ValueError, match="needs config.population > 0"):
        population.create(small_config(), [jax.random.key(0)], [2e-4])
    with pytest.raises(ValueError, match="2 keys but 1 learning rates"):
        population.create(small_config(population=2), [jax.random.key(0)] * 2, [2e-4])


@pytest.mark.parametrize("on_device", [True, False])
def test_the_epoch_loader_stacks_each_members_own_shuffle(on_device):
    data = {"image": np.arange(40 * 3, dtype=np.uint8).reshape(40, 3), "label": np.arange(40)}
    keys = population.seed_keys([5, 6, 7])
    loaded = EpochLoader(data, sharding.data_mesh(), 8, on_device=on_device)(keys)
    for index in range(3):
        expected = epoch_batches(data, keys[index], 8)
        for name in data:
            np.testing.assert_array_equal(np.asarray(loaded[name])[:, index], expected[name])


@pytest.mark.parametrize("on_device", [True, False])
def test_each_member_shuffles_with_its_own_seeds_key(on_device):
    # Member i's keys are a single run's with seed + i: key(seed + i), folded in as a single
    # run folds its key. Built here without `seed_keys`, so that members given one key
    # (the same shuffle for all) or keys of other seeds fail.
    seeds = [5, 6, 7]
    data = {"image": np.zeros((40, 1), np.uint8), "label": np.arange(40)}
    keys = population.fold_in(population.seed_keys(seeds), 1)
    orders = np.asarray(
        EpochLoader(data, sharding.data_mesh(), 8, on_device=on_device)(keys)["label"]
    )
    assert orders.shape == (5, 3, 8)  # [batches, members, batch]
    for index, seed in enumerate(seeds):
        own_key = jax.random.fold_in(jax.random.key(seed), 1)
        expected = np.asarray(jax.random.permutation(own_key, 40)).reshape(5, 8)
        np.testing.assert_array_equal(orders[:, index], expected, err_msg=f"member {index}")
    for a, b in ((0, 1), (0, 2), (1, 2)):
        assert not np.array_equal(orders[:, a], orders[:, b])


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """A 2-member population (learning rates 2e-4 and 1e-4) and the two single runs."""
    root = tmp_path_factory.mktemp("population")
    rates = (2e-4, 1e-4)
    states = {
        "pop": loop.train_and_evaluate(
            small_config(population=2, population_learning_rates=rates), root / "pop"
        )
    }
    for seed, rate in enumerate(rates):
        states[seed] = loop.train_and_evaluate(
            small_config(seed=seed, learning_rate=rate), root / f"seed{seed}"
        )
    return root, states


def records(workdir):
    return [json.loads(line) for line in (workdir / "metrics.jsonl").open()]


def test_each_member_of_a_population_run_is_its_seeds_single_run(runs):
    root, states = runs
    (pop_record,) = records(root / "pop")
    for member in (0, 1):
        member_state = population.member(states["pop"], member)
        assert max_difference(trainables(member_state), trainables(states[member])) < PARAM_ATOL
        (single_record,) = records(root / f"seed{member}")
        for name in ("d_loss", "g_loss", "d_real", "d_fake"):
            assert pop_record["members"][member][name] == pytest.approx(
                single_record[name], rel=1e-4
            )
    for name in ("d_loss", "g_loss"):
        assert pop_record[name] == pytest.approx(
            np.mean([m[name] for m in pop_record["members"]]), rel=1e-6
        )


def test_a_population_run_writes_one_grid_per_member_and_says_what_it_trains(runs):
    root, _ = runs
    workdir = root / "pop"
    for member in (0, 1):
        assert (workdir / "samples" / f"epoch_0001_member{member}.png").is_file()
        assert (workdir / f"fashion_mnist_samples_member{member}.png").is_file()
    assert not (workdir / "fashion_mnist_samples.png").exists()
    log = (workdir / "train.log").read_text()
    assert "population: 2 GANs in one program, seeds 0..1, learning rates 0.0002 0.0001" in log
    # The grids are the members' own: the single run of seed 1 drew the same picture.
    from PIL import Image

    member_grid = np.asarray(Image.open(workdir / "fashion_mnist_samples_member1.png"))
    single_grid = np.asarray(Image.open(root / "seed1" / "fashion_mnist_samples.png"))
    other_grid = np.asarray(Image.open(workdir / "fashion_mnist_samples_member0.png"))
    assert np.mean(np.abs(member_grid.astype(int) - single_grid)) < 1.0
    assert np.mean(np.abs(member_grid.astype(int) - other_grid)) > 5.0


def test_load_run_picks_a_member_with_its_seed_and_learning_rate(runs):
    root, states = runs
    config, state, _ = load_run(root / "pop", member=1)
    assert (config.seed, config.learning_rate) == (1, 1e-4)
    assert max_difference(state.g_params, population.member(states["pop"], 1).g_params) == 0
    with pytest.raises(ValueError, match=re.escape("pick one with member=0..1")):
        load_run(root / "pop")


def test_an_interrupted_population_resumes_to_the_uninterrupted_result(tmp_path):
    config = small_config(population=2, num_epochs=2, sample_every=0)
    straight = loop.train_and_evaluate(config, tmp_path / "straight")
    loop.train_and_evaluate(small_config(population=2, sample_every=0), tmp_path / "resumed")
    resumed = loop.train_and_evaluate(config, tmp_path / "resumed")
    assert state_digest(trainables(resumed)) == state_digest(trainables(straight))
    assert "Resumed from" in (tmp_path / "resumed" / "train.log").read_text()
    assert [r["step"] for r in records(tmp_path / "resumed")] == [8, 16]
    # A different population size cannot resume from it.
    with pytest.raises(CheckpointError, match="population: checkpoint 2 vs config 3"):
        loop.train_and_evaluate(small_config(population=3, num_epochs=3), tmp_path / "resumed")


class FakeEvaluator:
    """Scores a state by a number its generator decides, without Inception."""

    def __init__(self, config, test_set):
        self.reports = []

    def evaluate(self, state, key, *, should_stop=None):
        assert state.step.ndim == 0, "the evaluator must get one member at a time"
        score = float(jnp.sum(jnp.abs(state.g_params["Dense_0"]["kernel"])))
        return {"fid": score, "kid_mean": score / 100, "step": int(state.step)}

    def write_report(self, results, path):
        self.reports.append(path.name)
        path.write_text(f"fid {results['fid']}\n")


def test_a_population_is_evaluated_member_by_member_with_mean_and_spread(tmp_path):
    config = small_config(population=3, eval_every=1)
    state = loop.train_and_evaluate(config, tmp_path, evaluator_factory=FakeEvaluator)
    expected = [
        float(jnp.sum(jnp.abs(population.member(state, i).g_params["Dense_0"]["kernel"])))
        for i in range(3)
    ]
    (record,) = records(tmp_path)
    assert [m["fid"] for m in record["members"]] == pytest.approx(expected, rel=1e-6)
    assert record["fid"] == pytest.approx(np.mean(expected), rel=1e-6)
    assert record["fid_members_std"] == pytest.approx(np.std(expected, ddof=1), rel=1e-6)
    for member in range(3):
        text = (tmp_path / f"fid_result_member{member}.txt").read_text()
        assert float(text.split()[1]) == pytest.approx(expected[member], rel=1e-6)
    summary = (tmp_path / "fid_result.txt").read_text()
    assert "Population of 3 GANs" in summary
    assert f"fid: {np.mean(expected):.5g} ± {np.std(expected, ddof=1):.2g}" in summary
    log = (tmp_path / "train.log").read_text()
    assert "FID per member: " + " ".join(f"{f:.2f}" for f in expected) in log


def test_summarise_gives_means_and_the_fid_spread():
    summary = members.summarise([{"fid": 10.0, "kid_mean": 1.0}, {"fid": 14.0, "kid_mean": 3.0}])
    assert summary == pytest.approx({"fid": 12.0, "kid_mean": 2.0, "fid_members_std": 2**0.5 * 2})
    assert members.summarise([{"fid": 5.0}])["fid_members_std"] == 0.0
