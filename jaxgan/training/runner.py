"""Running steps and showing progress: the chunk runner and the progress bar with ETA."""

from __future__ import annotations

import contextlib
import functools
import logging
import time
from collections.abc import Callable
from typing import Any

import jax
import numpy as np
import tqdm

from jaxgan.core import GANState, batch_to_float, population, sharding, train_step, train_steps

log = logging.getLogger("jaxgan")

# Without a terminal, progress goes to the log at most this often.
REPORT_SECONDS = 60.0


def _take(array: Any, index: int) -> Any:
    return array[index]


def slice_batches(batches: Any, start: int, end: int) -> Any:
    """Batches [start:end] of every array of a batch tree."""
    return jax.tree.map(lambda array: array[start:end], batches)


ChunkRunner = Callable[..., tuple[GANState, dict[str, np.ndarray]]]


def make_chunk_runner(
    backend: str, mesh: jax.sharding.Mesh | None = None, *, members: bool = False
) -> ChunkRunner:
    """Returns `run(state, batches, key, on_step, should_stop) -> (state, host metrics)`.

    `batches` holds S uint8 batches ({"image": [S, B, H, W, C], "label": [S, B]}). On
    accelerators the S steps are one compiled `lax.scan`. On CPU they are calls of one
    jitted `train_step`: XLA:CPU runs the convolutions of a DCGAN step 5-10x slower
    inside a while loop (the form `lax.scan` compiles to), and a Python dispatch per step
    costs nothing next to a CPU step; the CPU loop also reports each step to `on_step`
    and stops early when `should_stop()` is true. Both apply the same `train_step` with
    the same keys and batches.

    With a `mesh` (`jaxgan.core.sharding.data_mesh`), the state is expected replicated and the
    batches split along B; the new state and the metrics come back replicated. Steps are
    traced under `jax.set_mesh(mesh)`, so that `jaxgan.core.sharding.split_batch` can split
    what a step creates itself.

    With `members` the state is a population (`jaxgan.core.population`): the batches are
    [S, K, B, ...], the key holds one key per member, and the metrics come back [S, K].
    """
    out_shardings = None if mesh is None else sharding.replicated(mesh)
    on_mesh = contextlib.nullcontext if mesh is None else functools.partial(jax.set_mesh, mesh)
    if backend != "cpu":
        steps = population.vmap(train_steps, batch_axis=1) if members else train_steps
        scan_steps = jax.jit(steps, donate_argnums=0, out_shardings=out_shardings)

        def run_scan(state, batches, key, on_step=None, should_stop=None):
            del should_stop
            with on_mesh():
                state, metrics = scan_steps(state, batches, key)
            metrics = jax.device_get(metrics)
            if on_step is not None:
                on_step(len(next(iter(metrics.values()))))
            return state, metrics

        return run_scan

    def one_step(state, batch, key):
        return train_step(state, batch_to_float(batch), key)

    step = jax.jit(
        population.vmap(one_step) if members else one_step,
        donate_argnums=0,
        out_shardings=out_shardings,
    )

    def run_loop(state, batches, key, on_step=None, should_stop=None):
        per_step = []
        for index in range(jax.tree.leaves(batches)[0].shape[0]):
            batch = jax.tree.map(functools.partial(_take, index=index), batches)
            with on_mesh():
                state, metrics = step(state, batch, key)
            per_step.append(metrics)
            if on_step is not None:
                on_step(1)
            if should_stop is not None and should_stop():
                break
        per_step = jax.device_get(per_step)
        return state, {name: np.stack([m[name] for m in per_step]) for name in per_step[0]}

    return run_loop


class Progress:
    """A progress bar per epoch with the whole run's ETA; log lines without a terminal.

    The ETA counts the evaluations still to come (`config.eval_every`, and the final one):
    each as long as the latest measured one (an `eval_seconds` in `records`, the run's live
    list of epoch records, resumed ones included); before any is measured, or without
    `records`, the ETA says "+ evaluation". The time per step leaves out the evaluations
    run since the start.
    """

    def __init__(
        self, config, total_steps: int, start_step: int, records: list[dict] | None = None
    ):
        self.config, self.total_steps, self.start_step = config, total_steps, start_step
        self.start_time = self.last_report = time.time()
        self.records = records
        self.records_at_start = len(records) if records is not None else 0

    def bar(self, epoch: int, position: int, steps_per_epoch: int) -> tqdm.tqdm:
        return tqdm.tqdm(
            total=steps_per_epoch,
            initial=position,
            unit="step",
            leave=False,
            desc=f"epoch {epoch + 1}/{self.config.num_epochs}",
            disable=None if self.config.progress else True,
        )

    def evaluations_to_come(self, step: int) -> int:
        """The evaluations still to run: those after the epochs ending at or after `step`."""
        every, epochs = self.config.eval_every, self.config.num_epochs
        if not every:
            return 0
        steps_per_epoch = self.total_steps // epochs
        return sum(
            epoch * steps_per_epoch >= step
            for epoch in range(1, epochs + 1)
            if epoch % every == 0 or epoch == epochs
        )

    def _eval_seconds(self, since: int = 0) -> list[float]:
        return [r["eval_seconds"] for r in (self.records or [])[since:] if "eval_seconds" in r]

    def seconds_per_step(self, step: int) -> float:
        """Training time per step since the start, evaluations left out."""
        training = time.time() - self.start_time - sum(self._eval_seconds(self.records_at_start))
        return max(training, 0.0) / max(step - self.start_step, 1)

    def eta(self, step: int) -> str:
        if step <= self.start_step:
            return "?"
        seconds = self.seconds_per_step(step) * (self.total_steps - step)
        evaluations, measured = self.evaluations_to_come(step), self._eval_seconds()
        if evaluations and measured:
            seconds += evaluations * measured[-1]
        hours, rest = divmod(int(seconds), 3600)
        text = f"{hours}h{rest // 60:02d}m" if hours else f"{rest // 60}m{rest % 60:02d}s"
        return f"{text} + evaluation" if evaluations and not measured else text

    def report(self, bar, epoch: int, position: int, spe: int, step: int, chunk) -> None:
        names = [n for n in ("d_loss", "g_loss") if n in chunk] or sorted(chunk)[:2]
        # A population's metrics are [S, K]: the members' mean.
        last = {name: float(np.mean(chunk[name][-1])) for name in names}
        bar.set_postfix({**{k: f"{v:.3f}" for k, v in last.items()}, "eta": self.eta(step)})
        if bar.disable and time.time() - self.last_report >= REPORT_SECONDS:
            # No terminal (a log file, nohup): a progress line at most once a minute.
            self.last_report = time.time()
            log.info(
                "epoch %d/%d: %d/%d steps, %s, %.2f s/step, run ETA %s",
                epoch + 1, self.config.num_epochs, position, spe,
                " ".join(f"{k} {v:.4f}" for k, v in last.items()),
                self.seconds_per_step(step),
                self.eta(step),
            )  # fmt: skip
