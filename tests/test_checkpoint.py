"""Checkpoints: bitwise round trips, refusals, retention, partial and corrupt folders."""

from __future__ import annotations

import functools
import shutil

import jax
import numpy as np
import pytest
from flax import serialization

from experiments.configs import dcgan, vanilla
from jaxgan.checkpoint import Checkpointer, CheckpointError, signature, state_digest
from jaxgan.core import GANState, create_state

CONFIGS = {"dcgan": dcgan.get_config("smoke"), "mlp": vanilla.get_config("smoke")}


def random_state(config, seed: int) -> GANState:
    """A GANState of `config`'s structure filled with random values (nothing compiles).

    Random values rather than a freshly initialised state, so that optimizer moments and
    BatchNorm statistics are not zeros and ones that a broken restore could fake.
    """
    abstract = jax.eval_shape(functools.partial(create_state, config), jax.random.key(0))
    rng = np.random.default_rng(seed)

    def fill(leaf):
        if np.issubdtype(leaf.dtype, np.integer):
            return rng.integers(0, 10_000, leaf.shape).astype(leaf.dtype)
        return rng.standard_normal(leaf.shape).astype(leaf.dtype)

    return jax.tree_util.tree_map(fill, abstract)


def assert_same_bits(expected: GANState, actual: GANState) -> None:
    """Same arrays, bit for bit (the static fields are compared by the callers)."""
    expected_leaves, expected_tree = jax.tree_util.tree_flatten(
        serialization.to_state_dict(expected)
    )
    actual_leaves, actual_tree = jax.tree_util.tree_flatten(serialization.to_state_dict(actual))
    assert expected_tree == actual_tree
    for want, got in zip(expected_leaves, actual_leaves, strict=True):
        want, got = np.asarray(want), np.asarray(got)
        assert want.dtype == got.dtype and want.shape == got.shape
        assert want.tobytes() == got.tobytes()


def meta_for(config) -> dict:
    return {"epoch": 2, "steps_per_epoch": 32, "signature": signature(config)}


@pytest.mark.parametrize("model", sorted(CONFIGS))
def test_round_trip_is_bitwise(tmp_path, model):
    config = CONFIGS[model]
    state = random_state(config, seed=1).replace(step=np.int32(64))
    checkpointer = Checkpointer(tmp_path / "checkpoints", keep=3)
    assert checkpointer.save(state, meta_for(config)) == 64

    template = random_state(config, seed=2)
    restored, meta = checkpointer.restore(template, signature(config))

    assert_same_bits(state, restored)
    assert restored.generator == state.generator and restored.g_tx is template.g_tx
    assert meta["epoch"] == 2 and meta["steps_per_epoch"] == 32 and meta["step"] == 64
    assert meta["state_sha256"] == state_digest(serialization.to_state_dict(state))


@pytest.mark.parametrize(
    "field, value", [("g_width", 16), ("d_width", 4), ("latent_dim", 7), ("model", "mlp")]
)
def test_incompatible_signature_is_refused_with_the_difference(tmp_path, field, value):
    config = CONFIGS["dcgan"]
    checkpointer = Checkpointer(tmp_path / "checkpoints", keep=3)
    checkpointer.save(random_state(config, seed=1).replace(step=np.int32(8)), meta_for(config))
    expected = {**signature(config), field: value}

    with pytest.raises(CheckpointError) as raised:
        checkpointer.restore(random_state(config, seed=2), expected)

    message = str(raised.value)
    assert str(tmp_path / "checkpoints" / "8") in message
    assert f"{field}: checkpoint {signature(config)[field]!r} vs config {value!r}" in message
    assert "incompatible config" in message


def test_keep_checkpoints_is_honoured(tmp_path):
    config = CONFIGS["mlp"]
    checkpointer = Checkpointer(tmp_path / "checkpoints", keep=2)
    state = random_state(config, seed=1)
    for step in (5, 10, 15, 20):
        checkpointer.save(state.replace(step=np.int32(step)), meta_for(config))

    assert checkpointer.all_steps() == [15, 20]
    assert sorted(p.name for p in (tmp_path / "checkpoints").iterdir()) == ["15", "20"]
    assert checkpointer.latest_step() == 20


def test_saving_an_existing_step_keeps_the_first(tmp_path):
    config = CONFIGS["mlp"]
    checkpointer = Checkpointer(tmp_path / "checkpoints", keep=3)
    first = random_state(config, seed=1).replace(step=np.int32(3))
    checkpointer.save(first, meta_for(config))
    checkpointer.save(random_state(config, seed=9).replace(step=np.int32(3)), {"epoch": 0})

    restored, meta = checkpointer.restore(random_state(config, seed=2), signature(config))
    assert_same_bits(first, restored)
    assert meta["epoch"] == 2


def test_unfinished_save_is_never_latest_and_is_removed_by_the_writer(tmp_path):
    config = CONFIGS["mlp"]
    directory = tmp_path / "checkpoints"
    checkpointer = Checkpointer(directory, keep=5)
    state = random_state(config, seed=1)
    for step in (4, 8):
        checkpointer.save(state.replace(step=np.int32(step)), meta_for(config))
    checkpointer.wait()
    # The worst case of a kill mid-save: every file written, only the rename missing.
    partial = directory / "12.orbax-checkpoint-tmp"
    shutil.copytree(directory / "8", partial)

    assert Checkpointer(directory, keep=5).latest_step() == 8
    assert partial.exists()  # A reader leaves it alone...
    writer = Checkpointer(directory, keep=5, remove_partial=True)
    writer.save(state.replace(step=np.int32(16)), meta_for(config))
    writer.wait()  # Saves are written in the background.
    assert not partial.exists()  # ...the writer removes it.
    assert writer.all_steps() == [4, 8, 16]


def _largest_file(folder):
    return max((p for p in folder.rglob("*") if p.is_file()), key=lambda p: p.stat().st_size)


# Orbax's reader leaves an asyncio callback behind when a file is cut short.
@pytest.mark.filterwarnings("ignore::pytest.PytestUnraisableExceptionWarning")
@pytest.mark.parametrize("damage", ["garble", "truncate"])
def test_corrupt_array_file_is_refused_and_nothing_is_deleted(tmp_path, damage):
    config = CONFIGS["dcgan"]
    directory = tmp_path / "checkpoints"
    checkpointer = Checkpointer(directory, keep=3)
    state = random_state(config, seed=1)
    for step in (10, 20):
        checkpointer.save(state.replace(step=np.int32(step)), meta_for(config))
    checkpointer.wait()  # Saves are written in the background.
    victim = _largest_file(directory / "20" / "state")
    content = bytearray(victim.read_bytes())
    if damage == "garble":
        middle = len(content) // 2
        content[middle : middle + 64] = bytes(255 - b for b in content[middle : middle + 64])
    else:
        del content[len(content) // 2 :]
    victim.write_bytes(bytes(content))

    with pytest.raises(CheckpointError) as raised:
        checkpointer.restore(random_state(config, seed=2), signature(config))

    message = str(raised.value)
    assert str(directory / "20") in message
    if damage == "garble":  # Orbax restores garbled bytes silently; the digest catches them.
        assert "is corrupt" in message
    assert "Move that folder aside to resume from the checkpoint before it (step 10)" in message
    assert checkpointer.all_steps() == [10, 20]
    assert victim.read_bytes() == bytes(content)
    restored, _ = checkpointer.restore(random_state(config, seed=2), signature(config), step=10)
    assert_same_bits(state.replace(step=np.int32(10)), restored)


def test_restore_without_checkpoint_is_refused(tmp_path):
    config = CONFIGS["mlp"]
    with pytest.raises(CheckpointError, match="No checkpoint in"):
        Checkpointer(tmp_path / "checkpoints", keep=1).restore(
            random_state(config, seed=0), signature(config)
        )
