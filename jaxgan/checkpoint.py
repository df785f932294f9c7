"""Orbax checkpoints of the whole GAN state, with a compatibility check on restore.

Each checkpoint is a folder `checkpoints/<step>/` holding two items: `state` (both
networks' params, BatchNorm statistics, optimizer states and the step) and `meta`
(JSON: the caller's fields, e.g. epoch and architecture signature, plus the step and a
SHA-256 of the state's bytes). Orbax writes a checkpoint into a temporary folder and
renames it when complete, so a checkpoint interrupted mid-write is never listed as the
latest. The digest catches what Orbax does not: a data file garbled after the write
otherwise restores silently with wrong values.
"""

from __future__ import annotations

import hashlib
import json
import logging
from pathlib import Path
from typing import Any

import jax
import ml_collections
import numpy as np
import orbax.checkpoint as ocp
from flax import serialization

from jaxgan import models
from jaxgan.core import GANState, step_of
from jaxgan.data import DatasetInfo

log = logging.getLogger(__name__)

# Config fields that fix the shapes of the saved arrays, with the value a checkpoint
# written before the field existed implies.
# The model family's own such fields (`Field.shapes`) join them by name.
SIGNATURE_FIELDS = {
    "model": None,
    "latent_dim": None,
    "conditional": False,
    "ema": False,
    "population": 0,
}


# 2: the state holds the EMA generator's own BatchNorm statistics (g_ema_batch_stats).
STATE_FORMAT = 2


class CheckpointError(ValueError):
    """A checkpoint exists but cannot be used; the message says which and why."""


# What checkpoints written before a field existed imply: FashionMNIST, unconditional.
_LEGACY_SIGNATURE = {
    **SIGNATURE_FIELDS,
    "spectral_norm": False,
    "image_shape": [28, 28, 1],
    "num_classes": 0,
}


def signature(config: Any, info: DatasetInfo | None = None) -> dict[str, Any]:
    """The config fields (and dataset shape) a checkpoint must agree with to be restored."""
    values = {field: config.get(field, default) for field, default in SIGNATURE_FIELDS.items()}
    values["model"] = config.model["name"]
    values.update(models.signature_fields(config.model))
    values["ema"] = bool(config.get("ema_decay", 0.0))
    if info is not None:
        values["image_shape"] = list(info.image_shape)
        values["num_classes"] = info.num_classes if values["conditional"] else 0
    return values


def _state_tree(state: GANState) -> dict[str, Any]:
    return serialization.to_state_dict(state)


def state_digest(tree: Any) -> str:
    """SHA-256 (hex) of every leaf's path, dtype, shape and bytes, in tree order."""
    digest = hashlib.sha256()
    for path, leaf in jax.tree_util.tree_flatten_with_path(jax.device_get(tree))[0]:
        array = np.ascontiguousarray(leaf)
        digest.update(f"{jax.tree_util.keystr(path)}:{array.dtype.str}{array.shape}".encode())
        digest.update(array.tobytes())
    return digest.hexdigest()


def _describe(error: BaseException) -> str:
    """The first line of an error, cut to a readable length (TensorStore's run long)."""
    lines = str(error).strip().splitlines()
    first = lines[0] if lines else ""
    return f"{type(error).__name__}: {first[:300]}{'...' if len(first) > 300 else ''}"


class Checkpointer:
    """Saves and restores `GANState`s under `directory`, keeping the newest `keep`.

    Args:
      directory: the checkpoints folder (created if missing).
      keep: how many of the newest checkpoints to keep; older ones are deleted after
        each save.
      remove_partial: delete the temporary folders of saves that never completed (a
        process killed mid-write). Only the run that writes checkpoints may do this;
        a reader (e.g. an evaluation beside a running training) must not.
    """

    def __init__(self, directory: str | Path, keep: int, *, remove_partial: bool = False):
        self.directory = Path(directory).absolute()
        options = ocp.CheckpointManagerOptions(
            max_to_keep=keep,
            create=True,
            # Training goes on while a save is written; Orbax writes into a temporary
            # folder and renames it when complete, so a kill mid-save loses only that save.
            enable_async_checkpointing=True,
            cleanup_tmp_directories=remove_partial,
        )
        self._manager = ocp.CheckpointManager(
            self.directory, options=options, item_names=("state", "meta")
        )

    def wait(self) -> None:
        """Blocks until the save in the background (if any) is complete on disk."""
        self._manager.wait_until_finished()

    def latest_step(self) -> int | None:
        """The step of the newest complete checkpoint, or None."""
        self.wait()
        self._manager.reload()
        return self._manager.latest_step()

    def all_steps(self) -> list[int]:
        self.wait()
        self._manager.reload()
        return list(self._manager.all_steps())

    def save(self, state: GANState, meta: dict[str, Any]) -> int:
        """Starts writing a checkpoint named by `state.step`; returns that step.

        The write goes on in the background (`wait` blocks until it is complete); the
        state is copied to the host first, so training may go on at once. A checkpoint
        that already exists for this step is left as it is.
        """
        step = step_of(state)
        if step in self.all_steps():
            return step
        tree = jax.device_get(_state_tree(state))
        self._manager.save(
            step,
            args=ocp.args.Composite(
                state=ocp.args.StandardSave(tree),
                meta=ocp.args.JsonSave(
                    {
                        **meta,
                        "step": step,
                        "state_sha256": state_digest(tree),
                        "state_format": STATE_FORMAT,
                    }
                ),  # fmt: skip
            ),
            force=True,
        )
        return step

    def read_meta(self, step: int) -> dict[str, Any]:
        """The JSON metadata of checkpoint `step`."""
        try:
            restored = self._manager.restore(
                step, args=ocp.args.Composite(meta=ocp.args.JsonRestore())
            )
        except Exception as error:  # noqa: BLE001 - Orbax raises many types; report one
            raise self._unusable(step, "is unreadable", error) from error
        return dict(restored["meta"])

    def restore(
        self, template: GANState, expected_signature: dict[str, Any], step: int | None = None
    ) -> tuple[GANState, dict[str, Any]]:
        """Restores checkpoint `step` (default: the latest) into the structure of `template`.

        `template` may be a real state or its `jax.eval_shape`; its static fields (modules,
        optimizers) are kept.

        Raises:
          CheckpointError: the checkpoint was made by an incompatible config, cannot be
            read, or its bytes differ from those saved (checked against the SHA-256 in
            its meta). Nothing on disk is changed.
        """
        step = self.latest_step() if step is None else step
        if step is None:
            raise CheckpointError(f"No checkpoint in {self.directory}")
        meta = self.read_meta(step)
        saved_signature = {**_LEGACY_SIGNATURE, **meta.get("signature", {})}
        saved_signature = {key: saved_signature.get(key) for key in expected_signature}
        if saved_signature != expected_signature:
            differences = ", ".join(
                f"{key}: checkpoint {saved_signature.get(key)!r} vs config "
                f"{expected_signature.get(key)!r}"
                for key in expected_signature
                if saved_signature.get(key) != expected_signature.get(key)
            )
            raise CheckpointError(
                f"The checkpoint in {self.directory / str(step)} was made by an incompatible "
                f"config ({differences}). Use the same config to resume, or a new workdir."
            )
        target = jax.tree_util.tree_map(ocp.utils.to_shape_dtype_struct, _state_tree(template))
        # Checkpoints older than the EMA generator's own BatchNorm statistics lack them.
        legacy_ema_stats = meta.get("state_format", 1) < STATE_FORMAT
        if legacy_ema_stats:
            target.pop("g_ema_batch_stats")
        try:
            restored = self._manager.restore(
                step, args=ocp.args.Composite(state=ocp.args.StandardRestore(target))
            )
        except Exception as error:  # noqa: BLE001
            raise self._unusable(step, "could not be restored", error) from error
        arrays = jax.device_get(restored["state"])
        expected_digest = meta.get("state_sha256")
        if expected_digest is not None and state_digest(arrays) != expected_digest:
            raise self._unusable(
                step, "is corrupt", "its arrays differ from the SHA-256 recorded when saved"
            )
        if legacy_ema_stats:  # What such runs sampled with: the online G's statistics.
            arrays["g_ema_batch_stats"] = arrays["g_batch_stats"] if arrays["g_ema"] else {}
        # Uncommitted arrays on the default device, like a fresh `create_state`'s: a jitted
        # step then lowers to the same program as in the run that saved the checkpoint
        # (Orbax's committed arrays add sharding annotations and force a recompilation).
        state = serialization.from_state_dict(template, jax.device_put(arrays))
        return state, meta

    def _unusable(self, step: int, problem: str, cause: BaseException | str) -> CheckpointError:
        cause = cause if isinstance(cause, str) else _describe(cause)
        earlier = [s for s in self.all_steps() if s < step]
        remedy = (
            f"Move that folder aside to resume from the checkpoint before it (step "
            f"{max(earlier)}), or use a new workdir."
            if earlier
            else "Move that folder aside to start again (no earlier checkpoint exists), or "
            "use a new workdir."
        )
        return CheckpointError(
            f"Checkpoint {self.directory / str(step)} {problem} ({cause}). {remedy}"
        )

    def close(self) -> None:
        self._manager.close()


def load_run(
    workdir: str | Path, *, step: int | None = None, member: int | None = None
) -> tuple[ml_collections.ConfigDict, GANState, dict[str, Any]]:
    """The config, restored state and meta of a training workdir's checkpoint.

    Reads `config.json` and the latest complete checkpoint (or `step`), without loading
    the dataset: the image shape and classes come from the checkpoint's meta. Safe beside
    a running training (nothing is written or removed).

    A population's workdir (`config.population = K`) holds K GANs: `member` picks one
    (0 to K-1), whose state is returned with its own seed and learning rate in the
    returned config.

    Raises:
      FileNotFoundError: `workdir` is not a training workdir.
      CheckpointError: no checkpoint, or an unusable one (the message says why).
      ValueError: `member` is missing or out of range for a population, or given for a
        single GAN's workdir.
    """
    from jaxgan.core import create_state, population
    from jaxgan.data.fashion_mnist import INFO as FASHION_MNIST_INFO

    workdir = Path(workdir)
    config_path = workdir / "config.json"
    if not config_path.is_file():
        raise FileNotFoundError(f"{config_path} not found: is {workdir} a training workdir?")
    config = ml_collections.ConfigDict(models.upgrade(json.loads(config_path.read_text())))
    size = population.size(config)
    if size and member not in range(size):
        raise ValueError(
            f"{workdir} holds a population of {size} GANs; pick one with member=0..{size - 1} "
            f"(--member on the command line); got {member!r}"
        )
    if not size and member is not None:
        raise ValueError(f"{workdir} holds one GAN, not a population: leave member unset")
    if not (workdir / "checkpoints").is_dir():
        raise CheckpointError(
            f"{workdir} has no checkpoints yet: a run saves one every checkpoint_every epochs"
        )
    checkpointer = Checkpointer(workdir / "checkpoints", int(config.get("keep_checkpoints", 3)))
    try:
        step = checkpointer.latest_step() if step is None else step
        if step is None:
            raise CheckpointError(
                f"{workdir / 'checkpoints'} holds no complete checkpoint yet: a run saves "
                "one every checkpoint_every epochs"
            )
        meta = checkpointer.read_meta(step)
        info = (
            DatasetInfo.from_dict(meta["dataset_info"])
            if "dataset_info" in meta
            else FASHION_MNIST_INFO
        )
        shapes = {"image_shape": info.image_shape, "num_classes": info.num_classes}
        # The run's length, for a learning-rate decay's schedule (the state's optimizers are
        # the run's own, so that training could go on from it); at least 1 for older metas.
        total_steps = max(1, int(meta.get("steps_per_epoch", 0)) * int(config.num_epochs))
        if size:
            template = jax.eval_shape(
                lambda keys: population.create(config, list(keys), [0.0] * size, **shapes),
                jax.random.split(jax.random.key(0), size),
            )
        else:
            template = jax.eval_shape(
                lambda key: create_state(config, key, total_steps=total_steps, **shapes),
                jax.random.key(0),
            )
        state, meta = checkpointer.restore(template, signature(config, info), step)
    finally:
        checkpointer.close()
    meta.setdefault("dataset_info", info.to_dict())
    if size:
        config = population.member_config(config, member)
        state = population.member(state, member)
    return config, state, meta
