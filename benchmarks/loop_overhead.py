"""The training loop's own overhead per epoch, from a finished run's `metrics.jsonl`.

    python -m benchmarks.loop_overhead --workdir=results/dcgan
    python -m benchmarks.step_cost --config=experiments/configs/dcgan.py --time_steps=50 \\
        > step_time.jsonl
    python -m benchmarks.loop_overhead --workdir=results/dcgan --step_time=step_time.jsonl

An epoch's record is logged after its end-of-epoch actions (grids, checkpoint, evaluation;
`jaxgan.training.trainer`), so the time between two records' `wall_time` is the epoch's
steps (`epoch_seconds`, its data included), its evaluation (`eval_seconds`), and the
rest: the grids, the checkpoint (Orbax writes it asynchronously; only the part that holds
the loop counts), the previous epoch's `curves.png` and the host fetches. That rest is the
loop overhead, reported per epoch from the second on (the first interval is unknown) as
seconds and as a fraction of the epoch's steps, with the median. With `--step_time` (a
`benchmarks.step_cost --time_steps` line of the same config on the same machine) it also
gives the steps' own cost inside an epoch against chunks timed alone: data, dispatch and
the per-chunk NaN checks and progress.
"""

from __future__ import annotations

import argparse
import json
import statistics
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from benchmarks import common

MODULE = "benchmarks.loop_overhead"


def overheads(records: Sequence[dict[str, Any]]) -> list[dict[str, float]]:
    """Per epoch after the first: the seconds between its record and the previous one's
    that are neither steps nor evaluation, and their fraction of the epoch's steps.

    Raises:
      ValueError: fewer than two records, or one without `wall_time` or `epoch_seconds`.
    """
    if len(records) < 2:
        raise ValueError(f"need at least 2 epoch records; got {len(records)}")
    for record in records:
        missing = {"wall_time", "epoch_seconds"} - set(record)
        if missing:
            raise ValueError(f"epoch {record.get('epoch')} has no {', '.join(sorted(missing))}")
    rows = []
    for before, record in zip(records, records[1:]):
        interval = float(record["wall_time"]) - float(before["wall_time"])
        steps = float(record["epoch_seconds"])
        evaluation = float(record.get("eval_seconds") or 0.0)
        rest = interval - steps - evaluation
        rows.append({
            "epoch": int(record["epoch"]), "interval_seconds": round(interval, 4),
            "epoch_seconds": round(steps, 4), "eval_seconds": round(evaluation, 4),
            "overhead_seconds": round(rest, 4), "overhead_fraction": round(rest / steps, 4),
        })  # fmt: skip
    return rows


def summary(rows: Sequence[dict[str, float]], step_time: dict | None = None) -> dict:
    """Medians over epochs; with a step_cost timing, the steps' cost inside an epoch."""
    result = {
        "epochs": len(rows),
        "median_epoch_seconds": statistics.median(r["epoch_seconds"] for r in rows),
        "median_overhead_seconds": statistics.median(r["overhead_seconds"] for r in rows),
        "median_overhead_fraction": statistics.median(r["overhead_fraction"] for r in rows),
    }
    if step_time is not None:
        steps_per_epoch = step_time["steps_full_run"] // step_time["num_epochs"]
        alone = step_time["seconds_per_step"] * steps_per_epoch
        result["epoch_of_steps_timed_alone_seconds"] = round(alone, 4)
        result["in_epoch_overhead_fraction"] = round(result["median_epoch_seconds"] / alone - 1, 4)
    return result


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog=f"python -m {MODULE}", description=__doc__.split("\n\n")[0],
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )  # fmt: skip
    parser.add_argument("--workdir", required=True, help="a finished training run")
    parser.add_argument("--step_time", default=None, help="a step_cost --time_steps JSON line")
    args = parser.parse_args(argv)
    from jaxgan.fileio import read_jsonl

    path = Path(args.workdir) / "metrics.jsonl"
    if not path.is_file():
        parser.error(f"{path} not found: is {args.workdir} a training workdir?")
    step_time = None
    if args.step_time:
        lines = Path(args.step_time).read_text().splitlines()
        step_time = json.loads(lines[-1]) if lines else {}
        if "seconds_per_step" not in step_time:
            parser.error(f"{args.step_time} is not a step_cost --time_steps line")
    try:
        rows = overheads(read_jsonl(path))
    except ValueError as error:
        parser.error(f"{path}: {error}")
    record = {**summary(rows, step_time), "per_epoch": rows, "workdir": args.workdir}
    common.emit({**record, "device": common.device_info(), "command": common.command_line(MODULE)})
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
