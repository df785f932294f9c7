"""A population's per-member concerns: keys, one member's state, per-member records, the
summary of their metrics and the report file. A single GAN is the one member `None`."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import jax
import numpy as np

from jaxgan import fileio
from jaxgan.core import GANState, population, split_epoch_key


def summarise(per_member: Sequence[dict[str, float]]) -> dict[str, float]:
    """Each scalar's mean over the members, and the members' standard deviation of FID.

    `fid_members_std` is the sample standard deviation (ddof=1; 0 for one member): the
    seed-to-seed spread that `benchmarks.quality` reports as "± std".
    """
    names = [name for name in per_member[0] if all(name in m for m in per_member)]
    summary = {name: float(np.mean([m[name] for m in per_member])) for name in names}
    if "fid" in summary:
        fids = [m["fid"] for m in per_member]
        summary["fid_members_std"] = float(np.std(fids, ddof=1)) if len(fids) > 1 else 0.0
    return summary


def write_report(per_member: Sequence[dict[str, Any]], path: str | Path) -> Path:
    """A population's `fid_result.txt`: one line per member, then the means ± std."""
    rows = [{k: v for k, v in r.items() if isinstance(v, float)} for r in per_member]
    names = [name for name in rows[0] if all(name in row for row in rows)]
    width = max(len(name) for name in names)
    lines = [
        f"Population of {len(rows)} GANs (member i was trained with seed config.seed + i); "
        f"step {per_member[0].get('step', '?')}",
        "",
        " ".join([f"{'member':>6}", *(f"{name:>{max(width, 10)}}" for name in names)]),
    ]
    for index, row in enumerate(rows):
        cells = [f"{index:>6}", *(f"{row[name]:>{max(width, 10)}.5g}" for name in names)]
        lines.append(" ".join(cells))
    lines.append("")
    for name in names:
        values = np.array([row[name] for row in rows])
        spread = float(np.std(values, ddof=1)) if len(values) > 1 else 0.0
        lines.append(f"{name}: {values.mean():.5g} ± {spread:.2g} (mean ± std over members)")
    return fileio.atomic_write_text(path, "\n".join(lines) + "\n")


def add_member_scalars(record: dict[str, Any], per_member: list[dict[str, float]]) -> None:
    """Merges each member's scalars into `record["members"]` (created when missing)."""
    entries = record.setdefault("members", [{} for _ in per_member])
    for entry, values in zip(entries, per_member, strict=True):
        entry.update(values)


class Members:
    """How the loop tells one GAN from a population's K: the one place that knows.

    Member i of a population gets every key exactly as its own single run (seed + i)
    would; a single GAN is treated as the one member `None`. The loop asks this object
    for keys, for the state of one member (logs, grids) and for per-member records.
    """

    def __init__(self, config: Any):
        self.count = population.size(config)
        if self.count:  # One key per member, each as its own single run would have it.
            self.seed_key = population.seed_keys(population.seeds(config))
            self.fold_in = population.fold_in
            self.split_epoch_keys = jax.vmap(split_epoch_key)
        else:
            self.seed_key = jax.random.key(config.seed)
            self.fold_in = jax.random.fold_in
            self.split_epoch_keys = split_epoch_key

    def first(self, state: GANState) -> GANState:
        """One GAN's state: member 0 of a population, or the state itself."""
        return population.member(state, 0) if self.count else state

    def keyed(self, keys: jax.Array) -> list[tuple[int | None, jax.Array]]:
        """(member, key) for each member: [(0, keys[0]), ...], or [(None, keys)]."""
        return list(enumerate(keys)) if self.count else [(None, keys)]

    def add_epoch_scalars(self, record: dict[str, Any], epoch_metrics: dict[str, Any]) -> None:
        """Each member's means over the epoch's steps ([S, K] metrics) into `record`."""
        if not self.count:
            return
        add_member_scalars(
            record,
            [
                {name: float(values[:, i].mean()) for name, values in epoch_metrics.items()}
                for i in range(self.count)
            ],
        )

    def describe(self, config: Any) -> str | None:
        """The log line of a population, None for one GAN."""
        if not self.count:
            return None
        seeds, rates = population.seeds(config), population.learning_rates(config)
        return (
            f"population: {self.count} GANs in one program, seeds {seeds[0]}..{seeds[-1]}, "
            f"learning rates {' '.join(f'{r:g}' for r in rates)}"
        )
