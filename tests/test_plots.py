"""jaxgan.evaluation.plots: panel grouping from the metric keys, the PNG, reading metrics.jsonl."""

import json
import math

import numpy as np
import pytest
from PIL import Image

from jaxgan.evaluation import plots


def _records(num_epochs=6, eval_every=3, **extra_training):
    """Non-saturating-GAN records; evaluated epochs add FID, KID and precision/recall."""
    records = []
    for epoch in range(1, num_epochs + 1):
        record = {
            "epoch": epoch,
            "step": 10 * epoch,
            "epoch_seconds": 1.5,
            "d_loss": 1.0 / epoch,
            "g_loss": 2.0 - 0.1 * epoch,
            "d_real": 0.6,
            "d_fake": 0.4,
            "d_real_acc": 0.7,
            "d_fake_acc": 0.8,
            **extra_training,
        }
        if epoch % eval_every == 0:
            record.update(fid=50.0 / epoch, kid_mean=0.05, kid_std=0.01, precision=0.5, recall=0.4)
            record["eval_seconds"] = 3.0
        record["wall_time"] = 1.7e9 + epoch
        records.append(record)
    return records


def _decode(path):
    with Image.open(path) as image:
        image.load()
        return np.asarray(image)


def test_layout_groups_keys_by_rule():
    layout = plots.panel_layout(_records())
    assert [(panel.title, panel.keys, panel.evaluation) for panel in layout] == [
        ("Losses", ("d_loss", "g_loss"), False),
        ("D outputs", ("d_real", "d_fake"), False),
        ("Training scalars", ("d_real_acc", "d_fake_acc"), False),
        ("FID", ("fid",), True),
        ("KID", ("kid_mean",), True),  # kid_std is kid_mean's error bars
        ("Evaluation", ("precision", "recall"), True),
    ]


def test_layout_follows_the_objective_keys_and_skips_bookkeeping():
    records = [
        {"epoch": 1, "step": 5, "wall_time": 1.0, "epoch_seconds": 2.0, "resumed": True,
         "d_loss": -1.0, "g_loss": 0.5, "wasserstein": 1.2, "gp": 0.3, "note": "text"},
        {"epoch": 2, "step": 10, "wall_time": 2.0, "epoch_seconds": 2.0,
         "d_loss": -0.8, "g_loss": 0.4, "wasserstein": 1.0, "gp": float("nan")},
    ]  # fmt: skip
    layout = plots.panel_layout(records)
    assert [(panel.title, panel.keys) for panel in layout] == [
        ("Losses", ("d_loss", "g_loss")),
        ("Training scalars", ("wasserstein", "gp")),
    ]


def test_every_epoch_evaluated_still_counts_as_evaluation():
    layout = plots.panel_layout(_records(num_epochs=3, eval_every=1))
    assert {panel.title: panel.evaluation for panel in layout}["Evaluation"] is True
    assert "precision" not in {key for panel in layout if not panel.evaluation
                               for key in panel.keys}  # fmt: skip


def test_write_curves_writes_a_png_sized_by_the_panel_grid(tmp_path):
    with_eval = plots.write_curves(_records(), tmp_path / "with_eval" / "curves.png")
    training_only = plots.write_curves(_records(eval_every=100), tmp_path / "curves.png")
    assert with_eval == tmp_path / "with_eval" / "curves.png"
    rows_cols = {  # 6 panels: 2 rows of 3; 3 panels: 1 row of 3.
        "with_eval": _decode(with_eval).shape[:2],
        "training_only": _decode(training_only).shape[:2],
    }
    assert rows_cols["with_eval"][1] == rows_cols["training_only"][1]
    assert rows_cols["with_eval"][0] == 2 * rows_cols["training_only"][0]
    image = _decode(with_eval)
    assert image.std() > 0  # something was drawn


def test_fid_only_on_some_epochs_is_drawn_at_those_epochs(tmp_path):
    records = _records(num_epochs=7, eval_every=3)
    epochs, values, stds = plots._series(records, "fid")
    assert epochs == [3, 6]
    assert values == [50.0 / 3, 50.0 / 6]
    assert stds is None
    _, _, kid_stds = plots._series(records, "kid_mean")
    assert kid_stds == [0.01, 0.01]
    plots.write_curves(records, tmp_path / "curves.png")
    assert _decode(tmp_path / "curves.png").ndim == 3


def test_non_finite_values_are_skipped(tmp_path):
    records = _records(num_epochs=4)
    records[1]["d_loss"] = float("nan")
    records[2]["g_loss"] = float("inf")
    epochs, values, _ = plots._series(records, "d_loss")
    assert epochs == [1, 3, 4]
    assert all(math.isfinite(value) for value in values)
    plots.write_curves(records, tmp_path / "curves.png")
    _decode(tmp_path / "curves.png")


def test_a_single_epoch_is_drawn(tmp_path, monkeypatch):
    """A line through one point is invisible: each lone point needs a marker."""
    figures = []

    class KeptFigure(plots.Figure):
        def __init__(self, *args, **kwargs):
            super().__init__(*args, **kwargs)
            figures.append(self)

    monkeypatch.setattr(plots, "Figure", KeptFigure)
    plots.write_curves(_records(num_epochs=1), tmp_path / "curves.png")
    assert _decode(tmp_path / "curves.png").ndim == 3
    (figure,) = figures
    drawn = {line.get_label(): line for ax in figure.axes for line in ax.get_lines()}
    assert {"d_loss", "g_loss", "d_real_acc", "d_fake_acc"} <= set(drawn)
    for label, line in drawn.items():
        assert len(line.get_xdata()) == 1, label
        assert line.get_marker() not in (None, "", " ", "None") and line.get_markersize() > 0, label


def test_empty_or_unplottable_records_are_errors(tmp_path):
    with pytest.raises(ValueError, match="at least one"):
        plots.write_curves([], tmp_path / "curves.png")
    with pytest.raises(ValueError, match="no finite numeric value"):
        plots.write_curves([{"epoch": 1, "step": 3, "d_loss": float("nan")}], tmp_path / "c.png")
    assert not (tmp_path / "curves.png").exists()


def test_read_metrics_skips_only_a_truncated_last_line(tmp_path):
    records = _records(num_epochs=3)
    path = tmp_path / "metrics.jsonl"
    lines = [json.dumps(record) for record in records]
    path.write_text("\n".join(lines) + "\n" + lines[0][:25])
    assert plots.read_metrics(path) == records

    path.write_text("\n".join(lines) + "\n")
    assert plots.read_metrics(path) == records

    path.write_text(lines[0] + "\n" + lines[1][:25] + "\n" + lines[2] + "\n")
    with pytest.raises(ValueError, match="line 2"):
        plots.read_metrics(path)
    path.write_text("[1, 2]\n" + lines[0] + "\n")
    with pytest.raises(ValueError, match="line 1 is list"):
        plots.read_metrics(path)


def test_a_populations_fid_spread_is_drawn_as_error_bars_of_its_mean_fid(tmp_path):
    records = [
        {"epoch": 1, "step": 5, "d_loss": 1.0, "members": [{"fid": 40.0}, {"fid": 44.0}],
         "fid": 42.0, "fid_members_std": 2.83, "eval_seconds": 3.0},
        {"epoch": 2, "step": 10, "d_loss": 0.9, "members": [{"fid": 30.0}, {"fid": 32.0}],
         "fid": 31.0, "fid_members_std": 1.41, "eval_seconds": 3.0},
    ]  # fmt: skip
    fid_panel = next(p for p in plots.panel_layout(records) if p.title == "FID")
    assert fid_panel.keys == ("fid",)
    assert plots._series(records, "fid") == ([1, 2], [42.0, 31.0], [2.83, 1.41])
    assert plots._series(records, "d_loss")[2] is None
    assert plots.write_curves(records, tmp_path / "curves.png").stat().st_size > 0
