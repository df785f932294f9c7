"""One worker thread runs the generator; concurrent requests may share its calls.

Requests are queued as jobs. The worker takes the first, then every job already queued
(and, with `max_wait_s`, those arriving within that time) up to `max_images` images, and
generates them in one pass (`Snapshot.generate` splits the pass into bucket-sized calls).
One thread owns the generator, so concurrent requests never oversubscribe the cores; all
jobs of a pass use the same snapshot, whose step each result carries.

Measured on a 2-core CPU with the default DCGAN (benchmarks/serve_speed.py, 32 clients):
passes of up to 16 images raised the throughput of 1-image requests by about 30%, while
gathering 16- and 64-image requests into larger passes lowered it (XLA:CPU's time per
image does not fall with the batch size, and the clients of a large pass all wait for
its end). Hence `max_images=16` and no waiting (`max_wait_s=0`: a 3 ms wait only added
latency).
"""

from __future__ import annotations

import dataclasses
import logging
import queue
import threading
import time
from collections.abc import Callable
from concurrent.futures import Future

import numpy as np

from jaxgan.serving.model import Snapshot

log = logging.getLogger(__name__)
_STOP = object()  # Queued by `stop`; the worker exits when it takes it.


class NotReadyError(RuntimeError):
    """No checkpoint is loaded yet (the server is waiting for a run's first one)."""


@dataclasses.dataclass(frozen=True)
class GenerateJob:
    """Images 0..n-1 of `seed`; classes `label`, else round-robin (conditional models)."""

    seed: int
    n: int
    label: int | None

    @property
    def count(self) -> int:
        return self.n

    def inputs(self, snapshot: Snapshot) -> tuple[np.ndarray, np.ndarray | None]:
        latents = snapshot.image_latents(self.seed, self.n)
        return latents, _labels(snapshot, self.n, self.label, round_robin=True)


@dataclasses.dataclass(frozen=True)
class WalkJob:
    """A spherical walk of `steps` images from image 0 of `seed_a` to image 0 of `seed_b`;
    class `label`, else class 0 (the class of image 0 of `/generate`)."""

    seed_a: int
    seed_b: int
    steps: int
    label: int | None

    @property
    def count(self) -> int:
        return self.steps

    def inputs(self, snapshot: Snapshot) -> tuple[np.ndarray, np.ndarray | None]:
        latents = snapshot.walk_latents(self.seed_a, self.seed_b, self.steps)
        return latents, _labels(snapshot, self.steps, self.label, round_robin=False)


Job = GenerateJob | WalkJob


@dataclasses.dataclass(frozen=True)
class Result:
    images: np.ndarray  # uint8 [N, H, W, C]
    step: int  # The checkpoint step that generated them.


def _labels(snapshot: Snapshot, count: int, label: int | None, *, round_robin: bool):
    """int32 [count] classes as experiments.generate assigns them; None when unconditional."""
    if not snapshot.num_classes:
        return None
    if label is not None:
        return np.full(count, label, np.int32)
    if round_robin:
        return (np.arange(count) % snapshot.num_classes).astype(np.int32)
    return np.zeros(count, np.int32)


class Batcher:
    """The generator's worker thread and its job queue.

    Args:
      current: returns the snapshot to use (None before the first checkpoint).
      max_images: the most images one pass gathers (a larger job runs alone).
      max_wait_s: how long the first job of a pass waits for more; 0 takes only the jobs
        already queued.
      batching: False runs each job in its own pass.
      on_pass: called with (number of jobs, number of images, seconds) after each pass.
    """

    def __init__(
        self,
        current: Callable[[], Snapshot | None],
        *,
        max_images: int = 16,
        max_wait_s: float = 0.0,
        batching: bool = True,
        on_pass: Callable[[int, int, float], None] | None = None,
    ):
        self._current = current
        self.max_images = max_images
        self.max_wait_s = max_wait_s
        self.batching = batching
        self._on_pass = on_pass or (lambda jobs, images, seconds: None)
        self._queue: queue.SimpleQueue = queue.SimpleQueue()
        self._thread = threading.Thread(target=self._work, name="generator", daemon=True)
        self._stopping = False

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stopping = True
        self._queue.put(_STOP)
        self._thread.join(timeout=30)

    def submit(self, job: Job) -> Future:
        """Queues `job`; the future's result is a `Result`, or the error the job raised."""
        future: Future = Future()
        if self._stopping:
            future.set_exception(NotReadyError("the server is shutting down"))
        else:
            self._queue.put((job, future))
        return future

    def _gather(self, first) -> tuple[list, object]:
        """The jobs of one pass, starting with `first`; and a job left for the next pass."""
        entries, images = [first], first[0].count
        if not self.batching:
            return entries, None
        deadline = time.monotonic() + self.max_wait_s
        while images < self.max_images:
            try:
                remaining = deadline - time.monotonic()
                entry = (
                    self._queue.get(timeout=remaining)
                    if remaining > 0
                    else (self._queue.get_nowait())
                )
            except queue.Empty:
                break
            if entry is _STOP or images + entry[0].count > self.max_images:
                return entries, entry
            entries.append(entry)
            images += entry[0].count
        return entries, None

    def _work(self) -> None:
        carried = None
        while True:
            entry = carried if carried is not None else self._queue.get()
            carried = None
            if entry is _STOP:
                return
            entries, carried = self._gather(entry)
            self._run(entries)

    def _run(self, entries: list) -> None:
        started = time.perf_counter()
        snapshot = self._current()
        inputs = []
        for job, future in entries:
            if snapshot is None:
                future.set_exception(NotReadyError("no checkpoint is loaded yet"))
                continue
            try:
                inputs.append((future, *job.inputs(snapshot)))
            except Exception as error:  # noqa: BLE001 - handed to the request, which answers 500
                future.set_exception(error)
        if not inputs:
            return
        try:
            latents = np.concatenate([latent for _, latent, _ in inputs])
            labels = None
            if snapshot.num_classes:
                labels = np.concatenate([label for _, _, label in inputs])
            images = snapshot.generate(latents, labels)
        except Exception as error:  # noqa: BLE001
            log.exception("generator pass failed")
            for future, _, _ in inputs:
                future.set_exception(error)
            return
        start = 0
        for future, latent, _ in inputs:
            future.set_result(Result(images[start : start + len(latent)], snapshot.step))
            start += len(latent)
        self._on_pass(len(inputs), len(images), time.perf_counter() - started)
