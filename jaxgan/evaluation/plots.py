"""Training curves: `curves.png` drawn from the per-epoch records of `metrics.jsonl`.

The panels follow from the keys the records hold, so every objective and evaluator is
drawn without a list of names here:

  Losses             training keys ending in `_loss`
  D outputs          `d_real` as D(x) and `d_fake` as D(G(z))
  Training scalars   every other numeric training key (accuracies, `wasserstein`, `gp`, ...)
  FID                evaluation keys starting with `fid`
  KID                evaluation keys starting with `kid`; `X_std` becomes error bars on `X_mean`
  Evaluation         every other evaluation key (precision, recall, density, ...)

A key is an evaluation key when it starts with `fid` or `kid`, or when every record
holding it is an evaluated one (has `eval_seconds`). Evaluation keys are drawn with
markers at the evaluated epochs only. Bookkeeping keys (`epoch`, `step`, times,
`resumed`), booleans, strings and non-finite values are not drawn.

Matplotlib is used through `Figure` and the Agg canvas only: pyplot's global state
(backend, open figures) is never touched, so a notebook's own plots are unaffected.
"""

from __future__ import annotations

import math
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any, NamedTuple

from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.ticker import MaxNLocator

from jaxgan.fileio import atomic_output, read_jsonl

BOOKKEEPING_KEYS = frozenset(
    {"epoch", "step", "wall_time", "epoch_seconds", "eval_seconds", "resumed"}
)
# Written only by evaluated epochs; marks a record as evaluated.
EVALUATED_MARKER = "eval_seconds"
D_OUTPUT_LABELS = {"d_real": "D(x)", "d_fake": "D(G(z))"}
_COLUMNS = 3
_PANEL_INCHES = (4.2, 3.0)
_DPI = 90


class Panel(NamedTuple):
    """One subplot: its title, the keys drawn in it and whether they are evaluations."""

    title: str
    keys: tuple[str, ...]
    evaluation: bool


def read_metrics(path: str | os.PathLike) -> list[dict[str, Any]]:
    """Reads `metrics.jsonl`: one JSON object per line, in order (`fileio.read_jsonl`).

    A last line that does not parse is skipped: it is a record being written, or one cut
    short when the writer was killed. A bad line anywhere else is an error.

    Raises:
      ValueError: a line before the last is not a JSON object.
    """
    return read_jsonl(path)


def _numeric(value: Any) -> float | None:
    """`value` as a finite float; None for booleans, non-numbers and NaN/Inf."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    value = float(value)
    return value if math.isfinite(value) else None


def panel_layout(records: Sequence[dict[str, Any]]) -> list[Panel]:
    """The panels `write_curves` draws for `records`, in drawing order; empty ones omitted.

    Args:
      records: per-epoch records as in `metrics.jsonl`.
    """
    keys: dict[str, None] = {}  # Ordered by first appearance, so colours stay stable.
    in_unevaluated: set[str] = set()
    for record in records:
        for key, value in record.items():
            if key in BOOKKEEPING_KEYS or _numeric(value) is None:
                continue
            keys[key] = None
            if EVALUATED_MARKER not in record:
                in_unevaluated.add(key)

    def is_evaluation(key: str) -> bool:
        return key.startswith(("fid", "kid")) or key not in in_unevaluated

    training = [key for key in keys if not is_evaluation(key)]
    evaluation = [key for key in keys if is_evaluation(key)]
    losses = [key for key in training if key.endswith("_loss")]
    d_outputs = [key for key in D_OUTPUT_LABELS if key in training]
    fid = [key for key in evaluation if key.startswith("fid") and not _is_error_bar(key, keys)]
    kid = [key for key in evaluation if key.startswith("kid") and not _is_error_bar(key, keys)]
    panels = [
        Panel("Losses", tuple(losses), False),
        Panel("D outputs", tuple(d_outputs), False),
        Panel("Training scalars", tuple(k for k in training if k not in losses + d_outputs), False),
        Panel("FID", tuple(fid), True),
        Panel("KID", tuple(kid), True),
        Panel(
            "Evaluation",
            tuple(k for k in evaluation if not k.startswith(("fid", "kid"))),
            True,
        ),
    ]
    return [panel for panel in panels if panel.keys]


_MEMBERS_STD = "_members_std"


def _is_error_bar(key: str, keys: dict[str, None]) -> bool:
    """`kid_std` is drawn as the error bars of `kid_mean`, and a population's
    `fid_members_std` as those of `fid`, when both exist."""
    if key.endswith(_MEMBERS_STD):
        return key[: -len(_MEMBERS_STD)] in keys
    return key.endswith("_std") and f"{key[: -len('_std')]}_mean" in keys


def _series(
    records: Sequence[dict[str, Any]], key: str
) -> tuple[list[float], list[float], list[float] | None]:
    """Epochs, finite values of `key`, and its `_std` partner's values where it has one."""
    std_key = f"{key[: -len('_mean')]}_std" if key.endswith("_mean") else f"{key}{_MEMBERS_STD}"
    epochs, values, stds = [], [], []
    for position, record in enumerate(records, start=1):
        value = _numeric(record.get(key))
        if value is None:
            continue
        epoch = _numeric(record.get("epoch"))
        epochs.append(position if epoch is None else epoch)
        values.append(value)
        std = _numeric(record.get(std_key)) if std_key else None
        stds.append(0.0 if std is None else std)
    has_stds = std_key is not None and any(std_key in record for record in records)
    return epochs, values, stds if has_stds else None


def write_curves(records: Sequence[dict[str, Any]], path: str | os.PathLike) -> Path:
    """Draws the training curves of `records` against epochs as a PNG at `path`, atomically.

    Args:
      records: per-epoch records as in `metrics.jsonl` (see `read_metrics`): `epoch`,
        `step` and any float metrics.
      path: the PNG to write, e.g. `workdir / 'curves.png'`.

    Returns:
      The path written.

    Raises:
      ValueError: `records` is empty or holds no finite numeric metric.
    """
    if not records:
        raise ValueError("write_curves needs at least one metrics record; got none")
    panels = panel_layout(records)
    if not panels:
        raise ValueError(
            "the metrics records hold no finite numeric value to plot; keys seen: "
            f"{sorted({key for record in records for key in record})}"
        )
    columns = min(_COLUMNS, len(panels))
    rows = math.ceil(len(panels) / columns)
    width, height = _PANEL_INCHES[0] * columns, _PANEL_INCHES[1] * rows
    figure = Figure(figsize=(width, height), dpi=_DPI)
    FigureCanvasAgg(figure)
    axes = figure.subplots(rows, columns, squeeze=False).ravel()
    series = {key: _series(records, key) for panel in panels for key in panel.keys}
    # One epoch range for every panel, so an evaluation lines up with the losses above it.
    first = min(min(epochs) for epochs, _, _ in series.values())
    last = max(max(epochs) for epochs, _, _ in series.values())
    pad = max(0.5, 0.02 * (last - first))
    for ax, panel in zip(axes, panels):
        for key in panel.keys:
            epochs, values, stds = series[key]
            label = D_OUTPUT_LABELS.get(key, key)
            if panel.evaluation:
                ax.errorbar(epochs, values, yerr=stds, marker="o", markersize=4, capsize=3,
                            label=label)  # fmt: skip
            else:
                # A lone point needs a marker to be visible.
                ax.plot(epochs, values, marker="." if len(epochs) < 30 else None, label=label)
        ax.set_title(panel.title, fontsize=10)
        ax.set_xlabel("epoch", fontsize=9)
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.set_xlim(first - pad, last + pad)
        ax.tick_params(labelsize=8)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    for ax in axes[len(panels) :]:
        ax.set_visible(False)
    # Fixed margins in inches; constrained layout would cost more than the drawing.
    figure.subplots_adjust(left=0.55 / width, right=1 - 0.15 / width, bottom=0.5 / height,
                           top=1 - 0.35 / height, wspace=0.28, hspace=0.55)  # fmt: skip
    with atomic_output(path, "wb") as handle:
        figure.savefig(handle, format="png")
    return Path(path)
