"""Data parallelism on one host: the mesh, sharded epochs, device-count-free results.

The test process has one CPU device. Runs on 4 devices are subprocesses of this file
(`python tests/test_sharding.py TASKS.json`) with
`XLA_FLAGS=--xla_force_host_platform_device_count=4`; the 1-device references are
subprocesses too, so both sides start alike. Training results
on 4 devices equal those on 1 device up to the order of float reductions (BatchNorm
statistics and gradients of the global batch are summed per device, then across devices):
`RTOL`/`ATOL` below. Feature extraction is per image, so FID agrees to 1e-6 relative (it
differs only by float64 rounding of the batch-wise statistics).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from tests.helpers.features import conv_features

REPO = Path(__file__).resolve().parents[1]
# Per-device partial sums reorder float32 reductions: results agree to this, not to the bit.
RTOL, ATOL = 1e-5, 1e-6
TIMEOUT = 600


def small_config(**changes):
    """dcgan.py:smoke on 128 images: 2 steps of 64 per epoch, no evaluation, no grids."""
    from experiments.configs import dcgan

    config = dcgan.get_config("smoke").unlock()
    config.num_train_examples = 128
    config.eval_every = 0
    config.sample_every = 0
    config.progress = False
    for name, value in changes.items():
        config[name] = value
    return config


def fid_images() -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(7)
    real = rng.integers(0, 256, (37, 12, 12, 1), dtype=np.uint8)
    fake = rng.integers(0, 256, (29, 12, 12, 1), dtype=np.uint8)
    return real, fake


def state_arrays(state) -> dict[str, np.ndarray]:
    from flax import serialization, traverse_util

    tree = jax.device_get(serialization.to_state_dict(state))
    return {k: np.asarray(v) for k, v in traverse_util.flatten_dict(tree, sep="/").items()}


# --- the worker: runs in a subprocess with its own device count --------------------------------


def _worker(tasks: list[dict]) -> None:
    from jaxgan.metrics import frechet
    from jaxgan.training import loop

    for task in tasks:
        kind, out = task["kind"], Path(task["out"])
        if kind == "train":
            state = loop.train_and_evaluate(small_config(**task["config"]), task["workdir"])
            np.savez(out, **state_arrays(state))
        elif kind == "refuse":
            try:
                loop.train_and_evaluate(small_config(batch_size=62), task["workdir"])
                message = None
            except ValueError as error:
                message = str(error)
            out.write_text(json.dumps({"message": message}))
        elif kind == "fid":
            real, fake = fid_images()
            score = frechet.fid(real, fake, batch_size=10, feature_fn=conv_features)
            out.write_text(json.dumps({"fid": score}))
        elif kind == "layout":
            out.write_text(json.dumps(_layout()))


def _layout() -> dict:
    """How the loaders and `split_batch` place arrays on this process's mesh."""
    from jaxgan.core import epoch_batches, sharding
    from jaxgan.data.loader import EpochLoader

    mesh = sharding.data_mesh()
    data = {"image": np.arange(40 * 3, dtype=np.uint8).reshape(40, 3), "label": np.arange(40)}
    key = jax.random.key(5)
    expected = jax.device_get(epoch_batches(data, key, 8))
    on_device = EpochLoader(data, mesh, 8)(key)
    from_host = EpochLoader(data, mesh, 8, on_device=False)(key)

    @jax.jit
    def latents(key):
        return sharding.split_batch(jax.random.normal(key, (8, 3)))

    with jax.set_mesh(mesh):
        split = latents(jax.random.key(0))
    return {
        "same": all(
            np.array_equal(expected[name], np.asarray(loaded[name]))
            for loaded in (on_device, from_host)
            for name in data
        ),
        "describe": sharding.describe(mesh),
        "image_spec": str(on_device["image"].sharding.spec),
        "host_spec": str(from_host["image"].sharding.spec),
        "shard_shapes": [shard.data.shape for shard in on_device["image"].addressable_shards],
        "latent_shards": [shard.data.shape for shard in split.addressable_shards],
        "latents": np.asarray(split).tolist(),
    }


def run_worker(tmp_path: Path, devices: int, tasks: list[dict], cache: Path) -> None:
    """Runs `tasks` in one subprocess that sees `devices` CPU devices."""
    spec = tmp_path / f"tasks_{len(list(tmp_path.glob('tasks_*')))}.json"
    spec.write_text(json.dumps(tasks))
    env = {
        **os.environ,
        "JAX_PLATFORMS": "cpu",
        "XLA_FLAGS": f"--xla_force_host_platform_device_count={devices}",
        "JAX_COMPILATION_CACHE_DIR": str(cache),
        "JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS": "0",
        "PYTHONPATH": os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH")])),
    }
    result = subprocess.run(
        [sys.executable, __file__, str(spec)],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=TIMEOUT,
    )
    assert result.returncode == 0, result.stderr[-4000:]


def assert_close_states(got: Path, want: Path, atol: float = ATOL) -> None:
    got_arrays, want_arrays = np.load(got), np.load(want)
    assert sorted(got_arrays.files) == sorted(want_arrays.files)
    for name in want_arrays.files:
        np.testing.assert_allclose(
            got_arrays[name], want_arrays[name], rtol=RTOL, atol=atol, err_msg=name
        )


# --- one device, in this process ---------------------------------------------------------------


def test_one_device_mesh_is_described_and_accepts_any_batch():
    from jaxgan.core import sharding

    mesh = sharding.data_mesh()
    assert sharding.describe(mesh) == "1 device (cpu), data=1"
    sharding.check_batch_size(7, mesh)
    assert sharding.replicated(mesh).spec == jax.sharding.PartitionSpec()
    assert sharding.batch_sharding(mesh, 1).spec == jax.sharding.PartitionSpec(None, "data")


def test_split_batch_is_the_identity_without_a_mesh():
    from jaxgan.core import sharding

    values = jnp.arange(6.0).reshape(3, 2)
    np.testing.assert_array_equal(jax.jit(sharding.split_batch)(values), values)


@pytest.mark.parametrize("on_device", [True, False])
def test_epoch_loader_gives_epoch_batches_on_device_and_from_the_host(on_device):
    from jaxgan.core import epoch_batches, sharding
    from jaxgan.data.loader import EpochLoader

    data = {"image": np.arange(21 * 4, dtype=np.uint8).reshape(21, 2, 2, 1), "label": np.arange(21)}
    key = jax.random.key(3)
    loaded = EpochLoader(data, sharding.data_mesh(), 5, on_device=on_device)(key)
    expected = epoch_batches(data, key, 5)
    for name in data:
        assert loaded[name].shape == (4, 5) + data[name].shape[1:]
        np.testing.assert_array_equal(np.asarray(loaded[name]), np.asarray(expected[name]))
    # Another key, another order: the loader does not replay one permutation.
    other = EpochLoader(data, sharding.data_mesh(), 5, on_device=on_device)(jax.random.key(4))
    assert not np.array_equal(np.asarray(other["label"]), np.asarray(loaded["label"]))


# --- four devices, in subprocesses -------------------------------------------------------------


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """1 epoch on 4 and on 1 device, then each workdir resumed on the other count for a 2nd."""
    root = tmp_path_factory.mktemp("sharding")
    cache = root / "jax_cache"
    four, one = root / "four", root / "one"
    run_worker(
        root,
        4,
        [
            {"kind": "layout", "out": str(root / "layout4.json")},
            {"kind": "refuse", "workdir": str(root / "refused"), "out": str(root / "refuse.json")},
            {"kind": "fid", "out": str(root / "fid4.json")},
            {"kind": "train", "workdir": str(four), "config": {}, "out": str(root / "four1.npz")},
            {"kind": "train", "workdir": str(root / "pop_four"), "config": {"population": 2},
             "out": str(root / "pop_four.npz")},
        ],
        cache,
    )  # fmt: skip
    run_worker(
        root,
        1,
        [
            {"kind": "train", "workdir": str(one), "config": {}, "out": str(root / "one1.npz")},
            {"kind": "train", "workdir": str(root / "pop_one"), "config": {"population": 2},
             "out": str(root / "pop_one.npz")},
            # 4 -> 1: the 4-device checkpoint restored on one device, one more epoch.
            {"kind": "train", "workdir": str(four), "config": {"num_epochs": 2},
             "out": str(root / "four_then_one.npz")},
        ],
        cache,
    )  # fmt: skip
    run_worker(
        root,
        4,
        [
            # 1 -> 4: the 1-device checkpoint restored on four devices, one more epoch.
            {"kind": "train", "workdir": str(one), "config": {"num_epochs": 2},
             "out": str(root / "one_then_four.npz")},
        ],
        cache,
    )  # fmt: skip
    return root


@pytest.mark.slow
def test_batches_are_split_over_four_devices_in_both_loaders(runs):
    layout = json.loads((runs / "layout4.json").read_text())
    assert layout["same"]
    assert layout["describe"] == "4 devices (cpu), data=4"
    split_along_b = str(jax.sharding.PartitionSpec(None, "data"))
    assert layout["image_spec"] == layout["host_spec"] == split_along_b
    assert layout["shard_shapes"] == [[5, 2, 3]] * 4  # 5 batches of 8, 2 rows per device
    # split_batch splits what a step draws itself, and the values do not change.
    assert layout["latent_shards"] == [[2, 3]] * 4
    np.testing.assert_array_equal(
        np.asarray(layout["latents"], np.float32),
        np.asarray(jax.random.normal(jax.random.key(0), (8, 3))),
    )


@pytest.mark.slow
def test_a_batch_the_devices_cannot_share_is_refused_before_anything_runs(runs):
    message = json.loads((runs / "refuse.json").read_text())["message"]
    assert message is not None, "batch_size=62 on 4 devices was accepted"
    assert "config.batch_size=62" in message and "4 devices" in message
    assert "allowed: a multiple of 4, e.g. 60 or 64" in message
    assert not (runs / "refused").exists()


@pytest.mark.slow
def test_four_devices_train_like_one_and_name_the_mesh(runs):
    assert_close_states(runs / "four1.npz", runs / "one1.npz")
    assert "mesh: 4 devices (cpu), data=4" in (runs / "four" / "train.log").read_text()
    assert "mesh: 1 device (cpu), data=1" in (runs / "one" / "train.log").read_text()


@pytest.mark.slow
def test_a_population_on_four_devices_trains_like_on_one(runs):
    # A population's matmuls split differently; Adam's sqrt(v) + eps turns the rounding of
    # near-zero gradients into differences up to ~1e-5 in a few parameters (a wrong shuffle
    # or key would move every parameter by ~1e-4 per step).
    assert_close_states(runs / "pop_four.npz", runs / "pop_one.npz", atol=5e-5)
    arrays = np.load(runs / "pop_one.npz")
    assert arrays["g_params/Dense_0/kernel"].shape[0] == 2  # Two members, stacked.
    assert "population: 2 GANs" in (runs / "pop_four" / "train.log").read_text()


@pytest.mark.slow
def test_checkpoints_restore_across_device_counts_and_training_continues(runs):
    for workdir, npz, devices in (("four", "four_then_one", 1), ("one", "one_then_four", 4)):
        lines = (runs / workdir / "train.log").read_text().splitlines()
        resumed = f"Resumed from {runs / workdir / 'checkpoints' / '2'} at step 2"
        at = next(i for i, line in enumerate(lines) if resumed in line)
        assert f"mesh: {devices} device" in lines[at - 1]  # The resumed run's first line.
        arrays = np.load(runs / f"{npz}.npz")
        assert int(arrays["step"]) == 4
        assert all(np.isfinite(arrays[name]).all() for name in arrays.files)
        records = [json.loads(line) for line in (runs / workdir / "metrics.jsonl").open()]
        assert [r["step"] for r in records] == [2, 4]
    # Both continued from (nearly) the same state on different device counts.
    assert_close_states(runs / "four_then_one.npz", runs / "one_then_four.npz")
    # And they did train: the second epoch moved the parameters.
    before, after = np.load(runs / "one1.npz"), np.load(runs / "one_then_four.npz")
    assert not np.allclose(before["g_params/Dense_0/kernel"], after["g_params/Dense_0/kernel"])


@pytest.mark.slow
def test_fid_on_four_devices_equals_fid_on_one(runs):
    from jaxgan.metrics import frechet

    real, fake = fid_images()
    with pytest.warns(frechet.SmallSampleWarning):
        one_device = frechet.fid(real, fake, batch_size=10, feature_fn=conv_features)
    four_devices = json.loads((runs / "fid4.json").read_text())["fid"]
    assert one_device > 0
    assert four_devices == pytest.approx(one_device, rel=1e-6)


if __name__ == "__main__":
    sys.path.insert(0, str(REPO))
    _worker(json.loads(Path(sys.argv[1]).read_text()))
