"""FID against minutes of training, from runs' `metrics.jsonl`: the curve of a time budget.

    python -m benchmarks.fid_curve --workdir=results/curve --out=docs/fid_curve_resnet.png
    python -m benchmarks.fid_curve --workdir=results/resnet --label=resnet \\
        --workdir=results/dcgan --label=dcgan --floor=2.54 --out=docs/fid_curves.png

For each run, the minutes of training at an epoch are the sum of `epoch_seconds` up to it:
the steps, the epoch's data and its grid, not the evaluations (those are `eval_seconds`,
printed beside). Every epoch with an `fid` gives a point. Prints one JSON line per run
(its points: epoch, step, minutes, FID) and draws every run on one plot, FID on a log
scale, with the data's floor as a line when `--floor` is given. `bash
benchmarks/device_campaign.sh curve` records such a run (FID at N=10,000 about every
minute of training).
"""

from __future__ import annotations

import argparse
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from benchmarks import common

MODULE = "benchmarks.fid_curve"


def fid_points(records: Sequence[dict[str, Any]]) -> list[dict[str, float]]:
    """(epoch, step, training minutes, FID, evaluation seconds) of each record with an FID.

    Raises:
      ValueError: no record has an FID, or one lacks `epoch_seconds`.
    """
    points, seconds = [], 0.0
    for record in records:
        if "epoch_seconds" not in record:
            raise ValueError(
                f"epoch {record.get('epoch')} has no epoch_seconds: not a record of "
                "experiments.train's metrics.jsonl"
            )
        seconds += float(record["epoch_seconds"])
        if "fid" in record:
            points.append({
                "epoch": int(record["epoch"]), "step": int(record["step"]),
                "minutes": round(seconds / 60, 4), "fid": float(record["fid"]),
                "eval_seconds": record.get("eval_seconds"),
            })  # fmt: skip
    if not points:
        raise ValueError("no epoch has an FID: train with config.eval_every > 0")
    return points


def draw(runs: dict[str, list[dict[str, float]]], path: Path, floor: float | None) -> Path:
    """FID against minutes, one line per run, on a log scale; written atomically."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    from jaxgan.fileio import atomic_output

    figure = Figure(figsize=(6.4, 4.2), dpi=120)
    FigureCanvasAgg(figure)
    ax = figure.subplots()
    for label, points in runs.items():
        ax.plot([p["minutes"] for p in points], [p["fid"] for p in points], marker="o",
                markersize=4, label=label)  # fmt: skip
    if floor is not None:
        ax.axhline(floor, color="gray", linestyle="--", label=f"floor (train vs test) {floor:g}")
    ax.set_yscale("log")
    ax.set_xlabel("minutes of training (evaluations excluded)")
    ax.set_ylabel("FID")
    ax.grid(alpha=0.3, which="both")
    ax.legend(fontsize=8)
    figure.tight_layout()
    with atomic_output(path, "wb") as handle:
        figure.savefig(handle, format="png")
    return path


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog=f"python -m {MODULE}", description=__doc__.split("\n\n")[0],
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )  # fmt: skip
    parser.add_argument("--workdir", action="append", required=True, help="a training run")
    parser.add_argument(
        "--label", action="append", default=[], help="one per --workdir (default: its name)"
    )
    parser.add_argument("--out", default="fid_curve.png", help="the PNG to write")
    parser.add_argument("--floor", type=float, default=None, help="FID of train vs test")
    args = parser.parse_args(argv)
    if args.label and len(args.label) != len(args.workdir):
        parser.error(f"{len(args.label)} --label for {len(args.workdir)} --workdir: give one each")
    if not str(args.out).endswith(".png"):
        parser.error(f"--out={args.out} must end in .png")
    from jaxgan.fileio import read_jsonl

    labels = args.label or [Path(workdir).name for workdir in args.workdir]
    runs = {}
    for label, workdir in zip(labels, args.workdir, strict=True):
        path = Path(workdir) / "metrics.jsonl"
        if not path.is_file():
            parser.error(f"{path} not found: is {workdir} a training workdir?")
        try:
            runs[label] = fid_points(read_jsonl(path))
        except ValueError as error:
            parser.error(f"{path}: {error}")
        common.emit({"run": label, "workdir": str(workdir), "points": runs[label],
                     "command": common.command_line(MODULE)})  # fmt: skip
    draw(runs, Path(args.out), args.floor)
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
