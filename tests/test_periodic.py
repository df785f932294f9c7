"""The end-of-epoch actions' own rules (the loop's use of them is tested in test_loop)."""

from __future__ import annotations

from jaxgan.evaluation import plots
from jaxgan.training import periodic


def test_curves_are_redrawn_at_most_every_few_seconds_but_always_at_evaluations_and_the_end(
    tmp_path, monkeypatch
):
    drawn = []
    monkeypatch.setattr(plots, "write_curves", lambda records, path: drawn.append(len(records)))
    now = [0.0]
    records = []
    action = periodic.DrawCurves(tmp_path / "curves.png", records, min_seconds=10.0,
                                 clock=lambda: now[0])  # fmt: skip

    def epoch(number, seconds, is_last=False, **scalars):
        now[0] += seconds
        action(periodic.EpochEnd(None, number, is_last, {"epoch": number, **scalars}))

    epoch(1, 1.0)  # The first epoch is always drawn.
    epoch(2, 1.0)  # 1 s later: skipped.
    epoch(3, 1.0, fid=30.0)  # An evaluation: drawn.
    epoch(4, 11.0)  # 11 s after the last drawing: drawn.
    epoch(5, 1.0)  # Skipped.
    epoch(6, 1.0, is_last=True)  # The end: drawn, with every record.
    assert drawn == [1, 3, 4, 6]
    assert [r["epoch"] for r in records] == [1, 2, 3, 4, 5, 6]
