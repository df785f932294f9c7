"""The served generator: a checkpoint compiled ahead of time for a few batch sizes, reloadable.

A `Snapshot` is one restored checkpoint with its programs compiled for every bucket (batch
size) at load time, so no request waits for a compilation: a batch of N images runs as a
few calls of bucket sizes, padded, chosen by `plan_calls` from the time each bucket took
when it was loaded. XLA:CPU's time per image barely falls with the batch size (it grows
past the caches), so on a CPU the plan often splits a batch into small calls.

`ModelHolder` keeps the current snapshot. With `watch`, a background thread loads each
newer checkpoint of the workdir, compiles and times it, and only then swaps it in with one
assignment: requests in flight finish on the snapshot they started with.

Latents come from `experiments.generate`'s recipe (passed in as `image_latents` and
`slerp`), so `/generate?seed=S` makes the images `experiments.generate --seed=S` makes.
"""

from __future__ import annotations

import dataclasses
import logging
import math
import threading
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

log = logging.getLogger(__name__)

DEFAULT_BUCKETS = (1, 4, 16, 64, 256)
_TIMING_REPEATS = 3
LatentFn = Callable[..., jax.Array]


def bucket_for(count: int, buckets: Sequence[int]) -> int:
    """The smallest bucket holding `count` items, else the largest bucket."""
    return next((bucket for bucket in sorted(buckets) if bucket >= count), max(buckets))


def plan_calls(count: int, costs: dict[int, float]) -> list[int]:
    """Bucket sizes whose calls cover `count` images at the least total cost.

    Args:
      count: images to generate, >= 1.
      costs: seconds per call of each bucket size.

    Returns:
      Bucket sizes, largest first, summing to at least `count` (the last call is padded);
      of equally cheap plans, one with the fewest calls.
    """
    # best[c]: (seconds, calls) of the cheapest cover of c images; fewer calls break ties.
    best = [(0.0, 0)] + [(math.inf, 0)] * count
    choice = [0] * (count + 1)
    for covered in range(1, count + 1):
        for bucket, cost in costs.items():
            seconds, calls = best[max(0, covered - bucket)]
            if (seconds + cost, calls + 1) < best[covered]:
                best[covered], choice[covered] = (seconds + cost, calls + 1), bucket
    calls, left = [], count
    while left > 0:
        calls.append(choice[left])
        left -= choice[left]
    return sorted(calls, reverse=True)


def _generate_images(state, latents, labels):
    from jaxgan.core import sample

    return sample(state, latents, labels)


@dataclasses.dataclass(frozen=True)
class Programs:
    """Compiled programs per bucket and their timings; reused by snapshots of one config."""

    latents: dict[int, Any]
    walks: dict[int, Any]
    generators: dict[int, Any]
    costs: dict[int, float]
    avals: Any  # The state's structure, shapes and dtypes these programs were compiled for.


def _avals(state) -> Any:
    return jax.tree_util.tree_map(lambda leaf: (leaf.shape, leaf.dtype), state)


def compile_programs(
    state, buckets: Sequence[int], image_latents: LatentFn, slerp: LatentFn, max_steps: int
) -> Programs:
    """Compiles latents, walks and the generator for each bucket and times the generator."""
    latent_dim, num_classes = state.latent_dim, state.num_classes
    seed = np.int32(0)
    latents, walks, generators, costs = {}, {}, {}, {}
    walk_buckets = {bucket_for(steps, buckets) for steps in range(1, max_steps + 1)}

    def walk(start, end, fractions):  # [D], [D], [B] -> [B, D]
        count = fractions.shape[0]
        return slerp(
            jnp.broadcast_to(start, (count, latent_dim)),
            jnp.broadcast_to(end, (count, latent_dim)),
            fractions,
        )

    for bucket in sorted(buckets):
        indices = np.arange(bucket, dtype=np.int32)
        latents[bucket] = image_latents.lower(seed, indices, latent_dim=latent_dim).compile()
        if bucket in walk_buckets:
            point = np.zeros(latent_dim, np.float32)
            walks[bucket] = (
                jax.jit(walk).lower(point, point, np.zeros(bucket, np.float32)).compile()
            )
        batch_latents = np.zeros((bucket, latent_dim), np.float32)
        batch_labels = np.zeros(bucket, np.int32) if num_classes else None
        program = jax.jit(_generate_images).lower(state, batch_latents, batch_labels).compile()
        generators[bucket] = program
        program(state, batch_latents, batch_labels).block_until_ready()  # The first run is slow.
        timings = []
        for _ in range(_TIMING_REPEATS):
            start = time.perf_counter()
            program(state, batch_latents, batch_labels).block_until_ready()
            timings.append(time.perf_counter() - start)
        costs[bucket] = min(timings)
    log.info("generator seconds per call by batch size: %s", costs)
    return Programs(latents, walks, generators, costs, _avals(state))


@dataclasses.dataclass(frozen=True)
class Snapshot:
    """One checkpoint, ready to serve.

    Attributes:
      step: the checkpoint's training step.
      config: the run's config (a ConfigDict).
      state: the restored `GANState` (EMA weights are used when it has them).
      dataset: the run's dataset info: name, image_shape, num_classes, class_names.
      programs: the compiled programs this snapshot runs.
    """

    step: int
    config: Any
    state: Any
    dataset: dict[str, Any]
    programs: Programs

    @property
    def latent_dim(self) -> int:
        return self.state.latent_dim

    @property
    def member(self) -> int | None:
        """The member of a population's workdir this snapshot holds; None for a single GAN."""
        return self.config.get("population_member")

    @property
    def num_classes(self) -> int:
        """The model's classes: 0 for an unconditional model (labels are refused then)."""
        return self.state.num_classes

    @property
    def class_names(self) -> list[str]:
        return list(self.dataset["class_names"]) if self.num_classes else []

    def image_latents(self, seed: int, count: int) -> np.ndarray:
        """Latents float32 [count, D] of images 0..count-1 of `seed`, as experiments.generate's."""
        chunks, buckets = [], self.programs.latents
        for start in range(0, count, max(buckets)):
            bucket = bucket_for(count - start, buckets)
            indices = np.arange(start, start + bucket, dtype=np.int32)
            chunks.append(np.asarray(buckets[bucket](np.int32(seed), indices)))
        return np.concatenate(chunks)[:count]

    def walk_latents(self, seed_a: int, seed_b: int, steps: int) -> np.ndarray:
        """Latents [steps, D] from image 0 of `seed_a` to image 0 of `seed_b`, spherically."""
        start, end = self.image_latents(seed_a, 1)[0], self.image_latents(seed_b, 1)[0]
        # The fractions of `image_latents(steps=...)`: float32 position / (steps - 1).
        fractions = np.arange(steps, dtype=np.float32) / np.float32(steps - 1)
        walks, chunks = self.programs.walks, []
        for first in range(0, steps, max(walks)):
            part = fractions[first : first + max(walks)]
            padded = np.zeros(bucket_for(len(part), walks), np.float32)
            padded[: len(part)] = part
            chunks.append(np.asarray(walks[len(padded)](start, end, padded))[: len(part)])
        return np.concatenate(chunks)

    def generate(self, latents: np.ndarray, labels: np.ndarray | None) -> np.ndarray:
        """uint8 images [N, H, W, C] for latents [N, D] (and int32 labels [N])."""
        from jaxgan.metrics import to_uint8

        outputs, start = [], 0
        for bucket in plan_calls(len(latents), self.programs.costs):
            chunk = latents[start : start + bucket]
            padding = bucket - len(chunk)
            chunk_labels = None
            if labels is not None:
                chunk_labels = np.pad(labels[start : start + bucket], (0, padding))
            chunk = np.pad(chunk, ((0, padding), (0, 0)))
            images = self.programs.generators[bucket](self.state, chunk, chunk_labels)
            outputs.append(to_uint8(np.asarray(images)[: bucket - padding]))
            start += bucket
        return np.concatenate(outputs)


def load_snapshot(
    workdir: str | Path,
    *,
    image_latents: LatentFn,
    slerp: LatentFn,
    buckets: Sequence[int] = DEFAULT_BUCKETS,
    max_steps: int = 64,
    step: int | None = None,
    reuse: Programs | None = None,
    member: int | None = None,
) -> Snapshot:
    """Restores a checkpoint (default: the latest) and compiles it, or reuses `reuse`'s
    programs when they were compiled for states of the same structure and shapes.

    `member` picks the GAN of a population's workdir (0 to K-1; `checkpoint.load_run`)."""
    from jaxgan.checkpoint import load_run

    config, state, meta = load_run(workdir, step=step, member=member)
    if reuse is not None and reuse.avals == _avals(state):
        programs = reuse
    else:
        programs = compile_programs(state, buckets, image_latents, slerp, max_steps)
    return Snapshot(int(state.step), config, state, dict(meta["dataset_info"]), programs)


def check_member(workdir: str | Path, member: int | None) -> None:
    """Raises `checkpoint.load_run`'s ValueError when `workdir`'s config does not allow
    `member` (missing or out of range for a population, or given for a single GAN), before
    the run has saved a checkpoint; nothing when the workdir has no config yet."""
    from jaxgan.checkpoint import CheckpointError, load_run

    try:
        load_run(workdir, member=member)
    except (FileNotFoundError, CheckpointError):
        pass  # No config or no checkpoint yet: `member` was checked if the config exists.


def newest_step(workdir: str | Path) -> int | None:
    """The newest complete checkpoint's step from the folder names (Orbax renames a
    checkpoint to its step only once it is written), or None."""
    try:
        names = [entry.name for entry in (Path(workdir) / "checkpoints").iterdir()]
    except FileNotFoundError:
        return None
    steps = [int(name) for name in names if name.isdigit()]
    return max(steps) if steps else None


class ModelHolder:
    """The snapshot being served, and the watcher that replaces it by newer checkpoints.

    Args:
      workdir: the training workdir.
      load: `load(workdir, step, reuse) -> Snapshot`, e.g. `load_snapshot` with its
        latent recipe bound.
      on_swap: called with each snapshot made current (e.g. to update a metric).
      on_failed_reload: called with the step whose load failed.
    """

    def __init__(
        self,
        workdir: str | Path,
        load: Callable[..., Snapshot],
        *,
        on_swap: Callable[[Snapshot], None] | None = None,
        on_failed_reload: Callable[[int], None] | None = None,
    ):
        self.workdir = Path(workdir)
        self._load = load
        self._on_swap = on_swap or (lambda snapshot: None)
        self._on_failed_reload = on_failed_reload or (lambda step: None)
        self.current: Snapshot | None = None
        self._failed_step: int | None = None
        self._stop = threading.Event()
        self._watcher: threading.Thread | None = None

    def _swap(self, snapshot: Snapshot) -> None:
        self.current = snapshot  # One reference assignment: atomic under the GIL.
        self._on_swap(snapshot)

    def load_latest(self) -> Snapshot:
        """Loads the newest checkpoint and makes it current (blocking)."""
        snapshot = self._load(self.workdir, None, None)
        self._swap(snapshot)
        return snapshot

    def reload_if_newer(self) -> bool:
        """Loads and swaps in the newest checkpoint when it is newer than the current one.

        A checkpoint that fails to load is logged and skipped until a newer one appears;
        the current snapshot keeps serving.
        """
        step = newest_step(self.workdir)
        current = self.current
        if step is None or step == self._failed_step:
            return False
        if current is not None and step <= current.step:
            return False
        try:
            snapshot = self._load(self.workdir, step, current.programs if current else None)
        except (OSError, ValueError) as error:  # CheckpointError is a ValueError.
            log.warning("checkpoint %d of %s not loaded: %s", step, self.workdir, error)
            self._failed_step = step
            self._on_failed_reload(step)
            return False
        self._swap(snapshot)
        log.info("serving checkpoint step %d of %s", snapshot.step, self.workdir)
        return True

    def start_watching(self, poll_seconds: float) -> None:
        """Checks for a newer checkpoint every `poll_seconds`, in a daemon thread."""

        def watch() -> None:
            while not self._stop.wait(poll_seconds):
                try:
                    self.reload_if_newer()
                except Exception:  # noqa: BLE001 - the watcher must outlive any one reload
                    log.exception("reload of %s failed", self.workdir)

        self._watcher = threading.Thread(target=watch, name="checkpoint-watcher", daemon=True)
        self._watcher.start()

    def stop(self) -> None:
        self._stop.set()
        if self._watcher is not None:
            self._watcher.join(timeout=10)
