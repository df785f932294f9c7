"""A population's per-member outputs: the summary of their metrics and the report file."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from jaxgan import fileio


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
