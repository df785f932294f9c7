"""Orbax checkpoints of the whole GAN state, with a compatibility check on restore.

Each checkpoint is a folder `checkpoints/<step>/` holding two items: `state` (both
networks' params, BatchNorm statistics, optimizer states and the step) and `meta`
(JSON: epoch, position in the epoch, the architecture signature). Orbax writes a
checkpoint into a temporary folder and renames it when complete, so a checkpoint
interrupted mid-write is never listed as the latest.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import jax
import orbax.checkpoint as ocp
from flax import serialization

from jaxgan.train import GANState

log = logging.getLogger(__name__)

# Config fields that fix the shapes of the saved arrays.
SIGNATURE_FIELDS = ("model", "latent_dim", "g_width", "d_width")


class CheckpointError(ValueError):
    """A checkpoint exists but cannot be used; the message says which and why."""


def signature(config: Any) -> dict[str, Any]:
    """The config fields a checkpoint must agree with to be restored."""
    return {field: config[field] for field in SIGNATURE_FIELDS}


def _state_tree(state: GANState) -> dict[str, Any]:
    return serialization.to_state_dict(state)


class Checkpointer:
    """Saves and restores `GANState`s under `directory`, keeping the newest `keep`."""

    def __init__(self, directory: str | Path, keep: int):
        self.directory = Path(directory).absolute()
        options = ocp.CheckpointManagerOptions(
            max_to_keep=keep, create=True, enable_async_checkpointing=False
        )
        self._manager = ocp.CheckpointManager(
            self.directory, options=options, item_names=("state", "meta")
        )

    def latest_step(self) -> int | None:
        """The step of the newest complete checkpoint, or None."""
        self._manager.reload()
        return self._manager.latest_step()

    def all_steps(self) -> list[int]:
        self._manager.reload()
        return list(self._manager.all_steps())

    def save(self, state: GANState, meta: dict[str, Any]) -> int:
        """Writes a checkpoint named by `state.step`; returns that step."""
        step = int(jax.device_get(state.step))
        if step in self.all_steps():
            return step
        self._manager.save(
            step,
            args=ocp.args.Composite(
                state=ocp.args.StandardSave(_state_tree(state)),
                meta=ocp.args.JsonSave({**meta, "step": step}),
            ),
            force=True,
        )
        self._manager.wait_until_finished()
        return step

    def read_meta(self, step: int) -> dict[str, Any]:
        """The JSON metadata of checkpoint `step`."""
        try:
            restored = self._manager.restore(
                step, args=ocp.args.Composite(meta=ocp.args.JsonRestore())
            )
        except Exception as error:  # noqa: BLE001 - Orbax raises many types; report one
            raise CheckpointError(
                f"Checkpoint {self.directory / str(step)} is unreadable "
                f"({type(error).__name__}: {error}). Move that folder aside to resume from "
                f"an earlier checkpoint ({self._earlier(step)}), or use a new workdir."
            ) from error
        return dict(restored["meta"])

    def restore(
        self, template: GANState, expected_signature: dict[str, Any], step: int | None = None
    ) -> tuple[GANState, dict[str, Any]]:
        """Restores checkpoint `step` (default: the latest) into the structure of `template`.

        Raises:
          CheckpointError: the checkpoint was made by an incompatible config, or is
            corrupt. Nothing on disk is changed.
        """
        step = self.latest_step() if step is None else step
        if step is None:
            raise CheckpointError(f"No checkpoint in {self.directory}")
        meta = self.read_meta(step)
        saved_signature = meta.get("signature", {})
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
        target = jax.tree_util.tree_map(
            ocp.utils.to_shape_dtype_struct, _state_tree(template)
        )
        try:
            restored = self._manager.restore(
                step, args=ocp.args.Composite(state=ocp.args.StandardRestore(target))
            )
        except Exception as error:  # noqa: BLE001
            raise CheckpointError(
                f"Checkpoint {self.directory / str(step)} could not be restored "
                f"({type(error).__name__}: {error}). Move that folder aside to resume from "
                f"an earlier checkpoint ({self._earlier(step)}), or use a new workdir."
            ) from error
        state = serialization.from_state_dict(template, restored["state"])
        return state, meta

    def _earlier(self, step: int) -> str:
        earlier = [s for s in self.all_steps() if s < step]
        return f"step {max(earlier)}" if earlier else "none exists"

    def close(self) -> None:
        self._manager.close()
