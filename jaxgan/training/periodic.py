"""The training loop's periodic actions: samples, evaluation, logs, curves.

Each action runs at the end of an epoch when it is due: every `every` epochs, and after
the last epoch when `at_end` (`every=0` means only at the end, or never without
`at_end`). The loop (`trainer.Trainer.finish_epoch`) calls them in a fixed order: samples,
then its checkpoint, then evaluation, log and curves, so that the epoch's checkpoint is
started before a long evaluation.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import math
import time
from collections.abc import Callable
from pathlib import Path
from typing import IO, Any

import jax
import numpy as np

from jaxgan import images
from jaxgan.core import GANState, population, sample, step_of
from jaxgan.training import members

log = logging.getLogger("jaxgan")

# Record keys that are bookkeeping, not scalars to plot or log as metrics.
BOOKKEEPING = (
    "epoch", "step", "wall_time", "epoch_seconds", "eval_seconds", "resumed", "members",
)  # fmt: skip


@dataclasses.dataclass
class EpochEnd:
    """What the actions see: the state after `epoch` epochs and the epoch's record.

    Attributes:
      state: the state at the end of the epoch.
      epoch: number of completed epochs (1-based).
      is_last: whether this is the run's last epoch.
      record: the epoch's line of metrics.jsonl; actions add to it (e.g. FID).
    """

    state: GANState
    epoch: int
    is_last: bool
    record: dict[str, Any]


class PeriodicAction:
    """Base class: `due(epoch, is_last)` decides, `__call__(end)` acts."""

    def __init__(self, every: int, *, at_end: bool = True):
        self.every = every
        self.at_end = at_end

    def due(self, epoch: int, is_last: bool) -> bool:
        return bool((self.every and epoch % self.every == 0) or (self.at_end and is_last))

    def __call__(self, end: EpochEnd) -> None:
        raise NotImplementedError


class WriteSamples(PeriodicAction):
    """`samples/epoch_XXXX.png` from fixed latents (and labels), also to TensorBoard.

    With `member=i` it draws member i of a population's stacked state, into
    `samples/epoch_XXXX_member{i}.png`.
    """

    def __init__(
        self, every: int, workdir: Path, latents, labels, writer, columns, row_labels=None,
        member: int | None = None,
    ):  # fmt: skip
        super().__init__(every, at_end=bool(every))
        self.workdir, self.latents, self.labels = workdir, latents, labels
        self.writer, self.columns, self.row_labels = writer, columns, row_labels
        self.member = member
        self.suffix = "" if member is None else f"_member{member}"

    def grid(self, state: GANState) -> np.ndarray:
        """The grid of the fixed latents; one row per class, named, when conditional."""
        if self.member is not None:
            state = population.member(state, self.member)
        generated = sample(state, self.latents, self.labels)
        if self.row_labels:
            return images.make_labelled_grid(generated, self.row_labels, self.columns)
        return images.make_grid(generated, self.columns)

    def __call__(self, end: EpochEnd) -> None:
        grid = self.grid(end.state)
        path = self.workdir / "samples" / f"epoch_{end.epoch:04d}{self.suffix}.png"
        images.save_png(path, grid, scale=2)
        self.writer.add_image(f"samples{self.suffix}", grid, step_of(end.state), dataformats="HWC")


class Evaluate(PeriodicAction):
    """Scores the generator (FID, KID, ...) and adds the scalars to the record.

    `should_stop` is polled between batches of the evaluation; it raises to abandon it.
    For a population (`key` holds one key per member) each member is scored in turn: its
    scalars go to `record["members"][i]`, their means over the members to the record,
    and the members' spread of FID to `fid_members_std`.
    """

    def __init__(self, every: int, evaluator, key: jax.Array, should_stop: Callable[[], bool]):
        super().__init__(every, at_end=bool(every))
        self.evaluator, self.key, self.should_stop = evaluator, key, should_stop
        self.members = key.shape[0] if key.ndim else None
        # One result per member for a population.
        self.results: dict[str, Any] | list[dict[str, Any]] = {}

    def _evaluate(self, state: GANState, key: jax.Array, epoch: int) -> dict[str, Any]:
        return self.evaluator.evaluate(
            state, jax.random.fold_in(key, epoch), should_stop=self.should_stop
        )

    def __call__(self, end: EpochEnd) -> None:
        start = time.perf_counter()
        if self.members is None:
            self.results = self._evaluate(end.state, self.key, end.epoch)
            end.record.update(scalars(self.results))
        else:
            results = []
            for index in range(self.members):
                results.append(
                    self._evaluate(population.member(end.state, index), self.key[index], end.epoch)
                )
                log.info("member %d: %s", index, format_scalars(scalars(results[-1])))
            self.results = results
            end.record.update(members.summarise([scalars(r) for r in results]))
            members.add_member_scalars(end.record, [scalars(r) for r in results])
        end.record["eval_seconds"] = round(time.perf_counter() - start, 3)

    def write_report(self, path: Path) -> None:
        """The final results into `path` (`fid_result.txt`); a population's also per member."""
        if self.members is None:
            self.evaluator.write_report(self.results, path)
            return
        for index, results in enumerate(self.results):
            self.evaluator.write_report(results, path.with_name(f"{path.stem}_member{index}.txt"))
        members.write_report(self.results, path)


def scalars(results: dict[str, Any]) -> dict[str, float]:
    """The float entries of an evaluation's results."""
    return {k: v for k, v in results.items() if isinstance(v, float)}


class LogEpoch(PeriodicAction):
    """Appends the record to metrics.jsonl, TensorBoard and the log, whatever its keys."""

    def __init__(self, metrics_file: IO[str], writer, num_epochs: int):
        super().__init__(1)
        self.metrics_file, self.writer, self.num_epochs = metrics_file, writer, num_epochs

    def __call__(self, end: EpochEnd) -> None:
        record = end.record
        record["wall_time"] = time.time()
        step = record["step"]
        for name, value in record.items():
            if name not in BOOKKEEPING and isinstance(value, float):
                self.writer.add_scalar(name, value, step)
        for index, member in enumerate(record.get("members", ())):
            for name, value in member.items():
                if isinstance(value, float):
                    self.writer.add_scalar(f"member{index}/{name}", value, step)
        self.writer.flush()
        self.metrics_file.write(json.dumps(record) + "\n")
        self.metrics_file.flush()
        members = record.get("members", ())
        fids = [m["fid"] for m in members if "fid" in m]
        log.info(
            "epoch %d/%d step %d: %s (%.1f s%s)%s",
            end.epoch, self.num_epochs, step, format_scalars(record), record["epoch_seconds"],
            ", resumed" if record.get("resumed") else "",
            f"; FID per member: {' '.join(f'{f:.2f}' for f in fids)}" if fids else "",
        )  # fmt: skip


class DrawCurves(PeriodicAction):
    """Redraws curves.png from every record so far: at most every `min_seconds`, and
    always after an evaluation and at the end (drawing takes longer than a GPU epoch)."""

    def __init__(self, path: Path, records: list[dict[str, Any]], min_seconds: float = 10.0,
                 clock: Callable[[], float] = time.monotonic):  # fmt: skip
        super().__init__(1)
        self.path, self.records = path, records
        self.min_seconds, self.clock = min_seconds, clock
        self.last_drawn: float | None = None

    def __call__(self, end: EpochEnd) -> None:
        self.records.append(dict(end.record))
        now = self.clock()
        recent = self.last_drawn is not None and now - self.last_drawn < self.min_seconds
        if recent and not end.is_last and "fid" not in end.record:
            return
        from jaxgan.evaluation import plots  # matplotlib is imported only when drawing.

        plots.write_curves(self.records, self.path)
        self.last_drawn = self.clock()


def format_scalars(record: dict[str, Any]) -> str:
    """'d_loss 1.2345 g_loss 0.9876 ...' for every finite scalar of a record."""
    parts = []
    for name, value in record.items():
        if name in BOOKKEEPING or not isinstance(value, float) or not math.isfinite(value):
            continue
        parts.append(f"{name} {value:.4g}")
    return " ".join(parts)
